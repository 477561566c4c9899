//! A new version of a running plugin (a deployment), switched to between two
//! inputs of its queue: the old instance's snapshot starts the new one, the
//! input log goes on at the same position and the output numbers at the same
//! count, so no reading is lost or given twice. The new version is then on
//! probation: a failure within it rolls the plugin back to the old version,
//! which gets its state back (the snapshot at the switch and the inputs
//! since, given again, their outputs not emitted twice); surviving it makes
//! the new version healthy (recorded for anti-rollback, its state saved).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::recovery::{PROBATION_KEPT, Recovery, Start};
use super::supervisor::Supervisor;
use super::thread::PluginThread;
use super::{Accept, DEGRADED, PluginSetup, takes_snapshots};
use crate::bus::ingest::IngestHealth;
use crate::envelope::Provenance;
use crate::model::{Alert, Severity};
use crate::outbox::NEXT_AFTER_HIGHEST;
use crate::runtime::{CompiledPlugin, InitOutputs, Limits, PluginError, Snapshot, SnapshotSchemas};

/// The code of the host's alert when a new version is rolled back.
pub const ROLLED_BACK: &str = "deployment-rolled-back";

/// A new version for a running worker ([`super::Work::Swap`]).
pub struct Swap {
    /// The new version.
    pub setup: PluginSetup,
    /// Its probation.
    pub probation: ProbationSetup,
}

/// What a deployment's probation needs.
pub struct ProbationSetup {
    /// Names the deployment in the events.
    pub id: u64,
    /// How long the new version must run without a failure.
    pub length: Duration,
    /// Where the outcome goes.
    pub events: UnboundedSender<DeployEvent>,
    /// Run once healthy, after the new version's state is durable: makes it
    /// the version a restart runs (the device's healthy set) and records it
    /// for anti-rollback, in that order.
    pub accept: Option<Accept>,
    /// For a plugin new on the device, or a version that changes what the
    /// plugin's ingest reads: passing the probation needs that input too.
    pub input: Option<InputCheck>,
}

/// The input of a plugin new on the device, or of a new version that reads
/// other subjects than the one it replaces: its probation passes only once
/// the plugin's ingest reads them (`filters`, by `health`), and fails, at
/// once, while that input is lost before they are read (the bus refused
/// the change, say), or when the bus refuses one of them at any time of the
/// probation (a core NATS subscription the server's permissions refuse is
/// refused after it was made, and read by then). A version is not made the
/// one a restart runs, reported `healthy`, while it gets no readings;
/// rolled back, the version before it reads its own subjects again (a new
/// plugin has none: it is stopped). Once they are read, the input is the
/// device's, as for any version: a later loss (the bus away) is alerted,
/// not judged.
pub struct InputCheck {
    /// The plugin's input health.
    health: Arc<IngestHealth>,
    /// What the new version's input reads.
    filters: Vec<String>,
    /// The bus's refusals before the check: those after count.
    refusals_before: u64,
    /// Whether the ingest was seen reading `filters`.
    read: bool,
}

impl InputCheck {
    /// The check that the plugin's ingest, by `health`, reads `filters`.
    /// Made before the ingest is given them: refusals counted from now on
    /// are of them.
    pub fn new(health: Arc<IngestHealth>, filters: Vec<String>) -> InputCheck {
        let refusals_before = health.refusals().count;
        InputCheck {
            health,
            filters,
            refusals_before,
            read: false,
        }
    }

    /// Why the bus refused one of the filters, if it did since the check
    /// was made. (A refusal of a filter the version does not read is the
    /// version's before it, not yet changed.)
    fn refused(&self) -> Option<String> {
        let refusals = self.health.refusals();
        match refusals.last {
            Some((filter, reason)) if refusals.count > self.refusals_before && self.filters.contains(&filter) => {
                Some(reason)
            }
            _ => None,
        }
    }
}

/// How long past its length a probation waits for its input to read the new
/// subjects (a JetStream stream that does not exist yet, say) before that
/// fails it.
pub const INPUT_WAIT: Duration = Duration::from_secs(30);

/// How often a probation waiting for its input looks at it.
const INPUT_POLL: Duration = Duration::from_millis(20);

/// What became of a deployment, as the worker tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployEvent {
    /// The deployment ([`ProbationSetup::id`]).
    pub id: u64,
    /// The plugin.
    pub plugin: String,
    /// What happened.
    pub outcome: Outcome,
}

