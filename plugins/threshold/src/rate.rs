//! Rate of change of one sensor: least-squares slope over a time window.

use edgewise_sdk::trend::least_squares;
use edgewise_sdk::window::TimeWindow;
use serde::{Deserialize, Serialize};

/// The window is cut into this many slots, and keeps the newest reading of
/// each: at most 122 readings whatever the sensor's rate (a probe read every
/// millisecond kept 600,000 in a 10-minute window, each reading's slope took
/// longer than a call may, and its snapshot outgrew the state limit).
/// `rate_min_readings` is at most this.
pub(crate) const RATE_WINDOW_SLOTS: i64 = 120;

/// The valid in-order readings of the last `span_ms` (inclusive), the newest
/// of each of its [`RATE_WINDOW_SLOTS`] slots, and the slope through them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RateWindow {
    span_ms: i64,
    min_readings: usize,
    window: TimeWindow,
}

impl RateWindow {
    /// A window of `span_ms` that judges a slope from `min_readings` readings on.
    pub(crate) fn new(span_ms: i64, min_readings: usize) -> RateWindow {
        RateWindow {
            span_ms,
            min_readings,
            window: TimeWindow::new(span_ms),
        }
    }

    /// Add an in-order valid reading and return the slope in units per
    /// minute, or `None` when it cannot be judged: fewer than `min_readings`
    /// readings in the window, no defined slope, or a non-finite one (values
    /// so large that the sums overflow).
    ///
    /// A timestamp within `span_ms` of `i64::MIN` cannot anchor a window
    /// without overflow: the window is emptied and the slope is not judged.
    pub(crate) fn push(&mut self, timestamp_ms: i64, value: f64) -> Option<f64> {
        if timestamp_ms.checked_sub(self.span_ms).is_none() {
            self.window.clear();
            return None;
        }
        // 5 s slots in the default 10-minute window: any sensor read at most
        // every 5 s keeps every reading.
        let slot_ms = self.span_ms / RATE_WINDOW_SLOTS;
        self.window.push_in_slot(timestamp_ms, value, slot_ms);
        if self.window.len() < self.min_readings {
            return None;
        }
        least_squares(self.window.iter())
            .map(|trend| trend.per_minute)
            .filter(|slope| slope.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn needs_min_readings_within_the_inclusive_span() {
        let mut rate = RateWindow::new(10 * MIN, 3);
        assert_eq!(rate.push(0, 1.0), None);
        assert_eq!(rate.push(5 * MIN, 2.0), None);
        // The first reading is exactly `span` old: still in.
        assert_eq!(rate.push(10 * MIN, 3.0), Some(0.2));
        // Now the first two have left the window.
        assert_eq!(rate.push(20 * MIN + 1, 3.0), None);
    }

    #[test]
    fn refuses_timestamps_it_cannot_anchor() {
        let mut rate = RateWindow::new(10 * MIN, 2);
        assert_eq!(rate.push(i64::MIN, 1.0), None);
        assert_eq!(rate.push(i64::MIN + 1, 1.0), None);
        assert_eq!(rate.push(i64::MAX - MIN, 1.0), None);
        assert_eq!(rate.push(i64::MAX, 2.0), Some(1.0));
    }

    #[test]
    fn a_sensor_read_every_millisecond_keeps_a_reading_per_slot() {
        let mut rate = RateWindow::new(MIN, 3);
        let mut slope = None;
        for t in 0..2 * MIN {
            // A steady rise of 1 per minute.
            slope = rate.push(t, t as f64 / MIN as f64);
        }
        assert!(
            rate.window.len() <= RATE_WINDOW_SLOTS as usize + 2,
            "{}",
            rate.window.len()
        );
        let slope = slope.unwrap();
        assert!((slope - 1.0).abs() < 1e-9, "{slope}");
    }

    #[test]
    fn overflowing_sums_are_not_judged() {
        let mut rate = RateWindow::new(10 * MIN, 2);
        rate.push(0, -f64::MAX);
        assert_eq!(rate.push(MIN, f64::MAX), None);
    }
}
