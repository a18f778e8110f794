//! How long event logs and delivery history are kept, and what a retention allows to
//! prune.
//!
//! A source's retention is a time (events older than it may go) and optionally a size
//! (the oldest events may go while the log's stored bodies exceed it). Pruning removes a
//! prefix of the log: everything up to a sequence number, the source's *pruned through*
//! mark, which only grows. The rule here decides that mark from the oldest events past
//! it; the store enforces what no retention may remove (events the fan-out has not routed
//! yet, events a subscription has yet to deliver or holds as dead letters).
//!
//! ```
//! use chrono::{Duration, TimeZone, Utc};
//! use mlgrid_core::retention::{LogEntry, Retention, RetentionSpan, prunable_through};
//!
//! let now = Utc.with_ymd_and_hms(2024, 5, 8, 0, 0, 0).unwrap();
//! let retention = Retention { time: RetentionSpan::parse("7d").unwrap(), max_bytes: None };
//! let old = LogEntry { sequence: 1, published_at: now - Duration::days(8), bytes: 100 };
//! let new = LogEntry { sequence: 2, published_at: now - Duration::days(1), bytes: 100 };
//! let through = prunable_through(&[old, new], &retention.limits(now, 200), 2);
//! assert_eq!(through.through, Some(1));
//! ```

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Default time the event log of a source keeps its events (`mlgrid serve --retention`).
pub const DEFAULT_EVENT_RETENTION: RetentionSpan = RetentionSpan(7 * DAY);
/// Default time delivered deliveries and attempts are kept (`--delivery-retention`).
pub const DEFAULT_DELIVERY_RETENTION: RetentionSpan = RetentionSpan(DAY);
/// Default time dead letters are kept unless purged (`--dead-letter-retention`).
pub const DEFAULT_DEAD_LETTER_RETENTION: RetentionSpan = RetentionSpan(30 * DAY);

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// Longest retention: ten years (beyond, times stop being representable sensibly).
const MAX_SECONDS: u64 = 3650 * DAY;

/// Why a retention was refused; says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RetentionError(pub String);

/// A length of time written as a number and a unit: `30s`, `30m`, `12h`, `7d`; at least
/// one second, at most 3650 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetentionSpan(u64);

impl RetentionSpan {
    /// Parses `<number><unit>` with unit `s`, `m`, `h` or `d`.
    pub fn parse(text: &str) -> Result<RetentionSpan, RetentionError> {
        let refuse = |why: &str| {
            RetentionError(format!(
                "retention `{text}` {why}: write a whole number and a unit, s, m, h or d (e.g. 30m, 12h, 7d)"
            ))
        };
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| refuse("has no unit"))?;
        let (number, unit) = text.split_at(split);
        if number.is_empty() {
            return Err(refuse("has no number"));
        }
        let unit = match unit {
            "s" => 1,
            "m" => MINUTE,
            "h" => HOUR,
            "d" => DAY,
            _ => return Err(refuse("has an unknown unit")),
        };
        let number: u64 = number.parse().map_err(|_| refuse("is too long"))?;
        let seconds = number.checked_mul(unit).ok_or_else(|| refuse("is too long"))?;
        RetentionSpan::from_seconds(seconds).map_err(|e| RetentionError(format!("retention `{text}` {}", e.0)))
    }

    /// A span of whole seconds, checked against the bounds.
    pub fn from_seconds(seconds: u64) -> Result<RetentionSpan, RetentionError> {
        if seconds == 0 {
            return Err(RetentionError("must be at least 1s".to_owned()));
        }
        if seconds > MAX_SECONDS {
            return Err(RetentionError(format!("must be at most 3650d, got {seconds}s")));
        }
        Ok(RetentionSpan(seconds))
    }

    pub fn seconds(self) -> u64 {
        self.0
    }

    pub fn duration(self) -> Duration {
        Duration::seconds(self.0 as i64)
    }

    /// The earliest time something kept for this span may have been made at `now`:
    /// older than this, it may go.
    pub fn cutoff(self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.duration()
    }
}

/// Written in the largest unit that divides it: `7d`, `36h`, `90m`, `45s`.
impl fmt::Display for RetentionSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, name) in [(DAY, "d"), (HOUR, "h"), (MINUTE, "m")] {
            if self.0.is_multiple_of(unit) {
                return write!(f, "{}{name}", self.0 / unit);
            }
        }
        write!(f, "{}s", self.0)
    }
}

impl std::str::FromStr for RetentionSpan {
    type Err = RetentionError;

    fn from_str(s: &str) -> Result<Self, RetentionError> {
        RetentionSpan::parse(s)
    }
}

impl Serialize for RetentionSpan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RetentionSpan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        RetentionSpan::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What a source's event log keeps: events younger than `time`, and, with `max_bytes`,
/// at most that many bytes of event bodies (the oldest go first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub time: RetentionSpan,
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// What this retention allows at `now`, for a log holding `stored_bytes` of bodies.
    pub fn limits(&self, now: DateTime<Utc>, stored_bytes: u64) -> PruneLimits {
        PruneLimits {
            published_before: self.time.cutoff(now),
            excess_bytes: self.max_bytes.map_or(0, |max| stored_bytes.saturating_sub(max)),
        }
    }
}

/// The outcome of [`Retention::limits`]: events published before a time may go, and so
/// may the oldest events until `excess_bytes` of bodies are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneLimits {
    pub published_before: DateTime<Utc>,
    pub excess_bytes: u64,
}

/// One event at the old end of a log: what retention looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry {
    pub sequence: u64,
    pub published_at: DateTime<Utc>,
    /// Size of the stored body.
    pub bytes: u64,
}

