//! The ML lifecycle on SQLite. Writes run inside the writer's transaction, so a change
//! and the event it raises commit together or not at all.

use chrono::Utc;
use mlgrid_core::lifecycle::{RunFacts, RunStatus, run_event};
use mlgrid_core::ml::{MlEvent, ModelDeployed, ModelRegistered, Tags};
use mlgrid_core::time::format_event_time;
use sqlx::SqliteConnection;

use super::db::{db, unique_violation};
use super::events::{raise, workspace_topic};
use crate::error::{Result, StoreError};
use crate::etag::{check_etag, check_put_etag, new_etag};
use crate::lifecycle::*;
use crate::model::SourceId;
use crate::rows::{RUN_SELECT, dataset_from_row, deployment_from_row, model_from_row, run_from_row};

fn now() -> String {
    format_event_time(Utc::now())
}

fn json(tags: &Tags) -> String {
    serde_json::to_string(tags).expect("string maps serialise")
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
    if new.status.is_terminal() {
        return Err(StoreError::Invalid(format!(
            "a run starts as NotStarted, Queued or Running, not {}",
            new.status
        )));
    }
    if let Some(parent) = &new.parent_run_id {
        let exists: Option<i64> = db(
            sqlx::query_scalar("SELECT 1 FROM runs WHERE source_id = ? AND run_id = ?")
                .bind(workspace)
                .bind(parent)
                .fetch_optional(&mut *conn)
                .await,
        )?;
        if exists.is_none() {
            return Err(StoreError::Invalid(format!(
                "parent run `{parent}` does not exist in this workspace"
            )));
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
    let run_id = new.run_id.clone().unwrap_or_else(|| {
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!(
            "{}_{}_{}",
            new.experiment_name,
            Utc::now().timestamp_millis(),
            &random[..8]
        )
    });
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
    .bind(json(&new.tags))
    .bind(json(&new.properties))
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
    let new_status = change.status.filter(|to| *to != run.status || run.status.is_terminal());
    if let Some(to) = new_status {
        run.status
            .check_transition(to)
            .map_err(|e| StoreError::Conflict(format!("run `{run_id}`: {e}")))?;
        let at = Utc::now();
        if to == RunStatus::Running && run.start_time.is_none() {
            run.start_time = Some(at);
        }
        if to.is_terminal() {
            run.end_time = Some(at);
        }
        run.status = to;
    }
    if change.error.is_some() {
        run.error = change.error;
    }
    apply_patch(&mut run.tags, &change.tags);
    apply_patch(&mut run.properties, &change.properties);
    run.etag = new_etag();
    db(sqlx::query("UPDATE runs SET status = ?, tags = ?, properties = ?, error = ?, start_time = ?, end_time = ?, etag = ? WHERE source_id = ? AND run_id = ?")
        .bind(run.status.as_str())
        .bind(json(&run.tags))
        .bind(json(&run.properties))
        .bind(&run.error)
        .bind(run.start_time.map(format_event_time))
        .bind(run.end_time.map(format_event_time))
        .bind(&run.etag)
        .bind(workspace)
        .bind(run_id)
        .execute(&mut *conn)
        .await)?;
    if let Some(to) = new_status {
        let facts = RunFacts {
            experiment_id: run.experiment_id.clone(),
            experiment_name: run.experiment_name.clone(),
            run_id: run.run_id.clone(),
            run_type: run.run_type.clone(),
            tags: run.tags.clone(),
            properties: run.properties.clone(),
        };
        if let Some(event) = run_event(&facts, to) {
            raise(conn, workspace, &event, &run.etag).await?;
        }
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
    if run.status.is_terminal() {
        return Err(StoreError::Conflict(format!(
            "run `{run_id}` is {}; metrics can be logged only before a run ends",
            run.status
        )));
    }
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
    .bind(json(&new.tags))
    .bind(json(&new.properties))
    .bind(&created)
    .bind(&created)
    .bind(&etag)
    .fetch_one(&mut *conn)
    .await)?;
    let model = model_from_row(&row)?;
    let event = MlEvent::ModelRegistered(ModelRegistered {
        model_name: model.name.clone(),
        model_version: model.version,
        model_tags: model.tags.clone(),
        model_properties: model.properties.clone(),
    });
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
    if change.description.is_some() {
        model.description = change.description;
    }
    apply_patch(&mut model.tags, &change.tags);
    apply_patch(&mut model.properties, &change.properties);
    if let Some(archived) = change.archived {
        model.archived = archived;
    }
    model.etag = new_etag();
    model.updated_at = Utc::now();
    db(sqlx::query("UPDATE models SET description = ?, tags = ?, properties = ?, archived = ?, updated_at = ?, etag = ? WHERE source_id = ? AND name = ? AND version = ?")
        .bind(&model.description)
        .bind(json(&model.tags))
        .bind(json(&model.properties))
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
    if new.models.is_empty() {
        return Err(StoreError::Invalid(
            "a deployment needs at least one model (NAME:VERSION)".to_owned(),
        ));
    }
    for model in &new.models {
        let archived: Option<bool> = db(sqlx::query_scalar(
            "SELECT archived FROM models WHERE source_id = ? AND name = ? AND version = ?",
        )
        .bind(workspace)
        .bind(&model.name)
        .bind(model.version as i64)
        .fetch_optional(&mut *conn)
        .await)?;
        match archived {
            None => {
                return Err(StoreError::Invalid(format!(
                    "model `{model}` does not exist in this workspace; register it first or name an existing version"
                )));
            }
            Some(true) => {
                return Err(StoreError::Invalid(format!(
                    "model `{model}` is archived; deploy another version or restore it"
                )));
            }
            Some(false) => {}
        }
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
    .bind(json(&new.tags))
    .bind(json(&new.properties))
    .bind(&at)
    .bind(&at)
    .bind(&etag)
    .fetch_one(&mut *conn)
    .await)?;
    let deployment = deployment_from_row(&row)?;
    let event = MlEvent::ModelDeployed(ModelDeployed {
        service_name: deployment.name.clone(),
        service_compute_type: deployment.compute_type.as_str().to_owned(),
        model_ids: models,
        service_tags: deployment.tags.clone(),
        service_properties: deployment.properties.clone(),
    });
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
    .bind(json(&new.tags))
    .bind(now())
    .bind(new_etag())
    .fetch_one(&mut *conn)
    .await)?;
    dataset_from_row(&row)
}
