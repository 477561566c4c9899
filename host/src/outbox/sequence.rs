//! Sequence numbers of a plugin's outputs, never reused across restarts.
//!
//! `Nats-Msg-Id` is `<device>/<incarnation>/<plugin>/<seq>`: upstream
//! deduplication would silently drop a new output that reused an id. The
//! incarnation is 128 random bits (hex) made each time the sequence opens,
//! so a number handed out again never has the same name: the state file may
//! have been deleted or lost (numbers restart at 1), copied to a clone of the
//! device, or set back by restoring a backup (numbers go on from an older
//! mark). The file holds `<incarnation> <high-water mark>`, written together;
//! the incarnation in it says which run wrote it (an old file with a number
//! alone is still read).
//!
//! Numbers are handed out
//! from blocks reserved on disk (a "hi/lo" allocator): the high-water mark is
//! written and synced before any number of its block is used, so a crash
//! skips at most two blocks and never repeats a number.
//!
//! The next block is reserved in the background once half of the current
//! one is used: the two fsyncs of a reservation (about a millisecond here)
//! would otherwise stall the plugin's thread, and an alert with it.
//!
//! Opening never needs the disk to take a write: if the first block cannot
//! be reserved (a full disk at boot), the sequence opens with none and
//! numbers wait for a reservation; the host's alerts meanwhile go to the
//! local bus only (`run/host_alerts.rs`). A damaged state file is moved
//! aside and renewed under a new incarnation ([`Sequence::open_or_renew`]).

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use ring::rand::{SecureRandom, SystemRandom};

use crate::files::{self, Access, Existing};

/// Numbers reserved per disk write.
const BLOCK: u64 = 1000;

/// The sequence of one plugin.
#[derive(Debug)]
pub struct Sequence {
    path: PathBuf,
    /// Names this sequence state: 32 lowercase hex digits.
    incarnation: String,
    next: u64,
    /// The last number whose block is durable.
    reserved_until: u64,
    /// The next block, being made durable in the background: its last
    /// number and the thread writing it.
    ahead: Option<(u64, JoinHandle<std::io::Result<()>>)>,
}

impl Sequence {
    /// Open the sequence of `plugin` under `data_dir` (numbers from 1 for a
    /// new one), under a new incarnation. A state file that cannot be read or
    /// is not a state is an error ([`std::io::ErrorKind::InvalidData`] for
    /// the latter).
    ///
    /// A block is reserved now if it can be; if the disk refuses (full, or
    /// read-only) the sequence opens all the same with nothing reserved, so
    /// a device booted on a full disk still starts and alerts: [`Sequence::next`]
    /// reserves before it hands out a number and fails until it can, so no
    /// number is ever handed out that is not durable.
    pub fn open(data_dir: &Path, plugin: &str) -> std::io::Result<Sequence> {
        let path = state_path(data_dir, plugin);
        let high_water = read_state(&path)?.unwrap_or(0);
        Ok(Sequence::start(path, new_incarnation()?, high_water))
    }

    /// As [`Sequence::open`], but a state file that cannot be read or is
    /// not a state does not stop the caller: it is moved aside to
    /// `seq-<plugin>.damaged` (replacing an earlier one) for the operator,
    /// and a new incarnation starts with numbers from 1. That reuses no
    /// `Nats-Msg-Id`: the new incarnation names none an earlier output had.
    /// What happened, to report, comes with the sequence.
    pub fn open_or_renew(data_dir: &Path, plugin: &str) -> std::io::Result<(Sequence, Option<String>)> {
        let error = match Sequence::open(data_dir, plugin) {
            Ok(sequence) => return Ok((sequence, None)),
            Err(error) => error,
        };
        // Made before the file is moved: a host without random numbers
        // fails here as it did in `open`, and leaves the file where it is.
        let incarnation = new_incarnation()?;
        let path = state_path(data_dir, plugin);
        let aside = data_dir.join(format!("seq-{plugin}.damaged"));
        let kept = match std::fs::rename(&path, &aside) {
            Ok(()) => format!("kept as {}", aside.display()),
            // The new state is written over it when it can be.
            Err(rename) => format!("cannot be moved aside ({rename})"),
        };
        let report = format!(
            "the sequence state {} cannot be used ({error}): numbers start again from 1 under a new incarnation; the old file {kept}",
            path.display()
        );
        Ok((Sequence::start(path, incarnation, 0), Some(report)))
    }

