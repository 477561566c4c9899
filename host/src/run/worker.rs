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
use std::sync::{Arc, Mutex};
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
    /// The outbox writer (group commit).
    pub writer: WriterHandle,
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
    stopping: Arc<AtomicBool>,
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
        let (instance, first_failure) = match setup.instance {
            Ok(instance) => (Some(instance), None),
            Err(error) => (None, Some(error)),
        };
        let routes = Routes::new(&context.subjects, &setup.provenance.plugin);
        let mut state = WorkerState {
            routes,
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
            stopping: stopping.clone(),
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
        Ok(Worker {
            queue,
            stats,
            stopping,
            thread,
        })
    }

    /// Wait for the worker to finish its queue (close the queue first by
    /// dropping every sender).
    /// A plugin that is down (or fails while draining) gives up what is left,
    /// counted as dropped, so that a hostile plugin cannot hold up the exit.
    pub fn join(self) {
        self.stopping.store(true, Ordering::Relaxed);
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

/// Where a plugin's outputs go, made once per worker.
struct Routes {
    /// Local bus subject of its alerts.
    local_alerts: async_nats::Subject,
    /// Upstream subject of its alerts.
    upstream_alerts: String,
    /// Upstream subject of its summaries.
    upstream_summaries: String,
    /// `<device>/<plugin>/`: a message id is this and the sequence number.
    msg_id_prefix: String,
}

impl Routes {
    fn new(subjects: &Subjects, plugin: &str) -> Routes {
        let msg_id_prefix = subjects.msg_id(plugin, 0);
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
}

impl WorkerState {
    fn run(&mut self, mut receiver: mpsc::Receiver<Work>) {
        let mut open = true;
        loop {
            let now = Instant::now();
            let health = self.supervisor.health(now);
            self.set_state(health);
            let pause = self.supervisor.wait(now);
            if pause.is_some() && self.stopping.load(Ordering::Relaxed) {
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
        self.emit(outputs);
        match result {
            Ok(()) => self.supervisor.succeeded(),
            Err(error) => self.failed(error),
        }
        if let Some(done) = done {
            self.after_commit(done);
        }
    }

    /// Tell `done` once every output handed to the writer so far (those of
    /// this work included) has been committed: the writer runs continuations
    /// in order. If the writer has stopped, `done` is dropped unsent
    /// (JetStream ingest then leaves the messages unacknowledged).
    fn after_commit(&self, done: tokio::sync::oneshot::Sender<()>) {
        let then: Committed = Box::new(move |_| {
            let _ = done.send(());
        });
        if self.context.writer.submit(Vec::new(), then).is_err() {
            tracing::error!(plugin = %self.provenance.plugin, "The outbox writer has stopped");
        }
    }

    /// Build and initialise a new instance; on failure, held work waits for
    /// the next attempt.
    fn restart(&mut self) {
        let clock = self.context.clock.clone();
        let clock = PluginClock::host(move || clock.now_ms());
        let started = PluginInstance::with_clock(&self.context.runtime, &self.plugin, self.limits.clone(), clock)
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

    /// Alerts to the local bus at once; every output to the outbox writer,
    /// which makes them durable and only then counts them as emitted.
    fn emit(&mut self, outputs: Vec<Output>) {
        if outputs.is_empty() {
            return;
        }
        let plugin = &self.provenance.plugin;
        let mut entries = Vec::with_capacity(outputs.len());
        let (mut alerts, mut summaries) = (0u64, 0u64);
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
                    alerts += 1;
                    let subject = self.routes.local_alerts.clone();
                    let publish = self.context.local.publish(subject, line.clone().into());
                    if let Err(error) = self.context.handle.block_on(publish) {
                        tracing::warn!(%plugin, %error, "Cannot publish an alert on the local bus");
                    }
                    (Kind::Alert, self.routes.upstream_alerts.clone())
                }
                Output::Summary(_) => {
                    summaries += 1;
                    (Kind::Summary, self.routes.upstream_summaries.clone())
                }
            };
            entries.push(NewEntry {
                kind,
                subject: upstream_subject,
                msg_id: self.routes.msg_id(seq),
                payload: line.into_bytes(),
                created_ms: wall_ms(),
            });
        }
        if entries.is_empty() {
            return;
        }
        let stats = self.stats.clone();
        let who = plugin.clone();
        let then: Committed = Box::new(move |outcome| match outcome {
            Ok(_) => {
                stats.alerts_out.fetch_add(alerts, Ordering::Relaxed);
                stats.summaries_out.fetch_add(summaries, Ordering::Relaxed);
            }
            Err(error) => {
                stats.outbox_failures.fetch_add(alerts + summaries, Ordering::Relaxed);
                tracing::error!(plugin = %who, %error, "Cannot write outputs to the outbox");
            }
        });
        if let Err(error) = self.context.writer.submit(entries, then) {
            self.stats
                .outbox_failures
                .fetch_add(alerts + summaries, Ordering::Relaxed);
            tracing::error!(%plugin, %error, "Cannot write outputs to the outbox");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_what_subjects_name() {
        let subjects = Subjects::new("edge-01");
        let routes = Routes::new(&subjects, "glucose-monitor");
        for seq in [0, 1, 10, 12_345, u64::MAX] {
            assert_eq!(routes.msg_id(seq), subjects.msg_id("glucose-monitor", seq));
        }
        assert_eq!(routes.local_alerts.as_str(), subjects.local_alerts("glucose-monitor"));
        assert_eq!(routes.upstream_alerts, subjects.upstream_alerts("glucose-monitor"));
        assert_eq!(
            routes.upstream_summaries,
            subjects.upstream_summaries("glucose-monitor")
        );
    }
}
