//! The loop of a plugin's thread: it takes work from the queue, calls the
//! plugin, and supervises it: on a failure the `plugin-degraded` alert, a
//! new instance after a backoff, quarantine after repeated failures, work
//! held meanwhile ([`Hold`]); at shutdown, the drain within its budget.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::mpsc;

use super::hold::{Held, Hold};
use super::output::Emitter;
use super::supervisor::{Decision, Health, Supervisor};
use super::{Accept, DEGRADED, PluginStats, Work, WorkerContext};
use crate::model::{Alert, Output, Severity};
use crate::runtime::{CompiledPlugin, Limits, PluginClock, PluginError, PluginInstance};

/// One plugin under supervision, on its own thread.
pub(super) struct PluginThread {
    pub(super) context: WorkerContext,
    pub(super) emitter: Emitter,
    pub(super) plugin: Arc<CompiledPlugin>,
    pub(super) instance: Option<PluginInstance>,
    /// Records the version once an `init` has succeeded (taken then).
    pub(super) accept: Option<Accept>,
    pub(super) config: Vec<(String, String)>,
    pub(super) limits: Limits,
    pub(super) stats: Arc<PluginStats>,
    pub(super) supervisor: Supervisor,
    /// Work in arrival order; while the plugin runs, at most one item.
    pub(super) hold: Hold,
    /// Log lines dropped by instances already discarded.
    pub(super) logs_dropped_before: u64,
    /// Wakes deferred by instances already discarded.
    pub(super) wakes_deferred_before: u64,
    /// The state last shown in the status.
    pub(super) shown_state: &'static str,
    /// Set when the host stops: a failure then ends the worker.
    pub(super) stopping: Arc<AtomicBool>,
    /// When the host stops, the end of the drain budget: what is left then
    /// is dropped, counted.
    pub(super) drain_until: Arc<OnceLock<Instant>>,
}

impl PluginThread {
    /// The plugin's name.
    fn name(&self) -> &str {
        &self.emitter.provenance.plugin
    }

    /// Take work until the queue closes (the host stops) and the plugin has
    /// finished it, or the drain budget is spent.
    pub(super) fn run(&mut self, mut receiver: mpsc::Receiver<Work>) {
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
            if pause.is_none() && self.instance.is_none() && (open || !self.hold.is_empty()) {
                // The pause is over: start a new instance now, not when work
                // comes, so the status tells the truth and quarantine comes
                // when it should.
                self.restart();
                continue;
            }
            if pause.is_none() && !self.hold.is_empty() {
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
                Some(work) => self.hold.push(Held::from(work)),
                None => open = false,
            }
        }
    }

    /// Drop everything held and still queued, counted: the host is stopping
    /// and the plugin is down.
    fn abandon(&mut self, receiver: &mut mpsc::Receiver<Work>) {
        let dropped = self.hold.abandon(receiver);
        if dropped > 0 {
            tracing::error!(
                plugin = %self.name(),
                dropped,
                "Readings dropped: the host is stopping and the plugin is down"
            );
        }
    }

    /// Deliver the oldest held work to the instance.
    fn run_next(&mut self) {
        let Some(instance) = self.instance.as_mut() else { return };
        let Some(work) = self.hold.pop() else { return };
        if let Held::Tick(now_ms) = work
            && !instance.wake().due(now_ms)
        {
            // A plugin woken on demand (contract 0.2) is ticked once the
            // host clock reaches the time it asked for, not every interval.
            return;
        }
        let (result, done) = match work {
            Held::Readings(batch) => {
                self.stats
                    .readings_in
                    .fetch_add(batch.readings.len() as u64, Ordering::Relaxed);
                (instance.on_readings(&batch.readings), batch.done)
            }
            Held::Tick(now_ms) => (instance.on_tick(now_ms), None),
        };
        let outputs = instance.take_outputs();
        self.stats
            .logs_dropped
            .store(self.logs_dropped_before + instance.logs_dropped(), Ordering::Relaxed);
        self.stats.wakes_deferred.store(
            self.wakes_deferred_before + instance.wakes_deferred(),
            Ordering::Relaxed,
        );
        let stored = self.emitter.emit(outputs);
        match result {
            Ok(()) => self.supervisor.succeeded(),
            Err(error) => self.failed(error),
        }
        if let Some(done) = done {
            self.emitter.after_commit(done, stored);
        }
    }

    /// Build and initialise the first instance; a failure is supervised
    /// like any other.
    pub(super) fn start_first(&mut self) {
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
                tracing::warn!(plugin = %self.name(), "Plugin instance restarted");
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
            tracing::error!(plugin = %self.name(), error = %crate::error_chain(error.as_ref()), "Cannot record the version as accepted");
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
            self.wakes_deferred_before += instance.wakes_deferred();
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
        tracing::error!(plugin = %self.name(), reason = tag, %error, "Plugin failed; {action}");
        let alert = Alert {
            sensor: String::new(),
            timestamp_ms: self.context.clock.now_ms(),
            severity: Severity::Critical,
            code: DEGRADED.to_owned(),
            message: format!("{tag}: {error}; {action}"),
            value: None,
        };
        self.emitter.emit(vec![Output::Alert(alert)]);
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
}
