//! Signed assets: data files (a model's weights, a lookup table) that travel
//! inside the bundle, one `edgewise.asset` section each, between the manifest
//! and the signature. The manifest lists each one's name, size and SHA-256 in
//! section order; the signature covers them all. `docs/bundle-format.md`
//! (section 5.7) specifies the rules, [`check`] applies them once the
//! signature is known to be good.

use std::sync::Arc;

use super::digest::sha256_hex;
use super::format::{self, Section};
use super::manifest::ManifestAsset;

/// Assets one bundle may carry. A plugin needs a model and a few tables, not
/// a file system; the cap bounds the work of checking a bundle and what the
/// layout walk keeps (it is checked before the signature).
pub const MAX_ASSETS: usize = 64;

/// Largest asset, in bytes: 16 MiB. A plugin reads an asset into its linear
/// memory (64 MiB by default), so an asset larger than a quarter of it could
/// not be used beside the plugin's own state. The whole bundle stays under
/// [`super::DEFAULT_MAX_BUNDLE_BYTES`] (32 MiB), so two such assets at most.
pub const MAX_ASSET_BYTES: u64 = 16 << 20;

/// Longest asset name, in bytes.
pub const MAX_ASSET_NAME_LEN: usize = 64;

/// Whether `name` is an acceptable asset name: 1 to [`MAX_ASSET_NAME_LEN`]
/// characters `a`-`z`, `0`-`9`, `.`, `_`, `-`, the first a letter or digit,
/// no `..`. So no path separator, no `.` or `..`, no hidden file, no control
/// character, no case that a case-insensitive file system would fold: a name
/// is safe as a file name anywhere the host or a tool may put it.
pub fn is_valid_asset_name(name: &str) -> bool {
    (1..=MAX_ASSET_NAME_LEN).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && !name.contains("..")
}

/// An asset of a verified bundle: covered by the signature, and its name,
/// size and SHA-256 checked against the manifest.
#[derive(Clone, PartialEq, Eq)]
pub struct Asset {
    name: String,
    sha256: String,
    bytes: Arc<[u8]>,
}

impl Asset {
    /// Its name, as the manifest lists it (the plugin reads it by this name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// SHA-256 of its bytes, 64 lowercase hex digits (as the manifest lists it).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Its bytes (shared: cloning an [`Asset`] does not copy them).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Its bytes, shared (for the runtime, which serves them to the plugin).
    pub fn shared_bytes(&self) -> Arc<[u8]> {
        self.bytes.clone()
    }
}

/// Name, size and digest: the bytes may be megabytes.
impl std::fmt::Debug for Asset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asset")
            .field("name", &self.name)
            .field("size", &self.bytes.len())
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// Why the asset sections do not match the manifest's list (checked after
/// the signature, so these describe what a trusted signer wrote).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssetError {
    /// An asset section whose name cannot be read.
    #[error("malformed `edgewise.asset` section at offset {offset}: {reason}")]
    Malformed {
        /// Where the section starts.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Two asset sections with the same name.
    #[error("two `edgewise.asset` sections are named `{name}`", name = name.escape_debug())]
    DuplicateSection {
        /// The name.
        name: String,
    },
    /// An asset section the manifest does not list.
    #[error("the `edgewise.asset` section `{name}` is not listed in the manifest", name = name.escape_debug())]
    Unlisted {
        /// The section's name.
        name: String,
    },
    /// Asset sections in another order than the manifest's list.
    #[error(
        "`edgewise.asset` section {index} is `{found}`, the manifest lists `{expected}` in that place",
        found = found.escape_debug()
    )]
    OutOfOrder {
        /// Position of the section among the asset sections, from 0.
        index: usize,
        /// The section's name.
        found: String,
        /// The name the manifest lists there.
        expected: String,
    },
    /// A listed asset without its section.
    #[error("asset `{name}` is listed in the manifest but the bundle has no `edgewise.asset` section for it")]
    Missing {
        /// The listed name.
        name: String,
    },
    /// An asset of another size than the manifest says.
    #[error("asset `{name}` is {actual} bytes, the manifest says {manifest}")]
    SizeMismatch {
        /// The name.
        name: String,
        /// The size the manifest lists.
        manifest: u64,
        /// The size of the section's data.
        actual: u64,
    },
    /// An asset whose digest is not the manifest's.
    #[error("asset `{name}` sha256 mismatch: the manifest says {manifest}, the asset is {actual}")]
    DigestMismatch {
        /// The name.
        name: String,
        /// The digest the manifest lists.
        manifest: String,
        /// The digest of the section's data.
        actual: String,
    },
}

