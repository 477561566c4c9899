//! What every measurement needs: where the binaries, components and data
//! are, a scratch directory, and bundles signed as an operator would sign
//! them (`edgewise keygen`, `edgewise sign`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The recording the replay and per-reading measurements run over.
pub const HALL2018: &str = "tests/data/cgm/Hall2018_processed.csv";

/// Manifest source of the hostile plugin: it reads what glucose-monitor
/// reads, and loops forever in `on-readings`.
const FAULTY_MANIFEST: &str = "# Written by edgewise-bench: the hostile neighbour of glucose-monitor.\n\
name = \"faulty-plugin\"\n\
version = \"0.1.0\"\n\
subscriptions = [\"sensors.cgm.>\"]\n\
[config]\n\
fail = \"loop\"\n";

/// Files and programs the harness uses.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The workspace root.
    pub root: PathBuf,
    /// Scratch directory, emptied at start: `target/bench`.
    pub work: PathBuf,
    /// `target/release/edgewise`.
    pub edgewise: PathBuf,
    /// The `nats-server` binary.
    pub nats_server: PathBuf,
    /// This program (for the echo and memory child processes).
    pub bench: PathBuf,
    /// The glucose-monitor component (unsigned).
    pub glucose_wasm: PathBuf,
    /// The Hall2018 recording.
    pub hall2018: PathBuf,
}

/// Signed bundles and the trust store that accepts them.
#[derive(Debug, Clone)]
pub struct Bundles {
    /// Trust store directory (`*.pub`).
    pub trust: PathBuf,
    /// glucose-monitor, signed with its own manifest.
    pub glucose: PathBuf,
    /// The faulty plugin with `fail = "loop"`.
    pub faulty: PathBuf,
}

impl Paths {
    /// Find everything under `root`; fail with the fix if something is not built.
    pub fn find(root: &Path) -> anyhow::Result<Paths> {
        let release = root.join("target").join("release");
        let wasm = root.join("target").join("wasm32-wasip2").join("release");
        let nats_server = match std::env::var_os("NATS_SERVER") {
            Some(path) => PathBuf::from(path),
            None => root.join("target").join("nats-server").join("bin").join("nats-server"),
        };
        let paths = Paths {
            root: root.to_owned(),
            work: root.join("target").join("bench"),
            edgewise: release.join("edgewise"),
            nats_server,
            bench: std::env::current_exe().context("cannot find this program's path")?,
            glucose_wasm: wasm.join("glucose_monitor.wasm"),
            hall2018: root.join(HALL2018),
        };
        for (path, what) in [
            (&paths.edgewise, "the edgewise binary"),
            (&paths.nats_server, "nats-server"),
            (&paths.glucose_wasm, "the glucose-monitor component"),
            (&paths.hall2018, "the Hall2018 recording"),
        ] {
            if !path.is_file() {
                bail!("{what} is missing at {}: run `cargo xtask bench`", path.display());
            }
        }
        Ok(paths)
    }

    /// The faulty-plugin component (unsigned).
    pub fn faulty_wasm(&self) -> PathBuf {
        self.root
            .join("target")
            .join("wasm32-wasip2")
            .join("release")
            .join("faulty_plugin.wasm")
    }

    /// Empty the scratch directory, make a signing key and a trust store,
    /// and sign glucose-monitor and the faulty plugin.
    pub fn sign_bundles(&self) -> anyhow::Result<Bundles> {
        if self.work.exists() {
            std::fs::remove_dir_all(&self.work).with_context(|| format!("cannot remove {}", self.work.display()))?;
        }
        let keys = self.work.join("keys");
        let trust = self.work.join("trust");
        let bundles = self.work.join("bundles");
        for dir in [&keys, &trust, &bundles] {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let prefix = keys.join("bench");
        self.edgewise_quietly(&["keygen".as_ref(), "--out".as_ref(), prefix.as_os_str()])?;
        std::fs::copy(keys.join("bench.pub"), trust.join("bench.pub"))
            .with_context(|| format!("cannot fill the trust store {}", trust.display()))?;
        let faulty_manifest = self.work.join("faulty-plugin.toml");
        std::fs::write(&faulty_manifest, FAULTY_MANIFEST)
            .with_context(|| format!("cannot write {}", faulty_manifest.display()))?;
        let glucose_manifest = self.root.join("plugins").join("glucose-monitor").join("edgewise.toml");
        let signed = Bundles {
            trust,
            glucose: bundles.join("glucose-monitor.wasm"),
            faulty: bundles.join("faulty-plugin.wasm"),
        };
        for (manifest, component, out) in [
            (&glucose_manifest, self.glucose_wasm.clone(), &signed.glucose),
            (&faulty_manifest, self.faulty_wasm(), &signed.faulty),
        ] {
            self.edgewise_quietly(&[
                "sign".as_ref(),
                "--key".as_ref(),
                keys.join("bench.key").as_os_str(),
                "--manifest".as_ref(),
                manifest.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
                component.as_os_str(),
            ])?;
        }
        Ok(signed)
    }

    /// Run `edgewise ARGS`; fail with its output if it fails.
    pub fn edgewise_quietly(&self, args: &[&OsStr]) -> anyhow::Result<std::process::Output> {
        let output = Command::new(&self.edgewise)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .with_context(|| format!("cannot run {}", self.edgewise.display()))?;
        if !output.status.success() {
            bail!(
                "`edgewise {}` failed ({}): {}",
                args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output)
    }
}
