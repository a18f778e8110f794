//! The endpoint validation handshake: the requests of [`mlgrid_core::validation`], sent
//! with the same guarded client as deliveries ([`Validator`]), and the state changes of
//! the subscription they decide ([`Handshakes`]), by the delivery clock.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mlgrid_core::EventSchema;
use mlgrid_core::redact::redact_urls;
use mlgrid_core::subscription::{ProvisioningState, SubscriptionSpec};
use mlgrid_core::validation::{
    Handshake, WEBHOOK_REQUEST_ORIGIN, judge_options_answer, judge_validation_answer, validation_event,
};

use mlgrid_store::{EventSubscription, Store, StoreError};

use crate::address_guard::AddressPolicy;
use crate::clock::SharedClock;
use crate::http::{ANSWER_BYTES, client, describe, read_answer};
use crate::signature::sign;

/// What a handshake needs to know of the subscription.
pub struct HandshakeRequest<'a> {
    pub endpoint_url: &'a str,
    pub schema: EventSchema,
    pub subscription: &'a str,
    /// The `topic` of the validation event: the source's resource path.
    pub topic: &'a str,
    /// The `id` of the validation event.
    pub event_id: &'a str,
    pub event_time: &'a str,
    pub code: &'a str,
    /// Where the endpoint can validate later with a GET (the manual way).
    pub validation_url: &'a str,
    /// The subscription's signing secret: the handshake is signed like deliveries.
    pub secret: &'a [u8],
}

/// Sends validation handshakes.
#[derive(Clone)]
pub struct Validator {
    http: reqwest::Client,
    policy: AddressPolicy,
    timeout: Duration,
}

impl Validator {
    /// A validator reaching the addresses `policy` allows, waiting `timeout` for answers
    /// (Event Grid waits 30 s).
    pub fn new(policy: AddressPolicy, timeout: Duration) -> Result<Validator, reqwest::Error> {
        Ok(Validator {
            http: client(policy, 1)?,
            policy,
            timeout,
        })
    }

    /// Runs the handshake for the subscription's delivery schema: the validation event
    /// for the Event Grid schema, `OPTIONS` for CloudEvents.
    pub async fn handshake(&self, request: &HandshakeRequest<'_>) -> Handshake {
        if let Err(reason) = self.policy.check_literal(request.endpoint_url) {
            return Handshake::Failed(reason);
        }
        let answer = match request.schema {
            EventSchema::EventGridSchema => self.validation_event(request).await,
            EventSchema::CloudEventSchemaV1_0 => self.options(request).await,
        };
        answer.unwrap_or_else(|e| {
            Handshake::Failed(format!(
                "the endpoint did not answer the handshake: {}",
                describe(e, self.timeout)
            ))
        })
    }

    async fn validation_event(&self, request: &HandshakeRequest<'_>) -> Result<Handshake, reqwest::Error> {
        let body = validation_event(
            request.topic,
            request.event_id,
            request.code,
            request.validation_url,
            request.event_time,
        );
        let message_id = format!("msg_validation_{}", request.event_id);
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign(&[request.secret.to_vec()], &message_id, timestamp, &body);
        let response = self
            .http
            .post(request.endpoint_url)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("aeg-event-type", "SubscriptionValidation")
            .header("aeg-subscription-name", request.subscription.to_uppercase())
            .header("aeg-delivery-count", "0")
            .header("aeg-metadata-version", "1")
            .header("aeg-data-version", "1")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let text = read_answer(response, ANSWER_BYTES, self.timeout).await;
        Ok(judge_validation_answer(status, &text, request.code))
    }

