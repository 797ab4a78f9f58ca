//! What a `/kith/dm/2` plaintext carries after its [`super::envelope::InnerHead`]: one
//! byte naming the kind, then the kind's body. Kinds are the extension point of the
//! exchange: a message (the [`crate::dm::Plain`] of `/kith/dm/1`), an end-to-end
//! delivery receipt (which may travel back through mailboxes, issue #18), a repair
//! request, a group or circle key share (issue #19, on `/kith/group/1`). A receiver
//! refuses a kind it does not know.
//!
//! Add a kind by adding a variant to [`Inner`] and to [`InnerKind`] (the number is the
//! next free one, never a reused one), its body's encoding in [`Inner::encode_body`] and
//! its decoding in [`Inner::decode_body`], with its limits.

use bincode::{Decode, Encode};

use crate::{
    codec,
    dm::{DmError, MessageId, Plain, MAX_PADDED_BYTES},
    group::wire::{OlmShare, MAX_OLM_SHARE_BYTES},
};

/// Most message ids one receipt acknowledges.
pub const MAX_RECEIPT_IDS: usize = 256;

/// Most envelope digests one repair request names.
pub const MAX_REPAIR_DIGESTS: usize = 64;

/// Bytes of the kind before an inner body.
pub const INNER_KIND_LEN: usize = 1;

// A receipt of the most ids fits the plaintext of a message.
const _: () = assert!(4 + MAX_RECEIPT_IDS * 17 <= MAX_PADDED_BYTES);
// So does a repair request of the most digests.
const _: () = assert!(16 + 8 + MAX_REPAIR_DIGESTS * 32 <= MAX_PADDED_BYTES);
// And a group key share.
const _: () = assert!(MAX_OLM_SHARE_BYTES <= MAX_PADDED_BYTES);

/// The kind byte of an inner body. Its value is part of the wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum InnerKind {
    /// A direct message.
    Message = 0,
    /// An end-to-end delivery receipt.
    Receipt = 1,
    /// A repair request: envelopes that did not open.
    Repair = 2,
    /// A group's or circle's Megolm key share (`/kith/group/1`, issue #19).
    GroupShare = 3,
}

impl InnerKind {
    /// The kind of byte `byte`, if known.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::Message),
            1 => Some(Self::Receipt),
            2 => Some(Self::Repair),
            3 => Some(Self::GroupShare),
            _ => None,
        }
    }
}

/// An end-to-end delivery receipt: the recipient stored (and flushed) the messages with
/// these ids, which the receipt's sender had received from the person it is sealed for.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Receipt {
    /// The messages stored, at most [`MAX_RECEIPT_IDS`].
    pub ids: Vec<MessageId>,
}

/// A repair request (issue #17): envelopes from the person it is sealed for that did not
/// open here (no session opens them: a prekey rotated and forgotten, sessions lost), named
/// by their digests. Its recipient seals the messages they carried again, on a new
/// session. It carries no message: only digests of envelopes its recipient made.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Repair {
    /// The id of this request (its receipt names it): the node derives it from the
    /// digests.
    pub id: MessageId,
    /// The digests ([`super::envelope::Envelope::digest`]), at most
    /// [`MAX_REPAIR_DIGESTS`], at least one.
    pub digests: Vec<[u8; 32]>,
}

/// The content of a `/kith/dm/2` plaintext after its head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inner {
    /// A direct message.
    Message(Plain),
    /// A delivery receipt for messages of the person it is sealed for.
    Receipt(Receipt),
    /// A repair request for envelopes of the person it is sealed for.
    Repair(Repair),
    /// A Megolm key share of a group or circle, sent on `/kith/group/1` (never on
    /// `/kith/dm/2`, whose receivers refuse it).
    GroupShare(OlmShare),
}

impl Inner {
    /// Its kind.
    pub fn kind(&self) -> InnerKind {
        match self {
            Self::Message(_) => InnerKind::Message,
            Self::Receipt(_) => InnerKind::Receipt,
            Self::Repair(_) => InnerKind::Repair,
            Self::GroupShare(_) => InnerKind::GroupShare,
        }
    }

    /// Checks the limits of the content.
    ///
    /// # Errors
    /// [`DmError`] naming what is over.
    pub fn check(&self) -> Result<(), DmError> {
        match self {
            Self::Message(plain) => plain.check(),
            Self::Receipt(receipt) if receipt.ids.is_empty() => {
                Err(DmError::Malformed("empty receipt".into()))
            }
            Self::Receipt(receipt) if receipt.ids.len() > MAX_RECEIPT_IDS => {
                Err(DmError::Malformed(format!("receipt of more than {MAX_RECEIPT_IDS} messages")))
            }
            Self::Receipt(_) => Ok(()),
            Self::Repair(repair) if repair.digests.is_empty() => {
                Err(DmError::Malformed("empty repair request".into()))
            }
            Self::Repair(repair) if repair.digests.len() > MAX_REPAIR_DIGESTS => Err(
                DmError::Malformed(format!("repair of more than {MAX_REPAIR_DIGESTS} envelopes")),
            ),
            Self::Repair(_) => Ok(()),
            Self::GroupShare(share) => share.check().map_err(|e| DmError::Malformed(e.to_string())),
        }
    }

