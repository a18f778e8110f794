//! What delivery did for a subscription: its attempts, counters and dead letters.
//!
//! The paths take the source collection as a segment, `/v1/{workspaces|topics}/...`.

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use mlgrid_core::time::format_event_time;
use mlgrid_store::{
    Attempt, DeadLetter, DeadLetterFilter, DeadLetterQuery, DeliveryStats, EventSubscription, Role, Source,
    SubscriptionId,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::events::check_limit;
use super::sources::{self, collection_kind};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Query};
use crate::keys::format_webhook_secret;
use crate::state::AppState;

/// The subscription a path names, if the caller holds `needed` on its source.
async fn load(
    state: &AppState,
    caller: &Caller,
    collection: &str,
    source: &str,
    name: &str,
    needed: Role,
) -> Result<(Source, EventSubscription), ApiError> {
    let kind = collection_kind(collection)?;
    let source = sources::load(state, caller, kind, source, needed).await?;
    let subscription = state.store.subscription(source.id, name).await?;
    Ok((source, subscription))
}

async fn subscription(
    state: &AppState,
    caller: &Caller,
    collection: &str,
    source: &str,
    name: &str,
    needed: Role,
) -> Result<SubscriptionId, ApiError> {
    Ok(load(state, caller, collection, source, name, needed).await?.1.id)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatsView {
    pub delivered: u64,
    pub dead_lettered: u64,
    /// Deliveries not finished yet.
    pub backlog: u64,
    /// Attempts that did not deliver.
    pub failed_attempts: u64,
    pub last_error: Option<String>,
    /// Why the last try to write dead letters to the subscription's
    /// `deadLetterDestination` failed (they stay in the store and are tried again), if it
    /// did.
    pub dead_letter_export_error: Option<String>,
}

impl DeliveryStatsView {
    fn new(s: DeliveryStats, dead_letter_export_error: Option<String>) -> Self {
        DeliveryStatsView {
            delivered: s.delivered,
            dead_lettered: s.dead_lettered,
            backlog: s.pending,
            failed_attempts: s.failed_attempts,
            last_error: s.last_error,
            dead_letter_export_error,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempted_at: String,
    /// Events in the request.
    pub events: u32,
    pub first_sequence: u64,
    pub status_code: Option<u16>,
    pub latency_ms: f64,
    /// `Delivered`, `Http<status>` or `Failed` (no answer).
    pub outcome: String,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        AttemptView {
            attempted_at: format_event_time(a.attempted_at),
            events: a.events,
            first_sequence: a.first_sequence,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            outcome: a.outcome,
            error: a.error,
            response_excerpt: a.response_excerpt,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptList {
    pub value: Vec<AttemptView>,
}

/// A dead-lettered event with Event Grid's dead-letter fields.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    pub sequence: u64,
    pub dead_letter_reason: String,
    pub delivery_attempts: u32,
    pub last_delivery_outcome: Option<String>,
    pub last_http_status_code: Option<u16>,
    pub publish_time: String,
    pub last_delivery_attempt_time: Option<String>,
    #[schema(value_type = Object)]
    pub event: Box<RawValue>,
}

impl TryFrom<DeadLetter> for DeadLetterView {
    type Error = ApiError;

    fn try_from(d: DeadLetter) -> Result<Self, ApiError> {
        Ok(DeadLetterView {
            sequence: d.sequence,
            dead_letter_reason: d.dead_letter_reason,
            delivery_attempts: d.delivery_attempts,
            last_delivery_outcome: d.last_delivery_outcome,
            last_http_status_code: d.last_http_status_code,
            publish_time: format_event_time(d.publish_time),
            last_delivery_attempt_time: d.last_delivery_attempt_time.map(format_event_time),
            event: RawValue::from_string(d.body)
                .map_err(|e| ApiError::Internal(format!("stored event is not JSON: {e}")))?,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterList {
    pub value: Vec<DeadLetterView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Dead letters of events with a sequence number above this.
    #[serde(default)]
    after: u64,
    /// Most items to return (default 100, at most 10000).
    limit: Option<u32>,
}

/// Which dead letters a redeliver or purge is about: those matching every field given
/// (all when none is).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterSelection {
    pub sequences: Option<Vec<u64>>,
    /// e.g. `MaxDeliveryAttemptsExceeded`, `TimeToLiveExceeded`, `NonRetriableStatus`.
    pub dead_letter_reason: Option<String>,
    /// The event's `eventType` (or CloudEvents `type`).
    pub event_type: Option<String>,
    pub last_http_status_code: Option<u16>,
}

impl From<DeadLetterSelection> for DeadLetterFilter {
    fn from(selection: DeadLetterSelection) -> Self {
        DeadLetterFilter {
            sequences: selection.sequences,
            reason: selection.dead_letter_reason,
            event_type: selection.event_type,
            status_code: selection.last_http_status_code,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Affected {
    /// How many dead letters were redelivered or purged.
    pub count: u64,
}

/// The delivery counters of a subscription. Takes Reader or stronger.
#[utoipa::path(get, path = "/v1/{collection}/{source}/eventSubscriptions/{name}/deliveryStats", tag = "delivery", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = DeliveryStatsView), (status = 404, body = ErrorBody)))]
async fn delivery_stats(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name)): Path<(String, String, String)>,
) -> Result<JsonResponse<DeliveryStatsView>, ApiError> {
    let id = subscription(&state, &caller, &collection, &source, &name, Role::Reader).await?;
    let stats = state.store.delivery_stats(id).await?;
    Ok(JsonResponse(DeliveryStatsView::new(
        stats,
        state.dead_letter_exports.of(id),
    )))
}

/// The latest delivery attempts of a subscription, newest first. Takes Reader or stronger.
#[utoipa::path(get, path = "/v1/{collection}/{source}/eventSubscriptions/{name}/attempts", tag = "delivery", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path), Page),
    responses((status = 200, body = AttemptList), (status = 404, body = ErrorBody)))]
async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name)): Path<(String, String, String)>,
    Query(page): Query<Page>,
) -> Result<JsonResponse<AttemptList>, ApiError> {
    let id = subscription(&state, &caller, &collection, &source, &name, Role::Reader).await?;
    let attempts = state.store.delivery_attempts(id, check_limit(page.limit)?).await?;
    Ok(JsonResponse(AttemptList {
        value: attempts.into_iter().map(AttemptView::from).collect(),
    }))
}

/// The dead-lettered events of a subscription. Takes Reader or stronger.
#[utoipa::path(get, path = "/v1/{collection}/{source}/eventSubscriptions/{name}/deadLetters", tag = "delivery", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path), Page),
    responses((status = 200, body = DeadLetterList), (status = 404, body = ErrorBody)))]
async fn dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name)): Path<(String, String, String)>,
    Query(page): Query<Page>,
) -> Result<JsonResponse<DeadLetterList>, ApiError> {
    let id = subscription(&state, &caller, &collection, &source, &name, Role::Reader).await?;
    let dead = state
        .store
        .dead_letters(id, DeadLetterQuery::page(page.after, check_limit(page.limit)?))
        .await?;
    Ok(JsonResponse(DeadLetterList {
        value: dead
            .into_iter()
            .map(DeadLetterView::try_from)
            .collect::<Result<_, _>>()?,
    }))
}

