//! Megolm sessions for groups and circles: the only place groups touch vodozemac.
//!
//! Each member device sends to a group with its own [`Outbound`] session, created for an
//! epoch and replaced when a member is removed or leaves (so the removed member, who holds
//! its key, reads nothing sent after), after [`ROTATE_AFTER_MESSAGES`] messages and after
//! [`ROTATE_AFTER_MS`]. Its key reaches every other member's devices as a
//! [`SessionShare`] inside an Olm message, which proves who shares it; the receiver keeps
//! an [`Inbound`] copy, which reads from the point the key was shared at (so a member added
//! later reads from when they joined). A member may forward the share of a session from
//! its first known index ([`Inbound::export`]): only the group's creator does, when it
//! chose to give new members the history.
//!
//! A [`GroupMessage`] carries in the clear only a [`SessionTag`] (which session opens it)
//! and the Megolm message, signed by the session's key and MACed. Its padded plaintext is
//! the group, epoch and sender, then a [`crate::dm::Plain`], so a mailbox or relay that
//! carries it learns neither the group nor the sender, and a receiver checks that the
//! content names the session it opened with.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};
use vodozemac::megolm::{
    ExportedSessionKey, GroupSession, GroupSessionPickle, InboundGroupSession,
    InboundGroupSessionPickle, MegolmMessage, SessionConfig, SessionKey,
};

use super::{check_version, decode_within, encode_within, GroupError, GroupId, GROUP_VERSION};
use crate::{
    codec,
    dm::{pad_body, unpad_body, Plain, MAX_PADDED_BYTES},
    identity::AuthorId,
    limits::DM_PAD_BLOCK,
    olm::pickle::PickleKey,
};

/// Length of a [`SessionTag`].
pub const SESSION_TAG_LEN: usize = 16;

/// An outbound session is replaced after this many messages.
pub const ROTATE_AFTER_MESSAGES: u32 = 100;

/// An outbound session is replaced after this long, ms (a week).
pub const ROTATE_AFTER_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Length of the encoded [`Head`] of a group plaintext.
const HEAD_LEN: usize = 16 + 8 + 32;

/// The largest padded plaintext of a group message: the head and the largest direct
/// message body, padded.
pub const MAX_GROUP_PADDED_BYTES: usize =
    (MAX_PADDED_BYTES + HEAD_LEN).div_ceil(DM_PAD_BLOCK) * DM_PAD_BLOCK;

/// The largest Megolm message kith accepts: the padded plaintext, one block of AES-CBC
/// padding, and Megolm's framing (version, index, lengths, an 8-byte MAC and a 64-byte
/// signature), with room to spare.
pub const MAX_MEGOLM_BYTES: usize = MAX_GROUP_PADDED_BYTES + 16 + 256;

/// Largest encoded group message.
pub const MAX_GROUP_MESSAGE_BYTES: usize = 1 + SESSION_TAG_LEN + 8 + MAX_MEGOLM_BYTES;

/// Largest Megolm session key kith accepts (vodozemac's are 229 bytes, exported 165).
pub const MAX_SESSION_KEY_BYTES: usize = 512;

/// Largest encoded key share.
pub const MAX_SHARE_BYTES: usize = 1 + 16 + 8 + 32 + 1 + 8 + MAX_SESSION_KEY_BYTES;

/// Which session a group message needs: the first [`SESSION_TAG_LEN`] bytes of BLAKE3 of
/// the Megolm session id (the base64 of the session's Ed25519 public key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct SessionTag([u8; SESSION_TAG_LEN]);

impl SessionTag {
    fn of(session_id: &str) -> Self {
        let mut tag = [0u8; SESSION_TAG_LEN];
        tag.copy_from_slice(&blake3::hash(session_id.as_bytes()).as_bytes()[..SESSION_TAG_LEN]);
        Self(tag)
    }

    /// The tag with these raw bytes (a store key read back).
    pub fn from_raw(bytes: [u8; SESSION_TAG_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw tag bytes (a store key).
    pub fn as_bytes(&self) -> &[u8; SESSION_TAG_LEN] {
        &self.0
    }
}

/// A sender's session key for one group and epoch, as it travels inside an Olm message.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SessionShare {
    /// The format version, [`GROUP_VERSION`].
    pub version: u8,
    /// The group.
    pub group: GroupId,
    /// The epoch the session was made for.
    pub epoch: u64,
    /// Who sends with the session.
    pub sender: AuthorId,
    /// Whether `key` is an exported key (forwarded by the creator for history) rather
    /// than the sender's own signed session key.
    pub exported: bool,
    /// The Megolm session key, in vodozemac's byte encoding.
    pub key: Vec<u8>,
}

impl SessionShare {
    /// The canonical encoding.
    ///
    /// # Errors
    /// [`GroupError::TooLarge`] (never for a share made here).
    pub fn to_bytes(&self) -> Result<Vec<u8>, GroupError> {
        encode_within(self, MAX_SHARE_BYTES)
    }

