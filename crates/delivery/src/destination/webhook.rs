//! The webhook destination: the request Event Grid would send, and what its answer means.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mlgrid_core::EventSchema;
use mlgrid_core::retry::AttemptResult;
use mlgrid_store::EventSubscription;

use super::encoding::{batch_body, content_type, data_version};
use super::{Batch, Destination, Senders, Sent};
use crate::http::{EXCERPT_BYTES, describe, excerpt, read_answer};

/// How long a receiver that has answered may take to send the start of its body. The
/// status decides the attempt; the body is only for the delivery log.
const EXCERPT_WAIT: Duration = Duration::from_secs(1);

/// A subscription's webhook.
pub(crate) struct Webhook {
    /// Upper-cased, for `aeg-subscription-name`.
    subscription: String,
    /// The subscription's `endpointUrl`, parsed once.
    url: reqwest::Url,
    origin: String,
    schema: EventSchema,
    /// The source's resource path, for events converted to the Event Grid schema.
    topic: String,
    /// The signing secret, and the one before it with the end of its grace period.
    secret: Vec<u8>,
    previous: Option<(Vec<u8>, DateTime<Utc>)>,
    senders: Senders,
}

impl Webhook {
    pub(crate) fn new(subscription: &EventSubscription, topic: &str, senders: &Senders) -> Result<Webhook, String> {
        let spec = &subscription.spec;
        let url = reqwest::Url::parse(&spec.destination.properties.endpoint_url)
            .map_err(|e| format!("its endpointUrl is not a URL: {e}"))?;
        Ok(Webhook {
            subscription: subscription.name.to_uppercase(),
            origin: origin(&url),
            url,
            schema: spec.event_delivery_schema,
            topic: topic.to_owned(),
            secret: senders.secrets.secret(&subscription.secret_salt),
            previous: subscription
                .previous_salt
                .as_ref()
                .map(|(salt, until)| (senders.secrets.secret(salt), *until)),
            senders: senders.clone(),
        })
    }

    /// The secrets that sign a request at `at`: the current one, and the previous one
    /// during its grace period.
    fn secrets(&self, at: DateTime<Utc>) -> Vec<Vec<u8>> {
        let mut secrets = vec![self.secret.clone()];
        secrets.extend(
            self.previous
                .iter()
                .filter(|(_, until)| *until > at)
                .map(|(s, _)| s.clone()),
        );
        secrets
    }
}

/// The key of an endpoint: `scheme://host:port`.
pub(crate) fn origin(url: &reqwest::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[async_trait]
impl Destination for Webhook {
    fn endpoint(&self) -> &str {
        &self.origin
    }

    /// Posts the batch. Only 200-204 counts as delivered; no answer within the timeout
    /// is a failure like a refused connection.
    async fn send(&self, batch: &Batch<'_>) -> Sent {
        let started = Instant::now();
        if let Err(reason) = self.senders.addresses.check_literal_url(&self.url) {
            return Sent::failed(reason, started.elapsed());
        }
        let body = match batch_body(batch.deliveries, self.schema, &self.topic) {
            Ok(body) => body,
            Err(e) => return Sent::failed(format!("stored events cannot be converted: {e}"), Duration::ZERO),
        };
        let data_version = match batch.deliveries.first() {
            Some(first) if first.schema == EventSchema::EventGridSchema => data_version(&first.body),
            _ => String::new(),
        };
        let first = batch.deliveries.first().map_or(0, |d| d.sequence);
        let last = batch.deliveries.last().map_or(0, |d| d.sequence);
        // The same on every retry of the batch.
        let message_id = format!("msg_{}_{first}_{last}", batch.subscription);
        let timestamp = batch.at.timestamp();
        let signature = crate::signature::sign(&self.secrets(batch.at), &message_id, timestamp, &body);
        let timeout = self.senders.timeout;
        let request = self
            .senders
            .http
            .post(self.url.clone())
            .header("webhook-id", &message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, content_type(self.schema))
            .header("aeg-event-type", "Notification")
            .header("aeg-subscription-name", &self.subscription)
            .header("aeg-delivery-count", batch.delivery_count.to_string())
            .header("aeg-metadata-version", "1")
            .header("aeg-data-version", data_version)
            .body(body);
        match request.send().await {
            Ok(response) => {
                let code = response.status().as_u16();
                let after = retry_after(&response);
                let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                let text = read_answer(response, EXCERPT_BYTES, EXCERPT_WAIT).await;
                Sent {
                    result: AttemptResult::from_status(code, after),
                    status: Some(code),
                    latency_ms,
                    excerpt: (!text.is_empty()).then(|| excerpt(&text).to_owned()),
                }
            }
            Err(e) => Sent::failed(describe(e, timeout), started.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn an_endpoint_is_a_webhooks_origin() {
        let url = |s| reqwest::Url::parse(s).unwrap();
        assert_eq!(origin(&url("http://a.example/x?code=1")), "http://a.example:80");
        assert_eq!(origin(&url("https://a.example/y")), "https://a.example:443");
        assert_eq!(origin(&url("http://127.0.0.1:8080/z")), "http://127.0.0.1:8080");
    }
}
