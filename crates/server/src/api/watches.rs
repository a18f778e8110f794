//! Datastore watches: a folder of a datastore whose new and changed files are published
//! as `Microsoft.Storage.BlobCreated` events into a custom topic. Creating one takes
//! Contributor on the workspace and on the topic (it publishes there, as a key would);
//! reading takes Reader on the workspace.

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::time::format_event_time;
use mlgrid_pipelines::WatchRequest;
use mlgrid_store::{DatastoreWatch, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::lifecycle::{etagged, with_etag, workspace};
use super::schedules::polling_seconds;
use super::sources;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatchBody {
    /// The custom topic the events go to.
    pub topic: String,
    /// The folder to watch, relative to the datastore's root (default: the root).
    pub path_on_datastore: Option<String>,
    /// Files in subfolders count too.
    #[serde(default)]
    pub recursive: bool,
    /// Minutes between polls (default 5, at least 1).
    pub polling_interval: Option<u32>,
    /// Seconds between polls, for tests (at least `serve --min-polling-seconds`).
    pub polling_interval_seconds: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchView {
    pub name: String,
    pub datastore: String,
    pub topic: String,
    pub path_on_datastore: String,
    pub recursive: bool,
    pub polling_interval: u32,
    pub polling_interval_seconds: u32,
    pub last_poll_time: Option<String>,
    pub next_poll_time: String,
    /// Polls failed in a row.
    pub poll_failures: u32,
    pub last_error: Option<String>,
    pub last_event_time: Option<String>,
    pub events_published: u64,
    pub created_at: String,
    pub etag: String,
}

etagged!(WatchView);

#[derive(Debug, Serialize, ToSchema)]
pub struct WatchList {
    pub value: Vec<WatchView>,
}

fn view(w: DatastoreWatch) -> WatchView {
    WatchView {
        name: w.name,
        datastore: w.datastore,
        topic: w.topic_name,
        path_on_datastore: if w.path.is_empty() { ".".to_owned() } else { w.path },
        recursive: w.recursive,
        polling_interval: w.polling_seconds / 60,
        polling_interval_seconds: w.polling_seconds,
        last_poll_time: w.last_poll_at.map(format_event_time),
        next_poll_time: format_event_time(w.next_poll_at),
        poll_failures: w.poll_failures,
        last_error: w.last_error,
        last_event_time: w.last_event_at.map(format_event_time),
        events_published: w.events_published,
        created_at: format_event_time(w.created_at),
        etag: w.etag,
    }
}

/// Creates a watch; files already in the folder publish nothing. An unknown datastore
/// or topic is a 404 naming it; a path outside the datastore or an interval too short a
/// 400 naming the rule; a name the datastore's watches have already a 409.
#[utoipa::path(put, path = "/v1/workspaces/{workspace}/datastores/{datastore}/watches/{name}", tag = "datastores",
    security(("api_key" = [])),
    params(("workspace" = String, Path), ("datastore" = String, Path), ("name" = String, Path)), request_body = WatchBody,
    responses((status = 201, body = WatchView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, datastore, name)): Path<(String, String, String)>,
    Json(body): Json<WatchBody>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    let topic = sources::load(&state, &caller, SourceKind::Topic, &body.topic, Role::Contributor).await?;
    let request = WatchRequest {
        path: body.path_on_datastore,
        recursive: body.recursive,
        polling_seconds: polling_seconds(body.polling_interval, body.polling_interval_seconds)?,
    };
    let created = state.watches.create(ws, &datastore, &name, topic.id, request).await?;
    Ok(with_etag(StatusCode::CREATED, view(created)))
}

#[utoipa::path(get, path = "/v1/workspaces/{workspace}/datastores/{datastore}/watches", tag = "datastores",
    security(("api_key" = [])), params(("workspace" = String, Path), ("datastore" = String, Path)),
    responses((status = 200, body = WatchList)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, datastore)): Path<(String, String)>,
) -> Result<JsonResponse<WatchList>, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let watches = state.store.list_datastore_watches(ws, &datastore).await?;
    Ok(JsonResponse(WatchList {
        value: watches.into_iter().map(view).collect(),
    }))
}

/// A watch with how its polls go and what it published.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/datastores/{datastore}/watches/{name}", tag = "datastores",
    security(("api_key" = [])),
    params(("workspace" = String, Path), ("datastore" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = WatchView), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, datastore, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let watch = state.store.datastore_watch(ws, &datastore, &name).await?;
    Ok(with_etag(StatusCode::OK, view(watch)))
}

/// Deletes a watch with what it has seen; the events it published stay in the topic.
#[utoipa::path(delete, path = "/v1/workspaces/{workspace}/datastores/{datastore}/watches/{name}", tag = "datastores",
    security(("api_key" = [])),
    params(("workspace" = String, Path), ("datastore" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, datastore, name)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    state.store.delete_datastore_watch(ws, &datastore, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(create, show, delete))
}
