//! `edgewise verify`: check a bundle against a trust store, as a device would.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::anyhow;
use clap::Args;
use time::OffsetDateTime;

use edgewise_host::bundle::{self, RollbackStore, TrustStore, VerifyOptions};

use super::{Failure, about, to_stdout};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The trust store: a directory of `*.pub` files and an optional `revoked` file.
    #[arg(long, value_name = "DIR")]
    trust: PathBuf,
    /// Also check anti-rollback against this device data directory (read only).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The bundle to verify.
    #[arg(value_name = "BUNDLE.wasm")]
    bundle: PathBuf,
}

pub fn run(args: VerifyArgs) -> Result<(), Failure> {
    let trust = TrustStore::load(&args.trust).map_err(Failure::usage)?;
    // A mistyped data directory must not read as "this device accepted nothing yet".
    if let Some(dir) = &args.data_dir
        && !dir.is_dir()
    {
        return Err(Failure::usage(anyhow!("--data-dir {}: not a directory", dir.display())));
    }
    let rollback = args
        .data_dir
        .as_deref()
        .map(RollbackStore::open)
        .transpose()
        .map_err(Failure::usage)?;
    let bytes = match bundle::read_bundle_file(&args.bundle, bundle::DEFAULT_MAX_BUNDLE_BYTES) {
        Ok(bytes) => bytes,
        Err(bundle::ReadBundleError::TooLarge(e)) => {
            return Err(Failure::runtime(about(
                format!("{}: refused", args.bundle.display()),
                e,
            )));
        }
        Err(e) => return Err(Failure::usage(e)),
    };
    let started = Instant::now();
    let options = VerifyOptions {
        trust: &trust,
        rollback: rollback.as_ref(),
        now: OffsetDateTime::now_utc(),
        max_bytes: bundle::DEFAULT_MAX_BUNDLE_BYTES,
    };
    let verified = bundle::verify(&bytes, &options)
        .map_err(|e| Failure::runtime(about(format!("{}: refused", args.bundle.display()), e)))?;
    let elapsed = started.elapsed();
    let manifest = &verified.manifest;
    // A device refuses it at start, whatever its id: so does `verify`.
    if let Some(refusal) = edgewise_host::bus::overlap::first_refused_on_every_device(&manifest.subscriptions) {
        return Err(Failure::runtime(anyhow!(
            "{}: refused: subscriptions: {refusal}",
            args.bundle.display()
        )));
    }
    to_stdout(|out| {
        writeln!(
            out,
            "{}: OK {} {} (code sha256:{}, bundle sha256:{}{}), signed by key {}, world {}, {} bytes, verified in {:.2} ms",
            args.bundle.display(),
            manifest.name,
            manifest.version,
            manifest.code_sha256,
            verified.bundle_sha256,
            super::assets_summary(verified.assets().iter().map(|asset| asset.size() as u64)),
            verified.key_id,
            manifest.world,
            verified.size,
            elapsed.as_secs_f64() * 1000.0
        )
    })
}
