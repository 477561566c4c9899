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
use super::recovery::{Input, Kept, Recovery, SET_ASIDE_AFTER};
use super::supervisor::{Decision, Health, Supervisor};
use super::{Accept, DEGRADED, PluginStats, SET_ASIDE, Work, WorkerContext};
use crate::model::{Alert, Output, Severity};
use crate::runtime::{CompiledPlugin, Limits, PluginClock, PluginError, PluginInstance, Snapshot};
use crate::snapshots::{SnapshotFileError, SnapshotSaver};

/// Whether a failed recovery removed or split the input that failed.
enum Progress {
    Made,
    None,
}

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
    /// What a new instance after a failure starts from; `None` for a plugin
    /// that takes no snapshots (it starts afresh).
    pub(super) recovery: Option<Recovery>,
    /// Saves snapshots for the host's next run (with `recovery`, when the
    /// host keeps snapshot files).
    pub(super) saver: Option<SnapshotSaver>,
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
        self.save_final();
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
        let (result, done, input) = match work {
            Held::Readings(batch) => {
                self.stats
                    .readings_in
                    .fetch_add(batch.readings.len() as u64, Ordering::Relaxed);
                let result = instance.on_readings(&batch.readings);
                (result, batch.done, Input::Readings(batch.readings))
            }
            Held::Tick(now_ms) => (instance.on_tick(now_ms), None, Input::Tick(now_ms)),
        };
        let outputs = instance.take_outputs();
        self.stats
            .logs_dropped
            .store(self.logs_dropped_before + instance.logs_dropped(), Ordering::Relaxed);
        self.stats.wakes_deferred.store(
            self.wakes_deferred_before + instance.wakes_deferred(),
            Ordering::Relaxed,
        );
        if let Some(recovery) = self.recovery.as_mut() {
            recovery.given(input, outputs.len(), result.is_err());
        }
        let stored = self.emitter.emit(outputs);
        match result {
            Ok(()) => {
                self.supervisor.succeeded();
                self.snapshot_if_due();
            }
            Err(error) => self.failed(error),
        }
        if let Some(done) = done {
            self.emitter.after_commit(done, stored);
        }
    }

    /// Take a snapshot for recovery when enough inputs have passed since the
    /// last one. A snapshot the runtime refuses is counted and tried again
    /// later; a failure of the plugin in `snapshot` is its failure.
    fn snapshot_if_due(&mut self) {
        let (Some(recovery), Some(instance)) = (self.recovery.as_mut(), self.instance.as_mut()) else {
            return;
        };
        if !recovery.snapshot_due() {
            return;
        }
        match instance.snapshot() {
            Ok(snapshot) => {
                recovery.snapshotted(snapshot.clone());
                self.save(&snapshot);
            }
            Err(error) if error.kind.poisons() => self.failed(error),
            Err(error) => {
                self.stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %self.name(), %error, "No snapshot: a failure now would restart the plugin without its state");
            }
        }
    }

    /// Build and initialise the first instance; a failure is supervised
    /// like any other.
    pub(super) fn start_first(&mut self) {
        let saved = self.saved_snapshot();
        if let Some(snapshot) = saved {
            match self.new_instance(Some(&snapshot)) {
                Ok(instance) => {
                    tracing::info!(plugin = %self.name(), schema = snapshot.schema, "Plugin resumed from its saved state");
                    if let Some(recovery) = self.recovery.as_mut() {
                        recovery.snapshotted(snapshot);
                    }
                    self.instance = Some(instance);
                    return;
                }
                Err(error) => {
                    // Kept, dated, for a version that can take it (a rollback).
                    self.set_saved_aside();
                    self.state_lost(&format!(
                        "it did not take its saved state ({error}); that state is kept aside"
                    ));
                }
            }
        }
        match self.new_instance(None) {
            Ok(instance) => self.instance = Some(instance),
            Err(error) => self.failed(error),
        }
    }

    /// The snapshot saved by the host's last run, if this plugin takes
    /// snapshots and one is there; an unusable file is moved aside, reported.
    fn saved_snapshot(&mut self) -> Option<Snapshot> {
        self.recovery.as_ref()?;
        let files = self.context.snapshots.clone()?;
        match files.load(self.name()) {
            Ok(saved) => saved,
            Err(error) => {
                if matches!(error, SnapshotFileError::Unusable { .. }) {
                    self.set_saved_aside();
                }
                self.state_lost(&format!(
                    "its saved state cannot be read: {}",
                    crate::error_chain(&error)
                ));
                None
            }
        }
    }

    /// Move the saved snapshot aside (dated), saying where.
    fn set_saved_aside(&mut self) {
        let Some(files) = self.context.snapshots.clone() else {
            return;
        };
        match files.move_aside(self.name()) {
            Ok(aside) => tracing::warn!(plugin = %self.name(), aside = %aside.display(), "Saved state moved aside"),
            Err(error) => {
                tracing::error!(plugin = %self.name(), error = %crate::error_chain(&error), "Cannot move the saved state aside")
            }
        }
    }

    /// Save `snapshot` for the host's next run, on the saver's thread (a
    /// failure is counted and logged there).
    fn save(&mut self, snapshot: &Snapshot) {
        if let Some(saver) = self.saver.as_ref() {
            saver.save(snapshot.clone());
        }
    }

    /// At the end of the worker: save the plugin's state for the next run,
    /// and wait until it is on disk.
    fn save_final(&mut self) {
        let Some(saver) = self.saver.take() else { return };
        let last = match self.instance.as_mut().map(PluginInstance::snapshot) {
            Some(Ok(snapshot)) => Some(snapshot),
            Some(Err(error)) => {
                self.stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(plugin = %self.name(), %error, "No snapshot at shutdown: the next run resumes from the last saved one");
                None
            }
            None => None,
        };
        saver.finish(last);
    }

    /// Build and initialise a new instance (recovering the plugin's state
    /// when it can); on failure, held work waits for the next attempt.
    fn restart(&mut self) {
        match self.recover() {
            Ok(instance) => {
                self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %self.name(), "Plugin instance restarted");
                self.instance = Some(instance);
            }
            Err(error) => self.failed(error),
        }
    }

    /// A new instance in the state of the one that failed: started from the
    /// last snapshot and given the inputs since again, their outputs (made
    /// before) dropped. An input that fails again and has now failed
    /// [`SET_ASIDE_AFTER`] times is set aside, and the failure supervised as
    /// usual: the next attempt goes on without it. Without a snapshot to
    /// start from, or if the plugin refuses it, the plugin starts afresh.
    fn recover(&mut self) -> Result<PluginInstance, PluginError> {
        let Some(mut recovery) = self.recovery.take() else {
            return self.new_instance(None);
        };
        let result = loop {
            match self.recover_with(&mut recovery) {
                Ok(instance) => break Ok(instance),
                // An input failed again and was split or set aside: go on
                // without it at once (each time one input fewer, or a batch
                // split in single readings: this ends). The failure is the
                // one already supervised, not a new one.
                Err((error, Progress::Made)) => {
                    tracing::warn!(plugin = %self.name(), %error, "An input failed again while recovering; recovering without it");
                }
                Err((error, Progress::None)) => break Err(error),
            }
        };
        self.recovery = Some(recovery);
        result
    }

    fn recover_with(&mut self, recovery: &mut Recovery) -> Result<PluginInstance, (PluginError, Progress)> {
        let made = recovery.outputs();
        let fresh = |thread: &mut PluginThread| thread.new_instance(None).map_err(|e| (e, Progress::None));
        let Some((snapshot, before, since)) = recovery.plan() else {
            self.state_lost("the inputs since the last snapshot were not all kept");
            recovery.forget();
            return fresh(self);
        };
        if snapshot.is_none() && since.is_empty() {
            return fresh(self);
        }
        let mut instance = match self.new_instance(snapshot) {
            Ok(instance) => instance,
            Err(error) if snapshot.is_some() => {
                self.state_lost(&format!("the plugin refused its snapshot: {error}"));
                recovery.forget();
                return Err((error, Progress::None));
            }
            Err(error) => return Err((error, Progress::None)),
        };
        self.stats.recoveries.fetch_add(1, Ordering::Relaxed);
        // The outputs of the inputs given again were emitted before: drop as many.
        let mut to_drop = made.saturating_sub(before);
        let mut remade = 0u64;
        let mut index = 0;
        while let Some(kept) = since.get_mut(index) {
            let result = match &kept.input {
                Input::Readings(readings) => instance.on_readings(readings),
                Input::Tick(now_ms) => instance.on_tick(*now_ms),
            };
            let outputs = instance.take_outputs();
            let dropped = to_drop.min(outputs.len() as u64);
            to_drop -= dropped;
            remade += outputs.len() as u64;
            // Only outputs beyond those made before are new (a plugin that is
            // not a function of its inputs alone may make more).
            let fresh: Vec<Output> = outputs.into_iter().skip(dropped as usize).collect();
            self.emitter.emit(fresh);
            match result {
                Ok(()) => index += 1,
                Err(error) => {
                    kept.failures += 1;
                    let mut progress = Progress::None;
                    if kept.failures >= SET_ASIDE_AFTER {
                        progress = Progress::Made;
                        match since.remove(index).map(|kept| kept.input) {
                            // Not the whole batch for one bad reading: its
                            // readings are given one by one next time, and
                            // the one that fails again is set aside alone.
                            Some(Input::Readings(readings)) if readings.len() > 1 => {
                                for (offset, reading) in readings.into_iter().enumerate() {
                                    let input = Input::Readings(vec![reading]);
                                    since.insert(
                                        index + offset,
                                        Kept {
                                            input,
                                            failures: SET_ASIDE_AFTER - 1,
                                        },
                                    );
                                }
                            }
                            input => self.set_aside(input.as_ref(), &error),
                        }
                    }
                    recovery.recounted(before + remade);
                    return Err((error, progress));
                }
            }
        }
        recovery.recounted(before + remade);
        Ok(instance)
    }

    /// Report an input set aside: it made the plugin fail again.
    fn set_aside(&mut self, input: Option<&Input>, error: &PluginError) {
        self.stats.inputs_set_aside.fetch_add(1, Ordering::Relaxed);
        let what = match input {
            Some(Input::Readings(readings)) => match readings.as_slice() {
                [reading] => format!(
                    "the reading of sensor `{}` at {} ms ({} {})",
                    reading.sensor, reading.timestamp_ms, reading.value, reading.unit
                ),
                [first, ..] => format!(
                    "a batch of {} readings (the first of sensor `{}` at {} ms)",
                    readings.len(),
                    first.sensor,
                    first.timestamp_ms
                ),
                [] => "an empty batch".to_owned(),
            },
            Some(Input::Tick(now_ms)) => format!("the tick at {now_ms} ms"),
            None => "an input".to_owned(),
        };
        let message = format!(
            "{what} made the plugin fail {SET_ASIDE_AFTER} times ({}): set aside, never given again",
            error.kind.tag()
        );
        tracing::error!(plugin = %self.name(), "{message}");
        self.host_alert(SET_ASIDE, message);
    }

    /// A restart that cannot keep the plugin's state: said loudly.
    fn state_lost(&mut self, why: &str) {
        self.stats.state_lost.fetch_add(1, Ordering::Relaxed);
        let message = format!("restarting without the plugin's state: {why}");
        tracing::error!(plugin = %self.name(), "{message}");
        self.host_alert(DEGRADED, message);
    }

    /// A new instance whose `init` succeeded, started from `snapshot` if
    /// given. The first success records the version for anti-rollback: a
    /// version that never started is not "accepted", so the working older
    /// one is not then refused as a rollback.
    fn new_instance(&mut self, snapshot: Option<&Snapshot>) -> Result<PluginInstance, PluginError> {
        // The plugin reads the host clock (simulated when configured) through WASI.
        let clock = self.context.clock.clone();
        let clock = PluginClock::host(move || clock.now_ms());
        let instance = PluginInstance::with_clock(&self.context.runtime, &self.plugin, self.limits.clone(), clock)
            .and_then(|mut instance| instance.init_from(&self.config, snapshot).map(|()| instance))?;
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
        self.host_alert(DEGRADED, format!("{tag}: {error}; {action}"));
    }

    /// A critical alert of the host about this plugin, with `code`.
    fn host_alert(&mut self, code: &str, message: String) {
        let alert = Alert {
            sensor: String::new(),
            timestamp_ms: self.context.clock.now_ms(),
            severity: Severity::Critical,
            code: code.to_owned(),
            message,
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
