//! The primitives under every kith seal, behind the project's own signatures (the
//! Wycheproof vectors in `protocol/tests/` run through these): X25519, ChaCha20-Poly1305
//! and HKDF-SHA256.

use chacha20poly1305::{
    aead::{Aead, Payload},
    ChaCha20Poly1305, KeyInit,
};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use super::{DmError, AEAD_KEY_LEN, AEAD_NONCE_LEN, MAX_HKDF_SHA256_BYTES};
use crate::identity::X25519_KEY_LEN;

/// X25519 (RFC 7748) of a secret scalar (clamped here) and a public `u` coordinate (its top
/// bit ignored), refusing a non-contributory (all-zero) result, which a low-order public key
/// gives.
///
/// # Errors
/// [`DmError::BadKey`] for an all-zero shared secret.
pub fn x25519_agree(
    secret: &[u8; X25519_KEY_LEN],
    public: &[u8; X25519_KEY_LEN],
) -> Result<[u8; X25519_KEY_LEN], DmError> {
    let secret = StaticSecret::from(*secret);
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(DmError::BadKey);
    }
    Ok(shared.to_bytes())
}

/// ChaCha20-Poly1305 (RFC 8439) encryption: the ciphertext followed by the 16-byte tag.
///
/// # Errors
/// [`DmError::TooLarge`] only for inputs beyond the cipher's limit (256 GiB).
pub fn aead_seal(
    key: &[u8; AEAD_KEY_LEN],
    nonce: &[u8; AEAD_NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, DmError> {
    ChaCha20Poly1305::new(&(*key).into())
        .encrypt(&(*nonce).into(), Payload { msg: plaintext, aad })
        .map_err(|_| DmError::TooLarge {
            len: plaintext.len(),
            max: (u32::MAX as usize).saturating_mul(64),
        })
}

/// ChaCha20-Poly1305 (RFC 8439) decryption of a ciphertext followed by its 16-byte tag.
///
/// # Errors
/// [`DmError::Decrypt`] when the tag does not verify (or the input is shorter than a tag).
pub fn aead_open(
    key: &[u8; AEAD_KEY_LEN],
    nonce: &[u8; AEAD_NONCE_LEN],
    aad: &[u8],
    ciphertext_with_tag: &[u8],
) -> Result<Vec<u8>, DmError> {
    ChaCha20Poly1305::new(&(*key).into())
        .decrypt(&(*nonce).into(), Payload { msg: ciphertext_with_tag, aad })
        .map_err(|_| DmError::Decrypt)
}

/// HKDF-SHA256 (RFC 5869), extract then expand into `out`. An empty salt is the same as no
/// salt (a block of zeros), as the RFC specifies.
///
/// # Errors
/// [`DmError::TooLarge`] when `out` is longer than [`MAX_HKDF_SHA256_BYTES`].
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), DmError> {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|_| DmError::TooLarge { len: out.len(), max: MAX_HKDF_SHA256_BYTES })
}
