//! Schedules and their fires on SQLite. Writes run inside the writer's transaction, one
//! at a time: a tick's record, its run and its schedule's next tick commit together.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mlgrid_core::time::format_event_time;
use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool};

use super::db::{all, db, now, optional, unique};
use super::events::workspace_topic;
use super::pipelines;
use crate::error::{Result, StoreError};
use crate::etag::{check_etag, new_etag};
use crate::model::SourceId;
use crate::pipeline_writes::{disabled, json};
use crate::pipelines::NewPipelineRun;
use crate::rows::{fire_from_row, queued_fire_from_row, schedule_from_row, seen_from_row};
use crate::schedule_sql as sql;
use crate::schedules::*;

fn time(t: DateTime<Utc>) -> String {
    format_event_time(t)
}

/// The pipeline a schedule starts must exist, and be enabled while the schedule is
/// active.
async fn check_pipeline(conn: &mut SqliteConnection, workspace: SourceId, new: &NewSchedule) -> Result<()> {
    let pipeline = pipelines::find_pipeline(&mut *conn, workspace, &new.pipeline_id).await?;
    if new.status == ScheduleStatus::Active && !pipeline.enabled {
        let name: String = db(sqlx::query_scalar(crate::sql::WORKSPACE_NAME)
            .bind(workspace)
            .fetch_one(&mut *conn)
            .await)?;
        return Err(disabled(&pipeline, &name));
    }
    Ok(())
}

pub(super) async fn create(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    new: NewSchedule,
) -> Result<PipelineSchedule> {
    workspace_topic(conn, workspace).await?;
    check_pipeline(conn, workspace, &new).await?;
    let at = now();
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
            .bind(new.next_fire_at.map(time))
            .bind(&at)
            .bind(new_etag())
            .bind(watch.datastore)
            .bind(watch.path)
            .bind(watch.recursive)
            .bind(watch.polling_seconds)
            .bind(watch.data_path_parameter)
            .bind(watch.since.map(time))
            .bind(watch.next_poll_at.map(time))
            .fetch_one(&mut *conn)
            .await,
        || schedule_taken(&new.name),
    )?;
    schedule_from_row(&row)
}

async fn find<'c>(exec: impl sqlx::SqliteExecutor<'c>, workspace: SourceId, name: &str) -> Result<PipelineSchedule> {
    let query = sqlx::query(sql::SCHEDULE).bind(workspace).bind(name);
    optional(exec, query, schedule_from_row)
        .await?
        .ok_or_else(|| missing_schedule(name))
}

pub(super) async fn get(pool: &SqlitePool, workspace: SourceId, name: &str) -> Result<PipelineSchedule> {
    find(pool, workspace, name).await
}

pub(super) async fn list(
    pool: &SqlitePool,
    workspace: SourceId,
    filter: ScheduleFilter,
) -> Result<Vec<PipelineSchedule>> {
    let query = sqlx::query(sql::SCHEDULES)
        .bind(workspace)
        .bind(filter.include_disabled)
        .bind(filter.pipeline_id);
    all(pool, query, schedule_from_row).await
}

pub(super) async fn update(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    name: &str,
    new: NewSchedule,
    if_match: Option<String>,
) -> Result<PipelineSchedule> {
    let current = find(&mut *conn, workspace, name).await?;
    check_etag(&format!("schedule `{name}`"), &current.etag, if_match.as_deref())?;
    check_same_kind(&current, &new)?;
    check_pipeline(conn, workspace, &new).await?;
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
            .bind(new.next_fire_at.map(time))
            .bind(now())
            .bind(new_etag())
            .bind(&current.id)
            .bind(watch.datastore)
            .bind(watch.path)
            .bind(watch.recursive)
            .bind(watch.polling_seconds)
            .bind(watch.data_path_parameter)
            .bind(watch.since.map(time))
            .bind(watch.next_poll_at.map(time))
            .fetch_one(&mut *conn)
            .await,
        || schedule_taken(&new.name),
    )?;
    schedule_from_row(&row)
}

