//! The sensor interval: the median spacing between consecutive valid readings.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use edgewise_sdk::time::{DAY_MS, MINUTE_MS};

/// Spacings longer than a day share one bucket, which bounds the histogram to
/// 1441 buckets (the median of CGM data is minutes, so this never moves it).
const LONGEST_BUCKET_MINUTES: i64 = DAY_MS / MINUTE_MS;

/// Median spacing between consecutive valid in-order readings over the whole
/// history, rounded to whole minutes (as iglu's `dt0`), at least one minute.
/// Until `min_spacings` spacings are known the configured default answers: the
/// first spacings of a recording are often irregular (a sensor warming up,
/// readings missed), and a median of three of them is not the sensor's interval.
///
/// Memory is bounded: spacings are kept as a histogram of whole minutes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntervalEstimate {
    /// Spacing in whole minutes -> how many spacings had it.
    histogram: BTreeMap<i64, u64>,
    count: u64,
    /// Spacings needed before the median is trusted.
    min_spacings: u64,
    /// The current estimate in milliseconds.
    current_ms: i64,
}

impl IntervalEstimate {
    /// An estimate that answers `default_ms` until `min_spacings` spacings are known.
    pub fn new(default_ms: i64, min_spacings: u64) -> IntervalEstimate {
        IntervalEstimate {
            histogram: BTreeMap::new(),
            count: 0,
            min_spacings,
            current_ms: default_ms,
        }
    }

    /// The current estimate in milliseconds.
    pub fn current_ms(&self) -> i64 {
        self.current_ms
    }

    /// Add the spacing between two consecutive valid readings (positive ms).
    pub fn add(&mut self, spacing_ms: i64) {
        // Nearest whole minute, halves up (spacings are positive).
        let minutes = (spacing_ms.saturating_add(MINUTE_MS / 2) / MINUTE_MS).clamp(0, LONGEST_BUCKET_MINUTES);
        *self.histogram.entry(minutes).or_insert(0) += 1;
        self.count += 1;
        if self.count >= self.min_spacings {
            self.current_ms = self.median_minutes().max(1) * MINUTE_MS;
        }
    }

    /// Median of the histogram, the mean of the two middle values rounded half
    /// up when the count is even. Walks from the shortest spacing, so the cost
    /// is the number of distinct spacings up to the median (a handful).
    fn median_minutes(&self) -> i64 {
        // 0-based ranks of the two middle values (equal when the count is odd).
        let upper_rank = self.count / 2;
        let lower_rank = self.count.saturating_sub(1) / 2;
        let (mut lower, mut seen) = (None, 0u64);
        for (&minutes, &n) in &self.histogram {
            seen += n;
            if lower.is_none() && seen > lower_rank {
                lower = Some(minutes);
            }
            if seen > upper_rank {
                let low = lower.unwrap_or(minutes);
                return (low + minutes + 1) / 2;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(spacings_s: &[i64]) -> i64 {
        let mut estimate = IntervalEstimate::new(5 * MINUTE_MS, 1);
        for s in spacings_s {
            estimate.add(s * 1000);
        }
        estimate.current_ms() / MINUTE_MS
    }

    #[test]
    fn default_before_any_spacing() {
        assert_eq!(IntervalEstimate::new(7 * MINUTE_MS, 1).current_ms(), 7 * MINUTE_MS);
    }

    #[test]
    fn default_until_enough_spacings() {
        let mut estimate = IntervalEstimate::new(5 * MINUTE_MS, 3);
        estimate.add(15 * MINUTE_MS);
        estimate.add(10 * MINUTE_MS);
        assert_eq!(estimate.current_ms(), 5 * MINUTE_MS);
        estimate.add(15 * MINUTE_MS);
        assert_eq!(estimate.current_ms(), 15 * MINUTE_MS);
    }

    #[test]
    fn median_of_whole_minutes() {
        assert_eq!(estimate(&[300]), 5);
        assert_eq!(estimate(&[299, 301, 305, 3600]), 5);
        assert_eq!(estimate(&[900, 900, 900, 60, 60]), 15);
        // Even count: (4 + 6) / 2 = 5; (5 + 6) / 2 = 5.5 rounds up to 6.
        assert_eq!(estimate(&[240, 360]), 5);
        assert_eq!(estimate(&[300, 360]), 6);
    }

    #[test]
    fn at_least_one_minute_and_bounded() {
        assert_eq!(estimate(&[10, 10, 10]), 1);
        let mut estimate = IntervalEstimate::new(MINUTE_MS, 1);
        for days in 1..5000 {
            estimate.add(days * DAY_MS);
        }
        assert_eq!(estimate.histogram.len(), 1);
        assert_eq!(estimate.current_ms(), DAY_MS);
    }
}
