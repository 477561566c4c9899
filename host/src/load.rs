//! One plugin loaded: a bundle file plus the operator's configuration turned
//! into what runs, the same way for `edgewise run` (each `[[plugins]]`) and
//! `edgewise replay`, so that their policy cannot drift: read under the size
//! cap, verify (the one exception: replay without a trust store), the
//! provenance from the manifest, the configuration merged (manifest defaults,
//! then the operator's values, key by key), the limits resolved (host
//! default < manifest < operator, under a device's ceilings), compile.
//! Subscriptions, admission and anti-rollback records are the device's
//! (`run::start`); nothing here calls into the plugin.

use std::collections::BTreeMap;
use std::path::Path;

use time::OffsetDateTime;

use crate::bundle::{
    self, KeyId, Manifest, ManifestAsset, ManifestLimits, ManifestSource, RollbackStore, SignError, TrustStore,
    VerifyOptions,
};
use crate::envelope::Provenance;
use crate::runtime::{self, Assets, CacheOutcome, CompiledPlugin, Limits, Runtime, SnapshotSchemas, World};

/// How far the bundle is trusted.
pub enum Trust<'a> {
    /// Verified against `store`, and against `rollback` on a device.
    Verified {
        /// Trusted keys and revocations.
        store: &'a TrustStore,
        /// The device's anti-rollback record.
        rollback: Option<&'a RollbackStore>,
    },
    /// Not verified (`edgewise replay` without `--trust`, for plugin authors'
    /// own builds): a signed bundle's manifest is read but not believed
    /// beyond naming the outputs ([`Loaded::unverified_manifest`]); a plain
    /// component is named `name`.
    Unverified {
        /// The name of a plain component's outputs.
        name: String,
    },
}

/// What the operator sets over the manifest.
pub struct Operator<'a> {
    /// The device of the provenance (`replay` for a replay).
    pub device: &'a str,
    /// Configuration values, over the manifest's defaults.
    pub config: &'a BTreeMap<String, String>,
    /// Limits, over the manifest's.
    pub limits: &'a ManifestLimits,
    /// The limits before the manifest's: [`Limits::default`] on a device.
    pub base: Limits,
    /// A device's ceilings (`[host_limits]`): a manifest asking for more is
    /// lowered to them (and logged). `None` for a replay.
    pub ceilings: Option<&'a Limits>,
}

