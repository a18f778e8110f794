-- Principals hold API keys; only a hash of each key is stored.
CREATE TABLE principals (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE principal_keys (
    key_id        TEXT PRIMARY KEY,
    principal_id  BIGINT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
    key_hash      TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX principal_keys_by_principal ON principal_keys (principal_id);

-- Event sources: workspaces and custom topics. `last_sequence` is the highest
-- sequence number given to an event of the source; it advances in the statement that
-- inserts the events, under the source row's lock, so sequences have no gaps.
CREATE TABLE sources (
    id               BIGSERIAL PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('workspace', 'topic')),
    name             TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    resource_group   TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    last_sequence    BIGINT NOT NULL DEFAULT 0,
    UNIQUE (kind, name)
);

-- Role grants; a NULL source_id grants the role on every source.
CREATE TABLE role_assignments (
    id            BIGSERIAL PRIMARY KEY,
    principal_id  BIGINT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
    source_id     BIGINT REFERENCES sources(id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('Owner', 'Contributor', 'Reader')),
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX role_assignments_unique
    ON role_assignments (principal_id, coalesce(source_id, 0), role);
CREATE INDEX role_assignments_by_source ON role_assignments (source_id);

-- Access keys of custom topics: the salt from which the key is derived with the
-- server secret, and the key's hash for verification.
CREATE TABLE topic_keys (
    source_id   BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    key_name    TEXT NOT NULL CHECK (key_name IN ('key1', 'key2')),
    salt        TEXT NOT NULL,
    key_hash    TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source_id, key_name)
);

-- The append-only event log, one sequence per source. `body` is the event exactly as
-- published.
CREATE TABLE events (
    source_id     BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    sequence      BIGINT NOT NULL,
    event_id      TEXT NOT NULL,
    schema        TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    subject       TEXT NOT NULL,
    published_at  TIMESTAMPTZ NOT NULL,
    body          TEXT NOT NULL,
    PRIMARY KEY (source_id, sequence)
);
