//! The model registry and deployments.

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mlgrid_core::lifecycle::{ComputeType, ModelRef, model_ids};
use mlgrid_core::ml::Tags;
use mlgrid_core::time::format_event_time;
use mlgrid_store::{Deployment, Model, ModelChange, NewDeployment, NewModel, Role, TagsPatch};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::lifecycle::{check_name, etagged, with_etag, workspace};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{IfMatch, Json, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterModel {
    pub name: String,
    /// Where the model's files are.
    pub path: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub properties: Tags,
}

/// A change to a model version; raises no event. `tags` and `properties` are merge
/// patches: a string sets a key, `null` removes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateModel {
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub tags: TagsPatch,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: TagsPatch,
    /// `true` archives the version (it is no longer the latest nor deployable).
    pub archived: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelView {
    /// `name:version`
    pub id: String,
    pub name: String,
    pub version: u64,
    pub path: Option<String>,
    pub description: Option<String>,
    pub tags: Tags,
    pub properties: Tags,
    pub archived: bool,
    pub created_at: String,
    pub updated_at: String,
    pub etag: String,
}

impl From<Model> for ModelView {
    fn from(m: Model) -> Self {
        ModelView {
            id: format!("{}:{}", m.name, m.version),
            name: m.name,
            version: m.version,
            path: m.path,
            description: m.description,
            tags: m.tags,
            properties: m.properties,
            archived: m.archived,
            created_at: format_event_time(m.created_at),
            updated_at: format_event_time(m.updated_at),
            etag: m.etag,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub value: Vec<ModelView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListModels {
    /// Only the versions of this model.
    name: Option<String>,
    /// Include archived versions (default false).
    #[serde(default)]
    include_archived: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deploy {
    /// `ACI`, `AKS` or `Local`.
    pub compute_type: String,
    /// Model versions as `name:version`; each must exist and not be archived.
    pub models: Vec<String>,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub properties: Tags,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentView {
    pub name: String,
    pub compute_type: String,
    pub models: Vec<String>,
    /// The models as the ModelDeployed event lists them: `name:version,name:version`.
    pub model_ids: String,
    pub tags: Tags,
    pub properties: Tags,
    pub created_at: String,
    pub updated_at: String,
    pub etag: String,
}

impl From<Deployment> for DeploymentView {
    fn from(d: Deployment) -> Self {
        DeploymentView {
            model_ids: model_ids(&d.models),
            name: d.name,
            compute_type: d.compute_type.as_str().to_owned(),
            models: d.models.iter().map(ModelRef::to_string).collect(),
            tags: d.tags,
            properties: d.properties,
            created_at: format_event_time(d.created_at),
            updated_at: format_event_time(d.updated_at),
            etag: d.etag,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentList {
    pub value: Vec<DeploymentView>,
}

etagged!(ModelView, DeploymentView);

/// Registers the next version of a model (1, 2, 3, ...; never reused) and raises
/// ModelRegistered. Takes Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/models", tag = "models", security(("api_key" = [])),
    params(("workspace" = String, Path)), request_body = RegisterModel,
    responses((status = 201, body = ModelView), (status = 400, body = ErrorBody)))]
async fn register_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(body): Json<RegisterModel>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Contributor).await?;
    check_name("model", &body.name)?;
    let new = NewModel {
        name: body.name,
        path: body.path,
        description: body.description,
        tags: body.tags,
        properties: body.properties,
    };
    let model = state.store.register_model(ws, new).await?;
    Ok(with_etag(StatusCode::CREATED, ModelView::from(model)))
}

/// Lists model versions by name and version. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/models", tag = "models", security(("api_key" = [])),
    params(("workspace" = String, Path), ListModels), responses((status = 200, body = ModelList)))]
async fn list_models(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(query): Query<ListModels>,
) -> Result<JsonResponse<ModelList>, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Reader).await?;
    let models = state
        .store
        .list_models(ws, query.name.as_deref(), query.include_archived)
        .await?;
    Ok(JsonResponse(ModelList {
        value: models.into_iter().map(ModelView::from).collect(),
    }))
}

/// Shows the latest version of a model that is not archived. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/models/{name}", tag = "models", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ModelView), (status = 404, body = ErrorBody)))]
async fn show_latest_model(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Reader).await?;
    let model = state.store.model(ws, &name, None).await?;
    Ok(with_etag(StatusCode::OK, ModelView::from(model)))
}

