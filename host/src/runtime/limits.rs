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
    /// Alerts plus summaries per second of real time, across calls, beyond
    /// [`OUTPUTS_PER_READING`] for each reading given in that second: bounds
    /// what a flooding plugin can push into the outbox, while outputs that
    /// keep pace with the readings (a backlog taken at once) are never a
    /// flood. `None`: no rate limit (replay, where time is virtual and a run
    /// is as fast as the CPU).
    pub max_outputs_per_second: Option<usize>,
    /// Largest single output (its strings and metrics), in bytes.
    pub max_output_bytes: usize,
    /// Log bytes per second of real time; beyond it lines are dropped and
    /// counted (a chatty log is not a failure).
    pub max_log_bytes_per_second: usize,
    /// Largest total state (keys plus values) `state-set` accepts (0.1), and
    /// largest snapshot a plugin may hand over or be started from (0.2), in bytes.
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

/// Outputs a plugin may make for each reading it is given, on top of
/// [`Limits::max_outputs_per_second`] in the same second of real time.
///
/// A plugin answers its readings: an alert and its resolution, a summary
/// per window closed, a forecast per horizon (glucose-forecast makes two
/// per reading when asked). When a backlog is taken at once (the JetStream
/// source after an outage, a recovery giving its inputs again), those
/// outputs come as fast as the readings do, far beyond any rate a live
/// sensor makes; they are not a flood, and counting them as one set valid
/// readings aside and quarantined glucose-monitor. A plugin that makes more
/// than this per reading, faster than the limit, is still stopped.
pub const OUTPUTS_PER_READING: usize = 4;

/// A limit a plugin broke; carried through wasmtime as the trap's cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// `memory.grow` beyond [`Limits::max_memory_bytes`].
    #[error("exceeded its memory limit of {limit} bytes (`[limits] memory_mb`; asked for {requested})")]
    Memory {
        /// The configured limit.
        limit: usize,
        /// The size the plugin tried to grow to.
        requested: usize,
    },
    /// More than [`Limits::max_outputs_per_call`] outputs in one call.
    #[error("exceeded its limit of {0} outputs per call (`[limits] outputs_per_call`)")]
    Outputs(usize),
    /// More than [`Limits::max_outputs_per_second`] outputs in one second.
    #[error("exceeded its limit of {0} outputs per second (`[limits] outputs_per_second`)")]
    OutputRate(usize),
    /// One output larger than [`Limits::max_output_bytes`].
    #[error("emitted an output of {size} bytes, over its limit of {limit} (`[limits] output_bytes`)")]
    OutputSize {
        /// The configured limit.
        limit: usize,
        /// The output's size.
        size: usize,
    },
    /// State beyond [`Limits::max_state_bytes`].
    #[error("exceeded its state limit of {0} bytes (`[limits] state_bytes`)")]
    State(usize),
    /// A snapshot (handed over or to start from) beyond
    /// [`Limits::max_state_bytes`]. The instance stays usable.
    #[error("snapshot of {size} bytes, over its state limit of {limit} (`[limits] state_bytes`)")]
    Snapshot {
        /// The configured limit.
        limit: usize,
        /// The snapshot's size.
        size: usize,
    },
    /// More live WASI resources (streams, pollables...) than
    /// [`MAX_WASI_RESOURCES`].
    #[error("exceeded its limit of {0} live WASI resources (streams, pollables)")]
    Resources(usize),
}

/// Live WASI resources (streams, pollables, errors) one instance may hold at
/// once. A plugin needs a handful (its stdio streams, a pollable now and
/// then); the bound keeps a plugin that creates them in a loop from growing
/// host memory (wasmtime's default is a million).
pub const MAX_WASI_RESOURCES: usize = 1024;
/// Largest `get-random-bytes` / `get-insecure-random-bytes` request: the host
/// allocates the buffer before the plugin's memory limit can refuse it, and
/// wasmtime-wasi's default is 64 MiB per call.
pub const MAX_RANDOM_BYTES: u64 = 64 << 10;
/// Core instances, memories and tables one plugin's store may create: a Rust
/// `wasm32-wasip2` component has 4 core instances, 1 memory and 2 tables;
/// other toolchains a few more. wasmtime's defaults (10,000 each) would let
/// one component reserve address space for thousands of memories.
pub const MAX_CORE_INSTANCES: usize = 64;
/// See [`MAX_CORE_INSTANCES`].
pub const MAX_MEMORIES: usize = 8;
/// See [`MAX_CORE_INSTANCES`].
pub const MAX_TABLES: usize = 32;
/// Table elements (function references) over all tables of an instance.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// One limit a plugin asked for (through its manifest) beyond the host's
/// ceiling, and the value it gets instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clamped {
    /// The manifest key (`memory_mb`, `call_deadline_ms`...).
    pub key: &'static str,
    /// What was asked, in the key's unit.
    pub asked: u64,
    /// The ceiling, in the key's unit.
    pub ceiling: u64,
}

