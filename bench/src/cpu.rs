//! CPU time from `/proc` (Linux): of a whole process (every thread, exited
//! ones included), of each of its live threads by name, and of the whole
//! machine, so that a live measurement can say what each process spends
//! per reading.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::Context;

/// Clock ticks per second of `/proc/*/stat` and `/proc/stat` (`USER_HZ`).
/// The workspace has no `libc` for `sysconf(_SC_CLK_TCK)`: `getconf
/// CLK_TCK` answers, else 100, the value Linux fixes on x86 and ARM.
fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// Clock ticks to nanoseconds.
fn ticks_to_ns(ticks: u64) -> u64 {
    ticks.saturating_mul(1_000_000_000) / ticks_per_second()
}

/// A file of `/proc`, as text.
fn read(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
}

/// The CPU time of one process at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// User + system time of every thread, exited ones included, ns
    /// (`/proc/<pid>/stat`, clock-tick resolution).
    total_ns: u64,
    /// Live threads: id → (name, time on a CPU in ns, `schedstat`).
    threads: HashMap<u32, (String, u64)>,
}

impl Snapshot {
    /// Read process `pid` now.
    pub fn take(pid: u32) -> anyhow::Result<Snapshot> {
        let total_ns = process_ns(pid)?;
        let dir = format!("/proc/{pid}/task");
        let mut threads = HashMap::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
            let entry = entry.with_context(|| format!("cannot list {dir}"))?;
            let Some(tid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            // A thread may exit between the listing and the read: it is left
            // out, and its time shows as "exited" in [`Usage`].
            if let Ok(thread) = thread_of(&format!("{dir}/{tid}")) {
                threads.insert(tid, thread);
            }
        }
        Ok(Snapshot { total_ns, threads })
    }

    /// What the process used from `before` to this snapshot.
    pub fn since(&self, before: &Snapshot) -> Usage {
        let mut threads: BTreeMap<String, u64> = BTreeMap::new();
        for (tid, (name, ns)) in &self.threads {
            // A thread started since `before` counts from zero.
            let start = before.threads.get(tid).map_or(0, |(_, ns)| *ns);
            *threads.entry(name.clone()).or_default() += ns.saturating_sub(start);
        }
        Usage {
            total_ns: self.total_ns.saturating_sub(before.total_ns),
            threads: threads.into_iter().collect(),
        }
    }
}

/// The CPU time one process used between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Every thread, exited ones included, ns (clock-tick resolution).
    pub total_ns: u64,
    /// Threads alive at the end, summed by name (`comm`, at most 15 bytes), ns.
    pub threads: Vec<(String, u64)>,
}

impl Usage {
    /// The sum over live threads, ns.
    pub fn threads_ns(&self) -> u64 {
        self.threads.iter().map(|(_, ns)| ns).sum()
    }
}

/// User + system time of every thread of `pid`, exited ones included, ns.
fn process_ns(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = read(&path)?;
    // The name, in parentheses, may hold spaces: fields are counted after it.
    // `utime` and `stime` are fields 14 and 15; the first after the name is 3.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .with_context(|| format!("no field {n} in {path}"))
    };
    Ok(ticks_to_ns(field(14)? + field(15)?))
}

/// The name and time on a CPU (ns) of the thread at `/proc/<pid>/task/<tid>`.
fn thread_of(dir: &str) -> anyhow::Result<(String, u64)> {
    let name = read(&format!("{dir}/comm"))?.trim_end().to_owned();
    let path = format!("{dir}/schedstat");
    let ns = read(&path)?
        .split_whitespace()
        .next()
        .and_then(|f| f.parse::<u64>().ok())
        .with_context(|| format!("no time on a CPU in {path}"))?;
    Ok((name, ns))
}

/// Busy time of the whole machine, all cores, ns (`/proc/stat`: everything
/// but idle and I/O wait; steal, time the hypervisor took, counts as busy).
/// The kernel samples these at its clock tick, so they are approximate
/// where work follows the tick (a publisher that sleeps 1 ms at a time);
/// the process totals are scaled to the scheduler's exact run time.
pub fn machine_busy_ns() -> anyhow::Result<u64> {
    let text = read("/proc/stat")?;
    let ticks: Vec<u64> = text
        .lines()
        .find_map(|line| line.strip_prefix("cpu "))
        .map(|rest| rest.split_whitespace().filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_default();
    if ticks.len() < 8 {
        anyhow::bail!("/proc/stat has no full `cpu` line");
    }
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Ok(ticks_to_ns(busy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_its_threads_are_read() {
        let pid = std::process::id();
        let before = Snapshot::take(pid).unwrap();
        // Spin until the snapshots show 50 ms of CPU time (on a shared,
        // loaded machine that takes longer than 50 ms of wall time).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut x = 0u64;
        let usage = loop {
            for _ in 0..1_000_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            let usage = Snapshot::take(pid).unwrap().since(&before);
            if usage.threads_ns() >= 50_000_000 {
                break usage;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the threads' CPU time never reached 50 ms: {usage:?}"
            );
        };
        std::hint::black_box(x);
        assert!(!usage.threads.is_empty());
        assert!(machine_busy_ns().unwrap() > 0);
    }
}
