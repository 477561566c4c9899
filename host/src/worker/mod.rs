//! One plugin on its own thread: it owns the wasmtime instance, takes work
//! from a bounded queue, publishes alerts on the local bus at once, and hands
//! every output to the outbox writer (group commit); an output counts as
//! emitted once the writer has made it durable. The worker does not wait for
//! the disk before its next work: acknowledgements of JetStream input wait
//! for the commit instead. When the plugin
//! fails it supervises it: `plugin-degraded` alert, a new instance after a
//! backoff, quarantine after repeated failures, readings held meanwhile.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc;

use super::clock::Clock;
use super::sequence::Sequence;
use super::subjects::Subjects;
use super::supervisor::{Decision, Health, Supervisor, SupervisorPolicy};
use crate::envelope::{Provenance, to_json_line};
use crate::model::{Alert, Output, Reading, Severity};
use crate::outbox::{Committed, Kind, NewEntry, WriterHandle};
use crate::runtime::{CompiledPlugin, Limits, PluginClock, PluginError, PluginInstance, Runtime};

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
    /// stopped while the plugin was quarantined).
    pub readings_dropped: AtomicU64,
    /// Log lines dropped by the log budget.
    pub logs_dropped: AtomicU64,
    /// Outputs that could not be written to the outbox (not counted in
    /// `alerts_out` or `summaries_out`).
    pub outbox_failures: AtomicU64,
    /// Outputs that got no sequence number (it could not be reserved on
    /// disk): alerts among them were published locally (with `seq` 0), none
    /// was stored for upstream, and their input was not acknowledged.
    pub sequence_failures: AtomicU64,
    /// State, failures by reason, last failure.
    pub health: Mutex<HealthReport>,
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
    /// The outbox writer (group commit).
    pub writer: WriterHandle,
    /// Where sequence numbers are kept.
    pub data_dir: std::path::PathBuf,
    /// The host clock: the time stamp of the host's own alerts.
    pub clock: Clock,
    /// Restart, backoff and quarantine rules.
    pub policy: SupervisorPolicy,
}

/// Records the plugin's version for anti-rollback; run once, after its
/// first `init` that succeeded.
pub type Accept = Box<dyn FnOnce() -> Result<(), String> + Send>;

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

