-- The ML lifecycle of workspaces. Every resource has an etag that changes with each
-- update. Tags and properties are JSON objects of strings, kept as text.

CREATE TABLE experiments (
    source_id   BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source_id, id),
    UNIQUE (source_id, name)
);

CREATE TABLE runs (
    source_id      BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    run_id         TEXT NOT NULL,
    experiment_id  TEXT NOT NULL,
    parent_run_id  TEXT,
    run_type       TEXT,
    status         TEXT NOT NULL,
    tags           TEXT NOT NULL,
    properties     TEXT NOT NULL,
    error          TEXT,
    created_at     TIMESTAMPTZ NOT NULL,
    start_time     TIMESTAMPTZ,
    end_time       TIMESTAMPTZ,
    etag           TEXT NOT NULL,
    PRIMARY KEY (source_id, run_id),
    FOREIGN KEY (source_id, experiment_id) REFERENCES experiments(source_id, id)
);
CREATE INDEX runs_by_experiment ON runs (source_id, experiment_id, created_at);

-- `id` keeps the order metrics were logged in.
CREATE TABLE run_metrics (
    id         BIGSERIAL PRIMARY KEY,
    source_id  BIGINT NOT NULL,
    run_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      DOUBLE PRECISION NOT NULL,
    step       BIGINT NOT NULL,
    logged_at  TIMESTAMPTZ NOT NULL,
    FOREIGN KEY (source_id, run_id) REFERENCES runs(source_id, run_id) ON DELETE CASCADE
);
CREATE INDEX run_metrics_by_run ON run_metrics (source_id, run_id, name, step);

-- The highest version ever given to a name: versions are never reused.
CREATE TABLE asset_versions (
    source_id     BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('model', 'dataset')),
    name          TEXT NOT NULL,
    last_version  BIGINT NOT NULL,
    PRIMARY KEY (source_id, kind, name)
);

CREATE TABLE models (
    source_id    BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    version      BIGINT NOT NULL,
    path         TEXT,
    description  TEXT,
    tags         TEXT NOT NULL,
    properties   TEXT NOT NULL,
    archived     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    etag         TEXT NOT NULL,
    PRIMARY KEY (source_id, name, version)
);

CREATE TABLE deployments (
    source_id     BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    compute_type  TEXT NOT NULL,
    models        TEXT NOT NULL,
    tags          TEXT NOT NULL,
    properties    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    etag          TEXT NOT NULL,
    PRIMARY KEY (source_id, name)
);

CREATE TABLE datasets (
    source_id    BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    version      BIGINT NOT NULL,
    path         TEXT NOT NULL,
    description  TEXT,
    tags         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    etag         TEXT NOT NULL,
    PRIMARY KEY (source_id, name, version)
);

-- Per-subject event counters: the `sequence` of the events mlgrid raises.
CREATE TABLE subject_sequences (
    source_id      BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    subject        TEXT NOT NULL,
    last_sequence  BIGINT NOT NULL,
    PRIMARY KEY (source_id, subject)
);
