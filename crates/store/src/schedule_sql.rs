//! The SQL of schedules and their fires that reads the same on both backends (see
//! [`crate::sql`] for how one statement serves both).

use crate::schedules::ENDED_RUN_STATUSES;

pub(crate) const INSERT_SCHEDULE: &str = "\
    INSERT INTO schedules (source_id, id, name, kind, pipeline_id, experiment_name, recurrence, parameters, \
    continue_on_step_failure, status, misfire_policy, overlap_policy, max_concurrent, next_fire_at, created_at, \
    updated_at, etag) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16) \
    RETURNING *";

pub(crate) const SCHEDULE: &str = "SELECT * FROM schedules WHERE source_id = $1 AND lower(name) = lower($2)";

pub(crate) const SCHEDULES: &str = "\
    SELECT * FROM schedules WHERE source_id = $1 AND ($2 OR status = 'Active') \
    AND (CAST($3 AS TEXT) IS NULL OR pipeline_id = $3) ORDER BY lower(name)";

pub(crate) const UPDATE_SCHEDULE: &str = "\
    UPDATE schedules SET name = $1, pipeline_id = $2, experiment_name = $3, recurrence = $4, parameters = $5, \
    continue_on_step_failure = $6, status = $7, misfire_policy = $8, overlap_policy = $9, max_concurrent = $10, \
    next_fire_at = $11, updated_at = $12, etag = $13 WHERE id = $14 RETURNING *";

pub(crate) const DELETE_SCHEDULE: &str = "DELETE FROM schedules WHERE id = $1";

/// The names of the active schedules that start a pipeline.
pub(crate) const ACTIVE_SCHEDULES_OF_PIPELINE: &str = "\
    SELECT name FROM schedules WHERE source_id = $1 AND pipeline_id = $2 AND status = 'Active' \
    ORDER BY lower(name)";

/// Due active time schedules, the longest due first; the partial index `schedules_due`
/// answers it.
pub(crate) const DUE_SCHEDULES: &str = "\
    SELECT * FROM schedules WHERE status = 'Active' AND kind = 'time' AND next_fire_at IS NOT NULL \
    AND next_fire_at <= $1 ORDER BY next_fire_at LIMIT $2";

/// The earliest tick of all: one step down the index `schedules_due`.
pub(crate) const EARLIEST_FIRE: &str = "\
    SELECT next_fire_at FROM schedules WHERE status = 'Active' AND kind = 'time' AND next_fire_at IS NOT NULL \
    ORDER BY next_fire_at LIMIT 1";

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

pub(crate) fn active_runs() -> String {
    format!(
        "SELECT count(*) FROM schedule_fires f JOIN runs r ON r.source_id = f.source_id AND r.run_id = f.run_id \
         WHERE f.schedule_id = $1 AND r.status NOT IN {ENDED_RUN_STATUSES}"
    )
}