/// One dead-lettered event. Takes Reader or stronger.
#[utoipa::path(get, path = "/v1/{collection}/{source}/eventSubscriptions/{name}/deadLetters/{sequence}", tag = "delivery", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path), ("sequence" = u64, Path)),
    responses((status = 200, body = DeadLetterView), (status = 404, body = ErrorBody)))]
async fn dead_letter(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name, sequence)): Path<(String, String, String, u64)>,
) -> Result<JsonResponse<DeadLetterView>, ApiError> {
    let id = subscription(&state, &caller, &collection, &source, &name, Role::Reader).await?;
    let found = state
        .store
        .dead_letters(id, DeadLetterQuery::page(sequence.saturating_sub(1), 1))
        .await?
        .into_iter()
        .find(|d| d.sequence == sequence)
        .ok_or_else(|| ApiError::NotFound(format!("event {sequence} is not dead-lettered for `{name}`")))?;
    Ok(JsonResponse(found.try_into()?))
}

/// Delivers dead-lettered events again (those the selection matches, or all), from a
/// fresh count of attempts. Takes Contributor or Owner.
#[utoipa::path(post, path = "/v1/{collection}/{source}/eventSubscriptions/{name}/deadLetters/redeliver", tag = "delivery", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path)),
    request_body = DeadLetterSelection, responses((status = 200, body = Affected), (status = 404, body = ErrorBody)))]
