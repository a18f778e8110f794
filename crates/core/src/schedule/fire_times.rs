//! A checked recurrence and the instants it fires at. Minute and Hour are arithmetic;
//! Day, Week and Month jump to the period that holds the instant asked about and
//! binary-search its few candidates, so no search walks minute by minute.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::local_time::fire_instant;

/// A recurrence checked and compiled by [`super::Recurrence::check`]: it answers when the
/// schedule fires, by the rules in [`super`].
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    anchor: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    zone: Tz,
    rule: Rule,
}

/// How the fire times of a schedule are laid out.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Rule {
    /// Minute and Hour: every `seconds` of elapsed time from the anchor.
    Elapsed { seconds: i64 },
    /// Day, Week and Month: local times on local days of every period.
    Calendar(Calendar),
}

/// Every `period` from `first`, each of `times` on each of `days`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Calendar {
    pub(super) period: Period,
    /// The local date the first period starts on: the anchor's date (Day), the Monday of
    /// its week (Week), the first of its month (Month).
    pub(super) first: NaiveDate,
    /// The days of a period that fire, as days after its start, ascending. A day past the
    /// end of a month (the 30th of February) is the month's last day.
    pub(super) days: Vec<u32>,
    /// The local times of day that fire, ascending.
    pub(super) times: Vec<NaiveTime>,
}

/// A calendar period: every so many days, weeks or months.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Period {
    Days(u32),
    Weeks(u32),
    Months(u32),
}

impl Schedule {
    pub(super) fn new(anchor: DateTime<Utc>, end: Option<DateTime<Utc>>, zone: Tz, rule: Rule) -> Schedule {
        Schedule {
            anchor,
            end,
            zone,
            rule,
        }
    }

    /// Nothing fires before this instant: the start time, or else the creation, to the
    /// minute.
    pub fn anchor(&self) -> DateTime<Utc> {
        self.anchor
    }

    /// Nothing fires after this instant.
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.end
    }

    /// The zone whose clock Day, Week and Month recurrences follow.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The first fire time strictly after `after`; none once the end time is passed (or
    /// past the year 262,000, where chrono's calendar ends).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Searching from just before the anchor finds the anchor itself when it fires.
        let after = after.max(self.anchor - TimeDelta::nanoseconds(1));
        let next = match &self.rule {
            Rule::Elapsed { seconds } => {
                let steps = if after < self.anchor {
                    0
                } else {
                    (after - self.anchor).num_seconds() / seconds + 1
                };
                let elapsed = TimeDelta::try_seconds(steps.checked_mul(*seconds)?)?;
                self.anchor.checked_add_signed(elapsed)?
            }
            Rule::Calendar(calendar) => calendar.first_after(self.zone, after)?,
        };
        self.end.is_none_or(|end| next <= end).then_some(next)
    }

    /// The last fire time at or before `at`; none before the first.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let at = self.end.map_or(at, |end| at.min(end));
        if at < self.anchor {
            return None;
        }
        let last = match &self.rule {
            Rule::Elapsed { seconds } => {
                let steps = (at - self.anchor).num_seconds() / seconds;
                self.anchor + TimeDelta::seconds(steps * seconds)
            }
            Rule::Calendar(calendar) => calendar.last_at_or_before(self.zone, at)?,
        };
        (last >= self.anchor).then_some(last)
    }

    /// The fire times strictly after `after`, in order, without repeats.
    pub fn fire_times(&self, after: DateTime<Utc>) -> FireTimes<'_> {
        FireTimes { schedule: self, after }
    }

    /// The next `count` fire times after `after` (fewer when the end time comes first).
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        self.fire_times(after).take(count).collect()
    }
}

/// The fire times of a schedule after an instant, from [`Schedule::fire_times`].
#[derive(Debug, Clone)]
pub struct FireTimes<'a> {
    schedule: &'a Schedule,
    after: DateTime<Utc>,
}

impl Iterator for FireTimes<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        let next = self.schedule.next_after(self.after)?;
        self.after = next;
        Some(next)
    }
}

impl Calendar {
    /// How many candidate local times a period has: each time on each day.
    fn len(&self) -> usize {
        self.days.len() * self.times.len()
    }

