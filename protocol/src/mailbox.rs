//! Mailboxes (`/kith/mailbox/1`): the wire types with which a node holds sealed envelopes
//! for a person who is offline (issue #18; not used by the node yet).
//!
//! A person names a few nodes of their mutual connections as their mailboxes. A sender
//! that cannot reach the recipient **deposits** the envelope with them; the recipient,
//! when it connects to one of them, **collects** what is held for it, stores it, and
//! **acknowledges** it, after which the mailbox deletes it.
//!
//! What a mailbox sees is on purpose little: the recipient (it must know whose the
//! envelope is), the node that deposited it (for quotas), when, and the envelope's length
//! (padded by the sender). The envelope itself is opaque here: its sender, text and kind
//! (message or receipt) are inside the encryption ([`sealed`]: the sealed-sender layer).
//!
//! Every held envelope is named by its [`HeldId`], the BLAKE3 hash of its bytes, so the
//! same envelope deposited twice (a retry, or two paths) is held once, and a collector
//! can check that what it got is what was named.
//!
//! ```
//! use kith_protocol::{identity::Keypair, mailbox::{HeldId, MailboxRequest}};
//!
//! let bob = Keypair::from_secret_bytes(&[2; 32]).id();
//! let envelope = vec![7u8; 512];
//! let request = MailboxRequest::Deposit { recipient: bob, envelope: envelope.clone() };
//! let bytes = request.to_bytes().unwrap();
//! assert_eq!(MailboxRequest::from_bytes(&bytes).unwrap(), request);
//! assert_eq!(HeldId::of(&envelope), HeldId::of(&[7u8; 512]));
//! ```

pub mod sealed;

use std::fmt;

use bincode::{Decode, Encode};
use thiserror::Error;

use crate::{
    codec::{self, CodecError},
    identity::AuthorId,
    limits::MAX_DM_REQUEST_BYTES,
};

/// The libp2p protocol name of the mailbox exchange.
pub const MAILBOX_PROTOCOL: &str = "/kith/mailbox/1";
/// Largest envelope a mailbox holds: what a direct message request may carry.
pub const MAX_HELD_ENVELOPE_BYTES: usize = MAX_DM_REQUEST_BYTES;
/// Most envelopes in one collect answer.
pub const MAX_COLLECT_ITEMS: usize = 64;
/// Most ids in one acknowledgement.
pub const MAX_ACK_IDS: usize = 256;
/// Largest encoded request: a deposit of the largest envelope, with room for its framing.
pub const MAX_MAILBOX_REQUEST_BYTES: usize = MAX_HELD_ENVELOPE_BYTES + 1024;
/// Largest encoded reply: a collect answer stops adding envelopes before this.
pub const MAX_MAILBOX_REPLY_BYTES: usize = 1024 * 1024;
/// Longest refusal text.
pub const MAX_REFUSAL_BYTES: usize = 256;

// A collect answer always has room for at least one largest envelope.
const _: () = assert!(MAX_HELD_ENVELOPE_BYTES + 1024 <= MAX_MAILBOX_REPLY_BYTES);
// An acknowledgement of the most ids fits a request.
const _: () = assert!(MAX_ACK_IDS * 32 + 64 <= MAX_MAILBOX_REQUEST_BYTES);

/// Why mailbox bytes were refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MailboxError {
    /// Not a valid, size-bounded encoding.
    #[error("mailbox message: {0}")]
    Codec(#[from] CodecError),
    /// Over a count or size limit.
    #[error("mailbox message over a limit: {0}")]
    Limit(&'static str),
    /// A sealed deposit could not be made or opened ([`sealed`]).
    #[error("sealed deposit: {0}")]
    Sealed(&'static str),
}

/// The name of a held envelope: the BLAKE3 hash of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct HeldId([u8; 32]);

impl HeldId {
    /// The id of `envelope`.
    pub fn of(envelope: &[u8]) -> Self {
        Self(*blake3::hash(envelope).as_bytes())
    }

    /// From its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Its 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for HeldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeldId({})", hex::encode(&self.0[..8]))
    }
}

/// One mailbox request. The mailbox knows who asks (the connection's authenticated peer
/// id): a collect or an acknowledgement is always about the asker's own envelopes.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum MailboxRequest {
    /// Hold `envelope` for `recipient`.
    Deposit {
        /// Whose it is.
        recipient: AuthorId,
        /// The sealed envelope, opaque to the mailbox.
        envelope: Vec<u8>,
    },
    /// Send what is held for the asker, in the order it was deposited, after position
    /// `after` (0 for the start).
    Collect {
        /// The last position the asker has seen.
        after: u64,
    },
    /// The asker has stored these envelopes: delete them.
    Ack {
        /// Their ids.
        ids: Vec<HeldId>,
    },
}