    /// Decodes one from outside: size, canonical decoding, version, key length. Whether
    /// the key is a key is checked by [`Inbound::from_share`].
    ///
    /// # Errors
    /// [`GroupError::TooLarge`], [`GroupError::Codec`], [`GroupError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GroupError> {
        let share: Self = decode_within::<_, MAX_SHARE_BYTES>(bytes)?;
        check_version(share.version, "key share")?;
        if share.key.len() > MAX_SESSION_KEY_BYTES {
            return Err(GroupError::Malformed("over-long session key".into()));
        }
        Ok(share)
    }
}

/// A group message as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct GroupMessage {
    /// The format version, [`GROUP_VERSION`].
    pub version: u8,
    /// Which session opens it.
    pub session: SessionTag,
    /// The Megolm message in vodozemac's byte encoding (version, index, ciphertext, MAC,
    /// signature).
    pub megolm: Vec<u8>,
}

impl GroupMessage {
    /// The canonical encoding.
    ///
    /// # Errors
    /// [`GroupError::TooLarge`] (never for a message made by [`Outbound::encrypt`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, GroupError> {
        encode_within(self, MAX_GROUP_MESSAGE_BYTES)
    }

    /// Decodes one from outside: size, canonical decoding, version, and a Megolm message
    /// in its canonical encoding. Nothing is decrypted.
    ///
    /// # Errors
    /// [`GroupError::TooLarge`], [`GroupError::Codec`], [`GroupError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GroupError> {
        let message: Self = decode_within::<_, MAX_GROUP_MESSAGE_BYTES>(bytes)?;
        message.check()?;
        Ok(message)
    }

    /// The checks [`GroupMessage::from_bytes`] makes after decoding: version and a
    /// canonical Megolm message.
    ///
    /// # Errors
    /// [`GroupError::TooLarge`], [`GroupError::Malformed`].
    pub fn check(&self) -> Result<(), GroupError> {
        check_version(self.version, "group message")?;
        self.megolm_message()?;
        Ok(())
    }

    /// The Megolm message, decoded; its re-encoding must be the bytes carried.
    fn megolm_message(&self) -> Result<MegolmMessage, GroupError> {
        if self.megolm.len() > MAX_MEGOLM_BYTES {
            return Err(GroupError::TooLarge { len: self.megolm.len(), max: MAX_MEGOLM_BYTES });
        }
        let message = MegolmMessage::from_bytes(&self.megolm)
            .map_err(|e| GroupError::Malformed(format!("Megolm message: {e}")))?;
        if message.to_bytes() != self.megolm {
            return Err(GroupError::Malformed("Megolm message not canonical".into()));
        }
        Ok(message)
    }
}

/// What a group plaintext starts with: it binds the content to its session.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
struct Head {
    group: GroupId,
    epoch: u64,
    sender: AuthorId,
}

/// A group message, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The group.
    pub group: GroupId,
    /// The epoch the sender's session was made for.
    pub epoch: u64,
    /// Who sent it (proved by the Olm message that carried the session's key).
    pub sender: AuthorId,
    /// The message.
    pub plain: Plain,
    /// Its position in the sender's session (the same message read twice has the same).
    pub index: u32,
}

/// One device's session for sending to a group in one epoch.
pub struct Outbound {
    session: GroupSession,
    group: GroupId,
    epoch: u64,
    created_ms: u64,
}

/// What an outbound session's pickle holds.
#[derive(Serialize, Deserialize)]
struct OutboundPickle {
    session: GroupSessionPickle,
    group: [u8; 16],
    epoch: u64,
    created_ms: u64,
}

impl Outbound {
    /// A fresh session for `group` in `epoch`.
    pub fn new(group: GroupId, epoch: u64, now_ms: u64) -> Self {
        Self {
            session: GroupSession::new(SessionConfig::version_1()),
            group,
            epoch,
            created_ms: now_ms,
        }
    }

    /// The group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The epoch it was made for.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The tag its messages carry.
    pub fn tag(&self) -> SessionTag {
        SessionTag::of(&self.session.session_id())
    }

    /// How many messages it has encrypted.
    pub fn sent(&self) -> u32 {
        self.session.message_index()
    }

