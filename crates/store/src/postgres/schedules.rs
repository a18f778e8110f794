//! Schedules and their fires on PostgreSQL, for several nodes at once.
//!
//! A tick is recorded with `INSERT ... ON CONFLICT DO NOTHING` on its key (schedule,
//! fire time): a second node recording the same tick waits for the first to commit and
//! then inserts nothing, so a tick starts one run whichever nodes fire it. Every change
//! that lets a schedule start a pipeline share-locks the pipeline's row, and disabling a
//! pipeline locks it for update before it looks for active schedules: the two take
//! turns, and neither misses the other.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use super::db::{all, begin, commit, db, now, optional, unique};
use super::events::workspace_topic;
use super::pipelines::{self, FOR_SHARE};
use crate::error::{Result, StoreError};
use crate::etag::{check_etag, new_etag};
use crate::model::SourceId;
use crate::pipeline_writes::{disabled, json};
use crate::pipelines::NewPipelineRun;
use crate::rows::{fire_from_row, queued_fire_from_row, schedule_from_row, seen_from_row};
use crate::schedule_sql as sql;
use crate::schedules::*;
use crate::tick_writes::{failed, refusal};

/// The pipeline a schedule starts must exist, and be enabled while the schedule is
/// active; its row stays share-locked until the transaction ends.
async fn check_pipeline(conn: &mut PgConnection, workspace: SourceId, new: &NewSchedule) -> Result<()> {
    let pipeline = pipelines::find_pipeline(&mut *conn, workspace, &new.pipeline_id, FOR_SHARE).await?;
    if new.status == ScheduleStatus::Active && !pipeline.enabled {
        let name: String = db(sqlx::query_scalar(crate::sql::WORKSPACE_NAME)
            .bind(workspace)
            .fetch_one(&mut *conn)
            .await)?;
        return Err(disabled(&pipeline, &name));
    }
    Ok(())
}

pub(super) async fn create(pool: &PgPool, workspace: SourceId, new: NewSchedule) -> Result<PipelineSchedule> {
    let mut tx = begin(pool).await?;
    workspace_topic(&mut tx, workspace).await?;
    check_pipeline(&mut tx, workspace, &new).await?;
    let watch = watch_columns(&new);
    let row = unique(
        sqlx::query(sql::INSERT_SCHEDULE)
            .bind(workspace)
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&new.name)
            .bind(new.kind.as_str())
            .bind(&new.pipeline_id)
            .bind(&new.experiment_name)
            .bind(recurrence_text(new.recurrence.as_ref()))
            .bind(json(&new.parameters))
            .bind(new.continue_on_step_failure)
            .bind(new.status.as_str())
            .bind(policy_text(&new.misfire))
            .bind(policy_text(&new.concurrency.overlap_policy))
            .bind(i64::from(new.concurrency.max_concurrent.get()))
            .bind(new.next_fire_at)
            .bind(now())
            .bind(new_etag())
            .bind(watch.datastore)
            .bind(watch.path)
            .bind(watch.recursive)
            .bind(watch.polling_seconds)
            .bind(watch.data_path_parameter)
            .bind(watch.since)
            .bind(watch.next_poll_at)
            .fetch_one(&mut *tx)
            .await,
        || schedule_taken(&new.name),
    )?;
    let schedule = schedule_from_row(&row)?;
    commit(tx).await?;
    Ok(schedule)
}

/// A schedule of the workspace; with `for_update`, locked for the rest of the
/// transaction.
async fn find(conn: &mut PgConnection, workspace: SourceId, name: &str, for_update: bool) -> Result<PipelineSchedule> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let query = sqlx::query(AssertSqlSafe(format!("{}{lock}", sql::SCHEDULE)))
        .bind(workspace)
        .bind(name);
    optional(&mut *conn, query, schedule_from_row)
        .await?
        .ok_or_else(|| missing_schedule(name))
}

pub(super) async fn get(pool: &PgPool, workspace: SourceId, name: &str) -> Result<PipelineSchedule> {
    let query = sqlx::query(sql::SCHEDULE).bind(workspace).bind(name);
    optional(pool, query, schedule_from_row)
        .await?
        .ok_or_else(|| missing_schedule(name))
}

