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
use crate::input_log::Input;
use crate::outbox::{LoggedInput, PluginJournal, SharedOutbox, WriterHandle};
use crate::runtime::Snapshot;
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
    /// The outbox, to read the plugin's journal from at start.
    pub outbox: SharedOutbox,
    /// Whether inputs are logged (off: a restart resumes from the last saved
    /// state only; for measuring what the log costs).
    pub input_log: bool,
    /// The host clock: the time stamp of the host's own alerts.
    pub clock: Clock,
    /// Restart, backoff and quarantine rules.
    pub policy: SupervisorPolicy,
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

/// Where a plugin that takes snapshots starts: its saved state and the
/// inputs logged after it, without those set aside. Not all the inputs since
/// (a gap, a damaged row, too many): a fresh start, said loudly when the
/// plugin starts.
fn resumed(plugin: &str, journal: &PluginJournal) -> recovery::Recovery {
    let start = journal.state.as_ref().map(|state| recovery::Start {
        snapshot: Snapshot {
            schema: state.schema,
            data: state.data.clone(),
        },
        position: state.position,
        next_seq: state.next_seq,
    });
    let after = start.as_ref().map_or(0, |start| start.position);
    let since = journal.inputs.as_ref().and_then(|inputs| {
        let mut kept = Vec::with_capacity(inputs.len());
        for (expected, logged) in (after + 1..).zip(inputs) {
            let input = match logged_input(logged, expected) {
                Ok(input) => input,
                Err(why) => {
                    tracing::error!(%plugin, position = expected, "The input log cannot be given again: {why}");
                    return None;
                }
            };
            if journal.set_aside.contains(&(expected, None)) {
                continue;
            }
            kept.push(recovery::Kept {
                position: expected,
                reading: None,
                input: without_set_aside(input, expected, &journal.set_aside),
                failures: 0,
            });
        }
        Some(kept)
    });
    recovery::Recovery::resumed(start, since)
}

/// The input logged at `expected`, or why it cannot be given again.
fn logged_input(logged: &LoggedInput, expected: u64) -> Result<Input, String> {
    if logged.position != expected {
        return Err(format!("input {expected} is missing (the next is {})", logged.position));
    }
    let data = logged
        .data
        .as_deref()
        .ok_or_else(|| format!("input {expected} does not open (damaged)"))?;
    Input::decode(data).map_err(|error| format!("input {expected}: {error}"))
}

/// `input` without its readings set aside (a batch was split by an earlier
/// recovery, and one of its readings set aside alone).
fn without_set_aside(input: Input, position: u64, set_aside: &std::collections::BTreeSet<(u64, Option<u32>)>) -> Input {
    match input {
        Input::Readings {
            now_ms,
            readings,
            sources,
        } if set_aside
            .range((position, Some(0))..=(position, Some(u32::MAX)))
            .next()
            .is_some() =>
        {
            let keep = |index: usize| !set_aside.contains(&(position, Some(index as u32)));
            let sources = if sources.len() == readings.len() {
                sources
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| keep(*i))
                    .map(|(_, s)| s)
                    .collect()
            } else {
                sources
            };
            let readings = readings
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep(*i))
                .map(|(_, r)| r)
                .collect();
            Input::Readings {
                now_ms,
                readings,
                sources,
            }
        }
        input => input,
    }
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
        let plugin = setup.provenance.plugin.clone();
        let journal = context
            .outbox
            .lock()
            .map_err(|_| crate::outbox::OutboxError::Poisoned)
            .and_then(|mut outbox| outbox.plugin_journal(&plugin, recovery::KEPT_AT_MOST))
            .map_err(std::io::Error::other)?;
        let (queue, receiver) = mpsc::channel(queue_capacity);
        let stats = Arc::new(PluginStats::default());
        if let Ok(mut health) = stats.health.lock() {
            health.state = Health::Running.name();
        }
        let supervisor = Supervisor::new(context.policy.clone());
        let stopping = Arc::new(AtomicBool::new(false));
        let drain_until = Arc::new(OnceLock::new());
        let name = format!("plugin-{plugin}");
        let mut seen = thread::Seen::default();
        for logged in &journal.recent {
            if let Some(Ok(Input::Readings { sources, .. })) = logged.data.as_deref().map(Input::decode) {
                seen.insert(&sources);
            }
        }
        let recovery = takes_snapshots(&setup.compiled).then(|| resumed(&plugin, &journal));
        let emitter = Emitter::new(
            setup.provenance,
            &context.subjects,
            &journal,
            context.local.clone(),
            context.handle.clone(),
            context.writer.clone(),
            stats.clone(),
        );
        let mut state = PluginThread {
            hold: Hold::new(context.policy.buffer_readings, stats.clone()),
            recovery,
            // Without the input log the saved state may be ahead of it.
            position: journal
                .last_position
                .max(journal.state.as_ref().map_or(0, |state| state.position)),
            pinned: Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
            seen,
            unreadable_state: journal.state_unreadable.clone(),
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
