//! Endpoints: a receiver's origin (scheme, host and port) and how it has been answering.
//! Every subscription to one endpoint shares its slots and its health, so a receiver that
//! hangs or fails holds only its own slots, however many subscriptions point at it.
//!
//! An endpoint that keeps failing (no answer, 5xx, 408, 429) is put on probation: no
//! attempt until it ends, and then one attempt at a time (a probe) until one succeeds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mlgrid_core::retry::{AttemptResult, RetrySchedule};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// After this many unwell answers in a row an endpoint is on probation.
const PROBATION_AFTER: u32 = 5;
/// The first probation, doubled with each further failure, up to the longest.
const PROBATION_FIRST: Duration = Duration::from_secs(10);
const PROBATION_LONGEST: Duration = Duration::from_secs(300);

/// One endpoint's slots and health.
pub(crate) struct Endpoint {
    slots: Arc<Semaphore>,
    /// Held by the one attempt allowed while the endpoint is failing.
    probe: Arc<Semaphore>,
    failures_in_a_row: AtomicU32,
    last_failure: Mutex<Option<DateTime<Utc>>>,
}

/// What an attempt to an endpoint holds until it is recorded.
pub(crate) struct EndpointPermit {
    _slot: OwnedSemaphorePermit,
    _probe: Option<OwnedSemaphorePermit>,
}

impl Endpoint {
    pub(crate) fn new(slots: usize) -> Endpoint {
        Endpoint {
            slots: Arc::new(Semaphore::new(slots)),
            probe: Arc::new(Semaphore::new(1)),
            failures_in_a_row: AtomicU32::new(0),
            last_failure: Mutex::new(None),
        }
    }

    fn failing(&self) -> bool {
        self.failures_in_a_row.load(Ordering::Relaxed) >= PROBATION_AFTER
    }

    /// Until when new attempts must wait, if the endpoint is on probation at `now`: the
    /// failures keep coming, so it is tried less and less often.
    pub(crate) fn probation(&self, schedule: &RetrySchedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let failures = self.failures_in_a_row.load(Ordering::Relaxed);
        if failures < PROBATION_AFTER {
            return None;
        }
        let doublings = (failures - PROBATION_AFTER).min(16);
        let wait = PROBATION_FIRST
            .saturating_mul(1 << doublings)
            .min(PROBATION_LONGEST)
            .mul_f64(schedule.scale);
        let last_failure = (*self.last_failure.lock().expect("never held across a panic"))?;
        let until = last_failure + chrono::Duration::from_std(wait).ok()?;
        (until > now).then_some(until)
    }

    /// A slot for one attempt, if the endpoint has one free: while it is failing, only
    /// one attempt at a time.
    pub(crate) fn try_acquire(&self) -> Option<EndpointPermit> {
        let probe = if self.failing() {
            Some(self.probe.clone().try_acquire_owned().ok()?)
        } else {
            None
        };
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        Some(EndpointPermit {
            _slot: slot,
            _probe: probe,
        })
    }

    /// Takes note of an attempt's result: a success ends any probation at once.
    pub(crate) fn observe(&self, result: &AttemptResult, at: DateTime<Utc>) {
        if result.endpoint_unwell() {
            self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
            *self.last_failure.lock().expect("never held across a panic") = Some(at);
        } else {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
        }
    }
}

/// The endpoints of the current subscriptions, by origin.
#[derive(Default)]
pub(crate) struct Endpoints {
    by_origin: HashMap<String, Arc<Endpoint>>,
}

impl Endpoints {
    /// The endpoint named `key` (see [`crate::destination::Destination::endpoint`]): the
    /// one `previous` knew (attempts in flight use it), else a new one with `slots` slots.
    pub(crate) fn get(&mut self, previous: &Endpoints, key: &str, slots: usize) -> Arc<Endpoint> {
        let known = previous.by_origin.get(key);
        self.by_origin
            .entry(key.to_owned())
            .or_insert_with(|| known.cloned().unwrap_or_else(|| Arc::new(Endpoint::new(slots))))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_to_one_receiver_share_its_endpoint() {
        let mut endpoints = Endpoints::default();
        let none = Endpoints::default();
        let one = endpoints.get(&none, "http://127.0.0.1:8080", 4);
        let same = endpoints.get(&none, "http://127.0.0.1:8080", 4);
        assert!(Arc::ptr_eq(&one, &same));
        let other = endpoints.get(&none, "http://127.0.0.1:8081", 4);
        assert!(!Arc::ptr_eq(&one, &other));
        // A new set keeps the endpoints the old one knew.
        let mut next = Endpoints::default();
        assert!(Arc::ptr_eq(&next.get(&endpoints, "http://127.0.0.1:8080", 4), &one));
    }

    #[test]
    fn an_endpoint_holds_no_more_than_its_slots() {
        let endpoint = Endpoint::new(2);
        let held = [endpoint.try_acquire().unwrap(), endpoint.try_acquire().unwrap()];
        assert!(endpoint.try_acquire().is_none());
        drop(held);
        assert!(endpoint.try_acquire().is_some());
    }

    #[test]
    fn a_failing_endpoint_is_on_probation_then_probed_one_attempt_at_a_time() {
        let schedule = RetrySchedule::default();
        let endpoint = Endpoint::new(8);
        let t0 = Utc::now();
        let timeout = AttemptResult::Failed {
            error: "no answer within 30 s".into(),
        };
        for _ in 0..PROBATION_AFTER - 1 {
            endpoint.observe(&timeout, t0);
        }
        assert_eq!(endpoint.probation(&schedule, t0), None, "four failures are not enough");
        endpoint.observe(&timeout, t0);
        let until = endpoint.probation(&schedule, t0).expect("on probation");
        assert_eq!(until - t0, chrono::Duration::seconds(10));
        assert_eq!(endpoint.probation(&schedule, until), None, "it ends");
        // After it: one probe at a time.
        let probe = endpoint.try_acquire().expect("a probe");
        assert!(endpoint.try_acquire().is_none(), "a second attempt waits for the probe");
        drop(probe);
        // Each further failure doubles the probation.
        endpoint.observe(&timeout, until);
        assert_eq!(
            endpoint.probation(&schedule, until).unwrap() - until,
            chrono::Duration::seconds(20)
        );
        // A success ends it, and the endpoint takes several attempts again.
        endpoint.observe(&AttemptResult::Delivered, until);
        assert_eq!(endpoint.probation(&schedule, until), None);
        let both = [endpoint.try_acquire(), endpoint.try_acquire()];
        assert!(both.iter().all(Option::is_some));
    }

    #[test]
    fn a_receiver_refusing_events_is_not_unwell() {
        let endpoint = Endpoint::new(1);
        let t0 = Utc::now();
        for _ in 0..10 {
            endpoint.observe(&AttemptResult::from_status(400, None), t0);
        }
        assert_eq!(endpoint.probation(&RetrySchedule::default(), t0), None);
    }
}
