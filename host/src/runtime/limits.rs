//! Resource limits for one plugin instance, and the errors raised when a
//! plugin exceeds them.

use std::time::Duration;

/// Limits applied to one plugin instance. The defaults suit a CGM-class
/// plugin on a small edge device; operators override them per plugin.
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
    /// Log bytes one call may write; beyond it lines are dropped and counted.
    pub max_log_bytes_per_call: usize,
    /// Largest value `state-set` accepts, and the total state size, in bytes.
    pub max_state_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_memory_bytes: 64 << 20,
            call_deadline: Duration::from_secs(1),
            max_outputs_per_call: 10_000,
            max_log_bytes_per_call: 64 << 10,
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
    /// State beyond [`Limits::max_state_bytes`].
    #[error("exceeded its state limit of {0} bytes")]
    State(usize),
}