    async fn options(&self, request: &HandshakeRequest<'_>) -> Result<Handshake, reqwest::Error> {
        let response = self
            .http
            .request(reqwest::Method::OPTIONS, request.endpoint_url)
            .timeout(self.timeout)
            .header("WebHook-Request-Origin", WEBHOOK_REQUEST_ORIGIN)
            .header("WebHook-Request-Callback", request.validation_url)
            .send()
            .await?;
        let status = response.status().as_u16();
        let allowed = response
            .headers()
            .get("WebHook-Allowed-Origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(judge_options_answer(status, allowed.as_deref()))
    }
}

/// Whether a subscription put with `spec` over `existing` needs the handshake: a webhook
/// that is not already validated for this very endpoint and schema.
pub fn needs_handshake(existing: Option<&EventSubscription>, spec: &SubscriptionSpec) -> bool {
    if !spec.destination.is_webhook() {
        return false;
    }
    let Some(existing) = existing else { return true };
    let before = &existing.spec;
    existing.provisioning_state != ProvisioningState::Succeeded
        || before.destination.properties.endpoint_url != spec.destination.properties.endpoint_url
        || before.event_delivery_schema != spec.event_delivery_schema
}

/// Why a handshake left a subscription unvalidated.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The endpoint refused or failed the handshake; the subscription is `Failed`. The
    /// reason quotes no URL (their queries may hold secrets).
    #[error("the endpoint did not pass the validation handshake: {reason}")]
    Failed { reason: String },
    /// The validation URL was used after its window; the subscription is `Failed`.
    #[error("the validation URL expired")]
    Expired { deadline: DateTime<Utc> },
    /// The subscription is in another state than awaiting validation.
    #[error("the subscription is {state}, not awaiting validation")]
    NotAwaiting { state: ProvisioningState },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The validation handshake's state changes: a put webhook subscription waits in
/// `AwaitingManualAction` until its endpoint answers the handshake (`Succeeded`), refuses
/// it (`Failed`), or GETs the validation URL within the window.
#[derive(Clone)]
pub struct Handshakes {
    store: Arc<dyn Store>,
    validator: Validator,
    clock: SharedClock,
    window: chrono::Duration,
}

impl Handshakes {
    /// Handshakes sent by `validator`, whose validation URLs are good for `window` (Event
    /// Grid: 5 minutes) by `clock`.
    pub fn new(
        store: Arc<dyn Store>,
        validator: Validator,
        clock: SharedClock,
        window: chrono::Duration,
    ) -> Handshakes {
        Handshakes {
            store,
            validator,
            clock,
            window,
        }
    }

    /// The time the handshakes go by: when a validation URL is issued.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Runs the handshake of `subscription`, stored as `AwaitingManualAction`, and
    /// returns it as the handshake left it: `Succeeded`, or still awaiting a GET of the
    /// validation URL. A refusal makes it `Failed` and is an error that says why.
    pub async fn run(
        &self,
        subscription: EventSubscription,
        request: &HandshakeRequest<'_>,
    ) -> Result<EventSubscription, HandshakeError> {
        let (id, etag) = (subscription.id, subscription.etag.clone());
        let moved = match self.validator.handshake(request).await {
            Handshake::AwaitingManualAction => return Ok(subscription),
            Handshake::Validated => {
                self.store
                    .transition_subscription(
                        id,
                        &etag,
                        ProvisioningState::AwaitingManualAction,
                        ProvisioningState::Succeeded,
                    )
                    .await?
            }
            Handshake::Failed(reason) => {
                self.store
                    .transition_subscription(
                        id,
                        &etag,
                        ProvisioningState::AwaitingManualAction,
                        ProvisioningState::Failed,
                    )
                    .await?;
                return Err(HandshakeError::Failed {
                    reason: redact_urls(&reason),
                });
            }
        };
        // Replaced or deleted meanwhile: what is there now.
        match moved {
            Some(subscription) => Ok(subscription),
            None => Ok(self
                .store
                .subscription(subscription.source_id, &subscription.name)
                .await?),
        }
    }

