//! Property tests: a [`Schedule`]'s fire times agree with a reference that reads the
//! rules of [`super`] literally, walking the clock minute by minute over a bounded
//! window, on random recurrences anchored near clock changes in zones that spring and
//! fall by an hour (Berlin, New York, St. John's), by half an hour (Lord Howe), or never
//! (UTC, Kolkata).

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use chrono::{
    DateTime, Datelike, MappedLocalTime, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Timelike,
    Utc, Weekday,
};
use chrono_tz::Tz;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::{Frequency, MAX_MISFIRES, MisfirePolicy, Recurrence, Schedule, missed};

type Day = (i32, u32, u32);

const BERLIN: [Day; 4] = [(2025, 3, 30), (2025, 10, 26), (2026, 3, 29), (2026, 10, 25)];
/// New York's days, which St. John's shares.
const NORTH_AMERICA: [Day; 4] = [(2025, 3, 9), (2025, 11, 2), (2026, 3, 8), (2026, 11, 1)];
const LORD_HOWE: [Day; 4] = [(2025, 4, 6), (2025, 10, 5), (2026, 4, 5), (2026, 10, 4)];
/// For the zones that never change their clocks: two of everybody else's days.
const NO_CHANGE: [Day; 2] = [(2025, 3, 30), (2026, 10, 4)];

/// The zones, each with the days on which it changes its clocks.
const ZONES: [(&str, &[Day]); 6] = [
    ("UTC", &NO_CHANGE),
    ("Europe/Berlin", &BERLIN),
    ("America/New_York", &NORTH_AMERICA),
    ("Australia/Lord_Howe", &LORD_HOWE),
    ("Asia/Kolkata", &NO_CHANGE),
    ("America/St_Johns", &NORTH_AMERICA),
];

/// Month ends, for monthly schedules that must clamp (2028 is a leap year).
const MONTH_ENDS: [Day; 8] = [
    (2025, 1, 31),
    (2025, 3, 31),
    (2025, 8, 31),
    (2025, 12, 31),
    (2026, 1, 29),
    (2027, 11, 30),
    (2028, 1, 30),
    (2028, 1, 31),
];

const WEEKDAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

fn minutes(count: i64) -> TimeDelta {
    TimeDelta::minutes(count)
}

fn date((year, month, day): Day) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).unwrap()
}

// ---------------------------------------------------------------------------------------
// The reference: the rules as written, no period arithmetic, no binary search, no
// chrono-tz lookup of local times (only of the offset at each instant).

/// The recurrence's defaults filled in from the anchor's local time.
struct Literal {
    frequency: Frequency,
    interval: i64,
    anchor: DateTime<Utc>,
    anchor_local: NaiveDateTime,
    end: Option<DateTime<Utc>>,
    zone: Tz,
    hours: Vec<u32>,
    minutes: Vec<u32>,
    week_days: Vec<Weekday>,
}

impl Literal {
    fn new(recurrence: &Recurrence, created: DateTime<Utc>) -> Literal {
        let zone: Tz = recurrence.time_zone.as_deref().unwrap_or("UTC").parse().unwrap();
        let start = recurrence.start_time.map_or(created, |start| start.to_utc());
        let anchor = start.with_second(0).unwrap().with_nanosecond(0).unwrap();
        let anchor_local = anchor.with_timezone(&zone).naive_local();
        let or_anchor = |values: &[u8], anchor: u32| -> Vec<u32> {
            if values.is_empty() {
                vec![anchor]
            } else {
                values.iter().map(|&v| u32::from(v)).collect()
            }
        };
        Literal {
            frequency: recurrence.frequency,
            interval: i64::from(recurrence.interval),
            anchor,
            anchor_local,
            end: recurrence.end_time.map(|end| end.to_utc()),
            zone,
            hours: or_anchor(&recurrence.hours, anchor_local.hour()),
            minutes: or_anchor(&recurrence.minutes, anchor_local.minute()),
            week_days: if recurrence.week_days.is_empty() {
                vec![anchor_local.weekday()]
            } else {
                recurrence.week_days.clone()
            },
        }
    }

