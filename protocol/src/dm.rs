//! Direct messages: end-to-end encrypted ("sealed") messages between two people.
//!
//! A [`Plain`] message is sealed by its sender for one recipient with [`Sealed::seal`] and
//! opened by the recipient with [`Sealed::open`]. The keys are the X25519 forms of the two
//! people's ed25519 identity keys, so knowing someone's id is enough to write to them. Each
//! message gets a fresh ephemeral X25519 key; the message key is derived with HKDF-SHA256
//! from two Diffie-Hellman results (ephemeral-static and static-static, the DH set of the
//! Noise `X` one-way pattern), and the padded plaintext is encrypted with
//! ChaCha20-Poly1305 under that key, with the cleartext header as associated data. Opening
//! authenticates the sender: only the holder of the sender's secret key (or the
//! recipient) can make a message that opens. See "Direct messages" in `docs/protocol.md`
//! for the exact construction and byte layout.
//!
//! On `/kith/dm/1` the sender sends a [`DmRequest`] (the sealed message and, optionally,
//! the sender's follow record) and the receiver answers with a [`DmReply`].
//!
//! ```
//! use kith_protocol::{dm::{MessageId, Plain, Sealed}, identity::Keypair};
//!
//! let alice = Keypair::from_secret_bytes(&[1; 32]);
//! let bob = Keypair::from_secret_bytes(&[2; 32]);
//! let plain = Plain {
//!     id: MessageId::generate().unwrap(),
//!     timestamp: 1_700_000_000_000,
//!     text: "hi bob".into(),
//!     attachments: vec![],
//! };
//! let bytes = Sealed::seal(&alice, &bob.id(), &plain).unwrap().to_bytes().unwrap();
//!
//! let received = Sealed::from_bytes(&bytes).unwrap();
//! assert_eq!(received.sender, alice.id());
//! assert_eq!(received.open(&bob).unwrap(), plain);
//! ```

use std::fmt;

use bincode::{Decode, Encode};
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::{
    attachment::{SealedAttachment, MAX_SEALED_ATTACHMENT_BYTES},
    codec::{self, CodecError},
    identity::{AuthorId, Keypair, X25519_KEY_LEN},
    limits::{
        DM_PAD_BLOCK, MAX_ATTACHMENTS, MAX_DM_REASON_BYTES, MAX_DM_REPLY_BYTES,
        MAX_DM_REQUEST_BYTES, MAX_DM_TEXT_BYTES, MAX_RECORD_BYTES, MAX_SEALED_BYTES,
    },
    random_id::random_id,
};

/// The libp2p protocol name of the direct message exchange.
pub const DM_PROTOCOL: &str = "/kith/dm/1";

/// The version byte of the sealed message format described here. Others are refused.
pub const SEALED_VERSION: u8 = 1;

/// The HKDF salt for message keys; it names the protocol and version.
pub const DM_KDF_SALT: &[u8] = b"kith-dm/1";

/// Length of a message id.
pub const MESSAGE_ID_LEN: usize = 16;

/// Length of a ChaCha20-Poly1305 key.
pub const AEAD_KEY_LEN: usize = 32;

/// Length of a ChaCha20-Poly1305 nonce.
pub const AEAD_NONCE_LEN: usize = 12;

/// Length of a ChaCha20-Poly1305 authentication tag.
pub const AEAD_TAG_LEN: usize = 16;

/// Length of the cleartext header of a sealed message (version, sender, recipient,
/// ephemeral key), which is also the AEAD's associated data.
pub const SEALED_HEADER_LEN: usize = 1 + 32 + 32 + X25519_KEY_LEN;

/// Bytes of the padded plaintext that are not text: the `u32` length prefix, then the
/// encoded id (16), timestamp (8) and text length (8).
pub const PLAIN_OVERHEAD: usize = 4 + MESSAGE_ID_LEN + 8 + 8;

/// Bytes of an encoded sealed message that are not padded plaintext: the header, the
/// ciphertext's `u64` length and the tag.
pub const SEALED_OVERHEAD: usize = SEALED_HEADER_LEN + 8 + AEAD_TAG_LEN;

