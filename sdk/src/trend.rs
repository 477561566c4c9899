//! Rate of change by ordinary least squares.

/// A straight line fitted through `(timestamp_ms, value)` points.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Trend {
    /// Slope in value units per minute.
    pub per_minute: f64,
    /// Fitted value at `anchor_ms`.
    pub anchor_value: f64,
    /// The time the fit is anchored at (the newest point).
    pub anchor_ms: i64,
}

impl Trend {
    /// The value the line predicts at `timestamp_ms`.
    pub fn predict(&self, timestamp_ms: i64) -> f64 {
        self.anchor_value + self.per_minute * (timestamp_ms - self.anchor_ms) as f64 / 60_000.0
    }
}

/// Fit a least-squares line through the points. Returns `None` with fewer than
/// two points or when all points share one timestamp (no slope is defined).
///
/// Times are centred before summing, so millisecond epochs lose no precision.
///
/// ```
/// use edgewise_sdk::trend::least_squares;
///
/// // Rising 2 units a minute.
/// let points = [(0, 100.0), (60_000, 102.0), (120_000, 104.0)];
/// let trend = least_squares(points.iter().copied()).unwrap();
/// assert!((trend.per_minute - 2.0).abs() < 1e-9);
/// assert!((trend.predict(180_000) - 106.0).abs() < 1e-9);
/// ```
pub fn least_squares(points: impl Iterator<Item = (i64, f64)> + Clone) -> Option<Trend> {
    let (mut n, mut anchor_ms) = (0usize, i64::MIN);
    let mut first_ms = None;
    for (t, _) in points.clone() {
        n += 1;
        first_ms.get_or_insert(t);
        anchor_ms = anchor_ms.max(t);
    }
    let origin = first_ms?;
    if n < 2 {
        return None;
    }
    // Minutes relative to the first point.
    let minutes = |t: i64| (t - origin) as f64 / 60_000.0;
    let count = n as f64;
    let mean_x = points.clone().map(|(t, _)| minutes(t)).sum::<f64>() / count;
    let mean_y = points.clone().map(|(_, v)| v).sum::<f64>() / count;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, v) in points {
        let dx = minutes(t) - mean_x;
        sxy += dx * (v - mean_y);
        sxx += dx * dx;
    }
    if sxx == 0.0 {
        return None;
    }
    let per_minute = sxy / sxx;
    Some(Trend {
        per_minute,
        anchor_value: mean_y + per_minute * (minutes(anchor_ms) - mean_x),
        anchor_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_line() {
        // 2 mg/dL per minute, sampled every 5 minutes.
        let points = [(0, 100.0), (300_000, 110.0), (600_000, 120.0)];
        let trend = least_squares(points.iter().copied()).unwrap();
        assert!((trend.per_minute - 2.0).abs() < 1e-12);
        assert!((trend.anchor_value - 120.0).abs() < 1e-9);
        assert!((trend.predict(600_000 + 20 * 60_000) - 160.0).abs() < 1e-9);
    }

    #[test]
    fn noisy_points_give_the_ols_slope() {
        // x = 0, 5, 10 min; y = 100, 104, 102: slope = 10 / 50 = 0.2 per minute.
        let points = [(0, 100.0), (300_000, 104.0), (600_000, 102.0)];
        let trend = least_squares(points.iter().copied()).unwrap();
        assert!((trend.per_minute - 0.2).abs() < 1e-12);
    }

    #[test]
    fn undefined_slope() {
        assert_eq!(least_squares([(5, 1.0)].iter().copied()), None);
        assert_eq!(least_squares([(5, 1.0), (5, 2.0)].iter().copied()), None);
        assert_eq!(least_squares(std::iter::empty()), None);
    }

    #[test]
    fn epoch_timestamps_keep_precision() {
        let base = 1_434_300_000_000;
        let points = [(base, 100.0), (base + 300_000, 85.0), (base + 600_000, 70.0)];
        let trend = least_squares(points.iter().copied()).unwrap();
        assert!((trend.per_minute + 3.0).abs() < 1e-9);
    }
}