/// The phases a worker reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new version runs, on probation.
    Running {
        /// A note, e.g. that the old state could not be carried over.
        note: Option<String>,
        /// How long the plugin's input waited for the switch (snapshot of
        /// the old instance, start of the new one from it); zero for a
        /// plugin new on the device.
        pause: Duration,
    },
    /// It passed its probation.
    Healthy,
    /// It failed; the earlier version runs again with its state.
    RolledBack(String),
    /// It failed and there is no earlier version: the plugin is stopped.
    Failed(String),
    /// A newer deployment of the plugin replaced it during its probation.
    /// Not a failure: it ended, and the version to go back to stays the
    /// last healthy one.
    Superseded,
}

/// A version on probation.
pub(super) struct Probation {
    id: u64,
    until: Instant,
    events: UnboundedSender<DeployEvent>,
    accept: Option<Accept>,
    /// The input it waits for, until it is read ([`InputCheck`]).
    input: Option<InputCheck>,
    /// The version to go back to; `None` for a plugin new on the device.
    previous: Option<Previous>,
}

/// A version past its probation, waiting for its state to be stored before
/// it is recorded as healthy ([`PluginThread::promote`]).
pub(super) struct Promotion {
    probation: Probation,
    /// The version promoted (a newer one may run by the time it is stored).
    version: String,
    /// For a plugin that keeps state: told once the state saved at the
    /// promotion is committed (disconnected: never), and whether it was
    /// stored.
    state: Option<(Receiver<()>, Arc<AtomicBool>)>,
}

/// The version a swap replaced.
struct Previous {
    plugin: Arc<CompiledPlugin>,
    provenance: Provenance,
    config: Vec<(String, String)>,
    limits: Limits,
}

impl std::fmt::Debug for Swap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swap")
            .field("provenance", &self.setup.provenance)
            .field("deployment", &self.probation.id)
            .finish_non_exhaustive()
    }
}

impl Probation {
    /// The probation of a plugin new on the device.
    pub(super) fn first(setup: ProbationSetup) -> Probation {
        Probation {
            id: setup.id,
            until: Instant::now() + setup.length,
            events: setup.events,
            accept: setup.accept,
            input: setup.input,
            previous: None,
        }
    }

    /// Where the probation stands at `now`: passed (`Ok(None)`), to be
    /// looked at again within the time given, or failed for its input (why).
    pub(super) fn check(&mut self, now: Instant) -> Result<Option<Duration>, String> {
        let left = self.until.checked_duration_since(now).filter(|left| !left.is_zero());
        let Some(input) = &mut self.input else {
            return Ok(left);
        };
        if let Some(reason) = input.refused() {
            return Err(format!("its input is lost: {reason}"));
        }
        if !input.read {
            if let Some(reason) = input.health.lost_reason() {
                return Err(format!("its input is lost: {reason}"));
            }
            input.read = input.health.reads(&input.filters);
        }
        if input.read {
            // Looked at until the end: a refusal may still come.
            if left.is_none() {
                self.input = None;
            }
            return Ok(left.map(|left| left.min(INPUT_POLL)));
        }
        if now >= self.until + INPUT_WAIT {
            return Err(format!(
                "its input does not read {} {} after its probation",
                input.filters.join(", "),
                humantime::format_duration(INPUT_WAIT)
            ));
        }
        Ok(Some(left.map_or(INPUT_POLL, |left| left.min(INPUT_POLL))))
    }
}

/// Whether a snapshot in `from`'s schema may start `to` (as the manifests say).
fn fits(from: &SnapshotSchemas, to: &SnapshotSchemas) -> Result<(), String> {
    match (from, to) {
        (SnapshotSchemas::Declared { writes, .. }, SnapshotSchemas::Declared { reads, .. })
            if reads.contains(writes) =>
        {
            Ok(())
        }
        (SnapshotSchemas::Declared { writes, .. }, SnapshotSchemas::Declared { reads, .. }) => Err(format!(
            "the new version reads snapshot schemas {reads:?}, not {writes}: it starts without the old state"
        )),
        (SnapshotSchemas::Declared { .. }, _) => {
            Err("the new version declares no snapshot schema: it starts without the old state".to_owned())
        }
        _ => Err("the old version keeps no state to carry over".to_owned()),
    }
}