/// The longest HKDF-SHA256 output (RFC 5869: 255 hash lengths).
pub const MAX_HKDF_SHA256_BYTES: usize = 255 * 32;

/// The nonce of every message: each message has its own key, used exactly once.
const ZERO_NONCE: [u8; AEAD_NONCE_LEN] = [0; AEAD_NONCE_LEN];

/// Size of the padded plaintext for a text of `text_bytes` bytes: [`PLAIN_OVERHEAD`] plus
/// the text, rounded up to a multiple of [`DM_PAD_BLOCK`].
pub const fn padded_len(text_bytes: usize) -> usize {
    (PLAIN_OVERHEAD + text_bytes).div_ceil(DM_PAD_BLOCK) * DM_PAD_BLOCK
}

/// The largest padded plaintext: that of a [`MAX_DM_TEXT_BYTES`] text with
/// [`MAX_ATTACHMENTS`] of the largest attachments (the list's length, then each).
pub(crate) const MAX_PADDED_BYTES: usize =
    padded_len(MAX_DM_TEXT_BYTES + 8 + MAX_ATTACHMENTS * MAX_SEALED_ATTACHMENT_BYTES);

// Every message kith can seal fits the wire limit.
const _: () = assert!(SEALED_OVERHEAD + MAX_PADDED_BYTES <= MAX_SEALED_BYTES);
// A largest sealed message and a largest record fit in one request.
const _: () = assert!(MAX_SEALED_BYTES + 1 + 8 + MAX_RECORD_BYTES <= MAX_DM_REQUEST_BYTES);
// The largest reply: variant (4), Some + id (17), reason length (8) and reason.
const _: () = assert!(4 + 1 + MESSAGE_ID_LEN + 8 + MAX_DM_REASON_BYTES <= MAX_DM_REPLY_BYTES);

/// Why a direct message could not be sealed, encoded, decoded or opened.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DmError {
    /// The input (or output) is larger than its limit; nothing was decoded.
    #[error("{len} bytes exceed the limit of {max} bytes")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit that applied.
        max: usize,
    },
    /// Not a canonical encoding of the expected type.
    #[error("undecodable: {0}")]
    Codec(#[from] CodecError),
    /// The message is sealed for someone else.
    #[error("sealed for another recipient")]
    WrongRecipient,
    /// A key is not usable: not a curve point, of small order, or a Diffie-Hellman result
    /// is all zeros (a low-order public key).
    #[error("invalid or low-order key")]
    BadKey,
    /// Authentication failed: the message was tampered with, is not for this key, or was
    /// not made by the claimed sender.
    #[error("decryption failed (tampered, wrong key or forged sender)")]
    Decrypt,
    /// The message is well encoded but not well formed (unknown version, ciphertext or
    /// padding of the wrong shape, over-long reason).
    #[error("malformed direct message: {0}")]
    Malformed(String),
    /// [`PairKeys`] given for another pair of people than the message's.
    #[error("keys of another pair of people")]
    WrongKeys,
    /// The text is longer than [`MAX_DM_TEXT_BYTES`].
    #[error("text of {len} bytes exceeds the limit of {max} bytes")]
    TextTooLong {
        /// The text's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(getrandom::Error),
}

random_id!(
    /// A direct message's id, chosen at random by the sender. Shown as 32 lower-case hex
    /// digits.
    MessageId,
    MessageIdError,
    MESSAGE_ID_LEN,
    "a message id"
);

/// The content of a direct message, as written and as read.
///
/// Encoded as its id, timestamp and text, followed, only when there are attachments, by
/// the attachment list: a message without attachments has the encoding it had before
/// attachments existed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plain {
    /// The message's id (the receiver drops ids it has already seen).
    pub id: MessageId,
    /// When it was written, ms since the Unix epoch (the sender's clock).
    pub timestamp: u64,
    /// The text, at most [`MAX_DM_TEXT_BYTES`] bytes.
    pub text: String,
    /// Attached files, at most [`MAX_ATTACHMENTS`].
    pub attachments: Vec<SealedAttachment>,
}