impl Limits {
    /// These limits with every value above its ceiling in `ceilings` lowered
    /// to it, and the list of what was lowered (in manifest keys and units).
    pub fn clamp_to(&self, ceilings: &Limits) -> (Limits, Vec<Clamped>) {
        let mut clamped = Vec::new();
        let mut limit = |key: &'static str, unit: u64, value: u64, ceiling: u64| {
            if value > ceiling {
                clamped.push(Clamped {
                    key,
                    asked: value / unit,
                    ceiling: ceiling / unit,
                });
                ceiling
            } else {
                value
            }
        };
        let n = |v: usize| v as u64;
        let back = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let out = Limits {
            max_memory_bytes: back(limit(
                "memory_mb",
                1 << 20,
                n(self.max_memory_bytes),
                n(ceilings.max_memory_bytes),
            )),
            call_deadline: Duration::from_millis(limit(
                "call_deadline_ms",
                1,
                ms(self.call_deadline),
                ms(ceilings.call_deadline),
            )),
            max_outputs_per_call: back(limit(
                "outputs_per_call",
                1,
                n(self.max_outputs_per_call),
                n(ceilings.max_outputs_per_call),
            )),
            max_outputs_per_second: match (self.max_outputs_per_second, ceilings.max_outputs_per_second) {
                (Some(value), Some(ceiling)) => Some(back(limit("outputs_per_second", 1, n(value), n(ceiling)))),
                (None, ceiling) => ceiling,
                (value, None) => value,
            },
            max_output_bytes: back(limit(
                "output_bytes",
                1,
                n(self.max_output_bytes),
                n(ceilings.max_output_bytes),
            )),
            max_log_bytes_per_second: back(limit(
                "log_bytes_per_second",
                1,
                n(self.max_log_bytes_per_second),
                n(ceilings.max_log_bytes_per_second),
            )),
            max_state_bytes: back(limit(
                "state_bytes",
                1,
                n(self.max_state_bytes),
                n(ceilings.max_state_bytes),
            )),
        };
        (out, clamped)
    }

    /// The default host ceilings (`[host_limits]` of the device
    /// configuration): what no manifest can exceed on a small device. Each is
    /// at or above [`Limits::default`], so a plugin that asks for nothing is
    /// never clamped.
    pub fn default_ceilings() -> Limits {
        Limits {
            max_memory_bytes: 256 << 20,
            // Shutdown waits for a running call: this bounds SIGTERM too.
            call_deadline: Duration::from_secs(5),
            max_outputs_per_call: 10_000,
            max_outputs_per_second: Some(50_000),
            // An output is escaped into a JSON envelope (up to 6 bytes per
            // control character): 128 KiB stays below NATS's default 1 MiB
            // max payload even then.
            max_output_bytes: 128 << 10,
            max_log_bytes_per_second: 1 << 20,
            max_state_bytes: 16 << 20,
        }
    }
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

/// Outputs and readings in the current second of real time: the output
/// rate limit's budget is [`Limits::max_outputs_per_second`] plus
/// [`OUTPUTS_PER_READING`] per reading given in the same second.
#[derive(Debug)]
pub(crate) struct OutputRate {
    window_start: Instant,
    outputs: usize,
    readings: usize,
}

impl OutputRate {
    pub(crate) fn new() -> OutputRate {
        OutputRate {
            window_start: Instant::now(),
            outputs: 0,
            readings: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.outputs = 0;
            self.readings = 0;
        }
    }

    /// `count` readings given to the plugin at `now`.
    pub(crate) fn readings(&mut self, count: usize, now: Instant) {
        self.roll(now);
        self.readings = self.readings.saturating_add(count);
    }

    /// One output at `now`: whether it stays within `per_second` and the
    /// allowance of the readings of the current second.
    pub(crate) fn output(&mut self, per_second: usize, now: Instant) -> bool {
        self.roll(now);
        self.outputs = self.outputs.saturating_add(1);
        self.outputs <= per_second.saturating_add(OUTPUTS_PER_READING.saturating_mul(self.readings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_budget_of_a_second_grows_with_the_readings_given_in_it() {
        let start = Instant::now();
        let mut rate = OutputRate::new();
        rate.window_start = start;
        assert!((0..10).all(|_| rate.output(10, start)));
        assert!(!rate.output(10, start), "the 11th output with no reading");
        // 3 readings: 12 more outputs in this second.
        rate.readings(3, start);
        assert!((0..11).all(|_| rate.output(10, start)), "{rate:?}");
        assert!(!rate.output(10, start), "{rate:?}");
        // The next second starts afresh: no allowance carried over.
        let next = start + Duration::from_secs(1);
        assert!((0..10).all(|_| rate.output(10, next)));
        assert!(!rate.output(10, next));
    }

    #[test]
    fn limits_above_a_ceiling_are_lowered_to_it_and_reported() {
        let ceilings = Limits::default_ceilings();
        // The defaults fit under the default ceilings: nothing is clamped.
        assert_eq!(Limits::default().clamp_to(&ceilings), (Limits::default(), Vec::new()));
        let greedy = Limits {
            max_memory_bytes: 1 << 30,
            call_deadline: Duration::from_secs(60),
            max_outputs_per_second: None,
            ..Limits::default()
        };
        let (limits, clamped) = greedy.clamp_to(&ceilings);
        assert_eq!(limits.max_memory_bytes, 256 << 20);
        assert_eq!(limits.call_deadline, Duration::from_secs(5));
        // No rate limit asked (replay): the ceiling's rate applies.
        assert_eq!(limits.max_outputs_per_second, Some(50_000));
        assert_eq!(limits.max_state_bytes, Limits::default().max_state_bytes);
        assert_eq!(
            clamped,
            [
                Clamped {
                    key: "memory_mb",
                    asked: 1024,
                    ceiling: 256
                },
                Clamped {
                    key: "call_deadline_ms",
                    asked: 60_000,
                    ceiling: 5_000
                },
            ]
        );
    }

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