impl PluginThread {
    /// Tell the deployment's owner.
    fn tell(probation: &Probation, plugin: &str, outcome: Outcome) {
        let _ = probation.events.send(DeployEvent {
            id: probation.id,
            plugin: plugin.to_owned(),
            outcome,
        });
    }

    /// Tell the owner of the deployment on probation, if any.
    pub(super) fn tell_probation(&self, outcome: Outcome) {
        if let Some(probation) = &self.probation {
            Self::tell(probation, self.name(), outcome);
        }
    }

    /// Switch to the new version of `swap` between two inputs.
    pub(super) fn swap(&mut self, swap: Swap) {
        let began = Instant::now();
        let Swap { setup, probation } = swap;
        // Whether no version of the plugin has been healthy on this device
        // (the one running is on its first probation): then there is none
        // to go back to, whatever runs now.
        let mut unproven = false;
        if let Some(earlier) = self.probation.take() {
            // A newer deployment supersedes one still on probation: the
            // version to go back to stays the last healthy one.
            Self::tell(&earlier, self.name(), Outcome::Superseded);
            match earlier.previous {
                Some(previous) => {
                    self.restore(previous);
                    self.instance = None;
                    self.recover_previous();
                }
                None => unproven = true,
            }
        }
        // The running version's snapshots are given up (each killed it):
        // its state is the last one saved and the inputs since, as when it
        // is down, not a snapshot now (which would kill it again and refuse
        // every deployment, a fixed version's too). The new version tries
        // snapshots again.
        if let Some(recovery) = self.recovery.as_mut()
            && recovery.snapshots_given_up()
        {
            recovery.try_snapshots_again();
            self.drop_instance();
        }
        let carried = fits(self.plugin.snapshot_schemas(), setup.compiled.snapshot_schemas());
        // The old version's state now, at this position of the log: what the
        // new version starts from, and what a rollback goes back to. The new
        // version's outputs go on from the old one's count; the old version,
        // started from this state again, numbers its own after every number
        // used meanwhile (they were the new version's: other outputs).
        let start = match (&carried, self.instance.as_mut()) {
            (_, Some(instance)) if takes_snapshots(&self.plugin) => match instance.snapshot() {
                Ok(snapshot) => Some(Start {
                    snapshot,
                    position: self.position,
                    next_seq: NEXT_AFTER_HIGHEST,
                }),
                Err(error) => {
                    let reason = format!("the running version could not give its state ({error})");
                    let _ = probation.events.send(DeployEvent {
                        id: probation.id,
                        plugin: self.name().to_owned(),
                        outcome: Outcome::RolledBack(reason),
                    });
                    if error.kind.poisons() {
                        self.failed(error);
                    }
                    return;
                }
            },
            _ => None,
        };
        let previous = Previous {
            plugin: std::mem::replace(&mut self.plugin, setup.compiled),
            provenance: std::mem::replace(&mut self.emitter.provenance, setup.provenance),
            config: std::mem::replace(&mut self.config, setup.config),
            limits: std::mem::replace(&mut self.limits, setup.limits),
        };
        let mut probation = Probation {
            id: probation.id,
            until: Instant::now() + probation.length,
            events: probation.events,
            accept: probation.accept,
            input: probation.input,
            previous: (!unproven).then_some(previous),
        };
        let note = carried.as_ref().err().cloned();
        let started = match (&start, self.instance.is_some()) {
            // The old instance ran: the new one starts from its state now
            // (what its `init` says, it says for the first time).
            (Some(start), true) => {
                self.new_instance_with(carried.is_ok().then_some(&start.snapshot), InitOutputs::Kept)
            }
            (None, true) => self.new_instance(None),
            // The old version is down: the new one recovers from its last
            // saved state and the inputs since (or starts afresh).
            (_, false) => {
                if carried.is_err()
                    && let Some(recovery) = self.recovery.as_mut()
                {
                    recovery.forget(self.emitter.next_seq());
                }
                self.recover()
            }
        };
        match started {
            Ok(instance) => {
                if let Some(start) = start {
                    // Saved at the switch: a crash during the probation
                    // restarts the healthy version from here and the log.
                    self.save(start.clone());
                    let mut recovery = Recovery::resumed(Some(start), Some(Vec::new()));
                    recovery.set_limit(PROBATION_KEPT);
                    self.recovery = Some(recovery);
                } else if let Some(recovery) = self.recovery.as_mut() {
                    recovery.set_limit(PROBATION_KEPT);
                }
                self.instance = Some(instance);
                self.supervisor = Supervisor::new(self.context.policy.clone());
                self.show_provenance();
                tracing::info!(plugin = %self.name(), version = %self.emitter.provenance.version, "New version running, on probation");
                let pause = began.elapsed();
                Self::tell(&probation, self.name(), Outcome::Running { note, pause });
                self.probation = Some(probation);
            }
            Err(error) => {
                let reason = format!("{}: {error}", error.kind.tag());
                match probation.previous.take() {
                    Some(previous) => {
                        self.restore(previous);
                        tracing::error!(plugin = %self.name(), %reason, "New version did not start; the running version goes on");
                        self.rolled_back_alert(&reason);
                        Self::tell(&probation, self.name(), Outcome::RolledBack(reason));
                    }
                    None => {
                        // Nothing healthy to go back to: stopped, as a new
                        // plugin that fails its probation.
                        self.probation = Some(probation);
                        self.probation_failed(&error);
                    }
                }
            }
        }
    }

