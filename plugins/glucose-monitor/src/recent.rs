//! The recent valid readings of a sensor and the least-squares trends over them.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

use edgewise_sdk::trend::{Trend, least_squares};

use crate::config::Settings;

/// The slots of time (from the epoch) that keep one point each. CGMs read
/// every 1 to 15 minutes; a sensor read every millisecond (someone
/// publishing on the bus) would otherwise keep 1.2 million points in 20
/// minutes, each reading fitting a line through all of them: calls past
/// their deadline, snapshots past the state limit. With it, at most 241
/// points in the 20 minutes, a line through them still.
const SLOT_MS: i64 = 5_000;

/// Valid in-order `(timestamp_ms, value)` points of the last `span_ms`
/// (inclusive) relative to the newest, oldest first.
///
/// A plain deque rather than `edgewise_sdk::window::TimeWindow`: the fit
/// needs a `Clone` iterator over a suffix of the points, which `TimeWindow`
/// does not expose.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recent {
    span_ms: i64,
    points: VecDeque<(i64, f64)>,
}

impl Recent {
    /// Keep enough history for both the urgent-low-soon and the rate fits.
    pub fn new(settings: &Settings) -> Recent {
        Recent {
            span_ms: settings.trend_window_ms.max(settings.rate_window_ms),
            points: VecDeque::new(),
        }
    }

    /// Add the newest point (callers only push in timestamp order) and evict
    /// what fell out of the span. A point in the same [`SLOT_MS`] slot of
    /// time as the newest kept one takes its place: the span keeps at most
    /// one point per slot, the latest of it, whatever the rate.
    pub fn push(&mut self, timestamp_ms: i64, value: f64) {
        let slot = |t: i64| t.div_euclid(SLOT_MS);
        match self.points.back_mut() {
            Some(newest) if slot(newest.0) == slot(timestamp_ms) => *newest = (timestamp_ms, value),
            _ => self.points.push_back((timestamp_ms, value)),
        }
        let oldest_kept = timestamp_ms.saturating_sub(self.span_ms);
        while self.points.front().is_some_and(|&(t, _)| t < oldest_kept) {
            self.points.pop_front();
        }
    }

    /// The newest timestamp and the index of the oldest point of the last
    /// `window_ms` (inclusive).
    fn suffix(&self, window_ms: i64) -> Option<(i64, usize)> {
        let &(newest, _) = self.points.back()?;
        let cutoff = newest.saturating_sub(window_ms);
        Some((newest, self.points.partition_point(|&(t, _)| t < cutoff)))
    }

    /// Least-squares line through the points from index `first` on.
    fn fit(&self, first: usize) -> Option<Trend> {
        least_squares(self.points.range(first..).copied())
    }

    /// The value the `trend_window` fit predicts `urgent_low_soon_horizon`
    /// after the newest reading; `None` with too few readings or too short a span.
    pub fn predicted(&self, settings: &Settings) -> Option<f64> {
        let (newest, first) = self.suffix(settings.trend_window_ms)?;
        let &(oldest, _) = self.points.get(first)?;
        let count = self.points.len().saturating_sub(first);
        if count < settings.trend_min_readings || newest.saturating_sub(oldest) < settings.trend_min_span_ms {
            return None;
        }
        let trend = self.fit(first)?;
        Some(trend.predict(newest.saturating_add(settings.urgent_low_soon_horizon_ms)))
    }

    /// The `rate_window` slope in mg/dL per minute; `None` with too few readings.
    pub fn rate(&self, settings: &Settings) -> Option<f64> {
        let (_, first) = self.suffix(settings.rate_window_ms)?;
        if self.points.len().saturating_sub(first) < settings.rate_min_readings {
            return None;
        }
        Some(self.fit(first)?.per_minute)
    }
}
