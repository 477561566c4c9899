//! One plugin on its own thread: it owns the wasmtime instance, takes work
//! from a bounded queue, publishes alerts on the local bus at once, and writes
//! every output to the outbox before it counts as emitted. When the plugin
//! fails it supervises it: `plugin-degraded` alert, a new instance after a
//! backoff, quarantine after repeated failures, readings held meanwhile.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{Notify, mpsc};

use super::clock::Clock;
use super::sequence::Sequence;
use super::subjects::Subjects;
use super::supervisor::{Decision, Health, Supervisor, SupervisorPolicy};
use crate::envelope::{Provenance, to_json_line};
use crate::model::{Alert, Output, Reading, Severity};
use crate::outbox::{Kind, NewEntry, Outbox};
use crate::runtime::{CompiledPlugin, Limits, PluginError, PluginInstance, Runtime};

/// The code of the alert the host raises when a plugin fails.
pub const DEGRADED: &str = "plugin-degraded";

/// Work for a plugin.
#[derive(Debug)]
pub enum Work {
    /// A batch of readings (each sensor's readings in arrival order), and
    /// optionally who to tell once its outputs are in the outbox (JetStream
    /// ingest acknowledges the messages only then).
    Readings(Vec<Reading>, Option<tokio::sync::oneshot::Sender<()>>),
    /// A clock tick.
    Tick(i64),
}

/// Counters of one plugin, shared with the status responder.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Readings delivered to the plugin.
    pub readings_in: AtomicU64,
    /// Alerts emitted (the host's `plugin-degraded` alerts included).
    pub alerts_out: AtomicU64,
    /// Summaries emitted.
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
    /// stopped while the plugin was quarantined).
    pub readings_dropped: AtomicU64,
    /// Log lines dropped by the log budget.
    pub logs_dropped: AtomicU64,
    /// Outputs that could not be written to the outbox.
    pub outbox_failures: AtomicU64,
    /// State, failures by reason, last failure.
    pub health: Mutex<HealthReport>,
}

/// What the status shows of a plugin's health.
#[derive(Debug, Clone, Default)]
pub struct HealthReport {
    /// `running`, `restarting` or `quarantined`.
    pub state: &'static str,
    /// Failures counted by reason (`deadline`, `trap`, `memory-limit`...).
    pub failures: BTreeMap<&'static str, u64>,
    /// The last failure, as reported.
    pub last_error: Option<String>,
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
    /// The outbox.
    pub outbox: Arc<Mutex<Outbox>>,
    /// Woken after each outbox write.
    pub outbox_written: Arc<Notify>,
    /// Where sequence numbers are kept.
    pub data_dir: std::path::PathBuf,
    /// The host clock: the time stamp of the host's own alerts.
    pub clock: Clock,
    /// Restart, backoff and quarantine rules.
    pub policy: SupervisorPolicy,
}

/// The plugin, its configuration and limits, and its first instance.
pub struct PluginSetup {
    /// The compiled component, to build new instances from.
    pub compiled: Arc<CompiledPlugin>,
    /// The first instance, if it started (`init` succeeded); `None` starts
    /// the worker with a failed start under supervision.
    pub instance: Result<PluginInstance, PluginError>,
    /// Who the outputs are from.
    pub provenance: Provenance,
    /// Configuration for `init`.
    pub config: Vec<(String, String)>,
    /// Limits of every instance.
    pub limits: Limits,
}

/// A running plugin worker.
pub struct Worker {
    /// Its queue.
    pub queue: mpsc::Sender<Work>,
    /// Its counters.
    pub stats: Arc<PluginStats>,
    thread: JoinHandle<()>,
}

impl Worker {
    /// Start a worker thread.
    pub fn start(context: WorkerContext, setup: PluginSetup, queue_capacity: usize) -> std::io::Result<Worker> {
        let sequence = Sequence::open(&context.data_dir, &setup.provenance.plugin)?;
        let (queue, receiver) = mpsc::channel(queue_capacity);
        let stats = Arc::new(PluginStats::default());
        let supervisor = Supervisor::new(context.policy.clone());
        let (instance, first_failure) = match setup.instance {
            Ok(instance) => (Some(instance), None),
            Err(error) => (None, Some(error)),
        };
        let mut state = WorkerState {
            context,
            plugin: setup.compiled,
            instance,
            provenance: setup.provenance,
            config: setup.config,
            limits: setup.limits,
            sequence,
            stats: stats.clone(),
            supervisor,
            held: VecDeque::new(),
            held_readings: 0,
            logs_dropped_before: 0,
            shown_state: "",
        };
        state.set_state(Health::Running);
        let name = format!("plugin-{}", state.provenance.plugin);
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            // On this thread: reporting the failure publishes, blocking.
            if let Some(error) = first_failure {
                state.failed(error);
            }
            state.run(receiver)
        })?;
        Ok(Worker { queue, stats, thread })
    }

    /// Wait for the worker to finish its queue (close the queue first by
    /// dropping every sender).
    pub fn join(self) {
        drop(self.queue);
        if self.thread.join().is_err() {
            tracing::error!("a plugin worker thread panicked");
        }
    }
}

