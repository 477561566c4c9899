//! Fixtures for the integration tests: where the built `edgewise` binary,
//! the plugin components and the recorded data are, and a way to run the
//! binary and look at what it did.
//!
//! The binary and the components are built by `cargo xtask test` before the
//! tests run (release profile, `wasm32-wasip2` for components).

pub mod nats;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    let tests_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    tests_dir.parent().map(Path::to_path_buf).unwrap_or(tests_dir)
}

/// The `target/<profile>` directory this test binary was built into.
fn profile_dir() -> PathBuf {
    // target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Path of the `edgewise` binary; panics with the fix if it is not built.
pub fn edgewise_bin() -> PathBuf {
    let path = profile_dir().join("edgewise");
    assert!(path.exists(), "{} is missing: run `cargo xtask test`", path.display());
    path
}

/// Path of a plugin component built for wasm32-wasip2 (crate name, e.g. `glucose-monitor`).
pub fn plugin_wasm(crate_name: &str) -> PathBuf {
    let path = workspace_root()
        .join("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(path.exists(), "{} is missing: run `cargo xtask test`", path.display());
    path
}

/// A file under `tests/data/`.
pub fn data_file(relative: &str) -> PathBuf {
    workspace_root().join("tests/data").join(relative)
}

/// A file under `tests/golden/`.
pub fn golden_file(name: &str) -> PathBuf {
    workspace_root().join("tests/golden").join(name)
}

/// What a run of `edgewise` did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Run `edgewise ARGS` to completion.
pub fn edgewise<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = Command::new(edgewise_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("cannot run edgewise: {e}"));
    Run::from(output)
}
