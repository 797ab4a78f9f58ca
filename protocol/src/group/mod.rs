//! Private groups and circles.
//!
//! - [`membership`]: who is in a group, as the creator signs it: numbered epochs, each a
//!   complete member list; a member's signed notice that they left. [`membership::Group`]
//!   applies them in order and refuses forged, replayed and stale ones.
//! - [`megolm`]: each member device's Megolm outbound session for a group ([`Outbound`]),
//!   the key share that gives it to the other members over Olm ([`SessionShare`]), their
//!   inbound copies ([`Inbound`]), the message as it travels ([`GroupMessage`]: nothing in
//!   the clear but a session tag) and the state at rest (pickles).
//!
//! A circle (posts for chosen friends) uses the same sessions: a circle is a group only
//! its author sends to, whose id is never published.
//!
//! The construction and byte layouts are in `docs/protocol.md`, section 20.
//!
//! ```
//! use kith_protocol::{
//!     dm::{MessageId, Plain},
//!     group::{megolm::{Inbound, Outbound}, membership::{Group, Membership}, GroupId},
//!     identity::Keypair,
//! };
//!
//! let (alice, bob) = (Keypair::from_secret_bytes(&[1; 32]), Keypair::from_secret_bytes(&[2; 32]));
//! // Alice creates a group with Bob; every member applies the signed membership.
//! let id = GroupId::generate().unwrap();
//! let first = Membership::new(id, 1, &alice.id(), "friends", &[bob.id()], 10).unwrap();
//! let group = Group::new(first.sign(&alice).unwrap().verify().unwrap());
//! assert!(group.is_member(&bob.id()));
//!
//! // Alice's session for this epoch; its key reaches Bob over Olm.
//! let mut out = Outbound::new(id, group.epoch(), 20);
//! let mut inbound = Inbound::from_share(&out.share(&alice.id()), &alice.id()).unwrap();
//! let plain = Plain { id: MessageId::generate().unwrap(), timestamp: 30, text: "hi all".into(), attachments: vec![] };
//! let message = out.encrypt(&alice.id(), &plain).unwrap();
//! assert_eq!(inbound.decrypt(&message).unwrap().plain, plain);
//! ```

pub mod megolm;
pub mod membership;
pub mod wire;

use bincode::Encode;
use thiserror::Error;

use crate::{
    codec::{self, CodecError},
    dm::DmError,
    identity::{AuthorId, SignatureError},
    olm::OlmError,
    random_id::random_id,
};

pub use megolm::{GroupMessage, Inbound, Outbound, SessionShare};

/// Length of a group id.
pub const GROUP_ID_LEN: usize = 16;

/// The version byte of every group structure described here. Others are refused.
pub const GROUP_VERSION: u8 = 1;

/// Most members of a group (the creator included): every member's device shares its
/// session key with every other one over Olm, so the cost of a change grows with the
/// square of this.
pub const MAX_GROUP_MEMBERS: usize = 64;

random_id!(
    /// A group's (or circle's) id: 16 random bytes chosen by its creator, shown as 32
    /// lower-case hex digits.
    GroupId,
    GroupIdError,
    GROUP_ID_LEN,
    "a group id"
);

/// Why a membership change, key share or group message was refused, or a message could
/// not be sent or read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GroupError {
    /// Bytes larger than their limit; nothing was decoded.
    #[error("{len} bytes exceed the limit of {max} bytes")]
    TooLarge {
        /// Their length.
        len: usize,
        /// The limit that applied.
        max: usize,
    },
    /// Not a canonical encoding of the expected type.
    #[error("undecodable: {0}")]
    Codec(#[from] CodecError),
    /// Well encoded, but not well formed (unknown version, unsorted members, empty name).
    #[error("malformed: {0}")]
    Malformed(String),
    /// The signature does not verify with the key of the person it names.
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    /// Signed by someone other than the group's creator, or a key share whose sender is
    /// not the person whose Olm session carried it.
    #[error("not signed or sent by the person it names")]
    WrongSigner,
    /// About another group.
    #[error("about another group")]
    WrongGroup,
    /// A membership change whose epoch is not after the current one (a replay or an old
    /// change arriving late), or a change to a group its creator deleted.
    #[error("epoch {epoch} is not after the current epoch {current}")]
    Stale {
        /// The change's epoch.
        epoch: u64,
        /// The group's current epoch.
        current: u64,
    },
    /// The person is not a member (a leave notice from a non-member, the creator trying
    /// to leave rather than delete the group).
    #[error("not a member who can do this")]
    NotMember,
    /// The message was sealed with another session than the one given.
    #[error("sealed with another session")]
    WrongSession,
    /// The Megolm message does not decrypt or its signature does not verify (tampered,
    /// or from before the point the key was shared from).
    #[error("the message does not decrypt with this session")]
    Decrypt,
    /// The decrypted content names another group, epoch or sender than its session.
    #[error("the content does not match its session")]
    Mismatch,
    /// The plaintext does not fit (text too long, too many attachments...).
    #[error("message: {0}")]
    Message(#[from] DmError),
    /// A pickle that does not decrypt with this key, or of something else.
    #[error("pickle: {0}")]
    Pickle(#[from] OlmError),
}

/// Encodes `value`, refusing a result over `max` bytes.
fn encode_within<T: Encode>(value: &T, max: usize) -> Result<Vec<u8>, GroupError> {
    let bytes = codec::encode(value)?;
    if bytes.len() > max {
        return Err(GroupError::TooLarge { len: bytes.len(), max });
    }
    Ok(bytes)
}

/// Decodes bytes from outside: the size before anything else, then canonical decoding.
fn decode_within<T: bincode::Decode<()> + Encode, const MAX: usize>(
    bytes: &[u8],
) -> Result<T, GroupError> {
    if bytes.len() > MAX {
        return Err(GroupError::TooLarge { len: bytes.len(), max: MAX });
    }
    Ok(codec::decode::<_, MAX>(bytes)?)
}

/// The common check of a version byte.
fn check_version(version: u8, what: &str) -> Result<(), GroupError> {
    if version == GROUP_VERSION {
        Ok(())
    } else {
        Err(GroupError::Malformed(format!("unknown {what} version {version}")))
    }
}

/// Whether `ids` is strictly ascending (sorted, no repeats).
fn strictly_ascending(ids: &[AuthorId]) -> bool {
    ids.windows(2).all(|w| matches!(w, [a, b] if a < b))
}

#[cfg(test)]
mod tests;
