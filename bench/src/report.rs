//! `BENCHMARKS.md`: the machine, the date, the command, the table exactly as
//! printed, and the method of every measurement.

use std::fmt::Write as _;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::suite::Done;
use crate::table;

/// The machine the figures were measured on, in one line.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split_once(':')))
        .map_or("unknown CPU".to_owned(), |(_, model)| model.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or("unknown memory".to_owned(), |kib| {
            format!("{:.1} GiB RAM", kib / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores available (nproc), {memory}, Linux {}",
        kernel.trim()
    )
}

/// The table, as printed.
pub fn table(done: &[Done]) -> String {
    let rows: Vec<_> = done.iter().flat_map(|d| d.outcome.rows.iter().cloned()).collect();
    table::markdown(&rows)
}

/// The whole file.
pub fn render(done: &[Done], table_text: &str, command: &str, nats_version: &str, took: Duration) -> String {
    let date = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let mut text = String::new();
    let _ = writeln!(text, "# Benchmarks\n");
    let _ = writeln!(
        text,
        "Written by `{command}`; do not edit by hand, run it again. Every figure is measured against its \
         baseline in the same run on the same machine, and the ratio is figure / baseline: the machines \
         are shared and noisy, so only ratios compare across runs (the harness does not stop other work on the machine). Targets are those of DESIGN.md \
         (\"Performance targets\"); a target that is not met says so.\n"
    );
    let _ = writeln!(text, "- Date: {date}");
    let _ = writeln!(text, "- Machine: {}", machine());
    let _ = writeln!(text, "- Command: `{command}` (took {:.0} s)", took.as_secs_f64());
    let _ = writeln!(text, "- nats-server: {nats_version}");
    let _ = writeln!(text, "- Build: release profile\n");
    let _ = writeln!(text, "## Results\n");
    text.push_str(table_text);
    let rows: Vec<_> = done.iter().flat_map(|d| d.outcome.rows.iter().cloned()).collect();
    let why = crate::why::section(&rows);
    if !why.is_empty() {
        let _ = write!(text, "\n{why}");
    }
    let _ = writeln!(text, "\n## Method\n");
    for item in done {
        let _ = writeln!(text, "### {}\n", item.measurement.title);
        let _ = writeln!(
            text,
            "{}\n",
            item.measurement.method.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        for detail in &item.outcome.details {
            let _ = writeln!(text, "- {detail}");
        }
        let _ = writeln!(text, "- took {:.0} s\n", item.took.as_secs_f64());
    }
    text
}