    /// Whether it has reached its message count or age and should be replaced.
    pub fn should_rotate(&self, now_ms: u64) -> bool {
        self.sent() >= ROTATE_AFTER_MESSAGES
            || now_ms.saturating_sub(self.created_ms) >= ROTATE_AFTER_MS
    }

    /// The key share to give every other member (over Olm): it reads from the next
    /// message on.
    pub fn share(&self, sender: &AuthorId) -> SessionShare {
        SessionShare {
            version: GROUP_VERSION,
            group: self.group,
            epoch: self.epoch,
            sender: *sender,
            exported: false,
            key: self.session.session_key().to_bytes(),
        }
    }

    /// Encrypts `plain` from `sender` (this device's person). The session advances: store
    /// its pickle before the message leaves the node.
    ///
    /// # Errors
    /// [`GroupError::Message`] when the plaintext is over its limits.
    pub fn encrypt(
        &mut self,
        sender: &AuthorId,
        plain: &Plain,
    ) -> Result<GroupMessage, GroupError> {
        plain.check()?;
        let head = Head { group: self.group, epoch: self.epoch, sender: *sender };
        let mut body = zeroize::Zeroizing::new(codec::encode(&head)?);
        body.extend_from_slice(&codec::encode(plain)?);
        let padded = pad_body(&body, MAX_GROUP_PADDED_BYTES)?;
        let megolm = self.session.encrypt(padded.as_slice()).to_bytes();
        Ok(GroupMessage { version: GROUP_VERSION, session: self.tag(), megolm })
    }

    /// The session sealed at rest with `key`.
    ///
    /// # Errors
    /// [`GroupError::Pickle`] (random source, size).
    pub fn pickle(&self, key: &PickleKey) -> Result<Vec<u8>, GroupError> {
        let pickle = OutboundPickle {
            session: self.session.pickle(),
            group: *self.group.as_bytes(),
            epoch: self.epoch,
            created_ms: self.created_ms,
        };
        Ok(key.seal_json(&outbound_label(&self.group), &pickle)?)
    }

    /// Opens a pickle made by [`Outbound::pickle`] for `group`.
    ///
    /// # Errors
    /// [`GroupError::Pickle`] for another key, another group, or damage.
    pub fn from_pickle(bytes: &[u8], key: &PickleKey, group: GroupId) -> Result<Self, GroupError> {
        let pickle: OutboundPickle = key.open_json(&outbound_label(&group), bytes)?;
        if pickle.group != *group.as_bytes() {
            return Err(GroupError::WrongGroup);
        }
        Ok(Self {
            session: GroupSession::from_pickle(pickle.session),
            group,
            epoch: pickle.epoch,
            created_ms: pickle.created_ms,
        })
    }
}

fn outbound_label(group: &GroupId) -> Vec<u8> {
    [&b"megolm-out:"[..], group.as_bytes()].concat()
}

fn inbound_label(tag: &SessionTag) -> Vec<u8> {
    [&b"megolm-in:"[..], tag.as_bytes()].concat()
}

/// A member's copy of another member's session: it reads their messages.
pub struct Inbound {
    session: InboundGroupSession,
    tag: SessionTag,
    group: GroupId,
    epoch: u64,
    sender: AuthorId,
}

/// What an inbound session's pickle holds.
#[derive(Serialize, Deserialize)]
struct InboundPickle {
    session: InboundGroupSessionPickle,
    group: [u8; 16],
    epoch: u64,
    sender: [u8; 32],
}

impl Inbound {
    /// The copy of a session from its sender's own share. `carried_by` is the person
    /// whose Olm message carried the share (proved by Olm): it must be the sender.
    ///
    /// # Errors
    /// [`GroupError::WrongSigner`] for a share carried by someone else or an exported
    /// one; [`GroupError::Malformed`] for a key that is not one.
    pub fn from_share(share: &SessionShare, carried_by: &AuthorId) -> Result<Self, GroupError> {
        Self::from_share_via(share, carried_by, None)
    }

    /// As [`Inbound::from_share`], also accepting an exported share (history) when the
    /// group's `creator` carried it: only the creator forwards other members' sessions.
    ///
    /// # Errors
    /// As [`Inbound::from_share`].
    pub fn from_forwarded(
        share: &SessionShare,
        carried_by: &AuthorId,
        creator: &AuthorId,
    ) -> Result<Self, GroupError> {
        Self::from_share_via(share, carried_by, Some(creator))
    }

