//! Azure ML workspaces: the sources of lifecycle events.

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::time::format_event_time;
use mlgrid_store::{Role, Source};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::sources::{self, CreateSource, LogState, UpdateSource};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub name: String,
    pub subscription_id: String,
    pub resource_group: String,
    /// The resource path: the `topic` of every event the workspace raises.
    pub topic: String,
    pub created_at: String,
    /// Sequence number of the workspace's newest event (0 when none).
    pub last_sequence: u64,
    #[serde(flatten)]
    pub log: LogState,
}

impl Workspace {
    fn new(s: Source, state: &AppState) -> Self {
        Workspace {
            log: LogState::new(&s, state.config.retention.events),
            topic: s.topic(),
            created_at: format_event_time(s.created_at),
            name: s.name,
            subscription_id: s.subscription_id,
            resource_group: s.resource_group,
            last_sequence: s.last_sequence,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceList {
    pub value: Vec<Workspace>,
}

/// Creates a workspace. Takes Contributor or Owner on everything.
#[utoipa::path(post, path = "/v1/workspaces", tag = "workspaces", security(("api_key" = [])),
    request_body = CreateSource,
    responses((status = 201, body = Workspace), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateSource>,
) -> Result<(StatusCode, JsonResponse<Workspace>), ApiError> {
    let source = sources::create(&state, &caller, SourceKind::Workspace, body, &[]).await?;
    Ok((StatusCode::CREATED, JsonResponse(Workspace::new(source, &state))))
}

/// Lists the workspaces the caller holds a role on.
#[utoipa::path(get, path = "/v1/workspaces", tag = "workspaces", security(("api_key" = [])),
    responses((status = 200, body = WorkspaceList)))]
async fn list_workspaces(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<JsonResponse<WorkspaceList>, ApiError> {
    let value = sources::list(&state, &caller, SourceKind::Workspace).await?;
    Ok(JsonResponse(WorkspaceList {
        value: value.into_iter().map(|s| Workspace::new(s, &state)).collect(),
    }))
}

/// Shows one workspace. Takes Reader or stronger on it.
#[utoipa::path(get, path = "/v1/workspaces/{name}", tag = "workspaces", security(("api_key" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = Workspace), (status = 404, body = ErrorBody)))]
async fn show_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<JsonResponse<Workspace>, ApiError> {
    let source = sources::load(&state, &caller, SourceKind::Workspace, &name, Role::Reader).await?;
    Ok(JsonResponse(Workspace::new(source, &state)))
}

/// Changes a workspace's retention: `{"retention": {"time": "7d", "maxBytes": N}}`, or
/// `{"retention": null}` for the server's default. Takes Owner on it.
#[utoipa::path(patch, path = "/v1/workspaces/{name}", tag = "workspaces", security(("api_key" = [])),
    params(("name" = String, Path)), request_body = UpdateSource,
    responses((status = 200, body = Workspace), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<UpdateSource>,
) -> Result<JsonResponse<Workspace>, ApiError> {
    let source = sources::update(&state, &caller, SourceKind::Workspace, &name, body).await?;
    Ok(JsonResponse(Workspace::new(source, &state)))
}

/// Deletes a workspace and its events. Takes Owner on it.
#[utoipa::path(delete, path = "/v1/workspaces/{name}", tag = "workspaces", security(("api_key" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    sources::delete(&state, &caller, SourceKind::Workspace, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_workspace, list_workspaces))
        .routes(routes!(show_workspace, update_workspace, delete_workspace))
}