pub(super) async fn list(pool: &PgPool, workspace: SourceId, filter: ScheduleFilter) -> Result<Vec<PipelineSchedule>> {
    let query = sqlx::query(sql::SCHEDULES)
        .bind(workspace)
        .bind(filter.include_disabled)
        .bind(filter.pipeline_id);
    all(pool, query, schedule_from_row).await
}

pub(super) async fn update(
    pool: &PgPool,
    workspace: SourceId,
    name: &str,
    new: NewSchedule,
    if_match: Option<String>,
) -> Result<PipelineSchedule> {
    let mut tx = begin(pool).await?;
    let current = find(&mut tx, workspace, name, true).await?;
    check_etag(&format!("schedule `{name}`"), &current.etag, if_match.as_deref())?;
    check_same_kind(&current, &new)?;
    check_pipeline(&mut tx, workspace, &new).await?;
    let watch = watch_columns(&new);
    let row = unique(
        sqlx::query(sql::UPDATE_SCHEDULE)
            .bind(&new.name)
            .bind(&new.pipeline_id)
            .bind(&new.experiment_name)
            .bind(recurrence_text(new.recurrence.as_ref()))
            .bind(json(&new.parameters))
            .bind(new.continue_on_step_failure)
            .bind(new.status.as_str())
            .bind(policy_text(&new.misfire))
            .bind(policy_text(&new.concurrency.overlap_policy))
            .bind(i64::from(new.concurrency.max_concurrent.get()))
            .bind(new.next_fire_at)
            .bind(now())
            .bind(new_etag())
            .bind(&current.id)
            .bind(watch.datastore)
            .bind(watch.path)
            .bind(watch.recursive)
            .bind(watch.polling_seconds)
            .bind(watch.data_path_parameter)
            .bind(watch.since)
            .bind(watch.next_poll_at)
            .fetch_one(&mut *tx)
            .await,
        || schedule_taken(&new.name),
    )?;
    let schedule = schedule_from_row(&row)?;
    commit(tx).await?;
    Ok(schedule)
}

pub(super) async fn delete(pool: &PgPool, workspace: SourceId, name: &str, if_match: Option<String>) -> Result<()> {
    let mut tx = begin(pool).await?;
    let current = find(&mut tx, workspace, name, true).await?;
    check_etag(&format!("schedule `{name}`"), &current.etag, if_match.as_deref())?;
    db(sqlx::query(sql::DELETE_SCHEDULE)
        .bind(&current.id)
        .execute(&mut *tx)
        .await)?;
    db(sqlx::query(sql::DELETE_SEEN_OF_WATCHER)
        .bind(&current.id)
        .execute(&mut *tx)
        .await)?;
    commit(tx).await
}

/// Refuses to disable a pipeline that active schedules start, naming them; the caller
/// holds the pipeline's row locked for update.
pub(super) async fn refuse_if_scheduled(conn: &mut PgConnection, workspace: SourceId, pipeline_id: &str) -> Result<()> {
    let names: Vec<String> = db(sqlx::query_scalar(sql::ACTIVE_SCHEDULES_OF_PIPELINE)
        .bind(workspace)
        .bind(pipeline_id)
        .fetch_all(&mut *conn)
        .await)?;
    if names.is_empty() {
        Ok(())
    } else {
        Err(used_by_schedules(pipeline_id, &names))
    }
}

pub(super) async fn due(
    pool: &PgPool,
    now: DateTime<Utc>,
    after: Option<(DateTime<Utc>, String)>,
    limit: u32,
) -> Result<Vec<PipelineSchedule>> {
    let query = match after {
        None => sqlx::query(sql::DUE_SCHEDULES).bind(now).bind(i64::from(limit)),
        Some((next, id)) => sqlx::query(sql::DUE_SCHEDULES_AFTER)
            .bind(now)
            .bind(i64::from(limit))
            .bind(next)
            .bind(id),
    };
    all(pool, query, schedule_from_row).await
}

pub(super) async fn earliest(pool: &PgPool) -> Result<Option<DateTime<Utc>>> {
    db(sqlx::query_scalar(sql::EARLIEST_FIRE).fetch_optional(pool).await)
}