impl bincode::Encode for Plain {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.id.encode(encoder)?;
        self.timestamp.encode(encoder)?;
        self.text.encode(encoder)?;
        if !self.attachments.is_empty() {
            self.attachments.encode(encoder)?;
        }
        Ok(())
    }
}

/// The fields every [`Plain`] starts with.
#[derive(Decode, Encode)]
struct PlainHead {
    id: MessageId,
    timestamp: u64,
    text: String,
}

impl Plain {
    /// Checks the limits: text length, attachment count, each attachment.
    pub(crate) fn check(&self) -> Result<(), DmError> {
        let len = self.text.len();
        if len > MAX_DM_TEXT_BYTES {
            return Err(DmError::TextTooLong { len, max: MAX_DM_TEXT_BYTES });
        }
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(DmError::Malformed(format!("more than {MAX_ATTACHMENTS} attachments")));
        }
        for attachment in &self.attachments {
            attachment.check().map_err(|e| DmError::Malformed(format!("attachment: {e}")))?;
        }
        Ok(())
    }

    /// Decodes a plaintext body: the head, then an attachment list if bytes remain.
    pub(crate) fn decode_body(body: &[u8]) -> Result<Self, DmError> {
        let (head, used) = codec::decode_prefix::<PlainHead, MAX_PADDED_BYTES>(body)?;
        let rest = body.get(used..).unwrap_or_default();
        let attachments: Vec<SealedAttachment> =
            if rest.is_empty() { Vec::new() } else { codec::decode::<_, MAX_PADDED_BYTES>(rest)? };
        if !rest.is_empty() && attachments.is_empty() {
            return Err(CodecError::NonCanonical.into());
        }
        Ok(Self { id: head.id, timestamp: head.timestamp, text: head.text, attachments })
    }
}

/// A sealed direct message, as it travels. The header fields are in the clear and
/// authenticated; only [`Sealed::open`] with the recipient's key pair reveals the content
/// and proves that `sender` made it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Sealed {
    /// The format version, [`SEALED_VERSION`].
    pub version: u8,
    /// Who sealed it (claimed until [`Sealed::open`] succeeds).
    pub sender: AuthorId,
    /// Who can open it.
    pub recipient: AuthorId,
    /// The sender's one-time X25519 public key for this message.
    pub ephemeral: [u8; X25519_KEY_LEN],
    /// The ChaCha20-Poly1305 ciphertext of the padded plaintext, tag included.
    pub ciphertext: Vec<u8>,
}

/// The cleartext header; its encoding is the AEAD's associated data.
#[derive(Encode)]
struct Header {
    version: u8,
    sender: AuthorId,
    recipient: AuthorId,
    ephemeral: [u8; X25519_KEY_LEN],
}

impl Sealed {
    /// Seals `plain` from `sender` for `recipient`, with a fresh ephemeral key.
    ///
    /// # Errors
    /// [`DmError::TextTooLong`]; [`DmError::BadKey`] if `recipient` is not a usable key;
    /// [`DmError::Random`] if the OS random source fails.
    pub fn seal(sender: &Keypair, recipient: &AuthorId, plain: &Plain) -> Result<Self, DmError> {
        let mut ephemeral = Zeroizing::new([0u8; X25519_KEY_LEN]);
        getrandom::fill(ephemeral.as_mut()).map_err(DmError::Random)?;
        seal_with_ephemeral(sender, recipient, plain, *ephemeral)
    }

    /// [`Sealed::seal`] with the pair's keys already computed ([`PairKeys`] of `sender`
    /// and the recipient): one X25519 agreement instead of two, and no key conversion.
    /// The message is sealed exactly as [`Sealed::seal`] would seal it.
    ///
    /// # Errors
    /// [`DmError::TextTooLong`]; [`DmError::WrongKeys`] if `keys` are not `sender`'s;
    /// [`DmError::Random`] if the OS random source fails.
    pub fn seal_with(sender: &Keypair, keys: &PairKeys, plain: &Plain) -> Result<Self, DmError> {
        let padded = pad(plain)?;
        if keys.me != sender.id() {
            return Err(DmError::WrongKeys);
        }
        let mut ephemeral = Zeroizing::new([0u8; X25519_KEY_LEN]);
        getrandom::fill(ephemeral.as_mut()).map_err(DmError::Random)?;
        seal_padded(sender, keys, &padded, ephemeral)
    }

