//! Deliveries as the store keeps them: what is due, what each attempt did, what was
//! given up (dead-lettered).

use chrono::{DateTime, Utc};
use mlgrid_core::EventSchema;

use crate::subscriptions::SubscriptionId;

/// A delivery claimed by a worker: one event for one subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    pub subscription_id: SubscriptionId,
    pub sequence: u64,
    /// Attempts made before this one.
    pub attempts: u32,
    pub schema: EventSchema,
    pub published_at: DateTime<Utc>,
    /// The event as stored, in the schema it was published in.
    pub body: String,
}

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterAttempt {
    Delivered,
    RetryAt(DateTime<Utc>),
    /// Given up, with Event Grid's reason.
    DeadLetter(String),
}

impl AfterAttempt {
    /// What the deliveries' rows record: their `state`, when they are due again, and why
    /// they were dead-lettered.
    pub(crate) fn columns(&self) -> (&'static str, Option<DateTime<Utc>>, Option<&str>) {
        match self {
            AfterAttempt::Delivered => ("delivered", None, None),
            AfterAttempt::RetryAt(due) => ("pending", Some(*due), None),
            AfterAttempt::DeadLetter(reason) => ("dead", None, Some(reason)),
        }
    }
}

/// One attempt to deliver a batch of events to a subscription's endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub subscription_id: SubscriptionId,
    /// The events of the batch.
    pub sequences: Vec<u64>,
    pub attempted_at: DateTime<Utc>,
    /// The HTTP status, when there was an answer.
    pub status_code: Option<u16>,
    pub latency_ms: f64,
    /// `Delivered`, `Failed` or the HTTP status class, as shown in the delivery log.
    pub outcome: String,
    pub error: Option<String>,
    /// The start of the receiver's answer.
    pub response_excerpt: Option<String>,
    pub next: AfterAttempt,
}

/// An attempt as the delivery log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempted_at: DateTime<Utc>,
    pub events: u32,
    pub first_sequence: u64,
    pub status_code: Option<u16>,
    pub latency_ms: f64,
    pub outcome: String,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// A dead-lettered event, with Event Grid's dead-letter fields.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub sequence: u64,
    pub schema: EventSchema,
    pub body: String,
    pub dead_letter_reason: String,
    pub delivery_attempts: u32,
    pub last_delivery_outcome: Option<String>,
    pub last_http_status_code: Option<u16>,
    pub publish_time: DateTime<Utc>,
    pub last_delivery_attempt_time: Option<DateTime<Utc>>,
}

/// Which of a subscription's dead letters a call is about: those that match every
/// condition set, all of them when none is. The store selects them in its query, so that
/// no caller pages through every dead letter to pick a few. Names compare ignoring ASCII
/// case, as Event Grid's do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only the events with these sequence numbers.
    pub sequences: Option<Vec<u64>>,
    /// Why they were dead-lettered, e.g. `MaxDeliveryAttemptsExceeded`.
    pub reason: Option<String>,
    /// The event's type: Event Grid's `eventType` or CloudEvents' `type`.
    pub event_type: Option<String>,
    /// The HTTP status code the last attempt got.
    pub status_code: Option<u16>,
}

/// A page of a subscription's dead letters: those after `after` that the filter selects,
/// oldest first, at most `limit` (capped at [`crate::MAX_READ_LIMIT`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterQuery {
    pub after: u64,
    pub limit: u32,
    pub filter: DeadLetterFilter,
}

impl DeadLetterQuery {
    /// Every dead letter after `after`, at most `limit`.
    pub fn page(after: u64, limit: u32) -> DeadLetterQuery {
        DeadLetterQuery {
            after,
            limit,
            filter: DeadLetterFilter::default(),
        }
    }
}

/// Counters of one subscription's deliveries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryStats {
    pub delivered: u64,
    pub dead_lettered: u64,
    /// Pending deliveries: the backlog.
    pub pending: u64,
    /// Attempts that did not deliver.
    pub failed_attempts: u64,
    pub last_error: Option<String>,
}