    /// A sequence kept in memory only, under a new incarnation: for an
    /// outbox in memory ([`super::Outbox::open_in_memory`]), where nothing
    /// numbered outlives the process and the disk takes no state. Every
    /// number is unique: the incarnation names none an earlier process had.
    pub fn in_memory() -> std::io::Result<Sequence> {
        Ok(Sequence {
            path: PathBuf::new(),
            incarnation: new_incarnation()?,
            next: 1,
            reserved_until: u64::MAX,
            ahead: None,
        })
    }

    /// The sequence after `high_water` under `incarnation`, its first block
    /// reserved if the disk takes it now.
    fn start(path: PathBuf, incarnation: String, high_water: u64) -> Sequence {
        let mut sequence = Sequence {
            path,
            incarnation,
            next: high_water.saturating_add(1),
            reserved_until: high_water,
            ahead: None,
        };
        let first_block = high_water.saturating_add(BLOCK);
        match write_state(&sequence.path, &sequence.incarnation, first_block) {
            Ok(()) => sequence.reserved_until = first_block,
            Err(error) => {
                tracing::warn!(
                    path = %sequence.path.display(),
                    %error,
                    "Cannot reserve sequence numbers now; each number waits until a block can be reserved"
                );
                // Not rewritten 0600 this time: narrowed instead (no space needed).
                if let Err(error) = files::narrow(&sequence.path, files::PRIVATE_FILE) {
                    tracing::warn!(path = %sequence.path.display(), %error, "Cannot make the sequence state private");
                }
            }
        }
        sequence
    }

    /// The incarnation of this sequence state (32 lowercase hex digits).
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// The next number.
    pub fn next(&mut self) -> std::io::Result<u64> {
        if self.next > self.reserved_until {
            self.take_next_block()?;
        }
        let seq = self.next;
        self.next += 1;
        if self.ahead.is_none() && self.reserved_until - seq < BLOCK / 2 {
            self.reserve_ahead();
        }
        Ok(seq)
    }

    /// Make the block after the current one durable: wait for the background
    /// reservation, or (if there is none, or it failed) write it here.
    fn take_next_block(&mut self) -> std::io::Result<()> {
        let high_water = match self.ahead.take() {
            Some((high_water, thread)) => match join(thread) {
                Ok(()) => high_water,
                // Retried once here; a second failure goes to the caller.
                Err(_) => self.write_next_block()?,
            },
            None => self.write_next_block()?,
        };
        self.reserved_until = high_water;
        Ok(())
    }

    fn write_next_block(&self) -> std::io::Result<u64> {
        let high_water = self.next.saturating_add(BLOCK - 1);
        write_state(&self.path, &self.incarnation, high_water)?;
        Ok(high_water)
    }

    fn reserve_ahead(&mut self) {
        let high_water = self.reserved_until.saturating_add(BLOCK);
        let (path, incarnation) = (self.path.clone(), self.incarnation.clone());
        let spawned = std::thread::Builder::new()
            .name("edgewise-seq".into())
            .spawn(move || write_state(&path, &incarnation, high_water));
        // If no thread can be started, the block is written in `next` when needed.
        if let Ok(thread) = spawned {
            self.ahead = Some((high_water, thread));
        }
    }
}

impl Drop for Sequence {
    /// Wait for a reservation in flight, so a sequence opened again in this
    /// process never races it for the file.
    fn drop(&mut self) {
        if let Some((_, thread)) = self.ahead.take() {
            let _ = join(thread);
        }
    }
}

fn join(thread: JoinHandle<std::io::Result<()>>) -> std::io::Result<()> {
    thread
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the sequence reservation thread panicked")))
}

/// Length of an incarnation in bytes (128 bits).
const INCARNATION_BYTES: usize = 16;

/// 128 random bits, lowercase hex.
pub(crate) fn new_incarnation() -> std::io::Result<String> {
    let mut bytes = [0u8; INCARNATION_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| std::io::Error::other("the system random generator failed"))?;
    Ok(hex::encode(bytes))
}

/// Where the sequence state of `plugin` is kept.
fn state_path(data_dir: &Path, plugin: &str) -> PathBuf {
    data_dir.join(format!("seq-{plugin}"))
}

