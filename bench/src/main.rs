//! `edgewise-bench`: the benchmark harness behind `cargo xtask bench`.
//!
//! It measures every DESIGN performance target against a baseline measured
//! in the same run (the machines are shared and noisy: only ratios compare),
//! talking to real nats-servers, the real `edgewise` binary and real plugin
//! components. It prints the table and writes it, with the machine, the
//! date, the command and the method, to `BENCHMARKS.md`.
//!
//! ```text
//! edgewise-bench [--out FILE] [--command TEXT] [--only ID,ID...]
//! edgewise-bench echo --url URL                        (a child: the bare echo hop)
//! edgewise-bench memory --plugin WASM                 (a child: RSS with 1, 10, 100 instances)
//! edgewise-bench allocator --plugin WASM --kind K     (a child: on-demand or pooling allocator)
//! ```
//!
//! Modules: `suite` (the list of measurements), `measure/*` (one per
//! measurement), `table` (rows and verdicts), `report` (the file), `setup`
//! (paths, signed bundles), `device` (`edgewise run`), `load` (the traffic),
//! `ladder` (highest sustained rate), `latency` (paced publisher and answer
//! timing), `echo` (the bare echo hop), `native` (glucose-monitor linked natively,
//! driven as the host drives its component), `cpu` (CPU time from `/proc`), `disk` (the
//! disk's durable-write latency beside a measurement), `stats`.

#![deny(missing_docs)]

mod cpu;
mod device;
mod disk;
mod echo;
mod ladder;
mod latency;
mod load;
mod measure;
mod native;
mod report;
mod setup;
mod stats;
mod suite;
mod table;
mod why;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};

/// The host's allocator (`edgewise` runs on mimalloc): the in-process
/// measurements run the host library on it, and the native baseline its
/// plugin, as `edgewise` would.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn")),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("echo") => {
            let hop = if args.iter().any(|a| a == "--via-thread") {
                echo::Hop::WorkerThread
            } else {
                echo::Hop::Direct
            };
            echo::serve(&value_of(&args, "--url")?, hop)
        }
        Some("memory") => measure::memory::hold_instances(Path::new(&value_of(&args, "--plugin")?)),
        Some("allocator") => {
            measure::allocator::measure_in_child(Path::new(&value_of(&args, "--plugin")?), &value_of(&args, "--kind")?)
        }
        _ => run_suite(&args),
    }
}

/// The value after `flag` in `args`.
fn value_of(args: &[String], flag: &str) -> anyhow::Result<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| anyhow!("{flag} VALUE is required"))
}

fn run_suite(args: &[String]) -> anyhow::Result<()> {
    let mut out: Option<PathBuf> = None;
    let mut command = "target/release/edgewise-bench".to_owned();
    let mut only: Vec<String> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().cloned().ok_or_else(|| anyhow!("{arg} VALUE is required"));
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--command" => command = value()?,
            "--only" => only.extend(value()?.split(',').map(str::to_owned)),
            other => {
                bail!("unknown argument {other}; usage: edgewise-bench [--out FILE] [--command TEXT] [--only ID,ID...]")
            }
        }
    }
    if let Some(unknown) = only.iter().find(|id| !suite::SUITE.iter().any(|m| m.id == id.as_str())) {
        bail!(
            "no measurement {unknown}; there are: {}",
            suite::SUITE.iter().map(|m| m.id).collect::<Vec<_>>().join(", ")
        );
    }
    let started = Instant::now();
    let paths = setup::Paths::find(&edgewise_procs::workspace::root())?;
    let nats_version = nats_version(&paths.nats_server);
    let mut ctx = suite::Ctx::new(paths)?;
    let done = suite::run(&mut ctx, &only);
    let took = started.elapsed();
    let table = report::table(&done);
    println!("\n{table}");
    println!("The suite took {:.0} s.", took.as_secs_f64());
    if let Some(out) = out {
        let text = report::render(&done, &table, &command, &nats_version, took);
        std::fs::write(&out, text).with_context(|| format!("cannot write {}", out.display()))?;
        println!("Wrote {}.", out.display());
    }
    let errors = done
        .iter()
        .flat_map(|d| &d.outcome.rows)
        .filter(|r| matches!(r.verdict, table::Verdict::Error(_)))
        .count();
    if errors > 0 {
        bail!("{errors} measurement(s) failed: see the table");
    }
    Ok(())
}

/// `nats-server --version`, or why not.
fn nats_version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}
