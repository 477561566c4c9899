//! Fixtures for the integration tests: the built `edgewise` binary and
//! plugin components (built on first use), the run's signing key and the
//! bundles signed with it (once per run), nats-server, the recorded data,
//! and a way to run the binary and look at what it did.
//!
//! The processes themselves (nats-servers, `edgewise run`) are started by
//! `edgewise-procs`, which the benchmarks and the demo use too.

pub mod nats;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use edgewise_procs::SigningKey;
use edgewise_procs::workspace;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    workspace::root()
}

/// `edgewise` and the plugin components, built on first use (once per
/// process; `cargo xtask test` has built them already and says so).
fn built() {
    workspace::built().unwrap_or_else(|e| panic!("cannot build what the tests run: {e:#}"));
}

/// Path of the `edgewise` binary (release), built on first use.
pub fn edgewise_bin() -> PathBuf {
    built();
    workspace::edgewise_path()
}

/// Path of a plugin component built for wasm32-wasip2 (crate name, e.g.
/// `glucose-monitor`), built on first use.
pub fn plugin_wasm(crate_name: &str) -> PathBuf {
    built();
    workspace::component_path(crate_name)
}

/// The manifest source (`edgewise.toml`) in the crate of the plugin `crate_name`.
pub fn plugin_manifest(crate_name: &str) -> PathBuf {
    let crate_dir = match crate_name {
        "faulty-plugin" | "echo-v02" | "faulty-v02" | "glucose-chaos" => format!("tests/fixtures/{crate_name}"),
        plugin => format!("plugins/{plugin}"),
    };
    workspace_root().join(crate_dir).join("edgewise.toml")
}

/// The nats-server binary (found, or installed on first use).
pub fn nats_server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        edgewise_procs::nats_binary::ensure(&workspace_root())
            .unwrap_or_else(|e| panic!("no nats-server: {e:#}; set NATS_SERVER to a nats-server binary"))
    })
}

/// A new signing key `name` in `dir` (with its trust directory), made by
/// `edgewise keygen` once the binary is built.
pub fn generate_key(dir: &Path, name: &str) -> SigningKey {
    built();
    SigningKey::generate(dir, name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The signing key of this test run, made on first use under
/// `target/tmp/test-signing-<pid>` (those of runs no longer alive are removed).
pub fn run_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let parent = workspace::target_dir().join("tmp");
        remove_dead_runs(&parent);
        let dir = parent.join(format!("test-signing-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("cannot remove {}: {e}", dir.display()));
        }
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        generate_key(&dir, "run")
    })
}

/// The directories of test runs whose process is gone.
fn remove_dead_runs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("test-signing-")
            && !Path::new("/proc").join(pid).exists()
        {
            // Another run may be removing it too: either removal will do.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The plugin `crate_name` with its own manifest, signed by [`run_key`]:
/// signed once per run, the same file for every test.
pub fn signed_bundle(crate_name: &str) -> PathBuf {
    run_key()
        .bundle(&plugin_manifest(crate_name), &plugin_wasm(crate_name))
        .unwrap_or_else(|e| panic!("{e:#}"))
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
    built();
    let args: Vec<S> = args.into_iter().collect();
    let args: Vec<&std::ffi::OsStr> = args.iter().map(AsRef::as_ref).collect();
    run(workspace::edgewise(&args))
}

/// Run `command` to completion.
pub fn run(mut command: std::process::Command) -> Run {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    Run::from(output)
}
