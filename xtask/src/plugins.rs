//! Building the plugin components for wasm32-wasip2.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::cargo;

/// The WebAssembly target plugins are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Crates built as components: the real plugins and the test fixtures.
const PLUGIN_CRATES: &[&str] = &["glucose-monitor", "threshold", "faulty-plugin"];

/// Add the wasm target if missing, then build every plugin crate in release.
pub fn build(root: &Path) -> anyhow::Result<()> {
    ensure_target()?;
    let mut args = vec!["build", "--release", "--target", TARGET];
    for name in PLUGIN_CRATES {
        args.extend(["-p", name]);
    }
    cargo(root, &args)
}

/// Where the component of `crate_name` lands.
pub fn component_path(root: &Path, crate_name: &str) -> PathBuf {
    root.join("target")
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")))
}

/// `rustup target add wasm32-wasip2` unless it is already installed.
fn ensure_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup (needed to add the wasm32-wasip2 target)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!("xtask: rustup target add {TARGET}");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .context("cannot run rustup")?;
    if !status.success() {
        bail!("`rustup target add {TARGET}` failed ({status})");
    }
    Ok(())
}
