//! One plugin on its own thread: it owns the wasmtime instance, takes work
//! from a bounded queue, publishes alerts on the local bus at once, and hands
//! every output to the outbox writer (group commit); an output counts as
//! emitted once the writer has made it durable. The worker does not wait for
//! the disk before its next work: acknowledgements of JetStream input wait
//! for the commit instead. When the plugin fails it supervises it.
//!
//! Files: `thread` (the loop: calls and supervision), `supervisor` (the pure
//! backoff/quarantine state machine), `hold` (work held while the plugin is
//! down), `recovery` (the last snapshot and the inputs since: a new instance
//! after a failure keeps the plugin's state), `output` (where outputs go),
//! `stats` (what the status shows).

mod hold;
mod output;
mod recovery;
mod stats;
pub mod supervisor;
mod thread;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::bus::Subjects;
use crate::bus::ingest::Batch;
use crate::clock::Clock;
use crate::envelope::Provenance;
use crate::outbox::{Sequence, WriterHandle};
use crate::runtime::{CompiledPlugin, Limits, Runtime};
use hold::Hold;
use output::Emitter;
pub use stats::{HealthReport, PluginStats};
pub use supervisor::SupervisorPolicy;
use supervisor::{Health, Supervisor};
use thread::PluginThread;

/// The code of the alert the host raises when a plugin fails.
pub const DEGRADED: &str = "plugin-degraded";

/// The code of the host's alert about an input set aside: it made the plugin
/// fail again while the host recovered the plugin's state.
pub const SET_ASIDE: &str = "input-set-aside";

/// Work for a plugin.
#[derive(Debug)]
pub enum Work {
    /// A batch of readings from ingest.
    Readings(Batch),
    /// A clock tick.
    Tick(i64),
}

impl From<Batch> for Work {
    fn from(batch: Batch) -> Work {
        Work::Readings(batch)
    }
}

/// What a worker needs besides its plugin.
pub struct WorkerContext {
    /// The runtime (shared engine).
    pub runtime: Arc<Runtime>,
    /// Subjects of this device.
    pub subjects: Subjects,
    /// The local bus, for alerts.
    pub local: async_nats::Client,
    /// The async runtime, to publish from this thread.
    pub handle: tokio::runtime::Handle,
    /// The outbox writer (group commit).
    pub writer: WriterHandle,
    /// Where sequence numbers are kept.
    pub data_dir: std::path::PathBuf,
    /// The host clock: the time stamp of the host's own alerts.
    pub clock: Clock,
    /// Restart, backoff and quarantine rules.
    pub policy: SupervisorPolicy,
    /// Where plugins' snapshots are kept across restarts of the host
    /// (`None`: nowhere, a plugin starts afresh each time).
    pub snapshots: Option<crate::snapshots::SnapshotFiles>,
}

/// Records the plugin's version for anti-rollback; run once, after its
/// first `init` that succeeded.
pub type Accept = Box<dyn FnOnce() -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send>;

/// The plugin, its configuration and limits. Its first instance is built
/// and initialised on the worker's own thread, under supervision.
pub struct PluginSetup {
    /// The compiled component, to build new instances from.
    pub compiled: Arc<CompiledPlugin>,
    /// Who the outputs are from.
    pub provenance: Provenance,
    /// Configuration for `init`.
    pub config: Vec<(String, String)>,
    /// Limits of every instance.
    pub limits: Limits,
    /// Run after the first `init` that succeeds (anti-rollback record).
    pub accept: Option<Accept>,
}

/// A running plugin worker.
pub struct Worker {
    /// Its queue.
    pub queue: mpsc::Sender<Work>,
    /// Its counters.
    pub stats: Arc<PluginStats>,
    stopping: Arc<AtomicBool>,
    drain_until: Arc<OnceLock<Instant>>,
    thread: JoinHandle<()>,
}

/// Whether the worker keeps what recovering `plugin`'s state needs: a 0.2
/// plugin whose manifest declares snapshot schemas (or a plain component,
/// whose own `init` decides what it takes).
fn takes_snapshots(plugin: &CompiledPlugin) -> bool {
    plugin.world() == crate::runtime::World::V0_2
        && *plugin.snapshot_schemas() != crate::runtime::SnapshotSchemas::Undeclared
}

impl Worker {
    /// Start a worker thread.
    pub fn start(context: WorkerContext, setup: PluginSetup, queue_capacity: usize) -> std::io::Result<Worker> {
        let sequence = Sequence::open(&context.data_dir, &setup.provenance.plugin)?;
        let (queue, receiver) = mpsc::channel(queue_capacity);
        let stats = Arc::new(PluginStats::default());
        if let Ok(mut health) = stats.health.lock() {
            health.state = Health::Running.name();
        }
        let supervisor = Supervisor::new(context.policy.clone());
        let stopping = Arc::new(AtomicBool::new(false));
        let drain_until = Arc::new(OnceLock::new());
        let name = format!("plugin-{}", setup.provenance.plugin);
        let saver = match (&context.snapshots, takes_snapshots(&setup.compiled)) {
            (Some(files), true) => {
                let (stats, plugin) = (stats.clone(), setup.provenance.plugin.clone());
                let failed = move |error: &crate::snapshots::SnapshotFileError| {
                    stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%plugin, error = %crate::error_chain(error), "Cannot save the plugin's state");
                };
                Some(crate::snapshots::SnapshotSaver::start(
                    files.clone(),
                    setup.provenance.plugin.clone(),
                    failed,
                )?)
            }
            _ => None,
        };
        let emitter = Emitter::new(
            setup.provenance,
            &context.subjects,
            sequence,
            context.local.clone(),
            context.handle.clone(),
            context.writer.clone(),
            stats.clone(),
        );
        let mut state = PluginThread {
            hold: Hold::new(context.policy.buffer_readings, stats.clone()),
            recovery: takes_snapshots(&setup.compiled).then(recovery::Recovery::new),
            saver,
            context,
            emitter,
            plugin: setup.compiled,
            instance: None,
            accept: setup.accept,
            config: setup.config,
            limits: setup.limits,
            stats: stats.clone(),
            supervisor,
            logs_dropped_before: 0,
            wakes_deferred_before: 0,
            shown_state: Health::Running.name(),
            stopping: stopping.clone(),
            drain_until: drain_until.clone(),
        };
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            // `init` runs here, not in the async start-up: a trap, panic,
            // hang or `Err` is this plugin's failure, supervised like any
            // other, and never blocks the runtime or the other plugins.
            state.start_first();
            state.run(receiver)
        })?;
        Ok(Worker {
            queue,
            stats,
            stopping,
            drain_until,
            thread,
        })
    }

    /// Tell the worker the host is stopping: it finishes its queue until
    /// `drain_until`, then gives up what is left, counted as dropped.
    /// Drops this handle's queue sender.
    pub fn stop(self, drain_until: Instant) -> StoppingWorker {
        let _ = self.drain_until.set(drain_until);
        self.stopping.store(true, Ordering::Relaxed);
        drop(self.queue);
        StoppingWorker { thread: self.thread }
    }
}

/// A worker told to stop ([`Worker::stop`]).
pub struct StoppingWorker {
    thread: JoinHandle<()>,
}

impl StoppingWorker {
    /// Whether its thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Wait for its thread (call once [`StoppingWorker::is_finished`]).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("a plugin worker thread panicked");
        }
    }
}
