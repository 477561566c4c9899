//! Finding an executable on `PATH` and asking its version, for the tools
//! the tests run (`nats-server`, `chromium`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The first `name` in a `PATH` directory that is an executable file.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// Whether `path` is a file this process may execute (on Unix: an execute bit is set).
#[cfg(unix)]
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `path` is a file this process may execute.
#[cfg(not(unix))]
pub fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// What `PATH --version` prints on stdout, e.g. `nats-server: v2.15.1`; an
/// error with what it said if it fails or prints nothing.
pub fn version_of(path: &Path) -> anyhow::Result<String> {
    let output = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
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
