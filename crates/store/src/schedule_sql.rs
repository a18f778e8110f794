//! The SQL of schedules and their fires that reads the same on both backends (see
//! [`crate::sql`] for how one statement serves both).

use crate::schedules::ENDED_RUN_STATUSES;

pub(crate) const INSERT_SCHEDULE: &str = "\
    INSERT INTO schedules (source_id, id, name, kind, pipeline_id, experiment_name, recurrence, parameters, \
    continue_on_step_failure, status, misfire_policy, overlap_policy, max_concurrent, next_fire_at, created_at, \
    updated_at, etag, datastore, path_pattern, recursive, polling_seconds, data_path_parameter, watch_since, \
    next_poll_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16, $17, $18, \
    $19, $20, $21, $22, $23) RETURNING *";

pub(crate) const SCHEDULE: &str = "SELECT * FROM schedules WHERE source_id = $1 AND lower(name) = lower($2)";

pub(crate) const SCHEDULES: &str = "\
    SELECT * FROM schedules WHERE source_id = $1 AND ($2 OR status = 'Active') \
    AND (CAST($3 AS TEXT) IS NULL OR pipeline_id = $3) ORDER BY lower(name)";

pub(crate) const UPDATE_SCHEDULE: &str = "\
    UPDATE schedules SET name = $1, pipeline_id = $2, experiment_name = $3, recurrence = $4, parameters = $5, \
    continue_on_step_failure = $6, status = $7, misfire_policy = $8, overlap_policy = $9, max_concurrent = $10, \
    next_fire_at = $11, updated_at = $12, etag = $13, datastore = $15, path_pattern = $16, recursive = $17, \
    polling_seconds = $18, data_path_parameter = $19, watch_since = $20, next_poll_at = $21, poll_failures = 0 \
    WHERE id = $14 RETURNING *";

pub(crate) const DELETE_SCHEDULE: &str = "DELETE FROM schedules WHERE id = $1";

/// A deleted change schedule's seen objects go with it.
pub(crate) const DELETE_SEEN_OF_WATCHER: &str = "DELETE FROM watched_objects WHERE watcher_id = $1";

/// The names of the active schedules that start a pipeline.
pub(crate) const ACTIVE_SCHEDULES_OF_PIPELINE: &str = "\
    SELECT name FROM schedules WHERE source_id = $1 AND pipeline_id = $2 AND status = 'Active' \
    ORDER BY lower(name)";

/// Due active time schedules, the longest due first (then by id); the partial index
/// `schedules_due` answers it.
pub(crate) const DUE_SCHEDULES: &str = "\
    SELECT * FROM schedules WHERE status = 'Active' AND kind = 'time' AND next_fire_at IS NOT NULL \
    AND next_fire_at <= $1 ORDER BY next_fire_at, id LIMIT $2";

/// [`DUE_SCHEDULES`] after the schedule whose next tick and id are `($3, $4)`: the next
/// page, from where the index left off.
pub(crate) const DUE_SCHEDULES_AFTER: &str = "\
    SELECT * FROM schedules WHERE status = 'Active' AND kind = 'time' AND next_fire_at IS NOT NULL \
    AND next_fire_at <= $1 AND (next_fire_at, id) > ($3, $4) ORDER BY next_fire_at, id LIMIT $2";

/// The earliest tick of all: one step down the index `schedules_due`.
pub(crate) const EARLIEST_FIRE: &str = "\
    SELECT next_fire_at FROM schedules WHERE status = 'Active' AND kind = 'time' AND next_fire_at IS NOT NULL \
    ORDER BY next_fire_at LIMIT 1";

/// Active change schedules due a poll, the longest due first; the partial index
/// `schedules_polls` answers it.
pub(crate) const DUE_POLLS: &str = "\
    SELECT * FROM schedules WHERE status = 'Active' AND kind = 'change' AND next_poll_at IS NOT NULL \
    AND next_poll_at <= $1 ORDER BY next_poll_at LIMIT $2";

