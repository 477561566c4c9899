//! What every measurement needs: where the binaries, components and data
//! are, a scratch directory, and bundles signed as an operator would sign
//! them (`edgewise keygen`, `edgewise sign`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use edgewise_procs::{SigningKey, nats_binary, workspace};

/// The recording the replay and per-reading measurements run over.
pub const HALL2018: &str = "tests/data/cgm/Hall2018_processed.csv";

/// The frozen contract 0.1 bundle of glucose-monitor (never rebuilt, see
/// its README) and the trust store of the key that signed it.
pub const FROZEN_V01_BUNDLE: &str = "tests/fixtures/bundles/v0.1/glucose-monitor-0.1.0.wasm";
/// The trust store of [`FROZEN_V01_BUNDLE`].
pub const FROZEN_V01_TRUST: &str = "tests/fixtures/bundles/v0.1/trust";

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
    /// The key that signed them, for further bundles ([`Bundles::glucose_as`]).
    key: Arc<SigningKey>,
}

impl Bundles {
    /// glucose-forecast signed with its own manifest, its model asset and all.
    pub fn forecast(&self, paths: &Paths) -> anyhow::Result<PathBuf> {
        self.key
            .bundle(&paths.forecast_dir().join("edgewise.toml"), &paths.forecast_wasm())
    }

    /// glucose-monitor's component signed as `version` (its manifest
    /// otherwise as is), as an operator signs each release of a plugin:
    /// the bundles a device is sent one after the other.
    pub fn glucose_as(&self, paths: &Paths, version: &str) -> anyhow::Result<PathBuf> {
        let source = paths.glucose_manifest();
        let manifest = std::fs::read_to_string(&source).with_context(|| format!("cannot read {}", source.display()))?;
        let current = manifest
            .lines()
            .find(|line| line.starts_with("version = "))
            .with_context(|| format!("no version line in {}", source.display()))?;
        let manifest = manifest.replacen(current, &format!("version = \"{version}\""), 1);
        let out = paths.work.join(format!("glucose-monitor-{version}.toml"));
        std::fs::write(&out, manifest).with_context(|| format!("cannot write {}", out.display()))?;
        self.key.bundle(&out, &paths.glucose_wasm)
    }
}

impl Paths {
    /// Find everything under `root`, building `edgewise` and the plugin
    /// components first unless they are built (see `edgewise_procs::workspace`).
    pub fn find(root: &Path) -> anyhow::Result<Paths> {
        workspace::built()?;
        let paths = Paths {
            root: root.to_owned(),
            work: workspace::target_dir().join("bench"),
            edgewise: workspace::edgewise_path(),
            nats_server: nats_binary::ensure(root)?,
            bench: std::env::current_exe().context("cannot find this program's path")?,
            glucose_wasm: workspace::component_path("glucose-monitor"),
            hall2018: root.join(HALL2018),
        };
        if !paths.hall2018.is_file() {
            bail!("the Hall2018 recording is missing at {}", paths.hall2018.display());
        }
        Ok(paths)
    }

    /// The faulty-plugin component (unsigned).
    pub fn faulty_wasm(&self) -> PathBuf {
        workspace::component_path("faulty-plugin")
    }

    /// The contract 0.2 plugin that does nothing with `fail=none` (unsigned).
    pub fn faulty_v02_wasm(&self) -> PathBuf {
        workspace::component_path("faulty-v02")
    }

    /// The glucose-forecast component (unsigned).
    pub fn forecast_wasm(&self) -> PathBuf {
        workspace::component_path("glucose-forecast")
    }

    /// glucose-forecast's folder: its manifest (`edgewise.toml`) and model.
    pub fn forecast_dir(&self) -> PathBuf {
        self.root.join("plugins").join("glucose-forecast")
    }

    /// glucose-monitor's manifest (`edgewise.toml`).
    pub fn glucose_manifest(&self) -> PathBuf {
        self.root.join("plugins").join("glucose-monitor").join("edgewise.toml")
    }

    /// The frozen 0.1 bundle of glucose-monitor and its trust store.
    pub fn frozen_v01(&self) -> (PathBuf, PathBuf) {
        (self.root.join(FROZEN_V01_BUNDLE), self.root.join(FROZEN_V01_TRUST))
    }

    /// Empty the scratch directory, make a signing key and a trust store,
    /// and sign glucose-monitor and the faulty plugin.
    pub fn sign_bundles(&self) -> anyhow::Result<Bundles> {
        if self.work.exists() {
            std::fs::remove_dir_all(&self.work).with_context(|| format!("cannot remove {}", self.work.display()))?;
        }
        let keys = self.work.join("keys");
        std::fs::create_dir_all(&keys).with_context(|| format!("cannot create {}", keys.display()))?;
        let key = SigningKey::generate(&keys, "bench")?;
        let faulty_manifest = self.work.join("faulty-plugin.toml");
        std::fs::write(&faulty_manifest, FAULTY_MANIFEST)
            .with_context(|| format!("cannot write {}", faulty_manifest.display()))?;
        Ok(Bundles {
            trust: key.trust_dir(),
            glucose: key.bundle(&self.glucose_manifest(), &self.glucose_wasm)?,
            faulty: key.bundle(&faulty_manifest, &self.faulty_wasm())?,
            key: Arc::new(key),
        })
    }
}
