-- Delivery state of each (subscription, event) pair. A delivery is `pending` until it
-- is `delivered` or `dead` (dead-lettered). A worker claims due pending deliveries by
-- setting a lease; a delivery whose lease ran out is due again (its worker died).
ALTER TABLE deliveries ADD COLUMN state TEXT NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'delivered', 'dead'));
ALTER TABLE deliveries ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
-- When the next attempt is due; set when the match is recorded.
ALTER TABLE deliveries ADD COLUMN due_at TEXT;
ALTER TABLE deliveries ADD COLUMN lease_until TEXT;
ALTER TABLE deliveries ADD COLUMN last_attempt_at TEXT;
ALTER TABLE deliveries ADD COLUMN last_status INTEGER;
ALTER TABLE deliveries ADD COLUMN last_outcome TEXT;
ALTER TABLE deliveries ADD COLUMN last_error TEXT;
ALTER TABLE deliveries ADD COLUMN dead_letter_reason TEXT;
ALTER TABLE deliveries ADD COLUMN finished_at TEXT;
-- Pending deliveries in the order they fall due: claims read this index in order.
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE state = 'pending';

-- Every delivery attempt, for the delivery log.
CREATE TABLE delivery_attempts (
    id               INTEGER PRIMARY KEY,
    subscription_id  INTEGER NOT NULL REFERENCES event_subscriptions(id) ON DELETE CASCADE,
    attempted_at     TEXT NOT NULL,
    events           INTEGER NOT NULL,
    first_sequence   INTEGER NOT NULL,
    status_code      INTEGER,
    latency_ms       REAL NOT NULL,
    outcome          TEXT NOT NULL,
    error            TEXT,
    response_excerpt TEXT
);
CREATE INDEX delivery_attempts_by_subscription ON delivery_attempts (subscription_id, id);

-- Per-subscription webhook signing secrets, derived from the server secret and a salt
-- (like topic keys). `previous_salt` signs too until `previous_until` (rotation grace).
ALTER TABLE event_subscriptions ADD COLUMN secret_salt TEXT;
ALTER TABLE event_subscriptions ADD COLUMN previous_salt TEXT;
ALTER TABLE event_subscriptions ADD COLUMN previous_until TEXT;
