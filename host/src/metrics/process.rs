//! The host process's CPU time and resident memory, from `/proc/self`
//! (Linux; elsewhere the two are left out), as Prometheus's own clients
//! name them (`process_cpu_seconds_total`, `process_resident_memory_bytes`).

/// CPU time (user and system) and resident set of this process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcessUsage {
    /// Seconds of CPU, user and system.
    pub(crate) cpu_seconds: f64,
    /// Resident memory, bytes.
    pub(crate) resident_bytes: u64,
}

/// This process's usage now, if `/proc/self` can be read.
pub(crate) fn usage() -> Option<ProcessUsage> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    Some(ProcessUsage {
        cpu_seconds: cpu_seconds(),
        resident_bytes: resident_bytes(&statm, page_size())?,
    })
}

/// CPU time of every thread of this process, ended ones included, to the
/// nanosecond. (`/proc/self/stat`'s times count 10 ms clock ticks: a host
/// that compiles in a child process and idles may show none for seconds.)
fn cpu_seconds() -> f64 {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    time.tv_sec as f64 + time.tv_nsec as f64 * 1e-9
}

/// The page size `/proc/self/statm` counts in.
fn page_size() -> u64 {
    // 4 KiB on x86-64 and the common ARM kernels; read from the auxiliary
    // vector where the kernel says otherwise.
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| {
            auxv.chunks_exact(16).find_map(|entry| {
                let key = u64::from_ne_bytes(entry[..8].try_into().ok()?);
                let value = u64::from_ne_bytes(entry[8..].try_into().ok()?);
                (key == AT_PAGESZ).then_some(value)
            })
        })
        .unwrap_or(4096)
}

/// `AT_PAGESZ` of the auxiliary vector.
const AT_PAGESZ: u64 = 6;

/// Resident memory from the text of `/proc/self/statm` (its second field,
/// in pages).
fn resident_bytes(statm: &str, page_size: u64) -> Option<u64> {
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages.saturating_mul(page_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_the_second_field_of_statm_in_pages() {
        assert_eq!(resident_bytes("30000 2000 500 1 0 900 0\n", 4096), Some(2000 * 4096));
        assert_eq!(resident_bytes("garbage", 4096), None);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        let usage = usage().unwrap();
        assert!(usage.resident_bytes > 1 << 20, "{usage:?}");
        // Even a process that has run for less than a clock tick.
        assert!(usage.cpu_seconds > 0.0, "{usage:?}");
    }
}