/// What [`prunable_through`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prunable {
    /// The highest sequence that may go (everything up to it), `None` when nothing may.
    pub through: Option<u64>,
    /// How many of the entries may go, and their bytes.
    pub events: u64,
    pub bytes: u64,
}

/// How far a log may be pruned: `entries` are the oldest events past the log's current
/// mark, oldest first, gap-free; the prefix that may go is the events older than the
/// retention's time or needed to bring the log under its size, and never past
/// `routed_through` (the fan-out's cursor: an event it has not routed yet may still have
/// subscribers to deliver to).
pub fn prunable_through(entries: &[LogEntry], limits: &PruneLimits, routed_through: u64) -> Prunable {
    let mut excess = limits.excess_bytes;
    let mut prunable = Prunable {
        through: None,
        events: 0,
        bytes: 0,
    };
    for entry in entries {
        if entry.sequence > routed_through {
            break;
        }
        let expired = entry.published_at < limits.published_before;
        if !expired && excess == 0 {
            break;
        }
        excess = excess.saturating_sub(entry.bytes);
        prunable.through = Some(entry.sequence);
        prunable.events += 1;
        prunable.bytes += entry.bytes;
    }
    prunable
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 8, 12, 0, 0).unwrap()
    }

    fn entry(sequence: u64, age: Duration, bytes: u64) -> LogEntry {
        LogEntry {
            sequence,
            published_at: now() - age,
            bytes,
        }
    }

    fn span(text: &str) -> RetentionSpan {
        RetentionSpan::parse(text).unwrap()
    }

    #[test]
    fn spans_parse_in_seconds_minutes_hours_and_days() {
        assert_eq!(span("45s").seconds(), 45);
        assert_eq!(span("30m").seconds(), 1800);
        assert_eq!(span("12h").seconds(), 43_200);
        assert_eq!(span("7d").seconds(), 604_800);
        assert_eq!(span(" 7d ").seconds(), 604_800);
    }

    #[test]
    fn spans_print_in_the_largest_unit_that_divides_them() {
        assert_eq!(span("168h").to_string(), "7d");
        assert_eq!(span("36h").to_string(), "36h");
        assert_eq!(span("90m").to_string(), "90m");
        assert_eq!(span("61s").to_string(), "61s");
        for text in ["1s", "59m", "25h", "3650d"] {
            assert_eq!(span(text).to_string(), text);
        }
    }

    #[test]
    fn spans_without_a_number_a_known_unit_or_within_bounds_are_refused_saying_how_to_write_them() {
        for bad in [
            "",
            "7",
            "d",
            "7w",
            "7 d",
            "-1d",
            "1.5h",
            "0s",
            "3651d",
            "99999999999999999999d",
            "P7D",
        ] {
            let err = RetentionSpan::parse(bad).unwrap_err();
            assert!(err.0.contains(&format!("`{}`", bad.trim())), "{bad}: {err}");
        }
        assert!(RetentionSpan::parse("7").unwrap_err().0.contains("e.g. 30m, 12h, 7d"));
        assert!(RetentionSpan::parse("0s").unwrap_err().0.contains("at least 1s"));
    }

    #[test]
    fn spans_round_trip_through_json_as_text() {
        let json = serde_json::to_string(&span("12h")).unwrap();
        assert_eq!(json, "\"12h\"");
        assert_eq!(serde_json::from_str::<RetentionSpan>(&json).unwrap(), span("12h"));
        assert!(serde_json::from_str::<RetentionSpan>("\"12x\"").is_err());
    }

    #[test]
    fn events_older_than_the_time_go_as_a_prefix() {
        let retention = Retention {
            time: span("7d"),
            max_bytes: None,
        };
        let entries = [
            entry(4, Duration::days(9), 10),
            entry(5, Duration::days(8), 10),
            entry(6, Duration::days(6), 10),
            // Published out of order with its neighbours (clock steps): still after 6.
            entry(7, Duration::days(8), 10),
        ];
        let prunable = prunable_through(&entries, &retention.limits(now(), 40), 100);
        assert_eq!(
            prunable,
            Prunable {
                through: Some(5),
                events: 2,
                bytes: 20
            }
        );
    }

    #[test]
    fn nothing_goes_when_the_oldest_event_is_young() {
        let retention = Retention {
            time: span("1h"),
            max_bytes: Some(1000),
        };
        let entries = [entry(1, Duration::minutes(59), 10)];
        assert_eq!(
            prunable_through(&entries, &retention.limits(now(), 10), 1).through,
            None
        );
        assert_eq!(prunable_through(&[], &retention.limits(now(), 10), 1).through, None);
    }

    #[test]
    fn the_oldest_events_go_until_the_log_fits_its_size() {
        let retention = Retention {
            time: span("7d"),
            max_bytes: Some(250),
        };
        let entries: Vec<_> = (1..=5).map(|s| entry(s, Duration::minutes(1), 100)).collect();
        // 500 bytes stored, 250 allowed: three events must go to fit (200 left).
        let prunable = prunable_through(&entries, &retention.limits(now(), 500), 5);
        assert_eq!(prunable.through, Some(3));
        assert_eq!(prunable.bytes, 300);
        // Under the size: nothing goes.
        assert_eq!(
            prunable_through(&entries, &retention.limits(now(), 250), 5).through,
            None
        );
    }

    #[test]
    fn events_the_fan_out_has_not_routed_never_go() {
        let retention = Retention {
            time: span("1s"),
            max_bytes: Some(0),
        };
        let entries: Vec<_> = (1..=5).map(|s| entry(s, Duration::days(30), 100)).collect();
        assert_eq!(
            prunable_through(&entries, &retention.limits(now(), 500), 2).through,
            Some(2)
        );
        assert_eq!(
            prunable_through(&entries, &retention.limits(now(), 500), 0).through,
            None
        );
    }
}
