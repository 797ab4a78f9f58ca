//! The `/kith/group/1` exchange between members of a group (`docs/protocol.md`, 20.6).
//!
//! A request carries one of four things:
//! - a [`Control`] message (a membership epoch, a leave notice, a member's device
//!   announcement passed on by the creator; from nodes before issue #19's Olm shares, a
//!   Megolm key share), sealed for the recipient with the `/kith/dm/1` construction
//!   ([`Sealed::seal_body_with`]), which proves who sent it and hides it from everyone
//!   else;
//! - a Megolm key share ([`OlmShare`]) inside an Olm envelope of `/kith/dm/2` (forward
//!   secret), with the sender's device announcement so that a member who is not a
//!   mutual connection can check the sender's device ([`GroupRequest::Olm`]);
//! - a [`GroupMessage`] (Megolm ciphertext, nothing but a session tag in the clear);
//! - a question for the history of a group the asker is a member of, answered with the
//!   newest ciphertexts the answering member holds (at most [`MAX_HISTORY_MESSAGES`]).
//!
//! Admission is by group membership as the creator signed it, not by who follows whom:
//! members of one group need not follow each other.

use bincode::{Decode, Encode};
use zeroize::Zeroizing;

use super::{
    decode_within, encode_within,
    megolm::{GroupMessage, SessionShare, MAX_GROUP_MESSAGE_BYTES, MAX_SHARE_BYTES},
    membership::{Leave, SignedLeave, SignedMembership, VerifiedMembership, MAX_MEMBERSHIP_BYTES},
    GroupError, GroupId,
};
use crate::{
    codec,
    dm::{PairKeys, Sealed},
    identity::{AuthorId, Keypair},
    limits::{MAX_DEVICE_ANNOUNCEMENT_BYTES, MAX_ENVELOPE_BYTES, MAX_SEALED_BYTES},
    olm::{envelope::Envelope, prekey::Announcement},
    record::RecordKind,
    VerifiedRecord,
};

/// The libp2p protocol name of the exchange.
pub const GROUP_PROTOCOL: &str = "/kith/group/1";

/// What a sealed control message's body starts with (so no other sealed body is taken
/// for one).
pub const CONTROL_DOMAIN: &[u8] = b"kith-group-control/1:";

/// Most ciphertexts in one history answer.
pub const MAX_HISTORY_MESSAGES: usize = 64;

/// Largest encoded control message (before sealing).
pub const MAX_CONTROL_BYTES: usize = 1 + MAX_MEMBERSHIP_BYTES + MAX_SHARE_BYTES;

/// Largest request.
pub const MAX_GROUP_REQUEST_BYTES: usize = 16 + MAX_SEALED_BYTES + MAX_GROUP_MESSAGE_BYTES;

/// Largest reply.
pub const MAX_GROUP_REPLY_BYTES: usize =
    16 + MAX_HISTORY_MESSAGES * (MAX_GROUP_MESSAGE_BYTES + 8) + 512;

/// What travels sealed between two members. The variant order is part of the wire
/// format.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Control {
    /// The creator's latest epoch of a group (from the creator, or passed on).
    Membership(SignedMembership),
    /// The sender's Megolm session key for a group.
    Share(SessionShare),
    /// The sender left a group.
    Leave(SignedLeave),
    /// The sender's Megolm session key for one of their circles (posts for chosen
    /// friends): `group` is the circle's id, known to its members only.
    CircleShare(SessionShare),
    /// A member's latest `Devices` record (the encoding of a signed record of kind
    /// `Devices`), passed on by the group's creator, so that members who are not each
    /// other's mutual connections can start Olm sessions between their devices. It is
    /// checked by its author's signature and certificates, not by who passed it on.
    Devices(Vec<u8>),
}

/// A Megolm key share as an Olm message carries it (`olm::inner::Inner::GroupShare`,
/// inner kind 3): a group's (`circle` false) or a circle's.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct OlmShare {
    /// Whether `share.group` is one of the sender's circles rather than a group.
    pub circle: bool,
    /// The share.
    pub share: SessionShare,
}

/// Largest encoded [`OlmShare`].
pub const MAX_OLM_SHARE_BYTES: usize = 1 + MAX_SHARE_BYTES;

impl OlmShare {
    /// The checks of [`SessionShare::from_bytes`] (version, key length).
    ///
    /// # Errors
    /// [`GroupError::TooLarge`], [`GroupError::Malformed`].
    pub fn check(&self) -> Result<(), GroupError> {
        SessionShare::from_bytes(&self.share.to_bytes()?).map(|_| ())
    }
}

