//! A sensor's recent readings, and the features a forecast is made from.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::spec::{FeatureSpec, MINUTE_MS};

/// Most readings a history keeps, whatever the sensor's rate: a sensor
/// reading every millisecond cannot make it grow without bound (the grid
/// points beyond what it keeps take the earliest kept value).
const MAX_KEPT: usize = 2048;

/// A history keeps at most one reading per this fraction of the grid's step
/// (30 s on a 5-minute grid), the newest of each: a sensor read every second
/// kept 2,048 readings, 32 KB of state and snapshot, where the features need
/// a point every few minutes. Sensors read at most this often (every CGM: 1
/// or 5 minutes) keep every reading, so their features are unchanged.
const SLOTS_PER_STEP: i64 = 10;

/// What [`History::push`] did with a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The reading is the sensor's newest: it is now, and features describe it.
    Taken,
    /// Not after the newest reading (a duplicate or a late one): ignored, so
    /// that features always describe the newest reading.
    NotNewer,
    /// Not a finite number: ignored.
    NotFinite,
}

/// The recent readings of one sensor and its moving averages, kept just long
/// enough for the features of a [`FeatureSpec`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// `(timestamp ms, mg/dL)`, timestamps strictly increasing.
    readings: VecDeque<(i64, f64)>,
    /// The exponential moving averages, one per `averages_min` (empty before
    /// the first reading).
    averages: Vec<f64>,
}

impl History {
    /// Take a reading of this sensor.
    pub fn push(&mut self, spec: &FeatureSpec, timestamp_ms: i64, value: f64) -> Pushed {
        if !value.is_finite() {
            return Pushed::NotFinite;
        }
        match self.readings.back() {
            Some(&(last_ms, _)) if timestamp_ms <= last_ms => return Pushed::NotNewer,
            Some(&(last_ms, _)) if self.averages.len() == spec.averages_min.len() => {
                // Each average decays by exp(-dt / tau): a gap lets the
                // average forget as much as the time that passed.
                let dt = timestamp_ms.saturating_sub(last_ms) as f64;
                for (average, tau_min) in self.averages.iter_mut().zip(&spec.averages_min) {
                    let keep = libm::exp(-dt / (f64::from(*tau_min) * MINUTE_MS as f64));
                    *average = keep * *average + (1.0 - keep) * value;
                }
            }
            // The first reading, or a history kept under a specification
            // with other averages (restored into a new model): the averages
            // start from this reading, so every feature the model expects is
            // there.
            _ => self.averages = vec![value; spec.averages_min.len()],
        }
        let slot_ms = (spec.step_ms() / SLOTS_PER_STEP).max(1);
        let slot = |ms: i64| ms.div_euclid(slot_ms);
        match self.readings.back_mut() {
            Some(newest) if slot(newest.0) == slot(timestamp_ms) => *newest = (timestamp_ms, value),
            _ => self.readings.push_back((timestamp_ms, value)),
        }
        // Keep the readings around the oldest grid point (one before it, to
        // interpolate there).
        let oldest_grid = timestamp_ms.saturating_sub(i64::from(spec.lags).saturating_mul(spec.step_ms()));
        while self.readings.len() > MAX_KEPT || self.readings.get(1).is_some_and(|&(ms, _)| ms <= oldest_grid) {
            self.readings.pop_front();
        }
        Pushed::Taken
    }

    /// The newest reading, `(timestamp ms, mg/dL)`.
    pub fn newest(&self) -> Option<(i64, f64)> {
        self.readings.back().copied()
    }

