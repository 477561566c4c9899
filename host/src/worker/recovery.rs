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
//! bounded: a snapshot is taken every [`SNAPSHOT_EVERY`] inputs (later for
//! a large state, see [`SNAPSHOT_BYTES_PER_INPUT_BYTE`], at most every
//! [`SNAPSHOT_EVERY_AT_MOST`]), and if snapshots fail the worker stops
//! keeping inputs (recovery then falls back to a fresh start, reported)
//! rather than grow.

use std::collections::VecDeque;

use crate::input_log::Input;
use crate::runtime::Snapshot;

/// Inputs between two snapshots, at least.
pub(super) const SNAPSHOT_EVERY: usize = 256;
/// Past [`SNAPSHOT_EVERY`] inputs, a snapshot waits until the inputs since
/// the last one hold at least the last one's bytes divided by this: the
/// state's writes stay within about this many times the inputs' bytes. A
/// small state is snapshotted every [`SNAPSHOT_EVERY`] inputs as before; a
/// large one is not written again for every few readings (glucose-forecast
/// serving 1000 sensors read every minute: 9 MB every 256 one-reading
/// inputs, 35 KB a reading, about 50 GB a day of flash writes; waiting for
/// a quarter of it in inputs, about 30 times less).
pub(super) const SNAPSHOT_BYTES_PER_INPUT_BYTE: usize = 4;
/// Inputs between two snapshots at most, whatever their size: recovery
/// gives them all again.
pub(super) const SNAPSHOT_EVERY_AT_MOST: usize = 8 * 1024;
/// Inputs kept at most once a snapshot is due (snapshots failing), counted
/// with the [`SNAPSHOT_EVERY`] before it: beyond, the worker gives up
/// recovery until the next snapshot succeeds.
pub(super) const KEPT_AT_MOST: usize = 4 * SNAPSHOT_EVERY;
/// Inputs kept at most while a new version is on probation (it saves no
/// state then: a rollback gives them all to the old version again), and read
/// from the log at start (a crash during a probation): never more.
pub(super) const PROBATION_KEPT: usize = 64 * 1024;
/// Failures of one input in a row (given again, and failing each time)
/// after which it is set aside: the last but one is supervised (backoff),
/// those before it are retried at once. A plugin that fails at random on a
/// share `p` of its calls loses a good input with a chance of about `p³`
/// per failure (one in a million at 1%).
pub(super) const SET_ASIDE_AFTER: u32 = 4;
/// Starts from the same saved state in a row that fail for a reason that
/// may pass ([`crate::runtime::PluginErrorKind::is_transient`]: a CPU
/// deadline on a loaded device at boot, memory, instantiation) after which
/// that state is moved aside and the plugin started afresh. One such failure
/// must not cost a plugin its state (a patient's history); but a state whose
/// start always fails so would hold the plugin down for ever. The failures
/// before are supervised as any other (backoff): three attempts span the
/// first backoffs (0.1 s and 0.2 s by default, more when configured), and
/// stay below the default quarantine (5 failures), so a state that cannot
/// start costs seconds, not a quarantine's cool-down. A refusal of the state
/// or a trap in `init` moves it aside at once: it would come again.
pub(super) const STATE_ASIDE_AFTER: u32 = 3;
/// Snapshots in a row that killed the instance (a trap, its memory, its
/// deadline) after which the worker takes no more until the plugin starts
/// afresh or the host restarts. Each one costs a restart and the inputs
/// since the last snapshot given again, and the restarted instance, in the
/// same state, is due a snapshot at once: without a bound the plugin died at
/// every start until quarantined, its readings held and its alerts silent.
/// The first may pass (a deadline on a loaded device); a second in a row is
/// the state or the plugin's code. The plugin then runs on from its state in
/// memory, unsaved: that is said loudly.
pub(super) const SNAPSHOT_TRAPS_AT_MOST: u32 = 2;

/// Inputs after a refused snapshot (the plugin's `err`, or a snapshot over
/// its `state_bytes`) before the next is tried: this many after the first
/// refusal in a row, twice as many after each further one, up to
/// [`SNAPSHOT_EVERY_AT_MOST`]. A refused snapshot stays due: tried again
/// after every input, a state over the limit was copied out of the plugin
/// (megabytes) and a warning logged at every reading.
pub(super) const SNAPSHOT_REFUSED_WAIT: usize = SNAPSHOT_EVERY;

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
    /// The number of the plugin's next output
    /// ([`crate::outbox::NEXT_AFTER_HIGHEST`]: after every number used).
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
    /// Inputs kept at most once a snapshot is due, with the
    /// [`SNAPSHOT_EVERY`] before it ([`KEPT_AT_MOST`] but on probation).
    limit: usize,
    /// [`Input::held_bytes`] of the inputs in `since` (counted again after
    /// a recovery, which may split or set aside some).
    since_bytes: usize,
    /// Whether `since` changed through [`Recovery::plan`] since it was counted.
    recount: bool,
    /// How many inputs `since` held when a snapshot fell due (none: not due).
    due_since: Option<usize>,
    /// Starts from `start` that failed in a row for a reason that may pass
    /// (see [`STATE_ASIDE_AFTER`]); none since it was taken or last started.
    start_failures: u32,
    /// Snapshots that killed the instance since the last one taken.
    snapshot_traps: u32,
    /// Snapshots refused in a row (not killing the instance) since the last
    /// one taken, and the inputs given since the last of them.
    snapshot_refusals: u32,
    given_since_refusal: usize,
}