// A member's largest announcement record fits a control message: the record's other
// fields (author, seq, prev, timestamp, kind) and its signature take under 256 bytes.
const _: () = assert!(1 + 8 + MAX_DEVICE_ANNOUNCEMENT_BYTES + 256 <= MAX_CONTROL_BYTES);

/// A control message opened and checked (signatures verified, shapes checked).
#[derive(Clone, Debug)]
pub enum Opened {
    /// A membership whose creator's signature verifies.
    Membership(VerifiedMembership),
    /// A key share (whether it may be used is the receiver's decision).
    Share(SessionShare),
    /// A leave notice whose member's signature verifies.
    Leave(Leave),
    /// A circle's key share (whether it may be used is the receiver's decision).
    CircleShare(SessionShare),
    /// A person's `Devices` record: its signature and certificates verify.
    Devices(VerifiedRecord),
}

impl Control {
    /// Seals this for the other person of `keys`.
    ///
    /// # Errors
    /// [`GroupError::TooLarge`], [`GroupError::Message`] (sealing).
    pub fn seal(&self, sender: &Keypair, keys: &PairKeys) -> Result<Sealed, GroupError> {
        let mut body = Zeroizing::new(CONTROL_DOMAIN.to_vec());
        body.extend_from_slice(&encode_within(self, MAX_CONTROL_BYTES)?);
        Ok(Sealed::seal_body_with(sender, keys, &body)?)
    }

    /// Opens a sealed control message for `recipient` (`keys`: theirs with the sender):
    /// who sent it (proved) and what it says, checked.
    ///
    /// # Errors
    /// [`GroupError::Message`] when it does not open; [`GroupError::Malformed`] without
    /// the domain; the decoding and verification errors of each kind.
    pub fn open(
        sealed: &Sealed,
        recipient: &Keypair,
        keys: &PairKeys,
    ) -> Result<(AuthorId, Opened), GroupError> {
        let body = sealed.open_body_with(recipient, keys)?;
        let Some(rest) = body.strip_prefix(CONTROL_DOMAIN) else {
            return Err(GroupError::Malformed("not a group control message".into()));
        };
        let control: Self = decode_within::<_, MAX_CONTROL_BYTES>(rest)?;
        let opened = match control {
            Self::Membership(signed) => Opened::Membership(signed.verify()?),
            Self::Share(share) => Opened::Share(SessionShare::from_bytes(&share.to_bytes()?)?),
            Self::Leave(signed) => Opened::Leave(SignedLeave::from_bytes(&signed.to_bytes()?)?),
            Self::CircleShare(share) => {
                Opened::CircleShare(SessionShare::from_bytes(&share.to_bytes()?)?)
            }
            Self::Devices(bytes) => Opened::Devices(devices_record(&bytes)?),
        };
        Ok((sealed.sender, opened))
    }
}

/// A signed `Devices` record from outside, verified (signature, certificates of its
/// author, fallback keys).
///
/// # Errors
/// [`GroupError::Malformed`] for anything else or anything that does not verify.
pub fn devices_record(bytes: &[u8]) -> Result<VerifiedRecord, GroupError> {
    let record =
        VerifiedRecord::from_bytes(bytes).map_err(|e| GroupError::Malformed(e.to_string()))?;
    if !matches!(record.record().kind, RecordKind::Devices(_)) {
        return Err(GroupError::Malformed("not a device announcement".into()));
    }
    Ok(record)
}

/// A request on `/kith/group/1`. The variant order is part of the wire format.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum GroupRequest {
    /// A sealed [`Control`] message.
    Control(Sealed),
    /// A group message, for the recipient to store and read.
    Message(GroupMessage),
    /// The newest messages of a group the asker is a member of.
    History {
        /// The group.
        group: GroupId,
    },
    /// A key share on an Olm session between the sender's device and the recipient's
    /// (`Inner::GroupShare`), with the sender's current device announcement (its
    /// certificates are signed by the sender's identity key; the recipient may not hold
    /// the sender's `Devices` record, not being a mutual connection).
    Olm {
        /// The Olm envelope, for one device of the recipient.
        envelope: Envelope,
        /// The sender's devices, for the recipient to check the sender device and to
        /// answer on a session with it.
        devices: Announcement,
    },
}

// An Olm request fits the request limit.
const _: () =
    assert!(1 + MAX_ENVELOPE_BYTES + MAX_DEVICE_ANNOUNCEMENT_BYTES <= MAX_GROUP_REQUEST_BYTES);

