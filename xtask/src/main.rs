//! `cargo xtask`: the project's automation, in Rust rather than shell.
//!
//! - `cargo xtask test`: add the wasm32-wasip2 target if missing, install
//!   nats-server and Chromium (the browser tests') if missing, build the
//!   plugins and the host, check formatting and lints, run every test.
//! - `cargo xtask demo`: sign the plugins, start a local and a cloud
//!   nats-server and `edgewise run` on a simulated clock, play a real CGM
//!   recording, show alerts and summaries live through a cloud outage, and
//!   count that nothing was lost.
//! - `cargo xtask bench`: run the benchmark suite (`bench/`, every figure
//!   against a baseline measured in the same run), print the table and write
//!   `BENCHMARKS.md`.
//! - `cargo xtask soak`: the long variants of the durability tests (hours
//!   offline, millions of queued outputs, dozens of kills), not run in CI;
//!   `cargo xtask soak --help` for the flags.
//! - `cargo xtask build-plugins`: only build the plugin components.
//!
//! Everything uses the release profile, so wasmtime is compiled once. The
//! processes, the nats-server binary and the builds are `edgewise-procs`'s,
//! shared with the tests and the benchmarks.

mod bench;
mod cgm;
mod demo;
mod soak;

use std::path::Path;

use edgewise_procs::workspace::{self, BUILT_VARIABLE};
use edgewise_procs::{chromium, nats_binary, workspace::run_cargo};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace::root();
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("demo") => demo::run(&root),
        Some("bench") => bench::run(&root),
        Some("soak") => soak::run(&root, &args[1..]),
        Some("build-plugins") => workspace::build_plugins(),
        _ => {
            eprintln!("usage: cargo xtask <test|demo|bench|soak|build-plugins>");
            std::process::exit(2);
        }
    }
}

/// `cargo xtask test`.
fn test(root: &Path) -> anyhow::Result<()> {
    let nats_server = nats_binary::ensure(root)?;
    let chromium = chromium::ensure()?;
    build_all()?;
    run_cargo(&["fmt", "--all", "--check"], &[])?;
    run_cargo(
        &[
            "clippy",
            "--release",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    // Built above: the test fixtures need not run cargo again.
    run_cargo(
        &["test", "--release", "--workspace"],
        &[
            ("NATS_SERVER", nats_server.as_os_str()),
            (chromium::VARIABLE, chromium.as_os_str()),
            (BUILT_VARIABLE, "1".as_ref()),
        ],
    )?;
    eprintln!("xtask: all tests passed");
    Ok(())
}

/// Build the plugins and `edgewise` (release).
pub(crate) fn build_all() -> anyhow::Result<()> {
    workspace::build_plugins()?;
    workspace::build_host()
}
