//! Registered models, deployments and datasets on PostgreSQL. Versions come from a
//! per-name counter row (an upsert, atomic under its row lock), so concurrent
//! registrations on any node never share a version.

use sqlx::{PgConnection, PgPool};

use super::db::{all, begin, commit, db, now, optional, to_i64};
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
async fn next_version(conn: &mut PgConnection, workspace: SourceId, kind: &str, name: &str) -> Result<i64> {
    db(sqlx::query_scalar(
        "INSERT INTO asset_versions (source_id, kind, name, last_version) VALUES ($1, $2, $3, 1) \
         ON CONFLICT (source_id, kind, name) DO UPDATE SET last_version = asset_versions.last_version + 1 \
         RETURNING last_version",
    )
    .bind(workspace)
    .bind(kind)
    .bind(name)
    .fetch_one(&mut *conn)
    .await)
}

pub(super) async fn register_model(pool: &PgPool, workspace: SourceId, new: NewModel) -> Result<Model> {
    let mut tx = begin(pool).await?;
    workspace_topic(&mut tx, workspace).await?;
    let version = next_version(&mut tx, workspace, "model", &new.name).await?;
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
        .bind(created)
        .bind(&etag)
        .fetch_one(&mut *tx)
        .await)?;
    let model = model_from_row(&row)?;
    let event = model_registered(&model);
    raise(&mut tx, workspace, &event, &etag).await?;
    commit(tx).await?;
    Ok(model)
}

pub(super) async fn model(pool: &PgPool, workspace: SourceId, name: &str, version: Option<u64>) -> Result<Model> {
    let query = sqlx::query(
        "SELECT * FROM models WHERE source_id = $1 AND name = $2 \
         AND (version = $3 OR ($3::bigint IS NULL AND NOT archived)) ORDER BY version DESC LIMIT 1",
    )
    .bind(workspace)
    .bind(name)
    .bind(version.map(to_i64));
    optional(pool, query, model_from_row).await?.ok_or_else(|| {
        StoreError::NotFound(match version {
            Some(v) => format!("model `{name}:{v}`"),
            None => format!("a model `{name}` that is not archived"),
        })
    })
}

pub(super) async fn list_models(
    pool: &PgPool,
    workspace: SourceId,
    name: Option<&str>,
    include_archived: bool,
) -> Result<Vec<Model>> {
    let query = sqlx::query(
        "SELECT * FROM models WHERE source_id = $1 AND ($2::text IS NULL OR name = $2) AND ($3 OR NOT archived) \
         ORDER BY name, version",
    )
    .bind(workspace)
    .bind(name)
    .bind(include_archived);
    all(pool, query, model_from_row).await
}

pub(super) async fn change_model(
    pool: &PgPool,
    workspace: SourceId,
    name: &str,
    version: u64,
    change: ModelChange,
    if_match: Option<String>,
) -> Result<Model> {
    let mut tx = begin(pool).await?;
    let query = sqlx::query("SELECT * FROM models WHERE source_id = $1 AND name = $2 AND version = $3 FOR UPDATE")
        .bind(workspace)
        .bind(name)
        .bind(to_i64(version));
    let mut model = optional(&mut *tx, query, model_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("model `{name}:{version}`")))?;
    check_etag(&format!("model `{name}:{version}`"), &model.etag, if_match.as_deref())?;
    apply_model_change(&mut model, change, now());
    db(sqlx::query(sql::UPDATE_MODEL)
        .bind(&model.description)
        .bind(tags_json(&model.tags))
        .bind(tags_json(&model.properties))
        .bind(model.archived)
        .bind(model.updated_at)
        .bind(&model.etag)
        .bind(workspace)
        .bind(name)
        .bind(to_i64(version))
        .execute(&mut *tx)
        .await)?;
    commit(tx).await?;
    Ok(model)
}

/// A deployment, locked for the rest of the transaction.
async fn lock_deployment(conn: &mut PgConnection, workspace: SourceId, name: &str) -> Result<Option<Deployment>> {
    let query = sqlx::query("SELECT * FROM deployments WHERE source_id = $1 AND name = $2 FOR UPDATE")
        .bind(workspace)
        .bind(name);
    optional(&mut *conn, query, deployment_from_row).await
}

