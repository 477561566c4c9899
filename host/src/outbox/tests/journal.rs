//! The plugins' journal: what recovery after a crash reads back, and what a
//! damaged or edited file gives.

use super::{alert, open};
use crate::outbox::{Append, JournalWrite, Outbox, OutboxLimits, Record, SavedState};

fn input(position: u64) -> Record {
    Record::Input {
        position,
        created_ms: 1_000 * position as i64,
        readings: 1,
        data: vec![position as u8; 3],
    }
}

fn state(position: u64, next_seq: u64) -> Record {
    Record::State(SavedState {
        position,
        next_seq,
        schema: 1,
        data: b"state".to_vec(),
    })
}

fn write(outbox: &mut Outbox, records: Vec<Record>) {
    let append = Append {
        journal: Some(JournalWrite {
            plugin: "p".to_owned(),
            records,
        }),
        entries: vec![alert("p", 1)],
    };
    let results = outbox.append_all(&[append]).unwrap();
    assert!(results[0].is_ok(), "{results:?}");
}

#[test]
fn a_plugins_journal_reads_back_its_state_the_inputs_after_it_and_its_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    write(&mut outbox, vec![input(1), input(2), state(2, 5)]);
    write(
        &mut outbox,
        vec![
            input(3),
            Record::Numbered {
                high_seq: 7,
                host_seq: 2,
            },
        ],
    );
    let journal = outbox.plugin_journal("p", 10, true).unwrap();
    assert_eq!(journal.incarnation.len(), 32);
    assert_eq!((journal.high_seq, journal.host_seq, journal.last_position), (7, 2, 3));
    let saved = journal.state.unwrap();
    assert_eq!(
        (saved.position, saved.next_seq, saved.data.as_slice()),
        (2, 5, &b"state"[..])
    );
    let inputs = journal.inputs.unwrap();
    assert_eq!(inputs.len(), 1);
    assert_eq!(
        (inputs[0].position, inputs[0].data.as_deref()),
        (3, Some(&[3u8, 3, 3][..]))
    );
    let recent: Vec<u64> = journal.recent.iter().map(|i| i.position).collect();
    assert_eq!(recent, [3, 2, 1], "newest first, whatever the state");
    // More inputs after the state than asked for: not all of them.
    assert!(outbox.plugin_journal("p", 0, true).unwrap().inputs.is_none());
    // Each start names the numbers anew (the file may have been set back);
    // the numbers go on from what the file holds.
    let incarnation = journal.incarnation;
    drop(outbox);
    let again = open(dir.path()).plugin_journal("p", 10, true).unwrap();
    assert_eq!(again.incarnation.len(), 32);
    assert_ne!(again.incarnation, incarnation);
    assert_eq!(again.high_seq, 7);
}

#[test]
fn a_logged_input_moved_or_edited_does_not_open_and_a_wrong_column_type_is_damage_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    write(&mut outbox, vec![input(1), input(2), input(3)]);
    // Row 1's sealed data copied over row 2's: bound to its position, it does not open there.
    outbox
        .conn
        .execute(
            "UPDATE journal_inputs SET nonce = (SELECT nonce FROM journal_inputs WHERE position = 1), \
             ciphertext = (SELECT ciphertext FROM journal_inputs WHERE position = 1) WHERE position = 2",
            [],
        )
        .unwrap();
    outbox
        .conn
        .execute("UPDATE journal_inputs SET ciphertext = 'text' WHERE position = 3", [])
        .unwrap();
    let inputs = outbox.plugin_journal("p", 10, true).unwrap().inputs.unwrap();
    let opened: Vec<(u64, bool)> = inputs.iter().map(|i| (i.position, i.data.is_some())).collect();
    assert_eq!(opened, [(1, true), (2, false), (3, false)]);
}

