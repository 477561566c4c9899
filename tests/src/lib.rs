//! Fixtures for the integration tests: the built `edgewise` binary and
//! plugin components (built on first use), the run's signing key and the
//! bundles signed with it (once per run), nats-server, the recorded data,
//! a way to run the binary and look at what it did, and a real browser
//! ([`browser`]) for the dashboard.
//!
//! The processes themselves (nats-servers, `edgewise run`) are started by
//! `edgewise-procs`, which the benchmarks and the demo use too.

pub mod browser;
pub mod nats;
pub mod prometheus;

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

impl Run {
    /// Its standard output as JSON objects, one per line (what `edgewise
    /// replay` writes), once it exited 0; panics with its standard error
    /// otherwise.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        assert_eq!(self.code, Some(0), "{}", self.stderr);
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {e}: {line}")))
            .collect()
    }
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

/// The plugin every deployment bundle is a version of.
pub const DEPLOY_PLUGIN: &str = "glucose-monitor";

/// One bundle of the deployment tests: its file and the version its
/// manifest says (or, unsigned, the version a desired set would claim).
#[derive(Debug, Clone)]
pub struct DeployBundle {
    /// The bundle file.
    pub path: PathBuf,
    /// Its version.
    pub version: &'static str,
}

impl DeployBundle {
    /// Its bytes.
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap_or_else(|e| panic!("cannot read {}: {e}", self.path.display()))
    }
}

/// The bundles of the deployment tests (issue #15), all of the plugin
/// [`DEPLOY_PLUGIN`], made once per run under the run key's directory. The
/// good ones are signed by [`run_key`] (trust its `trust_dir`). Every
/// manifest writes and reads snapshot schema 1, glucose-monitor's: each
/// version resumes from what another wrote.
#[derive(Debug)]
pub struct DeployBundles {
    /// glucose-monitor as version 1.0.0.
    pub v1: DeployBundle,
    /// The same component as 2.0.0 (another manifest, so another digest).
    pub v2: DeployBundle,
    /// The same component as 0.9.0, older than both: for anti-rollback.
    pub v0_9: DeployBundle,
    /// The same component as 3.1.0, newer than both: a later release (not
    /// 3.0.0, which [`oversized_bundle`] is made from).
    pub v3: DeployBundle,
    /// glucose-chaos as glucose-monitor 2.1.0 with `fail_init = "true"`.
    pub fails_init: DeployBundle,
    /// glucose-chaos as glucose-monitor 2.1.0 with `trap_on_call = "3"`:
    /// each instance traps on its third `on-readings` call.
    pub traps_third: DeployBundle,
    /// glucose-chaos as glucose-monitor 2.1.0 with `refuse_resume = "true"`:
    /// `init` fails when given a snapshot.
    pub refuses_snapshot: DeployBundle,
    /// glucose-chaos as glucose-monitor 2.1.0 with `trap_snapshot = "true"`:
    /// every `snapshot` traps.
    pub traps_snapshots: DeployBundle,
    /// v2's manifest signed by a key the run's trust directory does not hold.
    pub untrusted: DeployBundle,
    /// v2 with one byte of its code flipped after signing.
    pub tampered: DeployBundle,
    /// glucose-monitor's plain component, no signature.
    pub unsigned: DeployBundle,
    /// The public key that signed `untrusted` (a trust directory holding it
    /// accepts that bundle).
    pub stranger_public: PathBuf,
    /// glucose-monitor as 2.2.0, subscribing to [`OTHER_SUBJECTS`] (the
    /// others subscribe to `sensors.cgm.>`).
    pub other_subjects: DeployBundle,
    /// glucose-chaos as glucose-monitor 2.3.0, subscribing to
    /// [`OTHER_SUBJECTS`], with `trap_on_call = "3"` (as `traps_third`).
    pub other_subjects_trapping: DeployBundle,
    /// glucose-monitor as 2.4.0, with `max_sensors = 2` (the others 1000).
    pub two_sensor_places: DeployBundle,
    /// glucose-monitor as 2.5.0, subscribing to [`OVERLAPPING_SUBJECTS`].
    pub overlapping_subjects: DeployBundle,
}

