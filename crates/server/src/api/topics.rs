//! Custom topics: sources of user events, published with an access key.

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::time::format_event_time;
use mlgrid_store::{KeyName, Role, Source};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::sources::{self, CreateSource, LogState, UpdateSource};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{BaseUrl, Json};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Topic {
    pub name: String,
    /// The resource path: the `topic` of every event published here.
    pub id: String,
    /// Where publishers POST events (`aeg-sas-key` header).
    pub endpoint: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub created_at: String,
    /// Sequence number of the topic's newest event (0 when none).
    pub last_sequence: u64,
    #[serde(flatten)]
    pub log: LogState,
}

impl Topic {
    fn new(s: Source, base: &BaseUrl, state: &AppState) -> Topic {
        Topic {
            log: LogState::new(&s, state.config.retention.events),
            id: s.topic(),
            endpoint: format!("{}/topics/{}/api/events", base.0, s.name),
            created_at: format_event_time(s.created_at),
            name: s.name,
            subscription_id: s.subscription_id,
            resource_group: s.resource_group,
            last_sequence: s.last_sequence,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopicList {
    pub value: Vec<Topic>,
}

/// A topic's two access keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicKeys {
    pub key1: String,
    pub key2: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegenerateKey {
    /// `key1` or `key2`.
    pub key_name: String,
}

/// Creates a topic with two fresh access keys. Takes Contributor or Owner on everything.
#[utoipa::path(post, path = "/v1/topics", tag = "topics", security(("api_key" = [])),
    request_body = CreateSource,
    responses((status = 201, body = Topic), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_topic(
    State(state): State<AppState>,
    caller: Caller,
    base: BaseUrl,
    Json(body): Json<CreateSource>,
) -> Result<(StatusCode, JsonResponse<Topic>), ApiError> {
    let keys: Vec<_> = KeyName::BOTH
        .into_iter()
        .map(|name| state.secret.new_topic_key(name).0)
        .collect();
    let source = sources::create(&state, &caller, SourceKind::Topic, body, &keys).await?;
    state.topics.forget(&source.name);
    Ok((StatusCode::CREATED, JsonResponse(Topic::new(source, &base, &state))))
}

/// Lists the topics the caller holds a role on.
#[utoipa::path(get, path = "/v1/topics", tag = "topics", security(("api_key" = [])),
    responses((status = 200, body = TopicList)))]
async fn list_topics(
    State(state): State<AppState>,
    caller: Caller,
    base: BaseUrl,
) -> Result<JsonResponse<TopicList>, ApiError> {
    let topics = sources::list(&state, &caller, SourceKind::Topic).await?;
    Ok(JsonResponse(TopicList {
        value: topics.into_iter().map(|s| Topic::new(s, &base, &state)).collect(),
    }))
}

/// Shows one topic with its publishing endpoint. Takes Reader or stronger on it.
#[utoipa::path(get, path = "/v1/topics/{name}", tag = "topics", security(("api_key" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = Topic), (status = 404, body = ErrorBody)))]
async fn show_topic(
    State(state): State<AppState>,
    caller: Caller,
    base: BaseUrl,
    Path(name): Path<String>,
) -> Result<JsonResponse<Topic>, ApiError> {
    let source = sources::load(&state, &caller, SourceKind::Topic, &name, Role::Reader).await?;
    Ok(JsonResponse(Topic::new(source, &base, &state)))
}

/// Changes a topic's retention: `{"retention": {"time": "7d", "maxBytes": N}}`, or
/// `{"retention": null}` for the server's default. Takes Owner on it.
#[utoipa::path(patch, path = "/v1/topics/{name}", tag = "topics", security(("api_key" = [])),
    params(("name" = String, Path)), request_body = UpdateSource,
    responses((status = 200, body = Topic), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_topic(
    State(state): State<AppState>,
    caller: Caller,
    base: BaseUrl,
    Path(name): Path<String>,
    Json(body): Json<UpdateSource>,
) -> Result<JsonResponse<Topic>, ApiError> {
    let source = sources::update(&state, &caller, SourceKind::Topic, &name, body).await?;
    Ok(JsonResponse(Topic::new(source, &base, &state)))
}

/// Deletes a topic and its events. Takes Owner on it.
#[utoipa::path(delete, path = "/v1/topics/{name}", tag = "topics", security(("api_key" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_topic(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    sources::delete(&state, &caller, SourceKind::Topic, &name).await?;
    state.topics.forget(&name);
    Ok(StatusCode::NO_CONTENT)
}

async fn reveal_keys(state: &AppState, source: &Source) -> Result<TopicKeys, ApiError> {
    let stored = state.store.topic_keys(source.id).await?;
    let reveal = |name: KeyName| {
        stored
            .iter()
            .find(|k| k.name == name)
            .and_then(|k| state.secret.reveal_topic_key(k))
            .ok_or_else(|| {
                ApiError::Conflict(format!(
                    "{} of topic `{}` was made with another server secret and cannot be shown; \
                     regenerate it (mlgrid topic key regenerate --name {} --key-name {})",
                    name.as_str(),
                    source.name,
                    source.name,
                    name.as_str()
                ))
            })
    };
    Ok(TopicKeys {
        key1: reveal(KeyName::Key1)?,
        key2: reveal(KeyName::Key2)?,
    })
}

/// Shows a topic's access keys. Takes Contributor or Owner on it.
#[utoipa::path(post, path = "/v1/topics/{name}/listKeys", tag = "topics", security(("api_key" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = TopicKeys), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<JsonResponse<TopicKeys>, ApiError> {
    let source = sources::load(&state, &caller, SourceKind::Topic, &name, Role::Contributor).await?;
    Ok(JsonResponse(reveal_keys(&state, &source).await?))
}

/// Replaces one access key with a new random one; the old key stops working at once on
/// this node. Takes Contributor or Owner on the topic.
#[utoipa::path(post, path = "/v1/topics/{name}/regenerateKey", tag = "topics", security(("api_key" = [])),
    params(("name" = String, Path)), request_body = RegenerateKey,
    responses((status = 200, body = TopicKeys), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn regenerate_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<RegenerateKey>,
) -> Result<JsonResponse<TopicKeys>, ApiError> {
    let key_name = KeyName::parse(&body.key_name)
        .ok_or_else(|| ApiError::bad_request(format!("keyName must be `key1` or `key2`, got `{}`", body.key_name)))?;
    let source = sources::load(&state, &caller, SourceKind::Topic, &name, Role::Contributor).await?;
    let (stored, _) = state.secret.new_topic_key(key_name);
    state.store.replace_topic_key(source.id, &stored).await?;
    state.topics.forget(&name);
    Ok(JsonResponse(reveal_keys(&state, &source).await?))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_topic, list_topics))
        .routes(routes!(show_topic, update_topic, delete_topic))
        .routes(routes!(list_keys))
        .routes(routes!(regenerate_key))
}
