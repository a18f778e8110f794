//! One attempt: a batch sent to its destination while it holds its slots, and what the
//! retry rules make of the result, for the delivery log and the metrics.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mlgrid_core::retry::{AttemptResult, NextStep, RetrySchedule, next_step};
use mlgrid_core::subscription::{RetryPolicy, SubscriptionSpec};
use mlgrid_store::{AfterAttempt, AttemptRecord, DueDelivery, SubscriptionId};
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::endpoints::{Endpoint, EndpointPermit};
use crate::clock::SharedClock;
use crate::destination::{Batch, Destination, Sent};

/// What an attempt needs to know of its subscription.
pub(super) struct Target {
    pub name: String,
    /// Its retry policy and batch sizes.
    pub spec: SubscriptionSpec,
    pub destination: Arc<dyn Destination>,
    /// Its own slots, and its endpoint's (shared with every subscription to it).
    pub slots: Arc<Semaphore>,
    pub endpoint: Arc<Endpoint>,
}

impl Target {
    /// A slot of the subscription and one of its endpoint, if both have one free.
    pub(super) fn try_acquire(&self) -> Option<Slots> {
        let subscription = self.slots.clone().try_acquire_owned().ok()?;
        let endpoint = self.endpoint.try_acquire()?;
        Some(Slots {
            _subscription: subscription,
            _endpoint: endpoint,
        })
    }
}

/// What an attempt holds of its subscription's and endpoint's slots until it is recorded.
pub(super) struct Slots {
    _subscription: OwnedSemaphorePermit,
    _endpoint: EndpointPermit,
}

/// The slots an attempt holds until it is recorded.
pub(super) struct Permits {
    /// The node-wide slot; given back once the receiver is slow, if a parked place is free.
    pub global: Option<OwnedSemaphorePermit>,
    pub parked: Arc<Semaphore>,
    /// Held, never read: the subscription's and endpoint's slots.
    pub _own: Slots,
}

impl Permits {
    /// Swaps the node-wide slot for a parked place: a slow receiver holds only its own
    /// slots. Beyond the parked places, a slow attempt keeps its slot.
    fn park(&mut self) -> Option<OwnedSemaphorePermit> {
        let parked = self.parked.clone().try_acquire_owned().ok()?;
        self.global = None;
        Some(parked)
    }
}

/// What every attempt of a dispatcher shares.
#[derive(Clone)]
pub(super) struct Attempts {
    /// Where finished attempts go to be recorded.
    pub records: mpsc::Sender<AttemptRecord>,
    pub schedule: RetrySchedule,
    /// How long an attempt holds a node-wide slot while its receiver has not answered.
    pub slow_after: Duration,
    pub clock: SharedClock,
}

impl Attempts {
    /// Sends one batch and queues its record; the permits are held until it is queued.
    pub(super) async fn run(
        self,
        subscription: SubscriptionId,
        target: Arc<Target>,
        batch: Vec<DueDelivery>,
        mut permits: Permits,
    ) {
        let sending = Batch {
            subscription,
            deliveries: &batch,
            delivery_count: batch.iter().map(|d| d.attempts).max().unwrap_or(0),
            at: self.clock.now(),
        };
        let send = target.destination.send(&sending);
        tokio::pin!(send);
        let sent = tokio::select! {
            sent = &mut send => sent,
            () = tokio::time::sleep(self.slow_after) => {
                let _parked = permits.park();
                send.await
            }
        };
        let now = self.clock.now();
        target.endpoint.observe(&sent.result, now);
        let random: f64 = rand::rng().random();
        let record = record(&target.spec.retry_policy, &self.schedule, &sending, sent, (now, random));
        count(&record);
        if self.records.send(record).await.is_err() {
            tracing::warn!(subscription = %target.name, "the attempt recorder stopped; the lease will run out and the batch be tried again");
        }
    }
}