impl Recovery {
    /// Recovery from a saved snapshot and the inputs logged after it
    /// (`None`: not all of them are there).
    /// Without a snapshot, `since` must hold every input from the plugin's
    /// first, whose first output was number 1.
    pub(super) fn resumed(start: Option<Start>, since: Option<Vec<Kept>>) -> Recovery {
        let complete = since.is_some();
        let since: VecDeque<Kept> = since.unwrap_or_default().into();
        let mut recovery = Recovery {
            start,
            complete,
            since_bytes: since.iter().map(|kept| kept.input.held_bytes()).sum(),
            since,
            first_seq: 1,
            limit: KEPT_AT_MOST,
            due_since: None,
            recount: false,
            start_failures: 0,
            snapshot_traps: 0,
            snapshot_refusals: 0,
            given_since_refusal: 0,
        };
        recovery.note_due();
        recovery
    }

    /// Keep at most `limit` inputs from now on.
    pub(super) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Note an input the plugin was given at `position`, which failed
    /// (`failed`) or not.
    pub(super) fn given(&mut self, position: u64, input: Input, failed: bool) {
        self.given_since_refusal = self.given_since_refusal.saturating_add(1);
        if !self.complete {
            return;
        }
        if self.recount {
            self.since_bytes = self.since.iter().map(|kept| kept.input.held_bytes()).sum();
            self.recount = false;
        }
        // Past the limit since a snapshot fell due, or more than a start can
        // read back from the journal.
        let overdue = self
            .due_since
            .is_some_and(|due| self.since.len().saturating_sub(due) >= self.limit.saturating_sub(SNAPSHOT_EVERY))
            || self.since.len() >= PROBATION_KEPT;
        if overdue {
            self.since.clear();
            self.since_bytes = 0;
            self.due_since = None;
            self.recount = false;
            self.complete = false;
            return;
        }
        self.since_bytes = self.since_bytes.saturating_add(input.held_bytes());
        self.since.push_back(Kept {
            position,
            reading: None,
            input,
            failures: u32::from(failed),
        });
        self.note_due();
    }

    /// Remember when a snapshot first fell due: the inputs kept after that
    /// are bounded by the limit.
    fn note_due(&mut self) {
        if self.due_since.is_none() && self.snapshot_due() {
            self.due_since = Some(self.since.len());
        }
    }

    /// Whether it is time to take a snapshot: [`SNAPSHOT_EVERY`] inputs
    /// since the last one, and as many bytes of them as
    /// [`SNAPSHOT_BYTES_PER_INPUT_BYTE`] asks of its size, or
    /// [`SNAPSHOT_EVERY_AT_MOST`] inputs.
    pub(super) fn snapshot_due(&self) -> bool {
        let last_bytes = self.start.as_ref().map_or(0, |start| start.snapshot.data.len());
        let enough_bytes = self.since_bytes.saturating_mul(SNAPSHOT_BYTES_PER_INPUT_BYTE) >= last_bytes;
        !self.complete
            || self.since.len() >= SNAPSHOT_EVERY_AT_MOST
            || (self.since.len() >= SNAPSHOT_EVERY && enough_bytes)
    }

    /// Whether a recovery gave inputs again (a snapshot now spares the next
    /// recovery giving them once more).
    pub(super) fn gave_inputs_again(&self) -> bool {
        !self.since.is_empty()
    }

    /// A start from the snapshot failed for a reason that may pass: the
    /// starts that failed so in a row, this one included.
    pub(super) fn start_failed(&mut self) -> u32 {
        self.start_failures = self.start_failures.saturating_add(1);
        self.start_failures
    }

    /// A start from the snapshot succeeded: the failures before no longer
    /// count against it.
    pub(super) fn started(&mut self) {
        self.start_failures = 0;
    }

    /// A snapshot killed the instance: the snapshots that did so in a row,
    /// this one included.
    pub(super) fn snapshot_trapped(&mut self) -> u32 {
        self.snapshot_traps = self.snapshot_traps.saturating_add(1);
        self.snapshot_traps
    }

