//! Ed25519 signing keys and their files.
//!
//! - Private key: PKCS#8 (v2, as `ring` generates it), written with mode 0600.
//! - Public key: one line `edgewise-ed25519 <64 lowercase hex digits>`
//!   (the raw 32-byte key); lines starting with `#` are comments.
//! - Key id: the first 8 bytes of the SHA-256 of the raw public key, shown as
//!   16 lowercase hex digits. Short, stable, and derived: it cannot disagree
//!   with the key it names.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use super::format::{KEY_ID_LEN, SIGNATURE_LEN};

/// The first word of a public key file.
const PUBLIC_KEY_TAG: &str = "edgewise-ed25519";

/// A key id: the first 8 bytes of SHA-256 of the raw public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl KeyId {
    /// The id of a raw 32-byte public key.
    pub fn of(public_key: &[u8]) -> KeyId {
        let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest.as_ref()[..KEY_ID_LEN]);
        KeyId(id)
    }

    /// Parse 16 hex digits.
    pub fn parse(text: &str) -> Option<KeyId> {
        let bytes = hex::decode(text).ok()?;
        Some(KeyId(bytes.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Why a key could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The private key is not a PKCS#8 Ed25519 key.
    #[error("not an Ed25519 PKCS#8 private key")]
    BadPrivateKey,
    /// The public key file is not in the expected format.
    #[error("not an Edgewise public key (expected one line `{PUBLIC_KEY_TAG} <64 hex digits>`)")]
    BadPublicKey,
    /// The system random generator failed.
    #[error("could not generate a key: the system random generator failed")]
    Random,
}

/// A signing key pair.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Generate a new key; returns its PKCS#8 document (to store) and the key.
    pub fn generate() -> Result<(Vec<u8>, SigningKey), KeyError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
        let key = SigningKey::from_pkcs8(pkcs8.as_ref())?;
        Ok((pkcs8.as_ref().to_vec(), key))
    }

    /// Load a PKCS#8 private key.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<SigningKey, KeyError> {
        Ed25519KeyPair::from_pkcs8(bytes)
            .map(|pair| SigningKey { pair })
            .map_err(|_| KeyError::BadPrivateKey)
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(raw)
    }

    /// Sign `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(self.pair.sign(message).as_ref());
        signature
    }
}

/// A raw Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Its key id.
    pub fn id(&self) -> KeyId {
        KeyId::of(&self.0)
    }

    /// Whether `signature` is a valid Ed25519 signature of `message` by this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }

    /// The text of a public key file.
    pub fn to_file_text(&self) -> String {
        format!(
            "# Edgewise public key, key id {}\n{PUBLIC_KEY_TAG} {}\n",
            self.id(),
            hex::encode(self.0)
        )
    }

    /// Parse the text of a public key file.
    pub fn from_file_text(text: &str) -> Result<PublicKey, KeyError> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let (Some(line), None) = (lines.next(), lines.next()) else {
            return Err(KeyError::BadPublicKey);
        };
        let Some((PUBLIC_KEY_TAG, key_hex)) = line.split_once(' ') else {
            return Err(KeyError::BadPublicKey);
        };
        let raw: [u8; 32] = hex::decode(key_hex.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(KeyError::BadPublicKey)?;
        Ok(PublicKey(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_round_trip_files() {
        let (pkcs8, key) = SigningKey::generate().unwrap();
        let reloaded = SigningKey::from_pkcs8(&pkcs8).unwrap();
        let public = reloaded.public_key();
        assert_eq!(public, key.public_key());
        let signature = key.sign(b"message");
        assert!(public.verifies(b"message", &signature));
        assert!(!public.verifies(b"messagE", &signature));
        let text = public.to_file_text();
        assert!(text.contains(&public.id().to_string()));
        assert_eq!(PublicKey::from_file_text(&text), Ok(public));
        assert_eq!(KeyId::parse(&public.id().to_string()), Some(public.id()));
    }

    #[test]
    fn bad_key_files() {
        assert_eq!(SigningKey::from_pkcs8(b"nope").err(), Some(KeyError::BadPrivateKey));
        for text in [
            "",
            "edgewise-ed25519 abcd",
            "ssh-ed25519 AAAA",
            "edgewise-ed25519 00\nedgewise-ed25519 00",
        ] {
            assert_eq!(PublicKey::from_file_text(text), Err(KeyError::BadPublicKey), "{text:?}");
        }
    }
}
