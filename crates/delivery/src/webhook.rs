//! One webhook delivery attempt: the request Event Grid would send, and its outcome.

use std::time::{Duration, Instant};

use mlgrid_core::retry::AttemptResult;
use mlgrid_core::time::format_event_time;
use mlgrid_core::{CloudEvent, EventGridEvent, EventSchema};
use mlgrid_store::DueDelivery;

use crate::address_guard::AddressPolicy;

/// How much of a receiver's answer the delivery log keeps.
const EXCERPT_BYTES: usize = 512;
/// How much of a receiver's answer is read at most (the excerpt, a `validationResponse`);
/// the rest is never read: the connection is dropped with it.
pub(crate) const ANSWER_BYTES: usize = 4096;
/// How long a receiver that has answered may take to send the start of its body. The
/// status decides the attempt; the body is only for the delivery log.
const EXCERPT_WAIT: Duration = Duration::from_secs(1);

/// The request body for a batch in the subscription's delivery schema: a JSON array.
pub fn batch_body(batch: &[DueDelivery], target: EventSchema, topic: &str) -> Result<String, serde_json::Error> {
    let mut items = Vec::with_capacity(batch.len());
    for delivery in batch {
        let item = match (delivery.schema, target) {
            (stored, wanted) if stored == wanted => delivery.body.clone(),
            (EventSchema::EventGridSchema, _) => {
                let event: EventGridEvent = serde_json::from_str(&delivery.body)?;
                serde_json::to_string(&event.to_cloud_event())?
            }
            (EventSchema::CloudEventSchemaV1_0, _) => {
                let event: CloudEvent = serde_json::from_str(&delivery.body)?;
                serde_json::to_string(&event.to_event_grid(topic, &format_event_time(delivery.published_at)))?
            }
        };
        items.push(item);
    }
    Ok(format!("[{}]", items.join(",")))
}

/// Event Grid's `Content-Type` for deliveries in each schema.
pub fn content_type(schema: EventSchema) -> &'static str {
    match schema {
        EventSchema::EventGridSchema => "application/json",
        EventSchema::CloudEventSchemaV1_0 => "application/cloudevents-batch+json; charset=utf-8",
    }
}

/// What an attempt did, for the delivery log.
pub struct Sent {
    pub result: AttemptResult,
    pub status: Option<u16>,
    pub latency_ms: f64,
    pub excerpt: Option<String>,
}

/// The headers of a delivery besides the content type.
pub struct Headers<'a> {
    pub subscription: &'a str,
    pub delivery_count: u32,
    pub data_version: &'a str,
    /// Standard Webhooks message id: the same on every retry of the batch.
    pub message_id: String,
    /// The secrets that sign the request.
    pub secrets: Vec<Vec<u8>>,
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Posts one batch. Only 200-204 counts as delivered; no answer within `timeout` is a
/// failure like a refused connection.
pub async fn post(
    http: &reqwest::Client,
    policy: AddressPolicy,
    url: &reqwest::Url,
    schema: EventSchema,
    headers: Headers<'_>,
    body: String,
    timeout: Duration,
) -> Sent {
    let started = Instant::now();
    let failed = |error: String, started: Instant| Sent {
        result: AttemptResult::Failed { error },
        status: None,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        excerpt: None,
    };
    if let Err(reason) = policy.check_literal_url(url) {
        return failed(reason, started);
    }
    let timestamp = chrono::Utc::now().timestamp();
    let signature = crate::signature::sign(&headers.secrets, &headers.message_id, timestamp, &body);
    let request = http
        .post(url.clone())
        .header("webhook-id", &headers.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, content_type(schema))
        .header("aeg-event-type", "Notification")
        .header("aeg-subscription-name", headers.subscription.to_uppercase())
        .header("aeg-delivery-count", headers.delivery_count.to_string())
        .header("aeg-metadata-version", "1")
        .header("aeg-data-version", headers.data_version)
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
        Err(e) => failed(describe(e, timeout), started),
    }
}

/// Reads at most `limit` bytes of an answer's body, for at most `wait`, and drops the
/// rest unread (and the connection with it): a receiver that streams without end, or
/// never finishes, costs no more than that.
pub(crate) async fn read_answer(mut response: reqwest::Response, limit: usize, wait: Duration) -> String {
    let mut body = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while body.len() < limit {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// What went wrong with a request that got no answer, with the whole chain of causes
/// (refused, reset, or the address guard), without the URL: its query may hold a secret.
pub(crate) fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs_f64());
    }
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

/// The start of a receiver's answer, cut at a character boundary.
pub(crate) fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(EXCERPT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The HTTP client webhooks are sent with: every connection's address checked by the
/// policy (DNS rebinding included), no redirects followed.
pub(crate) fn client(policy: AddressPolicy, idle_per_host: usize) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(crate::address_guard::GuardedResolver::shared(policy))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(idle_per_host)
        .build()
}
