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

/// Clock ticks per second of `/proc/self/stat`'s times: 100 on every Linux
/// architecture the host runs on (`USER_HZ`, fixed by the kernel's ABI).
const USER_HZ: f64 = 100.0;

/// This process's usage now, if `/proc/self` can be read.
pub(crate) fn usage() -> Option<ProcessUsage> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    parse(&stat, &statm, page_size())
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

/// Usage from the text of `/proc/self/stat` and `/proc/self/statm`.
fn parse(stat: &str, statm: &str, page_size: u64) -> Option<ProcessUsage> {
    // The command name (field 2) is in parentheses and may hold spaces:
    // the fields are counted from after its closing parenthesis.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime): 12 and 13 after the name (field 3 is the first).
    let ticks = |index: usize| fields.get(index)?.parse::<u64>().ok();
    let cpu_ticks = ticks(11)? + ticks(12)?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(ProcessUsage {
        cpu_seconds: cpu_ticks as f64 / USER_HZ,
        resident_bytes: resident_pages.saturating_mul(page_size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (edge wise) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1000 \
                    123456789 2000 18446744073709551615";
        let usage = parse(stat, "30000 2000 500 1 0 900 0\n", 4096).unwrap();
        assert_eq!(usage.cpu_seconds, 3.0);
        assert_eq!(usage.resident_bytes, 2000 * 4096);
        assert_eq!(parse("garbage", "", 4096), None);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        let usage = usage().unwrap();
        assert!(usage.resident_bytes > 1 << 20, "{usage:?}");
        assert!(usage.cpu_seconds >= 0.0, "{usage:?}");
    }
}