/// One envelope held for the asker.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Held {
    /// Its position in the mailbox's order of deposits (the cursor for the next collect).
    pub position: u64,
    /// When it was deposited, ms since the Unix epoch (the mailbox's clock).
    pub deposited: u64,
    /// The envelope.
    pub envelope: Vec<u8>,
}

impl Held {
    /// The envelope's id.
    pub fn id(&self) -> HeldId {
        HeldId::of(&self.envelope)
    }
}

/// Why a mailbox refused a request. The text is for people; the kind is for the sender's
/// node to decide whether to try another mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Refusal {
    /// The recipient has not named this node as a mailbox, or is not its mutual
    /// connection: try no more here.
    NotHolding,
    /// The recipient's share of the mailbox is full.
    RecipientFull,
    /// The depositor's share of the mailbox is full.
    DepositorFull,
    /// The mailbox is full.
    Full,
    /// The request was malformed or over a limit.
    Invalid,
    /// The mailbox could not store it (disk): try later or elsewhere.
    Unavailable,
}

impl Refusal {
    /// What it means, for people.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotHolding => "this node does not hold messages for that person",
            Self::RecipientFull => "the mailbox holds as much as it will for that person",
            Self::DepositorFull => "the mailbox holds as much as it will from you",
            Self::Full => "the mailbox is full",
            Self::Invalid => "malformed mailbox request",
            Self::Unavailable => "the mailbox cannot store now",
        }
    }
}

/// A mailbox's answer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum MailboxReply {
    /// The envelope is held (flushed to disk before this answer), or already was.
    Accepted {
        /// Its id.
        id: HeldId,
    },
    /// Not done, and why.
    Refused(Refusal),
    /// Envelopes held for the asker, oldest first; `more` when the answer stopped at a
    /// limit and another collect (after the last position) would bring more.
    Held {
        /// The envelopes.
        items: Vec<Held>,
        /// Whether more are held after the last one.
        more: bool,
    },
    /// How many of the acknowledged envelopes were deleted (ids that were not held count
    /// for nothing).
    Acked {
        /// Deleted.
        removed: u32,
    },
}

impl MailboxRequest {
    /// The canonical encoding.
    ///
    /// # Errors
    /// Over a limit.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MailboxError> {
        self.check()?;
        Ok(codec::encode(self)?)
    }

    /// Decodes and checks a request of at most [`MAX_MAILBOX_REQUEST_BYTES`].
    ///
    /// # Errors
    /// Malformed, non-canonical or over a limit.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MailboxError> {
        let request: Self = codec::decode::<_, MAX_MAILBOX_REQUEST_BYTES>(bytes)?;
        request.check()?;
        Ok(request)
    }

    fn check(&self) -> Result<(), MailboxError> {
        match self {
            Self::Deposit { envelope, .. } if envelope.is_empty() => {
                Err(MailboxError::Limit("empty envelope"))
            }
            Self::Deposit { envelope, .. } if envelope.len() > MAX_HELD_ENVELOPE_BYTES => {
                Err(MailboxError::Limit("envelope too large"))
            }
            Self::Ack { ids } if ids.len() > MAX_ACK_IDS => {
                Err(MailboxError::Limit("too many ids"))
            }
            _ => Ok(()),
        }
    }
}

impl MailboxReply {
    /// The canonical encoding.
    ///
    /// # Errors
    /// Over a limit.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MailboxError> {
        self.check()?;
        let bytes = codec::encode(self)?;
        if bytes.len() > MAX_MAILBOX_REPLY_BYTES {
            return Err(MailboxError::Limit("reply too large"));
        }
        Ok(bytes)
    }

    /// Decodes and checks a reply of at most [`MAX_MAILBOX_REPLY_BYTES`].
    ///
    /// # Errors
    /// Malformed, non-canonical or over a limit.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MailboxError> {
        let reply: Self = codec::decode::<_, MAX_MAILBOX_REPLY_BYTES>(bytes)?;
        reply.check()?;
        Ok(reply)
    }

    fn check(&self) -> Result<(), MailboxError> {
        let Self::Held { items, .. } = self else { return Ok(()) };
        if items.len() > MAX_COLLECT_ITEMS {
            return Err(MailboxError::Limit("too many envelopes"));
        }
        if items.iter().any(|h| h.envelope.is_empty() || h.envelope.len() > MAX_HELD_ENVELOPE_BYTES)
        {
            return Err(MailboxError::Limit("envelope size"));
        }
        if items.windows(2).any(|w| w[0].position >= w[1].position) {
            return Err(MailboxError::Limit("positions out of order"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
