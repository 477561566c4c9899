//! `cargo xtask`: the project's automation, in Rust rather than shell.
//!
//! - `cargo xtask test`: add the wasm32-wasip2 target if missing, install
//!   nats-server if missing, build the plugins and the host, check formatting
//!   and lints, run every test.
//! - `cargo xtask demo`: sign the plugins, start a local and a cloud
//!   nats-server and `edgewise run` on a simulated clock, play a real CGM
//!   recording, show alerts and summaries live through a cloud outage, and
//!   count that nothing was lost.
//! - `cargo xtask bench`: run the benchmark suite (`bench/`, every figure
//!   against a baseline measured in the same run), print the table and write
//!   `BENCHMARKS.md`.
//! - `cargo xtask build-plugins`: only build the plugin components.
//!
//! Everything uses the release profile, so wasmtime is compiled once.

mod bench;
mod demo;
mod nats;
mod plugins;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("demo") => demo::run(&root),
        Some("bench") => bench::run(&root),
        Some("build-plugins") => plugins::build(&root),
        _ => {
            eprintln!("usage: cargo xtask <test|demo|bench|build-plugins>");
            std::process::exit(2);
        }
    }
}

/// `cargo xtask test`.
fn test(root: &Path) -> anyhow::Result<()> {
    let nats_server = nats::ensure_server(root)?;
    plugins::build(root)?;
    cargo(root, &["build", "--release", "-p", "edgewise-host"])?;
    cargo(root, &["fmt", "--all", "--check"])?;
    cargo(
        root,
        &[
            "clippy",
            "--release",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    cargo_with_env(
        root,
        &["test", "--release", "--workspace"],
        &[("NATS_SERVER", nats_server.as_os_str())],
    )?;
    eprintln!("xtask: all tests passed");
    Ok(())
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(Path::to_path_buf).unwrap_or(manifest_dir)
}

/// Run `cargo ARGS` in the workspace root; fail if it fails.
pub(crate) fn cargo(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    cargo_with_env(root, args, &[])
}

/// [`cargo`] with extra environment variables.
pub(crate) fn cargo_with_env(root: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut command = Command::new(&cargo);
    command.args(args).current_dir(root);
    // `cargo xtask` is a `cargo run`: it sets the package variables of xtask,
    // which build scripts (ring's) track. Passed down, they would make the
    // inner and outer builds invalidate each other on every run.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("CARGO_PKG_") || name_text.starts_with("CARGO_MANIFEST_") {
            command.env_remove(&name);
        }
    }
    let status = command
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
