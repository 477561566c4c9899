//! Resource limits for one plugin instance, and the errors raised when a
//! plugin exceeds them.

use std::time::{Duration, Instant};

/// Limits applied to one plugin instance. The defaults suit a CGM-class
/// plugin on a small edge device; the manifest and then the operator override
/// them per plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory the instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Wall-clock CPU budget for one call (`init`, `on-readings`, `on-tick`),
    /// enforced by epoch interruption: a tight loop cannot hold the host.
    pub call_deadline: Duration,
    /// Alerts plus summaries one call may emit: bounds host memory when a
    /// plugin loops on `emit-alert`.
    pub max_outputs_per_call: usize,
    /// Alerts plus summaries per second of real time, across calls: bounds
    /// what a flooding plugin can push into the outbox. `None`: no rate limit
    /// (replay, where time is virtual and a run is as fast as the CPU).
    pub max_outputs_per_second: Option<usize>,
    /// Largest single output (its strings and metrics), in bytes.
    pub max_output_bytes: usize,
    /// Log bytes per second of real time; beyond it lines are dropped and
    /// counted (a chatty log is not a failure).
    pub max_log_bytes_per_second: usize,
    /// Largest total state (keys plus values) `state-set` accepts, in bytes.
    pub max_state_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_memory_bytes: 64 << 20,
            call_deadline: Duration::from_secs(1),
            max_outputs_per_call: 1_000,
            max_outputs_per_second: Some(5_000),
            max_output_bytes: 64 << 10,
            max_log_bytes_per_second: 64 << 10,
            max_state_bytes: 1 << 20,
        }
    }
}

/// A limit a plugin broke; carried through wasmtime as the trap's cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// `memory.grow` beyond [`Limits::max_memory_bytes`].
    #[error("exceeded its memory limit of {limit} bytes (asked for {requested})")]
    Memory {
        /// The configured limit.
        limit: usize,
        /// The size the plugin tried to grow to.
        requested: usize,
    },
    /// More than [`Limits::max_outputs_per_call`] outputs in one call.
    #[error("exceeded its limit of {0} outputs per call")]
    Outputs(usize),
    /// More than [`Limits::max_outputs_per_second`] outputs in one second.
    #[error("exceeded its limit of {0} outputs per second")]
    OutputRate(usize),
    /// One output larger than [`Limits::max_output_bytes`].
    #[error("emitted an output of {size} bytes, over its limit of {limit}")]
    OutputSize {
        /// The configured limit.
        limit: usize,
        /// The output's size.
        size: usize,
    },
    /// State beyond [`Limits::max_state_bytes`].
    #[error("exceeded its state limit of {0} bytes")]
    State(usize),
}

/// A counter over fixed one-second windows of real time.
#[derive(Debug, Clone)]
pub(crate) struct PerSecond {
    window_start: Instant,
    count: usize,
}

impl PerSecond {
    pub(crate) fn new() -> PerSecond {
        PerSecond {
            window_start: Instant::now(),
            count: 0,
        }
    }

    /// Add `amount` at `now`; the total within the current second.
    pub(crate) fn add(&mut self, amount: usize, now: Instant) -> usize {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(amount);
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_second_counts_reset_each_second() {
        let start = Instant::now();
        let mut counter = PerSecond {
            window_start: start,
            count: 0,
        };
        assert_eq!(counter.add(3, start), 3);
        assert_eq!(counter.add(4, start + Duration::from_millis(999)), 7);
        assert_eq!(counter.add(1, start + Duration::from_millis(1000)), 1);
    }
}
