//! The device trust store: a directory of `*.pub` files, and an optional
//! `revoked` file listing key ids and digests that must never run.
//!
//! `revoked` holds one entry per line: a key id (16 hex digits) or a digest
//! `sha256:<64 hex digits>`; `#` starts a comment. A digest line is compared
//! with both digests of a bundle, its code digest (the component alone) and
//! its bundle digest (the whole file): it revokes whichever it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::keys::{KeyError, KeyId, PublicKey};

/// Name of the revocation list inside the trust directory.
pub const REVOKED_FILE: &str = "revoked";

/// Public keys the device trusts, and what is revoked.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: BTreeMap<KeyId, PublicKey>,
    revoked_keys: BTreeSet<KeyId>,
    revoked_digests: BTreeSet<String>,
}

/// Why a trust store could not be loaded. Reported at start, with the file.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The directory or a file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `.pub` file is not a public key.
    #[error("{path}: {source}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// A `.pub` file is binary, not the text of a public key.
    #[error(
        "{path} is not a public key (one line `edgewise-ed25519 <64 hex digits>`) but a binary file, as a private key (`.key`) is: put the `.pub` file `edgewise keygen` wrote here, and keep private keys off devices"
    )]
    Binary {
        /// The file.
        path: PathBuf,
    },
    /// A line of `revoked` is neither a key id nor a digest.
    #[error("{path}:{line}: `{text}` is neither a key id (16 hex digits) nor `sha256:<64 hex digits>`")]
    BadRevocation {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The text.
        text: String,
    },
}

impl TrustStore {
    /// Load every `*.pub` file of `dir` and its `revoked` file, if any.
    pub fn load(dir: &Path) -> Result<TrustStore, TrustError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TrustError::Io { path, source }
        };
        let mut store = TrustStore::default();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io(dir))?;
        entries.sort();
        for path in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "key")) {
            // Not read, not trusted: only `.pub` files are. But a signing
            // key has no business on a device, whoever can read it here
            // can sign bundles every device trusts.
            tracing::warn!(file = %path.display(), "A private key (`.key`) is in the trust directory: keep signing keys off devices (only `.pub` files are read)");
        }
        for path in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "pub")) {
            let bytes = std::fs::read(path).map_err(io(path))?;
            // A public key file is one line of text; a binary one is most
            // likely a private key (DER) copied under the wrong name.
            let text = String::from_utf8(bytes).map_err(|_| TrustError::Binary { path: path.clone() })?;
            let key = PublicKey::from_file_text(&text).map_err(|source| TrustError::BadKey {
                path: path.clone(),
                source,
            })?;
            store.add_key(key);
        }
        let revoked = dir.join(REVOKED_FILE);
        match std::fs::read_to_string(&revoked) {
            Ok(text) => store.add_revocations(&revoked, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&revoked)(e)),
        }
        Ok(store)
    }

    /// Trust `key`.
    pub fn add_key(&mut self, key: PublicKey) {
        self.keys.insert(key.id(), key);
    }

    fn add_revocations(&mut self, path: &Path, text: &str) -> Result<(), TrustError> {
        for (index, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            if let Some(digest) = entry.strip_prefix("sha256:")
                && digest.len() == 64
                && digest.bytes().all(|b| b.is_ascii_hexdigit())
            {
                self.revoked_digests.insert(digest.to_ascii_lowercase());
            } else if let Some(key_id) = KeyId::parse(entry) {
                self.revoked_keys.insert(key_id);
            } else {
                return Err(TrustError::BadRevocation {
                    path: path.to_owned(),
                    line: index + 1,
                    text: entry.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The trusted key with this id, if any (revoked or not).
    pub fn key(&self, id: &KeyId) -> Option<&PublicKey> {
        self.keys.get(id)
    }

    /// Whether the key id is revoked.
    pub fn is_key_revoked(&self, id: &KeyId) -> bool {
        self.revoked_keys.contains(id)
    }

    /// Whether the digest (lowercase hex) is revoked: a `sha256:` line of
    /// `revoked` names a code digest or a bundle digest, and verification
    /// asks about both.
    pub fn is_digest_revoked(&self, sha256: &str) -> bool {
        self.revoked_digests.contains(sha256)
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
