//! What a plugin's worker keeps so that a failure does not lose the plugin's
//! state (issue #14, within one run of the host): the last snapshot of the
//! instance, the inputs it was given since, and how many outputs it had made.
//!
//! After a failure the new instance starts from the snapshot and is given
//! the inputs since again; a plugin is a deterministic function of its
//! inputs, so it makes the same outputs again, and the first ones (those
//! already emitted) are dropped. An input that makes the plugin fail twice
//! is set aside: recorded, reported, never given again.
//!
//! Only a plugin that takes snapshots (contract 0.2, `[snapshot]` declared)
//! is recovered; another starts afresh, as before. The inputs kept are
//! bounded: a snapshot is taken every [`SNAPSHOT_EVERY`] inputs, and if
//! snapshots fail the worker stops keeping inputs (recovery then falls back
//! to a fresh start, reported) rather than grow.

use std::collections::VecDeque;

use crate::model::Reading;
use crate::runtime::Snapshot;

/// Inputs between two snapshots.
pub(super) const SNAPSHOT_EVERY: usize = 256;
/// Inputs kept at most without a snapshot (snapshots failing): beyond, the
/// worker gives up recovery until the next snapshot succeeds.
const KEPT_AT_MOST: usize = 4 * SNAPSHOT_EVERY;
/// Failures of one input after which it is set aside.
pub(super) const SET_ASIDE_AFTER: u32 = 2;

/// One input given to the plugin.
#[derive(Debug, Clone)]
pub(super) enum Input {
    /// A batch of readings.
    Readings(Vec<Reading>),
    /// A tick of the host clock.
    Tick(i64),
}

/// An input kept for recovery, with the failures it caused.
#[derive(Debug)]
pub(super) struct Kept {
    pub(super) input: Input,
    pub(super) failures: u32,
}

/// Where recovery would start from.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// The last snapshot and the outputs made before it.
    snapshot: Option<(Snapshot, u64)>,
    /// The inputs since the snapshot (or since the start), in order.
    since: VecDeque<Kept>,
    /// Outputs the plugin has made (emitted) in this run of the host.
    outputs: u64,
    /// Whether the inputs since the snapshot are all kept (false once they
    /// overflowed: recovery is then a fresh start).
    complete: bool,
}

impl Recovery {
    /// Recovery of a plugin that starts from nothing.
    pub(super) fn new() -> Recovery {
        Recovery {
            complete: true,
            ..Recovery::default()
        }
    }

    /// Note an input the plugin was given, which made `outputs` outputs and
    /// failed (`failed`) or not.
    pub(super) fn given(&mut self, input: Input, outputs: usize, failed: bool) {
        self.outputs += outputs as u64;
        if !self.complete {
            return;
        }
        if self.since.len() >= KEPT_AT_MOST {
            self.since.clear();
            self.complete = false;
            return;
        }
        self.since.push_back(Kept {
            input,
            failures: u32::from(failed),
        });
    }

    /// Whether it is time to take a snapshot.
    pub(super) fn snapshot_due(&self) -> bool {
        self.since.len() >= SNAPSHOT_EVERY || !self.complete
    }

    /// A snapshot taken after every input so far.
    pub(super) fn snapshotted(&mut self, snapshot: Snapshot) {
        self.snapshot = Some((snapshot, self.outputs));
        self.since.clear();
        self.complete = true;
    }

    /// Outputs made so far.
    pub(super) fn outputs(&self) -> u64 {
        self.outputs
    }

    /// The plan of a recovery: the snapshot to start from and the outputs
    /// made before it, and the inputs to give again; `None` if the inputs
    /// since the snapshot were not all kept.
    pub(super) fn plan(&mut self) -> Option<(Option<&Snapshot>, u64, &mut VecDeque<Kept>)> {
        if !self.complete {
            return None;
        }
        let (snapshot, before) = match &self.snapshot {
            Some((snapshot, before)) => (Some(snapshot), *before),
            None => (None, 0),
        };
        Some((snapshot, before, &mut self.since))
    }

    /// After a recovery: the outputs the new instance's state has made
    /// (those made before by an input now set aside, or by an input that
    /// failed part-way, are not in it).
    pub(super) fn recounted(&mut self, outputs: u64) {
        self.outputs = outputs;
    }

    /// Start afresh: what was kept no longer applies (recovery failed, or
    /// was impossible).
    pub(super) fn forget(&mut self) {
        self.snapshot = None;
        self.since.clear();
        self.outputs = 0;
        self.complete = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            schema: 1,
            data: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_snapshot_clears_the_inputs_and_remembers_the_outputs_before_it() {
        let mut recovery = Recovery::new();
        recovery.given(Input::Tick(1), 2, false);
        recovery.given(Input::Tick(2), 1, false);
        assert!(!recovery.snapshot_due());
        recovery.snapshotted(snapshot());
        recovery.given(Input::Tick(3), 4, true);
        let (from, before, since) = recovery.plan().unwrap();
        assert_eq!(from, Some(&snapshot()));
        assert_eq!(before, 3);
        assert_eq!(since.len(), 1);
        assert_eq!(since[0].failures, 1);
        assert_eq!(recovery.outputs(), 7);
    }

    #[test]
    fn inputs_kept_are_bounded_and_overflow_means_a_fresh_start() {
        let mut recovery = Recovery::new();
        for k in 0..SNAPSHOT_EVERY {
            recovery.given(Input::Tick(k as i64), 0, false);
        }
        assert!(recovery.snapshot_due());
        for k in 0..(KEPT_AT_MOST - SNAPSHOT_EVERY + 1) {
            recovery.given(Input::Tick(k as i64), 0, false);
        }
        assert!(recovery.plan().is_none(), "more than kept at most: no recovery");
        assert!(recovery.snapshot_due(), "a snapshot is still wanted");
        recovery.snapshotted(snapshot());
        assert!(recovery.plan().is_some());
    }
}
