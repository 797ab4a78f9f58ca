//! The `/kith/dm/2` envelope and exchange.
//!
//! An [`Envelope`] names the sending and receiving devices in the clear (the receiving
//! node needs them to pick the certificate and the session) and carries one Olm message,
//! a pre-key message while the session is new, a normal message after. The Olm plaintext
//! is the [`InnerHead`] (the sender's person and both device ids, so the cleartext ids are
//! bound to the encrypted content and the sender's identity travels only inside), one byte
//! of kind and that kind's body ([`super::inner::Inner`]: a [`crate::dm::Plain`] message,
//! a delivery receipt...), length-prefixed and padded with zeros to a multiple of
//! [`crate::limits::DM_PAD_BLOCK`] bytes, exactly as in `/kith/dm/1`.

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};
use vodozemac::olm::OlmMessage;

use super::{
    device::{decode_within, encode_within, DeviceId},
    prekey::SignedPrekey,
    OlmError,
};
use crate::{
    codec,
    dm::{check_follow_proof, DmReply, MAX_PADDED_BYTES},
    identity::AuthorId,
    limits::{DM_PAD_BLOCK, MAX_DM_REPLY_BYTES, MAX_DM_REQUEST_BYTES, MAX_ENVELOPE_BYTES},
};

/// The version byte of the envelope format described here. Others are refused.
pub const ENVELOPE_VERSION: u8 = 2;

/// Bytes of an encoded envelope that are not the Olm message: version (1), two device
/// ids (32), the message kind (4) and the Olm message's length (8).
pub const ENVELOPE_OVERHEAD: usize = 1 + 32 + 4 + 8;

/// Length of the encoded [`InnerHead`].
pub const INNER_HEAD_LEN: usize = 32 + 16 + 16;

/// The largest padded Olm plaintext: the inner head, the inner kind and the largest
/// `/kith/dm/1` plaintext body, padded.
pub const MAX_INNER_PADDED_BYTES: usize =
    (MAX_PADDED_BYTES + INNER_HEAD_LEN + super::inner::INNER_KIND_LEN).div_ceil(DM_PAD_BLOCK)
        * DM_PAD_BLOCK;

/// The largest Olm message kith accepts: the padded plaintext, one block of AES-CBC
/// padding, and Olm's framing (at most 57 bytes for a normal message, 108 more for a
/// pre-key message), with room to spare.
pub const MAX_OLM_BYTES: usize = MAX_INNER_PADDED_BYTES + 16 + 512;

const _: () = assert!(ENVELOPE_OVERHEAD + MAX_OLM_BYTES <= MAX_ENVELOPE_BYTES);
// A largest envelope and a largest record fit in one request.
const _: () = assert!(
    4 + MAX_ENVELOPE_BYTES + 1 + 8 + crate::limits::MAX_RECORD_BYTES <= MAX_DM_REQUEST_BYTES
);

/// Which Olm message an envelope carries. The variant order is part of the wire format
/// (and is Olm's own message type number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum OlmKind {
    /// A pre-key message: the first messages of a session, until the sender has read a
    /// reply; it carries what the receiver needs to create the session.
    PreKey,
    /// A normal message of an established session.
    Normal,
}

/// A `/kith/dm/2` message as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Envelope {
    /// The format version, [`ENVELOPE_VERSION`].
    pub version: u8,
    /// The sending device (claimed until the message opens with its certificate).
    pub sender_device: DeviceId,
    /// The device that can open it.
    pub recipient_device: DeviceId,
    /// Pre-key or normal.
    pub kind: OlmKind,
    /// The Olm message, in Olm's own encoding (version byte, protobuf fields, MAC).
    pub olm: Vec<u8>,
}

