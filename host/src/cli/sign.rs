//! `edgewise sign`: turn a component into a signed bundle.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Args;
use time::OffsetDateTime;

use edgewise_host::bundle::{self, ManifestSource, SigningKey, format};
use edgewise_host::files::{self, Access, Existing};
use edgewise_host::runtime::{LoadError, Runtime, RuntimeOptions};

use super::{Failure, about, to_stdout};

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The private key (PKCS#8, from `edgewise keygen`).
    #[arg(long, value_name = "PREFIX.key")]
    key: PathBuf,
    /// The plugin's manifest source.
    #[arg(long, value_name = "edgewise.toml")]
    manifest: PathBuf,
    /// Where to write the bundle.
    #[arg(long, value_name = "BUNDLE.wasm")]
    out: PathBuf,
    /// The component to sign (built for wasm32-wasip2).
    #[arg(value_name = "COMPONENT.wasm")]
    component: PathBuf,
}

pub fn run(args: SignArgs) -> Result<(), Failure> {
    let read = |path: &PathBuf, what: &str| {
        std::fs::read(path)
            .with_context(|| format!("cannot read {what} {}", path.display()))
            .map_err(Failure::usage)
    };
    let component = read(&args.component, "component")?;
    let key_bytes = read(&args.key, "private key")?;
    let source_text = String::from_utf8(read(&args.manifest, "manifest")?)
        .map_err(|_| Failure::usage(anyhow!("{} is not UTF-8", args.manifest.display())))?;
    let in_component = |e: Box<dyn std::error::Error + Send + Sync>| Failure::usage(about(args.component.display(), e));

    let key = SigningKey::from_pkcs8(&key_bytes).map_err(|e| Failure::usage(about(args.key.display(), e)))?;
    let source =
        ManifestSource::from_toml(&source_text).map_err(|e| Failure::usage(about(args.manifest.display(), e)))?;
    // A bundle every device would refuse is not worth signing.
    if let Some(refusal) = edgewise_host::bus::overlap::first_refused_on_every_device(&source.subscriptions) {
        return Err(Failure::usage(anyhow!(
            "{}: subscriptions: {refusal}",
            args.manifest.display()
        )));
    }

    // Refuse what is not a plain component before asking wasmtime about it.
    format::check_sections(&component).map_err(|e| in_component(e.into()))?;
    if format::has_edgewise_sections(&component) {
        return Err(in_component(bundle::SignError::AlreadySigned.into()));
    }
    // The component must implement the world the manifest will name: the
    // one it targets, among those this host runs.
    let runtime = Runtime::new(RuntimeOptions::default()).map_err(Failure::runtime)?;
    let world = match runtime.compile(&source.name, &component) {
        Ok(compiled) => compiled.world(),
        Err(LoadError::World { source, world, .. }) => {
            let what = format!("{}: does not implement the {world} world", args.component.display());
            return Err(Failure::usage(about(what, source)));
        }
        Err(other) => return Err(in_component(other.into())),
    };

    // Asset paths are relative to the `edgewise.toml` that names them.
    let manifest_dir = args.manifest.parent().unwrap_or_else(|| std::path::Path::new(""));
    let in_manifest = |e: bundle::SignError| Failure::usage(about(args.manifest.display(), e));
    let assets = bundle::read_assets(&source, manifest_dir).map_err(in_manifest)?;
    let (bundle_bytes, manifest) = bundle::sign(
        &component,
        world.name(),
        source,
        &assets,
        &key,
        OffsetDateTime::now_utc(),
    )
    .map_err(in_manifest)?;
    // A reader never sees half a bundle; the bundle is made to be handed on.
    files::write_atomic(&args.out, &bundle_bytes, Access::Shared, Existing::Replace)
        .with_context(|| format!("cannot write {}", args.out.display()))
        .map_err(Failure::runtime)?;
    to_stdout(|out| {
        writeln!(
            out,
            "signed {} {} (code sha256:{}{}) with key {} -> {} ({} bytes)",
            manifest.name,
            manifest.version,
            manifest.code_sha256,
            super::assets_summary(manifest.assets.iter().map(|asset| asset.size)),
            key.public_key().id(),
            args.out.display(),
            bundle_bytes.len()
        )
    })
}
