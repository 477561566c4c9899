//! Start-up of one plugin: read, verify, check its subscriptions and
//! compile it. Nothing here calls into the plugin: `init` runs on the
//! plugin's own supervised worker thread, so a plugin that traps, panics,
//! hangs or refuses its configuration there is a `plugin-degraded` of that
//! plugin only. A bundle refused here is reported and the others start.

use std::path::Path;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use super::admission::Admission;
use super::config::{ClockConfig, Plausibility, PluginConfig};
use super::overlap;
use super::worker::PluginSetup;
use crate::bundle::{self, RollbackStore, TrustStore, VerifyOptions};
use crate::envelope::Provenance;
use crate::runtime::{Limits, Runtime};

/// A plugin that cannot run, and why.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Its name: the manifest's if the bundle was verified, else the bundle
    /// file's stem (an unverified manifest is not believed).
    pub name: String,
    /// Its version, if the bundle was verified.
    pub version: String,
    /// The bundle file.
    pub bundle: String,
    /// Why.
    pub reason: String,
}

/// A plugin ready for its worker: its `init` has not run yet.
pub struct Prepared {
    /// What the worker needs.
    pub setup: PluginSetup,
    /// Its subscriptions (the operator's override, or the manifest's).
    pub subscriptions: Vec<String>,
    /// What its ingest lets through (plausibility, sensor names, sensor cap).
    pub admission: Admission,
}

/// What every plugin's start-up shares.
pub struct StartContext<'a> {
    /// The device id.
    pub device: &'a str,
    /// The data directory (component cache, anti-rollback record).
    pub data_dir: &'a Path,
    /// The trust store.
    pub trust: &'a TrustStore,
    /// The anti-rollback record; a version is recorded only once its `init`
    /// has succeeded (by the worker).
    pub rollback: &'a Arc<Mutex<RollbackStore>>,
    /// The runtime.
    pub runtime: &'a Runtime,
    /// How far readings may stray from the host clock (`[ingest]`).
    pub plausibility: Plausibility,
    /// The host clock's configuration (a simulated clock widens the margins).
    pub clock: &'a ClockConfig,
    /// The host ceilings (`[host_limits]`).
    pub host_limits: &'a Limits,
}

/// Verify, check and compile `plugin`; `taken` are the names already started.
pub fn prepare(context: &StartContext<'_>, plugin: &PluginConfig, taken: &[String]) -> Result<Prepared, Refused> {
    let path = plugin.bundle.display().to_string();
    let stem = plugin
        .bundle
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let refuse = |name: &str, version: &str, reason: String| Refused {
        name: name.to_owned(),
        version: version.to_owned(),
        bundle: path.clone(),
        reason,
    };
    let bytes = bundle::read_bundle_file(&plugin.bundle, bundle::DEFAULT_MAX_BUNDLE_BYTES)
        .map_err(|e| refuse(&stem, "", format!("unreadable: {e}")))?;
    let verified = {
        let rollback = context
            .rollback
            .lock()
            .map_err(|_| refuse(&stem, "", "the anti-rollback record is unusable".to_owned()))?;
        let options = VerifyOptions {
            trust: context.trust,
            rollback: Some(&rollback),
            now: OffsetDateTime::now_utc(),
            max_bytes: bundle::DEFAULT_MAX_BUNDLE_BYTES,
        };
        bundle::verify(&bytes, &options).map_err(|e| refuse(&stem, "", format!("refused: {e}")))?
    };
    let manifest = verified.manifest;
    let (name, version) = (manifest.name.as_str(), manifest.version.as_str());
    if taken.iter().any(|t| t == name) {
        return Err(refuse(name, version, format!("a second plugin named `{name}`")));
    }
    manifest.semver().map_err(|e| refuse(name, version, e.to_string()))?;
    // The operator's override was checked with the configuration (exit 2);
    // the manifest's are the bundle author's: this plugin is refused.
    let subscriptions = plugin.subscriptions.clone().unwrap_or(manifest.subscriptions.clone());
    for filter in &subscriptions {
        if let Some(reason) = overlap::refusal(context.device, filter) {
            return Err(refuse(name, version, format!("subscription {reason}")));
        }
    }
    let code = bytes.get(..verified.code_len).unwrap_or_default();
    // Compiled once per code digest and engine; later starts load the
    // authenticated artifact (DESIGN "Runtime").
    let (compiled, cache) = context
        .runtime
        .compile_cached(name, code, &context.data_dir.join("cache"))
        .map_err(|e| refuse(name, version, e.to_string()))?;
    tracing::debug!(plugin = %name, ?cache, "Plugin compiled");
    let limits = super::config::plugin_limits(context.host_limits, name, &manifest.limits, &plugin.limits);
    // The operator's values replace the manifest's defaults, key by key.
    let mut merged = manifest.config.clone();
    merged.extend(plugin.config.clone());
    tracing::info!(plugin = %name, version = %version, key = %verified.key_id, "Plugin verified");
    let admission = Admission::new(
        name,
        context.plausibility,
        context.clock,
        plugin.payload_sensors.clone(),
        plugin
            .limits
            .apply_max_sensors(manifest.limits.apply_max_sensors(bundle::manifest::DEFAULT_MAX_SENSORS)),
    );
    let accept = {
        let (rollback, name, digest) = (context.rollback.clone(), name.to_owned(), manifest.code_sha256.clone());
        let version = manifest.semver().map_err(|e| refuse(&name, version, e.to_string()))?;
        Box::new(move || {
            let mut rollback = rollback
                .lock()
                .map_err(|_| "the anti-rollback record is unusable".to_owned())?;
            rollback.record(&name, &version, &digest).map_err(|e| e.to_string())
        })
    };
    Ok(Prepared {
        setup: PluginSetup {
            compiled: Arc::new(compiled),
            provenance: Provenance {
                device: context.device.to_owned(),
                plugin: name.to_owned(),
                version: version.to_owned(),
                digest: format!("sha256:{}", manifest.code_sha256),
            },
            config: merged.into_iter().collect(),
            limits,
            accept: Some(accept),
        },
        subscriptions,
        admission,
    })
}