    /// The kind byte and the body, as they follow the inner head.
    ///
    /// # Errors
    /// Only if the codec fails (it does not for these types).
    pub fn encode_body(&self) -> Result<Vec<u8>, DmError> {
        match self {
            Self::Message(plain) => Self::encode_message(plain),
            Self::Receipt(receipt) => {
                let mut out = vec![InnerKind::Receipt as u8];
                out.extend_from_slice(&codec::encode(receipt)?);
                Ok(out)
            }
            Self::Repair(repair) => {
                let mut out = vec![InnerKind::Repair as u8];
                out.extend_from_slice(&codec::encode(repair)?);
                Ok(out)
            }
            Self::GroupShare(share) => {
                let mut out = vec![InnerKind::GroupShare as u8];
                out.extend_from_slice(&codec::encode(share)?);
                Ok(out)
            }
        }
    }

    /// [`Inner::encode_body`] of a message, without taking it.
    ///
    /// # Errors
    /// Only if the codec fails (it does not for this type).
    pub fn encode_message(plain: &Plain) -> Result<Vec<u8>, DmError> {
        let mut out = vec![InnerKind::Message as u8];
        out.extend_from_slice(&codec::encode(plain)?);
        Ok(out)
    }

    /// Decodes what [`Inner::encode_body`] wrote and checks its limits.
    ///
    /// # Errors
    /// [`DmError::Malformed`] for an unknown kind or a body over its limits; codec errors.
    pub fn decode_body(bytes: &[u8]) -> Result<Self, DmError> {
        let (kind, body) = bytes.split_first().ok_or_else(|| malformed("no inner kind"))?;
        let inner = match InnerKind::from_byte(*kind) {
            Some(InnerKind::Message) => Self::Message(Plain::decode_body(body)?),
            Some(InnerKind::Receipt) => {
                Self::Receipt(codec::decode::<Receipt, MAX_PADDED_BYTES>(body)?)
            }
            Some(InnerKind::Repair) => {
                Self::Repair(codec::decode::<Repair, MAX_PADDED_BYTES>(body)?)
            }
            Some(InnerKind::GroupShare) => {
                Self::GroupShare(codec::decode::<OlmShare, MAX_OLM_SHARE_BYTES>(body)?)
            }
            None => return Err(malformed(&format!("unknown inner kind {kind}"))),
        };
        inner.check()?;
        Ok(inner)
    }
}

fn malformed(what: &str) -> DmError {
    DmError::Malformed(what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MessageId {
        MessageId::from_bytes([n; 16])
    }

    #[test]
    fn every_kind_round_trips_and_unknown_kinds_are_refused() {
        let message = Inner::Message(Plain {
            id: id(1),
            timestamp: 5,
            text: "hello".into(),
            attachments: vec![],
        });
        let receipt = Inner::Receipt(Receipt { ids: vec![id(2), id(3)] });
        let repair = Inner::Repair(Repair { id: id(4), digests: vec![[5; 32], [6; 32]] });
        let share = Inner::GroupShare(OlmShare {
            circle: true,
            share: crate::group::SessionShare {
                version: crate::group::GROUP_VERSION,
                group: crate::group::GroupId::from_bytes([7; 16]),
                epoch: 3,
                sender: crate::identity::Keypair::from_secret_bytes(&[8; 32]).id(),
                exported: false,
                key: vec![9; 40],
            },
        });
        for inner in [message, receipt, repair, share] {
            let bytes = inner.encode_body().unwrap();
            assert_eq!(bytes[0], inner.kind() as u8);
            assert_eq!(Inner::decode_body(&bytes).unwrap(), inner);
        }
        assert!(Inner::decode_body(&[]).is_err());
        let mut unknown = Inner::Receipt(Receipt { ids: vec![id(2)] }).encode_body().unwrap();
        unknown[0] = 200;
        assert!(Inner::decode_body(&unknown).is_err());
    }

    #[test]
    fn receipts_are_bounded_and_never_empty() {
        let empty = Inner::Receipt(Receipt { ids: vec![] });
        assert!(Inner::decode_body(&empty.encode_body().unwrap()).is_err());
        let most = Inner::Receipt(Receipt { ids: vec![id(1); MAX_RECEIPT_IDS] });
        assert!(Inner::decode_body(&most.encode_body().unwrap()).is_ok());
        let over = Inner::Receipt(Receipt { ids: vec![id(1); MAX_RECEIPT_IDS + 1] });
        assert!(Inner::decode_body(&over.encode_body().unwrap()).is_err());
    }

    #[test]
    fn repair_requests_are_bounded_and_never_empty() {
        let repair = |n| Inner::Repair(Repair { id: id(1), digests: vec![[7; 32]; n] });
        assert!(Inner::decode_body(&repair(0).encode_body().unwrap()).is_err());
        assert!(Inner::decode_body(&repair(MAX_REPAIR_DIGESTS).encode_body().unwrap()).is_ok());
        assert!(Inner::decode_body(&repair(MAX_REPAIR_DIGESTS + 1).encode_body().unwrap()).is_err());
    }
}