    /// Whether the local minute `local` is one the calendar rules name.
    fn names(&self, local: NaiveDateTime) -> bool {
        let day = local.date();
        let anchor_day = self.anchor_local.date();
        let at_time = self.hours.contains(&local.hour()) && self.minutes.contains(&local.minute());
        match self.frequency {
            Frequency::Day => {
                let days = (day - anchor_day).num_days();
                days >= 0 && days % self.interval == 0 && at_time
            }
            Frequency::Week => {
                let monday = anchor_day - TimeDelta::days(anchor_day.weekday().num_days_from_monday().into());
                let days = (day - monday).num_days();
                days >= 0 && (days / 7) % self.interval == 0 && self.week_days.contains(&day.weekday()) && at_time
            }
            Frequency::Month => {
                let months = i64::from(day.year() - anchor_day.year()) * 12 + i64::from(day.month())
                    - i64::from(anchor_day.month());
                let last_day = (28..=31)
                    .rev()
                    .find(|&d| NaiveDate::from_ymd_opt(day.year(), day.month(), d).is_some())
                    .unwrap();
                months >= 0
                    && months % self.interval == 0
                    && day.day() == anchor_day.day().min(last_day)
                    && local.hour() == self.anchor_local.hour()
                    && local.minute() == self.anchor_local.minute()
            }
            Frequency::Minute | Frequency::Hour => unreachable!("elapsed recurrences are not calendar ones"),
        }
    }

    /// The fire times in `(from, to]`.
    fn fire_times(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let fires =
            |at: DateTime<Utc>| at >= self.anchor && self.end.is_none_or(|end| at <= end) && from < at && at <= to;
        let mut times = BTreeSet::new();
        let first_minute = from.with_second(0).unwrap().with_nanosecond(0).unwrap();
        match self.frequency {
            Frequency::Minute | Frequency::Hour => {
                let step = self.interval * if self.frequency == Frequency::Minute { 1 } else { 60 };
                let mut at = first_minute;
                while at <= to {
                    let elapsed = (at - self.anchor).num_minutes();
                    if elapsed >= 0 && elapsed % step == 0 && fires(at) {
                        times.insert(at);
                    }
                    at += minutes(1);
                }
            }
            Frequency::Day | Frequency::Week | Frequency::Month => {
                // Watch the clock minute by minute, from two days before to two days after
                // the window: a minute it shows for the first time fires then; minutes it
                // skips fire when it lands; a minute it shows again (after falling back)
                // already fired.
                let mut latest_shown: Option<NaiveDateTime> = None;
                let mut at = first_minute - TimeDelta::days(2);
                while at <= to + TimeDelta::days(2) {
                    let shown = at.with_timezone(&self.zone).naive_local();
                    if let Some(latest) = latest_shown {
                        let mut skipped = latest + minutes(1);
                        while skipped < shown {
                            if self.names(skipped) && fires(at) {
                                times.insert(at);
                            }
                            skipped += minutes(1);
                        }
                    }
                    if latest_shown.is_none_or(|latest| shown > latest) {
                        if self.names(shown) && fires(at) {
                            times.insert(at);
                        }
                        latest_shown = Some(shown);
                    }
                    at += minutes(1);
                }
            }
        }
        times.into_iter().collect()
    }
}

// ---------------------------------------------------------------------------------------
// Random cases.