/// Work taken from the queue, waiting for the plugin.
enum Held {
    Readings(Vec<Reading>, Option<tokio::sync::oneshot::Sender<()>>),
    Tick(i64),
}

struct WorkerState {
    context: WorkerContext,
    plugin: Arc<CompiledPlugin>,
    instance: Option<PluginInstance>,
    provenance: Provenance,
    config: Vec<(String, String)>,
    limits: Limits,
    sequence: Sequence,
    stats: Arc<PluginStats>,
    supervisor: Supervisor,
    /// Work in arrival order; while the plugin runs, at most one item.
    held: VecDeque<Held>,
    held_readings: usize,
    /// Log lines dropped by instances already discarded.
    logs_dropped_before: u64,
    /// The state last shown in the status.
    shown_state: &'static str,
}

impl WorkerState {
    fn run(&mut self, mut receiver: mpsc::Receiver<Work>) {
        let mut open = true;
        loop {
            let now = Instant::now();
            let health = self.supervisor.health(now);
            self.set_state(health);
            let pause = self.supervisor.wait(now);
            if pause.is_none() && self.instance.is_none() && (open || !self.held.is_empty()) {
                // The pause is over: start a new instance now, not when work
                // comes, so the status tells the truth and quarantine comes
                // when it should.
                self.restart();
                continue;
            }
            if pause.is_none() && !self.held.is_empty() {
                self.run_next();
                continue;
            }
            if !open {
                match (self.held.is_empty(), self.supervisor.health(Instant::now())) {
                    (true, _) => break,
                    (false, Health::Quarantined(_)) => {
                        self.drop_held("the host stopped while the plugin was quarantined");
                        break;
                    }
                    (false, _) => {
                        // Backing off: wait out the pause, then deliver what is held.
                        std::thread::sleep(pause.unwrap_or_default());
                        continue;
                    }
                }
            }
            let received = match pause {
                // Running and nothing held: wait for work (backpressure on ingest).
                None => receiver.blocking_recv(),
                // Down: keep taking work into the bounded hold until the pause ends.
                Some(pause) => {
                    // The timer is made inside `block_on`: it needs the runtime's context.
                    let timed = async { tokio::time::timeout(pause, receiver.recv()).await };
                    match self.context.handle.block_on(timed) {
                        Ok(received) => received,
                        Err(_) => continue,
                    }
                }
            };
            match received {
                Some(Work::Readings(readings, done)) => self.hold(Held::Readings(readings, done)),
                Some(Work::Tick(now_ms)) => self.hold(Held::Tick(now_ms)),
                None => open = false,
            }
        }
    }

    /// Queue work for the plugin; beyond the bound, drop the oldest readings.
    fn hold(&mut self, work: Held) {
        match work {
            Held::Tick(now_ms) => {
                // Ticks do not pile up: a later tick covers an earlier one.
                if let Some(Held::Tick(last)) = self.held.back_mut() {
                    *last = now_ms;
                } else {
                    self.held.push_back(Held::Tick(now_ms));
                }
            }
            Held::Readings(readings, done) => {
                self.held_readings += readings.len();
                self.held.push_back(Held::Readings(readings, done));
            }
        }
        while self.held_readings > self.context.policy.buffer_readings {
            let Some(oldest) = self.held.iter().position(|h| matches!(h, Held::Readings(..))) else {
                break;
            };
            if let Some(Held::Readings(readings, _done)) = self.held.remove(oldest) {
                // `_done` is dropped unsent: JetStream ingest leaves those
                // messages unacknowledged, so the stream redelivers them.
                self.held_readings -= readings.len();
                self.stats
                    .readings_dropped
                    .fetch_add(readings.len() as u64, Ordering::Relaxed);
            }
        }
        self.stats
            .readings_held
            .store(self.held_readings as u64, Ordering::Relaxed);
    }

    fn drop_held(&mut self, why: &str) {
        let dropped = self.held_readings as u64;
        self.held.clear();
        self.held_readings = 0;
        self.stats.readings_held.store(0, Ordering::Relaxed);
        self.stats.readings_dropped.fetch_add(dropped, Ordering::Relaxed);
        if dropped > 0 {
            tracing::error!(plugin = %self.provenance.plugin, dropped, "Readings dropped: {why}");
        }
    }

