//! Registered datasets: named, versioned pointers to a file or folder.

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mlgrid_core::ml::Tags;
use mlgrid_core::time::format_event_time;
use mlgrid_store::{Dataset, NewDataset, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::lifecycle::{check_name, etagged, with_etag, workspace};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterDataset {
    pub name: String,
    /// File or folder (a local path until datastores arrive).
    pub path: String,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetView {
    pub name: String,
    pub version: u64,
    pub path: String,
    pub description: Option<String>,
    pub tags: Tags,
    pub created_at: String,
    pub etag: String,
}

impl From<Dataset> for DatasetView {
    fn from(d: Dataset) -> Self {
        DatasetView {
            name: d.name,
            version: d.version,
            path: d.path,
            description: d.description,
            tags: d.tags,
            created_at: format_event_time(d.created_at),
            etag: d.etag,
        }
    }
}

etagged!(DatasetView);

#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetList {
    pub value: Vec<DatasetView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDatasets {
    /// Only the versions of this dataset.
    name: Option<String>,
}

/// Registers the next version of a dataset. Takes Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/datasets", tag = "datasets", security(("api_key" = [])),
    params(("workspace" = String, Path)), request_body = RegisterDataset,
    responses((status = 201, body = DatasetView), (status = 400, body = ErrorBody)))]
async fn register_dataset(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(body): Json<RegisterDataset>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Contributor).await?;
    check_name("dataset", &body.name)?;
    if body.path.trim().is_empty() {
        return Err(ApiError::bad_request("`path` must name the dataset's file or folder"));
    }
    let new = NewDataset {
        name: body.name,
        path: body.path,
        description: body.description,
        tags: body.tags,
    };
    let dataset = state.store.register_dataset(ws, new).await?;
    Ok(with_etag(StatusCode::CREATED, DatasetView::from(dataset)))
}

/// Lists dataset versions. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/datasets", tag = "datasets", security(("api_key" = [])),
    params(("workspace" = String, Path), ListDatasets), responses((status = 200, body = DatasetList)))]
async fn list_datasets(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(query): Query<ListDatasets>,
) -> Result<JsonResponse<DatasetList>, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Reader).await?;
    let datasets = state.store.list_datasets(ws, query.name.as_deref()).await?;
    Ok(JsonResponse(DatasetList {
        value: datasets.into_iter().map(DatasetView::from).collect(),
    }))
}

/// Shows the latest version of a dataset. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/datasets/{name}", tag = "datasets", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = DatasetView), (status = 404, body = ErrorBody)))]
async fn show_latest_dataset(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Reader).await?;
    let dataset = state.store.dataset(ws, &name, None).await?;
    Ok(with_etag(StatusCode::OK, DatasetView::from(dataset)))
}

/// Shows one version of a dataset. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/datasets/{name}/versions/{version}", tag = "datasets", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path), ("version" = u64, Path)),
    responses((status = 200, body = DatasetView), (status = 404, body = ErrorBody)))]
async fn show_dataset(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, name, version)): Path<(String, String, u64)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Reader).await?;
    let dataset = state.store.dataset(ws, &name, Some(version)).await?;
    Ok(with_etag(StatusCode::OK, DatasetView::from(dataset)))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_dataset, list_datasets))
        .routes(routes!(show_latest_dataset))
        .routes(routes!(show_dataset))
}
