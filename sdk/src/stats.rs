//! Incremental statistics in one pass and constant memory.

/// Count, mean, variance, minimum and maximum of a stream of values, updated
/// one value at a time with Welford's algorithm (numerically stable: no
/// catastrophic cancellation on long streams of similar values).
///
/// ```
/// let mut stats = edgewise_sdk::stats::RunningStats::new();
/// for value in [4.0, 6.0, 8.0] {
///     stats.push(value);
/// }
/// assert_eq!((stats.count(), stats.mean(), stats.min(), stats.max()), (3, Some(6.0), Some(4.0), Some(8.0)));
/// assert_eq!(stats.sd(), Some(2.0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunningStats {
    count: u64,
    mean: f64,
    sum_sq_dev: f64,
    min: f64,
    max: f64,
}

impl RunningStats {
    /// An empty accumulator.
    pub fn new() -> RunningStats {
        RunningStats::default()
    }

    /// Add one value. Non-finite values are the caller's to filter out.
    pub fn push(&mut self, value: f64) {
        self.count += 1;
        if self.count == 1 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.sum_sq_dev += delta * (value - self.mean);
    }

    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mean, or `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// Sample variance (n - 1 denominator); 0 for a single value, `None` when empty.
    pub fn variance(&self) -> Option<f64> {
        match self.count {
            0 => None,
            1 => Some(0.0),
            n => Some(self.sum_sq_dev / (n - 1) as f64),
        }
    }

    /// Sample standard deviation (n - 1 denominator); 0 for a single value.
    pub fn sd(&self) -> Option<f64> {
        self.variance().map(f64::sqrt)
    }

    /// The smallest value, or `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest value, or `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_two_pass_definitions() {
        let values = [153.0, 137.0, 128.0, 121.0, 120.0, 122.0, 118.0];
        let mut stats = RunningStats::new();
        values.iter().for_each(|v| stats.push(*v));
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        assert_eq!(stats.count(), 7);
        assert!((stats.mean().unwrap() - mean).abs() < 1e-12);
        assert!((stats.variance().unwrap() - var).abs() < 1e-9);
        assert_eq!(stats.min(), Some(118.0));
        assert_eq!(stats.max(), Some(153.0));
    }

    #[test]
    fn empty_and_single_value() {
        let mut stats = RunningStats::new();
        assert_eq!(stats.mean(), None);
        assert_eq!(stats.sd(), None);
        stats.push(5.0);
        assert_eq!(stats.sd(), Some(0.0));
        assert_eq!(stats.mean(), Some(5.0));
    }

    #[test]
    fn stable_on_large_offsets() {
        let mut stats = RunningStats::new();
        for v in [1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0] {
            stats.push(v);
        }
        assert!((stats.variance().unwrap() - 30.0).abs() < 1e-6);
    }
}
