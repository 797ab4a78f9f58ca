//! Private blobs: a file attached to a direct message is encrypted before it becomes a
//! blob, under a fresh random [`BlobKey`] that travels only inside the sealed message. The
//! blob anyone can fetch is ciphertext.
//!
//! The plaintext is cut into segments of [`BLOB_SEGMENT_BYTES`] (an empty file is one empty
//! segment), and each segment is encrypted with ChaCha20-Poly1305 under a key derived
//! with HKDF-SHA256 (salt [`BLOB_KDF_SALT`], the blob key as input, the [`KeyRole`] as
//! info), with the nonce `0 0 0 last || index (u64 big-endian)`: a segment cannot be
//! moved, dropped or taken for the last one. Each blob key encrypts one file and its
//! thumbnail (two roles, two keys), never anything else.

use std::fmt;

use bincode::{Decode, Encode};
use zeroize::{Zeroize, Zeroizing};

use crate::{
    dm::{aead_open, aead_seal, hkdf_sha256, DmError, AEAD_KEY_LEN, AEAD_NONCE_LEN, AEAD_TAG_LEN},
    limits::BLOB_SEGMENT_BYTES,
};

/// The HKDF salt of private blob keys; it names the format and version.
pub const BLOB_KDF_SALT: &[u8] = b"kith-blob/1";

/// [`BLOB_SEGMENT_BYTES`] as a `u64`.
const SEGMENT: u64 = BLOB_SEGMENT_BYTES as u64;
/// A sealed segment's bytes beyond its plaintext.
const TAG: u64 = AEAD_TAG_LEN as u64;

/// The random key of one private attachment. Never printed; zeroized on drop.
#[derive(Clone, PartialEq, Eq, Encode, Decode)]
pub struct BlobKey([u8; AEAD_KEY_LEN]);

impl BlobKey {
    /// A new key from the operating system's random source.
    ///
    /// # Errors
    /// Only if the random source fails.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; AEAD_KEY_LEN];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; AEAD_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; AEAD_KEY_LEN] {
        &self.0
    }
}

impl Drop for BlobKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlobKey(..)")
    }
}

/// What a blob key encrypts: the file, or its thumbnail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// The attached file.
    Content,
    /// Its thumbnail.
    Thumbnail,
}

impl KeyRole {
    /// The HKDF info of the role.
    fn info(self) -> &'static [u8] {
        match self {
            Self::Content => b"content",
            Self::Thumbnail => b"thumbnail",
        }
    }
}

/// How many segments a plaintext of `plain` bytes has (at least one).
fn segments(plain: u64) -> u64 {
    plain.div_ceil(SEGMENT).max(1)
}

/// The size of the sealed blob of a `plain`-byte file: the file plus a tag per segment.
pub fn sealed_len(plain: u64) -> u64 {
    plain.saturating_add(TAG.saturating_mul(segments(plain)))
}

/// The plaintext size of a sealed blob of `sealed` bytes, if a plaintext seals to exactly
/// that size.
pub fn plain_len(sealed: u64) -> Option<u64> {
    let n = sealed.div_ceil(SEGMENT + TAG);
    let plain = sealed.checked_sub(n.checked_mul(TAG)?)?;
    (n >= 1 && sealed_len(plain) == sealed).then_some(plain)
}

/// Seals or opens the segments of one blob with one key and role.
pub struct BlobSealer {
    key: Zeroizing<[u8; AEAD_KEY_LEN]>,
}

impl fmt::Debug for BlobSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlobSealer(..)")
    }
}

fn nonce(index: u64, last: bool) -> [u8; AEAD_NONCE_LEN] {
    let mut nonce = [0u8; AEAD_NONCE_LEN];
    nonce[3] = u8::from(last);
    nonce[4..].copy_from_slice(&index.to_be_bytes());
    nonce
}

impl BlobSealer {
    /// The sealer for `role` under `key`.
    ///
    /// # Errors
    /// Never in practice (HKDF refuses only outputs over 8160 bytes).
    pub fn new(key: &BlobKey, role: KeyRole) -> Result<Self, DmError> {
        let mut derived = Zeroizing::new([0u8; AEAD_KEY_LEN]);
        hkdf_sha256(BLOB_KDF_SALT, key.as_bytes(), role.info(), derived.as_mut())?;
        Ok(Self { key: derived })
    }

    /// Seals segment `index` (at most [`BLOB_SEGMENT_BYTES`] of plaintext; exactly that
    /// much unless `last`).
    ///
    /// # Errors
    /// [`DmError::Malformed`] for a segment of the wrong length.
    pub fn seal_segment(&self, index: u64, last: bool, plain: &[u8]) -> Result<Vec<u8>, DmError> {
        let len = plain.len() as u64;
        if len > SEGMENT || (!last && len != SEGMENT) {
            return Err(DmError::Malformed(format!("segment of {len} bytes")));
        }
        aead_seal(&self.key, &nonce(index, last), &[], plain)
    }