impl Envelope {
    /// The canonical encoding.
    ///
    /// # Errors
    /// [`OlmError::TooLarge`] over [`MAX_ENVELOPE_BYTES`] (never for an envelope made by
    /// [`crate::olm::account::Device::seal`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, OlmError> {
        encode_within(self, MAX_ENVELOPE_BYTES)
    }

    /// Decodes an envelope from outside: size first, then canonical decoding, then
    /// [`Envelope::check_shape`]. Nothing is decrypted.
    ///
    /// # Errors
    /// [`OlmError::TooLarge`] before decoding, [`OlmError::Codec`], [`OlmError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OlmError> {
        let envelope: Self = decode_within::<_, MAX_ENVELOPE_BYTES>(bytes)?;
        envelope.check_shape()?;
        Ok(envelope)
    }

    /// Refuses an unknown version, an Olm message over [`MAX_OLM_BYTES`], and one that is
    /// not a well-formed Olm message of its kind in Olm's canonical encoding.
    ///
    /// # Errors
    /// [`OlmError::Malformed`].
    pub fn check_shape(&self) -> Result<(), OlmError> {
        if self.version != ENVELOPE_VERSION {
            return Err(OlmError::Malformed(format!("unknown envelope version {}", self.version)));
        }
        if self.olm.len() > MAX_OLM_BYTES {
            return Err(OlmError::Malformed(format!(
                "Olm message of {} bytes exceeds {MAX_OLM_BYTES}",
                self.olm.len()
            )));
        }
        self.olm_message().map(drop)
    }

    /// The Olm message, decoded; its re-encoding must be the bytes carried.
    pub(crate) fn olm_message(&self) -> Result<OlmMessage, OlmError> {
        let kind = match self.kind {
            OlmKind::PreKey => 0,
            OlmKind::Normal => 1,
        };
        let message = OlmMessage::from_parts(kind, &self.olm)
            .map_err(|e| OlmError::Malformed(format!("Olm message: {e}")))?;
        if message.to_parts().1 != self.olm {
            return Err(OlmError::Malformed("Olm message not in its canonical encoding".into()));
        }
        let keys = match &message {
            OlmMessage::PreKey(m) => {
                vec![m.one_time_key(), m.base_key(), m.identity_key(), m.message().ratchet_key()]
            }
            OlmMessage::Normal(m) => vec![m.ratchet_key()],
        };
        if !keys.iter().all(|key| is_canonical_curve25519(key.as_bytes())) {
            return Err(OlmError::Malformed("Curve25519 key not in its canonical encoding".into()));
        }
        Ok(message)
    }

    /// A digest that names this exact envelope (SHA-256 of its encoding), for a
    /// receiver that answers a repeat it already accepted without opening it again: the
    /// message key of a repeat is spent, so it no longer opens ([`OlmError::Replay`]).
    ///
    /// # Errors
    /// Only if the codec fails (it does not for this type).
    pub fn digest(&self) -> Result<[u8; 32], OlmError> {
        Ok(Sha256::digest(codec::encode(self)?).into())
    }
}

/// Whether 32 bytes are the canonical encoding of a Curve25519 `u` coordinate: below
/// `p = 2^255 - 19` (so the top bit is clear). X25519 reads the other encodings as the
/// same key, so accepting them would let a changed byte go unnoticed in the fields of a
/// pre-key message that Olm's MAC does not cover.
fn is_canonical_curve25519(bytes: &[u8; 32]) -> bool {
    // Compare with p from the most significant byte down: p = 7f ff .. ff ed (big-endian).
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    for (byte, p_byte) in bytes.iter().zip(p.iter()).rev() {
        if byte != p_byte {
            return byte < p_byte;
        }
    }
    false
}

/// The start of every `/kith/dm/2` plaintext, before the [`crate::dm::Plain`]. The
/// receiver checks it against the certificate and the envelope.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct InnerHead {
    /// The sending person (the certificate of `sender_device` names them).
    pub sender: AuthorId,
    /// The sending device, as in the envelope.
    pub sender_device: DeviceId,
    /// The receiving device, as in the envelope.
    pub recipient_device: DeviceId,
}

/// A request on `/kith/dm/2`. The variant order is part of the wire format.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Dm2Request {
    /// A message, with the sender's follow record for the recipient as on `/kith/dm/1`.
    Deliver {
        /// The message.
        envelope: Envelope,
        /// The canonical signed bytes of the sender's latest `Follow` record for the
        /// recipient, if it has one (checked as on `/kith/dm/1`).
        follow_proof: Option<Vec<u8>>,
    },
    /// Asks the receiving node for one one-time key of its device `device`, to start a
    /// session (the same mutual-connection rule applies as to messages).
    Claim {
        /// The device whose key is asked for.
        device: DeviceId,
    },
    /// Several messages of one lane, in the order they were written (at most
    /// [`MAX_BATCH`], each as in [`Dm2Request::Deliver`]): the receiver takes them in
    /// order, flushes once and answers [`Dm2Reply::Receipts`].
    Batch {
        /// The messages, oldest first.
        envelopes: Vec<Envelope>,
        /// As in [`Dm2Request::Deliver`], once for all of them.
        follow_proof: Option<Vec<u8>>,
    },
}

/// Most envelopes in one [`Dm2Request::Batch`] (and receipts in one
/// [`Dm2Reply::Receipts`]).
pub const MAX_BATCH: usize = 32;

/// The decoder's limit for a request of at most [`MAX_DM_REQUEST_BYTES`]: the decoder
/// counts the bytes it reads and what it allocates (each byte string, and a batch's list
/// of envelopes at their size in memory), so it needs about twice the bytes, and room for
/// the list (the size check on the raw bytes comes first).
const REQUEST_DECODE_LIMIT: usize =
    2 * MAX_DM_REQUEST_BYTES + MAX_BATCH * std::mem::size_of::<Envelope>();
/// The decoder's limit for a reply of at most [`MAX_DM_REPLY_BYTES`] (as above, with a
/// list of receipts).
const REPLY_DECODE_LIMIT: usize =
    2 * MAX_DM_REPLY_BYTES + MAX_BATCH * std::mem::size_of::<DmReply>();

