//! The counters and health of one plugin, written by its worker thread and
//! read by the status.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::call_times::CallTimes;

/// Counters of one plugin, shared with the status responder.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Readings delivered to the plugin.
    pub readings_in: AtomicU64,
    /// Alerts emitted, i.e. durable in the outbox (the host's
    /// `plugin-degraded` alerts included).
    pub alerts_out: AtomicU64,
    /// Summaries emitted, i.e. durable in the outbox.
    pub summaries_out: AtomicU64,
    /// Failed calls and failed starts.
    pub errors: AtomicU64,
    /// Instances rebuilt after a failure.
    pub restarts: AtomicU64,
    /// Times the plugin was put in quarantine.
    pub quarantines: AtomicU64,
    /// Readings held while the plugin is down (now).
    pub readings_held: AtomicU64,
    /// Readings dropped because the hold buffer was full (or the host
    /// stopped while the plugin was quarantined), or because its queue was
    /// full (core NATS ingest, counting through its own handle).
    pub readings_dropped: Arc<AtomicU64>,
    /// Log lines dropped by the log budget.
    pub logs_dropped: AtomicU64,
    /// Wakes a 0.2 plugin asked for sooner than a second after its last
    /// tick, each deferred to that second.
    pub wakes_deferred: AtomicU64,
    /// Outputs that could not be written to the outbox (not counted in
    /// `alerts_out` or `summaries_out`).
    pub outbox_failures: AtomicU64,
    /// Recoveries: new instances started from the last snapshot and given
    /// the inputs since again (contract 0.2 plugins with snapshots).
    pub recoveries: AtomicU64,
    /// Inputs set aside: each made the plugin fail twice (reported by an
    /// `input-set-aside` alert) and is never given again.
    pub inputs_set_aside: AtomicU64,
    /// Snapshots the host asked for and did not get (refused, too large, a
    /// failure of the plugin).
    pub snapshot_failures: AtomicU64,
    /// Snapshots saved in the journal (committed, with every output made
    /// before them): a recovery starts from the last one.
    pub snapshots_saved: AtomicU64,
    /// Restarts that could not keep the plugin's state (no snapshot to
    /// start from, or one it refused): the plugin started afresh.
    pub state_lost: AtomicU64,
    /// Outputs with problems (`output_check`): sent on as made, each
    /// naming its problems in its envelope.
    pub outputs_flagged: AtomicU64,
    /// Steps of the worker: each turn of its loop, and the start and end of
    /// each call into the plugin (one ends within its deadline). The service
    /// manager's watchdog sees a worker stuck when work waits in its queue
    /// and this stands still.
    pub steps: AtomicU64,
    /// State, failures by reason, last failure.
    pub health: Mutex<HealthReport>,
    /// The version and code digest that run now, once the worker has said
    /// (a deployment changes them).
    pub running: Mutex<Option<(String, String)>>,
    /// How long its calls take, when the metrics endpoint is configured.
    pub call_times: Option<CallTimes>,
}

impl PluginStats {
    /// The counters of a plugin refused at start: state `refused`, and why.
    pub fn refused(reason: &str) -> PluginStats {
        let stats = PluginStats::default();
        if let Ok(mut health) = stats.health.lock() {
            health.state = "refused";
            health.last_error = Some(reason.to_owned());
        }
        stats
    }

    /// The counters of a plugin whose code is compiling after start-up:
    /// state `compiling` (it joins once compiled, or is refused).
    pub fn compiling() -> PluginStats {
        let stats = PluginStats::default();
        if let Ok(mut health) = stats.health.lock() {
            health.state = "compiling";
        }
        stats
    }
}

/// What the status shows of a plugin's health.
#[derive(Debug, Clone, Default)]
pub struct HealthReport {
    /// `starting` (its `init`, or the recovery of its state, under way),
    /// `running`, `restarting`, `quarantined`, `refused`, `compiling` or
    /// `stopped` (a new plugin whose first version failed its probation).
    pub state: &'static str,
    /// Failures counted by reason (`deadline`, `trap`, `memory-limit`...).
    pub failures: BTreeMap<&'static str, u64>,
    /// The last failure, as reported.
    pub last_error: Option<String>,
}
