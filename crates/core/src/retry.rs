//! Event Grid's delivery retry rules as pure functions: the schedule, which answers are
//! retried, and when an event is given up (dead-lettered).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::subscription::RetryPolicy;

/// Event Grid's retry schedule after the 1st, 2nd, ... failed attempt; later attempts
/// wait 12 hours each.
pub const SCHEDULE_SECONDS: [u64; 9] = [10, 30, 60, 300, 600, 1800, 3600, 10_800, 21_600];
const LATER_SECONDS: u64 = 43_200;
/// Each wait is randomised by up to this fraction either way, so that failed deliveries
/// do not come back in lockstep.
pub const JITTER: f64 = 0.1;

/// HTTP answers that no retry can fix (Event Grid's list for webhooks).
pub const NOT_RETRIED: [u16; 4] = [400, 401, 403, 413];

/// The retry schedule, with a time scale so that tests can run the same code in
/// milliseconds: a scale of 0.001 turns 10 s into 10 ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySchedule {
    pub scale: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule { scale: 1.0 }
    }
}

impl RetrySchedule {
    /// How long to wait after `failed_attempts` failed attempts (1 for the first
    /// failure). `random` in `[0, 1)` spreads the wait by ±[`JITTER`].
    pub fn delay(&self, failed_attempts: u32, random: f64) -> Duration {
        let index = failed_attempts.saturating_sub(1) as usize;
        let base = SCHEDULE_SECONDS.get(index).copied().unwrap_or(LATER_SECONDS) as f64;
        let jitter = 1.0 + JITTER * (2.0 * random.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64(base * jitter * self.scale)
    }
}

/// What came of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// 200-204.
    Delivered,
    /// Any other HTTP status; `retry_after` from a `Retry-After` header on 429 and 503.
    Status { code: u16, retry_after: Option<Duration> },
    /// No HTTP answer: refused, reset, timed out, refused by the address guard.
    Failed { error: String },
    /// The destination refused the event for good, for `reason` (a pipeline trigger whose
    /// template names a field the event lacks, a disabled pipeline): never retried.
    Refused { reason: String },
}

impl AttemptResult {
    /// Classifies an HTTP status; only 200-204 is success.
    pub fn from_status(code: u16, retry_after: Option<Duration>) -> AttemptResult {
        if (200..=204).contains(&code) {
            AttemptResult::Delivered
        } else {
            AttemptResult::Status { code, retry_after }
        }
    }

    /// Whether the answer says the endpoint itself is unwell (no answer, 5xx, 408, 429),
    /// rather than that it refused this request (another 4xx): an endpoint that answers
    /// is up, whatever it thinks of the events.
    pub fn endpoint_unwell(&self) -> bool {
        match self {
            AttemptResult::Delivered => false,
            AttemptResult::Status { code, .. } => *code >= 500 || *code == 408 || *code == 429,
            AttemptResult::Failed { .. } => true,
            AttemptResult::Refused { .. } => false,
        }
    }
}

/// Why an event was given up, in Event Grid's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    MaxDeliveryAttemptsExceeded,
    TimeToLiveExceeded,
    /// The receiver answered with a status that is not retried (400, 401, 403, 413).
    NonRetriableStatus,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::MaxDeliveryAttemptsExceeded => "MaxDeliveryAttemptsExceeded",
            DeadLetterReason::TimeToLiveExceeded => "TimeToLiveExceeded",
            DeadLetterReason::NonRetriableStatus => "NonRetriableStatus",
        }
    }
}

/// What to do with a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum NextStep {
    Done,
    RetryAt(DateTime<Utc>),
    DeadLetter(DeadLetterReason),
}

