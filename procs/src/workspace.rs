//! Where the workspace's built programs are, and building them on first use.
//!
//! Everything is built in the release profile (as `cargo xtask` does), so
//! wasmtime is compiled once for the tests, the benchmarks and the demo:
//! `target/release/edgewise` and the plugin components under
//! `target/wasm32-wasip2/release/`. [`built`] runs `cargo build` for them once
//! per process, so `cargo test -p edgewise-tests` works on a fresh clone; a
//! caller that has just built them (`cargo xtask test`) sets
//! [`BUILT_VARIABLE`] and the build is skipped.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, bail};

/// The WebAssembly target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Crates built as components: the real plugins and the test fixtures.
pub const PLUGIN_CRATES: &[&str] = &[
    "glucose-monitor",
    "glucose-forecast",
    "threshold",
    "band",
    "faulty-plugin",
    "echo-v02",
    "faulty-v02",
    "glucose-chaos",
];

/// Set (to anything) by a caller that has built the host and the plugins
/// already: [`built`] then only checks that they are there.
pub const BUILT_VARIABLE: &str = "EDGEWISE_BUILT";

/// Variables `cargo` sets for the crate it builds or runs. Passed down to
/// an inner `cargo`, they would make build scripts that track them (ring's)
/// rerun, and the inner and outer builds invalidate each other on every run.
const CRATE_VARIABLE_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_"];

/// The workspace root.
pub fn root() -> PathBuf {
    let procs_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    procs_dir.parent().map(Path::to_path_buf).unwrap_or(procs_dir)
}

/// The target directory: `CARGO_TARGET_DIR`, else `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// `target/release/edgewise`.
pub fn edgewise_path() -> PathBuf {
    target_dir().join("release").join("edgewise")
}

/// Where the component of the plugin crate `crate_name` lands.
pub fn component_path(crate_name: &str) -> PathBuf {
    target_dir()
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")))
}

/// `cargo ARGS` in the workspace root, without the variables of the crate
/// that runs it.
pub fn cargo(args: &[&str]) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(args).current_dir(root());
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if CRATE_VARIABLE_PREFIXES.iter().any(|prefix| text.starts_with(prefix)) {
            command.env_remove(&name);
        }
    }
    command
}

/// Run `cargo ARGS` (saying so on stderr), with extra variables `env`; fail if it fails.
pub fn run_cargo(args: &[&str], env: &[(&str, &OsStr)]) -> anyhow::Result<()> {
    eprintln!("cargo {}", args.join(" "));
    let status = cargo(args)
        .envs(env.iter().copied())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Build `edgewise` (release).
pub fn build_host() -> anyhow::Result<()> {
    run_cargo(&["build", "--release", "-p", "edgewise-host"], &[])
}

/// Add the wasm target if missing, then build every plugin crate (release)
/// and the Python plugins ([`crate::componentize`]).
pub fn build_plugins() -> anyhow::Result<()> {
    ensure_wasm_target()?;
    let mut args = vec!["build", "--release", "--target", WASM_TARGET];
    for name in PLUGIN_CRATES {
        args.extend(["-p", name]);
    }
    run_cargo(&args, &[])?;
    crate::componentize::build_python_plugins()
}

/// Whether this process has built the host and the plugins; held while it
/// builds, so concurrent callers (parallel tests) wait for one build.
static BUILT: Mutex<bool> = Mutex::new(false);

/// Build `edgewise` and the plugin components once per process (unless
/// [`BUILT_VARIABLE`] says they are built); then check that they exist.
pub fn built() -> anyhow::Result<()> {
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if !*built {
        if std::env::var_os(BUILT_VARIABLE).is_none() {
            build_host()?;
            build_plugins()?;
        }
        let mut needed = vec![edgewise_path()];
        needed.extend(
            PLUGIN_CRATES
                .iter()
                .chain(crate::componentize::PYTHON_PLUGINS)
                .map(|name| component_path(name)),
        );
        if let Some(missing) = needed.iter().find(|path| !path.is_file()) {
            bail!("{} is missing after the build", missing.display());
        }
        *built = true;
    }
    Ok(())
}

/// `rustup target add wasm32-wasip2` unless it is already installed.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup (needed to add the wasm32-wasip2 target)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    eprintln!("rustup target add {WASM_TARGET}");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .context("cannot run rustup")?;
    if !status.success() {
        bail!("`rustup target add {WASM_TARGET}` failed ({status})");
    }
    Ok(())
}

/// `edgewise ARGS` (the built binary), without `RUST_LOG`.
pub fn edgewise(args: &[&OsStr]) -> Command {
    let mut command = Command::new(edgewise_path());
    command.args(args).env_remove("RUST_LOG");
    command
}

/// Run `edgewise ARGS` to completion; fail with its stderr if it fails.
pub fn run_edgewise(args: &[&OsStr]) -> anyhow::Result<Output> {
    checked_output(edgewise(args))
}

/// Run `command` to completion, its output captured; fail with its stderr if it fails.
pub fn checked_output(mut command: Command) -> anyhow::Result<Output> {
    let output = command.output().with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "`{command:?}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}