    /// Seals `body` (any bytes, at most the largest padded plaintext less its length
    /// prefix) from `sender` for the other person of `keys`, exactly as a message is
    /// sealed; the receiver opens it with [`Sealed::open_body_with`]. Used for what is
    /// not a [`Plain`] message (a group's control messages, `docs/protocol.md` 20.6):
    /// the caller puts its own domain prefix in `body`.
    ///
    /// # Errors
    /// [`DmError::TooLarge`]; [`DmError::WrongKeys`]; [`DmError::Random`].
    pub fn seal_body_with(sender: &Keypair, keys: &PairKeys, body: &[u8]) -> Result<Self, DmError> {
        let padded = pad_body(body, MAX_PADDED_BYTES)?;
        if keys.me != sender.id() {
            return Err(DmError::WrongKeys);
        }
        let mut ephemeral = Zeroizing::new([0u8; X25519_KEY_LEN]);
        getrandom::fill(ephemeral.as_mut()).map_err(DmError::Random)?;
        seal_padded(sender, keys, &padded, ephemeral)
    }

    /// Opens what [`Sealed::seal_body_with`] sealed, authenticating the sender: the
    /// body's bytes.
    ///
    /// # Errors
    /// As [`Sealed::open_with`], except that the body is not decoded.
    pub fn open_body_with(
        &self,
        recipient: &Keypair,
        keys: &PairKeys,
    ) -> Result<Zeroizing<Vec<u8>>, DmError> {
        self.check_keys(recipient, keys)?;
        let padded = self.open_padded(recipient, keys)?;
        Ok(Zeroizing::new(unpad_body(&padded)?.to_vec()))
    }

    /// Opens a message sealed for `recipient`, authenticating the sender.
    ///
    /// # Errors
    /// [`DmError::Malformed`] for an unknown version or a ciphertext of the wrong shape;
    /// [`DmError::WrongRecipient`] if the message names someone else;
    /// [`DmError::BadKey`] if the sender or ephemeral key is unusable (low order);
    /// [`DmError::Decrypt`] if it was tampered with or not made by `sender`; then
    /// [`DmError::Malformed`], [`DmError::Codec`] or [`DmError::TextTooLong`] if the
    /// decrypted plaintext is not well formed.
    pub fn open(&self, recipient: &Keypair) -> Result<Plain, DmError> {
        self.check_shape()?;
        if self.recipient != recipient.id() {
            return Err(DmError::WrongRecipient);
        }
        let keys = PairKeys::new(recipient, &self.sender)?;
        self.open_checked(recipient, &keys)
    }

    /// [`Sealed::open`] with the pair's keys already computed ([`PairKeys`] of the
    /// recipient and this message's sender): one X25519 agreement instead of two, and no
    /// key conversion. The result is the same as [`Sealed::open`]'s.
    ///
    /// # Errors
    /// As [`Sealed::open`]; [`DmError::WrongKeys`] if `keys` are not those of
    /// `recipient` and this message's sender.
    pub fn open_with(&self, recipient: &Keypair, keys: &PairKeys) -> Result<Plain, DmError> {
        self.check_keys(recipient, keys)?;
        self.open_checked(recipient, keys)
    }

    /// The checks before opening with given keys: shape, recipient, keys.
    fn check_keys(&self, recipient: &Keypair, keys: &PairKeys) -> Result<(), DmError> {
        self.check_shape()?;
        if self.recipient != recipient.id() {
            return Err(DmError::WrongRecipient);
        }
        if keys.me != self.recipient || keys.peer != self.sender {
            return Err(DmError::WrongKeys);
        }
        Ok(())
    }

