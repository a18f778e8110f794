-- Delivery state of each (subscription, event) pair. A delivery is `pending` until it
-- is `delivered` or `dead` (dead-lettered). A worker claims due pending deliveries by
-- setting a lease (locking the rows it claims with SKIP LOCKED, so two nodes never
-- claim one delivery); a delivery whose lease ran out is due again (its worker died).
ALTER TABLE deliveries
    ADD COLUMN state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0,
    -- When the next attempt is due; set when the match is recorded.
    ADD COLUMN due_at TIMESTAMPTZ,
    ADD COLUMN lease_until TIMESTAMPTZ,
    ADD COLUMN last_attempt_at TIMESTAMPTZ,
    ADD COLUMN last_status BIGINT,
    ADD COLUMN last_outcome TEXT,
    ADD COLUMN last_error TEXT,
    ADD COLUMN dead_letter_reason TEXT,
    ADD COLUMN finished_at TIMESTAMPTZ;
-- Pending deliveries in the order they fall due (then by subscription and sequence, the
-- order claims return): claims read this index in order.
CREATE INDEX deliveries_due ON deliveries (due_at, subscription_id, sequence) WHERE state = 'pending';

-- Every delivery attempt, for the delivery log.
CREATE TABLE delivery_attempts (
    id               BIGSERIAL PRIMARY KEY,
    subscription_id  BIGINT NOT NULL REFERENCES event_subscriptions(id) ON DELETE CASCADE,
    attempted_at     TIMESTAMPTZ NOT NULL,
    events           BIGINT NOT NULL,
    first_sequence   BIGINT NOT NULL,
    status_code      BIGINT,
    latency_ms       DOUBLE PRECISION NOT NULL,
    outcome          TEXT NOT NULL,
    error            TEXT,
    response_excerpt TEXT
);
CREATE INDEX delivery_attempts_by_subscription ON delivery_attempts (subscription_id, id);

-- Per-subscription webhook signing secrets, derived from the server secret and a salt
-- (like topic keys). `previous_salt` signs too until `previous_until` (rotation grace).
ALTER TABLE event_subscriptions
    ADD COLUMN secret_salt TEXT,
    ADD COLUMN previous_salt TEXT,
    ADD COLUMN previous_until TIMESTAMPTZ;
