//! `edgewise push`: store a bundle in the cloud and put it into the desired
//! plugin set of a device or a group, as a new generation written with
//! compare-and-set. Also what `undeploy` and `rollout` share with it: reading
//! a bundle for the cloud, and changing one desired set without overwriting
//! anyone else's change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;

use edgewise_host::bundle::{self, ReadBundleError};
use edgewise_host::deploy::model::valid_name;
use edgewise_host::deploy::{Cloud, CloudError, Desired, DesiredPlugin};

use super::cloud_args::{CloudArgs, EntryArgs, TargetArgs, block_on, now_ms};
use super::{Failure, about, to_stdout};

/// Push a signed bundle to a device or a group
///
/// Stores the bundle in the cloud's bundle bucket (named by its digest),
/// then sets the plugin the bundle's manifest names in the desired set of
/// `device.<ID>` or `group.<NAME>`, with the `--set` configuration: a new
/// generation of that key. The devices fetch, verify, run and report it;
/// `edgewise fleet` shows how far each got.
///
/// The bundle is only read here, not verified: its manifest gives the
/// plugin's name and version. Each device verifies it itself (digest,
/// signature, trust, anti-rollback) and refuses it with a reason if it must.
///
/// The key is written only if nobody else wrote it since it was read
/// (compare-and-set): if someone did, nothing is overwritten and the command
/// fails (exit 1); run it again to apply it over their change.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PushArgs {
    /// The signed bundle (at most 32 MiB).
    #[arg(value_name = "BUNDLE.wasm")]
    bundle: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    entry: EntryArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cloud: CloudArgs,
}

/// What a push wrote.
#[derive(Debug, serde::Serialize)]
struct Pushed<'a> {
    key: &'a str,
    plugin: &'a str,
    version: &'a str,
    bundle: &'a str,
    size: u64,
    generation: u64,
}

pub fn run(args: PushArgs) -> Result<(), Failure> {
    let key = args.target.key()?;
    let config = args.entry.config()?;
    let bundle = PushBundle::read(&args.bundle)?;
    bundle.warn_unknown_settings(&config);
    let by = args.entry.writer();
    let generation = block_on(async {
        let cloud = args.cloud.connect().await?;
        let plugin = bundle.store(&cloud, config).await?;
        let (generation, ()) = edit_desired(&cloud, &key, &by, |desired| {
            desired.plugins.insert(bundle.name.clone(), plugin);
            Ok(())
        })
        .await?;
        // Written all the same (a device not yet online takes the set when
        // it first reads it), but a mistyped id or group would otherwise
        // look like a deployment in progress.
        if let Ok(reports) = cloud.reports().await
            && !reports.iter().flatten().any(|report| args.target.follows(report))
        {
            tracing::warn!(
                "no device has reported reading `{key}` yet: check the name (a device not yet online takes the set when it first reads it)"
            );
        }
        Ok(generation)
    })?;
    let pushed = Pushed {
        key: &key,
        plugin: &bundle.name,
        version: &bundle.version,
        bundle: &bundle.object,
        size: bundle.bytes.len() as u64,
        generation,
    };
    to_stdout(|out| {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&pushed).unwrap_or_default())
        } else {
            writeln!(
                out,
                "pushed {} {} ({}) to {}: generation {}",
                pushed.plugin, pushed.version, pushed.bundle, pushed.key, pushed.generation
            )
        }
    })
}

/// A bundle file as the cloud needs it: its bytes, the plugin name and
/// version its manifest claims, its object name.
pub struct PushBundle {
    /// The whole file.
    pub bytes: Vec<u8>,
    /// The manifest's plugin name.
    pub name: String,
    /// The manifest's version.
    pub version: String,
    /// Its object name in the bundle bucket (`sha256-<hex>`).
    pub object: String,
    /// The manifest's configuration keys (for a warning about `--set`).
    config_keys: Vec<String>,
}

