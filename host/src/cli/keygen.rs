//! `edgewise keygen`: make an Ed25519 signing key pair.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::Args;

use edgewise_host::bundle::SigningKey;
use edgewise_host::files::{self, Access, Existing};

use super::{Failure, to_stdout};

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write PREFIX.key (private, PKCS#8, mode 0600) and PREFIX.pub.
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
}

pub fn run(args: KeygenArgs) -> Result<(), Failure> {
    let private_path = with_suffix(&args.out, "key");
    let public_path = with_suffix(&args.out, "pub");
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(Failure::usage(anyhow!(
                "{} already exists: refusing to overwrite a key",
                path.display()
            )));
        }
    }
    create_key_folder(&private_path).map_err(Failure::usage)?;
    let (pkcs8, key) = SigningKey::generate().map_err(Failure::runtime)?;
    // Existing::Keep: never replace a key, even if one appeared since the check above.
    files::write_atomic(&private_path, &pkcs8, Access::Private, Existing::Keep)
        .with_context(|| format!("cannot write {}", private_path.display()))
        .map_err(Failure::usage)?;
    let public = key.public_key();
    let written = files::write_atomic(
        &public_path,
        public.to_file_text().as_bytes(),
        Access::Shared,
        Existing::Keep,
    )
    .with_context(|| format!("cannot write {}", public_path.display()));
    if let Err(error) = written {
        // No private key without its public half: the pair is made whole or not at all.
        let _ = std::fs::remove_file(&private_path);
        return Err(Failure::usage(error));
    }
    to_stdout(|out| {
        writeln!(
            out,
            "wrote {} (private, mode 0600) and {}; key id {}",
            private_path.display(),
            public_path.display(),
            public.id()
        )
    })
}

/// Create the missing folders above `key` (`--out keys/release` in a new
/// checkout), private (0700): they are made to hold a private key.
fn create_key_folder(key: &Path) -> anyhow::Result<()> {
    match key.parent() {
        Some(folder) if !folder.as_os_str().is_empty() && !folder.exists() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .with_context(|| format!("cannot create {}", folder.display())),
        _ => Ok(()),
    }
}

/// `PREFIX` + `.suffix` (appended, so `keys/release-2026` becomes `keys/release-2026.key`).
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut text = prefix.as_os_str().to_owned();
    text.push(".");
    text.push(suffix);
    PathBuf::from(text)
}
