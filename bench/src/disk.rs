//! The disk's own latency beside a measurement: a thread that appends 4 KiB
//! to a file in the directory the host stores in and waits until it is
//! durable (`fdatasync`, as SQLite's commits do), every [`EVERY`].
//!
//! The host's outbox writer commits on that disk; a commit that takes long
//! fills the writer's queue and, past it, holds up a plugin and its local
//! alerts. The latency figures alone cannot tell a slow disk from a slow
//! host: these, taken during the same seconds, can. One small write every
//! 50 ms adds little to the writer's hundreds of commits a second, and a
//! stall of the device holds the probe's write too, so it is seen.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

use crate::stats::{percentile, sorted};

/// How often the probe writes.
const EVERY: Duration = Duration::from_millis(50);
/// What it writes each time.
const BLOCK: [u8; 4096] = [0x5a; 4096];
/// A write slower than this counts as a stall.
const STALL_MS: f64 = 100.0;

/// Durable-write latency of the disk over a measurement, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskLatency {
    /// Writes made.
    pub probes: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The slowest.
    pub max: f64,
    /// Writes slower than [`STALL_MS`].
    pub stalls: usize,
}

impl DiskLatency {
    /// One line for the method notes.
    pub fn summary(&self) -> String {
        format!(
            "disk beside it (4 KiB append + fdatasync every {} ms): {} writes, p50 {} ms, p99 {} ms, max {} ms, \
             {} over {} ms",
            EVERY.as_millis(),
            self.probes,
            crate::table::number(self.p50),
            crate::table::number(self.p99),
            crate::table::number(self.max),
            self.stalls,
            STALL_MS
        )
    }
}

/// A running probe; [`DiskProbe::finish`] stops it and gives its figures.
pub struct DiskProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<std::io::Result<Vec<f64>>>,
    path: PathBuf,
}

impl DiskProbe {
    /// Start probing the disk that holds `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<DiskProbe> {
        let path = dir.join("bench-disk-probe");
        let mut file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-disk".into())
            .spawn(move || {
                // At least one write, however soon it is stopped.
                let mut times = Vec::new();
                loop {
                    let start = Instant::now();
                    file.write_all(&BLOCK)?;
                    file.sync_data()?;
                    times.push(start.elapsed().as_secs_f64() * 1000.0);
                    if stopped.load(Ordering::Relaxed) {
                        return Ok(times);
                    }
                    std::thread::sleep(EVERY);
                }
            })
            .context("cannot start the disk probe's thread")?;
        Ok(DiskProbe { stop, thread, path })
    }

    /// Stop probing: the figures since the start.
    pub fn finish(self) -> anyhow::Result<DiskLatency> {
        self.stop.store(true, Ordering::Relaxed);
        let times = self
            .thread
            .join()
            .map_err(|_| anyhow!("the disk probe's thread panicked"))?
            .with_context(|| format!("cannot write and sync {}", self.path.display()))?;
        let _ = std::fs::remove_file(&self.path);
        let times = sorted(&times);
        let at = |p| percentile(&times, p).ok_or_else(|| anyhow!("the disk probe made no write"));
        Ok(DiskLatency {
            probes: times.len(),
            p50: at(50.0)?,
            p99: at(99.0)?,
            max: at(100.0)?,
            stalls: times.iter().filter(|&&ms| ms > STALL_MS).count(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_writes_at_least_once_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskProbe::start(dir.path()).unwrap().finish().unwrap();
        assert!(disk.probes >= 1, "{disk:?}");
        assert!(disk.p50 <= disk.p99 && disk.p99 <= disk.max, "{disk:?}");
        assert!(disk.summary().contains(&format!("{} writes", disk.probes)));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the probe's file removed"
        );
    }

    #[test]
    fn a_probe_in_a_directory_that_is_not_there_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = DiskProbe::start(&dir.path().join("gone")).err().unwrap();
        assert!(format!("{error:#}").contains("cannot create"), "{error:#}");
    }
}
