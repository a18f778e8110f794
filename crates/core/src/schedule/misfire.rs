//! Ticks a schedule missed while mlgrid was down, and which of them to fire late.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::Schedule;

/// The most missed ticks fired for one schedule under [`MisfirePolicy::All`]: a
/// per-minute schedule down for a day would otherwise submit 1,440 runs at once.
pub const MAX_MISFIRES: usize = 100;

/// What to do with the ticks missed while the server was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MisfirePolicy {
    /// Fire none of them; the schedule goes on with its next tick.
    None,
    /// Fire the most recent one, once: the work is done as of the latest tick.
    #[default]
    Latest,
    /// Fire each of them, oldest first, but only the most recent [`MAX_MISFIRES`].
    All,
}

/// The missed ticks of `schedule` to fire under `policy`: from its ticks in
/// `(last_due, now]`, none, the most recent, or the most recent [`MAX_MISFIRES`]; in
/// ascending order, without repeats.
///
/// `last_due` is the last tick the scheduler handled. A scheduler that woke on time for a
/// tick fires it as due, not as missed: this is for the ticks it slept through. The work
/// is bounded by the number of ticks returned, however long the outage: it walks back
/// from the latest tick.
pub fn missed(
    schedule: &Schedule,
    policy: MisfirePolicy,
    last_due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let limit = match policy {
        MisfirePolicy::None => 0,
        MisfirePolicy::Latest => 1,
        MisfirePolicy::All => MAX_MISFIRES,
    };
    let mut ticks = Vec::new();
    let mut at = now;
    while ticks.len() < limit {
        match schedule.last_at_or_before(at) {
            Some(tick) if tick > last_due => {
                ticks.push(tick);
                // A tick after `last_due` is after the earliest instant, so this is one.
                at = tick - TimeDelta::nanoseconds(1);
            }
            _ => break,
        }
    }
    ticks.reverse();
    ticks
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schedule::Recurrence;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn every_minute_from(start: &str) -> Schedule {
        let recurrence: Recurrence =
            serde_json::from_value(json!({"frequency": "Minute", "interval": 1, "startTime": start})).unwrap();
        recurrence.check(utc(start)).unwrap()
    }

    #[test]
    fn reads_and_writes_lowercase_names_defaulting_to_latest() {
        assert_eq!(MisfirePolicy::default(), MisfirePolicy::Latest);
        for (policy, name) in [
            (MisfirePolicy::None, "none"),
            (MisfirePolicy::Latest, "latest"),
            (MisfirePolicy::All, "all"),
        ] {
            assert_eq!(serde_json::to_value(policy).unwrap(), name);
            assert_eq!(serde_json::from_value::<MisfirePolicy>(json!(name)).unwrap(), policy);
        }
    }

    #[test]
    fn none_fires_nothing_latest_the_last_tick_all_every_tick_in_order() {
        let schedule = every_minute_from("2026-01-01T00:00:00Z");
        let (last_due, now) = (utc("2026-01-01T00:01:00Z"), utc("2026-01-01T00:04:30Z"));
        assert!(missed(&schedule, MisfirePolicy::None, last_due, now).is_empty());
        assert_eq!(
            missed(&schedule, MisfirePolicy::Latest, last_due, now),
            [utc("2026-01-01T00:04:00Z")]
        );
        assert_eq!(
            missed(&schedule, MisfirePolicy::All, last_due, now),
            [
                utc("2026-01-01T00:02:00Z"),
                utc("2026-01-01T00:03:00Z"),
                utc("2026-01-01T00:04:00Z")
            ]
        );
    }

    #[test]
    fn counts_a_tick_at_now_but_not_one_at_the_last_due() {
        let schedule = every_minute_from("2026-01-01T00:00:00Z");
        let ticks = missed(
            &schedule,
            MisfirePolicy::All,
            utc("2026-01-01T00:01:00Z"),
            utc("2026-01-01T00:02:00Z"),
        );
        assert_eq!(ticks, [utc("2026-01-01T00:02:00Z")]);
        let none = missed(
            &schedule,
            MisfirePolicy::All,
            utc("2026-01-01T00:02:00Z"),
            utc("2026-01-01T00:02:59Z"),
        );
        assert!(none.is_empty());
    }

    #[test]
    fn all_after_a_year_down_is_the_last_hundred_ticks() {
        let schedule = every_minute_from("2025-01-01T00:00:00Z");
        let now = utc("2026-01-01T00:00:30Z");
        let ticks = missed(&schedule, MisfirePolicy::All, utc("2025-01-01T00:00:00Z"), now);
        assert_eq!(ticks.len(), MAX_MISFIRES);
        assert_eq!(ticks[0], utc("2025-12-31T22:21:00Z"));
        assert_eq!(ticks[MAX_MISFIRES - 1], utc("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn nothing_after_the_end_time_is_missed() {
        let recurrence: Recurrence = serde_json::from_value(json!({
            "frequency": "Hour", "interval": 1,
            "startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-01T02:00:00Z",
        }))
        .unwrap();
        let schedule = recurrence.check(utc("2026-01-01T00:00:00Z")).unwrap();
        let ticks = missed(
            &schedule,
            MisfirePolicy::All,
            utc("2025-12-01T00:00:00Z"),
            utc("2026-02-01T00:00:00Z"),
        );
        assert_eq!(
            ticks,
            [
                utc("2026-01-01T00:00:00Z"),
                utc("2026-01-01T01:00:00Z"),
                utc("2026-01-01T02:00:00Z")
            ]
        );
    }
}