pub(super) async fn delete(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    name: &str,
    if_match: Option<String>,
) -> Result<()> {
    let current = find(&mut *conn, workspace, name).await?;
    check_etag(&format!("schedule `{name}`"), &current.etag, if_match.as_deref())?;
    db(sqlx::query(sql::DELETE_SCHEDULE)
        .bind(&current.id)
        .execute(&mut *conn)
        .await)?;
    db(sqlx::query(sql::DELETE_SEEN_OF_WATCHER)
        .bind(&current.id)
        .execute(&mut *conn)
        .await)?;
    Ok(())
}

/// Refuses to disable a pipeline that active schedules start, naming them.
pub(super) async fn refuse_if_scheduled(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    pipeline_id: &str,
) -> Result<()> {
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
    pool: &SqlitePool,
    now: DateTime<Utc>,
    after: Option<(DateTime<Utc>, String)>,
    limit: u32,
) -> Result<Vec<PipelineSchedule>> {
    let query = match after {
        None => sqlx::query(sql::DUE_SCHEDULES).bind(time(now)).bind(i64::from(limit)),
        Some((next, id)) => sqlx::query(sql::DUE_SCHEDULES_AFTER)
            .bind(time(now))
            .bind(i64::from(limit))
            .bind(time(next))
            .bind(id),
    };
    all(pool, query, schedule_from_row).await
}

pub(super) async fn earliest(pool: &SqlitePool) -> Result<Option<DateTime<Utc>>> {
    let text: Option<String> = db(sqlx::query_scalar(sql::EARLIEST_FIRE).fetch_optional(pool).await)?;
    text.map(|t| mlgrid_core::time::parse_rfc3339(&t).map_err(|_| StoreError::Corrupt(format!("next_fire_at `{t}`"))))
        .transpose()
}

async fn load_fire(
    conn: &mut SqliteConnection,
    schedule_id: &str,
    fire_time: DateTime<Utc>,
) -> Result<Option<ScheduleFire>> {
    let query = sqlx::query(sql::FIRE).bind(schedule_id).bind(time(fire_time));
    optional(&mut *conn, query, fire_from_row).await
}

/// Submits the run of a recorded tick or change and marks it started with that run, in
/// the caller's transaction: the run's id, and the record as it now stands (none when
/// nothing is recorded under that key).
async fn start_fire(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    schedule_id: &str,
    fire_time: DateTime<Utc>,
    run: NewPipelineRun,
) -> Result<(String, Option<ScheduleFire>)> {
    let submitted = pipelines::submit(conn, workspace, run).await?;
    let query = sqlx::query(sql::SET_FIRE_STARTED)
        .bind(&submitted.run.run_id)
        .bind(schedule_id)
        .bind(time(fire_time));
    let fire = optional(&mut *conn, query, fire_from_row).await?;
    Ok((submitted.run.run_id, fire))
}

pub(super) async fn fires(pool: &SqlitePool, schedule_id: &str, limit: u32) -> Result<Vec<ScheduleFire>> {
    let query = sqlx::query(sql::FIRES).bind(schedule_id).bind(i64::from(limit));
    all(pool, query, fire_from_row).await
}

pub(super) async fn active_runs(pool: &SqlitePool, schedule_ids: &[String]) -> Result<HashMap<String, u32>> {
    let mut counts = HashMap::new();
    for chunk in schedule_ids.chunks(sql::ACTIVE_RUNS_CHUNK) {
        let mut query = sql::active_runs::<sqlx::Sqlite>(chunk);
        let rows: Vec<(String, i64)> = db(query.build_query_as().persistent(false).fetch_all(pool).await)?;
        counts.extend(
            rows.into_iter()
                .map(|(id, count)| (id, u32::try_from(count).unwrap_or(u32::MAX))),
        );
    }
    Ok(counts)
}

