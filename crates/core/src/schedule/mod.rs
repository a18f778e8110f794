//! Schedules: when a recurrence fires, as pure arithmetic on instants the caller passes
//! in. The recurrence is Azure ML's `ScheduleRecurrence` (that of Logic Apps'
//! recurrence triggers), with the cases Azure leaves open decided as below.
//!
//! A [`Recurrence`] is what the user writes; [`Recurrence::check`] refuses what makes no
//! sense and compiles the rest into a [`Schedule`], whose [`Schedule::next_after`] gives
//! the next fire time. [`missed`] picks the ticks to fire after an outage under a
//! [`MisfirePolicy`]; [`Concurrency::decide`] says whether a tick starts a run while
//! earlier ones are still going.
//!
//! # When a schedule fires
//!
//! - **Anchor.** The start time if given, else the time the schedule was created; its
//!   seconds are dropped, as every fire time is a whole minute. Nothing fires before the
//!   anchor (a fire time equal to it fires) or after the end time (one equal to it fires).
//! - **Minute, Hour:** at anchor + k × interval minutes or hours (k = 0, 1, ...), in
//!   elapsed time, whatever the clocks do: a start at 10:07 hourly fires at every :07.
//! - **Day:** on the local dates anchor date + k × interval days, in the time zone (IANA
//!   name, UTC by default), at each of `hours` × `minutes`; without hours, at the
//!   anchor's local hour; without minutes, at the anchor's local minute.
//! - **Week:** every interval weeks, counted from the week (Monday to Sunday) that holds
//!   the anchor's date, on each of `weekDays` (without them, the anchor's weekday), at
//!   the times of Day.
//! - **Month:** every interval months from the anchor's month, on the anchor's day of the
//!   month at its local time; a month too short for that day fires on its last day (31
//!   January, then 28 or 29 February, 31 March).
//! - **Clock changes.** A local time the clock skips (spring forward) fires once, when
//!   the clock lands (Berlin's 02:30 on the spring day fires at 03:00, 01:00 UTC); times
//!   skipped together fire together, once. A local time the clock shows twice (fall back)
//!   fires once, the first time. So a start at the second showing of a time (New York's
//!   01:30 EST on the fall day) does not fire that day: that time fired, earlier.
//! - Hours and minutes are for Day and Week only, week days for Week only: anything else
//!   is refused rather than ignored.
//!
//! ```
//! use chrono::{DateTime, Utc};
//! use mlgrid_core::schedule::Recurrence;
//!
//! let recurrence: Recurrence = serde_json::from_str(r#"{
//!     "frequency": "Week", "interval": 2, "weekDays": ["Monday", "Thursday"],
//!     "hours": [9], "minutes": [30], "timeZone": "Europe/Berlin",
//!     "startTime": "2026-03-02T00:00:00+01:00"
//! }"#).unwrap();
//! let created: DateTime<Utc> = "2026-02-20T12:00:00Z".parse().unwrap();
//! let schedule = recurrence.check(created).unwrap();
//! let next: Vec<String> = schedule.upcoming(created, 3).iter().map(|t| t.to_rfc3339()).collect();
//! assert_eq!(next, [
//!     "2026-03-02T08:30:00+00:00",
//!     "2026-03-05T08:30:00+00:00",
//!     "2026-03-16T08:30:00+00:00",
//! ]);
//! ```

mod fire_times;
mod local_time;
mod misfire;
mod overlap;
mod recurrence;

#[cfg(test)]
mod props;

pub use fire_times::{FireTimes, Schedule};
pub use misfire::{MAX_MISFIRES, MisfirePolicy, missed};
pub use overlap::{Concurrency, OverlapDecision, OverlapPolicy};
pub use recurrence::{Frequency, Recurrence, RecurrenceError};
