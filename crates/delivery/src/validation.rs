//! The endpoint validation handshake over HTTP: the requests of
//! [`mlgrid_core::validation`], sent with the same guarded client as deliveries.

use std::time::Duration;

use mlgrid_core::EventSchema;
use mlgrid_core::validation::{
    Handshake, WEBHOOK_REQUEST_ORIGIN, judge_options_answer, judge_validation_answer, validation_event,
};

use crate::address_guard::AddressPolicy;
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
