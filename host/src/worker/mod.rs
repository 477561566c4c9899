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

pub mod call_times;
mod hold;
mod output;
mod recovery;
mod stats;
pub mod supervisor;
mod swap;
mod thread;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::bus::ingest::{Batch, ReadingsQueue};
use crate::bus::{LocalBus, Subjects};
use crate::clock::Clock;
use crate::envelope::Provenance;
use crate::input_log::Input;
use crate::outbox::{LoggedInput, PluginJournal, SharedOutbox, WriterHandle};
use crate::runtime::Snapshot;
use crate::runtime::{CompiledPlugin, Limits, Runtime};
use call_times::CallTimes;
use hold::Hold;
use output::Emitter;
pub use stats::{HealthReport, PluginStats};
use supervisor::Supervisor;
pub use supervisor::SupervisorPolicy;
pub use swap::{DeployEvent, INPUT_WAIT, InputCheck, Outcome, ProbationSetup, ROLLED_BACK, Swap};
use thread::PluginThread;

/// The state of a plugin whose instance is being built: its `init` (or the
/// recovery of its saved state, the inputs since given again) is under
/// way, at start and after each backoff; it takes no readings yet.
pub const STARTING: &str = "starting";

/// The code of the alert the host raises when a plugin fails.
pub const DEGRADED: &str = "plugin-degraded";

/// The most inputs after its saved state a worker reads from its journal at
/// start ([`Worker::start`]): what the outbox checks when it opens
/// ([`crate::outbox::reset::open_outbox`]).
pub const INPUTS_READ_AT_START: usize = recovery::PROBATION_KEPT;

/// The code of the host's alert about an input set aside: it made the plugin
/// fail again while the host recovered the plugin's state.
pub const SET_ASIDE: &str = "input-set-aside";

/// The code of the host's alert about outputs of a plugin with problems
/// (`output_check`): sent on as made, each naming its problems.
pub const OUTPUT_FLAGGED: &str = "plugin-output-flagged";

/// Work for a plugin.
#[derive(Debug)]
pub enum Work {
    /// A batch of readings from ingest.
    Readings(Batch),
    /// A clock tick.
    Tick(i64),
    /// A new version of the plugin (a deployment): switched to between two
    /// inputs, then on probation.
    Swap(Box<Swap>),
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
    /// The local bus, for alerts (never waited on for long).
    pub local: LocalBus,
    /// The async runtime, to publish from this thread.
    pub handle: tokio::runtime::Handle,
    /// The outbox writer (group commit).
    pub writer: WriterHandle,
    /// The outbox, to read the plugin's journal from at start.
    pub outbox: SharedOutbox,
    /// Whether inputs are logged (off: a restart resumes from the last saved
    /// state only; for measuring what the log costs).
    pub input_log: bool,
    /// Whether the plugin's messages may be delivered again (the JetStream
    /// source): the latest logged inputs are then read back at start, to
    /// recognise them.
    pub redelivery: bool,
    /// The host clock: the time stamp of the host's own alerts.
    pub clock: Clock,
    /// Restart, backoff and quarantine rules.
    pub policy: SupervisorPolicy,
    /// Whether the duration of every plugin call is measured (for the
    /// metrics endpoint, `[metrics]`; off, no clock is read for it).
    pub time_calls: bool,
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
    /// For a plugin deployed to a running device: its probation (a failure
    /// within it stops the plugin, reported; `accept` is then `None`, the
    /// probation's runs once it is healthy).
    pub probation: Option<ProbationSetup>,
}

/// A running plugin worker.
pub struct Worker {
    /// Its queue.
    pub queue: mpsc::Sender<Work>,
    /// The same queue as ingest fills it: bounded in readings.
    pub readings: ReadingsQueue<Work>,
    /// Its counters.
    pub stats: Arc<PluginStats>,
    stopping: Arc<AtomicBool>,
    drain_until: Arc<OnceLock<Instant>>,
    thread: JoinHandle<()>,
}