/// The record of the attempt `sent` on `batch`: its result for the delivery log, and the
/// next step the retry rules give at `now` (with `random` in `[0, 1)` for the jitter).
fn record(
    policy: &RetryPolicy,
    schedule: &RetrySchedule,
    batch: &Batch<'_>,
    sent: Sent,
    (now, random): (DateTime<Utc>, f64),
) -> AttemptRecord {
    let attempts = batch.delivery_count + 1;
    let published = batch.deliveries.iter().map(|d| d.published_at).min().unwrap_or(now);
    let next = match next_step(policy, schedule, &sent.result, attempts, published, now, random) {
        NextStep::Done => AfterAttempt::Delivered,
        NextStep::RetryAt(at) => AfterAttempt::RetryAt(at),
        NextStep::DeadLetter(reason) => AfterAttempt::DeadLetter(reason.as_str().to_owned()),
    };
    let (outcome, error) = match sent.result {
        AttemptResult::Delivered => ("Delivered".to_owned(), None),
        AttemptResult::Status { code, .. } => (format!("Http{code}"), None),
        AttemptResult::Failed { error } => ("Failed".to_owned(), Some(error)),
        AttemptResult::Refused { reason } => ("Refused".to_owned(), Some(reason)),
    };
    AttemptRecord {
        subscription_id: batch.subscription,
        sequences: batch.deliveries.iter().map(|d| d.sequence).collect(),
        attempted_at: batch.at,
        status_code: sent.status,
        latency_ms: sent.latency_ms,
        outcome,
        error,
        response_excerpt: sent.excerpt,
        next,
    }
}

/// Counts an attempt in the metrics.
fn count(record: &AttemptRecord) {
    let events = record.sequences.len() as u64;
    metrics::histogram!("mlgrid_delivery_attempt_seconds").record(record.latency_ms / 1000.0);
    match &record.next {
        AfterAttempt::Delivered => metrics::counter!("mlgrid_events_delivered_total").increment(events),
        AfterAttempt::RetryAt(_) => metrics::counter!("mlgrid_delivery_failures_total").increment(events),
        AfterAttempt::DeadLetter(_) => {
            metrics::counter!("mlgrid_delivery_failures_total").increment(events);
            metrics::counter!("mlgrid_events_dead_lettered_total").increment(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use mlgrid_core::EventSchema;

    use super::*;

    fn batch(attempts: u32, published: DateTime<Utc>) -> Vec<DueDelivery> {
        [4, 5]
            .map(|sequence| DueDelivery {
                subscription_id: SubscriptionId(7),
                sequence,
                attempts,
                schema: EventSchema::EventGridSchema,
                published_at: published,
                body: "{}".into(),
            })
            .to_vec()
    }

    fn sent(result: AttemptResult, status: Option<u16>) -> Sent {
        Sent {
            result,
            status,
            latency_ms: 12.5,
            excerpt: Some("ok".into()),
        }
    }

    fn outcome(result: AttemptResult, status: Option<u16>, attempts: u32) -> AttemptRecord {
        let now = DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z").unwrap().to_utc();
        let deliveries = batch(attempts, now - chrono::Duration::minutes(1));
        let batch = Batch {
            subscription: SubscriptionId(7),
            deliveries: &deliveries,
            delivery_count: attempts,
            at: now,
        };
        record(
            &RetryPolicy::default(),
            &RetrySchedule::default(),
            &batch,
            sent(result, status),
            (now, 0.5),
        )
    }

    #[test]
    fn a_delivered_batch_is_done_and_keeps_what_the_receiver_said() {
        let record = outcome(AttemptResult::Delivered, Some(200), 0);
        assert_eq!(record.next, AfterAttempt::Delivered);
        assert_eq!((record.outcome.as_str(), record.error), ("Delivered", None));
        assert_eq!(record.sequences, [4, 5]);
        assert_eq!((record.status_code, record.latency_ms), (Some(200), 12.5));
        assert_eq!(record.response_excerpt.as_deref(), Some("ok"));
    }

    #[test]
    fn a_failed_attempt_is_retried_on_event_grids_schedule() {
        let record = outcome(AttemptResult::from_status(503, None), Some(503), 0);
        assert_eq!(record.outcome, "Http503");
        // The first retry comes 10 s later (the middle of the jitter).
        let AfterAttempt::RetryAt(at) = record.next else {
            panic!("{:?}", record.next)
        };
        assert_eq!(at - record.attempted_at, chrono::Duration::seconds(10));
        let no_answer = outcome(
            AttemptResult::Failed {
                error: "connection refused".into(),
            },
            None,
            0,
        );
        assert_eq!(no_answer.outcome, "Failed");
        assert_eq!(no_answer.error.as_deref(), Some("connection refused"));
        assert!(matches!(no_answer.next, AfterAttempt::RetryAt(_)));
    }

    #[test]
    fn refusals_and_the_last_attempt_are_dead_lettered_with_their_reason() {
        let refused = outcome(AttemptResult::from_status(400, None), Some(400), 0);
        assert_eq!(refused.next, AfterAttempt::DeadLetter("NonRetriableStatus".into()));
        let last = outcome(AttemptResult::from_status(500, None), Some(500), 29);
        assert_eq!(
            last.next,
            AfterAttempt::DeadLetter("MaxDeliveryAttemptsExceeded".into())
        );
    }
}