/// The subscriptions of [`DeployBundles::overlapping_subjects`]: one holds
/// the other, which a JetStream consumer's filters may not (the server
/// refuses the consumer).
pub const OVERLAPPING_SUBJECTS: [&str; 2] = ["sensors.cgm.>", "sensors.>"];

/// The subscriptions of [`DeployBundles::other_subjects`].
pub const OTHER_SUBJECTS: [&str; 2] = ["sensors.cgm.>", "sensors.cgm2.>"];

/// The deployment bundles, made on first use (once per run).
pub fn deploy_bundles() -> &'static DeployBundles {
    static BUNDLES: OnceLock<DeployBundles> = OnceLock::new();
    BUNDLES.get_or_init(|| {
        let dir = run_dir().join("deploy");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let signed = |crate_name: &str, version: &'static str, config: &[(&str, &str)]| {
            let manifest = deploy_manifest(&dir, crate_name, version, config);
            let path = run_key()
                .bundle(&manifest, &plugin_wasm(crate_name))
                .unwrap_or_else(|e| panic!("{e:#}"));
            DeployBundle { path, version }
        };
        // trap_percent off: the chaos versions fail only as they are told to.
        let chaos = |fault: (&str, &str)| signed("glucose-chaos", "2.1.0", &[("trap_percent", "0"), fault]);
        let v2 = signed("glucose-monitor", "2.0.0", &[]);

        let stranger_dir = dir.join("stranger");
        std::fs::create_dir_all(&stranger_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", stranger_dir.display()));
        let stranger = generate_key(&stranger_dir, "stranger");
        let untrusted = DeployBundle {
            path: stranger
                .bundle(
                    &deploy_manifest(&dir, "glucose-monitor", "2.0.0", &[]),
                    &plugin_wasm("glucose-monitor"),
                )
                .unwrap_or_else(|e| panic!("{e:#}")),
            version: "2.0.0",
        };

        let mut bytes = v2.bytes();
        // A byte of the code: the signature no longer matches.
        bytes[1000] ^= 0x01;
        let tampered = DeployBundle {
            path: dir.join("tampered.wasm"),
            version: "2.0.0",
        };
        std::fs::write(&tampered.path, bytes).unwrap_or_else(|e| panic!("cannot write a bundle: {e}"));

        // A version whose manifest has `replacement` in place of `line`.
        let changed =
            |crate_name: &str, version: &'static str, config: &[(&str, &str)], line: &str, replacement: &str| {
                let manifest = deploy_manifest(&dir, crate_name, version, config);
                let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{e}"));
                assert!(text.contains(line), "{} no longer has `{line}`", manifest.display());
                std::fs::write(&manifest, text.replace(line, replacement)).unwrap_or_else(|e| panic!("{e}"));
                let path = run_key()
                    .bundle(&manifest, &plugin_wasm(crate_name))
                    .unwrap_or_else(|e| panic!("{e:#}"));
                DeployBundle { path, version }
            };
        let subscriptions = |subjects: &[&str]| {
            let quoted: Vec<String> = subjects.iter().map(|s| format!("\"{s}\"")).collect();
            format!("subscriptions = [{}]", quoted.join(", "))
        };
        let own_subscriptions = subscriptions(&["sensors.cgm.>"]);
        let reading_other_subjects = |crate_name: &str, version: &'static str, config: &[(&str, &str)]| {
            changed(
                crate_name,
                version,
                config,
                &own_subscriptions,
                &subscriptions(&OTHER_SUBJECTS),
            )
        };

        DeployBundles {
            two_sensor_places: changed("glucose-monitor", "2.4.0", &[], "max_sensors = 1000", "max_sensors = 2"),
            overlapping_subjects: changed(
                "glucose-monitor",
                "2.5.0",
                &[],
                &own_subscriptions,
                &subscriptions(&OVERLAPPING_SUBJECTS),
            ),
            other_subjects: reading_other_subjects("glucose-monitor", "2.2.0", &[]),
            other_subjects_trapping: reading_other_subjects(
                "glucose-chaos",
                "2.3.0",
                &[("trap_percent", "0"), ("trap_on_call", "3")],
            ),
            v1: signed("glucose-monitor", "1.0.0", &[]),
            v0_9: signed("glucose-monitor", "0.9.0", &[]),
            v3: signed("glucose-monitor", "3.1.0", &[]),
            fails_init: chaos(("fail_init", "true")),
            traps_third: chaos(("trap_on_call", "3")),
            refuses_snapshot: chaos(("refuse_resume", "true")),
            traps_snapshots: chaos(("trap_snapshot", "true")),
            untrusted,
            tampered,
            unsigned: DeployBundle {
                path: plugin_wasm("glucose-monitor"),
                version: "2.0.0",
            },
            v2,
            stranger_public: stranger.public_key(),
        }
    })
}

