//! Sequence numbers of a plugin's outputs, never reused across restarts.
//!
//! `Nats-Msg-Id` is `<device>/<plugin>/<seq>`: upstream deduplication would
//! silently drop a new output that reused a number. Numbers are handed out
//! from blocks reserved on disk (a "hi/lo" allocator): the high-water mark is
//! written and synced before any number of its block is used, so a crash
//! skips at most one block and never repeats a number.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Numbers reserved per disk write.
const BLOCK: u64 = 1000;

/// The sequence of one plugin.
#[derive(Debug)]
pub struct Sequence {
    path: PathBuf,
    next: u64,
    reserved_until: u64,
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
        let mut sequence = Sequence {
            path,
            next: high_water + 1,
            reserved_until: high_water,
        };
        sequence.reserve()?;
        Ok(sequence)
    }

    /// The next number.
    pub fn next(&mut self) -> std::io::Result<u64> {
        if self.next > self.reserved_until {
            self.reserve()?;
        }
        let seq = self.next;
        self.next += 1;
        Ok(seq)
    }

    fn reserve(&mut self) -> std::io::Result<()> {
        let high_water = self.next.saturating_add(BLOCK - 1);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(high_water.to_string().as_bytes())?;
        file.as_file().sync_all()?;
        file.persist(&self.path).map_err(|e| e.error)?;
        std::fs::File::open(dir)?.sync_all()?;
        self.reserved_until = high_water;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut seq = Sequence::open(dir.path(), "p").unwrap();
        let first: Vec<u64> = (0..1500).map(|_| seq.next().unwrap()).collect();
        assert_eq!(first[0], 1);
        assert_eq!(first[1499], 1500);
        drop(seq); // as a crash would: no shutdown hook
        let mut again = Sequence::open(dir.path(), "p").unwrap();
        assert!(again.next().unwrap() > 1500);
        let mut other = Sequence::open(dir.path(), "q").unwrap();
        assert_eq!(other.next().unwrap(), 1);
    }
}
