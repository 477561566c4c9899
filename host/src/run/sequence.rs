//! Sequence numbers of a plugin's outputs, never reused across restarts.
//!
//! `Nats-Msg-Id` is `<device>/<plugin>/<seq>`: upstream deduplication would
//! silently drop a new output that reused a number. Numbers are handed out
//! from blocks reserved on disk (a "hi/lo" allocator): the high-water mark is
//! written and synced before any number of its block is used, so a crash
//! skips at most two blocks and never repeats a number.
//!
//! The next block is reserved in the background once half of the current
//! one is used: the two fsyncs of a reservation (about a millisecond here)
//! would otherwise stall the plugin's thread, and an alert with it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Numbers reserved per disk write.
const BLOCK: u64 = 1000;

/// The sequence of one plugin.
#[derive(Debug)]
pub struct Sequence {
    path: PathBuf,
    next: u64,
    /// The last number whose block is durable.
    reserved_until: u64,
    /// The next block, being made durable in the background: its last
    /// number and the thread writing it.
    ahead: Option<(u64, JoinHandle<std::io::Result<()>>)>,
}

impl Sequence {
    /// Open the sequence of `plugin` under `data_dir` (numbers start at 1).
    pub fn open(data_dir: &Path, plugin: &str) -> std::io::Result<Sequence> {
        let path = data_dir.join(format!("seq-{plugin}"));
        let high_water = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        let first = high_water.saturating_add(1);
        let reserved_until = high_water.saturating_add(BLOCK);
        write_high_water(&path, reserved_until)?;
        Ok(Sequence {
            path,
            next: first,
            reserved_until,
            ahead: None,
        })
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
        write_high_water(&self.path, high_water)?;
        Ok(high_water)
    }

    fn reserve_ahead(&mut self) {
        let high_water = self.reserved_until.saturating_add(BLOCK);
        let path = self.path.clone();
        let spawned = std::thread::Builder::new()
            .name("edgewise-seq".into())
            .spawn(move || write_high_water(&path, high_water));
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

/// Write `high_water` to `path` atomically and durably (file and directory synced).
fn write_high_water(path: &Path, high_water: u64) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(high_water.to_string().as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn high_water(dir: &Path, plugin: &str) -> u64 {
        std::fs::read_to_string(dir.join(format!("seq-{plugin}")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
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
}
