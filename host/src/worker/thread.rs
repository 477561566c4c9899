//! The loop of a plugin's thread: it takes work from the queue, calls the
//! plugin, and supervises it: on a failure the `plugin-degraded` alert, a
//! new instance after a backoff, quarantine after repeated failures, work
//! held meanwhile ([`Hold`]); at shutdown, the drain within its budget.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::call_times::Call;
use super::hold::{Held, Hold};
use super::output::Emitter;
use super::recovery::{Kept, Recovery, SET_ASIDE_AFTER, STATE_ASIDE_AFTER, Start};
use super::supervisor::{Decision, Health, Supervisor};
use super::swap::{Outcome, Probation, Promotion};
use super::{Accept, DEGRADED, OUTPUT_FLAGGED, PluginStats, SET_ASIDE, Work, WorkerContext};
use crate::bus::ingest::{Batch, Retell};
use crate::input_log::Input;
use crate::model::{Alert, Severity};
use crate::outbox::{NEXT_AFTER_HIGHEST, Record, SavedState, wall_ms};
use crate::output_check::Problems;
use crate::runtime::{CompiledPlugin, InitOutputs, Limits, PluginClock, PluginError, PluginInstance, Snapshot};

/// What a failed recovery attempt leaves for the next one.
enum Progress {
    /// The input that failed was split or set aside: go on at once.
    Made,
    /// An input failed that had not failed before: the plugin fails at
    /// random rather than on an input; again at once, a bounded number of
    /// times ([`QUICK_RETRIES`]).
    Retry,
    /// The same input failed again: supervised (backoff), as any failure.
    None,
}

/// Attempts of one recovery retried at once after a failure on an input that
/// had not failed before; then the failure is supervised.
const QUICK_RETRIES: u32 = 8;

/// How often a worker with nothing to do looks whether a promotion's state
/// has been stored ([`PluginThread::finish_promotions`]).
const PROMOTION_POLL: Duration = Duration::from_millis(50);

/// The longest a stopping worker waits for a promotion's state to be stored.
const PROMOTION_WAIT_AT_EXIT: Duration = Duration::from_secs(10);

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
    /// The position of the last input logged.
    pub(super) position: u64,
    /// The host clock as the plugin reads it during a call: pinned to the
    /// time logged with the input, so that giving it again reads the same.
    pub(super) pinned: Arc<AtomicI64>,
    /// JetStream messages already logged (by stream sequence).
    pub(super) seen: Seen,
    /// Why the saved state found at start could not be read (it was moved
    /// aside): said when the plugin starts.
    pub(super) unreadable_state: Option<String>,
    /// Logged inputs that recovery at start cannot give again (damaged,
    /// missing): said when the plugin starts, counted as set aside.
    pub(super) skipped_inputs: Vec<String>,
    /// Log lines dropped by instances already discarded.
    pub(super) logs_dropped_before: u64,
    /// Wakes deferred by instances already discarded.
    pub(super) wakes_deferred_before: u64,
    /// Outputs with problems: told at the first, then at most hourly
    /// ([`PluginThread::tell_flagged`]), with which problems since.
    pub(super) flagged: (Retell, Problems),
    /// The state last shown in the status.
    pub(super) shown_state: &'static str,
    /// Set when the host stops: a failure then ends the worker.
    pub(super) stopping: Arc<AtomicBool>,
    /// When the host stops, the end of the drain budget: what is left then
    /// is dropped, counted.
    pub(super) drain_until: Arc<OnceLock<Instant>>,
    /// The version deployed last, while on probation.
    pub(super) probation: Option<Probation>,
    /// Versions past their probation whose state is on its way to the disk,
    /// in order ([`PluginThread::promote`]).
    pub(super) promotions: VecDeque<Promotion>,
    /// A plugin new on the device that failed its probation: it takes no
    /// more work (its owner removes it).
    pub(super) retired: bool,
}

impl PluginThread {
    /// The plugin's name.
    pub(super) fn name(&self) -> &str {
        &self.emitter.provenance.plugin
    }

