//! `cargo xtask bench`: build what the benchmarks need, run the harness
//! (`edgewise-bench`, the `bench/` crate), which prints the table and writes
//! `BENCHMARKS.md` at the workspace root.
//!
//! The harness renders the table once: what it prints and what it writes
//! are the same text, so the file always holds the numbers that were shown.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use edgewise_procs::nats_binary;
use edgewise_procs::workspace::{self, BUILT_VARIABLE, run_cargo};

/// The file the harness writes, at the workspace root.
const REPORT: &str = "BENCHMARKS.md";

/// `cargo xtask bench`.
pub fn run(root: &Path) -> anyhow::Result<()> {
    let nats_server = nats_binary::ensure(root)?;
    crate::build_all()?;
    run_cargo(&["build", "--release", "-p", "edgewise-bench"], &[])?;
    let harness = workspace::target_dir().join("release").join("edgewise-bench");
    let report = root.join(REPORT);
    eprintln!("xtask: running the benchmarks (a few minutes; the machine should be otherwise idle)");
    let started = Instant::now();
    let status = Command::new(&harness)
        .arg("--out")
        .arg(&report)
        .arg("--command")
        .arg("cargo xtask bench")
        .env("NATS_SERVER", &nats_server)
        .env(BUILT_VARIABLE, "1")
        .current_dir(root)
        .status()
        .with_context(|| format!("cannot run {}", harness.display()))?;
    if !status.success() {
        bail!(
            "the benchmarks failed ({status}) after {:.0} s; see the table above",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "xtask: the benchmarks took {:.0} s; the table above is in {}",
        started.elapsed().as_secs_f64(),
        report.display()
    );
    Ok(())
}
