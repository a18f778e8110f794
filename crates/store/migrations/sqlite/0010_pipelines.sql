-- Published pipelines, their endpoints, and the runs of their steps. A pipeline run is a
-- run (`azureml.PipelineRun`) with one child run per step (`azureml.StepRun`); the rows
-- here add what a run does not have: its assignment and its steps' progress.

-- A pipeline as published: the YAML under a name and version, immutable but for
-- `enabled` (a disabled pipeline refuses submissions).
CREATE TABLE pipelines (
    source_id    INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    description  TEXT NOT NULL,
    definition   TEXT NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    etag         TEXT NOT NULL,
    PRIMARY KEY (source_id, id),
    UNIQUE (source_id, name, version)
);

-- A stable name whose submissions go to its default pipeline, which can be switched.
CREATE TABLE pipeline_endpoints (
    source_id            INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    description          TEXT NOT NULL,
    default_pipeline_id  TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    etag                 TEXT NOT NULL,
    PRIMARY KEY (source_id, name),
    FOREIGN KEY (source_id, default_pipeline_id) REFERENCES pipelines(source_id, id)
);

-- The assignment of a pipeline run (parameters and data paths as JSON objects). A
-- submission with an idempotency key seen before returns the run made for it.
CREATE TABLE pipeline_runs (
    source_id                 INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    run_id                    TEXT NOT NULL,
    pipeline_id               TEXT NOT NULL,
    description               TEXT,
    parameters                TEXT NOT NULL,
    data_paths                TEXT NOT NULL,
    continue_on_step_failure  INTEGER NOT NULL,
    run_source                TEXT NOT NULL,
    idempotency_key           TEXT,
    PRIMARY KEY (source_id, run_id),
    FOREIGN KEY (source_id, run_id) REFERENCES runs(source_id, run_id) ON DELETE CASCADE,
    FOREIGN KEY (source_id, pipeline_id) REFERENCES pipelines(source_id, id)
);
CREATE UNIQUE INDEX pipeline_runs_by_idempotency_key ON pipeline_runs (source_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The steps of a pipeline run, in the definition's order (`ordinal`), each with its
-- own run. A node claims a ready step with a lease (holder, until), as deliveries are
-- claimed; the lease's fencing token is `attempts`, which every claim increases, so the
-- holder of an earlier attempt cannot record its end. `depends_on` is a JSON array of
-- step names.
CREATE TABLE pipeline_steps (
    source_id         INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    pipeline_run_id   TEXT NOT NULL,
    name              TEXT NOT NULL,
    ordinal           INTEGER NOT NULL,
    run_id            TEXT NOT NULL,
    state             TEXT NOT NULL
        CHECK (state IN ('Waiting', 'Ready', 'Running', 'Completed', 'Failed', 'Canceled', 'Skipped')),
    depends_on        TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    retries           INTEGER NOT NULL,
    ready_at          TEXT,
    started_at        TEXT,
    finished_at       TEXT,
    exit_code         INTEGER,
    error             TEXT,
    reuse_key         TEXT,
    reused_from       TEXT,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    lease_holder      TEXT,
    -- NULL on a running step: its process died with the previous store (see `open`).
    lease_until       TEXT,
    PRIMARY KEY (source_id, run_id),
    UNIQUE (source_id, pipeline_run_id, name),
    FOREIGN KEY (source_id, pipeline_run_id) REFERENCES pipeline_runs(source_id, run_id) ON DELETE CASCADE,
    FOREIGN KEY (source_id, run_id) REFERENCES runs(source_id, run_id) ON DELETE CASCADE
);
-- Ready steps in the order they became ready: claims read this index in order.
CREATE INDEX pipeline_steps_ready ON pipeline_steps (ready_at) WHERE state = 'Ready';
-- Running steps by the end of their lease: recovery reads those that expired.
CREATE INDEX pipeline_steps_running ON pipeline_steps (lease_until) WHERE state = 'Running';
-- Completed steps by what determines their outputs, latest last: the reuse lookup.
CREATE INDEX pipeline_steps_reusable ON pipeline_steps (source_id, reuse_key, finished_at)
    WHERE state = 'Completed' AND reuse_key IS NOT NULL;
