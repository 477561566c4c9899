//! Signed plugin bundles: the format, manifests, signed assets, keys, the
//! trust store, anti-rollback, signing, inspection and the one verification
//! pipeline.
//!
//! Architecture invariant: nothing compiles or runs a bundle that [`verify`]
//! has not accepted. The one, explicit, exception is `edgewise replay`
//! without `--trust`, for plugin authors' own builds (signed or not; a warning
//! says a signed one was not verified). This module never touches wasmtime.

#[cfg(test)]
mod asset_tests;
pub mod assets;
mod digest;
pub mod format;
mod inspect;
pub mod keys;
pub mod manifest;
#[cfg(test)]
mod manifest_doc_tests;
pub mod rollback;
mod sign;
pub(crate) mod strict_de;
pub mod trust;
mod verify;
#[cfg(test)]
mod verify_tests;

pub use assets::{Asset, AssetError};
pub use digest::sha256_hex;
pub use format::FormatError;
pub use inspect::{AssetInfo, BundleInfo, inspect};
pub use keys::{KeyError, KeyId, PublicKey, SigningKey};
pub use manifest::{
    Manifest, ManifestAsset, ManifestError, ManifestLimits, ManifestSnapshot, ManifestSource, WORLD, WORLD_V0_2,
};
pub use rollback::{RollbackError, RollbackStore};
pub use sign::{AssetFile, SignError, read_assets, sign, sign_manifest, sign_raw, sign_sections, sign_with_assets};
pub use trust::{TrustError, TrustStore};
pub use verify::{
    DEFAULT_MAX_BUNDLE_BYTES, ReadBundleError, VerifiedBundle, VerifyError, VerifyOptions, read_bundle_file, verify,
};
