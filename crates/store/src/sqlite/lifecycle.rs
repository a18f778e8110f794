//! The ML lifecycle on SQLite. Writes run inside the writer's transaction, so a change
//! and the event it raises commit together or not at all.

use chrono::Utc;
use mlgrid_core::lifecycle::RunStatus;
use mlgrid_core::time::format_event_time;
use sqlx::SqliteConnection;

use super::db::{db, unique_violation};
use super::events::{raise, workspace_topic};
use crate::error::{Result, StoreError};
use crate::etag::{check_etag, check_put_etag, new_etag};
use crate::lifecycle::*;
use crate::lifecycle_writes::{
    apply_model_change, apply_run_change, check_deployable, check_deployment, check_metrics, check_start,
    missing_parent, model_deployed, model_registered, run_id, run_status_event, tags_json,
};
use crate::model::SourceId;
use crate::rows::{RUN_SELECT, dataset_from_row, deployment_from_row, model_from_row, run_from_row};

fn now() -> String {
    format_event_time(Utc::now())
}

async fn load_run(conn: &mut SqliteConnection, workspace: SourceId, run_id: &str) -> Result<Run> {
    let row = db(sqlx::query(sqlx::AssertSqlSafe(format!(
        "{RUN_SELECT} WHERE r.source_id = ? AND r.run_id = ?"
    )))
    .bind(workspace)
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await)?;
    row.as_ref()
        .map(run_from_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}`")))
}

/// The next version of a model or dataset name.
async fn next_version(conn: &mut SqliteConnection, workspace: SourceId, kind: &str, name: &str) -> Result<i64> {
    db(sqlx::query_scalar(
        "INSERT INTO asset_versions (source_id, kind, name, last_version) VALUES (?, ?, ?, 1) \
         ON CONFLICT (source_id, kind, name) DO UPDATE SET last_version = last_version + 1 RETURNING last_version",
    )
    .bind(workspace)
    .bind(kind)
    .bind(name)
    .fetch_one(&mut *conn)
    .await)
}

pub(super) async fn start_run(conn: &mut SqliteConnection, workspace: SourceId, new: NewRun) -> Result<Run> {
    workspace_topic(conn, workspace).await?;
    check_start(&new)?;
    if let Some(parent) = &new.parent_run_id {
        let exists: Option<i64> = db(
            sqlx::query_scalar("SELECT 1 FROM runs WHERE source_id = ? AND run_id = ?")
                .bind(workspace)
                .bind(parent)
                .fetch_optional(&mut *conn)
                .await,
        )?;
        if exists.is_none() {
            return Err(missing_parent(parent));
        }
    }
    let created = now();
    db(sqlx::query("INSERT INTO experiments (source_id, id, name, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (source_id, name) DO NOTHING")
        .bind(workspace)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&new.experiment_name)
        .bind(&created)
        .execute(&mut *conn)
        .await)?;
    let experiment_id: String = db(
        sqlx::query_scalar("SELECT id FROM experiments WHERE source_id = ? AND name = ?")
            .bind(workspace)
            .bind(&new.experiment_name)
            .fetch_one(&mut *conn)
            .await,
    )?;
    let run_id = run_id(&new);
    let start_time = (new.status == RunStatus::Running).then(|| created.clone());
    let etag = new_etag();
    db(sqlx::query(
        "INSERT INTO runs (source_id, run_id, experiment_id, parent_run_id, run_type, status, tags, properties, created_at, start_time, etag) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
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
    .await)
    .map_err(|e| match e {
        StoreError::Backend(ref source) if source.downcast_ref::<sqlx::Error>().is_some_and(unique_violation) => {
            StoreError::Conflict(format!("run `{run_id}` already exists"))
        }
        other => other,
    })?;
    load_run(conn, workspace, &run_id).await
}

pub(super) async fn change_run(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    run_id: &str,
    change: RunChange,
    if_match: Option<String>,
) -> Result<Run> {
    let mut run = load_run(conn, workspace, run_id).await?;
    check_etag(&format!("run `{run_id}`"), &run.etag, if_match.as_deref())?;
    let new_status = apply_run_change(&mut run, change, Utc::now())?;
    db(sqlx::query("UPDATE runs SET status = ?, tags = ?, properties = ?, error = ?, start_time = ?, end_time = ?, etag = ? WHERE source_id = ? AND run_id = ?")
        .bind(run.status.as_str())
        .bind(tags_json(&run.tags))
        .bind(tags_json(&run.properties))
        .bind(&run.error)
        .bind(run.start_time.map(format_event_time))
        .bind(run.end_time.map(format_event_time))
        .bind(&run.etag)
        .bind(workspace)
        .bind(run_id)
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

pub(super) async fn register_model(conn: &mut SqliteConnection, workspace: SourceId, new: NewModel) -> Result<Model> {
    workspace_topic(conn, workspace).await?;
    let version = next_version(conn, workspace, "model", &new.name).await?;
    let created = now();
    let etag = new_etag();
    let row = db(sqlx::query(
        "INSERT INTO models (source_id, name, version, path, description, tags, properties, created_at, updated_at, etag) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(workspace)
    .bind(&new.name)
    .bind(version)
    .bind(&new.path)
    .bind(&new.description)
    .bind(tags_json(&new.tags))
    .bind(tags_json(&new.properties))
    .bind(&created)
    .bind(&created)
    .bind(&etag)
    .fetch_one(&mut *conn)
    .await)?;
    let model = model_from_row(&row)?;
    let event = model_registered(&model);
    raise(conn, workspace, &event, &etag).await?;
    Ok(model)
}

async fn load_model(conn: &mut SqliteConnection, workspace: SourceId, name: &str, version: u64) -> Result<Model> {
    let row = db(
        sqlx::query("SELECT * FROM models WHERE source_id = ? AND name = ? AND version = ?")
            .bind(workspace)
            .bind(name)
            .bind(version as i64)
            .fetch_optional(&mut *conn)
            .await,
    )?;
    row.as_ref()
        .map(model_from_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("model `{name}:{version}`")))
}

pub(super) async fn change_model(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    name: &str,
    version: u64,
    change: ModelChange,
    if_match: Option<String>,
) -> Result<Model> {
    let mut model = load_model(conn, workspace, name, version).await?;
    check_etag(&format!("model `{name}:{version}`"), &model.etag, if_match.as_deref())?;
    apply_model_change(&mut model, change, Utc::now());
    db(sqlx::query("UPDATE models SET description = ?, tags = ?, properties = ?, archived = ?, updated_at = ?, etag = ? WHERE source_id = ? AND name = ? AND version = ?")
        .bind(&model.description)
        .bind(tags_json(&model.tags))
        .bind(tags_json(&model.properties))
        .bind(model.archived)
        .bind(format_event_time(model.updated_at))
        .bind(&model.etag)
        .bind(workspace)
        .bind(name)
        .bind(version as i64)
        .execute(&mut *conn)
        .await)?;
    Ok(model)
}

async fn load_deployment(conn: &mut SqliteConnection, workspace: SourceId, name: &str) -> Result<Option<Deployment>> {
    let row = db(
        sqlx::query("SELECT * FROM deployments WHERE source_id = ? AND name = ?")
            .bind(workspace)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await,
    )?;
    row.as_ref().map(deployment_from_row).transpose()
}

pub(super) async fn deploy(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    new: NewDeployment,
    if_match: Option<String>,
) -> Result<(Deployment, bool)> {
    workspace_topic(conn, workspace).await?;
    check_deployment(&new)?;
    for model in &new.models {
        let archived: Option<bool> = db(sqlx::query_scalar(
            "SELECT archived FROM models WHERE source_id = ? AND name = ? AND version = ?",
        )
        .bind(workspace)
        .bind(&model.name)
        .bind(model.version as i64)
        .fetch_optional(&mut *conn)
        .await)?;
        check_deployable(model, archived)?;
    }
    let existing = load_deployment(conn, workspace, &new.name).await?;
    let what = format!("deployment `{}`", new.name);
    check_put_etag(&what, existing.as_ref().map(|e| e.etag.as_str()), if_match.as_deref())?;
    let at = now();
    let etag = new_etag();
    let models = mlgrid_core::lifecycle::model_ids(&new.models);
    let row = db(sqlx::query(
        "INSERT INTO deployments (source_id, name, compute_type, models, tags, properties, created_at, updated_at, etag) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (source_id, name) DO UPDATE SET compute_type = excluded.compute_type, models = excluded.models, \
         tags = excluded.tags, properties = excluded.properties, updated_at = excluded.updated_at, etag = excluded.etag \
         RETURNING *",
    )
    .bind(workspace)
    .bind(&new.name)
    .bind(new.compute_type.as_str())
    .bind(&models)
    .bind(tags_json(&new.tags))
    .bind(tags_json(&new.properties))
    .bind(&at)
    .bind(&at)
    .bind(&etag)
    .fetch_one(&mut *conn)
    .await)?;
    let deployment = deployment_from_row(&row)?;
    let event = model_deployed(&deployment, models);
    raise(conn, workspace, &event, &etag).await?;
    Ok((deployment, existing.is_none()))
}

pub(super) async fn delete_deployment(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    name: &str,
    if_match: Option<String>,
) -> Result<()> {
    let current = load_deployment(conn, workspace, name)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("deployment `{name}`")))?;
    check_etag(&format!("deployment `{name}`"), &current.etag, if_match.as_deref())?;
    db(sqlx::query("DELETE FROM deployments WHERE source_id = ? AND name = ?")
        .bind(workspace)
        .bind(name)
        .execute(&mut *conn)
        .await)?;
    Ok(())
}

pub(super) async fn register_dataset(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    new: NewDataset,
) -> Result<Dataset> {
    workspace_topic(conn, workspace).await?;
    let version = next_version(conn, workspace, "dataset", &new.name).await?;
    let row = db(sqlx::query(
        "INSERT INTO datasets (source_id, name, version, path, description, tags, created_at, etag) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(workspace)
    .bind(&new.name)
    .bind(version)
    .bind(&new.path)
    .bind(&new.description)
    .bind(tags_json(&new.tags))
    .bind(now())
    .bind(new_etag())
    .fetch_one(&mut *conn)
    .await)?;
    dataset_from_row(&row)
}