async fn load_fire(
    conn: &mut PgConnection,
    schedule_id: &str,
    fire_time: DateTime<Utc>,
    lock: &str,
) -> Result<Option<ScheduleFire>> {
    let query = sqlx::query(AssertSqlSafe(format!("{} {lock}", sql::FIRE)))
        .bind(schedule_id)
        .bind(fire_time);
    optional(&mut *conn, query, fire_from_row).await
}

/// Submits the run of a recorded tick or change and marks it started with that run, in
/// the caller's transaction: the run's id, and the record as it now stands (none when
/// nothing is recorded under that key).
async fn start_fire(
    conn: &mut PgConnection,
    workspace: SourceId,
    schedule_id: &str,
    fire_time: DateTime<Utc>,
    run: NewPipelineRun,
) -> Result<(String, Option<ScheduleFire>)> {
    let submitted = pipelines::submit_in(conn, workspace, run).await?;
    let query = sqlx::query(sql::SET_FIRE_STARTED)
        .bind(&submitted.run.run_id)
        .bind(schedule_id)
        .bind(fire_time);
    let fire = optional(&mut *conn, query, fire_from_row).await?;
    Ok((submitted.run.run_id, fire))
}

/// Records ticks tick by tick in one transaction, each in a savepoint: a tick whose run
/// is refused is rolled back alone and recorded as failed, saying why. (The scheduler
/// records several batches at once through the pool; SQLite's one writer needs the
/// multi-row statements of its own batch instead.)
pub(super) async fn record_fires(pool: &PgPool, ticks: Vec<NewTick>) -> Result<Vec<FireRecorded>> {
    let mut tx = begin(pool).await?;
    let mut answers = Vec::with_capacity(ticks.len());
    for NewTick { workspace, fire, run } in ticks {
        let starts = run.is_some();
        let mut attempt = db(sqlx::Acquire::begin(&mut *tx).await)?;
        match record_fire(&mut attempt, workspace, fire.clone(), run).await {
            Ok(recorded) => {
                db(attempt.commit().await)?;
                answers.push(recorded);
            }
            Err(e) if starts => {
                let reason = refusal(e)?;
                db(attempt.rollback().await)?;
                answers.push(record_fire(&mut tx, workspace, failed(fire, reason), None).await?);
            }
            Err(e) => return Err(e),
        }
    }
    commit(tx).await?;
    Ok(answers)
}

/// Records one tick in the caller's transaction; a refused run is the error.
async fn record_fire(
    tx: &mut PgConnection,
    workspace: SourceId,
    fire: NewFire,
    run: Option<NewPipelineRun>,
) -> Result<FireRecorded> {
    let inserted = sqlx::query(sql::INSERT_FIRE)
        .bind(&fire.schedule_id)
        .bind(fire.fire_time)
        .bind(workspace)
        .bind(fire.outcome.as_str())
        .bind(&fire.reason)
        .bind(now());
    let Some(mut recorded) = optional(&mut *tx, inserted, fire_from_row).await? else {
        let earlier = load_fire(&mut *tx, &fire.schedule_id, fire.fire_time, "").await?;
        let fire = earlier.ok_or_else(|| StoreError::Corrupt("a tick's record vanished after its insert".into()))?;
        return Ok(FireRecorded { fire, recorded: false });
    };
    if let Some(run) = run {
        let (_, started) = start_fire(&mut *tx, workspace, &fire.schedule_id, fire.fire_time, run).await?;
        recorded = started.expect("the tick was inserted in this transaction");
    }
    db(sqlx::query(sql::AFTER_FIRE)
        .bind(fire.fire_time)
        .bind(&recorded.run_id)
        .bind(&recorded.reason)
        .bind(&fire.etag)
        .bind(fire.next_fire_at)
        .bind(&fire.schedule_id)
        .execute(&mut *tx)
        .await)?;
    Ok(FireRecorded {
        fire: recorded,
        recorded: true,
    })
}

pub(super) async fn fires(pool: &PgPool, schedule_id: &str, limit: u32) -> Result<Vec<ScheduleFire>> {
    let query = sqlx::query(sql::FIRES).bind(schedule_id).bind(i64::from(limit));
    all(pool, query, fire_from_row).await
}

