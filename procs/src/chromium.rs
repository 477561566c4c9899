//! The Chromium binary the browser tests drive (`edgewise_tests::browser`).
//!
//! In order of preference: the file named by `CHROMIUM`, else `chromium`,
//! `chromium-browser` or `google-chrome` on `PATH`. The tests only look it
//! up ([`find`]); `cargo xtask test` also installs the distribution's
//! package when none is found ([`ensure`], Debian's `chromium` through
//! apt-get, as root) and passes the path on in `CHROMIUM`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::executable::{find_on_path, is_executable, version_of};

/// The environment variable naming the binary.
pub const VARIABLE: &str = "CHROMIUM";

/// The names looked up on `PATH`, in order: Debian's, Ubuntu's and others'
/// package, Google's build.
const NAMES: &[&str] = &["chromium", "chromium-browser", "google-chrome"];

/// The Debian package [`ensure`] installs.
const PACKAGE: &str = "chromium";

/// What to do when there is none, for error messages.
const HOW_TO_GET_ONE: &str = "install Chromium (Debian: `apt-get install chromium`; `cargo xtask test` does it when \
     run as root) or set CHROMIUM to a Chromium or Chrome binary";

/// The binary named by `CHROMIUM`, else the first of [`NAMES`] on `PATH`.
pub fn find() -> anyhow::Result<PathBuf> {
    lookup()?.with_context(|| format!("no Chromium: none of {} is on PATH; {HOW_TO_GET_ONE}", NAMES.join(", ")))
}

/// [`find`], or install [`PACKAGE`] with apt-get when there is none; say on
/// stderr which binary it uses.
pub fn ensure() -> anyhow::Result<PathBuf> {
    let path = match lookup()? {
        Some(path) => path,
        None => {
            install()?;
            find().context("apt-get installed chromium, yet it is not on PATH")?
        }
    };
    eprintln!("using {} ({})", path.display(), version_of(&path)?);
    Ok(path)
}

/// `CHROMIUM` if set (an error if it names no executable), else the first
/// of [`NAMES`] on `PATH`, else `None`.
fn lookup() -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = std::env::var_os(VARIABLE) {
        let path = PathBuf::from(path);
        if !is_executable(&path) {
            bail!(
                "{VARIABLE}={} is not an executable file (unset it to use chromium from PATH)",
                path.display()
            );
        }
        return Ok(Some(path));
    }
    Ok(NAMES.iter().find_map(|name| find_on_path(name)))
}

/// `apt-get install -y --no-install-recommends chromium`, after `apt-get
/// update` only if the package lists do not know the package yet (a fresh
/// container has none).
fn install() -> anyhow::Result<()> {
    if find_on_path("apt-get").is_none() {
        bail!("no Chromium and no apt-get to install it: {HOW_TO_GET_ONE}");
    }
    if !is_root() {
        bail!("no Chromium, and installing it with apt-get needs root: {HOW_TO_GET_ONE}");
    }
    eprintln!("no Chromium on PATH and CHROMIUM unset: installing the `{PACKAGE}` package with apt-get");
    let first = apt_get(&["install", "-y", "--no-install-recommends", PACKAGE])?;
    if first.success {
        return Ok(());
    }
    if !first.stderr.contains("Unable to locate package") && !first.stderr.contains("has no installation candidate") {
        bail!(
            "`apt-get install {PACKAGE}` failed: {}; {HOW_TO_GET_ONE}",
            first.stderr.trim()
        );
    }
    let update = apt_get(&["update"])?;
    if !update.success {
        bail!("`apt-get update` failed: {}; {HOW_TO_GET_ONE}", update.stderr.trim());
    }
    let second = apt_get(&["install", "-y", "--no-install-recommends", PACKAGE])?;
    if !second.success {
        bail!(
            "`apt-get install {PACKAGE}` failed: {}; {HOW_TO_GET_ONE}",
            second.stderr.trim()
        );
    }
    Ok(())
}

/// How an apt-get run ended: whether it succeeded, and its stderr (also
/// shown on ours).
struct AptOutcome {
    success: bool,
    stderr: String,
}

/// `apt-get ARGS`, non-interactive, its progress on our stdout.
fn apt_get(args: &[&str]) -> anyhow::Result<AptOutcome> {
    eprintln!("apt-get {}", args.join(" "));
    let output = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .context("cannot run apt-get")?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprint!("{stderr}");
    Ok(AptOutcome {
        success: output.status.success(),
        stderr,
    })
}

/// Whether this process runs as root: `/proc/self` belongs to the
/// process's effective user (no libc needed).
#[cfg(unix)]
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}