    /// Opening, once the shape, the recipient and the keys are known to fit.
    fn open_checked(&self, recipient: &Keypair, keys: &PairKeys) -> Result<Plain, DmError> {
        unpad(&self.open_padded(recipient, keys)?)
    }

    /// The padded plaintext, decrypted and authenticated.
    fn open_padded(
        &self,
        recipient: &Keypair,
        keys: &PairKeys,
    ) -> Result<Zeroizing<Vec<u8>>, DmError> {
        let secret = recipient.x25519_secret();
        let es = Zeroizing::new(x25519_agree(&secret, &self.ephemeral)?);
        let header = self.header();
        let key = message_key(&es, &keys.ss, &header)?;
        let aad = codec::encode(&header)?;
        Ok(Zeroizing::new(aead_open(&key, &ZERO_NONCE, &aad, &self.ciphertext)?))
    }

    /// The canonical encoding.
    ///
    /// # Errors
    /// [`DmError::TooLarge`] over [`MAX_SEALED_BYTES`] (never for a message made by
    /// [`Sealed::seal`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, DmError> {
        encode_within(self, MAX_SEALED_BYTES)
    }

    /// Decodes a sealed message from outside: size first, then canonical decoding, then the
    /// version and the ciphertext's shape. Nothing is decrypted.
    ///
    /// # Errors
    /// [`DmError::TooLarge`] before decoding, [`DmError::Codec`], [`DmError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DmError> {
        let sealed: Self = decode_within::<_, MAX_SEALED_BYTES>(bytes)?;
        sealed.check_shape()?;
        Ok(sealed)
    }

    /// Refuses unknown versions and ciphertexts that cannot hold a padded plaintext.
    fn check_shape(&self) -> Result<(), DmError> {
        if self.version != SEALED_VERSION {
            return Err(DmError::Malformed(format!("unknown version {}", self.version)));
        }
        let len = self.ciphertext.len();
        let padded = len.saturating_sub(AEAD_TAG_LEN);
        if padded == 0 || !padded.is_multiple_of(DM_PAD_BLOCK) || padded > MAX_PADDED_BYTES {
            return Err(DmError::Malformed(format!(
                "ciphertext of {len} bytes is not a padded plaintext plus tag"
            )));
        }
        Ok(())
    }

    fn header(&self) -> Header {
        Header {
            version: self.version,
            sender: self.sender,
            recipient: self.recipient,
            ephemeral: self.ephemeral,
        }
    }
}

/// [`Sealed::seal`] with a caller-chosen ephemeral secret, for test vectors only. Reusing an
/// ephemeral secret for two messages between the same people reuses the message key and
/// nonce, which destroys confidentiality: never call this with anything but fresh random
/// bytes outside tests.
///
/// # Errors
/// As [`Sealed::seal`], except [`DmError::Random`].
#[doc(hidden)]
pub fn seal_with_ephemeral(
    sender: &Keypair,
    recipient: &AuthorId,
    plain: &Plain,
    ephemeral_secret: [u8; X25519_KEY_LEN],
) -> Result<Sealed, DmError> {
    let ephemeral_secret = Zeroizing::new(ephemeral_secret);
    let padded = pad(plain)?;
    let keys = PairKeys::new(sender, recipient)?;
    seal_padded(sender, &keys, &padded, ephemeral_secret)
}

/// Sealing, once the plaintext is padded and the keys are known to be the sender's.
fn seal_padded(
    sender: &Keypair,
    keys: &PairKeys,
    padded: &[u8],
    ephemeral_secret: Zeroizing<[u8; X25519_KEY_LEN]>,
) -> Result<Sealed, DmError> {
    let ephemeral = PublicKey::from(&StaticSecret::from(*ephemeral_secret)).to_bytes();
    let es = Zeroizing::new(x25519_agree(&ephemeral_secret, &keys.peer_x25519)?);
    let header =
        Header { version: SEALED_VERSION, sender: sender.id(), recipient: keys.peer, ephemeral };
    let key = message_key(&es, &keys.ss, &header)?;
    let aad = codec::encode(&header)?;
    let ciphertext = aead_seal(&key, &ZERO_NONCE, &aad, padded)?;
    Ok(Sealed {
        version: SEALED_VERSION,
        sender: header.sender,
        recipient: header.recipient,
        ephemeral,
        ciphertext,
    })
}