/// Where a plugin that takes snapshots starts: its saved state and the
/// inputs logged after it, without those set aside; and what of the log
/// cannot be given again (a damaged or missing row: skipped, said loudly
/// when the plugin starts). More inputs than recovery keeps: a fresh start,
/// said loudly too.
fn resumed(journal: &PluginJournal) -> (recovery::Recovery, Vec<String>) {
    let start = journal.state.as_ref().map(|state| recovery::Start {
        snapshot: Snapshot {
            schema: state.schema,
            data: state.data.clone(),
        },
        position: state.position,
        next_seq: state.next_seq,
    });
    let mut skipped = Vec::new();
    let since = journal.inputs.as_ref().map(|inputs| {
        let mut expected = start.as_ref().map_or(0, |start| start.position) + 1;
        let mut kept = Vec::with_capacity(inputs.len());
        for logged in inputs {
            if logged.position > expected {
                skipped.push(format!(
                    "inputs {expected} to {} of the log are missing",
                    logged.position - 1
                ));
            }
            expected = logged.position + 1;
            let input = match logged_input(logged) {
                Ok(input) => input,
                Err(why) => {
                    skipped.push(why);
                    continue;
                }
            };
            if journal.set_aside.contains(&(logged.position, None)) {
                continue;
            }
            kept.extend(without_set_aside(input, logged.position, &journal.set_aside));
        }
        kept
    });
    (recovery::Recovery::resumed(start, since), skipped)
}

/// The input a logged row holds, or why it cannot be given again.
fn logged_input(logged: &LoggedInput) -> Result<Input, String> {
    let position = logged.position;
    let data = logged
        .data
        .as_deref()
        .ok_or_else(|| format!("input {position} of the log does not open (damaged, or not this device's)"))?;
    Input::decode(data).map_err(|error| format!("input {position} of the log: {error}"))
}

/// `input` at `position`, to give again: whole, or, if readings of it were
/// set aside (a recovery split it), its other readings one by one, each
/// under its index in the logged batch (what a later set-aside names).
fn without_set_aside(
    input: Input,
    position: u64,
    set_aside: &std::collections::BTreeSet<(u64, Option<u32>)>,
) -> Vec<recovery::Kept> {
    let split = set_aside
        .range((position, Some(0))..=(position, Some(u32::MAX)))
        .next()
        .is_some();
    match input {
        Input::Readings {
            now_ms,
            readings,
            sources,
        } if split => readings
            .into_iter()
            .enumerate()
            .filter(|(index, _)| !set_aside.contains(&(position, Some(*index as u32))))
            .map(|(index, reading)| recovery::Kept {
                position,
                reading: Some(index as u32),
                input: Input::Readings {
                    now_ms,
                    readings: vec![reading],
                    sources: sources.get(index).map(|s| vec![*s]).unwrap_or_default(),
                },
                failures: 0,
            })
            .collect(),
        input => vec![recovery::Kept {
            position,
            reading: None,
            input,
            failures: 0,
        }],
    }
}

/// Whether the worker keeps what recovering `plugin`'s state needs: a 0.2
/// plugin whose manifest declares snapshot schemas (or a plain component,
/// whose own `init` decides what it takes).
pub(super) fn takes_snapshots(plugin: &CompiledPlugin) -> bool {
    plugin.world() == crate::runtime::World::V0_2
        && *plugin.snapshot_schemas() != crate::runtime::SnapshotSchemas::Undeclared
}