async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name)): Path<(String, String, String)>,
    Json(selection): Json<DeadLetterSelection>,
) -> Result<JsonResponse<Affected>, ApiError> {
    let id = subscription(&state, &caller, &collection, &source, &name, Role::Contributor).await?;
    Ok(JsonResponse(Affected {
        count: state.store.redeliver(id, selection.into()).await?,
    }))
}

/// Deletes dead-lettered events (those the selection matches, or all). Takes Contributor
/// or Owner.
#[utoipa::path(post, path = "/v1/{collection}/{source}/eventSubscriptions/{name}/deadLetters/purge", tag = "delivery", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path)),
    request_body = DeadLetterSelection, responses((status = 200, body = Affected), (status = 404, body = ErrorBody)))]
async fn purge(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name)): Path<(String, String, String)>,
    Json(selection): Json<DeadLetterSelection>,
) -> Result<JsonResponse<Affected>, ApiError> {
    let id = subscription(&state, &caller, &collection, &source, &name, Role::Contributor).await?;
    Ok(JsonResponse(Affected {
        count: state.store.purge_dead_letters(id, selection.into()).await?,
    }))
}

/// A subscription's webhook signing secrets, in the Standard Webhooks format.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningSecret {
    /// `whsec_...`: verify `webhook-signature` with it.
    pub secret: String,
    /// The secret before the last rotation, still signing until `previousValidUntil`.
    pub previous_secret: Option<String>,
    pub previous_valid_until: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rotate {
    /// How long the old secret keeps signing (default 60 minutes, at most a week).
    pub grace_minutes: Option<u32>,
}

const DEFAULT_GRACE_MINUTES: u32 = 60;
const MAX_GRACE_MINUTES: u32 = 7 * 24 * 60;

fn signing_secret(state: &AppState, subscription: &EventSubscription) -> SigningSecret {
    let now = chrono::Utc::now();
    let previous = subscription.previous_salt.as_ref().filter(|(_, until)| *until > now);
    SigningSecret {
        secret: format_webhook_secret(&state.secret.webhook_secret(&subscription.secret_salt)),
        previous_secret: previous.map(|(salt, _)| format_webhook_secret(&state.secret.webhook_secret(salt))),
        previous_valid_until: previous.map(|(_, until)| format_event_time(*until)),
    }
}

/// Shows the secrets that sign a subscription's deliveries. Takes Contributor or Owner.
#[utoipa::path(post, path = "/v1/{collection}/{source}/eventSubscriptions/{name}/signingSecret", tag = "delivery", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = SigningSecret), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name)): Path<(String, String, String)>,
) -> Result<JsonResponse<SigningSecret>, ApiError> {
    let (_, subscription) = load(&state, &caller, &collection, &source, &name, Role::Contributor).await?;
    Ok(JsonResponse(signing_secret(&state, &subscription)))
}

/// Replaces the signing secret; the old one keeps signing for the grace period, so that
/// receivers can switch without losing deliveries. Takes Contributor or Owner.
#[utoipa::path(post, path = "/v1/{collection}/{source}/eventSubscriptions/{name}/signingSecret/rotate", tag = "delivery", security(("api_key" = [])),
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path)),
    request_body = Rotate, responses((status = 200, body = SigningSecret), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, source, name)): Path<(String, String, String)>,
    Json(body): Json<Rotate>,
) -> Result<JsonResponse<SigningSecret>, ApiError> {
    let grace = body.grace_minutes.unwrap_or(DEFAULT_GRACE_MINUTES);
    if grace > MAX_GRACE_MINUTES {
        return Err(ApiError::bad_request(format!(
            "graceMinutes must be at most {MAX_GRACE_MINUTES}, got {grace}"
        )));
    }
    let (source, _) = load(&state, &caller, &collection, &source, &name, Role::Contributor).await?;
    let until = chrono::Utc::now() + chrono::Duration::minutes(i64::from(grace));
    let rotated = state
        .store
        .rotate_subscription_secret(source.id, &name, &state.secret.new_webhook_salt(), until)
        .await?;
    Ok(JsonResponse(signing_secret(&state, &rotated)))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(delivery_stats))
        .routes(routes!(attempts))
        .routes(routes!(dead_letters))
        .routes(routes!(dead_letter))
        .routes(routes!(redeliver))
        .routes(routes!(purge))
        .routes(routes!(show_secret))
        .routes(routes!(rotate_secret))
}
