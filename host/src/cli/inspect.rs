//! `edgewise inspect`: what a bundle or component holds. Needs no trust and
//! compiles nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use edgewise_host::bundle::{self, BundleInfo, ManifestSnapshot};
use edgewise_host::runtime::World;

use super::{Failure, about, shown, to_stdout};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The bundle (or plain component) to inspect.
    #[arg(value_name = "BUNDLE.wasm")]
    bundle: PathBuf,
}

pub fn run(args: InspectArgs) -> Result<(), Failure> {
    // Under the cap a device applies, and only a regular file: /dev/zero or
    // a FIFO must not be read without end.
    let bytes =
        bundle::read_bundle_file(&args.bundle, bundle::DEFAULT_MAX_BUNDLE_BYTES).map_err(|error| match error {
            error @ bundle::ReadBundleError::Io { .. } => Failure::usage(error),
            error => Failure::usage(about(args.bundle.display(), error)),
        })?;
    let info = bundle::inspect(&bytes).map_err(|e| Failure::usage(about(args.bundle.display(), e)))?;
    to_stdout(|out| print_info(out, &args.bundle, &info))
}

/// The contract version of a world, as people say it.
fn contract(world: World) -> &'static str {
    match world {
        World::V0_1 => "0.1",
        World::V0_2 => "0.2",
    }
}

/// The world the component's code targets ([`World::of_exports`]).
fn code_world(info: &BundleInfo) -> World {
    World::of_exports(&info.exports)
}

/// The manifest's `world`, with its contract version and, if the code
/// targets another, that loading it is refused.
fn describe_world(named: &str, code: World) -> String {
    match World::from_name(named) {
        Some(world) if world == code => format!("{named} (contract {})", contract(world)),
        Some(world) => format!(
            "{named} (contract {}; but the component targets contract {}: loading it is refused)",
            contract(world),
            contract(code)
        ),
        None => format!("{} (not a contract this host runs)", shown(named)),
    }
}

/// A manifest's snapshot schemas, or what their absence means (0.2 only:
/// a 0.1 plugin has no snapshot).
fn describe_snapshot(snapshot: Option<&ManifestSnapshot>) -> String {
    match snapshot {
        Some(schemas) => {
            let reads: Vec<String> = schemas.reads.iter().map(u32::to_string).collect();
            format!("writes schema {}; reads schemas {}", schemas.writes, reads.join(", "))
        }
        None => "none declared: never given a snapshot, none taken".to_owned(),
    }
}

/// What [`bundle::inspect`] found, for people.
fn print_info(out: &mut dyn Write, path: &Path, info: &BundleInfo) -> std::io::Result<()> {
    writeln!(out, "file:         {}", path.display())?;
    writeln!(out, "size:         {} bytes", info.size)?;
    writeln!(out, "bundle sha256: {}", info.bundle_sha256)?;
    writeln!(out, "code sha256:  {}", info.code_sha256)?;
    let code = code_world(info);
    let why = match code {
        World::V0_2 => "exports `snapshot`",
        World::V0_1 => "exports no `snapshot`",
    };
    writeln!(out, "contract:     {} (the component {why})", contract(code))?;
    match (&info.key_id, &info.layout_problem) {
        (Some(key_id), _) => writeln!(
            out,
            "signed:       by key {key_id} (not verified here: use `edgewise verify`)"
        )?,
        (None, Some(problem)) => writeln!(out, "signed:       no ({})", shown(&problem.to_string()))?,
        (None, None) => writeln!(out, "signed:       no")?,
    }
    match &info.manifest {
        Some(Ok(manifest)) => {
            writeln!(out, "manifest:")?;
            writeln!(out, "  name:          {}", shown(&manifest.name))?;
            writeln!(out, "  version:       {}", shown(&manifest.version))?;
            writeln!(out, "  world:         {}", describe_world(&manifest.world, code))?;
            if World::from_name(&manifest.world) == Some(World::V0_2) || manifest.snapshot.is_some() {
                writeln!(
                    out,
                    "  snapshot:      {}",
                    describe_snapshot(manifest.snapshot.as_ref())
                )?;
            }
            writeln!(out, "  subscriptions: {}", shown(&manifest.subscriptions.join(", ")))?;
            for (key, value) in &manifest.config {
                writeln!(out, "  config:        {} = {}", shown(key), shown(value))?;
            }
            if let Some(memory) = manifest.limits.memory_mb {
                writeln!(out, "  limits:        memory {memory} MiB")?;
            }
            if let Some(deadline) = manifest.limits.call_deadline_ms {
                writeln!(out, "  limits:        call deadline {deadline} ms")?;
            }
            let counts = [
                (manifest.limits.outputs_per_call, "outputs per call"),
                (manifest.limits.outputs_per_second, "outputs per second"),
                (manifest.limits.output_bytes, "bytes per output"),
                (manifest.limits.log_bytes_per_second, "log bytes per second"),
                (manifest.limits.state_bytes, "state bytes"),
                (manifest.limits.max_sensors, "sensors at most"),
            ];
            for (value, what) in counts {
                if let Some(value) = value {
                    writeln!(out, "  limits:        {value} {what}")?;
                }
            }
            writeln!(out, "  created:       {}", shown(&manifest.created))?;
            writeln!(
                out,
                "  expires:       {}",
                shown(manifest.expires.as_deref().unwrap_or("never"))
            )?;
            writeln!(out, "  code_sha256:   {}", shown(&manifest.code_sha256))?;
            for asset in &manifest.assets {
                writeln!(
                    out,
                    "  asset:         {} ({} bytes, sha256:{})",
                    shown(&asset.name),
                    asset.size,
                    shown(&asset.sha256)
                )?;
            }
        }
        Some(Err(error)) => writeln!(out, "manifest:     unreadable: {}", shown(&error.to_string()))?,
        None => {}
    }
    if !info.assets.is_empty() || info.asset_problem.is_some() {
        writeln!(out, "assets:       (digests computed from the bundle's sections)")?;
        for asset in &info.assets {
            writeln!(
                out,
                "  {}  {} bytes  sha256:{}",
                asset.name.escape_debug(),
                asset.size,
                asset.sha256
            )?;
        }
        if let Some(problem) = &info.asset_problem {
            writeln!(out, "  problem: {}", shown(&problem.to_string()))?;
        }
    }
    writeln!(out, "imports:")?;
    for name in &info.imports {
        writeln!(out, "  {}", shown(name))?;
    }
    writeln!(out, "exports:")?;
    for name in &info.exports {
        writeln!(out, "  {}", shown(name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_naming_another_contract_than_the_code_says_that_loading_it_is_refused() {
        let v0_1 = World::V0_1.name();
        assert_eq!(
            describe_world(v0_1, World::V0_2),
            format!("{v0_1} (contract 0.1; but the component targets contract 0.2: loading it is refused)")
        );
        assert_eq!(describe_world(v0_1, World::V0_1), format!("{v0_1} (contract 0.1)"));
        assert_eq!(
            describe_world("edgewise:plugin/sensor-plugin@9.0.0", World::V0_2),
            "edgewise:plugin/sensor-plugin@9.0.0 (not a contract this host runs)"
        );
    }
}