/// A bundle over the 32 MiB a device accepts, otherwise good: glucose-monitor
/// 3.0.0 with a 32 MiB custom section, signed by [`run_key`] (with the
/// library: `edgewise sign` refuses to make one). Made on first use.
pub fn oversized_bundle() -> &'static DeployBundle {
    static BUNDLE: OnceLock<DeployBundle> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        use edgewise_host::bundle::{self, ManifestSource};

        let dir = run_dir().join("deploy");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut component = std::fs::read(plugin_wasm("glucose-monitor")).unwrap_or_else(|e| panic!("{e}"));
        component.extend(bundle::format::custom_section(
            "padding",
            &vec![0; bundle::DEFAULT_MAX_BUNDLE_BYTES],
        ));
        let source = std::fs::read_to_string(deploy_manifest(&dir, "glucose-monitor", "3.0.0", &[]))
            .unwrap_or_else(|e| panic!("{e}"));
        let manifest = ManifestSource::from_toml(&source)
            .and_then(|source| {
                source.into_manifest_for(
                    bundle::WORLD_V0_2,
                    bundle::sha256_hex(&component),
                    time::OffsetDateTime::now_utc(),
                    Vec::new(),
                )
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let key = std::fs::read(run_key().private_key()).unwrap_or_else(|e| panic!("{e}"));
        let key = bundle::SigningKey::from_pkcs8(&key).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("oversized.wasm");
        std::fs::write(&path, bundle::sign_manifest(&component, &manifest, &key))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        DeployBundle { path, version: "3.0.0" }
    })
}

/// The directory of this run's key and what is made with it.
fn run_dir() -> PathBuf {
    run_key()
        .trust_dir()
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| panic!("the run key has no directory"))
}

/// The manifest of `crate_name` (glucose-monitor's or glucose-chaos's) as
/// the plugin `glucose-monitor` version `version`, with the `[config]`
/// defaults `config` set; written into `dir`. Panics if the source manifest
/// no longer has the lines this rewrites.
fn deploy_manifest(dir: &Path, crate_name: &str, version: &str, config: &[(&str, &str)]) -> PathBuf {
    let source = plugin_manifest(crate_name);
    let text = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut set = |prefix: &str, line: String, after: Option<&str>| {
        if let Some(at) = lines.iter().position(|l| l.starts_with(prefix)) {
            lines[at] = line;
        } else if let Some(at) = after.and_then(|header| lines.iter().position(|l| l == header)) {
            lines.insert(at + 1, line);
        } else {
            panic!("{} has no line `{prefix}`", source.display());
        }
    };
    set("name = ", format!("name = \"{DEPLOY_PLUGIN}\""), None);
    set("version = ", format!("version = \"{version}\""), None);
    for (key, value) in config {
        set(&format!("{key} = "), format!("{key} = \"{value}\""), Some("[config]"));
    }
    if !lines.iter().any(|l| l == "writes = 1") {
        panic!("{} no longer writes snapshot schema 1", source.display());
    }
    let mut name = format!("{crate_name}-{version}");
    for (key, value) in config {
        name.push_str(&format!("-{key}-{value}"));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}