    /// Opens segment `index`.
    ///
    /// # Errors
    /// [`DmError::Decrypt`] when it was tampered with, moved, or is not the segment
    /// expected; [`DmError::Malformed`] for a segment of the wrong length.
    pub fn open_segment(&self, index: u64, last: bool, sealed: &[u8]) -> Result<Vec<u8>, DmError> {
        let len = sealed.len() as u64;
        if !(TAG..=SEGMENT + TAG).contains(&len) || (!last && len != SEGMENT + TAG) {
            return Err(DmError::Malformed(format!("sealed segment of {len} bytes")));
        }
        aead_open(&self.key, &nonce(index, last), &[], sealed)
    }
}

/// Seals a whole (small) file in memory.
///
/// # Errors
/// As [`BlobSealer::new`].
pub fn seal_blob(key: &BlobKey, role: KeyRole, plain: &[u8]) -> Result<Vec<u8>, DmError> {
    let sealer = BlobSealer::new(key, role)?;
    let count = segments(plain.len() as u64);
    let mut out = Vec::with_capacity(usize::try_from(sealed_len(plain.len() as u64)).unwrap_or(0));
    let mut pieces: Vec<&[u8]> = plain.chunks(BLOB_SEGMENT_BYTES).collect();
    if pieces.is_empty() {
        pieces.push(&[]);
    }
    for (index, piece) in (0u64..).zip(pieces) {
        out.extend_from_slice(&sealer.seal_segment(index, index + 1 == count, piece)?);
    }
    Ok(out)
}

/// Opens a whole (small) sealed blob in memory.
///
/// # Errors
/// [`DmError::Malformed`] when no plaintext seals to this length; [`DmError::Decrypt`]
/// when any segment fails.
pub fn open_blob(key: &BlobKey, role: KeyRole, sealed: &[u8]) -> Result<Vec<u8>, DmError> {
    let plain = plain_len(sealed.len() as u64)
        .ok_or_else(|| DmError::Malformed(format!("sealed blob of {} bytes", sealed.len())))?;
    let sealer = BlobSealer::new(key, role)?;
    let count = segments(plain);
    let mut out = Vec::with_capacity(usize::try_from(plain).unwrap_or(0));
    for (index, piece) in (0u64..).zip(sealed.chunks(BLOB_SEGMENT_BYTES + AEAD_TAG_LEN)) {
        out.extend_from_slice(&sealer.open_segment(index, index + 1 == count, piece)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        for plain in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 25 << 20] {
            assert_eq!(plain_len(sealed_len(plain)), Some(plain), "{plain}");
        }
        assert_eq!(sealed_len(0), TAG);
        assert_eq!(sealed_len(SEGMENT), SEGMENT + TAG);
        assert_eq!(sealed_len(SEGMENT + 1), SEGMENT + 1 + 2 * TAG);
        // Lengths no plaintext seals to.
        for bad in [0, TAG - 1, SEGMENT + TAG + 1, SEGMENT + TAG + TAG] {
            assert_eq!(plain_len(bad), None, "{bad}");
        }
    }

    #[test]
    fn seal_open_and_tamper() {
        let key = BlobKey::from_bytes([9; 32]);
        for len in [0usize, 5, BLOB_SEGMENT_BYTES, BLOB_SEGMENT_BYTES * 2 + 3] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let sealed = seal_blob(&key, KeyRole::Content, &plain).unwrap();
            assert_eq!(sealed.len() as u64, sealed_len(len as u64));
            assert_eq!(open_blob(&key, KeyRole::Content, &sealed).unwrap(), plain);
            // Another role, another key.
            assert!(open_blob(&key, KeyRole::Thumbnail, &sealed).is_err());
            let mut bad = sealed.clone();
            bad[0] ^= 1;
            assert_eq!(open_blob(&key, KeyRole::Content, &bad), Err(DmError::Decrypt));
        }
        // Dropping the last segment makes the previous one claim to be last: refused.
        let plain = vec![1u8; BLOB_SEGMENT_BYTES * 2];
        let sealed = seal_blob(&key, KeyRole::Content, &plain).unwrap();
        let cut = &sealed[..BLOB_SEGMENT_BYTES + AEAD_TAG_LEN];
        assert_eq!(open_blob(&key, KeyRole::Content, cut), Err(DmError::Decrypt));
        assert_eq!(format!("{key:?}"), "BlobKey(..)");
    }
}
