-- The ML lifecycle of workspaces. Every resource has an etag that changes with each
-- update. Tags and properties are JSON objects of strings.

CREATE TABLE experiments (
    source_id   INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (source_id, id),
    UNIQUE (source_id, name)
);

CREATE TABLE runs (
    source_id      INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    run_id         TEXT NOT NULL,
    experiment_id  TEXT NOT NULL,
    parent_run_id  TEXT,
    run_type       TEXT,
    status         TEXT NOT NULL,
    tags           TEXT NOT NULL,
    properties     TEXT NOT NULL,
    error          TEXT,
    created_at     TEXT NOT NULL,
    start_time     TEXT,
    end_time       TEXT,
    etag           TEXT NOT NULL,
    PRIMARY KEY (source_id, run_id),
    FOREIGN KEY (source_id, experiment_id) REFERENCES experiments(source_id, id)
);
CREATE INDEX runs_by_experiment ON runs (source_id, experiment_id, created_at);

CREATE TABLE run_metrics (
    source_id  INTEGER NOT NULL,
    run_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      REAL NOT NULL,
    step       INTEGER NOT NULL,
    logged_at  TEXT NOT NULL,
    FOREIGN KEY (source_id, run_id) REFERENCES runs(source_id, run_id) ON DELETE CASCADE
);
CREATE INDEX run_metrics_by_run ON run_metrics (source_id, run_id, name, step);

-- The highest version ever given to a name: versions are never reused.
CREATE TABLE asset_versions (
    source_id     INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('model', 'dataset')),
    name          TEXT NOT NULL,
    last_version  INTEGER NOT NULL,
    PRIMARY KEY (source_id, kind, name)
);

CREATE TABLE models (
    source_id    INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    path         TEXT,
    description  TEXT,
    tags         TEXT NOT NULL,
    properties   TEXT NOT NULL,
    archived     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    etag         TEXT NOT NULL,
    PRIMARY KEY (source_id, name, version)
);

CREATE TABLE deployments (
    source_id     INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    compute_type  TEXT NOT NULL,
    models        TEXT NOT NULL,
    tags          TEXT NOT NULL,
    properties    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    etag          TEXT NOT NULL,
    PRIMARY KEY (source_id, name)
);

CREATE TABLE datasets (
    source_id    INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    path         TEXT NOT NULL,
    description  TEXT,
    tags         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    etag         TEXT NOT NULL,
    PRIMARY KEY (source_id, name, version)
);

-- Per-subject event counters: the `sequence` of the events mlgrid raises.
CREATE TABLE subject_sequences (
    source_id      INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    subject        TEXT NOT NULL,
    last_sequence  INTEGER NOT NULL,
    PRIMARY KEY (source_id, subject)
);