impl PushBundle {
    /// Read `path` (refused over 32 MiB before it is read) and its manifest,
    /// without trust: a file that is not a signed bundle with a readable
    /// manifest is a usage error (exit 2).
    pub fn read(path: &Path) -> Result<PushBundle, Failure> {
        let bytes = bundle::read_bundle_file(path, bundle::DEFAULT_MAX_BUNDLE_BYTES).map_err(|e| match e {
            ReadBundleError::TooLarge(e) => Failure::usage(about(path.display(), e)),
            e => Failure::usage(e),
        })?;
        let info = bundle::inspect(&bytes).map_err(|e| Failure::usage(about(path.display(), e)))?;
        let manifest = match (info.manifest, info.layout_problem) {
            (Some(Ok(manifest)), _) => manifest,
            (Some(Err(e)), _) => return Err(Failure::usage(about(format!("{}: its manifest", path.display()), e))),
            (None, Some(problem)) => {
                return Err(Failure::usage(about(
                    format!("{}: not a signed bundle (sign it with `edgewise sign`)", path.display()),
                    problem,
                )));
            }
            (None, None) => {
                return Err(Failure::usage(anyhow!("{}: not a signed bundle", path.display())));
            }
        };
        if !valid_name(&manifest.name) {
            return Err(Failure::usage(anyhow!(
                "{}: the manifest's plugin name `{}` cannot be a key",
                path.display(),
                manifest.name.escape_debug()
            )));
        }
        Ok(PushBundle {
            object: edgewise_host::deploy::model::bundle_name(&bytes),
            name: manifest.name,
            version: manifest.version,
            config_keys: manifest.config.into_keys().collect(),
            bytes,
        })
    }

    /// Say on stderr which `--set` keys the manifest has no default for
    /// (often a typo; the plugin decides what it accepts).
    fn warn_unknown_settings(&self, config: &BTreeMap<String, String>) {
        // A manifest without `[config]` keeps every default in the plugin's
        // code (glucose-monitor's): nothing here to check a key against, and
        // a warning for each would be noise an operator learns to ignore.
        if self.config_keys.is_empty() {
            return;
        }
        for key in config.keys().filter(|key| !self.config_keys.contains(key)) {
            tracing::warn!(
                "--set {key}: the manifest of {} has no such key (its keys: {})",
                self.name,
                self.config_keys.join(", ")
            );
        }
    }

    /// Create the buckets if need be, store the bundle; its desired entry
    /// with `config`.
    pub async fn store(&self, cloud: &Cloud, config: BTreeMap<String, String>) -> Result<DesiredPlugin, Failure> {
        cloud.ensure_buckets().await.map_err(Failure::runtime)?;
        let object = cloud.put_bundle(&self.bytes).await.map_err(Failure::runtime)?;
        Ok(DesiredPlugin {
            bundle: object,
            version: self.version.clone(),
            size: self.bytes.len() as u64,
            config,
            pushed_ms: now_ms(),
        })
    }
}

/// Change the desired set under `key` with `edit` and write it back only if
/// nobody wrote it since it was read (compare-and-set): the new generation
/// and what `edit` returned. A conflict is a run-time failure (exit 1) that
/// says so, never retried here: the operator decides over the other change.
/// A key with no set yet starts from an empty one.
pub async fn edit_desired<T>(
    cloud: &Cloud,
    key: &str,
    by: &str,
    edit: impl FnOnce(&mut Desired) -> Result<T, Failure>,
) -> Result<(u64, T), Failure> {
    let (mut desired, read) = read_desired(cloud, key).await.map_err(Failure::runtime)?;
    let edited = edit(&mut desired)?;
    // A conflict says itself that nothing was overwritten.
    let generation = write_desired(cloud, key, desired, read, by)
        .await
        .map_err(Failure::runtime)?;
    Ok((generation, edited))
}

/// The desired set under `key` (empty if there is none, or no bucket yet)
/// and the generation read (`None`: no set yet), for [`write_desired`].
pub async fn read_desired(cloud: &Cloud, key: &str) -> Result<(Desired, Option<u64>), CloudError> {
    Ok(match cloud.desired(key).await {
        Ok(Some((desired, generation))) => (desired, Some(generation)),
        Ok(None) | Err(CloudError::NoBucket { .. }) => (Desired::default(), None),
        Err(error) => return Err(error),
    })
}

/// Write `desired` under `key`, signed `by` now, if the key is still at
/// generation `read`: the new generation.
pub async fn write_desired(
    cloud: &Cloud,
    key: &str,
    mut desired: Desired,
    read: Option<u64>,
    by: &str,
) -> Result<u64, CloudError> {
    desired.written_by = by.to_owned();
    desired.written_ms = now_ms();
    cloud.write_desired(key, &desired, read).await
}

#[cfg(test)]
mod tests {
    use std::process::ExitCode;

    use super::*;

    #[test]
    fn a_conflict_is_a_run_time_failure_that_says_nothing_was_overwritten() {
        let conflict = CloudError::Conflict {
            key: "device.edge-01".to_owned(),
            read: 41,
        };
        let message = conflict.to_string();
        assert!(message.contains("`device.edge-01` changed"), "{message}");
        assert!(message.contains("nothing was overwritten"), "{message}");
        assert_eq!(
            Failure::runtime(conflict).report(),
            ExitCode::from(super::super::exit::FAILURE)
        );
    }
}