/// What every message between two people shares, whichever way it goes: the other
/// person's X25519 key (converted from their id) and the static-static X25519 result.
/// Computing them is half the cost of sealing or opening a message, so a node that
/// writes to someone often keeps theirs ([`Sealed::seal_with`], [`Sealed::open_with`]).
/// The secret part is zeroized on drop and never printed.
pub struct PairKeys {
    me: AuthorId,
    peer: AuthorId,
    peer_x25519: [u8; X25519_KEY_LEN],
    ss: Zeroizing<[u8; X25519_KEY_LEN]>,
}

impl PairKeys {
    /// The keys for messages between `me` and `peer`.
    ///
    /// # Errors
    /// [`DmError::BadKey`] if `peer` is not a usable key (not a point, or of small order).
    pub fn new(me: &Keypair, peer: &AuthorId) -> Result<Self, DmError> {
        let peer_x25519 = peer.to_x25519().map_err(|_| DmError::BadKey)?;
        let ss = Zeroizing::new(x25519_agree(&me.x25519_secret(), &peer_x25519)?);
        Ok(Self { me: me.id(), peer: *peer, peer_x25519, ss })
    }

    /// The other person.
    pub fn peer(&self) -> &AuthorId {
        &self.peer
    }
}

impl fmt::Debug for PairKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairKeys").field("me", &self.me).field("peer", &self.peer).finish()
    }
}

/// The message key: HKDF-SHA256 with salt [`DM_KDF_SALT`], input `es || ss` and info
/// `ephemeral || sender || recipient` (the raw header keys, ed25519 form for the people).
fn message_key(
    es: &[u8; X25519_KEY_LEN],
    ss: &[u8; X25519_KEY_LEN],
    header: &Header,
) -> Result<Zeroizing<[u8; AEAD_KEY_LEN]>, DmError> {
    let mut ikm = Zeroizing::new([0u8; 2 * X25519_KEY_LEN]);
    let (first, second) = ikm.split_at_mut(X25519_KEY_LEN);
    first.copy_from_slice(es);
    second.copy_from_slice(ss);
    let info = [
        header.ephemeral.as_slice(),
        header.sender.as_bytes().as_slice(),
        header.recipient.as_bytes().as_slice(),
    ]
    .concat();
    let mut key = Zeroizing::new([0u8; AEAD_KEY_LEN]);
    hkdf_sha256(DM_KDF_SALT, ikm.as_slice(), &info, key.as_mut())?;
    Ok(key)
}

mod pad;
mod primitives;
mod wire;

/// Encodes `value`, refusing an encoding longer than `max` bytes.
fn encode_within<T: Encode>(value: &T, max: usize) -> Result<Vec<u8>, DmError> {
    let bytes = codec::encode(value)?;
    if bytes.len() > max {
        return Err(DmError::TooLarge { len: bytes.len(), max });
    }
    Ok(bytes)
}

/// Decodes bytes from outside: the size before anything else (as [`DmError::TooLarge`]),
/// then canonical decoding.
fn decode_within<T: Decode<()> + Encode, const MAX: usize>(bytes: &[u8]) -> Result<T, DmError> {
    if bytes.len() > MAX {
        return Err(DmError::TooLarge { len: bytes.len(), max: MAX });
    }
    Ok(codec::decode::<_, MAX>(bytes)?)
}

use pad::{pad, unpad};
pub(crate) use pad::{pad_body, unpad_body};
pub use primitives::{aead_open, aead_seal, hkdf_sha256, x25519_agree};
pub(crate) use wire::check_follow_proof;
pub use wire::{DmReply, DmRequest};

#[cfg(test)]
mod tests;