/// The earliest poll of all change schedules and datastore watches (NULL when there is
/// none): one step down each of the indexes `schedules_polls` and
/// `datastore_watches_polls`.
pub(crate) const EARLIEST_POLL: &str = "\
    SELECT min(t) FROM (\
    SELECT (SELECT next_poll_at FROM schedules WHERE status = 'Active' AND kind = 'change' \
    AND next_poll_at IS NOT NULL ORDER BY next_poll_at LIMIT 1) AS t \
    UNION ALL SELECT (SELECT next_poll_at FROM datastore_watches ORDER BY next_poll_at LIMIT 1) AS t) AS polls";

/// What a poll leaves on its schedule. A poll's error replaces the last error; a poll
/// that listed keeps the error of the latest change that failed to start its run.
pub(crate) const AFTER_POLL: &str = "\
    UPDATE schedules SET last_poll_at = $1, next_poll_at = CASE WHEN next_poll_at IS NULL THEN NULL ELSE $2 END, \
    last_error = CASE WHEN CAST($3 AS TEXT) IS NULL AND poll_failures = 0 THEN last_error ELSE $3 END, poll_failures = $4 \
    WHERE id = $5";

pub(crate) const SEEN_OBJECTS: &str = "\
    SELECT * FROM watched_objects WHERE watcher_id = $1 ORDER BY path";

/// A seen object recorded as it is now, whatever was recorded before (a baseline).
pub(crate) const UPSERT_SEEN: &str = "\
    INSERT INTO watched_objects (watcher_id, path, version, size, last_modified, seen_at) \
    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (watcher_id, path) DO UPDATE SET version = excluded.version, \
    size = excluded.size, last_modified = excluded.last_modified, seen_at = excluded.seen_at";

/// A new object's first version, unless it was recorded meanwhile (then no row comes
/// back).
pub(crate) const INSERT_SEEN: &str = "\
    INSERT INTO watched_objects (watcher_id, path, version, size, last_modified, seen_at) \
    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (watcher_id, path) DO NOTHING RETURNING path";

/// Compare and set: an object's next version, only if the row still has the version the
/// watcher read (else no row comes back).
pub(crate) const CHANGE_SEEN: &str = "\
    UPDATE watched_objects SET version = $3, size = $4, last_modified = $5, seen_at = $6 \
    WHERE watcher_id = $1 AND path = $2 AND version = $7 RETURNING path";

pub(crate) const FORGET_SEEN: &str = "DELETE FROM watched_objects WHERE watcher_id = $1 AND path = $2";

/// Records a change a watcher found; its fire time is unique within the schedule.
pub(crate) const INSERT_CHANGE_FIRE: &str = "\
    INSERT INTO schedule_fires (schedule_id, fire_time, source_id, outcome, run_id, reason, recorded_at, path) \
    VALUES ($1, $2, $3, $4, NULL, $5, $6, $7) RETURNING *";

/// What a change leaves on its schedule: when it was found, its run, or why it has none.
pub(crate) const AFTER_CHANGE: &str = "\
    UPDATE schedules SET last_fire_at = $1, last_run_id = COALESCE($2, last_run_id), last_error = $3 WHERE id = $4";

/// Records a tick unless it was recorded before (then no row comes back).
pub(crate) const INSERT_FIRE: &str = "\
    INSERT INTO schedule_fires (schedule_id, fire_time, source_id, outcome, run_id, reason, recorded_at) \
    VALUES ($1, $2, $3, $4, NULL, $5, $6) ON CONFLICT (schedule_id, fire_time) DO NOTHING RETURNING *";

pub(crate) const FIRE: &str = "SELECT * FROM schedule_fires WHERE schedule_id = $1 AND fire_time = $2";

pub(crate) const SET_FIRE_STARTED: &str = "\
    UPDATE schedule_fires SET outcome = 'started', run_id = $1, reason = NULL \
    WHERE schedule_id = $2 AND fire_time = $3 RETURNING *";