impl Worker {
    /// Start a worker thread whose queue holds at most `queue_capacity`
    /// readings (and as many other items: ticks, swaps).
    pub fn start(context: WorkerContext, setup: PluginSetup, queue_capacity: usize) -> std::io::Result<Worker> {
        let plugin = setup.provenance.plugin.clone();
        let journal = context
            .outbox
            .lock()
            .map_err(|_| crate::outbox::OutboxError::Poisoned)
            .and_then(|mut outbox| outbox.plugin_journal(&plugin, INPUTS_READ_AT_START, context.redelivery))
            .map_err(std::io::Error::other)?;
        // Every batch has a reading: the channel never fills before the
        // readings' room does (ticks, sent with `try_send`, may find it full).
        let (queue, receiver) = mpsc::channel(queue_capacity);
        let stats = Arc::new(PluginStats {
            call_times: context.time_calls.then(CallTimes::default),
            ..PluginStats::default()
        });
        let readings = ReadingsQueue::new(queue.clone(), queue_capacity, stats.readings_dropped.clone());
        if let Ok(mut health) = stats.health.lock() {
            health.state = STARTING;
        }
        let supervisor = Supervisor::new(context.policy.clone());
        let stopping = Arc::new(AtomicBool::new(false));
        let drain_until = Arc::new(OnceLock::new());
        let name = format!("plugin-{plugin}");
        let mut seen = thread::Seen::default();
        let logged_inputs = Arc::new(AtomicBool::new(true));
        // Oldest first: past what `Seen` keeps, the oldest go.
        for logged in journal.recent.iter().rev() {
            if let Some(Ok(Input::Readings { sources, .. })) = logged.data.as_deref().map(Input::decode) {
                seen.insert(&sources, &logged_inputs);
            }
        }
        let (recovery, skipped_inputs) = match takes_snapshots(&setup.compiled) {
            true => {
                let (recovery, skipped) = resumed(&journal);
                (Some(recovery), skipped)
            }
            false => (None, Vec::new()),
        };
        let emitter = Emitter::new(
            setup.provenance,
            &context.subjects,
            &journal,
            context.local.clone(),
            context.handle.clone(),
            // Its own budget of bytes queued for the writer: a plugin making
            // its largest outputs as fast as it may waits for the writer
            // alone; the others' outputs never queue behind gigabytes of it.
            context.writer.with_budget(crate::outbox::PRODUCER_QUEUED_MAX_BYTES),
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
            skipped_inputs,
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
            flagged: Default::default(),
            shown_state: STARTING,
            stopping: stopping.clone(),
            drain_until: drain_until.clone(),
            probation: setup.probation.map(swap::Probation::first),
            promotions: std::collections::VecDeque::new(),
            retired: false,
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
            readings,
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
        drop(self.readings);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reading;
    use crate::outbox::SavedState;

    fn batch(values: &[f64]) -> Input {
        Input::Readings {
            now_ms: 5,
            readings: values
                .iter()
                .map(|&value| Reading {
                    sensor: "s".to_owned(),
                    timestamp_ms: value as i64,
                    value,
                    unit: String::new(),
                })
                .collect(),
            sources: vec![],
        }
    }

    fn logged(position: u64, input: Option<&Input>) -> LoggedInput {
        LoggedInput {
            position,
            created_ms: 0,
            data: input.map(Input::encode),
        }
    }

    #[test]
    fn resuming_skips_what_cannot_be_given_again_and_what_was_set_aside() {
        let two = batch(&[1.0, 2.0]);
        let journal = PluginJournal {
            state: Some(SavedState {
                position: 2,
                next_seq: 9,
                schema: 1,
                data: vec![],
            }),
            inputs: Some(vec![
                logged(3, Some(&Input::Tick(3))),
                logged(4, None), // damaged
                // 5 missing
                logged(6, Some(&two)),
                logged(7, Some(&two)),
                logged(8, Some(&batch(&[1.0, 2.0, 3.0]))),
            ]),
            set_aside: [(7, None), (8, Some(1))].into_iter().collect(),
            ..PluginJournal::default()
        };
        let (mut recovery, skipped) = resumed(&journal);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(
            skipped[0].contains("input 4") && skipped[0].contains("does not open"),
            "{skipped:?}"
        );
        assert!(
            skipped[1].contains("inputs 5 to 5") && skipped[1].contains("missing"),
            "{skipped:?}"
        );
        let (start, next_seq, since) = recovery.plan().unwrap();
        assert_eq!((start.unwrap().position, next_seq), (2, 9));
        let kept: Vec<(u64, Option<u32>, usize)> = since
            .iter()
            .map(|k| (k.position, k.reading, k.input.readings()))
            .collect();
        assert_eq!(
            kept,
            [(3, None, 0), (6, None, 2), (8, Some(0), 1), (8, Some(2), 1)],
            "7 set aside; of 8, readings 0 and 2 alone under their indices in the log (1 set aside)"
        );

        // More than recovery keeps: not resumed (a fresh start, said loudly).
        let too_many = PluginJournal {
            inputs: None,
            ..journal
        };
        assert!(resumed(&too_many).0.plan().is_none());
    }
}
