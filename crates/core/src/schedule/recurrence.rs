//! A recurrence as the user writes it, in Azure's field names, and its check: every
//! mistake refused with what to fix, the rest compiled into a [`Schedule`].

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::fire_times::{Calendar, Period, Rule, Schedule};

/// How often a recurrence comes round: every `interval` of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frequency {
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

const FREQUENCIES: [Frequency; 5] = [
    Frequency::Minute,
    Frequency::Hour,
    Frequency::Day,
    Frequency::Week,
    Frequency::Month,
];

impl Frequency {
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Minute => "Minute",
            Frequency::Hour => "Hour",
            Frequency::Day => "Day",
            Frequency::Week => "Week",
            Frequency::Month => "Month",
        }
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Frequency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Any case: Azure's REST API writes `Day`, its CLI's YAML `day`.
impl<'de> Deserialize<'de> for Frequency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        FREQUENCIES
            .into_iter()
            .find(|frequency| frequency.as_str().eq_ignore_ascii_case(&name))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown frequency \"{name}\" (use Minute, Hour, Day, Week or Month)"
                ))
            })
    }
}

/// A schedule's recurrence, as Azure ML's `ScheduleRecurrence` (and Logic Apps'
/// recurrence trigger) spell it. Read [`super`] for when it fires; [`Recurrence::check`]
/// refuses what makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recurrence {
    pub frequency: Frequency,
    pub interval: u32,
    /// The anchor of the fire times; the offset the user wrote is kept for showing it
    /// back, the instant is what counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<FixedOffset>>,
    /// An IANA name; none is UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hours: Vec<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub minutes: Vec<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "week_day_names")]
    pub week_days: Vec<Weekday>,
    /// The last instant that may fire (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<FixedOffset>>,
}

/// A recurrence refused, naming the rule it breaks and how to mend it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurrenceError {
    #[error(
        "interval must be at least 1 (got 0): with frequency {frequency}, 1 fires every {unit} and 2 every other {unit}",
        unit = .frequency.as_str().to_lowercase()
    )]
    ZeroInterval { frequency: Frequency },
    #[error(
        "hours and minutes apply only to Day and Week recurrences (got {field} on {frequency}): \
         remove {field} and set the time with startTime, or use frequency Day or Week"
    )]
    TimesOutsideDayOrWeek { field: &'static str, frequency: Frequency },
    #[error(
        "week days apply only to Week recurrences (got weekDays on {frequency}): remove them, \
         or use frequency Week"
    )]
    WeekDaysOutsideWeek { frequency: Frequency },
    #[error("hour {hour} out of range 0-23: hours are of the 24-hour clock, midnight is 0")]
    HourOutOfRange { hour: u8 },
    #[error("minute {minute} out of range 0-59: minutes are within the hour, 0 for on the hour")]
    MinuteOutOfRange { minute: u8 },
    #[error("unknown time zone \"{name}\" (use an IANA name such as Europe/Berlin)")]
    UnknownTimeZone { name: String },
    #[error("start time {start} is after end time {end}: move one of them so that the start comes first")]
    StartAfterEnd {
        start: DateTime<FixedOffset>,
        end: DateTime<FixedOffset>,
    },
    #[error(
        "end time {end} is before the schedule was created ({created}), so it would never fire: \
         give a later end time or none"
    )]
    EndBeforeCreated {
        end: DateTime<FixedOffset>,
        created: DateTime<Utc>,
    },
}