    /// The features of the newest reading, in the order of
    /// [`FeatureSpec::names`], written into `features` (cleared first); `None`
    /// before any reading.
    ///
    /// Lag `k` is the newest value minus the glucose at `k` grid steps before
    /// it: the reading at that time, or a straight line between the readings
    /// either side of it (a gap is bridged only between two past readings,
    /// never into the future), or the oldest reading kept when the history
    /// does not reach back that far (a new sensor, or one back from a long
    /// gap: its changes count as zero). Average `j` is the newest value minus
    /// that moving average.
    pub fn features(&self, spec: &FeatureSpec, features: &mut Vec<f64>) -> Option<f64> {
        features.clear();
        let &(now_ms, now) = self.readings.back()?;
        let step = spec.step_ms();
        // Index of the newest reading at or before the grid point; it only
        // moves back as the grid point does.
        let mut at_or_before = self.readings.len() - 1;
        for k in 1..=i64::from(spec.lags) {
            let grid = now_ms.saturating_sub(k.saturating_mul(step));
            while at_or_before > 0 && self.readings[at_or_before].0 > grid {
                at_or_before -= 1;
            }
            let (before_ms, before) = self.readings[at_or_before];
            let value = if before_ms > grid {
                // Older than every reading kept.
                before
            } else if before_ms == grid {
                before
            } else {
                let (after_ms, after) = self.readings[at_or_before + 1];
                let fraction = (grid - before_ms) as f64 / (after_ms - before_ms) as f64;
                before + (after - before) * fraction
            };
            features.push(now - value);
        }
        features.extend(self.averages.iter().map(|average| now - average));
        Some(now)
    }
}