/// One asset section, read: its name and data (nothing checked but the
/// payload's shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssetSection<'a> {
    /// Where the section starts in the file.
    pub offset: usize,
    /// The name in its payload.
    pub name: &'a str,
    /// The data after the name.
    pub data: &'a [u8],
}

/// Read an asset section's payload.
pub fn read_section<'a>(section: &Section<'a>) -> Result<AssetSection<'a>, AssetError> {
    let offset = section.range.start;
    let (name, data) =
        format::parse_asset_payload(section.payload).map_err(|reason| AssetError::Malformed { offset, reason })?;
    Ok(AssetSection { offset, name, data })
}

/// Check the asset `sections` (file order) against the manifest's `listed`
/// assets (already validated: names, count, sizes under the cap, digests
/// well formed), in this order: every section readable; no name twice; then
/// position by position, the section's name is the listed one (else it is
/// unlisted, or out of order), its size and its SHA-256 are the listed
/// ones; then no section left over and none missing. Returns the sections,
/// read, in order (one for each listed asset).
pub fn check<'a>(listed: &[ManifestAsset], sections: &[Section<'a>]) -> Result<Vec<AssetSection<'a>>, AssetError> {
    let read = sections.iter().map(read_section).collect::<Result<Vec<_>, _>>()?;
    for (index, section) in read.iter().enumerate() {
        if read[..index].iter().any(|earlier| earlier.name == section.name) {
            return Err(AssetError::DuplicateSection {
                name: section.name.to_owned(),
            });
        }
    }
    let unlisted = |section: &AssetSection<'_>| AssetError::Unlisted {
        name: section.name.to_owned(),
    };
    for (index, (section, entry)) in read.iter().zip(listed).enumerate() {
        if section.name != entry.name {
            return Err(if listed.iter().any(|e| e.name == section.name) {
                AssetError::OutOfOrder {
                    index,
                    found: section.name.to_owned(),
                    expected: entry.name.clone(),
                }
            } else {
                unlisted(section)
            });
        }
        let actual_size = section.data.len() as u64;
        if actual_size != entry.size {
            return Err(AssetError::SizeMismatch {
                name: entry.name.clone(),
                manifest: entry.size,
                actual: actual_size,
            });
        }
        let actual = sha256_hex(section.data);
        if actual != entry.sha256 {
            return Err(AssetError::DigestMismatch {
                name: entry.name.clone(),
                manifest: entry.sha256.clone(),
                actual,
            });
        }
    }
    if let Some(extra) = read.get(listed.len()) {
        return Err(unlisted(extra));
    }
    if let Some(missing) = listed.get(read.len()) {
        return Err(AssetError::Missing {
            name: missing.name.clone(),
        });
    }
    Ok(read)
}

/// `bytes` as the asset `entry` lists, for a plain component loaded with
/// its manifest source (`load::load_with_manifest`): the entry was made from
/// these bytes ([`ManifestAsset::of`]), nothing was signed.
pub(crate) fn unsigned(entry: &ManifestAsset, bytes: Vec<u8>) -> Asset {
    Asset {
        name: entry.name.clone(),
        sha256: entry.sha256.clone(),
        bytes: Arc::from(bytes),
    }
}

/// The `checked` sections (what [`check`] returned for `listed`) as owned
/// assets: their bytes copied once, shared from then on.
pub fn to_owned(listed: &[ManifestAsset], checked: &[AssetSection<'_>]) -> Vec<Asset> {
    listed
        .iter()
        .zip(checked)
        .map(|(entry, section)| Asset {
            name: entry.name.clone(),
            sha256: entry.sha256.clone(),
            bytes: Arc::from(section.data),
        })
        .collect()
}