/// Shows one version of a model. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/models/{name}/versions/{version}", tag = "models", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path), ("version" = u64, Path)),
    responses((status = 200, body = ModelView), (status = 404, body = ErrorBody)))]
async fn show_model(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, name, version)): Path<(String, String, u64)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Reader).await?;
    let model = state.store.model(ws, &name, Some(version)).await?;
    Ok(with_etag(StatusCode::OK, ModelView::from(model)))
}

/// Updates a model version's description, tags, properties or archived flag (no event).
/// A stale `If-Match` is a 412. Takes Contributor.
#[utoipa::path(patch, path = "/v1/workspaces/{workspace}/models/{name}/versions/{version}", tag = "models", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path), ("version" = u64, Path), ("If-Match" = Option<String>, Header)),
    request_body = UpdateModel,
    responses((status = 200, body = ModelView), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn update_model(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, name, version)): Path<(String, String, u64)>,
    IfMatch(if_match): IfMatch,
    Json(body): Json<UpdateModel>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Contributor).await?;
    let change = ModelChange {
        description: body.description,
        tags: body.tags,
        properties: body.properties,
        archived: body.archived,
    };
    let model = state.store.change_model(ws, &name, version, change, if_match).await?;
    Ok(with_etag(StatusCode::OK, ModelView::from(model)))
}

/// Deploys models to a service, creating or replacing it, and raises ModelDeployed.
/// Every model must exist and not be archived (400 naming the first that does not).
/// Takes Contributor.
#[utoipa::path(put, path = "/v1/workspaces/{workspace}/deployments/{name}", tag = "deployments", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = Deploy,
    responses((status = 201, body = DeploymentView), (status = 200, body = DeploymentView), (status = 400, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn deploy(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, name)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    Json(body): Json<Deploy>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Contributor).await?;
    check_name("deployment", &name)?;
    let compute_type: ComputeType = body.compute_type.parse().map_err(ApiError::bad_request)?;
    let models = body
        .models
        .iter()
        .map(|m| m.parse::<ModelRef>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    let new = NewDeployment {
        name,
        compute_type,
        models,
        tags: body.tags,
        properties: body.properties,
    };
    let (deployment, created) = state.store.deploy(ws, new, if_match).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_etag(status, DeploymentView::from(deployment)))
}

/// Lists deployments. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/deployments", tag = "deployments", security(("api_key" = [])),
    params(("workspace" = String, Path)), responses((status = 200, body = DeploymentList)))]
async fn list_deployments(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<JsonResponse<DeploymentList>, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Reader).await?;
    let deployments = state.store.list_deployments(ws).await?;
    Ok(JsonResponse(DeploymentList {
        value: deployments.into_iter().map(DeploymentView::from).collect(),
    }))
}

/// Shows a deployment. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/deployments/{name}", tag = "deployments", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = DeploymentView), (status = 404, body = ErrorBody)))]
async fn show_deployment(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Reader).await?;
    let deployment = state.store.deployment(ws, &name).await?;
    Ok(with_etag(StatusCode::OK, DeploymentView::from(deployment)))
}

/// Deletes a deployment (no event). Takes Contributor.
#[utoipa::path(delete, path = "/v1/workspaces/{workspace}/deployments/{name}", tag = "deployments", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn delete_deployment(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, name)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
) -> Result<StatusCode, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Contributor).await?;
    state.store.delete_deployment(ws, &name, if_match).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_model, list_models))
        .routes(routes!(show_latest_model))
        .routes(routes!(show_model, update_model))
        .routes(routes!(list_deployments))
        .routes(routes!(deploy, show_deployment, delete_deployment))
}
