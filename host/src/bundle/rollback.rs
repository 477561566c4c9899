//! Anti-rollback: per plugin name, the highest version this device has ever
//! accepted, with its code digest and the digest of its signed assets,
//! persisted in the data directory. A lower version, or the same version with
//! other code or other assets (an older model under the same version), is
//! refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::{self, Access, Existing};

/// File name of the record inside the data directory.
pub const ROLLBACK_FILE: &str = "installed-versions.json";

/// What the device has accepted for one plugin name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// Highest version accepted.
    pub version: String,
    /// Code digest of that version.
    pub code_sha256: String,
    /// Digest of that version's signed assets ([`crate::bundle::Manifest::assets_sha256`]);
    /// absent for a bundle without assets, and in records written before
    /// assets were recorded (then unknown: filled in when the version is
    /// accepted again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets_sha256: Option<String>,
}

/// The persisted anti-rollback record.
#[derive(Debug, Clone)]
pub struct RollbackStore {
    path: PathBuf,
    accepted: BTreeMap<String, Accepted>,
}

/// Why a bundle is refused, or the record could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// A lower version than one already accepted.
    #[error("version {offered} of `{name}` is lower than version {accepted} already accepted (rollback refused)")]
    Downgrade {
        /// Plugin name.
        name: String,
        /// The version offered.
        offered: String,
        /// The highest version accepted so far.
        accepted: String,
    },
    /// The accepted version again, with different code.
    #[error(
        "version {version} of `{name}` was accepted with code sha256:{accepted_digest}; this bundle has other code (sha256:{offered_digest})"
    )]
    SameVersionOtherCode {
        /// Plugin name.
        name: String,
        /// The version.
        version: String,
        /// Digest accepted before.
        accepted_digest: String,
        /// Digest offered now.
        offered_digest: String,
    },
    /// The accepted version again, with the same code but other signed
    /// assets (another model file, for example).
    #[error(
        "version {version} of `{name}` was accepted with other signed assets (assets sha256:{accepted_digest}); \
         this bundle has {offered_digest}: a new model or table needs a new version"
    )]
    SameVersionOtherAssets {
        /// Plugin name.
        name: String,
        /// The version.
        version: String,
        /// Assets digest accepted before.
        accepted_digest: String,
        /// Assets digest offered now (`none` for no assets).
        offered_digest: String,
    },
    /// The record could not be read or written.
    #[error("anti-rollback record {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The record is not one JSON object of `{"version", "code_sha256"}`
    /// objects with no plugin named twice.
    #[error("anti-rollback record {path}: corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
    /// A version in the record is not SemVer (it could not be compared, so
    /// it would let any version of that plugin in).
    #[error("anti-rollback record {path}: corrupt: version `{version}` of `{name}` is not SemVer: {source}")]
    CorruptVersion {
        /// The file.
        path: PathBuf,
        /// Plugin name.
        name: String,
        /// The version as recorded.
        version: String,
        /// Why it is not SemVer.
        #[source]
        source: semver::Error,
    },
    /// The record could not be encoded (not expected: it is strings only).
    #[error("anti-rollback record {path}: cannot encode: {source}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
}

impl RollbackError {
    /// The plugin a refusal is of (`None` for a record that cannot be used).
    pub fn plugin(&self) -> Option<&str> {
        match self {
            RollbackError::Downgrade { name, .. }
            | RollbackError::SameVersionOtherCode { name, .. }
            | RollbackError::SameVersionOtherAssets { name, .. } => Some(name),
            RollbackError::Io { .. }
            | RollbackError::Corrupt { .. }
            | RollbackError::CorruptVersion { .. }
            | RollbackError::Encode { .. } => None,
        }
    }
}