#[derive(Debug, Clone)]
struct Case {
    recurrence: Recurrence,
    created: DateTime<Utc>,
    /// The window `(from, to]` compared.
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

/// Start days near a clock change: up to 20 days before, 3 after.
fn near(change: NaiveDate) -> BoxedStrategy<NaiveDate> {
    (-20i64..=3)
        .prop_map(move |shift| change + TimeDelta::days(shift))
        .boxed()
}

/// Start days a month or two before a clock change, on the same day of the month, or
/// month ends: a monthly schedule from them meets a skipped or repeated hour, or a short
/// month.
fn months_before(change: NaiveDate) -> BoxedStrategy<NaiveDate> {
    prop_oneof![
        (0u32..=2).prop_map(move |back| change.checked_sub_months(Months::new(back)).unwrap()),
        select(MONTH_ENDS.to_vec()).prop_map(date),
    ]
    .boxed()
}

/// Hours biased to those the clocks change at (1 and 2 in every zone here) and to
/// either side of midnight.
fn hour() -> BoxedStrategy<u32> {
    prop_oneof![3 => select(vec![1u32, 2]), 1 => select(vec![0u32, 3, 23]), 2 => 0u32..24].boxed()
}

/// The local times of `day` that the clock of `zone` skips or shows twice.
fn changed_times(zone: Tz, day: NaiveDate) -> Vec<NaiveTime> {
    (0..1440)
        .map(|minute| NaiveTime::MIN + minutes(minute))
        .filter(|&time| {
            !matches!(
                zone.from_local_datetime(&day.and_time(time)),
                MappedLocalTime::Single(_)
            )
        })
        .collect()
}

/// A random recurrence of `frequency` in a random zone, and a window of `window_days`
/// that holds one of the zone's clock changes. The start is a day from `start_days` (given
/// the clock change day), or half the time one a whole number of periods before the
/// change, so that the change day fires. Half the time, too, a time the change skips or
/// repeats is among the hours and minutes (Day, Week) or is the start's time (Month);
/// other hours favour those the clocks change at, week days Sunday (when all these zones
/// change).
fn case(
    frequency: Frequency,
    intervals: RangeInclusive<u32>,
    start_days: fn(NaiveDate) -> BoxedStrategy<NaiveDate>,
    window_days: i64,
) -> impl Strategy<Value = Case> {
    let by_day = matches!(frequency, Frequency::Day | Frequency::Week);
    let hours = if by_day {
        prop_oneof![1 => Just(Vec::new()), 3 => vec(hour().prop_map(|h| h as u8), 1..4)].boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    let minute_list = if by_day {
        vec(prop_oneof![select(vec![0u8, 15, 30, 45, 59]), 0u8..60], 0..3).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    let week_days = if frequency == Frequency::Week {
        let days = || vec(select(WEEKDAYS.to_vec()), 0..4);
        prop_oneof![days(), days().prop_map(|days| [days, vec![Weekday::Sun]].concat())].boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    let lists = (intervals, hours, minute_list, week_days);
    let zone_changes: Vec<(&str, NaiveDate)> = ZONES
        .iter()
        .flat_map(|&(zone, changes)| changes.iter().map(move |&day| (zone, date(day))))
        .collect();
    select(zone_changes)
        .prop_flat_map(move |(zone_name, change)| {
            let start_day = (start_days(change), any::<bool>(), 0u32..=4);
            let start = (start_day, hour(), 0u32..60, 0u32..60, prop::bool::weighted(0.75));
            let created = (start_days(change), 0u32..86_400);
            let changed = match changed_times(zone_name.parse().unwrap(), change) {
                times if times.is_empty() => Just(None).boxed(),
                times => prop_oneof![Just(None), select(times).prop_map(Some)].boxed(),
            };
            // The window ends 0 to `window_days` after noon UTC of the clock change day; the
            // end time, if any, is in the window's last third.
            let window = (
                0..window_days * 1440,
                0u32..60,
                prop::option::weighted(0.3, 0..window_days * 480),
            );
            (
                Just((zone_name, change)),
                lists.clone(),
                start,
                created,
                window,
                changed,
            )
        })
        .prop_map(move |((zone_name, change), lists, start, created, window, changed)| {
            let (interval, mut hours, mut minute_list, week_days) = lists;
            let zone: Tz = zone_name.parse().unwrap();
            let ((start_day, aligned, periods), mut hour, mut minute, second, given) = start;
            if let Some(time) = changed {
                if frequency == Frequency::Month {
                    (hour, minute) = (time.hour(), time.minute());
                } else if by_day {
                    hours.push(time.hour() as u8);
                    minute_list.push(time.minute() as u8);
                }
            }
            let start_day = match frequency {
                _ if !aligned => start_day,
                Frequency::Day => change - TimeDelta::days(i64::from(periods * interval)),
                Frequency::Week => change - TimeDelta::weeks(i64::from(periods * interval)),
                Frequency::Month => change.checked_sub_months(Months::new(periods * interval)).unwrap(),
                Frequency::Minute | Frequency::Hour => start_day,
            };
            let local = start_day.and_hms_opt(hour, minute, second).unwrap();
            // A start written as a user in the zone would, with the zone's offset then.
            let start_time = zone
                .from_local_datetime(&local)
                .earliest()
                .unwrap_or_else(|| zone.from_utc_datetime(&local))
                .fixed_offset();
            let created = created.0.and_time(NaiveTime::MIN).and_utc() + TimeDelta::seconds(created.1.into());
            let anchor = if given { start_time.to_utc() } else { created };
            let (end_after_change, second, end_before) = window;
            let to = change.and_hms_opt(12, 0, second).unwrap().and_utc() + minutes(end_after_change);
            Case {
                recurrence: Recurrence {
                    frequency,
                    interval,
                    start_time: given.then_some(start_time),
                    time_zone: Some(zone_name.to_owned()),
                    hours,
                    minutes: minute_list,
                    week_days,
                    end_time: end_before.map(|before| (to - minutes(before)).max(anchor).fixed_offset()),
                },
                created,
                from: to - TimeDelta::days(window_days),
                to,
            }
        })
}

/// The schedule of a case agrees with the reference on its window, and so do the
/// searches built on it.
fn agrees_with_the_reference(case: &Case) -> Result<(), TestCaseError> {
    let schedule = case.recurrence.check(case.created).unwrap();
    let expected = Literal::new(&case.recurrence, case.created).fire_times(case.from, case.to);
    let actual: Vec<_> = schedule.fire_times(case.from).take_while(|at| *at <= case.to).collect();
    prop_assert_eq!(&actual, &expected);

    let last = schedule.last_at_or_before(case.to);
    match expected.last() {
        Some(&latest) => prop_assert_eq!(last, Some(latest)),
        None => prop_assert!(last.is_none_or(|last| last <= case.from), "{last:?}"),
    }
    let most_recent = &expected[expected.len().saturating_sub(MAX_MISFIRES)..];
    prop_assert_eq!(missed(&schedule, MisfirePolicy::All, case.from, case.to), most_recent);
    prop_assert_eq!(
        missed(&schedule, MisfirePolicy::Latest, case.from, case.to),
        expected.last().copied().into_iter().collect::<Vec<_>>()
    );
    prop_assert!(missed(&schedule, MisfirePolicy::None, case.from, case.to).is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn minute_schedules_agree_with_the_reference(
        case in case(Frequency::Minute, 1..=90, near, 2),
    ) {
        agrees_with_the_reference(&case)?;
    }

    #[test]
    fn hour_schedules_agree_with_the_reference(
        case in case(Frequency::Hour, 1..=30, near, 3),
    ) {
        agrees_with_the_reference(&case)?;
    }

    #[test]
    fn day_schedules_agree_with_the_reference(
        case in case(Frequency::Day, 1..=4, near, 9),
    ) {
        agrees_with_the_reference(&case)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn week_schedules_agree_with_the_reference(
        case in case(Frequency::Week, 1..=3, near, 22),
    ) {
        agrees_with_the_reference(&case)?;
    }

    #[test]
    fn month_schedules_agree_with_the_reference(
        case in case(Frequency::Month, 1..=2, months_before, 62),
    ) {
        agrees_with_the_reference(&case)?;
    }
}

// ---------------------------------------------------------------------------------------
// Properties over long horizons, where the reference would be too slow.

fn any_frequency() -> impl Strategy<Value = (Frequency, RangeInclusive<u32>)> {
    select(vec![
        (Frequency::Minute, 1..=1440),
        (Frequency::Hour, 1..=100),
        (Frequency::Day, 1..=40),
        (Frequency::Week, 1..=10),
        (Frequency::Month, 1..=30),
    ])
}

/// Any day from 1990 to 2060, whatever the clock change.
fn any_day(_: NaiveDate) -> BoxedStrategy<NaiveDate> {
    (0i64..70 * 365)
        .prop_map(|day| date((1990, 1, 1)) + TimeDelta::days(day))
        .boxed()
}

/// Schedules of any frequency started on any day from 1990 to 2060, and an instant up to
/// ten years after their start.
fn any_schedule() -> impl Strategy<Value = (Schedule, DateTime<Utc>)> {
    any_frequency().prop_flat_map(|(frequency, intervals)| {
        (case(frequency, intervals, any_day, 30), -30i64..10 * 365 * 1440).prop_map(|(case, later)| {
            let schedule = case.recurrence.check(case.created).unwrap();
            let after = schedule.anchor() + minutes(later);
            (schedule, after)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn fire_times_strictly_increase_and_each_is_the_last_at_itself(
        (schedule, after) in any_schedule(),
    ) {
        let times = schedule.upcoming(after, 40);
        for pair in times.windows(2) {
            prop_assert!(pair[0] < pair[1], "{pair:?}");
            prop_assert_eq!(schedule.last_at_or_before(pair[1] - TimeDelta::nanoseconds(1)), Some(pair[0]));
        }
        for &at in &times {
            prop_assert!(at > after && at >= schedule.anchor());
            prop_assert_eq!(at.second(), 0);
            prop_assert_eq!(schedule.last_at_or_before(at), Some(at));
        }
    }

    #[test]
    fn missed_ticks_ascend_without_repeats_within_the_outage(
        (schedule, last_due) in any_schedule(),
        outage in prop_oneof![0i64..3 * 1440, 0i64..400 * 1440],
    ) {
        let now = last_due + minutes(outage);
        let ticks = missed(&schedule, MisfirePolicy::All, last_due, now);
        prop_assert!(ticks.len() <= MAX_MISFIRES);
        for pair in ticks.windows(2) {
            // Consecutive ticks of the schedule: none between them left out.
            prop_assert_eq!(schedule.next_after(pair[0]), Some(pair[1]));
        }
        if let (Some(&first), Some(&last)) = (ticks.first(), ticks.last()) {
            prop_assert!(last_due < first && last <= now);
            prop_assert_eq!(schedule.last_at_or_before(now), Some(last));
            if ticks.len() < MAX_MISFIRES {
                let before = schedule.last_at_or_before(first - TimeDelta::nanoseconds(1));
                prop_assert!(before.is_none_or(|before| before <= last_due), "{before:?}");
            }
        } else {
            prop_assert!(schedule.next_after(last_due).is_none_or(|next| next > now));
        }
        let latest = missed(&schedule, MisfirePolicy::Latest, last_due, now);
        prop_assert_eq!(latest.as_slice(), &ticks[ticks.len().saturating_sub(1)..]);
    }
}
