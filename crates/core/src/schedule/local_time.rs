//! Local clock times to instants, with the daylight saving rules of schedules: a local
//! time the clock skips fires when the gap ends, one the clock shows twice fires the
//! first time.

use chrono::{DateTime, MappedLocalTime, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};

/// The instant at which the local time `local` of `zone` fires.
///
/// Never decreasing: a later local time never fires before an earlier one. The fire time
/// searches rely on it to binary-search the candidates of a period by instant. (A skipped
/// time fires at the gap's end, which is where the next shown time fires too; a time
/// shown twice fires at its first showing, which is before every time after the fold.)
pub(super) fn fire_instant(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        MappedLocalTime::Single(at) => at.to_utc(),
        MappedLocalTime::Ambiguous(earlier, _) => earlier.to_utc(),
        MappedLocalTime::None => match GapInfo::new(&local, &zone).and_then(|gap| gap.end) {
            Some(end) => end.to_utc(),
            // chrono-tz reports a skipped time only between two spans of its table, so
            // the gap has an end; were it ever missing, reading `local` with the offset in
            // force at that instant keeps the schedule firing rather than panicking.
            None => {
                let offset = zone.offset_from_utc_datetime(&local).fix();
                local.checked_sub_offset(offset).unwrap_or(local).and_utc()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_time_the_clock_skips_fires_when_the_gap_ends() {
        let berlin = chrono_tz::Europe::Berlin;
        for minute in [0, 30, 59] {
            assert_eq!(
                fire_instant(berlin, local(2026, 3, 29, 2, minute)),
                utc("2026-03-29T01:00:00Z")
            );
        }
        assert_eq!(
            fire_instant(berlin, local(2026, 3, 29, 3, 0)),
            utc("2026-03-29T01:00:00Z")
        );
        let lord_howe = chrono_tz::Australia::Lord_Howe;
        assert_eq!(
            fire_instant(lord_howe, local(2026, 10, 4, 2, 15)),
            utc("2026-10-03T15:30:00Z")
        );
    }

    #[test]
    fn a_time_the_clock_shows_twice_fires_the_first_time() {
        let new_york = chrono_tz::America::New_York;
        assert_eq!(
            fire_instant(new_york, local(2026, 11, 1, 1, 30)),
            utc("2026-11-01T05:30:00Z")
        );
        assert_eq!(
            fire_instant(new_york, local(2026, 11, 1, 2, 0)),
            utc("2026-11-01T07:00:00Z")
        );
    }
}