impl RollbackStore {
    /// Open (or start) the record in `data_dir`.
    ///
    /// The whole record is judged here, before any bundle is: it must be one
    /// JSON object of `{"version", "code_sha256"}` objects, no plugin named
    /// twice, every version SemVer. Anything else is corrupt, never treated as
    /// empty or skipped (a version that cannot be compared would let any
    /// version of that plugin in).
    pub fn open(data_dir: &Path) -> Result<RollbackStore, RollbackError> {
        let path = data_dir.join(ROLLBACK_FILE);
        let accepted = match std::fs::read(&path) {
            Ok(bytes) => {
                let accepted = parse_record(&bytes).map_err(|source| RollbackError::Corrupt {
                    path: path.clone(),
                    source,
                })?;
                for (name, entry) in &accepted {
                    parse_version(&path, name, &entry.version)?;
                }
                accepted
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(RollbackError::Io { path, source }),
        };
        Ok(RollbackStore { path, accepted })
    }

    /// The record's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuse `version` of `name` with `code_sha256` and `assets_sha256` if
    /// it would roll back.
    pub fn check(
        &self,
        name: &str,
        version: &semver::Version,
        code_sha256: &str,
        assets_sha256: Option<&str>,
    ) -> Result<(), RollbackError> {
        let Some(accepted) = self.accepted.get(name) else {
            return Ok(());
        };
        let accepted_version = parse_version(&self.path, name, &accepted.version)?;
        // Precedence, as SemVer defines it: build metadata does not count, so
        // `1.0.0+a` and `1.0.0+b` are the same version and must be the same code.
        let order = version.cmp_precedence(&accepted_version);
        if order == std::cmp::Ordering::Less {
            return Err(RollbackError::Downgrade {
                name: name.to_owned(),
                offered: version.to_string(),
                accepted: accepted.version.clone(),
            });
        }
        if order == std::cmp::Ordering::Equal && accepted.code_sha256 != code_sha256 {
            return Err(RollbackError::SameVersionOtherCode {
                name: name.to_owned(),
                version: version.to_string(),
                accepted_digest: accepted.code_sha256.clone(),
                offered_digest: code_sha256.to_owned(),
            });
        }
        if order == std::cmp::Ordering::Equal
            && let Some(accepted_assets) = &accepted.assets_sha256
            && Some(accepted_assets.as_str()) != assets_sha256
        {
            return Err(RollbackError::SameVersionOtherAssets {
                name: name.to_owned(),
                version: version.to_string(),
                accepted_digest: accepted_assets.clone(),
                offered_digest: assets_sha256.map_or_else(|| "none".to_owned(), |d| format!("sha256:{d}")),
            });
        }
        Ok(())
    }

    /// Record that `version` of `name` was accepted (if higher than the
    /// record, or the same version whose assets the record does not know
    /// yet), durably: written to a temporary file, synced, renamed.
    pub fn record(
        &mut self,
        name: &str,
        version: &semver::Version,
        code_sha256: &str,
        assets_sha256: Option<&str>,
    ) -> Result<(), RollbackError> {
        self.check(name, version, code_sha256, assets_sha256)?;
        let recorded = self.accepted.get(name);
        let newer = recorded
            .and_then(|a| semver::Version::parse(&a.version).ok())
            .is_none_or(|accepted| version.cmp_precedence(&accepted) == std::cmp::Ordering::Greater);
        let learns_assets = recorded.is_some_and(|a| a.assets_sha256.is_none()) && assets_sha256.is_some();
        if !newer && !learns_assets {
            return Ok(());
        }
        self.accepted.insert(
            name.to_owned(),
            Accepted {
                version: version.to_string(),
                code_sha256: code_sha256.to_owned(),
                assets_sha256: assets_sha256.map(str::to_owned),
            },
        );
        self.persist()
    }

    /// Write the record atomically and durably (mode 0600, like every file
    /// of the data directory).
    fn persist(&self) -> Result<(), RollbackError> {
        let io = |source| RollbackError::Io {
            path: self.path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(&self.accepted).map_err(|source| RollbackError::Encode {
            path: self.path.clone(),
            source,
        })?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        files::write_atomic(&self.path, &json, Access::Private, Existing::Replace).map_err(io)
    }
}

/// A recorded version, which must be SemVer.
fn parse_version(path: &Path, name: &str, version: &str) -> Result<semver::Version, RollbackError> {
    semver::Version::parse(version).map_err(|source| RollbackError::CorruptVersion {
        path: path.to_owned(),
        name: name.to_owned(),
        version: version.to_owned(),
        source,
    })
}

/// The record's JSON: an object of objects, no key twice at either level.
fn parse_record(bytes: &[u8]) -> Result<BTreeMap<String, Accepted>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Entry(#[serde(deserialize_with = "super::strict_de::object")] Accepted);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let entries: BTreeMap<String, Entry> = super::strict_de::unique_map(&mut deserializer)?;
    deserializer.end()?;
    Ok(entries
        .into_iter()
        .map(|(name, Entry(accepted))| (name, accepted))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> semver::Version {
        semver::Version::parse(text).unwrap()
    }

    #[test]
    fn refuses_downgrade_and_same_version_other_code_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RollbackStore::open(dir.path()).unwrap();
        store.check("p", &v("1.0.0"), "aa", None).unwrap();
        store.record("p", &v("1.2.0"), "aa", None).unwrap();
        let reopened = RollbackStore::open(dir.path()).unwrap();
        assert!(matches!(
            reopened.check("p", &v("1.1.9"), "aa", None),
            Err(RollbackError::Downgrade { .. })
        ));
        assert!(matches!(
            reopened.check("p", &v("1.2.0"), "bb", None),
            Err(RollbackError::SameVersionOtherCode { .. })
        ));
        reopened.check("p", &v("1.2.0"), "aa", None).unwrap();
        reopened.check("p", &v("1.3.0"), "bb", None).unwrap();
        reopened.check("other", &v("0.0.1"), "cc", None).unwrap();
        // Build metadata does not make another version.
        assert!(matches!(
            reopened.check("p", &v("1.2.0+build.7"), "bb", None),
            Err(RollbackError::SameVersionOtherCode { .. })
        ));
        reopened.check("p", &v("1.2.0+build.7"), "aa", None).unwrap();
    }

    #[test]
    fn the_same_version_with_other_assets_is_refused_once_its_assets_are_known() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RollbackStore::open(dir.path()).unwrap();
        store.record("forecast", &v("1.0.0"), "aa", Some("model-2")).unwrap();
        let reopened = RollbackStore::open(dir.path()).unwrap();
        reopened.check("forecast", &v("1.0.0"), "aa", Some("model-2")).unwrap();
        let error = reopened
            .check("forecast", &v("1.0.0"), "aa", Some("model-1"))
            .unwrap_err();
        assert!(matches!(error, RollbackError::SameVersionOtherAssets { .. }), "{error}");
        assert!(error.to_string().contains("needs a new version"), "{error}");
        assert!(matches!(
            reopened.check("forecast", &v("1.0.0"), "aa", None),
            Err(RollbackError::SameVersionOtherAssets { .. })
        ));
        reopened.check("forecast", &v("1.0.1"), "aa", Some("model-1")).unwrap();

        // A record from before assets were recorded: unknown, so taken, and
        // learnt from the bundle accepted again.
        std::fs::write(
            dir.path().join(ROLLBACK_FILE),
            br#"{"forecast": {"version": "1.0.0", "code_sha256": "aa"}}"#,
        )
        .unwrap();
        let mut old = RollbackStore::open(dir.path()).unwrap();
        old.check("forecast", &v("1.0.0"), "aa", Some("model-1")).unwrap();
        old.record("forecast", &v("1.0.0"), "aa", Some("model-2")).unwrap();
        let learnt = RollbackStore::open(dir.path()).unwrap();
        assert!(matches!(
            learnt.check("forecast", &v("1.0.0"), "aa", Some("model-1")),
            Err(RollbackError::SameVersionOtherAssets { .. })
        ));
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ROLLBACK_FILE), "{not json").unwrap();
        assert!(matches!(
            RollbackStore::open(dir.path()),
            Err(RollbackError::Corrupt { .. })
        ));
    }

    /// docs/operators.md: a record that is not valid JSON, or holds a version
    /// that is not SemVer (for any plugin, not only the one being checked),
    /// is an error when the record is opened.
    #[test]
    fn a_record_with_any_bad_version_or_shape_is_refused_at_open() {
        let good = r#""ok": {"version": "1.0.0", "code_sha256": "aa"}"#;
        for text in [
            format!(r#"{{{good}, "other": {{"version": "1.0", "code_sha256": "bb"}}}}"#),
            format!(r#"{{{good}, "other": {{"version": "v2", "code_sha256": "bb"}}}}"#),
            format!(r#"{{{good}, "ok": {{"version": "0.0.1", "code_sha256": "aa"}}}}"#),
            format!(r#"{{{good}, "other": ["1.0.0", "bb"]}}"#),
            r#"[["ok", {"version": "1.0.0", "code_sha256": "aa"}]]"#.to_owned(),
            format!("{{{good}}} trailing"),
            String::new(),
            "null".to_owned(),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(ROLLBACK_FILE), &text).unwrap();
            match RollbackStore::open(dir.path()) {
                Err(error @ (RollbackError::Corrupt { .. } | RollbackError::CorruptVersion { .. })) => {
                    assert!(error.to_string().contains(": corrupt: "), "{error}");
                }
                other => panic!("{text}: expected a corrupt record, got {other:?}"),
            }
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ROLLBACK_FILE), format!("{{{good}}}")).unwrap();
        RollbackStore::open(dir.path())
            .unwrap()
            .check("ok", &v("1.0.0"), "aa", None)
            .unwrap();
    }
}