/// The reading nearest to `at_ms` within `tolerance_ms` either side (the
/// earlier one on a tie): what actually happened at a forecast's target time.
/// Never interpolated. `readings` are sorted by time.
pub fn actual_at(readings: &[(i64, f64)], at_ms: i64, tolerance_ms: i64) -> Option<f64> {
    let after = readings.partition_point(|&(ms, _)| ms < at_ms);
    let candidates = [after.checked_sub(1), Some(after)];
    candidates
        .into_iter()
        .flatten()
        .filter_map(|index| readings.get(index))
        .filter(|(ms, _)| ms.abs_diff(at_ms) <= tolerance_ms.unsigned_abs())
        .min_by_key(|(ms, _)| ms.abs_diff(at_ms))
        .map(|&(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = MINUTE_MS;

    fn spec(lags: u32, averages_min: Vec<u32>) -> FeatureSpec {
        FeatureSpec {
            step_min: 5,
            lags,
            averages_min,
        }
    }

    fn features_after(spec: &FeatureSpec, readings: &[(i64, f64)]) -> Vec<f64> {
        let mut history = History::default();
        for &(ms, value) in readings {
            history.push(spec, ms, value);
        }
        let mut features = Vec::new();
        history.features(spec, &mut features);
        features
    }

    #[test]
    fn lags_are_changes_from_the_grid_points_and_gaps_are_bridged_between_past_readings() {
        let spec = spec(4, vec![]);
        // 100 at -20 min, nothing at -15 and -10, 110 at -5 (a gap), 112 now.
        let features = features_after(&spec, &[(0, 100.0), (15 * MIN, 110.0), (20 * MIN, 112.0)]);
        // -5: 110; -10: 100 + 10 * (10 / 15); -15: 100 + 10 * (5 / 15); -20: 100.
        let expected = [
            2.0,
            112.0 - (100.0 + 10.0 * (10.0 / 15.0)),
            112.0 - (100.0 + 10.0 * (5.0 / 15.0)),
            12.0,
        ];
        assert_eq!(features, expected);
    }

    #[test]
    fn a_new_sensor_has_no_change_and_sits_on_its_averages() {
        let spec = spec(3, vec![60]);
        assert_eq!(features_after(&spec, &[(0, 90.0)]), vec![0.0; 4]);
        assert_eq!(History::default().features(&spec, &mut Vec::new()), None);
    }

    #[test]
    fn duplicates_late_and_non_finite_readings_are_ignored() {
        let spec = spec(2, vec![30]);
        let mut history = History::default();
        assert_eq!(history.push(&spec, 10 * MIN, 100.0), Pushed::Taken);
        assert_eq!(history.push(&spec, 10 * MIN, 300.0), Pushed::NotNewer);
        assert_eq!(history.push(&spec, 5 * MIN, 300.0), Pushed::NotNewer);
        assert_eq!(history.push(&spec, 15 * MIN, f64::NAN), Pushed::NotFinite);
        assert_eq!(history.push(&spec, 15 * MIN, f64::INFINITY), Pushed::NotFinite);
        assert_eq!(history.newest(), Some((10 * MIN, 100.0)));
    }

    #[test]
    fn a_history_kept_under_other_averages_gives_every_feature_of_the_new_ones() {
        let (old, new) = (spec(2, vec![60]), spec(3, vec![60, 240, 720]));
        let mut history = History::default();
        for k in 0..6 {
            history.push(&old, k * 5 * MIN, 100.0 + k as f64);
        }
        history.push(&new, 30 * MIN, 110.0);
        let mut features = Vec::new();
        history.features(&new, &mut features);
        assert_eq!(features.len(), new.len());
        // The averages start again at the reading; the lags use the readings kept.
        assert_eq!(features[3..], [0.0; 3]);
        assert_eq!(features[0], 110.0 - 105.0);
    }

    #[test]
    fn an_average_forgets_by_the_time_that_passed() {
        let spec = spec(0, vec![60]);
        let mut history = History::default();
        history.push(&spec, 0, 100.0);
        history.push(&spec, 60 * MIN, 200.0);
        let mut features = Vec::new();
        history.features(&spec, &mut features);
        let keep = (-1.0f64).exp();
        let average = keep * 100.0 + (1.0 - keep) * 200.0;
        assert!((features[0] - (200.0 - average)).abs() < 1e-12, "{features:?}");
    }

    #[test]
    fn the_history_stays_bounded_by_time_and_by_count() {
        let spec = spec(12, vec![]);
        let mut history = History::default();
        for minute in 0..1000 {
            history.push(&spec, minute * MIN, 100.0);
        }
        // A reading a minute over the 60 minutes of the grid, its oldest
        // point included (no reading before it is needed).
        assert_eq!(history.readings.len(), 61);
        // A sensor read every 100 ms for an hour and a half: the newest
        // reading of each 30-s slot of the last hour, and the one before it.
        for ms in (0..90 * MIN).step_by(100) {
            history.push(&spec, 1_000_000 * MIN + ms, 100.0 + (ms / 1000) as f64);
        }
        assert_eq!(history.readings.len(), 121);
        assert_eq!(
            history.newest(),
            Some((1_000_000 * MIN + 90 * MIN - 100, 100.0 + 5399.0))
        );
        // A grid longer than MAX_KEPT slots (a day of 5-minute lags).
        let day = FeatureSpec { lags: 288, ..spec };
        let mut history = History::default();
        for k in 0..3000 {
            history.push(&day, k * 30_000, 100.0);
        }
        assert_eq!(history.readings.len(), MAX_KEPT);
    }

    #[test]
    fn a_sensor_read_every_second_has_the_features_of_its_readings_on_the_grid() {
        let spec = spec(12, vec![60]);
        let at = |ms: i64| 100.0 + ms as f64 / 60_000.0;
        let every_second: Vec<(i64, f64)> = (0..=90 * 60).map(|s| (s * 1000, at(s * 1000))).collect();
        let every_minute: Vec<(i64, f64)> = (0..=90).map(|m| (m * MIN, at(m * MIN))).collect();
        // A straight rise: the lags read the same line either way.
        let (dense, sparse) = (
            features_after(&spec, &every_second),
            features_after(&spec, &every_minute),
        );
        for (d, s) in dense[..12].iter().zip(&sparse[..12]) {
            assert!((d - s).abs() < 1e-9, "{dense:?} {sparse:?}");
        }
    }

    #[test]
    fn the_actual_value_is_the_nearest_reading_within_the_tolerance() {
        let readings = [(0, 1.0), (5 * MIN, 2.0), (10 * MIN, 3.0), (30 * MIN, 4.0)];
        assert_eq!(actual_at(&readings, 6 * MIN, 150_000), Some(2.0));
        assert_eq!(actual_at(&readings, 9 * MIN, 150_000), Some(3.0));
        assert_eq!(actual_at(&readings, 20 * MIN, 150_000), None);
        assert_eq!(actual_at(&readings, 7 * MIN + 30_000, 150_000), Some(2.0));
        assert_eq!(actual_at(&[], 0, 150_000), None);
    }
}
