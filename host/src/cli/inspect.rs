//! `edgewise inspect`: what a bundle or component holds. Needs no trust and
//! compiles nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use edgewise_host::bundle::{self, BundleInfo};

use super::{Failure, about, to_stdout};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The bundle (or plain component) to inspect.
    #[arg(value_name = "BUNDLE.wasm")]
    bundle: PathBuf,
}

pub fn run(args: InspectArgs) -> Result<(), Failure> {
    let bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("cannot read {}", args.bundle.display()))
        .map_err(Failure::usage)?;
    let info = bundle::inspect(&bytes).map_err(|e| Failure::usage(about(args.bundle.display(), e)))?;
    to_stdout(|out| print_info(out, &args.bundle, &info))
}

/// What [`bundle::inspect`] found, for people.
fn print_info(out: &mut dyn Write, path: &Path, info: &BundleInfo) -> std::io::Result<()> {
    writeln!(out, "file:         {}", path.display())?;
    writeln!(out, "size:         {} bytes", info.size)?;
    writeln!(out, "bundle sha256: {}", info.bundle_sha256)?;
    writeln!(out, "code sha256:  {}", info.code_sha256)?;
    match (&info.key_id, &info.layout_problem) {
        (Some(key_id), _) => writeln!(
            out,
            "signed:       by key {key_id} (not verified here: use `edgewise verify`)"
        )?,
        (None, Some(problem)) => writeln!(out, "signed:       no ({problem})")?,
        (None, None) => writeln!(out, "signed:       no")?,
    }
    match &info.manifest {
        Some(Ok(manifest)) => {
            writeln!(out, "manifest:")?;
            writeln!(out, "  name:          {}", manifest.name)?;
            writeln!(out, "  version:       {}", manifest.version)?;
            writeln!(out, "  world:         {}", manifest.world)?;
            writeln!(out, "  subscriptions: {}", manifest.subscriptions.join(", "))?;
            for (key, value) in &manifest.config {
                writeln!(out, "  config:        {key} = {value}")?;
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
            ];
            for (value, what) in counts {
                if let Some(value) = value {
                    writeln!(out, "  limits:        {value} {what}")?;
                }
            }
            writeln!(out, "  created:       {}", manifest.created)?;
            writeln!(
                out,
                "  expires:       {}",
                manifest.expires.as_deref().unwrap_or("never")
            )?;
            writeln!(out, "  code_sha256:   {}", manifest.code_sha256)?;
            for asset in &manifest.assets {
                writeln!(
                    out,
                    "  asset:         {} ({} bytes, sha256:{})",
                    asset.name, asset.size, asset.sha256
                )?;
            }
        }
        Some(Err(error)) => writeln!(out, "manifest:     unreadable: {error}")?,
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
            writeln!(out, "  problem: {problem}")?;
        }
    }
    writeln!(out, "imports:")?;
    for name in &info.imports {
        writeln!(out, "  {name}")?;
    }
    writeln!(out, "exports:")?;
    for name in &info.exports {
        writeln!(out, "  {name}")?;
    }
    Ok(())
}