pub(super) async fn active_runs(pool: &PgPool, schedule_ids: &[String]) -> Result<HashMap<String, u32>> {
    let mut counts = HashMap::new();
    for chunk in schedule_ids.chunks(sql::ACTIVE_RUNS_CHUNK) {
        let mut query = sql::active_runs::<sqlx::Postgres>(chunk);
        let rows: Vec<(String, i64)> = db(query.build_query_as().persistent(false).fetch_all(pool).await)?;
        counts.extend(
            rows.into_iter()
                .map(|(id, count)| (id, u32::try_from(count).unwrap_or(u32::MAX))),
        );
    }
    Ok(counts)
}

pub(super) async fn queued(pool: &PgPool, limit: u32) -> Result<Vec<QueuedFire>> {
    let query = sqlx::query(sql::QUEUED_FIRES).bind(i64::from(limit));
    all(pool, query, queued_fire_from_row).await
}

pub(super) async fn start_queued(
    pool: &PgPool,
    workspace: SourceId,
    schedule_id: &str,
    fire_time: DateTime<Utc>,
    run: NewPipelineRun,
) -> Result<Option<ScheduleFire>> {
    let mut tx = begin(pool).await?;
    match load_fire(&mut tx, schedule_id, fire_time, "FOR UPDATE").await? {
        Some(fire) if fire.outcome == FireOutcome::Queued => {}
        _ => return Ok(None),
    }
    let (run_id, fire) = start_fire(&mut tx, workspace, schedule_id, fire_time, run).await?;
    db(sqlx::query(sql::AFTER_QUEUED_START)
        .bind(&run_id)
        .bind(schedule_id)
        .execute(&mut *tx)
        .await)?;
    commit(tx).await?;
    Ok(fire)
}

pub(super) async fn advance(
    pool: &PgPool,
    schedule_id: &str,
    etag: &str,
    next_fire_at: Option<DateTime<Utc>>,
) -> Result<()> {
    db(sqlx::query(sql::ADVANCE_SCHEDULE)
        .bind(next_fire_at)
        .bind(schedule_id)
        .bind(etag)
        .execute(pool)
        .await)?;
    Ok(())
}

pub(super) async fn due_polls(pool: &PgPool, now: DateTime<Utc>, limit: u32) -> Result<Vec<PipelineSchedule>> {
    let query = sqlx::query(sql::DUE_POLLS).bind(now).bind(i64::from(limit));
    all(pool, query, schedule_from_row).await
}

pub(super) async fn earliest_poll(pool: &PgPool) -> Result<Option<DateTime<Utc>>> {
    db(sqlx::query_scalar(sql::EARLIEST_POLL).fetch_one(pool).await)
}

/// A poll's outcome on its change schedule or its datastore watch: the watcher's id is
/// a UUID, so one of the two statements finds it.
pub(super) async fn after_poll(pool: &PgPool, poll: PollDone) -> Result<()> {
    for statement in [sql::AFTER_POLL, crate::watch_sql::AFTER_WATCH_POLL] {
        db(sqlx::query(statement)
            .bind(poll.polled_at)
            .bind(poll.next_poll_at)
            .bind(&poll.error)
            .bind(i64::from(poll.failures))
            .bind(&poll.watcher_id)
            .execute(pool)
            .await)?;
    }
    Ok(())
}

pub(super) async fn seen_objects(pool: &PgPool, watcher_id: &str) -> Result<Vec<SeenObject>> {
    all(pool, sqlx::query(sql::SEEN_OBJECTS).bind(watcher_id), seen_from_row).await
}

fn size(object: &SeenObject) -> i64 {
    i64::try_from(object.size).unwrap_or(i64::MAX)
}

pub(super) async fn record_seen(pool: &PgPool, watcher_id: &str, objects: &[SeenObject]) -> Result<()> {
    let mut tx = begin(pool).await?;
    let at = now();
    for object in objects {
        db(sqlx::query(sql::UPSERT_SEEN)
            .bind(watcher_id)
            .bind(&object.path)
            .bind(&object.version)
            .bind(size(object))
            .bind(object.last_modified)
            .bind(at)
            .execute(&mut *tx)
            .await)?;
    }
    commit(tx).await
}