pub(super) async fn queued(pool: &SqlitePool, limit: u32) -> Result<Vec<QueuedFire>> {
    let query = sqlx::query(sql::QUEUED_FIRES).bind(i64::from(limit));
    all(pool, query, queued_fire_from_row).await
}

pub(super) async fn start_queued(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    schedule_id: &str,
    fire_time: DateTime<Utc>,
    run: NewPipelineRun,
) -> Result<Option<ScheduleFire>> {
    match load_fire(conn, schedule_id, fire_time).await? {
        Some(fire) if fire.outcome == FireOutcome::Queued => {}
        _ => return Ok(None),
    }
    let (run_id, fire) = start_fire(conn, workspace, schedule_id, fire_time, run).await?;
    db(sqlx::query(sql::AFTER_QUEUED_START)
        .bind(&run_id)
        .bind(schedule_id)
        .execute(&mut *conn)
        .await)?;
    Ok(fire)
}

pub(super) async fn advance(
    conn: &mut SqliteConnection,
    schedule_id: &str,
    etag: &str,
    next_fire_at: Option<DateTime<Utc>>,
) -> Result<()> {
    db(sqlx::query(sql::ADVANCE_SCHEDULE)
        .bind(next_fire_at.map(time))
        .bind(schedule_id)
        .bind(etag)
        .execute(&mut *conn)
        .await)?;
    Ok(())
}

pub(super) async fn due_polls(pool: &SqlitePool, now: DateTime<Utc>, limit: u32) -> Result<Vec<PipelineSchedule>> {
    let query = sqlx::query(sql::DUE_POLLS).bind(time(now)).bind(i64::from(limit));
    all(pool, query, schedule_from_row).await
}

pub(super) async fn earliest_poll(pool: &SqlitePool) -> Result<Option<DateTime<Utc>>> {
    let text: Option<String> = db(sqlx::query_scalar(sql::EARLIEST_POLL).fetch_one(pool).await)?;
    text.map(|t| mlgrid_core::time::parse_rfc3339(&t).map_err(|_| StoreError::Corrupt(format!("next_poll_at `{t}`"))))
        .transpose()
}

/// A poll's outcome on its change schedule or its datastore watch: the watcher's id is
/// a UUID, so one of the two statements finds it.
pub(super) async fn after_poll(conn: &mut SqliteConnection, poll: PollDone) -> Result<()> {
    for statement in [sql::AFTER_POLL, crate::watch_sql::AFTER_WATCH_POLL] {
        db(sqlx::query(statement)
            .bind(time(poll.polled_at))
            .bind(time(poll.next_poll_at))
            .bind(&poll.error)
            .bind(i64::from(poll.failures))
            .bind(&poll.watcher_id)
            .execute(&mut *conn)
            .await)?;
    }
    Ok(())
}

pub(super) async fn seen_objects(pool: &SqlitePool, watcher_id: &str) -> Result<Vec<SeenObject>> {
    all(pool, sqlx::query(sql::SEEN_OBJECTS).bind(watcher_id), seen_from_row).await
}

fn size(object: &SeenObject) -> i64 {
    i64::try_from(object.size).unwrap_or(i64::MAX)
}

pub(super) async fn record_seen(conn: &mut SqliteConnection, watcher_id: &str, objects: &[SeenObject]) -> Result<()> {
    let at = now();
    for object in objects {
        db(sqlx::query(sql::UPSERT_SEEN)
            .bind(watcher_id)
            .bind(&object.path)
            .bind(&object.version)
            .bind(size(object))
            .bind(time(object.last_modified))
            .bind(&at)
            .execute(&mut *conn)
            .await)?;
    }
    Ok(())
}