    /// Deliver the oldest held work to the instance.
    fn run_next(&mut self) {
        let (Some(work), Some(instance)) = (self.held.pop_front(), self.instance.as_mut()) else {
            return;
        };
        let (result, done) = match work {
            Held::Readings(readings, done) => {
                self.held_readings -= readings.len();
                self.stats
                    .readings_in
                    .fetch_add(readings.len() as u64, Ordering::Relaxed);
                (instance.on_readings(&readings), done)
            }
            Held::Tick(now_ms) => (instance.on_tick(now_ms), None),
        };
        let outputs = instance.take_outputs();
        self.stats
            .logs_dropped
            .store(self.logs_dropped_before + instance.logs_dropped(), Ordering::Relaxed);
        self.stats
            .readings_held
            .store(self.held_readings as u64, Ordering::Relaxed);
        self.emit(outputs);
        match result {
            Ok(()) => self.supervisor.succeeded(),
            Err(error) => self.failed(error),
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// Build and initialise a new instance; on failure, held work waits for
    /// the next attempt.
    fn restart(&mut self) {
        let started = PluginInstance::new(&self.context.runtime, &self.plugin, self.limits.clone())
            .and_then(|mut instance| instance.init(&self.config).map(|()| instance));
        match started {
            Ok(instance) => {
                self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %self.provenance.plugin, "Plugin instance restarted");
                self.instance = Some(instance);
            }
            Err(error) => self.failed(error),
        }
    }

    /// A call or a start failed: discard a poisoned instance, pause or
    /// quarantine the plugin, and say so loudly (log and `plugin-degraded`).
    fn failed(&mut self, error: PluginError) {
        let tag = error.kind.tag();
        if error.kind.poisons()
            && let Some(instance) = self.instance.take()
        {
            // A Store is never reused after a trap: the next run builds a new one.
            self.logs_dropped_before += instance.logs_dropped();
        }
        let now = Instant::now();
        let action = match self.supervisor.failed(now) {
            Decision::Restart(pause) => format!("running again in {}", humantime::format_duration(pause)),
            Decision::Quarantine(cooldown) => {
                self.stats.quarantines.fetch_add(1, Ordering::Relaxed);
                format!(
                    "quarantined after {} failures; trial in {}",
                    self.context.policy.quarantine_after,
                    humantime::format_duration(cooldown)
                )
            }
        };
        let health = self.supervisor.health(now);
        self.set_state(health);
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut report) = self.stats.health.lock() {
            *report.failures.entry(tag).or_default() += 1;
            report.last_error = Some(error.to_string());
        }
        tracing::error!(plugin = %self.provenance.plugin, reason = tag, %error, "Plugin failed; {action}");
        let alert = Alert {
            sensor: String::new(),
            timestamp_ms: self.context.clock.now_ms(),
            severity: Severity::Critical,
            code: DEGRADED.to_owned(),
            message: format!("{tag}: {error}; {action}"),
            value: None,
        };
        self.emit(vec![Output::Alert(alert)]);
    }

    /// Show `health` in the status (the lock is taken only on a change).
    fn set_state(&mut self, health: Health) {
        if self.shown_state == health.name() {
            return;
        }
        self.shown_state = health.name();
        if let Ok(mut report) = self.stats.health.lock() {
            report.state = health.name();
        }
    }

    /// Alerts to the local bus at once; every output to the outbox, durably.
    fn emit(&mut self, outputs: Vec<Output>) {
        if outputs.is_empty() {
            return;
        }
        let plugin = self.provenance.plugin.clone();
        let mut entries = Vec::with_capacity(outputs.len());
        for output in &outputs {
            let seq = match self.sequence.next() {
                Ok(seq) => seq,
                Err(error) => {
                    self.stats.outbox_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%plugin, %error, "Cannot reserve sequence numbers; output kept only locally");
                    continue;
                }
            };
            let line = to_json_line(&self.provenance, seq, output);
            let (kind, upstream_subject) = match output {
                Output::Alert(_) => {
                    self.stats.alerts_out.fetch_add(1, Ordering::Relaxed);
                    let subject = self.context.subjects.local_alerts(&plugin);
                    let publish = self.context.local.publish(subject, line.clone().into());
                    if let Err(error) = self.context.handle.block_on(publish) {
                        tracing::warn!(%plugin, %error, "Cannot publish an alert on the local bus");
                    }
                    (Kind::Alert, self.context.subjects.upstream_alerts(&plugin))
                }
                Output::Summary(_) => {
                    self.stats.summaries_out.fetch_add(1, Ordering::Relaxed);
                    (Kind::Summary, self.context.subjects.upstream_summaries(&plugin))
                }
            };
            entries.push(NewEntry {
                kind,
                subject: upstream_subject,
                msg_id: self.context.subjects.msg_id(&plugin, seq),
                payload: line.into_bytes(),
                created_ms: wall_ms(),
            });
        }
        let written = match self.context.outbox.lock() {
            Ok(mut outbox) => outbox.append_batch(entries).map(|_| ()),
            Err(_) => {
                tracing::error!(%plugin, "The outbox lock is poisoned");
                return;
            }
        };
        match written {
            Ok(()) => self.context.outbox_written.notify_one(),
            Err(error) => {
                self.stats
                    .outbox_failures
                    .fetch_add(outputs.len() as u64, Ordering::Relaxed);
                tracing::error!(%plugin, %error, "Cannot write outputs to the outbox");
            }
        }
    }
}

/// Wall-clock ms: when an output entered the outbox (its age in the status).
pub fn wall_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
