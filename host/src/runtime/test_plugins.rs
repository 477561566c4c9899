//! Real plugin components for the host's unit tests, built on first use so
//! that `cargo test -p edgewise-host` works on a fresh clone.
//!
//! The first test that asks builds every crate in [`PLUGINS`] once per test
//! process (`cargo build --release --target wasm32-wasip2`), in the
//! workspace's own target directory: after `cargo xtask build-plugins` or
//! `cargo xtask test` that is a no-op of about a second, and cargo's own lock
//! keeps two test processes from building at once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The WebAssembly target plugins are built for.
const TARGET: &str = "wasm32-wasip2";

/// The crates the host's tests use, built together in one cargo run.
const PLUGINS: &[&str] = &["glucose-monitor", "threshold", "echo-v02", "faulty-plugin"];

/// The component of `crate_name` (one of [`PLUGINS`]), built if needed.
///
/// # Panics
///
/// If the build fails, with what to do (most often: the target is missing).
pub(crate) fn component(crate_name: &str) -> Vec<u8> {
    static BUILT: OnceLock<Result<BTreeMap<String, PathBuf>, String>> = OnceLock::new();
    let built = BUILT.get_or_init(build).as_ref().unwrap_or_else(|e| panic!("{e}"));
    let path = built
        .get(crate_name)
        .unwrap_or_else(|| panic!("`{crate_name}` is not among the test plugins {PLUGINS:?}"));
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Build [`PLUGINS`]; where each component landed, by crate name.
fn build() -> Result<BTreeMap<String, PathBuf>, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in PLUGINS {
        command.args(["-p", name]);
    }
    let output = command.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let hint = if stderr.contains(TARGET) && stderr.contains("target may not be installed") {
            format!("the {TARGET} target is missing: run `rustup target add {TARGET}`")
        } else {
            "see cargo's output above".to_owned()
        };
        return Err(format!(
            "building the test plugins {PLUGINS:?} for {TARGET} failed ({}): {hint}\n{stderr}",
            output.status
        ));
    }
    let mut built = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(package), Some(files)) = (
            message.pointer("/target/name").and_then(|name| name.as_str()),
            message.get("filenames").and_then(|files| files.as_array()),
        ) else {
            continue;
        };
        let component = files
            .iter()
            .filter_map(|file| file.as_str())
            .find(|file| file.ends_with(".wasm"));
        if let Some(component) = component {
            built.insert(package.replace('_', "-"), PathBuf::from(component));
        }
    }
    match PLUGINS.iter().find(|name| !built.contains_key(**name)) {
        Some(missing) => Err(format!("cargo built no component for `{missing}`:\n{stderr}")),
        None => Ok(built),
    }
}
