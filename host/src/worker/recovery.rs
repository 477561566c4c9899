//! What a plugin's worker keeps so that a failure does not lose the plugin's
//! state (issue #14): the last snapshot of the instance (with the position
//! of the last input in it and the number of its next output), and the
//! inputs it was given since, at their positions in the input log.
//!
//! After a failure the new instance starts from the snapshot and is given
//! the inputs since again; a plugin is a deterministic function of its
//! inputs, so it makes the same outputs again with the same numbers, and
//! those already emitted are not emitted twice (the emitter knows them by
//! number). An input that makes the plugin fail [`SET_ASIDE_AFTER`] times is
//! set aside: recorded, reported, never given again.
//!
//! The same plan serves a restart of the host: the worker loads the saved
//! snapshot and the logged inputs after it from the journal.
//!
//! Only a plugin that takes snapshots (contract 0.2, `[snapshot]` declared)
//! is recovered; another starts afresh, as before. The inputs kept are
//! bounded: a snapshot is taken every [`SNAPSHOT_EVERY`] inputs, and if
//! snapshots fail the worker stops keeping inputs (recovery then falls back
//! to a fresh start, reported) rather than grow.

use std::collections::VecDeque;

use crate::input_log::Input;
use crate::runtime::Snapshot;

/// Inputs between two snapshots.
pub(super) const SNAPSHOT_EVERY: usize = 256;
/// Inputs kept at most without a snapshot (snapshots failing): beyond, the
/// worker gives up recovery until the next snapshot succeeds.
pub(super) const KEPT_AT_MOST: usize = 4 * SNAPSHOT_EVERY;
/// Inputs kept at most while a new version is on probation (it saves no
/// state then: a rollback gives them all to the old version again), and read
/// from the log at start (a crash during a probation).
pub(super) const PROBATION_KEPT: usize = 64 * 1024;
/// Failures of one input in a row (given again, and failing each time)
/// after which it is set aside: the last but one is supervised (backoff),
/// those before it are retried at once. A plugin that fails at random on a
/// share `p` of its calls loses a good input with a chance of about `p³`
/// per failure (one in a million at 1%).
pub(super) const SET_ASIDE_AFTER: u32 = 4;

/// An input kept for recovery, with the failures it caused.
#[derive(Debug)]
pub(super) struct Kept {
    /// Its position in the input log.
    pub(super) position: u64,
    /// For one reading of a batch given alone (the batch failed again), its
    /// index in the logged batch.
    pub(super) reading: Option<u32>,
    pub(super) input: Input,
    pub(super) failures: u32,
}

/// The snapshot recovery starts from.
#[derive(Debug, Clone)]
pub(super) struct Start {
    pub(super) snapshot: Snapshot,
    /// The position of the last input in it.
    pub(super) position: u64,
    /// The number of the plugin's next output.
    pub(super) next_seq: u64,
}

/// Where recovery would start from.
#[derive(Debug)]
pub(super) struct Recovery {
    /// The last snapshot.
    start: Option<Start>,
    /// The inputs since the snapshot (or since the plugin's first input), in order.
    since: VecDeque<Kept>,
    /// Whether the inputs since the snapshot are all kept (false once they
    /// overflowed: recovery is then a fresh start).
    complete: bool,
    /// Without a snapshot: the number of the output the first input in
    /// `since` made first.
    first_seq: u64,
    /// Inputs kept at most ([`KEPT_AT_MOST`] but on probation).
    limit: usize,
}

impl Recovery {
    /// Recovery from a saved snapshot and the inputs logged after it
    /// (`None`: not all of them are there).
    /// Without a snapshot, `since` must hold every input from the plugin's
    /// first, whose first output was number 1.
    pub(super) fn resumed(start: Option<Start>, since: Option<Vec<Kept>>) -> Recovery {
        Recovery {
            start,
            complete: since.is_some(),
            since: since.unwrap_or_default().into(),
            first_seq: 1,
            limit: KEPT_AT_MOST,
        }
    }

    /// Keep at most `limit` inputs from now on.
    pub(super) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Note an input the plugin was given at `position`, which failed
    /// (`failed`) or not.
    pub(super) fn given(&mut self, position: u64, input: Input, failed: bool) {
        if !self.complete {
            return;
        }
        if self.since.len() >= self.limit {
            self.since.clear();
            self.complete = false;
            return;
        }
        self.since.push_back(Kept {
            position,
            reading: None,
            input,
            failures: u32::from(failed),
        });
    }

    /// Whether it is time to take a snapshot.
    pub(super) fn snapshot_due(&self) -> bool {
        self.since.len() >= SNAPSHOT_EVERY || !self.complete
    }

    /// Whether a recovery gave inputs again (a snapshot now spares the next
    /// recovery giving them once more).
    pub(super) fn gave_inputs_again(&self) -> bool {
        !self.since.is_empty()
    }

    /// A snapshot taken after every input so far.
    pub(super) fn snapshotted(&mut self, start: Start) {
        self.start = Some(start);
        self.since.clear();
        self.complete = true;
    }

    /// The plan of a recovery: the snapshot to start from, the number of
    /// the first output the inputs to give again make, and those inputs;
    /// `None` if the inputs since the snapshot were not all kept.
    pub(super) fn plan(&mut self) -> Option<(Option<&Start>, u64, &mut VecDeque<Kept>)> {
        if !self.complete {
            return None;
        }
        let next_seq = self.start.as_ref().map_or(self.first_seq, |start| start.next_seq);
        Some((self.start.as_ref(), next_seq, &mut self.since))
    }

    /// Start afresh, the next output numbered `next_seq`: what was kept no
    /// longer applies (recovery failed, or was impossible).
    pub(super) fn forget(&mut self, next_seq: u64) {
        self.start = None;
        self.since.clear();
        self.complete = true;
        self.first_seq = next_seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(position: u64) -> Start {
        Start {
            snapshot: Snapshot {
                schema: 1,
                data: vec![1, 2, 3],
            },
            position,
            next_seq: 4,
        }
    }

    #[test]
    fn a_snapshot_clears_the_inputs_before_it() {
        let mut recovery = Recovery::resumed(None, Some(Vec::new()));
        recovery.given(1, Input::Tick(1), false);
        recovery.given(2, Input::Tick(2), false);
        assert!(!recovery.snapshot_due());
        recovery.snapshotted(start(2));
        recovery.given(3, Input::Tick(3), true);
        let (from, next_seq, since) = recovery.plan().unwrap();
        assert_eq!(from.unwrap().position, 2);
        assert_eq!(next_seq, 4);
        assert_eq!(since.len(), 1);
        assert_eq!((since[0].position, since[0].failures), (3, 1));
    }

    #[test]
    fn inputs_kept_are_bounded_and_overflow_means_a_fresh_start() {
        let mut recovery = Recovery::resumed(None, Some(Vec::new()));
        for k in 0..SNAPSHOT_EVERY as u64 {
            recovery.given(k + 1, Input::Tick(k as i64), false);
        }
        assert!(recovery.snapshot_due());
        for k in 0..(KEPT_AT_MOST - SNAPSHOT_EVERY + 1) as u64 {
            recovery.given(k + 1000, Input::Tick(k as i64), false);
        }
        assert!(recovery.plan().is_none(), "more than kept at most: no recovery");
        assert!(recovery.snapshot_due(), "a snapshot is still wanted");
        recovery.snapshotted(start(5000));
        assert!(recovery.plan().is_some());
        assert!(
            Recovery::resumed(None, None).plan().is_none(),
            "a log with gaps: no recovery"
        );
    }
}
