//! The Event Grid publishing endpoint of custom topics: `POST /topics/{name}/api/events`.
//!
//! Takes what Event Grid clients send: a JSON array of Event Grid events
//! (`application/json`), one CloudEvent (`application/cloudevents+json`) or an array of
//! them (`application/cloudevents-batch+json`), authenticated by the topic's access key
//! in `aeg-sas-key`. A request is validated whole, then appended whole; `200` means every
//! event of it is on disk.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mlgrid_core::Event;
use mlgrid_core::publish::{CloudEventsMode, parse_cloud_events, parse_event_grid_events};
use mlgrid_store::NewEvent;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::keys::hash_matches;
use crate::state::AppState;

/// The publishing API versions Event Grid clients send.
const API_VERSIONS: [&str; 1] = ["2018-01-01"];
/// Response headers that tell the sequence numbers the events got.
pub const FIRST_SEQUENCE_HEADER: &str = "mlgrid-first-sequence";
pub const LAST_SEQUENCE_HEADER: &str = "mlgrid-last-sequence";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PublishParams {
    /// `2018-01-01`, as Event Grid clients send it; optional.
    #[serde(rename = "api-version")]
    api_version: Option<String>,
}

/// How the body is to be read, from its content type.
fn body_format(headers: &HeaderMap) -> Result<Option<CloudEventsMode>, ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(None);
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(None),
        "application/cloudevents+json" => Ok(Some(CloudEventsMode::Structured)),
        "application/cloudevents-batch+json" => Ok(Some(CloudEventsMode::Batch)),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "content type `{other}` is not accepted; send Event Grid events as application/json, \
             CloudEvents as application/cloudevents+json (one) or application/cloudevents-batch+json (array)"
        ))),
    }
}

/// Publishes events to a custom topic.
#[utoipa::path(post, path = "/topics/{name}/api/events", tag = "publish", security(("topic_key" = [])),
    params(("name" = String, Path), PublishParams),
    request_body(content = Vec<Object>, description = "Event Grid events (application/json) or CloudEvents (application/cloudevents+json, application/cloudevents-batch+json)"),
    responses(
        (status = 200, description = "every event is durably stored"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn publish_events(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<PublishParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if let Some(version) = &params.api_version
        && !API_VERSIONS.contains(&version.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "api-version `{version}` is not supported; use {} or leave it out",
            API_VERSIONS.join(", ")
        )));
    }
    let topic = state.topics.get(&*state.store, &name).await?;
    let presented = headers
        .get("aeg-sas-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::Unauthorized(format!(
                "send one of the topic's access keys in the `aeg-sas-key` header (mlgrid topic key list --name {name})"
            ))
        })?;
    if !topic.key_hashes.iter().any(|hash| hash_matches(presented, hash)) {
        return Err(ApiError::Unauthorized(format!(
            "the aeg-sas-key is not a current access key of topic `{name}`"
        )));
    }
    let format = body_format(&headers)?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
            "the request is over the limit of {} bytes; send fewer events per request",
            state.config.max_request_bytes
        )),
        _ => ApiError::bad_request(rejection.body_text()),
    })?;
    let limits = state.config.publish_limits;
    let events: Vec<NewEvent> = match format {
        None => parse_event_grid_events(&body, &topic.topic, limits)?
            .into_iter()
            .map(|e| NewEvent::from(&Event::EventGrid(e)))
            .collect(),
        Some(mode) => parse_cloud_events(&body, mode, limits)?
            .into_iter()
            .map(|e| NewEvent::from(&Event::Cloud(e)))
            .collect(),
    };
    let count = events.len() as u64;
    let receipt = state.store.append_events(topic.source_id, events).await?;
    metrics::counter!("mlgrid_events_published_total").increment(count);
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(FIRST_SEQUENCE_HEADER, HeaderValue::from(receipt.first_sequence));
    headers.insert(LAST_SEQUENCE_HEADER, HeaderValue::from(receipt.last_sequence));
    Ok(response)
}

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(publish_events))
        .layer(DefaultBodyLimit::max(state.config.max_request_bytes))
}
