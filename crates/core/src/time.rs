//! Event times as Event Grid writes them: RFC 3339, UTC, seven fractional digits.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

/// Formats `t` the way Event Grid writes `eventTime`: `2017-06-26T18:41:00.9584103Z`.
///
/// Event Grid keeps time in 100 ns ticks, so the eighth and ninth digits are truncated.
/// A leap second (`23:59:60.5Z`, which chrono holds as second 59 with a nanosecond
/// count of a second or more) is written as second 60, still with seven digits.
pub fn format_event_time(t: DateTime<Utc>) -> String {
    // Written out field by field: the store formats several timestamps per delivery, and
    // a strftime pattern is parsed again on every call.
    let nanos = t.timestamp_subsec_nanos();
    let (second, nanos) = match nanos.checked_sub(1_000_000_000) {
        Some(into_leap) => (t.second() + 1, into_leap),
        None => (t.second(), nanos),
    };
    let ticks = nanos / 100;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{second:02}.{ticks:07}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
    )
}

/// Parses an RFC 3339 timestamp with any offset and returns it in UTC.
pub fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

/// Formats `t` as RFC 3339 with a `+00:00` offset, the form Azure ML uses for the
/// `StartTime`/`EndTime` fields of drift events.
pub fn format_offset_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// Serde adapter for timestamps written as RFC 3339 with a `+00:00` offset.
pub mod offset_time {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_offset_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_rfc3339(&s).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn event_time_has_seven_fractional_digits_in_utc() {
        let t = parse_rfc3339("2017-06-26T20:41:00.958410399+02:00").unwrap();
        assert_eq!(format_event_time(t), "2017-06-26T18:41:00.9584103Z");
        let whole = Utc.with_ymd_and_hms(2020, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(format_event_time(whole), "2020-01-02T03:04:05.0000000Z");
    }

    #[test]
    fn event_time_round_trips_through_parse() {
        let s = "2017-06-26T18:41:00.9584103Z";
        assert_eq!(format_event_time(parse_rfc3339(s).unwrap()), s);
    }

    #[test]
    fn a_leap_second_keeps_seven_fractional_digits() {
        for (given, written) in [
            ("2016-12-31T23:59:60Z", "2016-12-31T23:59:60.0000000Z"),
            ("2016-12-31T23:59:60.123456789Z", "2016-12-31T23:59:60.1234567Z"),
            ("2017-01-01T00:59:60.9999999+01:00", "2016-12-31T23:59:60.9999999Z"),
        ] {
            let formatted = format_event_time(parse_rfc3339(given).unwrap());
            assert_eq!(formatted, written, "{given}");
            assert_eq!(
                format_event_time(parse_rfc3339(&formatted).unwrap()),
                written,
                "round trip"
            );
        }
    }

    #[test]
    fn offset_time_uses_plus_zero_offset() {
        let t = Utc.with_ymd_and_hms(2019, 7, 4, 0, 0, 0).unwrap();
        assert_eq!(format_offset_time(t), "2019-07-04T00:00:00+00:00");
    }
}
