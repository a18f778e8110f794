-- Deliveries are the table written most (a row per matching subscription and event,
-- updated once or twice, then pruned), so each row costs as few b-trees as it can:
-- keyed by (subscription, sequence) alone, WITHOUT ROWID, so that the key is the table
-- rather than an index beside it, and without the (source, sequence) index. Pruning
-- asks whether an event is still held through the source's subscriptions instead.
CREATE TABLE deliveries_keyed (
    subscription_id          INTEGER NOT NULL REFERENCES event_subscriptions(id) ON DELETE CASCADE,
    source_id                INTEGER NOT NULL,
    sequence                 INTEGER NOT NULL,
    created_at               TEXT NOT NULL,
    state                    TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts                 INTEGER NOT NULL DEFAULT 0,
    due_at                   TEXT,
    lease_until              TEXT,
    last_attempt_at          TEXT,
    last_status              INTEGER,
    last_outcome             TEXT,
    last_error               TEXT,
    dead_letter_reason       TEXT,
    finished_at              TEXT,
    dead_letter_exported_at  TEXT,
    PRIMARY KEY (subscription_id, sequence)
) WITHOUT ROWID;
INSERT INTO deliveries_keyed (subscription_id, source_id, sequence, created_at, state, attempts, due_at, lease_until,
    last_attempt_at, last_status, last_outcome, last_error, dead_letter_reason, finished_at, dead_letter_exported_at)
SELECT subscription_id, source_id, sequence, created_at, state, attempts, due_at, lease_until,
    last_attempt_at, last_status, last_outcome, last_error, dead_letter_reason, finished_at, dead_letter_exported_at
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_keyed RENAME TO deliveries;
-- Pending deliveries in the order they fall due: claims read this index in order.
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE state = 'pending';
CREATE INDEX deliveries_dead_unexported ON deliveries (subscription_id, sequence)
    WHERE state = 'dead' AND dead_letter_exported_at IS NULL;
-- Finished deliveries by age, for pruning.
CREATE INDEX deliveries_delivered ON deliveries (finished_at) WHERE state = 'delivered';
CREATE INDEX deliveries_dead ON deliveries (finished_at) WHERE state = 'dead';
