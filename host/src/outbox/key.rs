//! The device key that encrypts outbox payloads at rest: loaded from a 32-byte
//! key file, or created once.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::error::OutboxError;
use crate::files::{self, Access, Existing};

/// The AES-256-GCM key of the outbox.
///
/// Here it lives in a file readable by the host's user only (mode 0600). On a
/// real device it belongs in a TPM or secure element, which the file stands in
/// for: whoever can read the key file can read every queued payload.
#[derive(Clone)]
pub struct OutboxKey {
    key: LessSafeKey,
    /// Keys derived from the device key, one per purpose (HKDF-SHA256), so
    /// that each purpose has its own bound on random nonces.
    derived: std::sync::Arc<Derived>,
}

/// The keys derived from the device key.
struct Derived {
    input_log: LessSafeKey,
    states: LessSafeKey,
}

/// What a key derived from the device key protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The plugins' input log.
    InputLog,
    /// The plugins' saved states (snapshots).
    States,
}

/// The HKDF salt: names the scheme, so that a later one derives other keys.
const DERIVE_SALT: &[u8] = b"edgewise-device-key-derivation-v1";

/// The key for `info`, derived from `bytes` with HKDF-SHA256.
fn derive(bytes: &[u8; OutboxKey::LEN], info: &'static [u8]) -> Result<LessSafeKey, OutboxError> {
    let failed = |_| OutboxError::Crypto {
        operation: "derive a key from the device key",
    };
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, DERIVE_SALT).extract(bytes);
    let info = [info];
    let okm = prk.expand(&info, &AES_256_GCM).map_err(failed)?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

impl std::fmt::Debug for OutboxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboxKey(AES-256-GCM, redacted)")
    }
}

impl OutboxKey {
    /// Length of a key, in bytes.
    pub const LEN: usize = 32;

    /// A key from its bytes (for a key that comes from a secure element, and for tests).
    pub fn from_bytes(bytes: &[u8; Self::LEN]) -> Result<OutboxKey, OutboxError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| OutboxError::Crypto {
            operation: "set up the AES-256-GCM key",
        })?;
        let derived = Derived {
            input_log: derive(bytes, b"input-log")?,
            states: derive(bytes, b"plugin-states")?,
        };
        Ok(OutboxKey {
            key: LessSafeKey::new(key),
            derived: std::sync::Arc::new(derived),
        })
    }

    /// A key of 32 random bytes kept nowhere: for an outbox in memory
    /// ([`super::Outbox::open_in_memory`]), whose rows die with the process.
    pub fn ephemeral() -> Result<OutboxKey, OutboxError> {
        let mut bytes = [0u8; Self::LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| OutboxError::Crypto {
            operation: "generate a key for an outbox in memory",
        })?;
        Self::from_bytes(&bytes)
    }

    /// Read the key file at `path`, or, if there is none, create one with 32
    /// random bytes.
    ///
    /// The new key is written with [`files::write_atomic`] (mode 0600, never
    /// replacing a file): after a crash the key file is either absent or
    /// complete, and two processes racing end up with the same key. A file
    /// that is not exactly 32 bytes is an error, never replaced.
    pub fn load_or_create(path: &Path) -> Result<OutboxKey, OutboxError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_file(path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(source) => Err(OutboxError::Io {
                path: path.to_owned(),
                operation: "read the device key",
                source,
            }),
        }
    }

    /// The cipher, for the rest of the module.
    pub(crate) fn aead(&self) -> &LessSafeKey {
        &self.key
    }

    /// The key derived from the device key for `purpose`.
    pub(crate) fn derived(&self, purpose: Purpose) -> &LessSafeKey {
        match purpose {
            Purpose::InputLog => &self.derived.input_log,
            Purpose::States => &self.derived.states,
        }
    }

    fn from_file(path: &Path, bytes: &[u8]) -> Result<OutboxKey, OutboxError> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().map_err(|_| OutboxError::KeyFile {
            path: path.to_owned(),
            reason: format!("expected {} bytes, found {}", Self::LEN, bytes.len()),
        })?;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "outbox key file {} is readable by other users (mode {:o}); it should be 0600",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
        Self::from_bytes(bytes)
    }

    fn create(path: &Path) -> Result<OutboxKey, OutboxError> {
        let io = |operation: &'static str| {
            move |source: std::io::Error| OutboxError::Io {
                path: path.to_owned(),
                operation,
                source,
            }
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(io("create the key's directory"))?;
        let mut bytes = [0u8; Self::LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| OutboxError::Crypto {
            operation: "generate a device key",
        })?;
        match files::write_atomic(path, &bytes, Access::Private, Existing::Keep) {
            Ok(()) => {}
            // Another process created the key first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing = std::fs::read(path).map_err(io("read the device key"))?;
                return Self::from_file(path, &existing);
            }
            Err(e) => return Err(io("write the device key")(e)),
        }
        Self::from_bytes(&bytes)
    }
}
