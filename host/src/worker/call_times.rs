//! How long a plugin's calls take, by call: a fixed-bucket histogram of
//! atomics, written by the worker thread and read by the metrics endpoint.
//! Kept only when the endpoint is configured (`[metrics]`): otherwise the
//! worker reads no clock for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The calls the worker makes into a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `init` (a new instance: the first start, a restart, a recovery).
    Init,
    /// `on-readings`.
    OnReadings,
    /// `on-tick`.
    OnTick,
    /// `snapshot` (contract 0.2: for recovery and at shutdown).
    Snapshot,
}

impl Call {
    /// Every call, in the order they are shown.
    pub const ALL: [Call; 4] = [Call::Init, Call::OnReadings, Call::OnTick, Call::Snapshot];

    /// Its name in the metrics (the WIT function's name, in snake case).
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Init => "init",
            Call::OnReadings => "on_readings",
            Call::OnTick => "on_tick",
            Call::Snapshot => "snapshot",
        }
    }
}

/// Upper bounds of the buckets, in seconds: 10 µs to 5 s (the longest call
/// deadline a device allows is about that), about three per decade.
pub const BUCKETS: [f64; 13] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.1, 1.0, 5.0,
];

/// One call's histogram.
#[derive(Debug, Default)]
struct Histogram {
    /// Calls per bucket (not cumulative), the last for above every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

/// The durations of one plugin's calls, by [`Call`].
#[derive(Debug, Default)]
pub struct CallTimes {
    calls: [Histogram; Call::ALL.len()],
}

/// One call's histogram as read: buckets `(bound, calls longer than the
/// bound before and at most this one)`, the count, and the sum in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct CallHistogram {
    /// `(upper bound in seconds, calls)`, not cumulative, ending with `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Calls.
    pub count: u64,
    /// Their total duration, seconds.
    pub sum_seconds: f64,
}

impl CallTimes {
    /// Count one `call` that took `took`.
    pub fn record(&self, call: Call, took: Duration) {
        let histogram = &self.calls[call as usize];
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS.len());
        histogram.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        histogram.sum_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The histogram of `call` now.
    pub fn read(&self, call: Call) -> CallHistogram {
        let histogram = &self.calls[call as usize];
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&histogram.buckets)
            .map(|(bound, calls)| (bound, calls.load(Ordering::Relaxed)))
            .collect();
        CallHistogram {
            // The buckets make the count (a separate counter, read apart
            // from them, could be ahead of them by a call).
            count: buckets.iter().map(|(_, calls)| calls).sum(),
            buckets,
            sum_seconds: histogram.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_fall_in_buckets_by_their_duration() {
        let times = CallTimes::default();
        times.record(Call::OnReadings, Duration::from_micros(3));
        times.record(Call::OnReadings, Duration::from_micros(40));
        times.record(Call::OnReadings, Duration::from_secs(9));
        times.record(Call::Init, Duration::from_millis(2));
        let read = times.read(Call::OnReadings);
        assert_eq!(read.count, 3);
        assert_eq!(read.buckets.len(), BUCKETS.len() + 1);
        assert_eq!(read.buckets[0], (0.000_01, 1));
        assert_eq!(read.buckets[2], (0.000_05, 1));
        assert_eq!(read.buckets[BUCKETS.len() - 1], (5.0, 0));
        assert_eq!(read.buckets[BUCKETS.len()], (f64::INFINITY, 1));
        assert!((read.sum_seconds - 9.000_043).abs() < 1e-9, "{}", read.sum_seconds);
        assert_eq!(times.read(Call::Init).count, 1);
        assert_eq!(times.read(Call::OnTick).count, 0);
    }
}