    /// The index of the period that holds the local `date`; negative before the first.
    fn period_of(&self, date: NaiveDate) -> i64 {
        match self.period {
            Period::Days(n) => (date - self.first).num_days().div_euclid(n.into()),
            Period::Weeks(n) => (date - self.first).num_days().div_euclid(7 * i64::from(n)),
            Period::Months(n) => (month_number(date) - month_number(self.first)).div_euclid(n.into()),
        }
    }

    /// Candidate `index` of period `period` (from 0), in local time; none outside
    /// chrono's calendar. Candidates ascend with the index.
    fn local(&self, period: i64, index: usize) -> Option<NaiveDateTime> {
        let period = u64::try_from(period).ok()?;
        let day = Days::new(self.days[index / self.times.len()].into());
        let start = match self.period {
            Period::Days(n) => self.first.checked_add_days(Days::new(period.checked_mul(n.into())?))?,
            Period::Weeks(n) => self
                .first
                .checked_add_days(Days::new(period.checked_mul(7 * u64::from(n))?))?,
            Period::Months(n) => self
                .first
                .checked_add_months(Months::new(u32::try_from(period.checked_mul(n.into())?).ok()?))?,
        };
        let mut date = start.checked_add_days(day)?;
        if let Period::Months(_) = self.period {
            date = date.min(start.checked_add_months(Months::new(1))?.pred_opt()?);
        }
        Some(date.and_time(self.times[index % self.times.len()]))
    }

    fn fire_instant(&self, zone: Tz, period: i64, index: usize) -> Option<DateTime<Utc>> {
        self.local(period, index).map(|local| fire_instant(zone, local))
    }

    /// The first candidate that fires strictly after `after`.
    ///
    /// Begins with the period that holds `after`'s local date: a candidate of an earlier
    /// period is an earlier local time, and fire instants never decrease with local time,
    /// so it fires no later than `after` does on the clock. Usually this period or the
    /// next has the answer; a fold reaching past midnight can defer it one more.
    fn first_after(&self, zone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let last = self.len() - 1;
        let mut period = self.period_of(after.with_timezone(&zone).date_naive()).max(0);
        loop {
            // The last candidate has the period's latest date: if chrono's calendar ends
            // before it, there is nothing later to find.
            if self.fire_instant(zone, period, last)? > after {
                let first = partition_point(last, |index| {
                    self.fire_instant(zone, period, index).is_some_and(|at| at <= after)
                });
                return self.fire_instant(zone, period, first);
            }
            period += 1;
        }
    }

    /// The last candidate that fires at or before `at`.
    ///
    /// Begins two days past `at`'s local date: a fold can make a later local time fire
    /// before `at`, by as much as the clock steps back, which is at most a day.
    fn last_at_or_before(&self, zone: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let date = at.with_timezone(&zone).date_naive();
        let mut period = self.period_of(date.checked_add_days(Days::new(2)).unwrap_or(date));
        while period >= 0 {
            let count = partition_point(self.len(), |index| {
                self.fire_instant(zone, period, index).is_some_and(|fires| fires <= at)
            });
            if count > 0 {
                return self.fire_instant(zone, period, count - 1);
            }
            period -= 1;
        }
        None
    }
}

/// Months since the year 0, to count months between dates.
fn month_number(date: NaiveDate) -> i64 {
    i64::from(date.year()) * 12 + i64::from(date.month0())
}

