-- Principals hold API keys; only a hash of each key is stored.
CREATE TABLE principals (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE principal_keys (
    key_id        TEXT PRIMARY KEY,
    principal_id  INTEGER NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
    key_hash      TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

-- Event sources: workspaces and custom topics. `last_sequence` is the highest
-- sequence number given to an event of the source; it advances in the same
-- transaction that inserts the events, so sequences have no gaps.
CREATE TABLE sources (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('workspace', 'topic')),
    name             TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    resource_group   TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    last_sequence    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, name)
);

-- Role grants; a NULL source_id grants the role on every source.
CREATE TABLE role_assignments (
    id            INTEGER PRIMARY KEY,
    principal_id  INTEGER NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
    source_id     INTEGER REFERENCES sources(id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('Owner', 'Contributor', 'Reader')),
    created_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX role_assignments_unique
    ON role_assignments (principal_id, ifnull(source_id, 0), role);

-- Access keys of custom topics: the salt from which the key is derived with the
-- server secret, and the key's hash for verification.
CREATE TABLE topic_keys (
    source_id   INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    key_name    TEXT NOT NULL CHECK (key_name IN ('key1', 'key2')),
    salt        TEXT NOT NULL,
    key_hash    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (source_id, key_name)
);

-- The append-only event log, one sequence per source.
CREATE TABLE events (
    source_id     INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    sequence      INTEGER NOT NULL,
    event_id      TEXT NOT NULL,
    schema        TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    subject       TEXT NOT NULL,
    published_at  TEXT NOT NULL,
    body          TEXT NOT NULL,
    PRIMARY KEY (source_id, sequence)
);