    /// A GET of the validation URL issued at `issued` (its token already checked):
    /// validates the subscription within the window, fails it after.
    pub async fn validate_by_url(
        &self,
        subscription: &EventSubscription,
        issued: DateTime<Utc>,
    ) -> Result<(), HandshakeError> {
        if subscription.provisioning_state == ProvisioningState::Succeeded {
            return Ok(());
        }
        let deadline = issued + self.window;
        let (id, etag) = (subscription.id, subscription.etag.as_str());
        if self.clock.now() > deadline {
            self.store
                .transition_subscription(
                    id,
                    etag,
                    ProvisioningState::AwaitingManualAction,
                    ProvisioningState::Failed,
                )
                .await?;
            return Err(HandshakeError::Expired { deadline });
        }
        match self
            .store
            .transition_subscription(
                id,
                etag,
                ProvisioningState::AwaitingManualAction,
                ProvisioningState::Succeeded,
            )
            .await?
        {
            Some(_) => Ok(()),
            None => Err(HandshakeError::NotAwaiting {
                state: subscription.provisioning_state,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use mlgrid_store::SqliteStore;

    use super::*;
    use crate::clock::ManualClock;

    /// A store with one subscription awaiting validation, and handshakes on a clock
    /// standing still with a 5-minute window.
    async fn awaiting() -> (
        crate::fixture::Fixture,
        Arc<SqliteStore>,
        Handshakes,
        ManualClock,
        EventSubscription,
    ) {
        let fixture = crate::fixture::topic_with_subscription(ProvisioningState::AwaitingManualAction).await;
        let clock = ManualClock::new(Utc::now());
        let validator = Validator::new(AddressPolicy::default(), Duration::from_secs(1)).unwrap();
        let store = fixture.store.clone();
        let handshakes = Handshakes::new(store.clone(), validator, clock.shared(), chrono::Duration::minutes(5));
        let subscription = fixture.subscription.clone();
        (fixture, store, handshakes, clock, subscription)
    }

    #[tokio::test]
    async fn the_validation_url_validates_within_its_window() {
        let (_dir, store, handshakes, clock, subscription) = awaiting().await;
        let issued = handshakes.now();
        clock.advance(chrono::Duration::minutes(5));
        handshakes.validate_by_url(&subscription, issued).await.unwrap();
        let now = store.subscription(subscription.source_id, "sub").await.unwrap();
        assert_eq!(now.provisioning_state, ProvisioningState::Succeeded);
        // Validated already: a second GET is fine.
        handshakes.validate_by_url(&now, issued).await.unwrap();
    }

    #[tokio::test]
    async fn the_validation_url_fails_the_subscription_after_its_window() {
        let (_dir, store, handshakes, clock, subscription) = awaiting().await;
        let issued = handshakes.now();
        clock.advance(chrono::Duration::minutes(5) + chrono::Duration::seconds(1));
        let error = handshakes.validate_by_url(&subscription, issued).await.unwrap_err();
        assert!(
            matches!(error, HandshakeError::Expired { deadline } if deadline == issued + chrono::Duration::minutes(5))
        );
        let now = store.subscription(subscription.source_id, "sub").await.unwrap();
        assert_eq!(now.provisioning_state, ProvisioningState::Failed);
        // Failed is final for this definition.
        let again = handshakes.validate_by_url(&now, handshakes.now()).await.unwrap_err();
        assert!(matches!(
            again,
            HandshakeError::NotAwaiting {
                state: ProvisioningState::Failed
            }
        ));
    }

    #[tokio::test]
    async fn a_refused_handshake_fails_the_subscription_before_any_connection() {
        let (_dir, store, handshakes, _clock, subscription) = awaiting().await;
        // The default policy refuses loopback before connecting.
        let request = HandshakeRequest {
            endpoint_url: "https://127.0.0.1/hook?code=secret",
            schema: EventSchema::EventGridSchema,
            subscription: "sub",
            topic: "/t",
            event_id: "1",
            event_time: "2026-01-01T00:00:00Z",
            code: "c",
            validation_url: "https://127.0.0.1/validate",
            secret: b"s",
        };
        let error = handshakes.run(subscription.clone(), &request).await.unwrap_err();
        let HandshakeError::Failed { reason } = error else {
            panic!("{error:?}")
        };
        assert!(!reason.contains("secret"), "{reason}");
        let now = store.subscription(subscription.source_id, "sub").await.unwrap();
        assert_eq!(now.provisioning_state, ProvisioningState::Failed);
    }
}
