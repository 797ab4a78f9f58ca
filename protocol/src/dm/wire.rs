//! The `/kith/dm/1` exchange: the request that carries a sealed message (and the sender's
//! follow record) and the receiver's reply.

use bincode::{Decode, Encode};

use super::{decode_within, encode_within, DmError, MessageId, Sealed};
use crate::{
    codec,
    limits::{MAX_DM_REASON_BYTES, MAX_DM_REPLY_BYTES, MAX_DM_REQUEST_BYTES, MAX_RECORD_BYTES},
};

/// A request on `/kith/dm/1`: a sealed message, with the sender's follow record for the
/// recipient so that the recipient can check the mutual-connection rule even if it missed
/// that record on gossip.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DmRequest {
    /// The message.
    pub sealed: Sealed,
    /// The canonical signed bytes of the sender's latest `Follow` record for the
    /// recipient (a `SignedRecord`, at most [`MAX_RECORD_BYTES`]), if it has one. The
    /// receiver verifies it like any record; it is not part of the sealed message.
    pub follow_proof: Option<Vec<u8>>,
}

impl DmRequest {
    /// The canonical encoding: the [`Sealed`] encoding, then the optional follow record.
    ///
    /// # Errors
    /// [`DmError::TooLarge`] over [`MAX_DM_REQUEST_BYTES`] (never for a sealed message made
    /// by [`Sealed::seal`] and a record within [`MAX_RECORD_BYTES`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, DmError> {
        encode_within(self, MAX_DM_REQUEST_BYTES)
    }

    /// Decodes a request from outside: size first, then canonical decoding, then the
    /// checks of [`Sealed::from_bytes`] and the follow record's size. The follow record's
    /// signature is not checked here.
    ///
    /// # Errors
    /// [`DmError::TooLarge`] before decoding, [`DmError::Codec`], [`DmError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DmError> {
        let request: Self = decode_within::<_, MAX_DM_REQUEST_BYTES>(bytes)?;
        request.sealed.check_shape()?;
        check_follow_proof(request.follow_proof.as_deref())?;
        Ok(request)
    }
}

/// Refuses a follow record over [`MAX_RECORD_BYTES`] carried beside a message.
pub(crate) fn check_follow_proof(proof: Option<&[u8]>) -> Result<(), DmError> {
    match proof {
        Some(proof) if proof.len() > MAX_RECORD_BYTES => Err(DmError::Malformed(format!(
            "follow record of {} bytes exceeds {MAX_RECORD_BYTES}",
            proof.len()
        ))),
        _ => Ok(()),
    }
}

/// The receiver's answer on `/kith/dm/1`. The variant order is part of the wire format.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum DmReply {
    /// The message was opened and stored (or had been already: a repeat of a known id).
    Delivered {
        /// The id of the message delivered.
        id: MessageId,
    },
    /// The message was not accepted.
    Refused {
        /// The message's id, if the receiver could open it.
        id: Option<MessageId>,
        /// Why, for people; at most [`MAX_DM_REASON_BYTES`] bytes.
        reason: String,
    },
}

impl DmReply {
    /// A refusal, with `reason` truncated to [`MAX_DM_REASON_BYTES`] at a character boundary.
    pub fn refused(id: Option<MessageId>, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        reason.truncate(reason_len(&reason));
        Self::Refused { id, reason }
    }

    /// The canonical encoding; a reason over [`MAX_DM_REASON_BYTES`] is truncated first.
    ///
    /// # Errors
    /// Only if the codec fails (it does not for this type).
    pub fn to_bytes(&self) -> Result<Vec<u8>, DmError> {
        Ok(codec::encode(&self.truncated())?)
    }

    /// This reply with a reason over [`MAX_DM_REASON_BYTES`] truncated (a copy).
    pub(crate) fn truncated(&self) -> Self {
        match self {
            Self::Refused { id, reason } if reason.len() > MAX_DM_REASON_BYTES => {
                Self::refused(*id, reason.as_str())
            }
            _ => self.clone(),
        }
    }

    /// Refuses a reason over [`MAX_DM_REASON_BYTES`] (in a decoded reply).
    pub(crate) fn check_reason(&self) -> Result<(), DmError> {
        if let Self::Refused { reason, .. } = self {
            if reason.len() > MAX_DM_REASON_BYTES {
                return Err(DmError::Malformed(format!(
                    "refusal reason of {} bytes exceeds {MAX_DM_REASON_BYTES}",
                    reason.len()
                )));
            }
        }
        Ok(())
    }

    /// Decodes a reply: size first, then canonical decoding, then the reason's length.
    ///
    /// # Errors
    /// [`DmError::TooLarge`] before decoding, [`DmError::Codec`], or
    /// [`DmError::Malformed`] for a reason over [`MAX_DM_REASON_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DmError> {
        let reply: Self = decode_within::<_, MAX_DM_REPLY_BYTES>(bytes)?;
        reply.check_reason()?;
        Ok(reply)
    }
}

/// The longest prefix of `reason` within [`MAX_DM_REASON_BYTES`] ending at a char boundary.
fn reason_len(reason: &str) -> usize {
    (0..=MAX_DM_REASON_BYTES.min(reason.len()))
        .rev()
        .find(|&i| reason.is_char_boundary(i))
        .unwrap_or(0)
}
