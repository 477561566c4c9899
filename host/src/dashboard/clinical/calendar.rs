//! UTC days and clock times: the only place that turns milliseconds since
//! the epoch into the `YYYY-MM-DD` and `HH:MM` people read. A day is named
//! by its index since the epoch (`ms.div_euclid(DAY_MS)`), which every `i64`
//! has; only days of the years 1..=9999 get a name (a window outside them is
//! not shown), so formatting never fails on hostile timestamps.

use time::{Date, Month};

/// One hour, in ms.
pub(super) const HOUR_MS: i64 = 3_600_000;
/// One UTC day, in ms.
pub(super) const DAY_MS: i64 = 24 * HOUR_MS;
/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The UTC day (index since the epoch) that `ms` falls in.
pub(super) fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// The hour of the UTC day (0..=23) that `ms` falls in.
pub(super) fn hour_of_day(ms: i64) -> usize {
    // rem_euclid is in 0..DAY_MS, so the quotient is in 0..24.
    usize::try_from(ms.rem_euclid(DAY_MS) / HOUR_MS).unwrap_or(0)
}

/// `HH:MM` (UTC) of `ms`.
pub(super) fn clock(ms: i64) -> String {
    let minute_of_day = ms.rem_euclid(DAY_MS) / 60_000;
    format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60)
}

fn date(day: i64) -> Option<Date> {
    let julian = i32::try_from(day.checked_add(UNIX_EPOCH_JULIAN_DAY)?).ok()?;
    let date = Date::from_julian_day(julian).ok()?;
    (1..=9999).contains(&date.year()).then_some(date)
}

/// Whether `day` has a name (see the module's doc).
pub(super) fn is_named(day: i64) -> bool {
    date(day).is_some()
}

/// `YYYY-MM-DD` of `day`, if it has a name.
pub(super) fn day_label(day: i64) -> Option<String> {
    let date = date(day)?;
    Some(format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

/// `Jun 6`: the short name of `day` for chart axes.
pub(super) fn short_label(day: i64) -> String {
    match date(day) {
        Some(date) => format!("{} {}", MONTHS[usize::from(u8::from(date.month())) - 1], date.day()),
        None => String::new(),
    }
}

/// The day named by `text` (exactly `YYYY-MM-DD`, a real date).
pub(super) fn parse_day(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !well_formed {
        return None;
    }
    let year: i32 = text[0..4].parse().ok()?;
    let month = Month::try_from(text[5..7].parse::<u8>().ok()?).ok()?;
    let day_of_month: u8 = text[8..10].parse().ok()?;
    let date = Date::from_calendar_date(year, month, day_of_month).ok()?;
    let day = i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY;
    is_named(day).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_named_and_parsed_back() {
        // 2015-06-06T00:00:00Z, a day of the golden recording.
        let day = day_of(1_433_548_800_000);
        assert_eq!(day_label(day).as_deref(), Some("2015-06-06"));
        assert_eq!(short_label(day), "Jun 6");
        assert_eq!(parse_day("2015-06-06"), Some(day));
        assert_eq!(day_label(day_of(-1)).as_deref(), Some("1969-12-31"));
        assert_eq!(clock(1_433_548_800_000 + 13 * HOUR_MS + 5 * 60_000 + 59_999), "13:05");
        assert_eq!(hour_of_day(-1), 23);
    }

    #[test]
    fn malformed_or_impossible_days_are_refused() {
        for text in [
            "",
            "2015-6-06",
            "2015-02-30",
            "2015-13-01",
            "0000-01-01",
            "+015-06-06",
            "2015-06-06 ",
            "２015-06-06",
            "2015_06_06",
        ] {
            assert_eq!(parse_day(text), None, "{text:?}");
        }
        assert_eq!(day_label(day_of(i64::MIN)), None);
        assert_eq!(day_label(day_of(i64::MAX)), None);
        assert_eq!(short_label(day_of(i64::MAX)), "");
    }
}
