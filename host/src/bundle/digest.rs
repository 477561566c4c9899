//! SHA-256 digests as lowercase hex.

/// SHA-256 of `bytes`, lowercase hex (64 digits).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}
