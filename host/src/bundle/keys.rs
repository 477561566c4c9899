//! Ed25519 signing keys and their files.
//!
//! - Private key: PKCS#8 (v2, as `ring` generates it), written with mode 0600.
//! - Public key: one line `edgewise-ed25519 <64 lowercase hex digits>`
//!   (the raw 32-byte key); lines starting with `#` are comments.
//! - Key id: the first 8 bytes of the SHA-256 of the raw public key, shown as
//!   16 lowercase hex digits. Short, stable, and derived: it cannot disagree
//!   with the key it names.

use std::fmt;

use curve25519_dalek::edwards::CompressedEdwardsY;
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
    /// The public key is a point no signer can be held to: not on the curve,
    /// not in its one canonical encoding, or of small order (the identity
    /// key, for one, makes any message "verify" with a signature anyone can
    /// write).
    #[error("unusable Ed25519 public key: {0}")]
    WeakPublicKey(&'static str),
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

    /// Refuse a key under which a signature proves nothing.
    ///
    /// `ring` verifies with the cofactorless equation `[S]B = R + [k]A` and
    /// does not look at `A` itself: with `A` of small order (the identity
    /// `01 00..00`, or one of the other seven points of order 2, 4 or 8),
    /// `[k]A` takes at most 8 values, so a forger picks `R = [S]B - [k]A`
    /// for a guessed `[k]A` and succeeds for any message within a few tries
    /// (always, for the identity). A key in a non-canonical encoding
    /// (`y >= p`, or `x = 0` with the sign bit set) names the same point as
    /// another byte string, so it would have two key ids. `curve25519-dalek`
    /// does the point arithmetic (ring has none).
    pub fn check_usable(&self) -> Result<(), KeyError> {
        let encoded = CompressedEdwardsY(self.0);
        let point = encoded
            .decompress()
            .ok_or(KeyError::WeakPublicKey("not the encoding of a point of the curve"))?;
        // Decompression reduces `y` modulo p and ignores the sign of x = 0:
        // only the canonical encoding survives the round trip.
        if point.compress() != encoded {
            return Err(KeyError::WeakPublicKey(
                "not in canonical encoding (y is not below 2^255 - 19, or x = 0 has its sign bit set)",
            ));
        }
        if point.is_small_order() {
            return Err(KeyError::WeakPublicKey(
                "a point of small order: it would accept signatures that nobody made",
            ));
        }
        Ok(())
    }

    /// Whether `signature` is a valid Ed25519 signature of `message` by this
    /// key. Always false for a key [`PublicKey::check_usable`] refuses.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        if self.check_usable().is_err() {
            return false;
        }
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

    /// Parse the text of a public key file; a key [`PublicKey::check_usable`]
    /// refuses is an error.
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
        let key = PublicKey(raw);
        key.check_usable()?;
        Ok(key)
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

    /// `edgewise-ed25519 <hex>` for raw bytes.
    fn file_text(raw: [u8; 32]) -> String {
        format!("{PUBLIC_KEY_TAG} {}\n", hex::encode(raw))
    }

    /// The identity point (`01 00..00`), and an accepted real key for contrast.
    #[test]
    fn the_identity_key_is_refused_and_would_accept_a_signature_nobody_made() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        // What the check prevents: with A = identity, R = identity and S = 0
        // satisfy [S]B = R + [k]A for every message.
        let mut forged = [0u8; SIGNATURE_LEN];
        forged[0] = 1;
        assert!(
            UnparsedPublicKey::new(&ED25519, &identity)
                .verify(b"any message at all", &forged)
                .is_ok(),
            "ring alone accepts it"
        );
        assert!(!PublicKey(identity).verifies(b"any message at all", &forged));
        assert!(matches!(
            PublicKey::from_file_text(&file_text(identity)),
            Err(KeyError::WeakPublicKey(reason)) if reason.contains("small order")
        ));
        let (_, real) = SigningKey::generate().unwrap();
        assert_eq!(
            PublicKey::from_file_text(&real.public_key().to_file_text()),
            Ok(real.public_key())
        );
    }

    /// Every point of small order (the 8-torsion subgroup), in every encoding
    /// that decompresses to it, is refused; so is every non-canonical
    /// encoding of any point, and bytes that are no point at all.
    #[test]
    fn small_order_non_canonical_and_off_curve_keys_are_refused() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        for point in EIGHT_TORSION {
            let canonical = point.compress().to_bytes();
            let error = PublicKey(canonical).check_usable().unwrap_err();
            assert!(
                error.to_string().contains("small order"),
                "{}: {error}",
                hex::encode(canonical)
            );
            // The same point with the sign bit flipped: a second encoding
            // when x = 0, otherwise another small-order point (or none).
            let mut flipped = canonical;
            flipped[31] ^= 0x80;
            assert!(PublicKey(flipped).check_usable().is_err(), "{}", hex::encode(flipped));
        }
        // y = p + k for k in 0..19: every encoding with y >= p is refused,
        // whether or not the point it reduces to has small order; at least
        // one of them is a point of large order (so the canonicality rule,
        // not the small-order one, refuses it).
        let mut large_order_non_canonical = 0;
        for k in 0u8..19 {
            let mut raw = [0xffu8; 32];
            raw[31] = 0x7f;
            raw[0] = 0xed + k; // p = 2^255 - 19 = ed ff .. ff 7f (little endian)
            if let Some(point) = CompressedEdwardsY(raw).decompress()
                && !point.is_small_order()
            {
                large_order_non_canonical += 1;
                assert!(matches!(
                    PublicKey(raw).check_usable(),
                    Err(KeyError::WeakPublicKey(reason)) if reason.contains("canonical")
                ));
            }
            assert!(PublicKey(raw).check_usable().is_err(), "{}", hex::encode(raw));
        }
        assert!(large_order_non_canonical > 0);
        // y = 2 is not the y of any point: x^2 would not be a square.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        if CompressedEdwardsY(off_curve).decompress().is_none() {
            assert!(matches!(
                PublicKey(off_curve).check_usable(),
                Err(KeyError::WeakPublicKey(reason)) if reason.contains("not the encoding")
            ));
        }
    }
}