/// A plugin ready to compile and instantiate.
pub struct Loaded {
    /// Who its outputs are from.
    pub provenance: Provenance,
    /// Its manifest, if the file is a bundle (verified unless
    /// [`Loaded::unverified_manifest`]).
    pub manifest: Option<Manifest>,
    /// Set when the manifest was read without verification.
    pub unverified_manifest: bool,
    /// Who signed it, if it was verified.
    pub key_id: Option<KeyId>,
    /// Configuration for `init`, in key order.
    pub config: Vec<(String, String)>,
    /// Limits of every instance.
    pub limits: Limits,
    /// The bundle's signed assets, in the manifest's order (checked against
    /// the manifest in replay without trust too; none for a plain component).
    pub assets: Vec<bundle::Asset>,
    /// What its snapshots are checked against: the manifest's `snapshot`
    /// ([`SnapshotSchemas::Undeclared`] without one; unchecked for a plain
    /// component, which has no manifest).
    pub snapshot_schemas: SnapshotSchemas,
    /// The file up to the end of the component (the whole file when not verified).
    bytes: Vec<u8>,
    /// Length of the component at its start (the whole file when not verified).
    code_len: usize,
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read, or is over the size cap.
    #[error("unreadable: {0}")]
    Read(#[source] bundle::ReadBundleError),
    /// Verification refused the bundle.
    #[error("refused: {0}")]
    Refused(#[source] bundle::VerifyError),
    /// A manifest was given for a file that is a signed bundle already
    /// (which carries its own).
    #[error(
        "a signed bundle, which carries its own manifest: give it without `--manifest` (with `--trust` to verify it), or give the plain component with `--manifest`"
    )]
    SignedWithManifest,
    /// An unverified bundle's manifest is not one.
    #[error("{0}")]
    Manifest(#[source] bundle::ManifestError),
    /// An unverified bundle's asset sections do not match its manifest.
    #[error("{0}")]
    Assets(#[source] bundle::AssetError),
    /// The component does not compile (or is not one).
    #[error("{0}")]
    Compile(#[source] runtime::LoadError),
    /// A plain component and its manifest source cannot make a bundle
    /// (already signed, not a component, an asset unreadable or too large).
    #[error("{0}")]
    Package(#[source] SignError),
    /// The manifest names one world and the component targets another.
    #[error("the manifest names the world `{manifest}`, but the component targets `{component}`")]
    WorldMismatch {
        /// The manifest's world.
        manifest: String,
        /// The world the component targets.
        component: World,
    },
}

/// Read `path` and load it as `trust` allows, with the operator's settings.
pub fn load(path: &Path, trust: &Trust<'_>, operator: &Operator<'_>) -> Result<Loaded, LoadError> {
    let bytes = bundle::read_bundle_file(path, bundle::DEFAULT_MAX_BUNDLE_BYTES).map_err(LoadError::Read)?;
    let from_manifest = |manifest: &Manifest| Provenance {
        device: operator.device.to_owned(),
        plugin: manifest.name.clone(),
        version: manifest.version.clone(),
        digest: format!("sha256:{}", manifest.code_sha256),
    };
    let (provenance, manifest, key_id, code_len, unverified_manifest, assets) = match trust {
        Trust::Verified { store, rollback } => {
            let options = VerifyOptions {
                trust: store,
                rollback: *rollback,
                now: OffsetDateTime::now_utc(),
                max_bytes: bundle::DEFAULT_MAX_BUNDLE_BYTES,
            };
            let verified = bundle::verify(&bytes, &options).map_err(LoadError::Refused)?;
            tracing::info!(
                plugin = %verified.manifest.name,
                version = %verified.manifest.version,
                key = %verified.key_id,
                "Plugin verified"
            );
            let provenance = from_manifest(&verified.manifest);
            let assets = verified.assets().to_vec();
            (
                provenance,
                Some(verified.manifest),
                Some(verified.key_id),
                verified.code_len,
                false,
                assets,
            )
        }
        Trust::Unverified { name } => match bundle::format::split(&bytes) {
            Ok(parts) => {
                let manifest = Manifest::from_json(parts.manifest_json).map_err(LoadError::Manifest)?;
                let checked = bundle::assets::check(&manifest.assets, &parts.assets).map_err(LoadError::Assets)?;
                let assets = bundle::assets::to_owned(&manifest.assets, &checked);
                (
                    from_manifest(&manifest),
                    Some(manifest),
                    None,
                    bytes.len(),
                    true,
                    assets,
                )
            }
            // Not a bundle: a plain component (or not wasm at all, which
            // compiling reports precisely).
            Err(_) => {
                let provenance = Provenance {
                    device: operator.device.to_owned(),
                    plugin: name.clone(),
                    version: "unsigned".to_owned(),
                    digest: format!("sha256:{}", bundle::sha256_hex(&bytes)),
                };
                (provenance, None, None, bytes.len(), false, Vec::new())
            }
        },
    };
    Ok(finish(
        provenance,
        manifest,
        unverified_manifest,
        key_id,
        assets,
        bytes,
        code_len,
        operator,
    ))
}

/// Load the plain component at `path` as the bundle `edgewise sign --manifest`
/// would make of it with `source` runs (`edgewise replay --manifest`,
/// `edgewise test`): the name, version, configuration defaults, limits,
/// subscriptions, snapshot schemas and assets of the manifest, the assets'
/// paths relative to `manifest_dir`; nothing is signed, so the manifest is
/// [`Loaded::unverified_manifest`]. The world is the one the component's
/// exports say, as `sign` names it; compiling checks it.
pub fn load_with_manifest(
    path: &Path,
    source: ManifestSource,
    manifest_dir: &Path,
    operator: &Operator<'_>,
) -> Result<Loaded, LoadError> {
    let bytes = bundle::read_bundle_file(path, bundle::DEFAULT_MAX_BUNDLE_BYTES).map_err(LoadError::Read)?;
    if bundle::format::has_edgewise_sections(&bytes) {
        return Err(LoadError::SignedWithManifest);
    }
    let info = bundle::inspect(&bytes).map_err(|e| LoadError::Package(e.into()))?;
    let files = bundle::read_assets(&source, manifest_dir).map_err(LoadError::Package)?;
    let entries: Vec<ManifestAsset> = files
        .iter()
        .map(|file| ManifestAsset::of(&file.name, &file.bytes))
        .collect();
    let manifest = source
        .into_manifest_for(
            World::of_exports(&info.exports).name(),
            bundle::sha256_hex(&bytes),
            OffsetDateTime::now_utc(),
            entries,
        )
        .map_err(LoadError::Manifest)?;
    let assets = manifest
        .assets
        .iter()
        .zip(files)
        .map(|(entry, file)| bundle::assets::unsigned(entry, file.bytes))
        .collect();
    let provenance = Provenance {
        device: operator.device.to_owned(),
        plugin: manifest.name.clone(),
        version: manifest.version.clone(),
        digest: format!("sha256:{}", manifest.code_sha256),
    };
    let code_len = bytes.len();
    Ok(finish(
        provenance,
        Some(manifest),
        true,
        None,
        assets,
        bytes,
        code_len,
        operator,
    ))
}

/// The common end of loading: the code kept, the limits resolved, the
/// configuration merged, the snapshot schemas taken from the manifest.
#[allow(clippy::too_many_arguments)]
fn finish(
    provenance: Provenance,
    manifest: Option<Manifest>,
    unverified_manifest: bool,
    key_id: Option<KeyId>,
    assets: Vec<bundle::Asset>,
    bytes: Vec<u8>,
    code_len: usize,
    operator: &Operator<'_>,
) -> Loaded {
    // Keep the code only: the assets have their own copy (one file's worth
    // of memory in all, not two).
    let mut bytes = bytes;
    bytes.truncate(code_len);
    bytes.shrink_to_fit();
    let no_limits = ManifestLimits::default();
    let manifest_limits = manifest.as_ref().map_or(&no_limits, |m| &m.limits);
    let limits = plugin_limits(
        operator.base.clone(),
        operator.ceilings,
        &provenance.plugin,
        manifest_limits,
        operator.limits,
    );
    // The operator's values replace the manifest's defaults, key by key.
    let mut config = manifest.as_ref().map(|m| m.config.clone()).unwrap_or_default();
    config.extend(operator.config.iter().map(|(k, v)| (k.clone(), v.clone())));
    let snapshot_schemas = manifest.as_ref().map_or(SnapshotSchemas::Unchecked, snapshot_schemas);
    Loaded {
        provenance,
        manifest,
        unverified_manifest,
        key_id,
        config: config.into_iter().collect(),
        limits,
        assets,
        snapshot_schemas,
        bytes,
        code_len,
    }
}

/// The snapshot schemas `manifest` declares, as the runtime checks them.
pub fn snapshot_schemas(manifest: &Manifest) -> SnapshotSchemas {
    match &manifest.snapshot {
        None => SnapshotSchemas::Undeclared,
        Some(snapshot) => SnapshotSchemas::Declared {
            writes: snapshot.writes,
            reads: snapshot.reads.clone(),
        },
    }
}

impl Loaded {
    /// The component's bytes.
    pub fn code(&self) -> &[u8] {
        self.bytes.get(..self.code_len).unwrap_or_default()
    }

    /// Compile it with `runtime`; through the authenticated component cache
    /// in `cache_dir` if given (a device: compiled once per code digest and
    /// engine, DESIGN "Runtime"). A bundle's component must target the world
    /// its manifest names; its instances read the bundle's signed assets, and
    /// their snapshots are checked against its manifest's schemas.
    pub fn compile(
        &self,
        runtime: &Runtime,
        cache_dir: Option<&Path>,
    ) -> Result<(CompiledPlugin, Option<CacheOutcome>), LoadError> {
        let name = &self.provenance.plugin;
        let compiled = match cache_dir {
            Some(dir) => runtime
                .compile_cached(name, self.code(), dir)
                .map(|(compiled, outcome)| (compiled, Some(outcome))),
            None => runtime.compile(name, self.code()).map(|compiled| (compiled, None)),
        }
        .map_err(LoadError::Compile)?;
        let (compiled, outcome) = compiled;
        if let Some(manifest) = &self.manifest
            && World::from_name(&manifest.world) != Some(compiled.world())
        {
            return Err(LoadError::WorldMismatch {
                manifest: manifest.world.clone(),
                component: compiled.world(),
            });
        }
        let assets = Assets::new(
            self.assets
                .iter()
                .map(|asset| (asset.name().to_owned(), asset.shared_bytes())),
        );
        let compiled = compiled
            .with_assets(assets)
            .with_snapshot_schemas(self.snapshot_schemas.clone());
        Ok((compiled, outcome))
    }
}

/// The limits `plugin` runs with: `base` (the host default), then what its
/// manifest asks, lowered to the host `ceilings` if any (each lowering
/// logged: the plugin author cannot know every device, and the plugin still
/// runs), then the operator's (within the ceilings: checked with the
/// configuration).
pub fn plugin_limits(
    base: Limits,
    ceilings: Option<&Limits>,
    plugin: &str,
    manifest: &ManifestLimits,
    operator: &ManifestLimits,
) -> Limits {
    let asked = manifest.apply(base);
    let within = match ceilings {
        None => asked,
        Some(ceilings) => {
            let (within, clamped) = asked.clamp_to(ceilings);
            for c in clamped {
                tracing::warn!(
                    plugin,
                    key = c.key,
                    asked = c.asked,
                    ceiling = c.ceiling,
                    "The plugin asks for more than the host allows: {} lowered to the ceiling (`host_limits.{}`)",
                    c.key,
                    c.key
                );
            }
            within
        }
    };
    operator.apply(within)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_beyond_the_ceilings_is_lowered_and_the_operator_applies_within() {
        let ceilings = Limits {
            max_memory_bytes: 32 << 20,
            ..Limits::default_ceilings()
        };
        let manifest = ManifestLimits {
            memory_mb: Some(1024),
            call_deadline_ms: Some(60_000),
            ..ManifestLimits::default()
        };
        let operator = ManifestLimits {
            state_bytes: Some(1000),
            ..ManifestLimits::default()
        };
        let limits = plugin_limits(Limits::default(), Some(&ceilings), "p", &manifest, &operator);
        assert_eq!(limits.max_memory_bytes, 32 << 20);
        assert_eq!(limits.call_deadline, ceilings.call_deadline);
        assert_eq!(limits.max_state_bytes, 1000);
        // The host default itself is lowered under a ceiling below it.
        let limits = plugin_limits(
            Limits::default(),
            Some(&ceilings),
            "p",
            &ManifestLimits::default(),
            &ManifestLimits::default(),
        );
        assert_eq!(limits.max_memory_bytes, 32 << 20);
    }

    #[test]
    fn without_ceilings_the_operator_overrides_the_manifest_over_the_base() {
        let base = Limits {
            max_outputs_per_second: None,
            ..Limits::default()
        };
        let manifest = ManifestLimits {
            memory_mb: Some(1024),
            call_deadline_ms: Some(500),
            ..ManifestLimits::default()
        };
        let operator = ManifestLimits {
            call_deadline_ms: Some(100),
            ..ManifestLimits::default()
        };
        let limits = plugin_limits(base, None, "p", &manifest, &operator);
        assert_eq!(limits.max_memory_bytes, 1024 << 20);
        assert_eq!(limits.call_deadline, std::time::Duration::from_millis(100));
        assert_eq!(limits.max_outputs_per_second, None);
    }
}