/// How many of the indices `0..len` come first for which `holds` is true, `holds` being
/// true for a prefix of them: [`slice::partition_point`] over indices.
fn partition_point(len: usize, holds: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, len);
    while low < high {
        let middle = low + (high - low) / 2;
        if holds(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

#[cfg(test)]
mod tests {
    use chrono::SecondsFormat;
    use serde_json::json;

    use super::*;
    use crate::schedule::Recurrence;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// A schedule created at the start of 2026.
    fn schedule(body: serde_json::Value) -> Schedule {
        let recurrence: Recurrence = serde_json::from_value(body).unwrap();
        recurrence.check(utc("2026-01-01T00:00:00Z")).unwrap()
    }

    /// The next `count` fire times after `after`, in UTC as RFC 3339.
    fn upcoming(schedule: &Schedule, after: &str, count: usize) -> Vec<String> {
        schedule
            .upcoming(utc(after), count)
            .iter()
            .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
            .collect()
    }

    #[test]
    fn minute_and_hour_count_from_the_start_time_to_the_minute() {
        let every_15 =
            schedule(json!({"frequency": "Minute", "interval": 15, "startTime": "2026-02-01T10:07:42+01:00"}));
        assert_eq!(
            upcoming(&every_15, "2026-01-01T00:00:00Z", 3),
            ["2026-02-01T09:07:00Z", "2026-02-01T09:22:00Z", "2026-02-01T09:37:00Z"]
        );
        let hourly = schedule(json!({"frequency": "Hour", "interval": 1, "startTime": "2026-02-01T10:07:00Z"}));
        assert_eq!(
            upcoming(&hourly, "2026-02-01T10:07:00Z", 2),
            ["2026-02-01T11:07:00Z", "2026-02-01T12:07:00Z"]
        );
    }

    #[test]
    fn minute_and_hour_intervals_run_across_hours_and_days() {
        let every_90 = schedule(json!({"frequency": "Minute", "interval": 90, "startTime": "2026-02-01T22:00:00Z"}));
        assert_eq!(
            upcoming(&every_90, "2026-02-01T22:00:00Z", 2),
            ["2026-02-01T23:30:00Z", "2026-02-02T01:00:00Z"]
        );
        let every_5h = schedule(json!({"frequency": "Hour", "interval": 5, "startTime": "2026-02-01T20:00:00Z"}));
        assert_eq!(
            upcoming(&every_5h, "2026-02-01T20:00:00Z", 2),
            ["2026-02-02T01:00:00Z", "2026-02-02T06:00:00Z"]
        );
    }

    #[test]
    fn hourly_is_elapsed_time_whatever_the_clock_does() {
        // Berlin springs from 02:00 to 03:00: local 00:30, 01:30, 03:30, 04:30.
        let spring = schedule(json!({
            "frequency": "Hour", "interval": 1,
            "startTime": "2026-03-29T00:30:00+01:00", "timeZone": "Europe/Berlin",
        }));
        assert_eq!(
            upcoming(&spring, "2026-03-28T00:00:00Z", 4),
            [
                "2026-03-28T23:30:00Z",
                "2026-03-29T00:30:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-29T02:30:00Z"
            ]
        );
        // New York falls back from 02:00 to 01:00: local 01:30 comes twice, both fire.
        let fall = schedule(json!({
            "frequency": "Hour", "interval": 1,
            "startTime": "2026-11-01T00:30:00-04:00", "timeZone": "America/New_York",
        }));
        assert_eq!(
            upcoming(&fall, "2026-11-01T00:00:00Z", 4),
            [
                "2026-11-01T04:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T07:30:00Z"
            ]
        );
    }

    #[test]
    fn a_start_time_long_past_lands_on_its_grid() {
        let every_7 = schedule(json!({"frequency": "Minute", "interval": 7, "startTime": "2020-01-01T00:00:00Z"}));
        // 2,192 days = 3,156,480 minutes = 450,925 * 7 + 5.
        assert_eq!(upcoming(&every_7, "2026-01-01T00:00:00Z", 1), ["2026-01-01T00:02:00Z"]);
        let every_3_days = schedule(json!({"frequency": "Day", "interval": 3, "startTime": "2020-01-01T09:00:00Z"}));
        // Day 2,190 is 30 December 2025; day 2,193 is 2 January 2026.
        assert_eq!(
            upcoming(&every_3_days, "2026-01-01T00:00:00Z", 2),
            ["2026-01-02T09:00:00Z", "2026-01-05T09:00:00Z"]
        );
    }

    #[test]
    fn a_start_time_ahead_fires_first_at_the_start() {
        let daily = schedule(json!({"frequency": "Day", "interval": 1, "startTime": "2026-06-10T08:00:00Z"}));
        assert_eq!(upcoming(&daily, "2026-01-01T00:00:00Z", 1), ["2026-06-10T08:00:00Z"]);
        assert_eq!(upcoming(&daily, "2026-06-10T07:59:59Z", 1), ["2026-06-10T08:00:00Z"]);
        assert_eq!(upcoming(&daily, "2026-06-10T08:00:00Z", 1), ["2026-06-11T08:00:00Z"]);
    }

    #[test]
    fn a_day_fires_at_every_hour_and_minute_given_in_order() {
        let twice_twice = schedule(json!({
            "frequency": "Day", "interval": 1, "hours": [17, 9, 9], "minutes": [30, 0],
            "startTime": "2026-01-05T12:00:00Z",
        }));
        assert_eq!(
            upcoming(&twice_twice, "2026-01-01T00:00:00Z", 5),
            [
                "2026-01-05T17:00:00Z",
                "2026-01-05T17:30:00Z",
                "2026-01-06T09:00:00Z",
                "2026-01-06T09:30:00Z",
                "2026-01-06T17:00:00Z"
            ]
        );
    }

    #[test]
    fn a_day_takes_missing_hours_or_minutes_from_the_start_time() {
        let minutes_only = schedule(json!({
            "frequency": "Day", "interval": 1, "minutes": [0, 30], "startTime": "2026-01-05T10:07:00Z",
        }));
        assert_eq!(
            upcoming(&minutes_only, "2026-01-01T00:00:00Z", 3),
            ["2026-01-05T10:30:00Z", "2026-01-06T10:00:00Z", "2026-01-06T10:30:00Z"]
        );
        let hours_only = schedule(json!({
            "frequency": "Day", "interval": 1, "hours": [6], "startTime": "2026-01-05T10:07:00Z",
        }));
        assert_eq!(
            upcoming(&hours_only, "2026-01-01T00:00:00Z", 1),
            ["2026-01-06T06:07:00Z"]
        );
    }

    #[test]
    fn every_third_day_counts_local_dates() {
        let every_3 = schedule(json!({
            "frequency": "Day", "interval": 3, "hours": [9], "minutes": [0],
            "startTime": "2026-01-01T00:00:00+05:30", "timeZone": "Asia/Kolkata",
        }));
        assert_eq!(
            upcoming(&every_3, "2025-12-01T00:00:00Z", 3),
            ["2026-01-01T03:30:00Z", "2026-01-04T03:30:00Z", "2026-01-07T03:30:00Z"]
        );
    }

    #[test]
    fn every_other_week_fires_on_each_day_given_counting_from_the_starts_monday() {
        // Wednesday 4 March: its week's Monday is past, Friday and Sunday are not.
        let fortnightly = schedule(json!({
            "frequency": "Week", "interval": 2, "weekDays": ["Sunday", "Monday", "Friday"],
            "hours": [8], "minutes": [0], "startTime": "2026-03-04T12:00:00Z",
        }));
        assert_eq!(
            upcoming(&fortnightly, "2026-01-01T00:00:00Z", 6),
            [
                "2026-03-06T08:00:00Z",
                "2026-03-08T08:00:00Z",
                "2026-03-16T08:00:00Z",
                "2026-03-20T08:00:00Z",
                "2026-03-22T08:00:00Z",
                "2026-03-30T08:00:00Z"
            ]
        );
    }

    #[test]
    fn a_week_takes_missing_days_and_times_from_the_start_time() {
        let weekly = schedule(json!({"frequency": "Week", "interval": 1, "startTime": "2026-03-04T12:34:00Z"}));
        assert_eq!(
            upcoming(&weekly, "2026-01-01T00:00:00Z", 3),
            ["2026-03-04T12:34:00Z", "2026-03-11T12:34:00Z", "2026-03-18T12:34:00Z"]
        );
    }

    #[test]
    fn a_month_without_the_start_day_fires_on_its_last_day() {
        let monthly = schedule(json!({"frequency": "Month", "interval": 1, "startTime": "2026-01-31T09:15:00Z"}));
        assert_eq!(
            upcoming(&monthly, "2026-01-01T00:00:00Z", 5),
            [
                "2026-01-31T09:15:00Z",
                "2026-02-28T09:15:00Z",
                "2026-03-31T09:15:00Z",
                "2026-04-30T09:15:00Z",
                "2026-05-31T09:15:00Z"
            ]
        );
        let every_other = schedule(json!({"frequency": "Month", "interval": 2, "startTime": "2026-01-31T09:15:00Z"}));
        assert_eq!(
            upcoming(&every_other, "2026-02-01T00:00:00Z", 4),
            [
                "2026-03-31T09:15:00Z",
                "2026-05-31T09:15:00Z",
                "2026-07-31T09:15:00Z",
                "2026-09-30T09:15:00Z"
            ]
        );
    }

    #[test]
    fn a_leap_year_has_its_29th_of_february() {
        let monthly = schedule(json!({"frequency": "Month", "interval": 1, "startTime": "2028-01-31T09:15:00Z"}));
        assert_eq!(upcoming(&monthly, "2028-02-01T00:00:00Z", 1), ["2028-02-29T09:15:00Z"]);
        let yearly = schedule(json!({"frequency": "Month", "interval": 12, "startTime": "2024-02-29T00:00:00Z"}));
        assert_eq!(
            upcoming(&yearly, "2024-02-29T00:00:00Z", 4),
            [
                "2025-02-28T00:00:00Z",
                "2026-02-28T00:00:00Z",
                "2027-02-28T00:00:00Z",
                "2028-02-29T00:00:00Z"
            ]
        );
    }

    #[test]
    fn nothing_fires_after_the_end_time_but_the_end_time_itself_does() {
        let daily = schedule(json!({
            "frequency": "Day", "interval": 1,
            "startTime": "2026-01-01T09:00:00Z", "endTime": "2026-01-03T09:00:00Z",
        }));
        assert_eq!(
            upcoming(&daily, "2025-12-01T00:00:00Z", 5),
            ["2026-01-01T09:00:00Z", "2026-01-02T09:00:00Z", "2026-01-03T09:00:00Z"]
        );
        assert_eq!(daily.next_after(utc("2026-01-03T09:00:00Z")), None);
        assert_eq!(daily.next_after(utc("2027-01-01T00:00:00Z")), None);
        let every_minute = schedule(json!({
            "frequency": "Minute", "interval": 1,
            "startTime": "2026-01-01T09:00:00Z", "endTime": "2026-01-01T09:01:30Z",
        }));
        assert_eq!(upcoming(&every_minute, "2026-01-01T08:00:00Z", 5).len(), 2);
    }

    #[test]
    fn a_time_berlin_skips_fires_when_the_clock_lands() {
        let daily = schedule(json!({
            "frequency": "Day", "interval": 1, "hours": [2], "minutes": [30],
            "startTime": "2026-03-27T00:00:00+01:00", "timeZone": "Europe/Berlin",
        }));
        assert_eq!(
            upcoming(&daily, "2026-03-01T00:00:00Z", 4),
            [
                "2026-03-27T01:30:00Z",
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z"
            ]
        );
    }

    #[test]
    fn times_in_one_gap_fire_once_together() {
        // 02:00, 02:30 and 03:00 (the gap's end) are all 01:00 UTC on 29 March.
        let half_hourly = schedule(json!({
            "frequency": "Day", "interval": 1, "hours": [2, 3], "minutes": [0, 30],
            "startTime": "2026-03-29T00:00:00+01:00", "timeZone": "Europe/Berlin",
        }));
        assert_eq!(
            upcoming(&half_hourly, "2026-03-01T00:00:00Z", 3),
            ["2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:00:00Z"]
        );
    }

    #[test]
    fn a_time_berlin_shows_twice_fires_the_first_time() {
        let daily = schedule(json!({
            "frequency": "Day", "interval": 1, "hours": [2], "minutes": [30],
            "startTime": "2026-10-24T00:00:00+02:00", "timeZone": "Europe/Berlin",
        }));
        assert_eq!(
            upcoming(&daily, "2026-10-01T00:00:00Z", 3),
            ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
    }

    #[test]
    fn new_york_both_ways() {
        let spring = schedule(json!({
            "frequency": "Day", "interval": 1, "hours": [2], "minutes": [30],
            "startTime": "2026-03-07T00:00:00-05:00", "timeZone": "America/New_York",
        }));
        assert_eq!(
            upcoming(&spring, "2026-03-01T00:00:00Z", 3),
            ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
        );
        let fall = schedule(json!({
            "frequency": "Day", "interval": 1, "hours": [1], "minutes": [30],
            "startTime": "2026-10-31T00:00:00-04:00", "timeZone": "America/New_York",
        }));
        assert_eq!(
            upcoming(&fall, "2026-10-01T00:00:00Z", 3),
            ["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
    }

    #[test]
    fn lord_howe_shifts_by_half_an_hour_both_ways() {
        // 4 October: 02:00 (+10:30) springs to 02:30 (+11:00); 02:15 fires at 02:30.
        let spring = schedule(json!({
            "frequency": "Day", "interval": 1, "hours": [2], "minutes": [15],
            "startTime": "2026-10-03T00:00:00+10:30", "timeZone": "Australia/Lord_Howe",
        }));
        assert_eq!(
            upcoming(&spring, "2026-09-01T00:00:00Z", 3),
            ["2026-10-02T15:45:00Z", "2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"]
        );
        // 5 April: 02:00 (+11:00) falls back to 01:30 (+10:30); 01:45 fires the first time.
        let fall = schedule(json!({
            "frequency": "Day", "interval": 1, "hours": [1], "minutes": [45],
            "startTime": "2026-04-04T00:00:00+11:00", "timeZone": "Australia/Lord_Howe",
        }));
        assert_eq!(
            upcoming(&fall, "2026-03-01T00:00:00Z", 3),
            ["2026-04-03T14:45:00Z", "2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"]
        );
    }

    #[test]
    fn weeks_and_months_follow_the_same_daylight_saving_rules() {
        let sundays = schedule(json!({
            "frequency": "Week", "interval": 1, "weekDays": ["Sunday"], "hours": [2], "minutes": [30],
            "startTime": "2026-03-22T02:30:00+01:00", "timeZone": "Europe/Berlin",
        }));
        assert_eq!(
            upcoming(&sundays, "2026-03-01T00:00:00Z", 3),
            ["2026-03-22T01:30:00Z", "2026-03-29T01:00:00Z", "2026-04-05T00:30:00Z"]
        );
        let monthly = schedule(json!({
            "frequency": "Month", "interval": 1,
            "startTime": "2026-01-29T02:30:00+01:00", "timeZone": "Europe/Berlin",
        }));
        assert_eq!(
            upcoming(&monthly, "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-29T01:30:00Z",
                "2026-02-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-04-29T00:30:00Z"
            ]
        );
    }

    #[test]
    fn a_start_at_the_second_showing_of_a_time_skips_that_day() {
        // 01:30 on 1 November fires at its first showing (05:30 UTC), before the start.
        let daily = schedule(json!({
            "frequency": "Day", "interval": 1,
            "startTime": "2026-11-01T01:30:00-05:00", "timeZone": "America/New_York",
        }));
        assert_eq!(upcoming(&daily, "2026-10-01T00:00:00Z", 1), ["2026-11-02T06:30:00Z"]);
    }

    #[test]
    fn the_last_fire_time_can_be_on_a_later_local_date_after_a_day_long_fold() {
        // Juneau, 1867: Alaska went from Russian to American time, its clock from 19
        // October 15:33 back to 18 October 15:33. At 17:02 on the 18th, the second time
        // round, 05:00 on the 19th has fired (its first showing, 13:57:41 UTC on the 18th).
        let daily = schedule(json!({
            "frequency": "Day", "interval": 1, "hours": [5], "minutes": [0],
            "startTime": "1867-10-01T00:00:00Z", "timeZone": "America/Juneau",
        }));
        let second_time_round = utc("1867-10-19T02:00:00Z");
        assert_eq!(
            daily.last_at_or_before(second_time_round),
            Some(utc("1867-10-18T13:57:41Z"))
        );
        assert_eq!(daily.next_after(second_time_round), Some(utc("1867-10-20T13:57:41Z")));
    }

    #[test]
    fn the_last_fire_time_is_at_or_before_the_instant_and_not_before_the_start() {
        let daily = schedule(json!({
            "frequency": "Day", "interval": 1,
            "startTime": "2026-01-01T09:00:00Z", "endTime": "2026-01-10T09:00:00Z",
        }));
        let last = |at| daily.last_at_or_before(utc(at));
        assert_eq!(last("2026-01-03T08:59:59Z"), Some(utc("2026-01-02T09:00:00Z")));
        assert_eq!(last("2026-01-03T09:00:00Z"), Some(utc("2026-01-03T09:00:00Z")));
        assert_eq!(last("2026-01-01T08:59:00Z"), None);
        assert_eq!(last("2027-01-01T00:00:00Z"), Some(utc("2026-01-10T09:00:00Z")));
        let afternoons = schedule(json!({
            "frequency": "Day", "interval": 1, "hours": [15], "startTime": "2026-01-01T09:00:00Z",
        }));
        assert_eq!(afternoons.last_at_or_before(utc("2026-01-01T14:00:00Z")), None);
        let every_15 = schedule(json!({"frequency": "Minute", "interval": 15, "startTime": "2026-01-01T09:00:00Z"}));
        assert_eq!(
            every_15.last_at_or_before(utc("2026-01-01T10:14:59Z")),
            Some(utc("2026-01-01T10:00:00Z"))
        );
    }
}
