//! Experiments, runs and their metrics on PostgreSQL. A run's status changes lock the
//! run's row, so concurrent changes from any node apply one after the other (and a
//! completion raises its event once).

use mlgrid_core::lifecycle::RunStatus;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use super::db::{all, begin, commit, db, now, optional, unique};
use super::events::{raise, workspace_topic};
use crate::error::{Result, StoreError};
use crate::etag::{check_etag, new_etag};
use crate::lifecycle::*;
use crate::lifecycle_writes::{
    apply_run_change, check_metrics, check_start, missing_parent, run_id, run_status_event, tags_json,
};
use crate::model::SourceId;
use crate::rows::{experiment_from_row, metric_from_row, run_from_row};
use crate::sql::{self, RUN_SELECT};

/// How a run is read inside a write: `FOR UPDATE` before changing it, `FOR SHARE`
/// before relying on its status.
#[derive(Clone, Copy)]
pub(super) enum Lock {
    Update,
    Share,
}

pub(super) async fn load_run(conn: &mut PgConnection, workspace: SourceId, run_id: &str, lock: Lock) -> Result<Run> {
    let lock = match lock {
        Lock::Update => "FOR UPDATE OF r",
        Lock::Share => "FOR SHARE OF r",
    };
    let query = sqlx::query(AssertSqlSafe(format!(
        "{RUN_SELECT} WHERE r.source_id = $1 AND r.run_id = $2 {lock}"
    )));
    optional(&mut *conn, query.bind(workspace).bind(run_id), run_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}`")))
}

pub(super) async fn experiments(pool: &PgPool, workspace: SourceId) -> Result<Vec<Experiment>> {
    let query = sqlx::query(sql::EXPERIMENTS).bind(workspace);
    all(pool, query, experiment_from_row).await
}

pub(super) async fn start(pool: &PgPool, workspace: SourceId, new: NewRun) -> Result<Run> {
    let mut tx = begin(pool).await?;
    let run = start_in(&mut tx, workspace, new).await?;
    commit(tx).await?;
    Ok(run)
}

/// Starts a run in the current transaction (see [`start`]); pipelines start theirs so.
pub(super) async fn start_in(conn: &mut PgConnection, workspace: SourceId, new: NewRun) -> Result<Run> {
    workspace_topic(conn, workspace).await?;
    check_start(&new)?;
    if let Some(parent) = &new.parent_run_id {
        let exists: Option<i32> = db(sqlx::query_scalar(sql::RUN_EXISTS)
            .bind(workspace)
            .bind(parent)
            .fetch_optional(&mut *conn)
            .await)?;
        if exists.is_none() {
            return Err(missing_parent(parent));
        }
    }
    let created = now();
    // A concurrent first use of the name waits here for the other insert, then reads it.
    db(sqlx::query(sql::INSERT_EXPERIMENT)
        .bind(workspace)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&new.experiment_name)
        .bind(created)
        .execute(&mut *conn)
        .await)?;
    let experiment_id: String = db(sqlx::query_scalar(sql::EXPERIMENT_ID)
        .bind(workspace)
        .bind(&new.experiment_name)
        .fetch_one(&mut *conn)
        .await)?;
    let run_id = run_id(&new);
    let start_time = (new.status == RunStatus::Running).then_some(created);
    unique(
        sqlx::query(sql::INSERT_RUN)
            .bind(workspace)
            .bind(&run_id)
            .bind(&experiment_id)
            .bind(&new.parent_run_id)
            .bind(&new.run_type)
            .bind(new.status.as_str())
            .bind(tags_json(&new.tags))
            .bind(tags_json(&new.properties))
            .bind(created)
            .bind(start_time)
            .bind(new_etag())
            .execute(&mut *conn)
            .await,
        || format!("run `{run_id}` already exists"),
    )?;
    load_run(conn, workspace, &run_id, Lock::Share).await
}

pub(super) async fn get(pool: &PgPool, workspace: SourceId, run_id: &str) -> Result<Run> {
    let query = sqlx::query(sql::RUN);
    optional(pool, query.bind(workspace).bind(run_id), run_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}`")))
}

