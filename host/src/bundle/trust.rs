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
/// The largest `.pub` file read: a public key file is one line of under 100
/// bytes.
const MAX_KEY_FILE_BYTES: u64 = 4 << 10;
/// The largest `revoked` file read: tens of thousands of entries.
const MAX_REVOKED_BYTES: u64 = 4 << 20;

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
    /// A file of the store is not a regular file (a FIFO, a device, a
    /// symlink to one), which a read could wait on or never finish.
    #[error("{path} is not a regular file: only key files and `revoked` belong in a trust directory")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// A file of the store is larger than such a file can be.
    #[error("{path} is over {max} bytes: not a {what}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The most read.
        max: u64,
        /// What the file should be.
        what: &'static str,
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

/// The bytes of `path`, a regular file (symlinks followed) of at most `max`
/// bytes: a FIFO would block the read (and start-up with it), a device such
/// as `/dev/zero` would never end.
fn read_regular(path: &Path, max: u64, what: &'static str) -> Result<Vec<u8>, TrustError> {
    use std::io::Read;
    let io = |source| TrustError::Io {
        path: path.to_owned(),
        source,
    };
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(TrustError::NotAFile { path: path.to_owned() });
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(TrustError::TooLarge {
            path: path.to_owned(),
            max,
            what,
        });
    }
    Ok(bytes)
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
            let bytes = read_regular(path, MAX_KEY_FILE_BYTES, "public key file")?;
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
        match std::fs::metadata(&revoked) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => {
                let bytes = read_regular(&revoked, MAX_REVOKED_BYTES, "revocation list")?;
                let text = String::from_utf8(bytes)
                    .map_err(|e| io(&revoked)(std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error())))?;
                store.add_revocations(&revoked, &text)?;
            }
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

    /// The same keys with nothing revoked: for telling who signed a bundle
    /// and that it is unaltered, never for letting it run (a revoked key
    /// still proves both; what it signed must not run).
    pub fn ignoring_revocations(&self) -> TrustStore {
        TrustStore {
            keys: self.keys.clone(),
            ..TrustStore::default()
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_a_device_or_a_huge_file_in_the_trust_directory_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("x.pub");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        // Before: the read waited for a writer, for ever (and start-up with it).
        let error = TrustStore::load(dir.path()).unwrap_err();
        assert!(matches!(error, TrustError::NotAFile { .. }), "{error}");
        std::fs::remove_file(&fifo).unwrap();

        // Before: read until memory ran out.
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("z.pub")).unwrap();
        let error = TrustStore::load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("is not a regular file"), "{error}");
        std::fs::remove_file(dir.path().join("z.pub")).unwrap();

        std::fs::write(dir.path().join("big.pub"), vec![b'a'; 5000]).unwrap();
        let error = TrustStore::load(dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("over 4096 bytes: not a public key file"),
            "{error}"
        );
        std::fs::remove_file(dir.path().join("big.pub")).unwrap();

        std::os::unix::fs::symlink("/dev/zero", dir.path().join(REVOKED_FILE)).unwrap();
        let error = TrustStore::load(dir.path()).unwrap_err();
        assert!(matches!(error, TrustError::NotAFile { .. }), "{error}");
        std::fs::remove_file(dir.path().join(REVOKED_FILE)).unwrap();
        assert!(TrustStore::load(dir.path()).is_ok());
    }
}
