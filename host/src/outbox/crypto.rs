//! Payload encryption at rest: AES-256-GCM with a fresh random 96-bit nonce
//! per row, and associated data that binds the ciphertext to its row.

use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};
use ring::rand::{SecureRandom, SystemRandom};

use super::entry::Kind;

/// Domain separation: these bytes start the associated data of every row.
const ROW_DOMAIN: &[u8] = b"edgewise-outbox-row-v1";

/// Associated data and plaintext of the key-check record (see `schema`).
pub(crate) const KEY_CHECK: &[u8] = b"edgewise-outbox-key-check-v1";

/// The associated data of a row: its kind, subject, message id and creation
/// time, each length-prefixed. Swapping ciphertexts between rows, or editing
/// any of these columns, makes decryption fail. (The row id is not included:
/// it is assigned by SQLite after the row is sealed; the message id plays its
/// part, being unique per output.)
pub(crate) fn row_aad(kind: Kind, subject: &str, msg_id: &str, created_ms: i64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(ROW_DOMAIN.len() + 1 + 16 + subject.len() + msg_id.len() + 8);
    aad.extend_from_slice(ROW_DOMAIN);
    aad.extend_from_slice(&kind.to_sql().to_be_bytes()[7..]);
    for field in [subject.as_bytes(), msg_id.as_bytes()] {
        aad.extend_from_slice(&(field.len() as u64).to_be_bytes());
        aad.extend_from_slice(field);
    }
    aad.extend_from_slice(&created_ms.to_be_bytes());
    aad
}

/// Encrypt `plaintext` in place under a fresh random nonce; returns the nonce
/// and the ciphertext with its tag appended.
///
/// Random nonces are safe for this use: the chance of a repeat stays below
/// 2^-32 up to 2^32 entries under one key (NIST SP 800-38D).
pub(crate) fn seal(
    key: &LessSafeKey,
    rng: &SystemRandom,
    aad: &[u8],
    mut plaintext: Vec<u8>,
) -> Result<([u8; NONCE_LEN], Vec<u8>), ring::error::Unspecified> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce)?;
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut plaintext)?;
    Ok((nonce, plaintext))
}

/// Decrypt and authenticate; `None` if the nonce, the ciphertext, the tag, the
/// associated data or the key is not what was sealed.
pub(crate) fn open(key: &LessSafeKey, nonce: &[u8], aad: &[u8], mut ciphertext: Vec<u8>) -> Option<Vec<u8>> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let plaintext_len = key.open_in_place(nonce, Aad::from(aad), &mut ciphertext).ok()?.len();
    ciphertext.truncate(plaintext_len);
    Some(ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxKey;

    #[test]
    fn seal_open_round_trip_and_every_binding_holds() {
        let key = OutboxKey::from_bytes(&[7; 32]).unwrap();
        let other = OutboxKey::from_bytes(&[8; 32]).unwrap();
        let rng = SystemRandom::new();
        let aad = row_aad(Kind::Alert, "s", "m/1", 5);
        let (nonce, sealed) = seal(key.aead(), &rng, &aad, b"hello".to_vec()).unwrap();
        assert_eq!(sealed.len(), 5 + 16);
        assert_eq!(open(key.aead(), &nonce, &aad, sealed.clone()).unwrap(), b"hello");
        assert_eq!(open(other.aead(), &nonce, &aad, sealed.clone()), None, "wrong key");
        for changed in [
            row_aad(Kind::Summary, "s", "m/1", 5),
            row_aad(Kind::Alert, "t", "m/1", 5),
            row_aad(Kind::Alert, "s", "m/2", 5),
            row_aad(Kind::Alert, "s", "m/1", 6),
            // Length prefixes: moving a byte between fields changes the data.
            row_aad(Kind::Alert, "sm", "/1", 5),
        ] {
            assert_eq!(open(key.aead(), &nonce, &changed, sealed.clone()), None);
        }
        assert_eq!(
            open(key.aead(), &nonce[..11], &aad, sealed.clone()),
            None,
            "short nonce"
        );
        assert_eq!(open(key.aead(), &nonce, &aad, sealed[..10].to_vec()), None, "truncated");
        let (nonce2, _) = seal(key.aead(), &rng, &aad, b"hello".to_vec()).unwrap();
        assert_ne!(nonce, nonce2, "a fresh nonce per seal");
    }
}
