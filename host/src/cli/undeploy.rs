//! `edgewise undeploy`: remove a plugin from the desired set of a device or
//! a group, as a new generation written with compare-and-set.

use anyhow::anyhow;
use clap::Args;

use super::cloud_args::{CloudArgs, TargetArgs, block_on, writer};
use super::push::edit_desired;
use super::{Failure, to_stdout};

/// Remove a plugin from a device's or a group's desired set
///
/// A new generation of `device.<ID>` or `group.<NAME>` without the plugin.
/// The devices stop it and report it `removed`, unless another key they
/// follow still names it: removing it from a device's own key makes the
/// device follow its groups' entry again (if one of them has it). A device
/// whose configuration file has a plugin of that name goes back to the
/// file's version, or, if anti-rollback refuses it (older than the deployed
/// one), keeps the deployed version running and reports it `kept`: the cloud
/// never removes a plugin of the configuration file.
///
/// A plugin not in that set is a usage error (exit 2) and nothing is
/// written. As `push`, the key is written only if nobody wrote it since it
/// was read: if someone did, nothing is overwritten (exit 1).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct UndeployArgs {
    /// The plugin's name (as its manifest and `edgewise fleet` say it).
    #[arg(value_name = "PLUGIN")]
    plugin: String,
    #[command(flatten)]
    target: TargetArgs,
    /// Who undeploys, recorded in the desired set [default: $USER].
    #[arg(long, value_name = "TEXT")]
    by: Option<String>,
    #[command(flatten)]
    cloud: CloudArgs,
}

pub fn run(args: UndeployArgs) -> Result<(), Failure> {
    let key = args.target.key()?;
    let by = writer(args.by.as_deref());
    let generation = block_on(async {
        let cloud = args.cloud.connect().await?;
        let (generation, _removed) = edit_desired(&cloud, &key, &by, |desired| {
            desired.plugins.remove(&args.plugin).ok_or_else(|| {
                let names: Vec<&str> = desired.plugins.keys().map(String::as_str).collect();
                let has = if names.is_empty() {
                    "it has none".to_owned()
                } else {
                    format!("it has {}", names.join(", "))
                };
                Failure::usage(anyhow!(
                    "`{}` is not in the desired set of `{key}` ({has}): nothing written",
                    args.plugin.escape_debug()
                ))
            })
        })
        .await?;
        Ok(generation)
    })?;
    to_stdout(|out| writeln!(out, "undeployed {} from {key}: generation {generation}", args.plugin))
}
