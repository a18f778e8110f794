//! Reading a source's event log: for replay, debugging and following live.

use std::time::Duration;

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use mlgrid_core::resource::SourceKind;
use mlgrid_core::time::format_event_time;
use mlgrid_store::{MAX_READ_LIMIT, Role, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::sources;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::state::AppState;

/// Longest a read may wait for new events.
const MAX_WAIT_SECONDS: u64 = 60;
const DEFAULT_LIMIT: u32 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadEvents {
    /// Return events with a sequence number above this (default 0: from the start).
    #[serde(default)]
    after: u64,
    /// Most events to return (default 100, at most 10000).
    limit: Option<u32>,
    /// When no event is past `after`, wait up to this many seconds (at most 60) for one.
    #[serde(default)]
    wait_seconds: u64,
}

/// One event of a log, in the schema it was published in.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// Position in the source's log: 1, 2, 3, ... with no gaps.
    pub sequence: u64,
    /// `EventGridSchema` or `CloudEventSchemaV1_0`.
    pub schema: String,
    /// When mlgrid accepted the event.
    pub published_at: String,
    #[schema(value_type = Object)]
    pub event: Box<RawValue>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub events: Vec<EventRecord>,
    /// Pass this as `after` to read on: the last sequence returned, or `after` when none
    /// (the last pruned sequence, when everything after `after` was pruned).
    pub last_sequence: u64,
    /// Present when events after `after` were pruned (retention): the first sequence
    /// still available. Those before it are gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_available_sequence: Option<u64>,
}

impl EventPage {
    /// A page of events read after `after` from a log pruned through `pruned_through`;
    /// says where the log starts when the reader asked for what is gone.
    pub fn new(events: Vec<StoredEvent>, after: u64, pruned_through: u64) -> Result<EventPage, ApiError> {
        let first_available_sequence = (after < pruned_through).then(|| {
            // The events returned start at the mark or later (what deliveries held past it).
            events
                .first()
                .map_or(pruned_through + 1, |e| e.sequence.min(pruned_through + 1))
        });
        let last_sequence = events.last().map_or(after.max(pruned_through), |e| e.sequence);
        let events = events
            .into_iter()
            .map(EventRecord::try_from)
            .collect::<Result<_, _>>()?;
        Ok(EventPage {
            events,
            last_sequence,
            first_available_sequence,
        })
    }
}

impl TryFrom<StoredEvent> for EventRecord {
    type Error = ApiError;

    fn try_from(e: StoredEvent) -> Result<Self, ApiError> {
        Ok(EventRecord {
            sequence: e.sequence,
            schema: e.schema.as_str().to_owned(),
            published_at: format_event_time(e.published_at),
            event: RawValue::from_string(e.body)
                .map_err(|err| ApiError::Internal(format!("stored event {} is not JSON: {err}", e.sequence)))?,
        })
    }
}

/// The page size a read asked for, checked.
pub(super) fn check_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_READ_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_READ_LIMIT}, got {limit}"
        )));
    }
    Ok(limit)
}

async fn read(
    state: AppState,
    caller: Caller,
    kind: SourceKind,
    name: String,
    query: ReadEvents,
) -> Result<JsonResponse<EventPage>, ApiError> {
    let limit = check_limit(query.limit)?;
    if query.wait_seconds > MAX_WAIT_SECONDS {
        return Err(ApiError::bad_request(format!(
            "waitSeconds must be at most {MAX_WAIT_SECONDS}, got {}",
            query.wait_seconds
        )));
    }
    let source = sources::load(&state, &caller, kind, &name, Role::Reader).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(query.wait_seconds);
    let mut appended = state.store.appended();
    let events = loop {
        // Mark the counter seen before reading, so an append after the read wakes us.
        appended.borrow_and_update();
        let events = state.store.read_events(source.id, query.after, limit).await?;
        // Asked for pruned events: answer at once, saying where the log starts.
        if !events.is_empty() || query.after < source.pruned_through {
            break events;
        }
        if state.shutdown.is_cancelled() {
            break events;
        }
        tokio::select! {
            changed = tokio::time::timeout_at(deadline, appended.changed()) => match changed {
                Ok(Ok(())) => continue,
                // Timed out, or the store is closing: answer with what there is (nothing).
                Ok(Err(_)) | Err(_) => break events,
            },
            // The server is shutting down: a long poll must not hold the drain.
            () = state.shutdown.cancelled() => break events,
        }
    };
    Ok(JsonResponse(EventPage::new(
        events,
        query.after,
        source.pruned_through,
    )?))
}

/// Reads a workspace's events after a sequence number, optionally waiting for new ones.
/// Takes Reader or stronger on the workspace.
#[utoipa::path(get, path = "/v1/workspaces/{name}/events", tag = "events", security(("api_key" = [])),
    params(("name" = String, Path), ReadEvents),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn workspace_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<ReadEvents>,
) -> Result<JsonResponse<EventPage>, ApiError> {
    read(state, caller, SourceKind::Workspace, name, query).await
}

/// Reads a topic's events after a sequence number, optionally waiting for new ones.
/// Takes Reader or stronger on the topic.
#[utoipa::path(get, path = "/v1/topics/{name}/events", tag = "events", security(("api_key" = [])),
    params(("name" = String, Path), ReadEvents),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn topic_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<ReadEvents>,
) -> Result<JsonResponse<EventPage>, ApiError> {
    read(state, caller, SourceKind::Topic, name, query).await
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(workspace_events))
        .routes(routes!(topic_events))
}