pub(super) async fn list(pool: &PgPool, workspace: SourceId, experiment: Option<&str>) -> Result<Vec<Run>> {
    let query = sqlx::query(AssertSqlSafe(format!(
        "{RUN_SELECT} WHERE r.source_id = $1 AND ($2::text IS NULL OR e.name = $2) ORDER BY r.created_at, r.run_id"
    )));
    all(pool, query.bind(workspace).bind(experiment), run_from_row).await
}

pub(super) async fn change(
    pool: &PgPool,
    workspace: SourceId,
    run_id: &str,
    change: RunChange,
    if_match: Option<String>,
) -> Result<Run> {
    let mut tx = begin(pool).await?;
    let run = load_run(&mut tx, workspace, run_id, Lock::Update).await?;
    check_etag(&format!("run `{run_id}`"), &run.etag, if_match.as_deref())?;
    let run = save(&mut tx, workspace, run, change).await?;
    commit(tx).await?;
    Ok(run)
}

/// Moves a run to `status` (with why, when it fails or is cancelled) as [`change`] does,
/// raising the same events, in the current transaction; pipelines move their runs so. A
/// run in that status already, or ended (by a person, through [`change`]), is left as
/// it is.
pub(super) async fn move_to(
    conn: &mut PgConnection,
    workspace: SourceId,
    run_id: &str,
    status: RunStatus,
    error: Option<String>,
) -> Result<Run> {
    let run = load_run(conn, workspace, run_id, Lock::Update).await?;
    if run.status == status || run.status.is_terminal() {
        return Ok(run);
    }
    let change = RunChange {
        status: Some(status),
        error,
        ..RunChange::default()
    };
    save(conn, workspace, run, change).await
}

/// Applies a change to a run loaded `FOR UPDATE`, writes it, and raises the event its
/// new status calls for, in the current transaction.
async fn save(conn: &mut PgConnection, workspace: SourceId, mut run: Run, change: RunChange) -> Result<Run> {
    let new_status = apply_run_change(&mut run, change, now())?;
    db(sqlx::query(sql::UPDATE_RUN)
        .bind(run.status.as_str())
        .bind(tags_json(&run.tags))
        .bind(tags_json(&run.properties))
        .bind(&run.error)
        .bind(run.start_time)
        .bind(run.end_time)
        .bind(&run.etag)
        .bind(workspace)
        .bind(&run.run_id)
        .execute(&mut *conn)
        .await)?;
    if let Some(event) = new_status.and_then(|to| run_status_event(&run, to)) {
        raise(conn, workspace, &event, &run.etag).await?;
    }
    Ok(run)
}

/// Logs metrics on a run that has not ended; the run's row is share-locked meanwhile,
/// so it cannot end between the check and the inserts.
pub(super) async fn log_metrics(
    pool: &PgPool,
    workspace: SourceId,
    run_id: &str,
    metrics: Vec<NewMetric>,
) -> Result<()> {
    let mut tx = begin(pool).await?;
    let run = load_run(&mut tx, workspace, run_id, Lock::Share).await?;
    check_metrics(&run)?;
    let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    let values: Vec<f64> = metrics.iter().map(|m| m.value).collect();
    let steps: Vec<i64> = metrics.iter().map(|m| m.step as i64).collect();
    db(sqlx::query(
        "INSERT INTO run_metrics (source_id, run_id, name, value, step, logged_at) \
         SELECT $1, $2, m.name, m.value, m.step, $3 \
         FROM unnest($4::text[], $5::float8[], $6::bigint[]) WITH ORDINALITY AS m(name, value, step, n) ORDER BY m.n",
    )
    .bind(workspace)
    .bind(run_id)
    .bind(now())
    .bind(names)
    .bind(values)
    .bind(steps)
    .execute(&mut *tx)
    .await)?;
    commit(tx).await
}

pub(super) async fn metrics(pool: &PgPool, workspace: SourceId, run_id: &str) -> Result<Vec<Metric>> {
    get(pool, workspace, run_id).await?;
    let query = sqlx::query("SELECT * FROM run_metrics WHERE source_id = $1 AND run_id = $2 ORDER BY name, step, id");
    all(pool, query.bind(workspace).bind(run_id), metric_from_row).await
}