impl Recurrence {
    /// Checks the recurrence and compiles it into its [`Schedule`]. `created` is when the
    /// schedule was created: the anchor of its fire times when there is no start time.
    /// The first rule broken is the error.
    pub fn check(&self, created: DateTime<Utc>) -> Result<Schedule, RecurrenceError> {
        let frequency = self.frequency;
        if self.interval == 0 {
            return Err(RecurrenceError::ZeroInterval { frequency });
        }
        let by_calendar_day = matches!(frequency, Frequency::Day | Frequency::Week);
        for (field, values) in [("hours", &self.hours), ("minutes", &self.minutes)] {
            if !by_calendar_day && !values.is_empty() {
                return Err(RecurrenceError::TimesOutsideDayOrWeek { field, frequency });
            }
        }
        if frequency != Frequency::Week && !self.week_days.is_empty() {
            return Err(RecurrenceError::WeekDaysOutsideWeek { frequency });
        }
        if let Some(&hour) = self.hours.iter().find(|&&hour| hour > 23) {
            return Err(RecurrenceError::HourOutOfRange { hour });
        }
        if let Some(&minute) = self.minutes.iter().find(|&&minute| minute > 59) {
            return Err(RecurrenceError::MinuteOutOfRange { minute });
        }
        let zone = match &self.time_zone {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| RecurrenceError::UnknownTimeZone { name: name.clone() })?,
        };
        if let (Some(start), Some(end)) = (self.start_time, self.end_time)
            && start > end
        {
            return Err(RecurrenceError::StartAfterEnd { start, end });
        }
        let anchor = whole_minute(self.start_time.map_or(created, |start| start.to_utc()));
        if let Some(end) = self.end_time
            && end < anchor
        {
            return Err(RecurrenceError::EndBeforeCreated { end, created });
        }
        Ok(Schedule::new(
            anchor,
            self.end_time.map(|end| end.to_utc()),
            zone,
            self.rule(anchor, zone),
        ))
    }

    /// The rule of a checked recurrence, its defaults taken from the anchor's local time.
    fn rule(&self, anchor: DateTime<Utc>, zone: Tz) -> Rule {
        let interval = self.interval;
        let local = anchor.with_timezone(&zone).naive_local();
        let anchor_time = NaiveTime::from_hms_opt(local.hour(), local.minute(), 0)
            .expect("an hour and minute read off a clock are valid");
        let times = || {
            let hours = sorted_or(&self.hours, local.hour() as u8);
            let minutes = sorted_or(&self.minutes, local.minute() as u8);
            hours
                .iter()
                .flat_map(|&hour| {
                    minutes.iter().map(move |&minute| {
                        NaiveTime::from_hms_opt(hour.into(), minute.into(), 0)
                            .expect("hours and minutes were checked to be in range")
                    })
                })
                .collect()
        };
        let date = local.date();
        match self.frequency {
            Frequency::Minute => Rule::Elapsed {
                seconds: 60 * i64::from(interval),
            },
            Frequency::Hour => Rule::Elapsed {
                seconds: 3600 * i64::from(interval),
            },
            Frequency::Day => Rule::Calendar(Calendar {
                period: Period::Days(interval),
                first: date,
                days: vec![0],
                times: times(),
            }),
            Frequency::Week => {
                let weekdays: Vec<u8> = self
                    .week_days
                    .iter()
                    .map(|day| day.num_days_from_monday() as u8)
                    .collect();
                let days = sorted_or(&weekdays, date.weekday().num_days_from_monday() as u8);
                Rule::Calendar(Calendar {
                    period: Period::Weeks(interval),
                    first: date.week(Weekday::Mon).first_day(),
                    days: days.into_iter().map(u32::from).collect(),
                    times: times(),
                })
            }
            Frequency::Month => Rule::Calendar(Calendar {
                period: Period::Months(interval),
                first: date.with_day(1).expect("every month has a first day"),
                days: vec![date.day0()],
                times: vec![anchor_time],
            }),
        }
    }
}