    /// Whether snapshots are given up: [`SNAPSHOT_TRAPS_AT_MOST`] in a row
    /// killed the instance.
    pub(super) fn snapshots_given_up(&self) -> bool {
        self.snapshot_traps >= SNAPSHOT_TRAPS_AT_MOST
    }

    /// A snapshot was refused without killing the instance: the refusals
    /// in a row, this one included, and the inputs to give before the next
    /// attempt ([`SNAPSHOT_REFUSED_WAIT`]).
    pub(super) fn snapshot_refused(&mut self) -> (u32, usize) {
        self.snapshot_refusals = self.snapshot_refusals.saturating_add(1);
        self.given_since_refusal = 0;
        (self.snapshot_refusals, self.refused_wait())
    }

    /// Inputs to give after the last refusal before a snapshot is tried again.
    fn refused_wait(&self) -> usize {
        let doublings = self.snapshot_refusals.saturating_sub(1).min(usize::BITS - 1);
        SNAPSHOT_REFUSED_WAIT
            .saturating_mul(1usize << doublings)
            .min(SNAPSHOT_EVERY_AT_MOST)
    }

    /// Whether a snapshot waits after a refusal (see [`Recovery::snapshot_refused`]).
    pub(super) fn snapshot_held_back(&self) -> bool {
        self.snapshot_refusals > 0 && self.given_since_refusal < self.refused_wait()
    }

    /// Snapshots are tried again (another version of the plugin runs).
    pub(super) fn try_snapshots_again(&mut self) {
        self.snapshot_traps = 0;
        self.snapshot_refusals = 0;
    }

    /// A snapshot taken after every input so far.
    pub(super) fn snapshotted(&mut self, start: Start) {
        self.start_failures = 0;
        self.snapshot_traps = 0;
        self.snapshot_refusals = 0;
        self.start = Some(start);
        self.since.clear();
        self.since_bytes = 0;
        self.due_since = None;
        self.recount = false;
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
        self.recount = true;
        Some((self.start.as_ref(), next_seq, &mut self.since))
    }

    /// The snapshot to start from now numbers its outputs from `next_seq`
    /// (it was saved at a deployment's switch, see
    /// [`crate::outbox::NEXT_AFTER_HIGHEST`]): that start, to save again.
    pub(super) fn renumber(&mut self, next_seq: u64) -> Option<Start> {
        let start = self.start.as_mut()?;
        start.next_seq = next_seq;
        Some(start.clone())
    }

