//! The one verification pipeline every caller uses before a bundle's code is
//! compiled. The order is fixed (DESIGN "Signed bundles"), each step has its
//! own error, and nothing is compiled or run until all have passed.

use time::OffsetDateTime;

use super::assets::{self, Asset, AssetError};
use super::digest::sha256_hex;
use super::format::{self, FormatError};
use super::keys::KeyId;
use super::manifest::{Manifest, ManifestError, WORLD, WORLD_V0_2};
use super::rollback::{RollbackError, RollbackStore};
use super::trust::TrustStore;
use crate::runtime::World;

/// Bundles larger than this are refused before they are parsed: 32 MiB, the
/// code and its signed assets together (an int8 model for a gateway-class
/// device is a few MiB; a device holds a plugin's whole bundle in memory).
pub const DEFAULT_MAX_BUNDLE_BYTES: usize = 32 << 20;

/// Read a bundle file, refusing one over `max_bytes` before reading it (a
/// device must not load an arbitrarily large file into memory to refuse it),
/// and anything but a regular file (`/dev/zero` says it holds 0 bytes and
/// never ends; a FIFO would block its reader). What is read is bounded too:
/// a file that grows after its size was looked at is refused as too large.
pub fn read_bundle_file(path: &std::path::Path, max_bytes: usize) -> Result<Vec<u8>, ReadBundleError> {
    use std::io::Read as _;
    let io = |source| ReadBundleError::Io {
        path: path.to_owned(),
        source,
    };
    let not_regular = || {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    };
    let too_large = |size: u64| {
        ReadBundleError::TooLarge(VerifyError::TooLarge {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            max: max_bytes,
        })
    };
    // Looked at before opening: opening a FIFO waits for a writer.
    let metadata = std::fs::metadata(path).map_err(io)?;
    if !metadata.is_file() {
        return Err(not_regular());
    }
    if metadata.len() > max_bytes as u64 {
        return Err(too_large(metadata.len()));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    // And again once open: the path may name another file by now.
    if !file.metadata().map_err(io)?.is_file() {
        return Err(not_regular());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(max_bytes as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Why a bundle file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadBundleError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is over the size cap.
    #[error("{0}")]
    TooLarge(VerifyError),
}

/// What verification checks against.
pub struct VerifyOptions<'a> {
    /// Trusted keys and revocations.
    pub trust: &'a TrustStore,
    /// The device's anti-rollback record; `None` skips that step (tools
    /// that only inspect, such as `edgewise verify` without `--data-dir`).
    pub rollback: Option<&'a RollbackStore>,
    /// The current time, for expiry.
    pub now: OffsetDateTime,
    /// Size cap in bytes.
    pub max_bytes: usize,
}

/// A bundle that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// The signed manifest.
    pub manifest: Manifest,
    /// Who signed it.
    pub key_id: KeyId,
    /// Length of the component at the start of the file (without the Edgewise sections).
    pub code_len: usize,
    /// Size of the whole file.
    pub size: usize,
    /// The bundle digest: SHA-256 of the whole file, signature included,
    /// lowercase hex (docs/bundle-format.md, section 1).
    pub bundle_sha256: String,
    /// The signed assets, in the manifest's order.
    assets: Vec<Asset>,
}

impl VerifiedBundle {
    /// The signed assets, in the manifest's order: each one's name, size,
    /// SHA-256 and bytes, all checked against the signed manifest.
    pub fn assets(&self) -> &[Asset] {
        &self.assets
    }

    /// The asset named `name`, if the bundle carries one.
    pub fn asset(&self, name: &str) -> Option<&Asset> {
        self.assets.iter().find(|asset| asset.name() == name)
    }
}

/// Why a bundle was refused: the first check that failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Over the size cap.
    #[error("bundle is {size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// The file size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The file is not a well-formed bundle.
    #[error("{0}")]
    Format(#[from] FormatError),
    /// Signed by a key the device does not trust.
    #[error("signed by unknown key {0} (not in the trust store)")]
    UnknownKey(KeyId),
    /// Signed by a revoked key.
    #[error("signed by revoked key {0}")]
    RevokedKey(KeyId),
    /// The signature does not match the bytes.
    #[error("bad signature: the bundle was modified after signing, or not signed by key {0}")]
    BadSignature(KeyId),
    /// The code digest is revoked.
    #[error("code sha256:{0} is revoked")]
    RevokedDigest(String),
    /// The bundle digest (of the whole file) is revoked.
    #[error("bundle sha256:{0} is revoked")]
    RevokedBundle(String),
    /// The manifest is invalid.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// The manifest's digest does not match the code.
    #[error("code_sha256 mismatch: the manifest says {manifest}, the code is {actual}")]
    DigestMismatch {
        /// What the manifest says.
        manifest: String,
        /// The digest of the code.
        actual: String,
    },
    /// The asset sections do not match the manifest's list.
    #[error("{0}")]
    Asset(#[from] AssetError),
    /// The bundle targets a WIT world this host does not run.
    #[error("world mismatch: the bundle targets `{found}`, this host runs `{WORLD}` and `{WORLD_V0_2}`")]
    WorldMismatch {
        /// The manifest's world.
        found: String,
    },
    /// Anti-rollback refused it.
    #[error("{0}")]
    Rollback(#[from] RollbackError),
    /// Past its expiry.
    #[error("expired at {0}")]
    Expired(String),
}

/// Verify `bytes` (a whole bundle file) in the fixed order: size cap, section
/// layout, signature section last, key trusted and not revoked, signature
/// valid, code digest not revoked, bundle digest not revoked, manifest valid, `code_sha256` matches,
/// assets match the manifest, world compatible, not a rollback, not expired.
pub fn verify(bytes: &[u8], options: &VerifyOptions<'_>) -> Result<VerifiedBundle, VerifyError> {
    if bytes.len() > options.max_bytes {
        return Err(VerifyError::TooLarge {
            size: bytes.len(),
            max: options.max_bytes,
        });
    }
    let parts = format::split(bytes)?;
    let key_id = KeyId(parts.signature.key_id);
    let key = options.trust.key(&key_id).ok_or(VerifyError::UnknownKey(key_id))?;
    if options.trust.is_key_revoked(&key_id) {
        return Err(VerifyError::RevokedKey(key_id));
    }
    if !key.verifies(parts.signed, &parts.signature.signature) {
        return Err(VerifyError::BadSignature(key_id));
    }
    let actual = sha256_hex(parts.code);
    if options.trust.is_digest_revoked(&actual) {
        return Err(VerifyError::RevokedDigest(actual));
    }
    let bundle_sha256 = sha256_hex(bytes);
    if options.trust.is_digest_revoked(&bundle_sha256) {
        return Err(VerifyError::RevokedBundle(bundle_sha256));
    }
    let manifest = Manifest::from_json(parts.manifest_json)?;
    if manifest.code_sha256 != actual {
        return Err(VerifyError::DigestMismatch {
            manifest: manifest.code_sha256,
            actual,
        });
    }
    let checked = assets::check(&manifest.assets, &parts.assets)?;
    if World::from_name(&manifest.world).is_none() {
        return Err(VerifyError::WorldMismatch { found: manifest.world });
    }
    if let Some(rollback) = options.rollback {
        rollback.check(
            &manifest.name,
            &manifest.semver()?,
            &manifest.code_sha256,
            manifest.assets_sha256().as_deref(),
        )?;
    }
    if let Some(expires) = manifest.expires_at()?
        && expires < options.now
    {
        return Err(VerifyError::Expired(manifest.expires.clone().unwrap_or_default()));
    }
    let assets = assets::to_owned(&manifest.assets, &checked);
    Ok(VerifiedBundle {
        manifest,
        key_id,
        code_len: parts.code.len(),
        size: bytes.len(),
        bundle_sha256,
        assets,
    })
}