    /// Take work until the queue closes (the host stops) and the plugin has
    /// finished it, or the drain budget is spent.
    pub(super) fn run(&mut self, mut receiver: mpsc::Receiver<Work>) {
        let mut open = true;
        loop {
            self.stats.steps.fetch_add(1, Ordering::Relaxed);
            if self.retired {
                // Failed its probation with no version to go back to: what
                // comes is dropped, counted, until its owner removes it.
                self.abandon(&mut receiver);
                match receiver.blocking_recv() {
                    Some(Work::Readings(batch)) => self.hold.push(Held::Readings(batch.off_the_queue())),
                    Some(Work::Swap(swap)) => {
                        let _ = swap.probation.events.send(super::DeployEvent {
                            id: swap.probation.id,
                            plugin: self.name().to_owned(),
                            outcome: Outcome::Failed("the plugin was stopped: its last version failed".to_owned()),
                        });
                    }
                    Some(Work::Tick(_)) => {}
                    None => break,
                }
                continue;
            }
            self.finish_promotions(None);
            let now = Instant::now();
            let health = self.supervisor.health(now);
            self.set_state(health);
            let pause = self.supervisor.wait(now);
            let on_probation = match self.probation.as_mut().map(|probation| probation.check(now)) {
                Some(Err(reason)) => {
                    self.probation_failed_for(reason);
                    continue;
                }
                Some(Ok(left)) => Some(left),
                None => None,
            };
            if pause.is_none() && self.instance.is_some() && on_probation == Some(None) {
                self.promote();
                continue;
            }
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
            // While a promotion waits for the disk, look again now and then.
            let promoting = (!self.promotions.is_empty()).then_some(PROMOTION_POLL);
            let received = match pause.or(on_probation.flatten()).or(promoting) {
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
                // A new version is switched to at once: the work held goes to it.
                Some(Work::Swap(swap)) => self.swap(*swap),
                Some(Work::Readings(batch)) => self.hold.push(Held::Readings(batch.off_the_queue())),
                Some(Work::Tick(now_ms)) => self.hold.push(Held::Tick(now_ms)),
                None => open = false,
            }
        }
        // The host stops: a version healthy before it did is recorded if its
        // state is stored within the drain budget (and the bound), and only
        // then is the last state saved: with a promotion undecided, a
        // restart runs the version before, which must find the state saved
        // at the switch or the promotion, not a later one of the new version.
        let bound = Instant::now() + PROMOTION_WAIT_AT_EXIT;
        let until = self.drain_until.get().map_or(bound, |drain| bound.min(*drain));
        self.finish_promotions(Some(until));
        let undecided = !self.promotions.is_empty();
        for promotion in std::mem::take(&mut self.promotions) {
            self.healthy(promotion, false);
        }
        if !undecided {
            self.save_final();
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

    /// Deliver the oldest held work to the instance: log it, call the
    /// plugin, emit the outputs with the input's log record.
    fn run_next(&mut self) {
        if self.instance.is_none() {
            return; // Held until an instance runs.
        }
        let Some(work) = self.hold.pop() else { return };
        let Some(instance) = self.instance.as_mut() else { return };
        if let Held::Tick(now_ms) = work {
            instance.clock_at(now_ms);
            if !instance.wake().due(now_ms) {
                // A plugin woken on demand (contract 0.2) is ticked once the
                // host clock reaches the time it asked for, not every interval.
                return;
            }
        }
        let (input, done) = match work {
            Held::Readings(batch) => {
                let Batch {
                    mut readings,
                    mut sources,
                    done,
                    given,
                    room: _,
                } = batch;
                // Given (or known as given) from here: ingest may go on.
                if let Some(given) = given {
                    let _ = given.send(());
                }
                let given_before = match sources.is_empty() {
                    true => Vec::new(),
                    false => self.seen.drop_seen(&mut readings, &mut sources),
                };
                if readings.is_empty() {
                    // Every message was given already (logged before a crash,
                    // or delivered again while its outputs wait for the
                    // disk): acknowledge once everything before is stored,
                    // never before (its outputs would be lost with a crash
                    // now), and only if the outputs of its first delivery
                    // were stored: given up, the message stays
                    // unacknowledged, and after a restart it is given again
                    // (twice, for the plugin, if a state saved after it is
                    // resumed). Given again now, it would count twice.
                    if let Some(done) = done {
                        self.emitter.after_commit(done, given_before);
                    }
                    return;
                }
                let done = done.map(|done| (done, given_before));
                self.stats
                    .readings_in
                    .fetch_add(readings.len() as u64, Ordering::Relaxed);
                let now_ms = self.context.clock.now_ms();
                (
                    Input::Readings {
                        now_ms,
                        readings,
                        sources,
                    },
                    done,
                )
            }
            Held::Tick(now_ms) => (Input::Tick(now_ms), None),
        };
        self.position += 1;
        let records = if self.context.input_log {
            vec![Record::Input {
                position: self.position,
                created_ms: wall_ms(),
                readings: input.readings() as u32,
                data: input.encode(),
            }]
        } else {
            Vec::new()
        };
        let Some(instance) = self.instance.as_mut() else { return };
        let result = give(instance, &self.pinned, &input, &self.stats);
        let outputs = instance.take_outputs();
        self.stats
            .logs_dropped
            .store(self.logs_dropped_before + instance.logs_dropped(), Ordering::Relaxed);
        self.stats.wakes_deferred.store(
            self.wakes_deferred_before + instance.wakes_deferred(),
            Ordering::Relaxed,
        );
        let stored = self.emitter.emit(outputs, records);
        self.tell_flagged();
        if let Input::Readings { sources, .. } = &input {
            self.seen.insert(sources, &stored);
        }
        if let Some(recovery) = self.recovery.as_mut() {
            recovery.given(self.position, input, result.is_err());
        }
        match result {
            Ok(()) => {
                self.supervisor.succeeded();
                self.snapshot_if_due();
            }
            Err(error) => self.failed(error),
        }
        if let Some((done, mut given_before)) = done {
            given_before.push(stored);
            self.emitter.after_commit(done, given_before);
        }
    }

    /// Take a snapshot for recovery when enough inputs have passed since the
    /// last one, and save it in the journal (after the outputs before it).
    /// A snapshot the runtime refuses is counted and tried again later; a
    /// failure of the plugin in `snapshot` is its failure.
    fn snapshot_if_due(&mut self) {
        if self.probation.is_some() {
            // On probation the journal keeps the state saved at the switch:
            // a restart runs the healthy version from it and the log.
            return;
        }
        self.snapshot_when(Recovery::snapshot_due);
    }

    /// Take and save a snapshot if `due` says so of the recovery.
    pub(super) fn snapshot_when(&mut self, due: fn(&Recovery) -> bool) {
        let (Some(recovery), Some(instance)) = (self.recovery.as_mut(), self.instance.as_mut()) else {
            return;
        };
        if recovery.snapshots_given_up() || recovery.snapshot_held_back() || !due(recovery) {
            return;
        }
        match timed(&self.stats, Call::Snapshot, || instance.snapshot()) {
            Ok(snapshot) => {
                let start = Start {
                    snapshot,
                    position: self.position,
                    next_seq: self.emitter.next_seq(),
                };
                recovery.snapshotted(start.clone());
                self.save(start);
            }
            Err(error) if error.kind.poisons() => {
                self.stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                let traps = recovery.snapshot_trapped();
                if recovery.snapshots_given_up() {
                    let message = format!(
                        "its state is no longer saved: `snapshot` failed {traps} times in a row ({error}); \
                         it runs on from its state in memory, which a restart of the host may lose"
                    );
                    tracing::error!(plugin = %self.name(), "{message}");
                    self.host_alert(DEGRADED, message);
                }
                self.failed(error);
            }
            Err(error) => {
                self.stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                let (refusals, wait) = recovery.snapshot_refused();
                tracing::warn!(plugin = %self.name(), %error, refusals, "No snapshot: tried again after {wait} inputs; a failure until then may restart the plugin without its state");
                if refusals == 1 {
                    self.host_alert(
                        DEGRADED,
                        format!(
                            "its state is not saved: its snapshot was refused ({error}); tried again after {wait} \
                             inputs, then less and less often; a restart of the host until then may lose it"
                        ),
                    );
                }
            }
        }
    }

    /// Save a snapshot in the journal: committed after every output made
    /// before it, so recovery from it never misses one. Returns whether it
    /// was stored (read it once the writer has committed it).
    pub(super) fn save(&mut self, start: Start) -> Arc<AtomicBool> {
        let state = SavedState {
            position: start.position,
            next_seq: start.next_seq,
            schema: start.snapshot.schema,
            data: start.snapshot.data,
        };
        self.emitter.journal(vec![Record::State(state)])
    }

    /// Build the first instance: from the saved state and the inputs logged
    /// after it when there are some (the host restarted, or crashed), afresh
    /// otherwise; a failure is supervised like any other.
    pub(super) fn start_first(&mut self) {
        if let Some(why) = self.unreadable_state.take() {
            self.state_lost(&format!(
                "its saved state cannot be read ({why}); it is moved aside, the logged inputs are given again"
            ));
        }
        for why in std::mem::take(&mut self.skipped_inputs) {
            self.stats.inputs_set_aside.fetch_add(1, Ordering::Relaxed);
            let message = format!("{why}: the plugin's state goes on without it");
            tracing::error!(plugin = %self.name(), "{message}");
            self.host_alert(SET_ASIDE, message);
        }
        let resuming = self
            .recovery
            .as_mut()
            .and_then(Recovery::plan)
            .is_some_and(|(start, _, since)| start.is_some() || !since.is_empty());
        match self.recover() {
            Ok(instance) => {
                if resuming {
                    tracing::info!(plugin = %self.name(), position = self.position, "Plugin resumed from its saved state and input log");
                }
                self.instance = Some(instance);
                self.set_state(Health::Running);
                self.show_provenance();
                if self.probation.is_some() {
                    self.tell_probation(Outcome::Running {
                        note: None,
                        pause: std::time::Duration::ZERO,
                    });
                } else {
                    self.snapshot_when(Recovery::gave_inputs_again);
                }
            }
            Err(error) => self.failed(error),
        }
    }

    /// At the end of the worker: save the plugin's state in the journal (the
    /// writer commits it before it stops).
    fn save_final(&mut self) {
        if self.recovery.as_ref().is_none_or(Recovery::snapshots_given_up) || self.probation.is_some() {
            // On probation: the state saved at the switch stands (a restart
            // runs the healthy version). Snapshots given up: one more would
            // kill the instance again, spending the shutdown's time.
            return;
        }
        let stats = &self.stats;
        match self
            .instance
            .as_mut()
            .map(|instance| timed(stats, Call::Snapshot, || instance.snapshot()))
        {
            Some(Ok(snapshot)) => {
                let start = Start {
                    snapshot,
                    position: self.position,
                    next_seq: self.emitter.next_seq(),
                };
                self.save(start);
            }
            Some(Err(error)) => {
                self.stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(plugin = %self.name(), %error, "No snapshot at shutdown: the next run resumes from the last saved one and the input log");
            }
            None => {}
        }
    }

    /// Build and initialise a new instance (recovering the plugin's state
    /// when it can); on failure, held work waits for the next attempt.
    fn restart(&mut self) {
        match self.recover() {
            Ok(instance) => {
                // Running before it is counted: a restart counted is one
                // the status shows done.
                self.instance = Some(instance);
                self.set_state(Health::Running);
                self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %self.name(), "Plugin instance restarted");
                self.snapshot_when(Recovery::gave_inputs_again);
            }
            Err(error) => self.failed(error),
        }
    }

    /// A new instance in the state of the one that failed: started from the
    /// last snapshot and given the inputs since again, their outputs (made
    /// before) not emitted twice. An input that fails again and has now
    /// failed [`SET_ASIDE_AFTER`] times is set aside, and the failure
    /// supervised as usual: the next attempt goes on without it. Without a
    /// snapshot to start from, or if the plugin refuses it (or traps in
    /// `init` from it), the plugin starts afresh, the state moved aside. A
    /// start from it that fails for a reason that may pass (a deadline...)
    /// is supervised as any failure and the next attempt starts from it
    /// again; after [`STATE_ASIDE_AFTER`] such failures in a row it is moved
    /// aside too.
    pub(super) fn recover(&mut self) -> Result<PluginInstance, PluginError> {
        let Some(mut recovery) = self.recovery.take() else {
            self.emitter.resume();
            return self.new_instance(None);
        };
        let mut quick = 0;
        let result = loop {
            match self.recover_with(&mut recovery) {
                Ok(instance) => break Ok(instance),
                Err((error, Progress::Retry)) if quick < QUICK_RETRIES => {
                    quick += 1;
                    tracing::warn!(plugin = %self.name(), %error, "The plugin failed while recovering; again at once");
                }
                Err((error, Progress::Retry)) => break Err(error),
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
        let fresh = |thread: &mut PluginThread, recovery: &mut Recovery| {
            thread.emitter.resume();
            recovery.forget(thread.emitter.next_seq());
            thread.new_instance(None).map_err(|e| (e, Progress::None))
        };
        let (snapshot, next_seq) = match recovery.plan() {
            None => {
                self.state_lost("the inputs since the last snapshot were not all kept");
                return fresh(self, recovery);
            }
            Some((None, _, since)) if since.is_empty() => {
                self.emitter.resume();
                return self.new_instance(None).map_err(|e| (e, Progress::None));
            }
            Some((start, next_seq, _)) => (start.map(|start| start.snapshot.clone()), next_seq),
        };
        let mut instance = match self.new_instance(snapshot.as_ref()) {
            Ok(instance) => instance,
            Err(error) if snapshot.is_some() && error.kind.is_transient() => {
                let failures = recovery.start_failed();
                if failures < STATE_ASIDE_AFTER {
                    // Kept: supervised as any failure (backoff), and the
                    // next attempt starts from the same state and inputs.
                    // Nothing was changed yet: the recovery goes back to
                    // `self.recovery` as it was (its state, the inputs
                    // since, their outputs' numbers), the emitter was not
                    // rewound, and the work that comes meanwhile is held,
                    // not logged, until an instance runs.
                    tracing::warn!(
                        plugin = %self.name(),
                        %error,
                        failures,
                        "The plugin failed to start from its saved state; trying again from it after the backoff"
                    );
                    return Err((error, Progress::None));
                }
                self.set_state_aside(&format!(
                    "the plugin failed to start from it {failures} times in a row: {error}"
                ));
                self.state_lost(&format!(
                    "it failed to start from its saved state {failures} times in a row ({error}); that state is kept aside"
                ));
                return fresh(self, recovery);
            }
            // A refusal of the state, or a trap in `init` (deterministic:
            // it would come again with the same state): set aside at once.
            Err(error) if snapshot.is_some() => {
                self.set_state_aside(&format!("the plugin refused it: {error}"));
                self.state_lost(&format!(
                    "it refused its saved state ({error}); that state is kept aside"
                ));
                return fresh(self, recovery);
            }
            Err(error) => return Err((error, Progress::None)),
        };
        recovery.started();
        self.stats.recoveries.fetch_add(1, Ordering::Relaxed);
        let next_seq = match next_seq {
            // The old version's state at a deployment's switch: the numbers
            // after it are the new version's outputs, not this version's. It
            // numbers on after them, the state saved again with that number
            // before any of its outputs is stored (a crash then gives them
            // again under the same numbers, not twice).
            NEXT_AFTER_HIGHEST => {
                let next_seq = self.emitter.after_highest();
                if let Some(start) = recovery.renumber(next_seq) {
                    self.save(start);
                }
                next_seq
            }
            next_seq => next_seq,
        };
        self.emitter.rewind(next_seq);
        let Some((_, _, since)) = recovery.plan() else {
            return Ok(instance); // Unreachable: the plan was there just above.
        };
        let mut index = 0;
        while let Some(kept) = since.get_mut(index) {
            let result = give(&mut instance, &self.pinned, &kept.input, &self.stats);
            let outputs = instance.take_outputs();
            self.emitter.emit(outputs, Vec::new());
            self.tell_flagged();
            match result {
                Ok(()) => {
                    // Only failures in a row count against an input: a
                    // plugin that fails at random does not fail on the same
                    // input several times running.
                    kept.failures = 0;
                    index += 1;
                }
                Err(error) => {
                    kept.failures += 1;
                    if kept.failures < SET_ASIDE_AFTER - 1 {
                        // Few failures in a row on this input: a plugin
                        // that fails at random rather than on it is most
                        // likely. Again at once.
                        return Err((error, Progress::Retry));
                    }
                    if kept.failures < SET_ASIDE_AFTER {
                        return Err((error, Progress::None));
                    }
                    let Some(kept) = since.remove(index) else {
                        return Err((error, Progress::None));
                    };
                    match kept.input {
                        // Not the whole batch for one bad reading: its
                        // readings are given one by one next time, and the
                        // one that fails again is set aside alone.
                        Input::Readings {
                            now_ms,
                            readings,
                            sources,
                        } if readings.len() > 1 => {
                            for (offset, reading) in readings.into_iter().enumerate() {
                                let input = Input::Readings {
                                    now_ms,
                                    readings: vec![reading],
                                    sources: sources.get(offset).map(|s| vec![*s]).unwrap_or_default(),
                                };
                                since.insert(
                                    index + offset,
                                    Kept {
                                        position: kept.position,
                                        reading: Some(offset as u32),
                                        input,
                                        failures: SET_ASIDE_AFTER - 1,
                                    },
                                );
                            }
                        }
                        _ => self.set_aside(&kept, &error),
                    }
                    return Err((error, Progress::Made));
                }
            }
        }
        self.emitter.resume();
        Ok(instance)
    }

    /// Record and report an input set aside: it made the plugin fail again.
    fn set_aside(&mut self, kept: &Kept, error: &PluginError) {
        self.stats.inputs_set_aside.fetch_add(1, Ordering::Relaxed);
        let what = match &kept.input {
            Input::Readings { readings, .. } => match readings.as_slice() {
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
            Input::Tick(now_ms) => format!("the tick at {now_ms} ms"),
        };
        let message = format!(
            "{what} made the plugin fail {SET_ASIDE_AFTER} times ({}): set aside, never given again",
            error.kind.tag()
        );
        tracing::error!(plugin = %self.name(), position = kept.position, "{message}");
        self.emitter.journal(vec![Record::SetAside {
            position: kept.position,
            reading: kept.reading,
            reason: message.clone(),
        }]);
        self.host_alert(SET_ASIDE, message);
    }

    /// Move the plugin's saved state aside in the journal (kept for an
    /// operator, and for a version that can take it: a rollback).
    fn set_state_aside(&mut self, reason: &str) {
        let moved = self
            .context
            .outbox
            .lock()
            .map_err(|_| crate::outbox::OutboxError::Poisoned)
            .and_then(|mut outbox| outbox.set_state_aside(self.name(), reason));
        match moved {
            Ok(()) => tracing::warn!(plugin = %self.name(), "Saved state moved aside"),
            Err(error) => {
                tracing::error!(plugin = %self.name(), error = %crate::error_chain(&error), "Cannot move the saved state aside")
            }
        }
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
    pub(super) fn new_instance(&mut self, snapshot: Option<&Snapshot>) -> Result<PluginInstance, PluginError> {
        self.new_instance_with(snapshot, InitOutputs::Dropped)
    }

    /// [`PluginThread::new_instance`], saying what becomes of the outputs
    /// of an `init` given `snapshot` ([`InitOutputs`]).
    pub(super) fn new_instance_with(
        &mut self,
        snapshot: Option<&Snapshot>,
        init_outputs: InitOutputs,
    ) -> Result<PluginInstance, PluginError> {
        // The plugin reads the host clock (simulated when configured) through WASI.
        let (clock, pinned) = (self.context.clock.clone(), self.pinned.clone());
        let clock = PluginClock::host(move || match pinned.load(Ordering::Relaxed) {
            UNPINNED => clock.now_ms(),
            pinned => pinned,
        });
        let instance = PluginInstance::with_clock(&self.context.runtime, &self.plugin, self.limits.clone(), clock)
            .and_then(|mut instance| {
                timed(&self.stats, Call::Init, || {
                    instance.init_with(&self.config, snapshot, init_outputs)
                })
                .map(|()| instance)
            })?;
        if let Some(accept) = self.accept.take()
            && let Err(error) = accept()
        {
            tracing::error!(plugin = %self.name(), error = %crate::error_chain(error.as_ref()), "Cannot record the version as accepted");
        }
        Ok(instance)
    }

    /// A call or a start failed: discard a poisoned instance, pause or
    /// quarantine the plugin, and say so loudly (log and `plugin-degraded`).
    pub(super) fn failed(&mut self, error: PluginError) {
        if self.probation_failed(&error) {
            return; // Rolled back (or stopped), not restarted.
        }
        let tag = error.kind.tag();
        if error.kind.poisons() {
            // A Store is never reused after a trap: the next run builds a new one.
            self.drop_instance();
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
    /// Drop the running instance, keeping its counts.
    pub(super) fn drop_instance(&mut self) {
        if let Some(instance) = self.instance.take() {
            self.logs_dropped_before += instance.logs_dropped();
            self.wakes_deferred_before += instance.wakes_deferred();
        }
    }

    pub(super) fn host_alert(&mut self, code: &str, message: String) {
        self.host_alert_of(Severity::Critical, code, message);
    }

    /// An alert of the host about this plugin, of `severity`.
    fn host_alert_of(&mut self, severity: Severity, code: &str, message: String) {
        let alert = Alert {
            sensor: String::new(),
            timestamp_ms: self.context.clock.now_ms(),
            severity,
            code: code.to_owned(),
            message,
            value: None,
        };
        self.emitter.emit_host(alert);
    }

    /// Tell the operator of outputs just emitted with problems: a warning
    /// in the log and a `plugin-output-flagged` alert at the first, then at
    /// most once an hour ([`Retell`]) with every one since. A warning, not
    /// critical: each output went on as the plugin made it, naming its
    /// problems; what is wrong is the plugin, for its author to mend.
    fn tell_flagged(&mut self) {
        let (count, problems) = self.emitter.take_flagged();
        if count == 0 {
            return;
        }
        self.flagged.1 = self.flagged.1.union(problems);
        let Some(told) = self.flagged.0.occurred(count, Instant::now()) else {
            return;
        };
        let problems = std::mem::take(&mut self.flagged.1).names();
        let message = format!(
            "{told} output(s) with problems ({problems}) since last told; each sent on as made, naming its problems"
        );
        tracing::warn!(plugin = %self.name(), "{message}");
        self.host_alert_of(Severity::Warning, OUTPUT_FLAGGED, message);
    }

    /// Show `health` in the status (the lock is taken only on a change):
    /// a plugin that may run but has no instance yet is `starting` (the
    /// loop builds one next), not `running`.
    fn set_state(&mut self, health: Health) {
        let state = match health {
            Health::Running if self.instance.is_none() => super::STARTING,
            health => health.name(),
        };
        if self.shown_state == state {
            return;
        }
        self.shown_state = state;
        if let Ok(mut report) = self.stats.health.lock() {
            report.state = state;
        }
    }
}

/// `pinned` when no call is under way: the plugin reads the host clock.
const UNPINNED: i64 = i64::MIN;

/// `call`, counted as a step of the worker before and after (the
/// watchdog's sign of progress: a call ends within its deadline), its
/// duration counted in `stats.call_times` when they are kept.
fn timed<T>(stats: &PluginStats, which: Call, call: impl FnOnce() -> T) -> T {
    stats.steps.fetch_add(1, Ordering::Relaxed);
    let result = match &stats.call_times {
        None => call(),
        Some(times) => {
            let started = Instant::now();
            let result = call();
            times.record(which, started.elapsed());
            result
        }
    };
    stats.steps.fetch_add(1, Ordering::Relaxed);
    result
}

/// Give `input` to `instance`, the host clock pinned to the input's time
/// (the call counted in `stats`, see [`timed`]).
fn give(
    instance: &mut PluginInstance,
    pinned: &AtomicI64,
    input: &Input,
    stats: &PluginStats,
) -> Result<(), PluginError> {
    let result = match input {
        Input::Readings { now_ms, readings, .. } => {
            pinned.store(*now_ms, Ordering::Relaxed);
            timed(stats, Call::OnReadings, || instance.on_readings(readings))
        }
        Input::Tick(now_ms) => {
            pinned.store(*now_ms, Ordering::Relaxed);
            timed(stats, Call::OnTick, || instance.on_tick(*now_ms))
        }
    };
    pinned.store(UNPINNED, Ordering::Relaxed);
    result
}

/// The JetStream messages a plugin's log holds, by stream sequence (the
/// latest [`Seen::KEPT`]): one that comes again (logged, but the crash came
/// before its acknowledgement) is not given twice.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Each source, with whether the outputs of the input that took it were
    /// stored (set by the writer, read once it has committed).
    set: HashMap<u64, Arc<AtomicBool>>,
    order: VecDeque<u64>,
}

impl Seen {
    /// Stream sequences remembered at most: far more than can be logged but
    /// not yet acknowledged, and as many inputs as are read back at start.
    const KEPT: usize = crate::outbox::RECENT_INPUTS;

    /// Remember `sources` (0: unknown, never remembered), given in an input
    /// whose outputs' `stored` the writer sets.
    pub(super) fn insert(&mut self, sources: &[u64], stored: &Arc<AtomicBool>) {
        for &source in sources {
            if source != 0 && self.set.insert(source, stored.clone()).is_none() {
                self.order.push_back(source);
                if self.order.len() > Self::KEPT
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.set.remove(&oldest);
                }
            }
        }
    }

    /// Drop the readings whose message was given already: whether the
    /// outputs of the inputs that took them were stored, one flag each.
    fn drop_seen(&self, readings: &mut Vec<crate::model::Reading>, sources: &mut Vec<u64>) -> Vec<Arc<AtomicBool>> {
        if sources.len() != readings.len() || !sources.iter().any(|s| self.set.contains_key(s)) {
            return Vec::new();
        }
        let mut stored: Vec<Arc<AtomicBool>> = Vec::new();
        for flag in sources.iter().filter_map(|s| self.set.get(s)) {
            if !stored.iter().any(|known| Arc::ptr_eq(known, flag)) {
                stored.push(flag.clone());
            }
        }
        let mut keep = sources.iter().map(|s| !self.set.contains_key(s));
        readings.retain(|_| keep.next().unwrap_or(true));
        sources.retain(|s| !self.set.contains_key(s));
        stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reading;

    #[test]
    fn readings_of_messages_seen_already_are_dropped_and_the_memory_is_bounded() {
        let mut seen = Seen::default();
        let stored = Arc::new(AtomicBool::new(true));
        seen.insert(&[7, 7, 8, 0], &stored);
        let reading = |value: f64| Reading {
            sensor: "s".to_owned(),
            timestamp_ms: 0,
            value,
            unit: String::new(),
        };
        let mut readings = vec![reading(1.0), reading(2.0), reading(3.0), reading(4.0)];
        let mut sources = vec![7, 9, 8, 0];
        let flags = seen.drop_seen(&mut readings, &mut sources);
        assert_eq!(flags.len(), 1, "one input's flag, once");
        let values: Vec<f64> = readings.iter().map(|r| r.value).collect();
        assert_eq!(
            values,
            [2.0, 4.0],
            "7 and 8 were logged; 0 (unknown) is never taken as seen"
        );
        assert_eq!(sources, [9, 0]);
        for source in 1..=(Seen::KEPT as u64 + 10) {
            seen.insert(&[source + 100], &stored);
        }
        assert_eq!(seen.set.len(), Seen::KEPT);
        assert!(!seen.set.contains_key(&7), "the oldest are forgotten first");
    }

    #[test]
    fn a_message_given_again_is_known_by_whether_its_first_delivery_was_stored() {
        // The writer gave up its outputs (past the memory bound on a full
        // disk, or an error): the message delivered again must not be
        // acknowledged as if they were stored.
        let mut seen = Seen::default();
        let given_up = Arc::new(AtomicBool::new(true));
        seen.insert(&[7], &given_up);
        given_up.store(false, Ordering::Release);
        let stored = Arc::new(AtomicBool::new(true));
        seen.insert(&[8], &stored);
        let reading = Reading {
            sensor: "s".to_owned(),
            timestamp_ms: 0,
            value: 1.0,
            unit: String::new(),
        };
        let (mut readings, mut sources) = (vec![reading.clone(), reading], vec![7, 8]);
        let flags = seen.drop_seen(&mut readings, &mut sources);
        assert!(readings.is_empty());
        let stored: Vec<bool> = flags.iter().map(|flag| flag.load(Ordering::Acquire)).collect();
        assert_eq!(stored, [false, true]);
    }

    /// The watchdog's sign of progress (`run::systemd`): a call is a step as
    /// it begins and as it ends, so a recovery giving thousands of inputs
    /// again in one turn of the loop still steps.
    #[test]
    fn a_call_into_the_plugin_is_a_step_as_it_begins_and_as_it_ends() {
        let stats = PluginStats::default();
        let during = timed(&stats, Call::OnTick, || stats.steps.load(Ordering::Relaxed));
        assert_eq!(during, 1, "begun");
        assert_eq!(stats.steps.load(Ordering::Relaxed), 2, "ended");
    }
}
