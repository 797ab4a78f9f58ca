//! The sealed-sender layer of a deposit: what a sender hands a mailbox hides who sent it.
//!
//! A `/kith/dm/2` request ([`crate::olm::envelope::Dm2Request`]) names the sending device
//! in the clear and carries the sender's follow record, so it is not deposited as it is.
//! It is sealed once more to the recipient's person: a fresh ephemeral X25519 key, an
//! X25519 agreement with the X25519 form of the recipient's identity key, HKDF-SHA256 to
//! a one-time ChaCha20-Poly1305 key, and inside, padded to a multiple of
//! [`crate::limits::DM_PAD_BLOCK`] bytes, the sender's id followed by the request.
//!
//! ```text
//! deposited = version (1) || ephemeral X25519 public key (32) || ciphertext with tag
//! key       = HKDF-SHA256(salt = ephemeral || recipient id, ikm = X25519(e, R), info = DOMAIN)
//! aad       = version || ephemeral || recipient id
//! plaintext = u32 LE n || sender id (32) || Dm2Request bytes || zeros (to a multiple of 256)
//! ```
//!
//! The sender id inside is only a claim at this layer (anyone can seal to anyone): the
//! Olm message in the request proves it, since the receiver opens it with the session of
//! the certified device of that person and checks the inner head names them.
//!
//! ```
//! use kith_protocol::{identity::Keypair, mailbox::sealed};
//!
//! let (alice, bob) = (Keypair::from_secret_bytes(&[1; 32]), Keypair::from_secret_bytes(&[2; 32]));
//! let blob = sealed::seal(&bob.id(), &alice.id(), b"a dm/2 request").unwrap();
//! let opened = sealed::open(&bob, &blob).unwrap();
//! assert_eq!((opened.sender, opened.request.as_slice()), (alice.id(), &b"a dm/2 request"[..]));
//! ```

use zeroize::Zeroizing;

use super::{MailboxError, MAX_HELD_ENVELOPE_BYTES};
use crate::{
    dm::{
        aead_open, aead_seal, hkdf_sha256, pad_body, unpad_body, x25519_agree, AEAD_KEY_LEN,
        AEAD_NONCE_LEN, AEAD_TAG_LEN,
    },
    identity::{AuthorId, Keypair, X25519_KEY_LEN},
};

/// The version byte of the format described here. Others are refused.
pub const SEALED_DEPOSIT_VERSION: u8 = 1;
/// The HKDF info of the key.
const DOMAIN: &[u8] = b"kith-mailbox-sealed-sender/1";
/// Bytes of a deposit that are not ciphertext: version, ephemeral key, tag.
pub const SEALED_DEPOSIT_OVERHEAD: usize = 1 + X25519_KEY_LEN + AEAD_TAG_LEN;
/// The largest padded plaintext: what fits a held envelope.
const MAX_PADDED: usize = (MAX_HELD_ENVELOPE_BYTES - SEALED_DEPOSIT_OVERHEAD) / 256 * 256;
/// The nonce: every deposit has its own key, used once.
const ZERO_NONCE: [u8; AEAD_NONCE_LEN] = [0; AEAD_NONCE_LEN];

/// A deposit opened by its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Who sealed it (a claim until the request inside opens).
    pub sender: AuthorId,
    /// The `/kith/dm/2` request's bytes.
    pub request: Vec<u8>,
}

fn sealing(what: &'static str) -> MailboxError {
    MailboxError::Sealed(what)
}

/// The one-time key and the associated data of a deposit.
fn key_and_aad(
    ikm: &[u8; X25519_KEY_LEN],
    ephemeral: &[u8; X25519_KEY_LEN],
    recipient: &AuthorId,
) -> Result<(Zeroizing<[u8; AEAD_KEY_LEN]>, Vec<u8>), MailboxError> {
    let salt = [&ephemeral[..], recipient.as_bytes()].concat();
    let mut key = Zeroizing::new([0u8; AEAD_KEY_LEN]);
    hkdf_sha256(&salt, ikm, DOMAIN, key.as_mut()).map_err(|_| sealing("key derivation"))?;
    let aad = [&[SEALED_DEPOSIT_VERSION][..], ephemeral, recipient.as_bytes()].concat();
    Ok((key, aad))
}

