//! Which two days the forecast plot shows: the ones with the most lows, so
//! that the plot shows the `predicted-low` alerts at work.

use forecast_model::MINUTE_MS;

use super::lows::LOW_MGDL;

const HOUR_MS: i64 = 60 * MINUTE_MS;
/// The span of the forecast plot.
pub const SPAN_MS: i64 = 48 * HOUR_MS;

/// A span of one sensor's readings, and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Its start (a whole UTC hour), ms.
    pub start_ms: i64,
    /// Its end (excluded), ms.
    pub end_ms: i64,
    /// Readings below 70 mg/dL in it.
    pub lows: usize,
    /// Readings in it.
    pub readings: usize,
}

impl Window {
    /// What makes a window better to plot: more low readings, then more readings.
    pub fn score(&self) -> (usize, usize) {
        (self.lows, self.readings)
    }
}

/// The [`SPAN_MS`] window, starting at a whole UTC hour, with the most
/// readings below 70 mg/dL, then the most readings, the earliest on a tie;
/// `None` without readings. `readings` are in time order.
pub fn best(readings: &[(i64, f64)]) -> Option<Window> {
    let first_hour = readings.first()?.0.div_euclid(HOUR_MS);
    let last_hour = readings.last()?.0.div_euclid(HOUR_MS);
    // lows_before[i]: readings below 70 among readings[..i].
    let mut lows_before = Vec::with_capacity(readings.len() + 1);
    lows_before.push(0);
    for &(_, value) in readings {
        let before = lows_before.last().copied().unwrap_or(0);
        lows_before.push(before + usize::from(value < LOW_MGDL));
    }
    (first_hour..=last_hour)
        .rev()
        .map(|hour| {
            let start_ms = hour * HOUR_MS;
            let end_ms = start_ms + SPAN_MS;
            let from = readings.partition_point(|r| r.0 < start_ms);
            let to = readings.partition_point(|r| r.0 < end_ms);
            Window {
                start_ms,
                end_ms,
                lows: lows_before[to] - lows_before[from],
                readings: to - from,
            }
        })
        // The last of the maxima, so the earliest window (hours go backwards).
        .max_by_key(Window::score)
}

/// `YYYY-MM-DD HH:00 UTC` of a whole hour.
pub fn utc_hour(ms: i64) -> Option<String> {
    let time = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?;
    let date = time.date();
    Some(format!(
        "{:04}-{:02}-{:02} {:02}:00 UTC",
        date.year(),
        u8::from(date.month()),
        date.day(),
        time.hour()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_has_the_most_lows_then_the_most_readings() {
        // Four days of readings every hour (7 minutes past); lows on day 2.
        let base = 1000 * 24 * HOUR_MS;
        let readings: Vec<(i64, f64)> = (0..96)
            .map(|h| {
                let ms = base + h * HOUR_MS + 7 * MINUTE_MS;
                (ms, if (48..52).contains(&h) { 60.0 } else { 120.0 })
            })
            .collect();
        // Every window from hour 4 to hour 48 holds the lows and 48 readings: the earliest.
        assert_eq!(
            best(&readings),
            Some(Window {
                start_ms: base + 4 * HOUR_MS,
                end_ms: base + 52 * HOUR_MS,
                lows: 4,
                readings: 48
            })
        );
        // Without lows: the first full window.
        let no_lows: Vec<(i64, f64)> = readings.iter().map(|&(ms, _)| (ms, 100.0)).collect();
        assert_eq!(best(&no_lows).map(|w| (w.start_ms, w.readings)), Some((base, 48)));
        assert_eq!(best(&[]), None);
    }

    #[test]
    fn hours_are_utc() {
        assert_eq!(utc_hour(1_434_300_000_000).unwrap(), "2015-06-14 16:00 UTC");
        assert_eq!(utc_hour(0).unwrap(), "1970-01-01 00:00 UTC");
    }
}