pub(super) async fn forget_seen(pool: &PgPool, watcher_id: &str, paths: &[String]) -> Result<()> {
    let mut tx = begin(pool).await?;
    for path in paths {
        db(sqlx::query(sql::FORGET_SEEN)
            .bind(watcher_id)
            .bind(path)
            .execute(&mut *tx)
            .await)?;
    }
    commit(tx).await
}

/// Compare and set on a watcher's seen row: a new object's first version, or its next
/// one if the row still has the version read (`previous`). It waits for another node's
/// transaction on the same row; `false` when the row moved meanwhile: another node, or
/// an earlier pass, recorded this change.
pub(super) async fn move_seen(
    conn: &mut PgConnection,
    watcher_id: &str,
    previous: Option<&str>,
    seen: &SeenObject,
    at: DateTime<Utc>,
) -> Result<bool> {
    let moved: Option<String> = match previous {
        None => db(sqlx::query_scalar(sql::INSERT_SEEN)
            .bind(watcher_id)
            .bind(&seen.path)
            .bind(&seen.version)
            .bind(size(seen))
            .bind(seen.last_modified)
            .bind(at)
            .fetch_optional(&mut *conn)
            .await)?,
        Some(previous) => db(sqlx::query_scalar(sql::CHANGE_SEEN)
            .bind(watcher_id)
            .bind(&seen.path)
            .bind(&seen.version)
            .bind(size(seen))
            .bind(seen.last_modified)
            .bind(at)
            .bind(previous)
            .fetch_optional(&mut *conn)
            .await)?,
    };
    Ok(moved.is_some())
}

/// The compare and set on the seen row waits for another node's transaction on the same
/// row, then finds the version moved and records nothing: one node fires a change.
pub(super) async fn record_change(
    pool: &PgPool,
    workspace: SourceId,
    change: NewChange,
    run: Option<NewPipelineRun>,
) -> Result<ChangeRecorded> {
    let mut tx = begin(pool).await?;
    let at = now();
    let seen = &change.seen;
    if !move_seen(&mut tx, &change.schedule_id, change.previous.as_deref(), seen, at).await? {
        return Ok(ChangeRecorded { fire: None });
    }
    let inserted = sqlx::query(sql::INSERT_CHANGE_FIRE)
        .bind(&change.schedule_id)
        .bind(change.fire_time)
        .bind(workspace)
        .bind(change.outcome.as_str())
        .bind(&change.reason)
        .bind(at)
        .bind(&seen.path);
    let mut recorded = unique(inserted.fetch_one(&mut *tx).await, || {
        format!(
            "schedule {} recorded a change at {} before",
            change.schedule_id, change.fire_time
        )
    })
    .and_then(|row| fire_from_row(&row))?;
    if let Some(run) = run {
        let (_, started) = start_fire(&mut tx, workspace, &change.schedule_id, change.fire_time, run).await?;
        recorded = started.expect("the change was recorded in this transaction");
    }
    db(sqlx::query(sql::AFTER_CHANGE)
        .bind(change.fire_time)
        .bind(&recorded.run_id)
        .bind(&recorded.reason)
        .bind(&change.schedule_id)
        .execute(&mut *tx)
        .await)?;
    commit(tx).await?;
    Ok(ChangeRecorded { fire: Some(recorded) })
}

/// A batch of pruning: walks the next schedules after `after`, then deletes what they
/// let go (see [`sql::prune_fires`]), one statement each.
pub(super) async fn prune_fires(
    pool: &PgPool,
    after: &str,
    schedules: u32,
    keep: u32,
    limit: u32,
) -> Result<PrunedFires> {
    let walked: Vec<String> = db(sqlx::query_scalar(sql::SCHEDULES_AFTER)
        .bind(after)
        .bind(i64::from(schedules))
        .fetch_all(pool)
        .await)?;
    let Some(last) = walked.last() else {
        return Ok(PrunedFires::default());
    };
    let deleted = db(sqlx::query(AssertSqlSafe(sql::prune_fires()))
        .bind(after)
        .bind(last)
        .bind(i64::from(keep))
        .bind(i64::from(limit))
        .execute(pool)
        .await)?;
    Ok(PrunedFires {
        fires: deleted.rows_affected(),
        walked_to: (walked.len() == schedules as usize).then(|| last.clone()),
    })
}