/// Seals `request` from `sender` for `recipient`.
///
/// # Errors
/// [`MailboxError::Sealed`]: the recipient's id has no X25519 form, the random source
/// failed, or the request does not fit a held envelope.
pub fn seal(
    recipient: &AuthorId,
    sender: &AuthorId,
    request: &[u8],
) -> Result<Vec<u8>, MailboxError> {
    let their = recipient.to_x25519().map_err(|_| sealing("recipient key"))?;
    let mut secret = Zeroizing::new([0u8; X25519_KEY_LEN]);
    getrandom::fill(secret.as_mut()).map_err(|_| sealing("random source"))?;
    let ephemeral = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret));
    let ephemeral = ephemeral.to_bytes();
    let shared = Zeroizing::new(x25519_agree(&secret, &their).map_err(|_| sealing("agreement"))?);
    let (key, aad) = key_and_aad(&shared, &ephemeral, recipient)?;
    let body = Zeroizing::new([sender.as_bytes(), request].concat());
    let padded = pad_body(&body, MAX_PADDED).map_err(|_| sealing("request too large"))?;
    let ciphertext =
        aead_seal(&key, &ZERO_NONCE, &aad, &padded).map_err(|_| sealing("encryption"))?;
    Ok([&[SEALED_DEPOSIT_VERSION][..], &ephemeral, &ciphertext].concat())
}

/// Opens a deposit sealed for `recipient`.
///
/// # Errors
/// [`MailboxError::Sealed`]: another version, too short or too long, not for this
/// recipient or changed (the tag does not verify), bad padding.
pub fn open(recipient: &Keypair, blob: &[u8]) -> Result<Opened, MailboxError> {
    if blob.len() > MAX_HELD_ENVELOPE_BYTES {
        return Err(sealing("deposit too large"));
    }
    let (version, rest) = blob.split_first().ok_or_else(|| sealing("empty deposit"))?;
    if *version != SEALED_DEPOSIT_VERSION {
        return Err(sealing("unknown deposit version"));
    }
    let ephemeral: [u8; X25519_KEY_LEN] = rest
        .get(..X25519_KEY_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| sealing("deposit too short"))?;
    let ciphertext = rest.get(X25519_KEY_LEN..).unwrap_or_default();
    let shared = Zeroizing::new(
        x25519_agree(&recipient.x25519_secret(), &ephemeral).map_err(|_| sealing("agreement"))?,
    );
    let (key, aad) = key_and_aad(&shared, &ephemeral, &recipient.id())?;
    let padded = Zeroizing::new(
        aead_open(&key, &ZERO_NONCE, &aad, ciphertext).map_err(|_| sealing("does not open"))?,
    );
    let body = unpad_body(&padded).map_err(|_| sealing("padding"))?;
    let sender: [u8; 32] =
        body.get(..32).and_then(|b| b.try_into().ok()).ok_or_else(|| sealing("no sender"))?;
    let sender = AuthorId::from_bytes(sender).map_err(|_| sealing("sender id"))?;
    let request = body.get(32..).unwrap_or_default().to_vec();
    Ok(Opened { sender, request })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> Keypair {
        Keypair::from_secret_bytes(&[n; 32])
    }

    /// Whether `needle` occurs in `haystack`.
    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_deposit_hides_the_sender_and_the_request_and_opens_for_its_recipient_only() {
        let (alice, bob, carol) = (keys(1), keys(2), keys(3));
        let request = b"the plaintext of a dm/2 request, secret words".to_vec();
        let blob = seal(&bob.id(), &alice.id(), &request).unwrap();
        assert!(!contains(&blob, alice.id().as_bytes()));
        assert!(!contains(&blob, alice.id().to_string().as_bytes()));
        assert!(!contains(&blob, b"secret words"));
        // Padded: the length says little.
        assert_eq!((blob.len() - SEALED_DEPOSIT_OVERHEAD) % 256, 0);
        let opened = open(&bob, &blob).unwrap();
        assert_eq!((opened.sender, opened.request), (alice.id(), request.clone()));
        assert!(open(&carol, &blob).is_err());
        // Two seals of the same request differ (a fresh key each).
        assert_ne!(seal(&bob.id(), &alice.id(), &request).unwrap(), blob);
    }

    #[test]
    fn changed_short_and_foreign_deposits_are_refused() {
        let (alice, bob) = (keys(1), keys(2));
        let blob = seal(&bob.id(), &alice.id(), b"request").unwrap();
        for at in [0, 1, 40, blob.len() - 1] {
            let mut changed = blob.clone();
            changed[at] ^= 1;
            assert!(open(&bob, &changed).is_err(), "byte {at}");
        }
        for len in [0, 1, 33, 48] {
            assert!(open(&bob, &blob[..len]).is_err());
        }
        assert!(open(&bob, &vec![1u8; MAX_HELD_ENVELOPE_BYTES + 1]).is_err());
        // The largest request that fits, and one that does not.
        let most = vec![0u8; MAX_PADDED - 4 - 32];
        let sealed = seal(&bob.id(), &alice.id(), &most).unwrap();
        assert!(sealed.len() <= MAX_HELD_ENVELOPE_BYTES);
        assert_eq!(open(&bob, &sealed).unwrap().request, most);
        assert!(seal(&bob.id(), &alice.id(), &vec![0u8; MAX_PADDED]).is_err());
    }
}