#[test]
fn a_saved_state_that_does_not_open_or_has_wrong_types_is_moved_aside_not_an_error() {
    for edit in [
        "UPDATE journal_states SET next_seq = next_seq + 1",
        "UPDATE journal_states SET ciphertext = 'text'",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = open(dir.path());
        write(&mut outbox, vec![input(1), state(1, 2)]);
        outbox.conn.execute(edit, []).unwrap();
        let journal = outbox.plugin_journal("p", 10, true).unwrap();
        assert!(journal.state.is_none(), "{edit}");
        assert!(journal.state_unreadable.is_some(), "{edit}");
        let inputs = journal.inputs.unwrap();
        assert_eq!(inputs.len(), 1, "the log from the first input: {edit}");
        let aside: i64 = outbox
            .conn
            .query_row("SELECT count(*) FROM journal_states_aside", [], |row| row.get(0))
            .unwrap();
        assert_eq!(aside, 1, "{edit}");
        assert!(
            outbox.plugin_journal("p", 10, true).unwrap().state_unreadable.is_none(),
            "moved once"
        );
    }
}

/// The bytes the row of input `position` of plugin `p` takes in the log.
fn row_bytes(outbox: &Outbox, position: u64) -> u64 {
    outbox
        .conn
        .query_row(
            "SELECT length(nonce) + length(ciphertext) FROM journal_inputs WHERE plugin = 'p' AND position = ?1",
            [position as i64],
            |row| row.get::<_, i64>(0),
        )
        .unwrap() as u64
}

/// An outbox in `dir` holding `records`, opened again with room in its
/// input log for one row (they are all the same size).
fn with_log_of_one_row(dir: &std::path::Path, records: Vec<Record>) -> Outbox {
    let mut outbox = open(dir);
    write(&mut outbox, records);
    let one_row = row_bytes(&outbox, 1);
    drop(outbox);
    let limits = OutboxLimits {
        log_max_bytes: one_row,
        ..OutboxLimits::default()
    };
    super::open_with(dir, limits)
}

#[test]
fn the_log_is_kept_within_its_size_oldest_first_those_no_state_needs_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = with_log_of_one_row(dir.path(), vec![input(1), input(2), input(3), state(2, 1)]);
    outbox.expire(0).unwrap();
    assert_eq!(outbox.dropped().inputs_for_space, 2, "1 and 2; 3 is after the state");
    let left = outbox.plugin_journal("p", 10, true).unwrap().recent;
    assert_eq!(left.iter().map(|i| i.position).collect::<Vec<_>>(), [3]);

    // Within the limit: nothing removed.
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    write(&mut outbox, vec![input(1), input(2), state(2, 1)]);
    outbox.expire(0).unwrap();
    assert_eq!(outbox.dropped().inputs_for_space, 0);
}

/// A plugin whose snapshots keep failing keeps every input since its last
/// saved state: the log's size is a bound all the same. The oldest of those
/// go too (the next start reports them missing), never the newest first.
#[test]
fn the_log_stays_within_its_size_when_the_inputs_after_the_saved_state_alone_are_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = with_log_of_one_row(dir.path(), vec![input(1), input(2), input(3), input(4), state(1, 1)]);
    outbox.expire(0).unwrap();
    assert_eq!(outbox.dropped().inputs_for_space, 3, "1, then 2 and 3 after the state");
    let journal = outbox.plugin_journal("p", 10, true).unwrap();
    assert_eq!(journal.state.unwrap().position, 1, "the state kept");
    let after: Vec<u64> = journal.inputs.unwrap().iter().map(|i| i.position).collect();
    assert_eq!(after, [4], "2 and 3 missing, which the next start reports");
}

#[test]
fn pruning_the_log_by_age_never_removes_an_input_after_the_saved_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    write(&mut outbox, vec![input(1), input(2), input(3), state(2, 1)]);
    // Every input is older than the cut: only those in the state go, counted.
    let now = OutboxLimits::DEFAULT_MAX_AGE_MS as i64 + 1_000_000;
    outbox.expire(now).unwrap();
    assert_eq!(outbox.dropped().inputs_expired, 2);
    let journal = outbox.plugin_journal("p", 10, true).unwrap();
    assert_eq!(journal.recent.iter().map(|i| i.position).collect::<Vec<_>>(), [3]);
    assert_eq!(journal.inputs.unwrap().len(), 1);
}