pub(super) async fn forget_seen(conn: &mut SqliteConnection, watcher_id: &str, paths: &[String]) -> Result<()> {
    for path in paths {
        db(sqlx::query(sql::FORGET_SEEN)
            .bind(watcher_id)
            .bind(path)
            .execute(&mut *conn)
            .await)?;
    }
    Ok(())
}

/// Compare and set on a watcher's seen row: a new object's first version, or its next
/// one if the row still has the version read (`previous`). `false` when the row moved
/// meanwhile: another node, or an earlier pass, recorded this change.
pub(super) async fn move_seen(
    conn: &mut SqliteConnection,
    watcher_id: &str,
    previous: Option<&str>,
    seen: &SeenObject,
    at: &str,
) -> Result<bool> {
    let moved: Option<String> = match previous {
        None => db(sqlx::query_scalar(sql::INSERT_SEEN)
            .bind(watcher_id)
            .bind(&seen.path)
            .bind(&seen.version)
            .bind(size(seen))
            .bind(time(seen.last_modified))
            .bind(at)
            .fetch_optional(&mut *conn)
            .await)?,
        Some(previous) => db(sqlx::query_scalar(sql::CHANGE_SEEN)
            .bind(watcher_id)
            .bind(&seen.path)
            .bind(&seen.version)
            .bind(size(seen))
            .bind(time(seen.last_modified))
            .bind(at)
            .bind(previous)
            .fetch_optional(&mut *conn)
            .await)?,
    };
    Ok(moved.is_some())
}

pub(super) async fn record_change(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    change: NewChange,
    run: Option<NewPipelineRun>,
) -> Result<ChangeRecorded> {
    let at = now();
    let seen = &change.seen;
    if !move_seen(conn, &change.schedule_id, change.previous.as_deref(), seen, &at).await? {
        return Ok(ChangeRecorded { fire: None });
    }
    let inserted = sqlx::query(sql::INSERT_CHANGE_FIRE)
        .bind(&change.schedule_id)
        .bind(time(change.fire_time))
        .bind(workspace)
        .bind(change.outcome.as_str())
        .bind(&change.reason)
        .bind(&at)
        .bind(&seen.path);
    let mut recorded = unique(inserted.fetch_one(&mut *conn).await, || {
        format!(
            "schedule {} recorded a change at {} before",
            change.schedule_id,
            time(change.fire_time)
        )
    })
    .and_then(|row| fire_from_row(&row))?;
    if let Some(run) = run {
        let (_, started) = start_fire(conn, workspace, &change.schedule_id, change.fire_time, run).await?;
        recorded = started.expect("the change was recorded in this transaction");
    }
    db(sqlx::query(sql::AFTER_CHANGE)
        .bind(time(change.fire_time))
        .bind(&recorded.run_id)
        .bind(&recorded.reason)
        .bind(&change.schedule_id)
        .execute(&mut *conn)
        .await)?;
    Ok(ChangeRecorded { fire: Some(recorded) })
}

/// A batch of pruning: walks the next schedules after `after`, then deletes what they
/// let go (see [`sql::prune_fires`]), in the writer's transaction.
pub(super) async fn prune_fires(
    conn: &mut SqliteConnection,
    after: &str,
    schedules: u32,
    keep: u32,
    limit: u32,
) -> Result<PrunedFires> {
    let walked: Vec<String> = db(sqlx::query_scalar(sql::SCHEDULES_AFTER)
        .bind(after)
        .bind(i64::from(schedules))
        .fetch_all(&mut *conn)
        .await)?;
    let Some(last) = walked.last() else {
        return Ok(PrunedFires::default());
    };
    let deleted = db(sqlx::query(AssertSqlSafe(sql::prune_fires()))
        .bind(after)
        .bind(last)
        .bind(i64::from(keep))
        .bind(i64::from(limit))
        .execute(&mut *conn)
        .await)?;
    Ok(PrunedFires {
        fires: deleted.rows_affected(),
        walked_to: (walked.len() == schedules as usize).then(|| last.clone()),
    })
}
