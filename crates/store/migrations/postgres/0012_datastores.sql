-- Datastores registered in a workspace: where pipelines' data paths (and, next, data
-- change schedules) read files. `settings` is a JSON object of the non-secret settings
-- (folder; account and container; bucket and region; endpoint; prefix). A secret given
-- to be stored is kept only sealed (AEAD, under a key derived from the server secret),
-- as text the server alone can open; `credentials` says where the credentials come from.
CREATE TABLE datastores (
    source_id    BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('local', 'azureblob', 's3', 'gcs')),
    settings     TEXT NOT NULL,
    credentials  TEXT NOT NULL CHECK (credentials IN ('stored', 'environment', 'none')),
    secret       TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    etag         TEXT NOT NULL,
    PRIMARY KEY (source_id, name),
    CHECK ((credentials = 'stored') = (secret IS NOT NULL))
);
-- Names are unique ignoring case within a workspace, as Azure's datastore names are.
CREATE UNIQUE INDEX datastores_name_ignoring_case ON datastores (source_id, lower(name));