/// `values` sorted and without repeats, or `default` alone when there are none.
fn sorted_or(values: &[u8], default: u8) -> Vec<u8> {
    let mut sorted = if values.is_empty() {
        vec![default]
    } else {
        values.to_vec()
    };
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// `at` without its seconds: fire times are whole minutes.
fn whole_minute(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_second(0)
        .and_then(|at| at.with_nanosecond(0))
        .expect("every minute of UTC has its second 0")
}

/// Week days as Azure writes them, `Monday` to `Sunday`; read in any case.
mod week_day_names {
    use chrono::Weekday;
    use serde::{Deserialize, Deserializer, Serializer};

    const NAMES: [(Weekday, &str); 7] = [
        (Weekday::Mon, "Monday"),
        (Weekday::Tue, "Tuesday"),
        (Weekday::Wed, "Wednesday"),
        (Weekday::Thu, "Thursday"),
        (Weekday::Fri, "Friday"),
        (Weekday::Sat, "Saturday"),
        (Weekday::Sun, "Sunday"),
    ];

    pub fn serialize<S: Serializer>(days: &[Weekday], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(days.iter().map(|day| NAMES[day.num_days_from_monday() as usize].1))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Weekday>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|name| {
                NAMES
                    .iter()
                    .find(|(_, known)| known.eq_ignore_ascii_case(name))
                    .map(|&(day, _)| day)
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!("unknown week day \"{name}\" (use Monday to Sunday)"))
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn created() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn recurrence(body: serde_json::Value) -> Recurrence {
        serde_json::from_value(body).unwrap()
    }

    fn refusal(body: serde_json::Value) -> String {
        recurrence(body).check(created()).unwrap_err().to_string()
    }

    #[test]
    fn reads_and_writes_azures_field_names_keeping_the_offset_written() {
        let body = json!({
            "frequency": "Week",
            "interval": 2,
            "startTime": "2026-03-02T09:30:00+05:30",
            "timeZone": "Asia/Kolkata",
            "hours": [9],
            "minutes": [30],
            "weekDays": ["Monday", "Thursday"],
            "endTime": "2026-12-31T00:00:00-05:00",
        });
        let read = recurrence(body.clone());
        assert_eq!(read.week_days, [Weekday::Mon, Weekday::Thu]);
        assert_eq!(read.start_time.unwrap().offset().local_minus_utc(), 5 * 3600 + 1800);
        assert_eq!(serde_json::to_value(&read).unwrap(), body);
    }

    #[test]
    fn leaves_out_what_was_not_given_and_defaults_it_when_read() {
        let minimal = json!({"frequency": "Hour", "interval": 1});
        let read = recurrence(minimal.clone());
        assert_eq!(read.time_zone, None);
        assert!(read.hours.is_empty() && read.minutes.is_empty() && read.week_days.is_empty());
        assert_eq!(serde_json::to_value(&read).unwrap(), minimal);
    }

    #[test]
    fn reads_frequencies_and_week_days_in_any_case() {
        let read = recurrence(json!({"frequency": "week", "interval": 1, "weekDays": ["SUNDAY", "monday", "Friday"]}));
        assert_eq!(read.frequency, Frequency::Week);
        assert_eq!(read.week_days, [Weekday::Sun, Weekday::Mon, Weekday::Fri]);
        let written = serde_json::to_value(&read).unwrap();
        assert_eq!(written["frequency"], "Week");
        assert_eq!(written["weekDays"], json!(["Sunday", "Monday", "Friday"]));
    }

    #[test]
    fn refuses_unknown_names_when_read_saying_which_are_known() {
        let day =
            serde_json::from_value::<Recurrence>(json!({"frequency": "Week", "interval": 1, "weekDays": ["Mon"]}));
        assert!(
            day.unwrap_err()
                .to_string()
                .contains("unknown week day \"Mon\" (use Monday to Sunday)")
        );
        let frequency = serde_json::from_value::<Recurrence>(json!({"frequency": "Year", "interval": 1}));
        assert!(
            frequency
                .unwrap_err()
                .to_string()
                .contains("unknown frequency \"Year\" (use Minute, Hour, Day, Week or Month)")
        );
    }

    #[test]
    fn refuses_an_interval_of_zero() {
        assert_eq!(
            refusal(json!({"frequency": "Day", "interval": 0})),
            "interval must be at least 1 (got 0): with frequency Day, 1 fires every day and 2 every other day"
        );
    }

    #[test]
    fn refuses_hours_and_minutes_except_on_day_and_week() {
        for frequency in ["Minute", "Hour", "Month"] {
            assert_eq!(
                refusal(json!({"frequency": frequency, "interval": 1, "hours": [3]})),
                format!(
                    "hours and minutes apply only to Day and Week recurrences (got hours on {frequency}): \
                     remove hours and set the time with startTime, or use frequency Day or Week"
                )
            );
            let minutes = refusal(json!({"frequency": frequency, "interval": 1, "minutes": [3]}));
            assert!(minutes.contains(&format!("(got minutes on {frequency})")), "{minutes}");
        }
        for frequency in ["Day", "Week"] {
            let body = json!({"frequency": frequency, "interval": 1, "hours": [3], "minutes": [4]});
            assert!(recurrence(body).check(created()).is_ok());
        }
    }

    #[test]
    fn refuses_week_days_except_on_week() {
        for frequency in ["Minute", "Hour", "Day", "Month"] {
            assert_eq!(
                refusal(json!({"frequency": frequency, "interval": 1, "weekDays": ["Monday"]})),
                format!(
                    "week days apply only to Week recurrences (got weekDays on {frequency}): remove them, \
                     or use frequency Week"
                )
            );
        }
    }

    #[test]
    fn refuses_hours_and_minutes_off_the_clock() {
        assert_eq!(
            refusal(json!({"frequency": "Day", "interval": 1, "hours": [0, 23, 24]})),
            "hour 24 out of range 0-23: hours are of the 24-hour clock, midnight is 0"
        );
        assert_eq!(
            refusal(json!({"frequency": "Week", "interval": 1, "minutes": [0, 59, 60]})),
            "minute 60 out of range 0-59: minutes are within the hour, 0 for on the hour"
        );
    }

    #[test]
    fn refuses_a_time_zone_that_is_not_an_iana_name() {
        assert_eq!(
            refusal(json!({"frequency": "Day", "interval": 1, "timeZone": "Mars/Base"})),
            "unknown time zone \"Mars/Base\" (use an IANA name such as Europe/Berlin)"
        );
        // Azure ML's own names are Windows ones; they are not IANA names.
        let windows = refusal(json!({"frequency": "Day", "interval": 1, "timeZone": "Pacific Standard Time"}));
        assert!(windows.starts_with("unknown time zone \"Pacific Standard Time\""));
    }

    #[test]
    fn refuses_a_start_after_the_end_but_takes_them_equal() {
        assert_eq!(
            refusal(json!({
                "frequency": "Day", "interval": 1,
                "startTime": "2026-05-01T00:00:00+02:00", "endTime": "2026-04-01T00:00:00+02:00",
            })),
            "start time 2026-05-01 00:00:00 +02:00 is after end time 2026-04-01 00:00:00 +02:00: \
             move one of them so that the start comes first"
        );
        let once = recurrence(json!({
            "frequency": "Day", "interval": 1,
            "startTime": "2026-05-01T00:00:00+02:00", "endTime": "2026-04-30T22:00:00Z",
        }));
        let schedule = once.check(created()).unwrap();
        assert_eq!(
            schedule.upcoming(created(), 5),
            ["2026-04-30T22:00:00Z".parse::<DateTime<Utc>>().unwrap()]
        );
    }

    #[test]
    fn refuses_an_end_before_the_creation_when_there_is_no_start() {
        assert_eq!(
            refusal(json!({"frequency": "Hour", "interval": 1, "endTime": "2025-12-31T23:00:00Z"})),
            "end time 2025-12-31 23:00:00 +00:00 is before the schedule was created (2026-01-01 00:00:00 UTC), \
             so it would never fire: give a later end time or none"
        );
    }

    #[test]
    fn takes_the_anchor_from_the_start_time_or_else_the_creation_without_seconds() {
        let hourly =
            recurrence(json!({"frequency": "Hour", "interval": 1, "startTime": "2026-02-01T10:07:59.5+01:00"}));
        assert_eq!(
            hourly.check(created()).unwrap().anchor(),
            "2026-02-01T09:07:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let unanchored = recurrence(json!({"frequency": "Hour", "interval": 1}));
        let created: DateTime<Utc> = "2026-02-01T10:07:31Z".parse().unwrap();
        assert_eq!(
            unanchored.check(created).unwrap().anchor(),
            "2026-02-01T10:07:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