/// Creates or replaces a deployment. The models it names are share-locked until commit,
/// so none can be archived between the check and the deployment.
pub(super) async fn deploy(
    pool: &PgPool,
    workspace: SourceId,
    new: NewDeployment,
    if_match: Option<String>,
) -> Result<(Deployment, bool)> {
    let mut tx = begin(pool).await?;
    workspace_topic(&mut tx, workspace).await?;
    check_deployment(&new)?;
    for model in &new.models {
        let archived: Option<bool> = db(sqlx::query_scalar(
            "SELECT archived FROM models WHERE source_id = $1 AND name = $2 AND version = $3 FOR SHARE",
        )
        .bind(workspace)
        .bind(&model.name)
        .bind(to_i64(model.version))
        .fetch_optional(&mut *tx)
        .await)?;
        check_deployable(model, archived)?;
    }
    let existing = lock_deployment(&mut tx, workspace, &new.name).await?;
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
        .bind(at)
        .bind(&etag)
        .fetch_one(&mut *tx)
        .await)?;
    let deployment = deployment_from_row(&row)?;
    let event = model_deployed(&deployment, models);
    raise(&mut tx, workspace, &event, &etag).await?;
    commit(tx).await?;
    Ok((deployment, existing.is_none()))
}

pub(super) async fn deployment(pool: &PgPool, workspace: SourceId, name: &str) -> Result<Deployment> {
    let query = sqlx::query(sql::DEPLOYMENT).bind(workspace).bind(name);
    optional(pool, query, deployment_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("deployment `{name}`")))
}

pub(super) async fn list_deployments(pool: &PgPool, workspace: SourceId) -> Result<Vec<Deployment>> {
    let query = sqlx::query(sql::DEPLOYMENTS).bind(workspace);
    all(pool, query, deployment_from_row).await
}

pub(super) async fn delete_deployment(
    pool: &PgPool,
    workspace: SourceId,
    name: &str,
    if_match: Option<String>,
) -> Result<()> {
    let mut tx = begin(pool).await?;
    let current = lock_deployment(&mut tx, workspace, name)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("deployment `{name}`")))?;
    check_etag(&format!("deployment `{name}`"), &current.etag, if_match.as_deref())?;
    db(sqlx::query(sql::DELETE_DEPLOYMENT)
        .bind(workspace)
        .bind(name)
        .execute(&mut *tx)
        .await)?;
    commit(tx).await
}

pub(super) async fn register_dataset(pool: &PgPool, workspace: SourceId, new: NewDataset) -> Result<Dataset> {
    let mut tx = begin(pool).await?;
    workspace_topic(&mut tx, workspace).await?;
    let version = next_version(&mut tx, workspace, "dataset", &new.name).await?;
    let row = db(sqlx::query(sql::INSERT_DATASET)
        .bind(workspace)
        .bind(&new.name)
        .bind(version)
        .bind(&new.path)
        .bind(&new.description)
        .bind(tags_json(&new.tags))
        .bind(now())
        .bind(new_etag())
        .fetch_one(&mut *tx)
        .await)?;
    commit(tx).await?;
    dataset_from_row(&row)
}

pub(super) async fn dataset(pool: &PgPool, workspace: SourceId, name: &str, version: Option<u64>) -> Result<Dataset> {
    let query = sqlx::query(
        "SELECT * FROM datasets WHERE source_id = $1 AND name = $2 AND ($3::bigint IS NULL OR version = $3) \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(workspace)
    .bind(name)
    .bind(version.map(to_i64));
    optional(pool, query, dataset_from_row).await?.ok_or_else(|| {
        StoreError::NotFound(match version {
            Some(v) => format!("dataset `{name}` version {v}"),
            None => format!("dataset `{name}`"),
        })
    })
}

pub(super) async fn list_datasets(pool: &PgPool, workspace: SourceId, name: Option<&str>) -> Result<Vec<Dataset>> {
    let query = sqlx::query(
        "SELECT * FROM datasets WHERE source_id = $1 AND ($2::text IS NULL OR name = $2) ORDER BY name, version",
    )
    .bind(workspace)
    .bind(name);
    all(pool, query, dataset_from_row).await
}