/// The high-water mark of the state at `path`, `None` if there is no file.
fn read_state(path: &Path) -> std::io::Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_state(&text).map(Some).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: not `<incarnation> <high-water mark>` (32 hex digits, a number)",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The high-water mark of `<incarnation> <high-water>` (current: the
/// incarnation of the run that wrote it, checked for its form and not
/// otherwise used) or `<high-water>` (before incarnations).
fn parse_state(text: &str) -> Option<u64> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    match tokens.as_slice() {
        [high_water] => high_water.parse().ok(),
        [incarnation, high_water]
            if incarnation.len() == 2 * INCARNATION_BYTES
                && incarnation
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            high_water.parse().ok()
        }
        _ => None,
    }
}

/// Write the state to `path` atomically and durably (mode 0600).
fn write_state(path: &Path, incarnation: &str, high_water: u64) -> std::io::Result<()> {
    let state = format!("{incarnation} {high_water}\n");
    files::write_atomic(path, state.as_bytes(), Access::Private, Existing::Replace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn high_water(dir: &Path, plugin: &str) -> u64 {
        let text = std::fs::read_to_string(dir.join(format!("seq-{plugin}"))).unwrap();
        parse_state(&text).unwrap()
    }

    #[test]
    fn numbers_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut seq = Sequence::open(dir.path(), "p").unwrap();
        let first: Vec<u64> = (0..1500).map(|_| seq.next().unwrap()).collect();
        assert_eq!(first, (1..=1500).collect::<Vec<u64>>());
        drop(seq); // as a crash would: no shutdown hook
        let mut again = Sequence::open(dir.path(), "p").unwrap();
        assert!(again.next().unwrap() > 1500);
        let mut other = Sequence::open(dir.path(), "q").unwrap();
        assert_eq!(other.next().unwrap(), 1);
    }

    #[test]
    fn a_number_is_handed_out_only_once_its_block_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut seq = Sequence::open(dir.path(), "p").unwrap();
        for _ in 0..5 {
            for _ in 0..777 {
                let n = seq.next().unwrap();
                assert!(
                    n <= high_water(dir.path(), "p"),
                    "{n} handed out before its block was durable"
                );
            }
        }
        // Half a block before its end the next one is on its way, and it is
        // on disk before its first number is used.
        let mut seq = Sequence::open(dir.path(), "r").unwrap();
        for _ in 0..BLOCK {
            seq.next().unwrap();
        }
        assert_eq!(seq.next().unwrap(), BLOCK + 1);
        assert!(high_water(dir.path(), "r") >= 2 * BLOCK);
    }

    #[test]
    fn a_corrupt_high_water_mark_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("seq-p"), "not a number").unwrap();
        let error = Sequence::open(dir.path(), "p").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn each_open_gets_a_new_incarnation_and_a_kept_state_keeps_its_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Sequence::open(dir.path(), "p").unwrap();
        let incarnation = first.incarnation().to_owned();
        assert_eq!(incarnation.len(), 32);
        assert!(
            incarnation
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(first.next().unwrap(), 1);
        let backup = std::fs::read_to_string(dir.path().join("seq-p")).unwrap();
        drop(first);
        // The same state again: numbers after the reserved block, a new name.
        let mut again = Sequence::open(dir.path(), "p").unwrap();
        assert_ne!(again.incarnation(), incarnation);
        let again_first = again.next().unwrap();
        assert!(again_first > 1);
        // The state set back (a backup restored): a number handed out before
        // comes again, never under the same name.
        let again_incarnation = again.incarnation().to_owned();
        drop(again);
        std::fs::write(dir.path().join("seq-p"), &backup).unwrap();
        let mut restored = Sequence::open(dir.path(), "p").unwrap();
        assert_ne!(restored.incarnation(), incarnation);
        assert_ne!(restored.incarnation(), again_incarnation);
        assert_eq!(restored.next().unwrap(), again_first);
        // Another plugin, another data directory, a deleted file: new ones.
        assert_ne!(Sequence::open(dir.path(), "q").unwrap().incarnation(), incarnation);
        let clone = tempfile::tempdir().unwrap();
        assert_ne!(Sequence::open(clone.path(), "p").unwrap().incarnation(), incarnation);
        std::fs::remove_file(dir.path().join("seq-p")).unwrap();
        let mut reset = Sequence::open(dir.path(), "p").unwrap();
        assert_ne!(reset.incarnation(), incarnation);
        assert_eq!(reset.next().unwrap(), 1);
    }

    #[test]
    fn a_state_from_before_incarnations_keeps_its_number_under_a_new_incarnation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("seq-p"), "2000").unwrap();
        let mut seq = Sequence::open(dir.path(), "p").unwrap();
        assert_eq!(seq.next().unwrap(), 2001);
        let text = std::fs::read_to_string(dir.path().join("seq-p")).unwrap();
        assert!(text.starts_with(seq.incarnation()), "{text}");
        for bad in ["ABCDEF0123456789abcdef0123456789 5", "abc 5", "x y z", ""] {
            std::fs::write(dir.path().join("seq-p"), bad).unwrap();
            assert_eq!(
                Sequence::open(dir.path(), "p").unwrap_err().kind(),
                std::io::ErrorKind::InvalidData,
                "{bad:?}"
            );
        }
    }

    /// Nowhere to write the state (as on a full disk): the sequence opens,
    /// hands out no number until a block is durable, then goes on.
    #[test]
    fn a_sequence_opens_when_nothing_can_be_reserved_and_numbers_wait_for_a_reservation() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("not-yet");
        let mut seq = Sequence::open(&data, "p").unwrap();
        assert!(seq.next().is_err());
        assert!(seq.next().is_err());
        std::fs::create_dir(&data).unwrap();
        assert_eq!(seq.next().unwrap(), 1);
        assert!(high_water(&data, "p") >= 1);
        // A kept state that cannot be rewritten at open: numbers after it.
        drop(seq);
        let text = std::fs::read_to_string(data.join("seq-p")).unwrap();
        std::fs::remove_file(data.join("seq-p")).unwrap();
        std::fs::create_dir(data.join("seq-p")).unwrap();
        assert!(
            Sequence::open(&data, "p").is_err(),
            "a state that cannot be read is an error"
        );
        std::fs::remove_dir(data.join("seq-p")).unwrap();
        std::fs::write(data.join("seq-p"), &text).unwrap();
        let mut again = Sequence::open(&data, "p").unwrap();
        assert!(again.next().unwrap() > 1);
    }

    #[test]
    fn a_damaged_state_is_moved_aside_and_renewed_under_a_new_incarnation() {
        let dir = tempfile::tempdir().unwrap();
        let first = Sequence::open(dir.path(), "p").unwrap();
        let incarnation = first.incarnation().to_owned();
        drop(first);
        let (mut kept, report) = Sequence::open_or_renew(dir.path(), "p").unwrap();
        assert!(kept.next().unwrap() > 1, "the kept state's numbers go on");
        assert!(report.is_none());
        drop(kept);
        std::fs::write(dir.path().join("seq-p"), "garbage").unwrap();
        let (mut renewed, report) = Sequence::open_or_renew(dir.path(), "p").unwrap();
        assert_ne!(renewed.incarnation(), incarnation);
        assert_eq!(renewed.next().unwrap(), 1);
        assert!(report.unwrap().contains("seq-p.damaged"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("seq-p.damaged")).unwrap(),
            "garbage"
        );
        let text = std::fs::read_to_string(dir.path().join("seq-p")).unwrap();
        assert!(text.starts_with(renewed.incarnation()), "{text}");
    }

    /// The state file replaced by a directory while in use: reservations
    /// fail (as any write error would), numbers already reserved still come.
    #[test]
    fn a_reservation_that_cannot_be_written_is_an_error_not_a_reused_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut seq = Sequence::open(dir.path(), "p").unwrap();
        std::fs::remove_file(dir.path().join("seq-p")).unwrap();
        std::fs::create_dir(dir.path().join("seq-p")).unwrap();
        let numbers: Vec<u64> = (0..BLOCK).map(|_| seq.next().unwrap()).collect();
        assert_eq!(numbers, (1..=BLOCK).collect::<Vec<u64>>());
        assert!(seq.next().is_err());
        assert!(seq.next().is_err());
        std::fs::remove_dir(dir.path().join("seq-p")).unwrap();
        assert_eq!(
            seq.next().unwrap(),
            BLOCK + 1,
            "no number skipped or reused once it works again"
        );
    }
}