    /// Start afresh, the next output numbered `next_seq`: what was kept no
    /// longer applies (recovery failed, or was impossible).
    pub(super) fn forget(&mut self, next_seq: u64) {
        self.start_failures = 0;
        // A fresh state may well be saved again.
        self.snapshot_traps = 0;
        self.snapshot_refusals = 0;
        self.start = None;
        self.since.clear();
        self.since_bytes = 0;
        self.due_since = None;
        self.recount = false;
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
    fn a_refused_snapshot_waits_longer_after_each_refusal_in_a_row() {
        let mut recovery = Recovery::resumed(None, Some(Vec::new()));
        let mut waits = Vec::new();
        for _ in 0..8 {
            let (_, wait) = recovery.snapshot_refused();
            waits.push(wait);
            for k in 0..wait {
                assert!(recovery.snapshot_held_back(), "after {k} of {wait}");
                recovery.given(k as u64, Input::Tick(0), false);
            }
            assert!(!recovery.snapshot_held_back());
        }
        assert_eq!(waits, [256, 512, 1024, 2048, 4096, 8192, 8192, 8192]);
        // Taken at last: the next refusal waits the least again.
        recovery.snapshotted(start(1));
        assert!(!recovery.snapshot_held_back());
        assert_eq!(recovery.snapshot_refused(), (1, SNAPSHOT_REFUSED_WAIT));
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

    /// A recovery just after a snapshot of `bytes` bytes.
    fn after_a_snapshot_of(bytes: usize) -> Recovery {
        let mut recovery = Recovery::resumed(None, Some(Vec::new()));
        recovery.snapshotted(Start {
            snapshot: Snapshot {
                schema: 1,
                data: vec![0; bytes],
            },
            position: 0,
            next_seq: 1,
        });
        recovery
    }

    /// Give `count` ticks from position `from` on.
    fn ticks(recovery: &mut Recovery, from: u64, count: u64) {
        for position in from..from + count {
            recovery.given(position, Input::Tick(position as i64), false);
        }
    }

    /// Give ticks from position `from` on: the snapshot falls due with the
    /// `count`-th, not before.
    fn due_with_tick(recovery: &mut Recovery, from: u64, count: u64) {
        ticks(recovery, from, count - 1);
        assert!(!recovery.snapshot_due(), "due before tick {count}");
        ticks(recovery, from + count - 1, 1);
        assert!(recovery.snapshot_due(), "not due at tick {count}");
    }

    /// Ticks whose bytes, as recovery counts them, are a quarter of a
    /// snapshot's when there are `count` of them.
    fn snapshot_bytes_of_ticks(count: usize) -> usize {
        count * Input::Tick(0).held_bytes() * SNAPSHOT_BYTES_PER_INPUT_BYTE
    }

    #[test]
    fn a_large_snapshot_waits_for_inputs_of_a_quarter_of_its_bytes() {
        // 1000 inputs of a quarter of its size: beyond SNAPSHOT_EVERY.
        due_with_tick(&mut after_a_snapshot_of(snapshot_bytes_of_ticks(1_000)), 1, 1_000);
        // A small one is due every SNAPSHOT_EVERY inputs, as it always was.
        due_with_tick(&mut after_a_snapshot_of(3), 1, SNAPSHOT_EVERY as u64);
    }

    #[test]
    fn however_large_the_snapshot_one_is_due_every_snapshot_every_at_most_inputs() {
        due_with_tick(&mut after_a_snapshot_of(64 << 20), 1, SNAPSHOT_EVERY_AT_MOST as u64);
    }

    #[test]
    fn the_inputs_kept_past_a_late_snapshot_are_bounded_from_when_it_fell_due() {
        let due_at = 2_000;
        let mut recovery = after_a_snapshot_of(snapshot_bytes_of_ticks(due_at));
        due_with_tick(&mut recovery, 1, due_at as u64);
        // Snapshots failing: as many more as before the change, then none.
        let slack = (KEPT_AT_MOST - SNAPSHOT_EVERY) as u64;
        ticks(&mut recovery, 1 + due_at as u64, slack);
        assert!(recovery.plan().is_some(), "still within the bound");
        ticks(&mut recovery, 1 + due_at as u64 + slack, 1);
        assert!(recovery.plan().is_none(), "past the bound: no recovery");
    }

    #[test]
    fn inputs_split_or_set_aside_by_a_recovery_are_counted_again() {
        let mut recovery = after_a_snapshot_of(snapshot_bytes_of_ticks(400));
        ticks(&mut recovery, 1, 399);
        // A recovery sets 99 of them aside: 300 left, and the snapshot's size
        // asks for 400: due with the 100th more, not the first.
        if let Some((_, _, since)) = recovery.plan() {
            since.drain(..99);
        }
        due_with_tick(&mut recovery, 400, 100);
    }

    #[test]
    fn never_more_inputs_are_kept_than_a_start_reads_back_from_the_journal() {
        // On probation no snapshot is taken: the inputs pile up to what a
        // start can read back, as many whenever the snapshot fell due.
        let mut recovery = after_a_snapshot_of(snapshot_bytes_of_ticks(SNAPSHOT_EVERY_AT_MOST));
        recovery.set_limit(PROBATION_KEPT);
        ticks(&mut recovery, 1, PROBATION_KEPT as u64);
        assert!(recovery.plan().is_some(), "as many as a start reads back");
        ticks(&mut recovery, 1 + PROBATION_KEPT as u64, 1);
        assert!(recovery.plan().is_none(), "more: no recovery");
    }

    #[test]
    fn failed_starts_count_in_a_row_from_one_state_only() {
        let mut recovery = after_a_snapshot_of(8);
        assert_eq!((recovery.start_failed(), recovery.start_failed()), (1, 2));
        recovery.started();
        assert_eq!(recovery.start_failed(), 1, "a success resets the count");
        recovery.snapshotted(start(7));
        assert_eq!(recovery.start_failed(), 1, "another state: counted anew");
        recovery.forget(9);
        assert_eq!(recovery.start_failed(), 1, "a fresh start: counted anew");
    }

    #[test]
    fn snapshots_are_given_up_after_traps_in_a_row_until_one_succeeds_or_a_fresh_start() {
        let mut recovery = after_a_snapshot_of(8);
        assert_eq!(recovery.snapshot_trapped(), 1);
        assert!(!recovery.snapshots_given_up(), "one may pass");
        recovery.snapshotted(start(7));
        assert_eq!(recovery.snapshot_trapped(), 1, "a snapshot taken resets the count");
        assert_eq!(recovery.snapshot_trapped(), SNAPSHOT_TRAPS_AT_MOST);
        assert!(recovery.snapshots_given_up());
        recovery.started();
        assert!(
            recovery.snapshots_given_up(),
            "a start from the same state changes nothing"
        );
        recovery.forget(9);
        assert!(!recovery.snapshots_given_up(), "a fresh state: tried again");
    }
}
