//! The endpoint validation handshake of webhook subscriptions: started when a
//! subscription is created or its endpoint changes, finished by the endpoint's answer or
//! by a GET of the validation URL within the validation window.
//!
//! The `validationCode` and the URL's token are derived from the server secret and the
//! subscription's id and etag: nothing is stored, and a replaced definition (new etag)
//! cannot be validated by an older handshake.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use mlgrid_core::EventSchema;
use mlgrid_core::redact::endpoint_base_url;
use mlgrid_core::subscription::SubscriptionSpec;
use mlgrid_core::time::format_event_time;
use mlgrid_delivery::{HandshakeError, HandshakeRequest};
use mlgrid_store::{EventSubscription, Source};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::sources::{collection, collection_kind};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::state::AppState;

/// Runs the handshake of a subscription stored as `AwaitingManualAction`; returns it as
/// the handshake left it. An endpoint that refuses or fails makes the subscription
/// `Failed` and the request a 400 that says why and what to do.
pub async fn handshake(
    state: &AppState,
    base_url: &str,
    source: &Source,
    subscription: EventSubscription,
) -> Result<EventSubscription, ApiError> {
    let handshakes = &state.handshakes;
    let now = handshakes.now();
    let issued = now.timestamp();
    let token = state
        .secret
        .validation_token(subscription.id, &subscription.etag, issued);
    let validation_url = format!(
        "{base_url}/v1/{}/{}/eventSubscriptions/{}/validate?t={issued}&token={token}",
        collection(source.kind),
        source.name,
        subscription.name
    );
    let code = state.secret.validation_code(subscription.id, &subscription.etag);
    let secret = state.secret.webhook_secret(&subscription.secret_salt);
    let spec = subscription.spec.clone();
    let endpoint_url = &spec.destination.properties.endpoint_url;
    let name = subscription.name.clone();
    let request = HandshakeRequest {
        endpoint_url,
        schema: spec.event_delivery_schema,
        subscription: &name,
        topic: &source.topic(),
        event_id: &uuid::Uuid::new_v4().to_string(),
        event_time: &format_event_time(now),
        code: &code,
        validation_url: &validation_url,
        secret: &secret,
    };
    handshakes
        .run(subscription, &request)
        .await
        .map_err(|error| handshake_error(&name, &spec, error))
}

/// A handshake error of the subscription `name` defined by `spec`, as the API says it:
/// a refusal says what the endpoint must answer.
fn handshake_error(name: &str, spec: &SubscriptionSpec, error: HandshakeError) -> ApiError {
    match error {
        HandshakeError::Store(error) => error.into(),
        HandshakeError::Expired { deadline } => ApiError::BadRequest {
            code: "ValidationExpired",
            message: format!(
                "this validation URL expired at {}; put the subscription again to start a new handshake",
                format_event_time(deadline)
            ),
        },
        HandshakeError::NotAwaiting { state } => ApiError::Conflict(format!(
            "the subscription `{name}` is {state}, not awaiting validation; put it again to start a new handshake"
        )),
        HandshakeError::Failed { reason } => {
            let how = match spec.event_delivery_schema {
                EventSchema::EventGridSchema => {
                    "answer the Microsoft.EventGrid.SubscriptionValidationEvent with 200 and \
                     {\"validationResponse\": \"<validationCode>\"}, or with 200 and then GET its validationUrl"
                }
                EventSchema::CloudEventSchemaV1_0 => {
                    "answer the OPTIONS request with 200 and `WebHook-Allowed-Origin: eventgrid.azure.net`"
                }
            };
            // The endpoint's query often holds a secret: the answer shows its base only.
            let endpoint = endpoint_base_url(&spec.destination.properties.endpoint_url);
            ApiError::BadRequest {
                code: "ValidationFailed",
                message: format!(
                    "the subscription `{name}` is Failed: {endpoint} did not pass the validation handshake: {reason}. \
                     To receive events, {how}; then put the subscription again. For an endpoint you trust, \
                     create it with skipValidation=true (--skip-validation)"
                ),
            }
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ValidationUrl {
    /// When the URL was issued (Unix seconds).
    t: i64,
    token: String,
}

/// The validation URL of a webhook subscription's handshake: a GET within 5 minutes of
/// the handshake validates the endpoint. Takes no API key: the token is the proof.
#[utoipa::path(get, path = "/v1/{collection}/{source}/eventSubscriptions/{name}/validate", tag = "eventSubscriptions",
    params(("collection" = String, Path, description = "workspaces or topics"), ("source" = String, Path), ("name" = String, Path), ValidationUrl),
    responses((status = 200, description = "validated", body = String), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn validate(
    State(state): State<AppState>,
    Path((collection, source, name)): Path<(String, String, String)>,
    Query(url): Query<ValidationUrl>,
) -> Result<(StatusCode, &'static str), ApiError> {
    let invalid = || ApiError::BadRequest {
        code: "InvalidValidationUrl",
        message: "this validation URL is not valid for the subscription: it was replaced or recreated since; \
                  use the validationUrl of its latest handshake"
            .into(),
    };
    let kind = collection_kind(&collection)?;
    let source = state.store.source(kind, &source).await.map_err(|_| invalid())?;
    let subscription = state
        .store
        .subscription(source.id, &name)
        .await
        .map_err(|_| invalid())?;
    if !state
        .secret
        .validation_token_matches(&url.token, subscription.id, &subscription.etag, url.t)
    {
        return Err(invalid());
    }
    let issued = chrono::DateTime::from_timestamp(url.t, 0).unwrap_or_default();
    match state.handshakes.validate_by_url(&subscription, issued).await {
        Ok(()) => Ok((
            StatusCode::OK,
            "Webhook successfully validated as a subscription endpoint.",
        )),
        Err(error) => Err(handshake_error(&name, &subscription.spec, error)),
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(validate))
}