/// Decides a delivery's next step after its `attempts`-th attempt (counting this one),
/// under `policy`, for an event published at `published` and now at `now`.
///
/// A `Retry-After` longer than the schedule's wait is honoured; the event is given up
/// when the attempts are used up or the next try would not come before its time to live
/// runs out.
pub fn next_step(
    policy: &RetryPolicy,
    schedule: &RetrySchedule,
    result: &AttemptResult,
    attempts: u32,
    published: DateTime<Utc>,
    now: DateTime<Utc>,
    random: f64,
) -> NextStep {
    let retry_after = match result {
        AttemptResult::Delivered => return NextStep::Done,
        AttemptResult::Status { code, .. } if NOT_RETRIED.contains(code) => {
            return NextStep::DeadLetter(DeadLetterReason::NonRetriableStatus);
        }
        AttemptResult::Refused { .. } => return NextStep::DeadLetter(DeadLetterReason::NonRetriableStatus),
        AttemptResult::Status { retry_after, .. } => *retry_after,
        AttemptResult::Failed { .. } => None,
    };
    if attempts >= policy.max_delivery_attempts {
        return NextStep::DeadLetter(DeadLetterReason::MaxDeliveryAttemptsExceeded);
    }
    let wait = schedule.delay(attempts, random).max(retry_after.unwrap_or_default());
    let at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
    let ttl = chrono::Duration::seconds(i64::from(policy.event_time_to_live_in_minutes) * 60);
    let expires = published + chrono::Duration::milliseconds((ttl.num_milliseconds() as f64 * schedule.scale) as i64);
    if at >= expires {
        return NextStep::DeadLetter(DeadLetterReason::TimeToLiveExceeded);
    }
    NextStep::RetryAt(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_silence_server_errors_and_throttling_say_an_endpoint_is_unwell() {
        let status = |code| AttemptResult::from_status(code, None);
        let failed = AttemptResult::Failed {
            error: "refused".into(),
        };
        assert!(failed.endpoint_unwell());
        for code in [500, 502, 503, 504, 408, 429] {
            assert!(status(code).endpoint_unwell(), "{code}");
        }
        for code in [200, 204, 400, 401, 403, 404, 413] {
            assert!(!status(code).endpoint_unwell(), "{code}");
        }
    }

    fn policy(attempts: u32, ttl: u32) -> RetryPolicy {
        RetryPolicy {
            max_delivery_attempts: attempts,
            event_time_to_live_in_minutes: ttl,
        }
    }

    #[test]
    fn the_schedule_is_event_grids_with_bounded_jitter() {
        let s = RetrySchedule::default();
        let middle: Vec<u64> = (1..=11).map(|n| s.delay(n, 0.5).as_secs()).collect();
        assert_eq!(
            middle,
            [10, 30, 60, 300, 600, 1800, 3600, 10_800, 21_600, 43_200, 43_200]
        );
        assert_eq!(s.delay(1, 0.0), Duration::from_secs(9));
        assert_eq!(s.delay(1, 1.0), Duration::from_secs(11));
        assert_eq!(RetrySchedule { scale: 0.001 }.delay(2, 0.5), Duration::from_millis(30));
    }

    #[test]
    fn only_200_to_204_is_success() {
        assert_eq!(AttemptResult::from_status(204, None), AttemptResult::Delivered);
        assert!(matches!(
            AttemptResult::from_status(205, None),
            AttemptResult::Status { code: 205, .. }
        ));
        assert!(matches!(
            AttemptResult::from_status(302, None),
            AttemptResult::Status { .. }
        ));
    }

    #[test]
    fn steps_follow_the_policy() {
        let now = Utc::now();
        let s = RetrySchedule::default();
        let p = policy(3, 1440);
        let status = |code| AttemptResult::Status {
            code,
            retry_after: None,
        };
        assert_eq!(
            next_step(&p, &s, &AttemptResult::Delivered, 1, now, now, 0.5),
            NextStep::Done
        );
        for code in NOT_RETRIED {
            assert_eq!(
                next_step(&p, &s, &status(code), 1, now, now, 0.5),
                NextStep::DeadLetter(DeadLetterReason::NonRetriableStatus)
            );
        }
        assert_eq!(
            next_step(&p, &s, &status(500), 1, now, now, 0.5),
            NextStep::RetryAt(now + chrono::Duration::seconds(10))
        );
        assert_eq!(
            next_step(&p, &s, &status(500), 3, now, now, 0.5),
            NextStep::DeadLetter(DeadLetterReason::MaxDeliveryAttemptsExceeded)
        );
        let refused = AttemptResult::Failed {
            error: "connection refused".into(),
        };
        assert_eq!(
            next_step(&p, &s, &refused, 2, now, now, 0.5),
            NextStep::RetryAt(now + chrono::Duration::seconds(30))
        );
        // A 1-minute TTL leaves no room for the 1-minute wait after the 3rd attempt.
        let short = policy(30, 1);
        assert_eq!(
            next_step(&short, &s, &status(503), 3, now, now, 0.5),
            NextStep::DeadLetter(DeadLetterReason::TimeToLiveExceeded)
        );
    }

    #[test]
    fn retry_after_is_honoured_when_longer() {
        let now = Utc::now();
        let s = RetrySchedule::default();
        let busy = AttemptResult::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(120)),
        };
        assert_eq!(
            next_step(&policy(30, 1440), &s, &busy, 1, now, now, 0.5),
            NextStep::RetryAt(now + chrono::Duration::seconds(120))
        );
        let soon = AttemptResult::Status {
            code: 503,
            retry_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(
            next_step(&policy(30, 1440), &s, &soon, 1, now, now, 0.5),
            NextStep::RetryAt(now + chrono::Duration::seconds(10))
        );
    }
}