/// Encoded size of a [`DmReply::Delivered`]: the variant (4) and the id (16).
const DELIVERED_LEN: usize = 4 + 16;
/// Largest encoded [`DmReply::Refused`]: the variant (4), the optional id (1 + 16), the
/// reason's length (8) and the reason.
const REFUSED_LEN: usize = 4 + 1 + 16 + 8 + crate::limits::MAX_DM_REASON_BYTES;
// The longest answer to a batch (receipts up to and including the first refusal) fits in
// a reply: the variant (4), the list's length (8), and the receipts.
const _: () = assert!(4 + 8 + (MAX_BATCH - 1) * DELIVERED_LEN + REFUSED_LEN <= MAX_DM_REPLY_BYTES);

impl Dm2Request {
    /// The canonical encoding.
    ///
    /// # Errors
    /// [`OlmError::TooLarge`] over [`MAX_DM_REQUEST_BYTES`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, OlmError> {
        encode_within(self, MAX_DM_REQUEST_BYTES)
    }

    /// Decodes a request from outside: size first, canonical decoding, then the checks
    /// of [`Envelope::check_shape`] and the follow record's size.
    ///
    /// # Errors
    /// [`OlmError::TooLarge`] before decoding, [`OlmError::Codec`], [`OlmError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OlmError> {
        if bytes.len() > MAX_DM_REQUEST_BYTES {
            return Err(OlmError::TooLarge { len: bytes.len(), max: MAX_DM_REQUEST_BYTES });
        }
        let request: Self = codec::decode::<_, REQUEST_DECODE_LIMIT>(bytes)?;
        match &request {
            Self::Deliver { envelope, follow_proof } => {
                envelope.check_shape()?;
                check_follow_proof(follow_proof.as_deref())?;
            }
            Self::Batch { envelopes, follow_proof } => {
                if envelopes.is_empty() || envelopes.len() > MAX_BATCH {
                    return Err(OlmError::Malformed(format!(
                        "a batch of {} messages (1 to {MAX_BATCH})",
                        envelopes.len()
                    )));
                }
                for envelope in envelopes {
                    envelope.check_shape()?;
                }
                check_follow_proof(follow_proof.as_deref())?;
            }
            Self::Claim { .. } => {}
        }
        Ok(request)
    }
}

/// The answer on `/kith/dm/2`. The variant order is part of the wire format.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Dm2Reply {
    /// The receipt of a [`Dm2Request::Deliver`], as on `/kith/dm/1`: `Delivered { id }`
    /// once stored (also for a repeat), or `Refused`.
    Receipt(DmReply),
    /// No session of the receiver opens the message ([`OlmError::NoSession`]): the
    /// sender drops its session with that device, starts a new one from a fresh prekey
    /// and sends the message again.
    NewSession,
    /// The answer to a [`Dm2Request::Claim`]: a one-time key of the device, or none (the
    /// sender then uses the device's fallback key).
    Claimed(Option<SignedPrekey>),
    /// The answer to a [`Dm2Request::Batch`]: the receipts of its first envelopes, in
    /// order, each `Delivered` (once durable) or `Refused`, up to and including the first
    /// refusal. The receiver stopped at the next envelope (it did not open it, or no
    /// session did): the sender sends that one again on its own to learn why.
    Receipts(Vec<DmReply>),
}

impl Dm2Reply {
    /// The canonical encoding; a refusal reason that is too long is truncated first.
    ///
    /// # Errors
    /// Only if the codec fails (it does not for this type).
    pub fn to_bytes(&self) -> Result<Vec<u8>, OlmError> {
        match self {
            Self::Receipt(receipt) => Ok(codec::encode(&Self::Receipt(receipt.truncated()))?),
            Self::Receipts(receipts) => {
                let receipts = receipts.iter().take(MAX_BATCH).map(DmReply::truncated);
                encode_within(&Self::Receipts(receipts.collect()), MAX_DM_REPLY_BYTES)
            }
            _ => Ok(codec::encode(self)?),
        }
    }

    /// Decodes a reply: size first, then canonical decoding, then the reason's length.
    /// A claimed key's signature is checked by the caller, who holds the certificate
    /// ([`SignedPrekey::verify`]).
    ///
    /// # Errors
    /// [`OlmError::TooLarge`] before decoding, [`OlmError::Codec`], [`OlmError::Message`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OlmError> {
        if bytes.len() > MAX_DM_REPLY_BYTES {
            return Err(OlmError::TooLarge { len: bytes.len(), max: MAX_DM_REPLY_BYTES });
        }
        let reply: Self = codec::decode::<_, REPLY_DECODE_LIMIT>(bytes)?;
        match &reply {
            Self::Receipt(receipt) => receipt.check_reason()?,
            Self::Receipts(receipts) => {
                if receipts.len() > MAX_BATCH {
                    return Err(OlmError::Malformed(format!(
                        "{} receipts for a batch of at most {MAX_BATCH}",
                        receipts.len()
                    )));
                }
                for receipt in receipts {
                    receipt.check_reason()?;
                }
            }
            Self::NewSession | Self::Claimed(_) => {}
        }
        Ok(reply)
    }
}