/// The answer on `/kith/group/1`. The variant order is part of the wire format.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum GroupReply {
    /// Taken (stored and flushed), or known already.
    Accepted,
    /// Not now (a key share or membership not here yet): the sender tries again later.
    Later,
    /// Refused for good, with why.
    Refused(String),
    /// The answer to [`GroupRequest::History`], oldest first.
    History(Vec<GroupMessage>),
    /// The answer to a [`GroupRequest::Olm`] that no session of the recipient opens (a
    /// lost session, a prekey rotated and forgotten, another device, a spent message
    /// key whose share was not kept): the sender drops its sessions with that device and
    /// seals the share again on a new session, on the recipient's current device and
    /// fallback key given here (when it has one).
    NewSession(Option<Announcement>),
}

impl GroupRequest {
    /// The canonical encoding.
    ///
    /// # Errors
    /// [`GroupError::TooLarge`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, GroupError> {
        encode_within(self, MAX_GROUP_REQUEST_BYTES)
    }

    /// Decodes a request from outside: size first, canonical decoding, the shape of what
    /// it carries. Nothing is opened.
    ///
    /// # Errors
    /// [`GroupError::TooLarge`], [`GroupError::Codec`], [`GroupError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GroupError> {
        let request: Self = decode_within::<_, MAX_GROUP_REQUEST_BYTES>(bytes)?;
        match &request {
            Self::Control(sealed) => {
                Sealed::from_bytes(&sealed.to_bytes()?)?;
            }
            Self::Message(message) => message.check()?,
            Self::History { .. } => {}
            Self::Olm { envelope, devices } => {
                Envelope::from_bytes(&envelope.to_bytes()?)?;
                devices.check_shape()?;
            }
        }
        Ok(request)
    }
}

impl GroupReply {
    /// The canonical encoding.
    ///
    /// # Errors
    /// [`GroupError::TooLarge`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, GroupError> {
        encode_within(self, MAX_GROUP_REPLY_BYTES)
    }

    /// Decodes a reply from outside: size first, canonical decoding, at most
    /// [`MAX_HISTORY_MESSAGES`] messages each of the right shape, a reason of at most 200
    /// bytes.
    ///
    /// # Errors
    /// [`GroupError::TooLarge`], [`GroupError::Codec`], [`GroupError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GroupError> {
        let reply: Self = decode_within::<_, MAX_GROUP_REPLY_BYTES>(bytes)?;
        match &reply {
            Self::History(messages) => {
                if messages.len() > MAX_HISTORY_MESSAGES {
                    return Err(GroupError::Malformed("too many messages".into()));
                }
                for message in messages {
                    message.check()?;
                }
            }
            Self::Refused(reason) if reason.len() > 200 => {
                return Err(GroupError::Malformed("over-long reason".into()));
            }
            Self::NewSession(Some(devices)) => devices.check_shape()?,
            _ => {}
        }
        Ok(reply)
    }
}

/// What a `/kith/group/1` request deposited with a member's mailbox (`docs/protocol.md`
/// 19 and 20.7) starts with, inside the sealed-sender layer: it tells the collecting
/// node that the rest is a [`GroupRequest`] rather than a `/kith/dm/2` request (whose
/// encoding starts with its variant, a byte below 3). The mailbox sees neither.
pub const DEPOSIT_PREFIX: &[u8] = b"kith-group/1:";

// The largest request, its prefix and the sender's id fit in a sealed deposit (with room
// for the padding's length).
const _: () = assert!(
    DEPOSIT_PREFIX.len() + MAX_GROUP_REQUEST_BYTES + 32 + 256
        <= crate::mailbox::MAX_HELD_ENVELOPE_BYTES
            - crate::mailbox::sealed::SEALED_DEPOSIT_OVERHEAD
);

/// The payload that deposits the encoded request `request` with a mailbox.
#[must_use]
pub fn deposit_payload(request: &[u8]) -> Vec<u8> {
    [DEPOSIT_PREFIX, request].concat()
}

/// The encoded group request inside a deposit's payload, if it is one.
#[must_use]
pub fn deposited(payload: &[u8]) -> Option<&[u8]> {
    payload.strip_prefix(DEPOSIT_PREFIX)
}

/// The canonical bytes of `message`'s encoding, hashed: how a member knows a ciphertext
/// it holds already before opening it.
pub fn digest(message: &GroupMessage) -> Result<[u8; 32], GroupError> {
    Ok(*blake3::hash(&codec::encode(message)?).as_bytes())
}
