//! Destinations: where a subscription's events go, one module per kind. A destination
//! only sends a batch and says what happened ([`Sent`]); what the outcome means (retry,
//! dead letter), the delivery log, metrics and the slots an attempt holds are the
//! dispatcher's, the same for every kind.
//!
//! Webhooks and pipeline triggers are the kinds so far; each kind a subscription's `endpointType` may name gets
//! a module here and a line in [`for_subscription`].

mod encoding;
pub mod pipeline;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mlgrid_core::retry::AttemptResult;
use mlgrid_store::{DueDelivery, EventSubscription, SubscriptionId};

use pipeline::{PipelineLauncher, PipelineTrigger};
use webhook::Webhook;

use crate::address_guard::AddressPolicy;
use crate::signature::WebhookSecrets;

/// One attempt to hand a batch of events over.
pub(crate) struct Batch<'a> {
    pub subscription: SubscriptionId,
    /// Oldest first, all of one subscription.
    pub deliveries: &'a [DueDelivery],
    /// Attempts made before this one (the most of any event in the batch).
    pub delivery_count: u32,
    pub at: DateTime<Utc>,
}

/// What an attempt did, for the retry rules and the delivery log.
#[derive(Debug)]
pub(crate) struct Sent {
    pub result: AttemptResult,
    /// The receiver's status code, if it answered with one.
    pub status: Option<u16>,
    pub latency_ms: f64,
    /// The start of the receiver's answer.
    pub excerpt: Option<String>,
}

impl Sent {
    /// An attempt that got no answer, for `error`.
    pub(crate) fn failed(error: String, latency: Duration) -> Sent {
        Sent {
            result: AttemptResult::Failed { error },
            status: None,
            latency_ms: latency.as_secs_f64() * 1000.0,
            excerpt: None,
        }
    }
}

/// Somewhere a subscription's events are sent.
#[async_trait]
pub(crate) trait Destination: Send + Sync {
    /// The receiver attempts share slots and health with, whichever subscription they
    /// are for (a webhook's origin, `scheme://host:port`).
    fn endpoint(&self) -> &str;

    /// Sends one batch. Never an error: whatever went wrong is in the [`Sent`].
    async fn send(&self, batch: &Batch<'_>) -> Sent;
}

/// What destinations share on a node: the clients they send with, and their limits.
#[derive(Clone)]
pub(crate) struct Senders {
    pub http: reqwest::Client,
    pub addresses: AddressPolicy,
    /// How long a receiver has to answer.
    pub timeout: Duration,
    pub secrets: Arc<dyn WebhookSecrets>,
    /// What pipeline triggers submit through.
    pub pipelines: Option<Arc<dyn PipelineLauncher>>,
}

/// The destination a subscription names, with `topic` (its source's resource path) for
/// events converted between schemas; an error says why it has none.
pub(crate) fn for_subscription(
    subscription: &EventSubscription,
    topic: &str,
    senders: &Senders,
) -> Result<Arc<dyn Destination>, String> {
    let destination = &subscription.spec.destination;
    if destination.is_webhook() {
        return Ok(Arc::new(Webhook::new(subscription, topic, senders)?));
    }
    if destination.is_pipeline()
        && let Some(launcher) = &senders.pipelines
    {
        return Ok(Arc::new(PipelineTrigger::new(subscription, launcher.clone())?));
    }
    Err(format!(
        "endpoint type `{}` has no destination on this node",
        destination.endpoint_type
    ))
}
