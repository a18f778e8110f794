//! Experiments, runs and their metrics on SQLite. Writes run inside the writer's
//! transaction, so a status change and the event it raises commit together or not at all.

use chrono::Utc;
use mlgrid_core::lifecycle::RunStatus;
use mlgrid_core::time::format_event_time;
use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool};

use super::db::{all, db, now, optional, unique};
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

pub(super) async fn load_run(conn: &mut SqliteConnection, workspace: SourceId, run_id: &str) -> Result<Run> {
    let row = db(sqlx::query(sql::RUN)
        .bind(workspace)
        .bind(run_id)
        .fetch_optional(&mut *conn)
        .await)?;
    row.as_ref()
        .map(run_from_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}`")))
}

pub(super) async fn start(conn: &mut SqliteConnection, workspace: SourceId, new: NewRun) -> Result<Run> {
    workspace_topic(conn, workspace).await?;
    check_start(&new)?;
    if let Some(parent) = &new.parent_run_id {
        let exists: Option<i64> = db(sqlx::query_scalar(sql::RUN_EXISTS)
            .bind(workspace)
            .bind(parent)
            .fetch_optional(&mut *conn)
            .await)?;
        if exists.is_none() {
            return Err(missing_parent(parent));
        }
    }
    let created = now();
    db(sqlx::query(sql::INSERT_EXPERIMENT)
        .bind(workspace)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&new.experiment_name)
        .bind(&created)
        .execute(&mut *conn)
        .await)?;
    let experiment_id: String = db(sqlx::query_scalar(sql::EXPERIMENT_ID)
        .bind(workspace)
        .bind(&new.experiment_name)
        .fetch_one(&mut *conn)
        .await)?;
    let run_id = run_id(&new);
    let start_time = (new.status == RunStatus::Running).then(|| created.clone());
    let etag = new_etag();
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
            .bind(&created)
            .bind(&start_time)
            .bind(&etag)
            .execute(&mut *conn)
            .await,
        || format!("run `{run_id}` already exists"),
    )?;
    load_run(conn, workspace, &run_id).await
}

pub(super) async fn change(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    run_id: &str,
    change: RunChange,
    if_match: Option<String>,
) -> Result<Run> {
    let run = load_run(conn, workspace, run_id).await?;
    check_etag(&format!("run `{run_id}`"), &run.etag, if_match.as_deref())?;
    save(conn, workspace, run, change).await
}

/// Moves a run to `status` (with why, when it fails or is cancelled) as [`change`] does,
/// raising the same events; pipelines move their runs so. A run in that status already,
/// or ended (by a person, through [`change`]), is left as it is.
pub(super) async fn move_to(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    run_id: &str,
    status: RunStatus,
    error: Option<String>,
) -> Result<Run> {
    let run = load_run(conn, workspace, run_id).await?;
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

/// Applies a change to a loaded run, writes it, and raises the event its new status
/// calls for, in the current transaction.
async fn save(conn: &mut SqliteConnection, workspace: SourceId, mut run: Run, change: RunChange) -> Result<Run> {
    let new_status = apply_run_change(&mut run, change, Utc::now())?;
    db(sqlx::query(sql::UPDATE_RUN)
        .bind(run.status.as_str())
        .bind(tags_json(&run.tags))
        .bind(tags_json(&run.properties))
        .bind(&run.error)
        .bind(run.start_time.map(format_event_time))
        .bind(run.end_time.map(format_event_time))
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

pub(super) async fn log_metrics(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    run_id: &str,
    metrics: Vec<NewMetric>,
) -> Result<()> {
    let run = load_run(conn, workspace, run_id).await?;
    check_metrics(&run)?;
    let logged = now();
    for metric in metrics {
        db(sqlx::query(
            "INSERT INTO run_metrics (source_id, run_id, name, value, step, logged_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(workspace)
        .bind(run_id)
        .bind(&metric.name)
        .bind(metric.value)
        .bind(metric.step as i64)
        .bind(&logged)
        .execute(&mut *conn)
        .await)?;
    }
    Ok(())
}

pub(super) async fn experiments(pool: &SqlitePool, workspace: SourceId) -> Result<Vec<Experiment>> {
    let query = sqlx::query(sql::EXPERIMENTS).bind(workspace);
    all(pool, query, experiment_from_row).await
}

pub(super) async fn get(pool: &SqlitePool, workspace: SourceId, run_id: &str) -> Result<Run> {
    let query = sqlx::query(sql::RUN);
    optional(pool, query.bind(workspace).bind(run_id), run_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}`")))
}

pub(super) async fn list(pool: &SqlitePool, workspace: SourceId, experiment: Option<&str>) -> Result<Vec<Run>> {
    let query = sqlx::query(AssertSqlSafe(format!(
        "{RUN_SELECT} WHERE r.source_id = ? AND (? IS NULL OR e.name = ?) ORDER BY r.created_at, r.run_id"
    )));
    all(
        pool,
        query.bind(workspace).bind(experiment).bind(experiment),
        run_from_row,
    )
    .await
}

pub(super) async fn metrics(pool: &SqlitePool, workspace: SourceId, run_id: &str) -> Result<Vec<Metric>> {
    get(pool, workspace, run_id).await?;
    let query = sqlx::query("SELECT * FROM run_metrics WHERE source_id = ? AND run_id = ? ORDER BY name, step, rowid");
    all(pool, query.bind(workspace).bind(run_id), metric_from_row).await
}
