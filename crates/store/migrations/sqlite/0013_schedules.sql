-- Schedules of published pipelines, and the record of every tick they fired.
--
-- A schedule is time-based (`kind` 'time': an Azure ML recurrence, as JSON) or, later,
-- change-based ('change': a datastore path polled for changes; its columns are here so
-- that a schedule's kind is one column of one table). A schedule's kind never changes.
-- `next_fire_at` is the next tick of an active time schedule (NULL when it has none
-- left, or is disabled or change-based): the scheduler sleeps until the earliest, which
-- the partial index answers without a scan, however many schedules there are.
CREATE TABLE schedules (
    source_id                 INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    id                        TEXT NOT NULL PRIMARY KEY,
    name                      TEXT NOT NULL,
    kind                      TEXT NOT NULL,
    pipeline_id               TEXT NOT NULL,
    experiment_name           TEXT NOT NULL,
    recurrence                TEXT,
    datastore                 TEXT,
    path_pattern              TEXT,
    polling_seconds           INTEGER,
    parameters                TEXT NOT NULL,
    continue_on_step_failure  INTEGER NOT NULL,
    status                    TEXT NOT NULL,
    misfire_policy            TEXT NOT NULL,
    overlap_policy            TEXT NOT NULL,
    max_concurrent            INTEGER NOT NULL,
    next_fire_at              TEXT,
    last_fire_at              TEXT,
    last_run_id               TEXT,
    last_error                TEXT,
    created_at                TEXT NOT NULL,
    updated_at                TEXT NOT NULL,
    etag                      TEXT NOT NULL,
    FOREIGN KEY (source_id, pipeline_id) REFERENCES pipelines(source_id, id)
);
CREATE UNIQUE INDEX schedules_by_name ON schedules (source_id, lower(name));
CREATE INDEX schedules_by_pipeline ON schedules (source_id, pipeline_id);
CREATE INDEX schedules_due ON schedules (next_fire_at)
    WHERE status = 'Active' AND kind = 'time' AND next_fire_at IS NOT NULL;

-- One row per tick a schedule handled, keyed by (schedule, fire time): recording a tick
-- twice is impossible, so a tick starts at most one run whichever node fires it, and
-- the run is submitted in the transaction that records it. `outcome` is 'started'
-- (with its run), 'skipped' or 'queued' (the overlap policy; `reason` says why), or
-- 'failed' (the submission was refused; `reason` says why). A queued tick becomes
-- 'started' when one of the schedule's runs ends.
CREATE TABLE schedule_fires (
    schedule_id  TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    fire_time    TEXT NOT NULL,
    source_id    INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    run_id       TEXT,
    reason       TEXT,
    recorded_at  TEXT NOT NULL,
    PRIMARY KEY (schedule_id, fire_time)
);
CREATE INDEX schedule_fires_queued ON schedule_fires (fire_time) WHERE outcome = 'queued';
