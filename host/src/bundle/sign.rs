//! Making a bundle: append the manifest, the assets and the signature to a
//! component.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::assets::MAX_ASSET_BYTES;
use super::digest::sha256_hex;
use super::format::{self, FormatError, MANIFEST_SECTION, SIGNATURE_SECTION, SignatureBlock};
use super::keys::SigningKey;
use super::manifest::{self, Manifest, ManifestAsset, ManifestError, ManifestSource};
use super::verify::DEFAULT_MAX_BUNDLE_BYTES;

/// Why a component could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Not a component (not wasm, a core module, malformed sections).
    #[error("{0}")]
    Format(#[from] FormatError),
    /// The file already carries Edgewise sections.
    #[error("already signed: the file has `edgewise.*` sections (sign the plain component instead)")]
    AlreadySigned,
    /// The manifest source is invalid.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// An asset file cannot be read.
    #[error("asset `{name}`: cannot read {path}: {source}")]
    AssetIo {
        /// The asset's name.
        name: String,
        /// Its file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An asset file over [`MAX_ASSET_BYTES`] (refused before it is read).
    #[error("asset `{name}`: {path} is {size} bytes, over the {max}-byte limit of an asset", max = MAX_ASSET_BYTES)]
    AssetTooLarge {
        /// The asset's name.
        name: String,
        /// Its file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The assets together are over the bundle cap (refused before the
    /// next one is read).
    #[error("the assets are {total} bytes in all, over the {max}-byte limit of a whole bundle")]
    AssetsTooLarge {
        /// Their total so far.
        total: u64,
        /// The bundle cap.
        max: usize,
    },
    /// The bundle would be over the size cap devices accept.
    #[error("the bundle would be {size} bytes, over the {max}-byte limit devices accept")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        max: usize,
    },
}

/// An asset to embed: its name and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetFile {
    /// The name the plugin reads it by.
    pub name: String,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// Read the assets `source` names (`[assets]`, name to path), each path
/// relative to `dir` (the directory of the `edgewise.toml`), in name order.
/// Names, the count, each file's size and the running total are checked
/// before a file is read, so a wrong path to a huge file costs nothing.
pub fn read_assets(source: &ManifestSource, dir: &Path) -> Result<Vec<AssetFile>, SignError> {
    manifest::validate_asset_count(source.assets.len())?;
    let mut total: u64 = 0;
    let mut files = Vec::with_capacity(source.assets.len());
    for (name, relative) in &source.assets {
        manifest::validate_asset_name(name)?;
        let path = dir.join(relative);
        let io = |source| SignError::AssetIo {
            name: name.clone(),
            path: path.clone(),
            source,
        };
        let size = std::fs::metadata(&path).map_err(io)?.len();
        if size > MAX_ASSET_BYTES {
            return Err(SignError::AssetTooLarge {
                name: name.clone(),
                path,
                size,
            });
        }
        total += size;
        if total > DEFAULT_MAX_BUNDLE_BYTES as u64 {
            return Err(SignError::AssetsTooLarge {
                total,
                max: DEFAULT_MAX_BUNDLE_BYTES,
            });
        }
        let bytes = std::fs::read(&path).map_err(io)?;
        files.push(AssetFile {
            name: name.clone(),
            bytes,
        });
    }
    Ok(files)
}

/// Sign `component`, which targets `world` (e.g. [`super::WORLD`]), with
/// `key`: the manifest is built from `source` with the world, the
/// component's digest, the `assets` (what [`read_assets`] read for
/// `source`; their sections follow the manifest in this order) and the
/// `created` time. Returns the bundle and its manifest. Without assets the
/// bundle is byte for byte what signing wrote before assets existed.
///
/// The caller finds the component's WIT world first (only the runtime knows
/// how); this function only deals with bytes.
pub fn sign(
    component: &[u8],
    world: &str,
    source: ManifestSource,
    assets: &[AssetFile],
    key: &SigningKey,
    created: OffsetDateTime,
) -> Result<(Vec<u8>, Manifest), SignError> {
    format::check_sections(component)?;
    if format::has_edgewise_sections(component) {
        return Err(SignError::AlreadySigned);
    }
    let entries = assets
        .iter()
        .map(|asset| ManifestAsset::of(&asset.name, &asset.bytes))
        .collect();
    let manifest = source.into_manifest_for(world, sha256_hex(component), created, entries)?;
    let bundle = sign_with_assets(component, &manifest, assets, key);
    if bundle.len() > DEFAULT_MAX_BUNDLE_BYTES {
        return Err(SignError::TooLarge {
            size: bundle.len(),
            max: DEFAULT_MAX_BUNDLE_BYTES,
        });
    }
    Ok((bundle, manifest))
}

/// Append `manifest` and a signature by `key` to `component` as they are,
/// without validation. Tests use it to build deliberately broken bundles.
pub fn sign_manifest(component: &[u8], manifest: &Manifest, key: &SigningKey) -> Vec<u8> {
    sign_raw(component, &manifest.to_json(), key)
}

/// Append `manifest`, one asset section for each of `assets` (in order) and
/// a signature by `key` to `component`, as they are, without validation.
pub fn sign_with_assets(component: &[u8], manifest: &Manifest, assets: &[AssetFile], key: &SigningKey) -> Vec<u8> {
    let mut sections = vec![format::custom_section(MANIFEST_SECTION, &manifest.to_json())];
    sections.extend(
        assets
            .iter()
            .map(|asset| format::asset_section(&asset.name, &asset.bytes)),
    );
    sign_sections(component, &sections, key)
}

/// Append a manifest section holding `manifest_json` and a signature by `key`.
pub fn sign_raw(component: &[u8], manifest_json: &[u8], key: &SigningKey) -> Vec<u8> {
    sign_sections(
        component,
        &[format::custom_section(MANIFEST_SECTION, manifest_json)],
        key,
    )
}

/// Append `sections` (encoded, whatever they are) and a signature by `key`
/// over everything before it. Tests use it to build any layout.
pub fn sign_sections(component: &[u8], sections: &[Vec<u8>], key: &SigningKey) -> Vec<u8> {
    let mut bundle = component.to_vec();
    sections.iter().for_each(|section| bundle.extend_from_slice(section));
    let block = SignatureBlock {
        key_id: key.public_key().id().0,
        signature: key.sign(&bundle),
    };
    bundle.extend_from_slice(&format::custom_section(
        SIGNATURE_SECTION,
        &format::signature_payload(&block),
    ));
    bundle
}