    /// Put `previous` back as the plugin's version (its instance not built).
    fn restore(&mut self, previous: Previous) {
        self.plugin = previous.plugin;
        self.emitter.provenance = previous.provenance;
        self.config = previous.config;
        self.limits = previous.limits;
        self.show_provenance();
    }

    /// A new instance of the restored version, from its state at the switch
    /// and the inputs since; a failure is supervised as any other.
    fn recover_previous(&mut self) {
        self.supervisor = Supervisor::new(self.context.policy.clone());
        match self.recover() {
            Ok(instance) => {
                self.instance = Some(instance);
                if let Some(recovery) = self.recovery.as_mut() {
                    recovery.set_limit(super::recovery::KEPT_AT_MOST);
                }
                self.snapshot_when(Recovery::gave_inputs_again);
            }
            Err(error) => self.failed(error),
        }
    }

    /// The version on probation failed with `error`: back to the previous
    /// version with its state, or, for a plugin new on the device, stopped.
    /// Returns false when no version is on probation.
    pub(super) fn probation_failed(&mut self, error: &PluginError) -> bool {
        if self.probation.is_none() {
            return false;
        }
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.probation_failed_for(format!("{}: {error}", error.kind.tag()))
    }

    /// The version on probation failed for `reason` (its own call, or its
    /// input): as [`PluginThread::probation_failed`].
    pub(super) fn probation_failed_for(&mut self, reason: String) -> bool {
        let Some(mut probation) = self.probation.take() else {
            return false;
        };
        if let Some(instance) = self.instance.take() {
            self.logs_dropped_before += instance.logs_dropped();
            self.wakes_deferred_before += instance.wakes_deferred();
        }
        tracing::error!(plugin = %self.name(), version = %self.emitter.provenance.version, %reason, "New version failed on probation");
        match probation.previous.take() {
            Some(previous) => {
                self.restore(previous);
                self.rolled_back_alert(&reason);
                self.recover_previous();
                Self::tell(&probation, self.name(), Outcome::RolledBack(reason));
            }
            None => {
                self.retired = true;
                if let Ok(mut report) = self.stats.health.lock() {
                    report.state = "stopped";
                }
                self.host_alert(DEGRADED, format!("new plugin failed on probation ({reason}): stopped"));
                Self::tell(&probation, self.name(), Outcome::Failed(reason));
            }
        }
        true
    }