/// What a tick leaves on its schedule: when it fired and how, and the next tick, unless
/// a person changed the schedule meanwhile (another etag), whose change set its own.
pub(crate) const AFTER_FIRE: &str = "\
    UPDATE schedules SET last_fire_at = $1, last_run_id = COALESCE($2, last_run_id), last_error = $3, \
    next_fire_at = CASE WHEN etag = $4 THEN $5 ELSE next_fire_at END WHERE id = $6";

/// A queued tick that started: its run is the schedule's latest.
pub(crate) const AFTER_QUEUED_START: &str = "UPDATE schedules SET last_run_id = $1, last_error = NULL WHERE id = $2";

/// Moves a schedule's next tick on without firing (ticks the misfire policy drops).
pub(crate) const ADVANCE_SCHEDULE: &str = "UPDATE schedules SET next_fire_at = $1 WHERE id = $2 AND etag = $3";

pub(crate) const FIRES: &str = "\
    SELECT * FROM schedule_fires WHERE schedule_id = $1 ORDER BY fire_time DESC LIMIT $2";

/// Queued ticks of active schedules, each with its schedule, the oldest first.
pub(crate) const QUEUED_FIRES: &str = "\
    SELECT s.*, f.fire_time FROM schedule_fires f JOIN schedules s ON s.id = f.schedule_id \
    WHERE f.outcome = 'queued' AND s.status = 'Active' ORDER BY f.fire_time LIMIT $1";

/// The schedules a pruning batch walks: the next ones by id after `$1`, at most `$2`.
pub(crate) const SCHEDULES_AFTER: &str = "SELECT id FROM schedules WHERE id > $1 ORDER BY id LIMIT $2";

/// Deletes, of the schedules with ids in `($1, $2]`, the ticks older than each one's
/// latest `$3`, at most `$4` rows. Each schedule's cutoff is found by stepping `$3`
/// entries down its own stretch of the key (schedule, fire time), so a batch reads what
/// it keeps of a few schedules, never the whole table. Queued ticks stay (they are still
/// to start), and so do started ones whose run is not over: the overlap policy counts
/// those runs through their ticks.
pub(crate) fn prune_fires() -> String {
    format!(
        "WITH cut AS (\
             SELECT s.id, (SELECT k.fire_time FROM schedule_fires k WHERE k.schedule_id = s.id \
             ORDER BY k.fire_time DESC LIMIT 1 OFFSET $3) AS newest_gone \
             FROM schedules s WHERE s.id > $1 AND s.id <= $2) \
         DELETE FROM schedule_fires WHERE (schedule_id, fire_time) IN (\
             SELECT f.schedule_id, f.fire_time FROM cut JOIN schedule_fires f \
             ON f.schedule_id = cut.id AND f.fire_time <= cut.newest_gone \
             WHERE f.outcome <> 'queued' AND NOT (f.outcome = 'started' AND EXISTS (\
                 SELECT 1 FROM runs r WHERE r.source_id = f.source_id AND r.run_id = f.run_id \
                 AND r.status NOT IN {ENDED_RUN_STATUSES})) \
             LIMIT $4)"
    )
}

/// Rows of ids per statement of [`active_runs`]: far under either database's limit on
/// parameters.
pub(crate) const ACTIVE_RUNS_CHUNK: usize = 500;

/// Per schedule of `ids` (at most [`ACTIVE_RUNS_CHUNK`]), its runs not yet over; a
/// schedule with none has no row.
pub(crate) fn active_runs<DB: sqlx::Database>(ids: &[String]) -> sqlx::QueryBuilder<DB>
where
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let mut query = sqlx::QueryBuilder::new(format!(
        "SELECT f.schedule_id, count(*) FROM schedule_fires f JOIN runs r ON r.source_id = f.source_id \
         AND r.run_id = f.run_id WHERE r.status NOT IN {ENDED_RUN_STATUSES} AND f.schedule_id IN ("
    ));
    let mut separated = query.separated(", ");
    for id in ids {
        separated.push_bind(id.clone());
    }
    query.push(") GROUP BY f.schedule_id");
    query
}
