-- Event subscriptions of workspaces and topics. `spec` is the subscription's definition
-- as JSON (Event Grid's `properties`), validated by the server before it is stored.
CREATE TABLE event_subscriptions (
    id                  BIGSERIAL PRIMARY KEY,
    source_id           BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    spec                TEXT NOT NULL,
    provisioning_state  TEXT NOT NULL,
    -- The source's last sequence when the subscription was created: it receives only
    -- events after it, as Event Grid subscriptions receive only events published after
    -- their creation.
    start_sequence      BIGINT NOT NULL,
    expires_at          TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    etag                TEXT NOT NULL,
    UNIQUE (source_id, name)
);

-- How far the fan-out has routed each source's log. Routers lock the row to record a
-- stretch, so two nodes routing the same source cannot both move it.
CREATE TABLE fanout_cursors (
    source_id      BIGINT PRIMARY KEY REFERENCES sources(id) ON DELETE CASCADE,
    last_sequence  BIGINT NOT NULL
);

-- One row per (matching subscription, event): what delivery works through.
CREATE TABLE deliveries (
    subscription_id  BIGINT NOT NULL REFERENCES event_subscriptions(id) ON DELETE CASCADE,
    source_id        BIGINT NOT NULL,
    sequence         BIGINT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (subscription_id, sequence)
);

-- Bumped by every change to a subscription, in the transaction making the change, so
-- that each node knows when to rebuild its routing tables.
CREATE TABLE subscription_versions (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO subscription_versions (id, version) VALUES (1, 0);
