//! The figures of one summary window and the summary built from them.

use edgewise_sdk::Summary;
use edgewise_sdk::stats::RunningStats;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::episodes::KINDS;

/// Glucose bands: indexes into `WindowMetrics::bands`, in the order of the metrics.
const IN_RANGE: usize = 0;
const VERY_LOW: usize = 1;
const LOW: usize = 2;
const HIGH: usize = 3;
const VERY_HIGH: usize = 4;

/// Band metric names, indexed by band.
const BAND_NAMES: [&str; 5] = [
    "tir_70_180",
    "tbr_below_54",
    "tbr_54_69",
    "tar_181_250",
    "tar_above_250",
];

/// Episode count metrics, in the order of [`crate::episodes::Episodes`].
const EPISODE_NAMES: [&str; KINDS] = [
    "hypo_l1_episodes",
    "hypo_l2_episodes",
    "hyper_l1_episodes",
    "hyper_l2_episodes",
];

/// Accumulated figures of one window: constant size, O(1) per reading.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WindowMetrics {
    stats: RunningStats,
    /// Valid readings per band, in the order of `BAND_NAMES`.
    bands: [u64; 5],
    invalid: u64,
    episodes: [u64; KINDS],
}

impl WindowMetrics {
    /// Count a valid reading.
    pub fn add_valid(&mut self, value: f64, settings: &Settings) {
        self.stats.push(value);
        let band = if value < settings.hypo_l2 {
            VERY_LOW
        } else if value < settings.hypo_l1 {
            LOW
        } else if value <= settings.hyper_l1 {
            IN_RANGE
        } else if value <= settings.hyper_l2 {
            HIGH
        } else {
            VERY_HIGH
        };
        if let Some(count) = self.bands.get_mut(band) {
            *count += 1;
        }
    }

    /// Count an invalid reading (sensor error).
    pub fn add_invalid(&mut self) {
        self.invalid += 1;
    }

    /// Count an episode of `kind` whose first reading is in this window.
    pub fn add_episode(&mut self, kind: usize) {
        if let Some(count) = self.episodes.get_mut(kind) {
            *count += 1;
        }
    }

    /// The summary of the window `[start_ms, end_ms)`, given the sensor
    /// interval when it closed; `None` without valid readings.
    pub fn summary(&self, sensor: &str, start_ms: i64, end_ms: i64, interval_ms: i64) -> Option<Summary> {
        let (Some(mean), Some(sd), Some(min), Some(max)) =
            (self.stats.mean(), self.stats.sd(), self.stats.min(), self.stats.max())
        else {
            return None;
        };
        let n = self.stats.count() as f64;
        let percent = |count: u64| 100.0 * count as f64 / n;
        // `mean` is only 0 when `invalid_below` lets 0 through: avoid a NaN.
        let cv = if mean == 0.0 { 0.0 } else { 100.0 * sd / mean };
        let expected = end_ms.saturating_sub(start_ms) as f64 / interval_ms.max(1) as f64;
        let active = (100.0 * n / expected).min(100.0);
        let mut summary = Summary::new(sensor, start_ms, end_ms)
            .metric("n", n)
            .metric("mean", mean)
            .metric("sd", sd)
            .metric("cv", cv)
            .metric("gmi", 3.31 + 0.02392 * mean)
            .metric("min", min)
            .metric("max", max);
        for (name, count) in BAND_NAMES.iter().zip(self.bands) {
            summary = summary.metric(name, percent(count));
        }
        summary = summary
            .metric("active_pct", active)
            .metric("invalid", self.invalid as f64);
        for (name, count) in EPISODE_NAMES.iter().zip(self.episodes) {
            summary = summary.metric(name, count as f64);
        }
        Some(summary)
    }
}
