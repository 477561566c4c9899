//! `edgewise inspect`: what a bundle or component holds. Needs no trust and
//! compiles nothing.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Args;

use edgewise_host::bundle;

use super::Failure;

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
    let info = bundle::inspect(&bytes).map_err(|e| Failure::usage(anyhow!("{}: {e}", args.bundle.display())))?;
    println!("file:         {}", args.bundle.display());
    println!("size:         {} bytes", info.size);
    println!("file sha256:  {}", info.file_sha256);
    println!("code sha256:  {}", info.code_sha256);
    match (&info.key_id, &info.layout_problem) {
        (Some(key_id), _) => println!("signed:       by key {key_id} (not verified here: use `edgewise verify`)"),
        (None, Some(problem)) => println!("signed:       no ({problem})"),
        (None, None) => println!("signed:       no"),
    }
    match &info.manifest {
        Some(Ok(manifest)) => {
            println!("manifest:");
            println!("  name:          {}", manifest.name);
            println!("  version:       {}", manifest.version);
            println!("  world:         {}", manifest.world);
            println!("  subscriptions: {}", manifest.subscriptions.join(", "));
            for (key, value) in &manifest.config {
                println!("  config:        {key} = {value}");
            }
            if let Some(memory) = manifest.limits.memory_mb {
                println!("  limits:        memory {memory} MiB");
            }
            if let Some(deadline) = manifest.limits.call_deadline_ms {
                println!("  limits:        call deadline {deadline} ms");
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
                    println!("  limits:        {value} {what}");
                }
            }
            println!("  created:       {}", manifest.created);
            println!("  expires:       {}", manifest.expires.as_deref().unwrap_or("never"));
            println!("  code_sha256:   {}", manifest.code_sha256);
        }
        Some(Err(error)) => println!("manifest:     unreadable: {error}"),
        None => {}
    }
    println!("imports:");
    info.imports.iter().for_each(|name| println!("  {name}"));
    println!("exports:");
    info.exports.iter().for_each(|name| println!("  {name}"));
    Ok(())
}