    fn from_share_via(
        share: &SessionShare,
        carried_by: &AuthorId,
        creator: Option<&AuthorId>,
    ) -> Result<Self, GroupError> {
        check_version(share.version, "key share")?;
        let config = SessionConfig::version_1();
        let session = if share.exported {
            if creator != Some(carried_by) {
                return Err(GroupError::WrongSigner);
            }
            let key = ExportedSessionKey::from_bytes(&share.key)
                .map_err(|e| GroupError::Malformed(format!("exported session key: {e}")))?;
            InboundGroupSession::import(&key, config)
        } else {
            if share.sender != *carried_by {
                return Err(GroupError::WrongSigner);
            }
            let key = SessionKey::from_bytes(&share.key)
                .map_err(|e| GroupError::Malformed(format!("session key: {e}")))?;
            InboundGroupSession::new(&key, config)
        };
        Ok(Self {
            tag: SessionTag::of(&session.session_id()),
            session,
            group: share.group,
            epoch: share.epoch,
            sender: share.sender,
        })
    }

    /// The tag of the messages it opens.
    pub fn tag(&self) -> SessionTag {
        self.tag
    }

    /// The group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The epoch the session was made for.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Who sends with it.
    pub fn sender(&self) -> AuthorId {
        self.sender
    }

    /// The first message index it can read.
    pub fn first_index(&self) -> u32 {
        self.session.first_known_index()
    }

    /// Reads a message of this session. The same message read twice gives the same
    /// [`Received::index`] and id: the caller stores each id once.
    ///
    /// # Errors
    /// [`GroupError::WrongSession`] for another session's message; [`GroupError::Decrypt`]
    /// when the signature or MAC fails or the message is from before the shared point;
    /// [`GroupError::Malformed`] or [`GroupError::Message`] for a bad plaintext;
    /// [`GroupError::Mismatch`] when the content names another group, epoch or sender.
    pub fn decrypt(&mut self, message: &GroupMessage) -> Result<Received, GroupError> {
        check_version(message.version, "group message")?;
        if message.session != self.tag {
            return Err(GroupError::WrongSession);
        }
        let decrypted =
            self.session.decrypt(&message.megolm_message()?).map_err(|_| GroupError::Decrypt)?;
        let padded = zeroize::Zeroizing::new(decrypted.plaintext);
        if padded.len() > MAX_GROUP_PADDED_BYTES {
            return Err(GroupError::Malformed("plaintext too long".into()));
        }
        let body = unpad_body(&padded)?;
        let (head, used) = codec::decode_prefix::<Head, HEAD_LEN>(body)?;
        let plain = Plain::decode_body(body.get(used..).unwrap_or_default())?;
        plain.check()?;
        if head != (Head { group: self.group, epoch: self.epoch, sender: self.sender }) {
            return Err(GroupError::Mismatch);
        }
        Ok(Received {
            group: head.group,
            epoch: head.epoch,
            sender: head.sender,
            plain,
            index: decrypted.message_index,
        })
    }

    /// The share of this session from its first known index, for the group's creator to
    /// forward to a new member when it gives them the history.
    pub fn export(&self) -> SessionShare {
        SessionShare {
            version: GROUP_VERSION,
            group: self.group,
            epoch: self.epoch,
            sender: self.sender,
            exported: true,
            key: self.session.export_at_first_known_index().to_bytes(),
        }
    }

    /// The session sealed at rest with `key`.
    ///
    /// # Errors
    /// [`GroupError::Pickle`] (random source, size).
    pub fn pickle(&self, key: &PickleKey) -> Result<Vec<u8>, GroupError> {
        let pickle = InboundPickle {
            session: self.session.pickle(),
            group: *self.group.as_bytes(),
            epoch: self.epoch,
            sender: *self.sender.as_bytes(),
        };
        Ok(key.seal_json(&inbound_label(&self.tag), &pickle)?)
    }

    /// Opens a pickle made by [`Inbound::pickle`] for the session tagged `tag`.
    ///
    /// # Errors
    /// [`GroupError::Pickle`] for another key, another session, or damage.
    pub fn from_pickle(bytes: &[u8], key: &PickleKey, tag: SessionTag) -> Result<Self, GroupError> {
        let pickle: InboundPickle = key.open_json(&inbound_label(&tag), bytes)?;
        let session = InboundGroupSession::from_pickle(pickle.session);
        let sender = AuthorId::from_bytes(pickle.sender)
            .map_err(|e| GroupError::Malformed(format!("pickled sender: {e}")))?;
        if SessionTag::of(&session.session_id()) != tag {
            return Err(GroupError::WrongSession);
        }
        Ok(Self {
            session,
            tag,
            group: GroupId::from_bytes(pickle.group),
            epoch: pickle.epoch,
            sender,
        })
    }
}
