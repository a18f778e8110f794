//! Registered models, deployments and datasets on SQLite. Writes run inside the
//! writer's transaction, so a registration and the event it raises commit together or
//! not at all; versions come from a per-name counter row.

use chrono::Utc;
use mlgrid_core::time::format_event_time;
use sqlx::{SqliteConnection, SqlitePool};

use super::db::{all, db, now, optional, to_i64};
use super::events::{raise, workspace_topic};
use crate::error::{Result, StoreError};
use crate::etag::{check_etag, check_put_etag, new_etag};
use crate::lifecycle::*;
use crate::lifecycle_writes::{
    apply_model_change, check_deployable, check_deployment, model_deployed, model_registered, tags_json,
};
use crate::model::SourceId;
use crate::rows::{dataset_from_row, deployment_from_row, model_from_row};
use crate::sql;

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

pub(super) async fn register_model(conn: &mut SqliteConnection, workspace: SourceId, new: NewModel) -> Result<Model> {
    workspace_topic(conn, workspace).await?;
    let version = next_version(conn, workspace, "model", &new.name).await?;
    let created = now();
    let etag = new_etag();
    let row = db(sqlx::query(sql::INSERT_MODEL)
        .bind(workspace)
        .bind(&new.name)
        .bind(version)
        .bind(&new.path)
        .bind(&new.description)
        .bind(tags_json(&new.tags))
        .bind(tags_json(&new.properties))
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
    db(sqlx::query(sql::UPDATE_MODEL)
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
    let row = db(sqlx::query(sql::DEPLOYMENT)
        .bind(workspace)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await)?;
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
    let row = db(sqlx::query(sql::UPSERT_DEPLOYMENT)
        .bind(workspace)
        .bind(&new.name)
        .bind(new.compute_type.as_str())
        .bind(&models)
        .bind(tags_json(&new.tags))
        .bind(tags_json(&new.properties))
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
    db(sqlx::query(sql::DELETE_DEPLOYMENT)
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
    let row = db(sqlx::query(sql::INSERT_DATASET)
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

pub(super) async fn model(pool: &SqlitePool, workspace: SourceId, name: &str, version: Option<u64>) -> Result<Model> {
    let query = sqlx::query(
        "SELECT * FROM models WHERE source_id = ? AND name = ? AND (version = ? OR (? IS NULL AND archived = 0)) \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(workspace)
    .bind(name)
    .bind(version.map(to_i64))
    .bind(version.map(to_i64));
    optional(pool, query, model_from_row).await?.ok_or_else(|| {
        StoreError::NotFound(match version {
            Some(v) => format!("model `{name}:{v}`"),
            None => format!("a model `{name}` that is not archived"),
        })
    })
}

pub(super) async fn list_models(
    pool: &SqlitePool,
    workspace: SourceId,
    name: Option<&str>,
    include_archived: bool,
) -> Result<Vec<Model>> {
    let query = sqlx::query(
        "SELECT * FROM models WHERE source_id = ? AND (? IS NULL OR name = ?) AND (? OR archived = 0) \
         ORDER BY name, version",
    )
    .bind(workspace)
    .bind(name)
    .bind(name)
    .bind(include_archived);
    all(pool, query, model_from_row).await
}

pub(super) async fn deployment(pool: &SqlitePool, workspace: SourceId, name: &str) -> Result<Deployment> {
    let query = sqlx::query(sql::DEPLOYMENT).bind(workspace).bind(name);
    optional(pool, query, deployment_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("deployment `{name}`")))
}

pub(super) async fn list_deployments(pool: &SqlitePool, workspace: SourceId) -> Result<Vec<Deployment>> {
    let query = sqlx::query(sql::DEPLOYMENTS).bind(workspace);
    all(pool, query, deployment_from_row).await
}

pub(super) async fn dataset(
    pool: &SqlitePool,
    workspace: SourceId,
    name: &str,
    version: Option<u64>,
) -> Result<Dataset> {
    let query = sqlx::query(
        "SELECT * FROM datasets WHERE source_id = ? AND name = ? AND (? IS NULL OR version = ?) \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(workspace)
    .bind(name)
    .bind(version.map(to_i64))
    .bind(version.map(to_i64));
    optional(pool, query, dataset_from_row).await?.ok_or_else(|| {
        StoreError::NotFound(match version {
            Some(v) => format!("dataset `{name}` version {v}"),
            None => format!("dataset `{name}`"),
        })
    })
}

pub(super) async fn list_datasets(pool: &SqlitePool, workspace: SourceId, name: Option<&str>) -> Result<Vec<Dataset>> {
    let query =
        sqlx::query("SELECT * FROM datasets WHERE source_id = ? AND (? IS NULL OR name = ?) ORDER BY name, version")
            .bind(workspace)
            .bind(name)
            .bind(name);
    all(pool, query, dataset_from_row).await
}