impl Worker {
    /// Start a worker thread.
    pub fn start(context: WorkerContext, setup: PluginSetup, queue_capacity: usize) -> std::io::Result<Worker> {
        let sequence = Sequence::open(&context.data_dir, &setup.provenance.plugin)?;
        let (queue, receiver) = mpsc::channel(queue_capacity);
        let stats = Arc::new(PluginStats::default());
        let supervisor = Supervisor::new(context.policy.clone());
        let stopping = Arc::new(AtomicBool::new(false));
        let drain_until = Arc::new(OnceLock::new());
        let routes = Routes::new(&context.subjects, sequence.incarnation(), &setup.provenance.plugin);
        let mut state = WorkerState {
            routes,
            context,
            plugin: setup.compiled,
            instance: None,
            accept: setup.accept,
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
            stopping: stopping.clone(),
            drain_until: drain_until.clone(),
        };
        state.set_state(Health::Running);
        let name = format!("plugin-{}", state.provenance.plugin);
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

/// Work taken from the queue, waiting for the plugin.
enum Held {
    Readings(Vec<Reading>, Option<tokio::sync::oneshot::Sender<()>>),
    Tick(i64),
}

/// Where a plugin's outputs go, made once per worker.
struct Routes {
    /// Local bus subject of its alerts.
    local_alerts: async_nats::Subject,
    /// Upstream subject of its alerts.
    upstream_alerts: String,
    /// Upstream subject of its summaries.
    upstream_summaries: String,
    /// `<device>/<incarnation>/<plugin>/`: a message id is this and the sequence number.
    msg_id_prefix: String,
}

impl Routes {
    fn new(subjects: &Subjects, incarnation: &str, plugin: &str) -> Routes {
        let msg_id_prefix = subjects.msg_id(incarnation, plugin, 0);
        let msg_id_prefix = msg_id_prefix.strip_suffix('0').unwrap_or(&msg_id_prefix).to_owned();
        Routes {
            local_alerts: async_nats::Subject::from(subjects.local_alerts(plugin)),
            upstream_alerts: subjects.upstream_alerts(plugin),
            upstream_summaries: subjects.upstream_summaries(plugin),
            msg_id_prefix,
        }
    }

    /// The `Nats-Msg-Id` of output `seq` (as [`Subjects::msg_id`]).
    fn msg_id(&self, seq: u64) -> String {
        use std::fmt::Write;
        let mut id = String::with_capacity(self.msg_id_prefix.len() + 20);
        id.push_str(&self.msg_id_prefix);
        let _ = write!(id, "{seq}");
        id
    }
}

struct WorkerState {
    routes: Routes,
    context: WorkerContext,
    plugin: Arc<CompiledPlugin>,
    instance: Option<PluginInstance>,
    /// Records the version once an `init` has succeeded (taken then).
    accept: Option<Accept>,
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
    /// Set when the host stops: a failure then ends the worker.
    stopping: Arc<AtomicBool>,
    /// When the host stops, the end of the drain budget: what is left then
    /// is dropped, counted.
    drain_until: Arc<OnceLock<Instant>>,
}

impl WorkerState {
    fn run(&mut self, mut receiver: mpsc::Receiver<Work>) {
        let mut open = true;
        loop {
            let now = Instant::now();
            let health = self.supervisor.health(now);
            self.set_state(health);
            let pause = self.supervisor.wait(now);
            let stopping = self.stopping.load(Ordering::Relaxed);
            if stopping && self.drain_until.get().is_some_and(|until| now >= *until) {
                // The drain budget is spent: the exit must not wait for a
                // slow plugin (JetStream input stays unacknowledged).
                self.abandon(&mut receiver);
                break;
            }
            if pause.is_some() && stopping {
                // Stopping and the plugin is down (or just failed again): what
                // is left would only feed more failures and hold up the exit.
                self.abandon(&mut receiver);
                break;
            }
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
            if !open && pause.is_none() {
                break; // Closed, running and nothing held: done.
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

    /// Drop everything held and still queued, counted: the host is stopping
    /// and the plugin is down. (JetStream ingest did not acknowledge them.)
    fn abandon(&mut self, receiver: &mut mpsc::Receiver<Work>) {
        let mut dropped = self.held_readings as u64;
        self.held.clear();
        self.held_readings = 0;
        while let Ok(work) = receiver.try_recv() {
            if let Work::Readings(readings, _) = work {
                dropped += readings.len() as u64;
            }
        }
        self.stats.readings_held.store(0, Ordering::Relaxed);
        self.stats.readings_dropped.fetch_add(dropped, Ordering::Relaxed);
        if dropped > 0 {
            tracing::error!(
                plugin = %self.provenance.plugin,
                dropped,
                "Readings dropped: the host is stopping and the plugin is down"
            );
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
        let stored = self.emit(outputs);
        match result {
            Ok(()) => self.supervisor.succeeded(),
            Err(error) => self.failed(error),
        }
        if let Some(done) = done {
            self.after_commit(done, stored);
        }
    }

    /// Tell `done` once every output handed to the writer so far (those of
    /// this work included) has been committed, if `stored` then says that
    /// every output of this work was numbered and written: the writer runs
    /// continuations in order. Otherwise, or if the writer has stopped, `done`
    /// is dropped unsent: JetStream ingest leaves the messages unacknowledged
    /// and the stream delivers them again.
    fn after_commit(&self, done: tokio::sync::oneshot::Sender<()>, stored: Arc<AtomicBool>) {
        let then: Committed = Box::new(move |_| {
            if stored.load(Ordering::Acquire) {
                let _ = done.send(());
            }
        });
        if self.context.writer.submit(Vec::new(), then).is_err() {
            tracing::error!(plugin = %self.provenance.plugin, "The outbox writer has stopped");
        }
    }

    /// Build and initialise the first instance; a failure is supervised
    /// like any other.
    fn start_first(&mut self) {
        match self.new_instance() {
            Ok(instance) => self.instance = Some(instance),
            Err(error) => self.failed(error),
        }
    }

    /// Build and initialise a new instance; on failure, held work waits for
    /// the next attempt.
    fn restart(&mut self) {
        match self.new_instance() {
            Ok(instance) => {
                self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %self.provenance.plugin, "Plugin instance restarted");
                self.instance = Some(instance);
            }
            Err(error) => self.failed(error),
        }
    }

    /// A new instance whose `init` succeeded. The first success records the
    /// version for anti-rollback: a version that never started is not
    /// "accepted", so the working older one is not then refused as a rollback.
    fn new_instance(&mut self) -> Result<PluginInstance, PluginError> {
        // The plugin reads the host clock (simulated when configured) through WASI.
        let clock = self.context.clock.clone();
        let clock = PluginClock::host(move || clock.now_ms());
        let instance = PluginInstance::with_clock(&self.context.runtime, &self.plugin, self.limits.clone(), clock)
            .and_then(|mut instance| instance.init(&self.config).map(|()| instance))?;
        if let Some(accept) = self.accept.take()
            && let Err(error) = accept()
        {
            tracing::error!(plugin = %self.provenance.plugin, %error, "Cannot record the version as accepted");
        }
        Ok(instance)
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

    /// Alerts to the local bus at once; every output to the outbox writer,
    /// which makes them durable and only then counts them as emitted.
    ///
    /// Returns whether every output was stored: false at once if one got no
    /// sequence number (an alert is still published locally, with `seq` 0),
    /// set false by the writer if the write fails. Read it in a continuation
    /// submitted after this one ([`WorkerState::after_commit`]).
    fn emit(&mut self, outputs: Vec<Output>) -> Arc<AtomicBool> {
        let stored = Arc::new(AtomicBool::new(true));
        if outputs.is_empty() {
            return stored;
        }
        let plugin = &self.provenance.plugin;
        let mut entries = Vec::with_capacity(outputs.len());
        let (mut alerts, mut summaries) = (0u64, 0u64);
        let mut unnumbered = 0u64;
        let mut last_error = None;
        for output in &outputs {
            let seq = match self.sequence.next() {
                Ok(seq) => Some(seq),
                Err(error) => {
                    unnumbered += 1;
                    last_error = Some(error);
                    None
                }
            };
            // 0 is never a sequence number (they start at 1): "not numbered".
            let line = to_json_line(&self.provenance, seq.unwrap_or(0), output);
            if let Output::Alert(_) = output {
                // The local alert path does not depend on the disk.
                let subject = self.routes.local_alerts.clone();
                let publish = self.context.local.publish(subject, line.clone().into());
                if let Err(error) = self.context.handle.block_on(publish) {
                    tracing::warn!(%plugin, %error, "Cannot publish an alert on the local bus");
                }
            }
            let Some(seq) = seq else { continue };
            let (kind, upstream_subject) = match output {
                Output::Alert(_) => {
                    alerts += 1;
                    (Kind::Alert, self.routes.upstream_alerts.clone())
                }
                Output::Summary(_) => {
                    summaries += 1;
                    (Kind::Summary, self.routes.upstream_summaries.clone())
                }
            };
            entries.push(NewEntry {
                kind,
                plugin: plugin.clone(),
                subject: upstream_subject,
                msg_id: self.routes.msg_id(seq),
                payload: line.into_bytes(),
                created_ms: wall_ms(),
            });
        }
        if let Some(error) = last_error {
            // One line per call, however many outputs it had.
            stored.store(false, Ordering::Release);
            self.stats.sequence_failures.fetch_add(unnumbered, Ordering::Relaxed);
            tracing::error!(
                %plugin,
                %error,
                unnumbered,
                "Cannot reserve sequence numbers: alerts published locally only (seq 0), \
                 nothing stored for upstream, the input not acknowledged"
            );
        }
        if entries.is_empty() {
            return stored;
        }
        let stats = self.stats.clone();
        let who = plugin.clone();
        let written = stored.clone();
        let then: Committed = Box::new(move |outcome| match outcome {
            Ok(_) => {
                stats.alerts_out.fetch_add(alerts, Ordering::Relaxed);
                stats.summaries_out.fetch_add(summaries, Ordering::Relaxed);
            }
            Err(error) => {
                written.store(false, Ordering::Release);
                stats.outbox_failures.fetch_add(alerts + summaries, Ordering::Relaxed);
                tracing::error!(plugin = %who, %error, "Cannot write outputs to the outbox");
            }
        });
        if let Err(error) = self.context.writer.submit(entries, then) {
            stored.store(false, Ordering::Release);
            self.stats
                .outbox_failures
                .fetch_add(alerts + summaries, Ordering::Relaxed);
            tracing::error!(%plugin, %error, "Cannot write outputs to the outbox");
        }
        stored
    }
}

/// Wall-clock ms: when an output entered the outbox (its age in the status).
pub fn wall_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_what_subjects_name() {
        let subjects = Subjects::new("edge-01");
        let incarnation = "0123456789abcdef0123456789abcdef";
        let routes = Routes::new(&subjects, incarnation, "glucose-monitor");
        for seq in [0, 1, 10, 12_345, u64::MAX] {
            assert_eq!(routes.msg_id(seq), subjects.msg_id(incarnation, "glucose-monitor", seq));
        }
        assert_eq!(routes.msg_id(7), format!("edge-01/{incarnation}/glucose-monitor/7"));
        assert_eq!(routes.local_alerts.as_str(), subjects.local_alerts("glucose-monitor"));
        assert_eq!(routes.upstream_alerts, subjects.upstream_alerts("glucose-monitor"));
        assert_eq!(
            routes.upstream_summaries,
            subjects.upstream_summaries("glucose-monitor")
        );
    }
}