    /// The version on probation has run its length without a failure:
    /// healthy. Its state is saved now, and once that is durable (a restart
    /// keeps it) it is made the version a restart runs and recorded for
    /// anti-rollback ([`ProbationSetup::accept`]), and the owner is told
    /// ([`PluginThread::finish_promotions`]). The plugin goes on meanwhile:
    /// while the disk refuses writes, the state waits in the writer and the
    /// alerts must not.
    pub(super) fn promote(&mut self) {
        if let Some(recovery) = self.recovery.as_mut() {
            recovery.set_limit(super::recovery::KEPT_AT_MOST);
        }
        let mut state = None;
        if takes_snapshots(&self.plugin) {
            if self.recovery.is_none() {
                self.recovery = Some(Recovery::resumed(None, None));
            }
            let snapshot: Result<Snapshot, PluginError> = match self.instance.as_mut() {
                Some(instance) => instance.snapshot(),
                None => return,
            };
            match snapshot {
                Ok(snapshot) => {
                    let start = Start {
                        snapshot,
                        position: self.position,
                        next_seq: self.emitter.next_seq(),
                    };
                    if let Some(recovery) = self.recovery.as_mut() {
                        recovery.snapshotted(start.clone());
                    }
                    let stored = self.save(start);
                    // Durable before the version is made the one a restart
                    // runs (`accept`: the healthy set, then anti-rollback):
                    // the journal's state must not still be the old
                    // version's at the switch then, or the new version would
                    // number its outputs since the switch again, from after
                    // the highest (emitted twice).
                    state = Some((self.emitter.committed(), stored));
                }
                Err(error) => {
                    // A version that cannot give its state is not healthy.
                    self.probation_failed(&error);
                    return;
                }
            }
        } else {
            self.recovery = None;
        }
        let Some(probation) = self.probation.take() else {
            return;
        };
        self.promotions.push_back(Promotion {
            probation,
            version: self.emitter.provenance.version.clone(),
            state,
        });
        self.finish_promotions(None);
    }

    /// Finish the promotions whose state has been stored (or given up), in
    /// order; with `until`, wait for them up to then (the host stops).
    pub(super) fn finish_promotions(&mut self, until: Option<Instant>) {
        while let Some(promotion) = self.promotions.front() {
            let durable = match &promotion.state {
                None => true,
                Some((committed, stored)) => {
                    let told = match until {
                        None => committed.try_recv().map_err(|e| matches!(e, TryRecvError::Empty)),
                        Some(until) => committed
                            .recv_timeout(until.saturating_duration_since(Instant::now()))
                            .map_err(|e| matches!(e, RecvTimeoutError::Timeout)),
                    };
                    match told {
                        Ok(()) => stored.load(Ordering::Acquire),
                        Err(true) => return, // Not yet.
                        Err(false) => false, // Dropped unrun: the writer has stopped.
                    }
                }
            };
            if let Some(promotion) = self.promotions.pop_front() {
                self.healthy(promotion, durable);
            }
        }
    }

    /// A promotion's state is stored (`durable`), or will not be: record the
    /// version if it is, and tell the owner it is healthy.
    pub(super) fn healthy(&mut self, promotion: Promotion, durable: bool) {
        let Promotion {
            mut probation, version, ..
        } = promotion;
        match probation.accept.take() {
            Some(_) if !durable => {
                tracing::error!(plugin = %self.name(), %version, "Cannot save the healthy version's state: not recorded as the version a restart runs (a restart runs the one before)");
            }
            Some(accept) => {
                if let Err(error) = accept() {
                    tracing::error!(plugin = %self.name(), %version, error = %crate::error_chain(error.as_ref()), "Cannot record the version as healthy and accepted");
                }
            }
            None => {}
        }
        tracing::info!(plugin = %self.name(), %version, "New version healthy");
        Self::tell(&probation, self.name(), Outcome::Healthy);
    }

    /// The critical alert of a rollback.
    fn rolled_back_alert(&mut self, reason: &str) {
        let version = self.emitter.provenance.version.clone();
        let alert = Alert {
            sensor: String::new(),
            timestamp_ms: self.context.clock.now_ms(),
            severity: Severity::Warning,
            code: ROLLED_BACK.to_owned(),
            message: format!("a new version failed ({reason}); version {version} runs again with its state"),
            value: None,
        };
        self.emitter.emit_host(alert);
    }

