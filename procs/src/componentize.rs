//! Python plugins: componentize-py (from PyPI, installed under
//! `target/componentize-py` on first use) and the build of each Python
//! plugin with the Python SDK's build command (`sdk-python/`), into the same
//! place as the Rust components (`target/wasm32-wasip2/release/NAME.wasm`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, bail};

use crate::workspace;

/// Python plugins under `plugins/`, built as components by [`build_python_plugins`].
pub const PYTHON_PLUGINS: &[&str] = &["band-py"];

/// The componentize-py release the Python SDK is written for. Releases
/// before 0.19 (0.17.2 among them) leak every call's arguments in the
/// component they write, so the instance's memory grows until it hits its
/// limit (sdk-python/README.md); the SDK's build refuses them.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Where componentize-py is installed (`target/componentize-py`), installing
/// it on first use (or when the pinned version changes).
pub fn componentize_py_dir() -> anyhow::Result<PathBuf> {
    let dir = workspace::target_dir().join("componentize-py");
    if !installed_marker(&dir).is_dir() {
        crate::pip::install_target(
            &dir,
            &format!("componentize-py=={COMPONENTIZE_PY_VERSION}"),
            "the Python plugins are built with componentize-py",
        )?;
    }
    Ok(dir)
}

/// The folder pip writes for [`COMPONENTIZE_PY_VERSION`] in `dir`: present
/// once that version is installed there, and as new as the install.
fn installed_marker(dir: &Path) -> PathBuf {
    dir.join(format!("componentize_py-{COMPONENTIZE_PY_VERSION}.dist-info"))
}

/// Build every plugin of [`PYTHON_PLUGINS`] whose component is older than
/// its sources, the Python SDK, the contract or the componentize-py install
/// (a build takes ~15 s and ~500 MB of memory, so an unchanged plugin is not
/// built again; a new componentize-py version rebuilds it).
pub fn build_python_plugins() -> anyhow::Result<()> {
    let root = workspace::root();
    let componentize_py = installed_marker(&componentize_py_dir()?);
    for name in PYTHON_PLUGINS {
        let app_dir = root.join("plugins").join(name);
        let output = workspace::component_path(name);
        let sources = [
            app_dir.clone(),
            root.join("sdk-python"),
            root.join("wit").join("v0.2"),
            componentize_py.clone(),
        ];
        if is_fresh(&output, &sources)? {
            continue;
        }
        build_python_plugin(&app_dir, &output)?;
    }
    Ok(())
}

/// `python3 -m edgewise_sdk.build APP_DIR -o OUTPUT`, with componentize-py
/// and the SDK on the Python path.
pub fn build_python_plugin(app_dir: &Path, output: &Path) -> anyhow::Result<()> {
    let componentize_py = componentize_py_dir()?;
    let sdk = workspace::root().join("sdk-python");
    let python_path =
        std::env::join_paths([componentize_py.as_path(), sdk.as_path()]).context("a Python path with a `:` in it")?;
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut command = Command::new("python3");
    command
        .args(["-m", "edgewise_sdk.build"])
        .arg(app_dir)
        .arg("-o")
        .arg(output)
        .env("PYTHONPATH", python_path)
        // Keep `__pycache__` out of the sources (and of the freshness check).
        .env("PYTHONDONTWRITEBYTECODE", "1");
    eprintln!("{command:?}");
    let status = command.status().context("cannot run python3")?;
    if !status.success() {
        bail!("building the Python plugin {} failed ({status})", app_dir.display());
    }
    Ok(())
}

/// Whether `output` exists and is newer than every file under `sources`.
fn is_fresh(output: &Path, sources: &[PathBuf]) -> anyhow::Result<bool> {
    let Ok(built) = std::fs::metadata(output).and_then(|m| m.modified()) else {
        return Ok(false);
    };
    let mut newest = SystemTime::UNIX_EPOCH;
    for source in sources {
        newest = newest.max(newest_under(source)?);
    }
    Ok(newest <= built)
}

/// The latest modification time of a file under `path` (or of `path`).
fn newest_under(path: &Path) -> anyhow::Result<SystemTime> {
    let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut newest = metadata.modified()?;
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))? {
            let entry = entry?;
            if entry.file_name() == "__pycache__" {
                continue;
            }
            newest = newest.max(newest_under(&entry.path())?);
        }
    }
    Ok(newest)
}
