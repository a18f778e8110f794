//! The time the delivery engine and the validation handshake go by: the system's, or in
//! tests one that stands still until the test moves it, so that a test of an expiry, a
//! validation window or a retry schedule never races the machine's real clock.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// Where the time comes from.
pub trait Clock: std::fmt::Debug + Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// A clock, shared by every part that asks for the time.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system's clock, shared.
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until it is moved: for tests.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        *self.now.lock().expect("never held across a panic") += by;
    }

    /// The clock as a [`SharedClock`]; moving this one moves it too.
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("never held across a panic")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_copies_follow() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
        let clock = ManualClock::new(start);
        let shared = clock.shared();
        assert_eq!(shared.now(), start);
        clock.advance(chrono::Duration::minutes(6));
        assert_eq!(shared.now(), start + chrono::Duration::minutes(6));
    }
}