    /// Show the running version in the status.
    pub(super) fn show_provenance(&self) {
        if let Ok(mut running) = self.stats.running.lock() {
            *running = Some((
                self.emitter.provenance.version.clone(),
                self.emitter.provenance.digest.clone(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probation of `length` from `start`, waiting for `filters` by `health`.
    fn probation(start: Instant, length: Duration, input: Option<(&Arc<IngestHealth>, &[String])>) -> Probation {
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        Probation {
            id: 1,
            until: start + length,
            events,
            accept: None,
            input: input.map(|(health, filters)| InputCheck::new(health.clone(), filters.to_vec())),
            previous: None,
        }
    }

    #[test]
    fn a_probation_passes_on_time_alone_when_its_input_is_unchanged() {
        let start = Instant::now();
        let mut probation = probation(start, Duration::from_secs(60), None);
        assert_eq!(probation.check(start), Ok(Some(Duration::from_secs(60))));
        assert_eq!(probation.check(start + Duration::from_secs(60)), Ok(None));
    }

    #[test]
    fn a_probation_that_changes_the_input_waits_for_it_to_be_read_and_for_no_longer_than_it_may() {
        let start = Instant::now();
        let length = Duration::from_secs(60);
        let new = ["sensors.cgm2.>".to_owned()];
        let health = Arc::new(IngestHealth::default());
        health.flowing("p", &["sensors.cgm.>".to_owned()]);
        let mut waiting = probation(start, length, Some((&health, &new)));
        // Looked at often while it waits, past its length too.
        assert_eq!(waiting.check(start), Ok(Some(INPUT_POLL)));
        assert_eq!(waiting.check(start + length), Ok(Some(INPUT_POLL)));
        let why = waiting.check(start + length + INPUT_WAIT).unwrap_err();
        assert!(why.contains("does not read sensors.cgm2.>"), "{why}");

        // Read: the rest is time (looked at until its end), and a later
        // loss of the input is not the version's (it is alerted as any
        // other).
        let mut read = probation(start, length, Some((&health, &new)));
        health.flowing("p", &new);
        assert_eq!(read.check(start + length / 2), Ok(Some(INPUT_POLL)));
        assert_eq!(read.check(start + length - INPUT_POLL / 2), Ok(Some(INPUT_POLL / 2)));
        health.lost("the server went away".to_owned());
        assert_eq!(read.check(start + length), Ok(None));
    }

    #[test]
    fn a_probation_fails_when_the_bus_refuses_a_filter_it_reads_even_after_it_was_read() {
        let start = Instant::now();
        let length = Duration::from_secs(60);
        let new = ["sensors.cgm.>".to_owned(), "sensors.cgm2.>".to_owned()];
        let health = Arc::new(IngestHealth::default());
        // Refused before the check was made: the version before it.
        health.refused("sensors.cgm2.>", "refused before".to_owned());
        let mut probation = probation(start, length, Some((&health, &new)));
        health.flowing("p", &new);
        assert_eq!(probation.check(start), Ok(Some(INPUT_POLL)));
        // A filter it does not read, refused: not its.
        health.refused("sensors.other.>", "not its".to_owned());
        health.flowing("p", &new);
        assert_eq!(probation.check(start + length / 4), Ok(Some(INPUT_POLL)));
        // Its own, refused after the ingest took it for read, and read again
        // (a retry) by the time the probation looks: failed all the same.
        health.refused("sensors.cgm2.>", "ingest: refused sensors.cgm2.>".to_owned());
        health.flowing("p", &new);
        assert_eq!(
            probation.check(start + length / 2),
            Err("its input is lost: ingest: refused sensors.cgm2.>".to_owned())
        );
    }

    #[test]
    fn a_probation_fails_at_once_while_the_input_it_changes_is_lost() {
        let start = Instant::now();
        let health = Arc::new(IngestHealth::default());
        health.lost("cannot change the consumer's filters".to_owned());
        let new = ["sensors.>".to_owned()];
        let mut probation = probation(start, Duration::from_secs(3600), Some((&health, &new)));
        assert_eq!(
            probation.check(start),
            Err("its input is lost: cannot change the consumer's filters".to_owned())
        );
    }

    #[test]
    fn a_snapshot_crosses_versions_only_as_the_manifests_say() {
        let declared = |writes, reads: &[u32]| SnapshotSchemas::Declared {
            writes,
            reads: reads.to_vec(),
        };
        assert!(fits(&declared(1, &[1]), &declared(2, &[1, 2])).is_ok());
        assert!(
            fits(&declared(3, &[3]), &declared(2, &[1, 2]))
                .unwrap_err()
                .contains("not 3")
        );
        assert!(fits(&declared(1, &[1]), &SnapshotSchemas::Undeclared).is_err());
        assert!(fits(&SnapshotSchemas::Undeclared, &declared(1, &[1])).is_err());
    }
}
