//! Public records: the signed entries of each person's append-only log.
//!
//! A [`Record`] is the unsigned content. [`Record::sign`] encodes it canonically, signs
//! [`RECORD_DOMAIN`] followed by those bytes, and returns a [`VerifiedRecord`]. Bytes from
//! anywhere else become a [`VerifiedRecord`] only through [`VerifiedRecord::from_bytes`],
//! which checks size, encoding, fields and signature. A record's id is the SHA-256 of its
//! complete signed encoding.

use std::{fmt, str::FromStr};

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::{
    attachment::{Attachment, AttachmentError},
    codec::{self, CodecError},
    group::GroupMessage,
    identity::{AuthorId, Keypair, SignatureError, SIGNATURE_LEN},
    limits::{
        MAX_ATTACHMENTS, MAX_BIO_BYTES, MAX_DEVICE_ANNOUNCEMENT_BYTES, MAX_FUTURE_SKEW_MS,
        MAX_MAILBOXES, MAX_MENTIONS_PER_POST, MAX_NAME_BYTES, MAX_REACTION_BYTES, MAX_RECORD_BYTES,
        MAX_TEXT_BYTES,
    },
    olm::prekey::Announcement,
    tags::{extract_tags, Tag},
};

/// Domain prefix signed before a record's bytes, so a record signature can never be taken
/// for a signature over anything else.
pub const RECORD_DOMAIN: &[u8] = b"kith-record/1:";

/// The largest Megolm message a circle post carries: the padded plaintext of a post's
/// longest text ([`MAX_TEXT_BYTES`]) with the group head and the message framing, with
/// room to spare (circle posts carry no attachments).
pub const MAX_PRIVATE_MEGOLM_BYTES: usize = 6 * 1024;

/// Length of a record id.
pub const RECORD_ID_LEN: usize = 32;

/// A record's id: SHA-256 of its signed encoding. Shown as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct RecordId([u8; RECORD_ID_LEN]);

impl RecordId {
    /// Wraps raw id bytes.
    pub fn from_bytes(bytes: [u8; RECORD_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw id bytes.
    pub fn as_bytes(&self) -> &[u8; RECORD_ID_LEN] {
        &self.0
    }

    /// The id of a signed encoding.
    pub fn of_bytes(signed: &[u8]) -> Self {
        Self(Sha256::digest(signed).into())
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({})", &hex::encode(self.0)[..12])
    }
}

/// Why a record id string was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("not a record id (64 hex digits): {0:?}")]
pub struct RecordIdError(pub String);

impl FromStr for RecordId {
    type Err = RecordIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; RECORD_ID_LEN];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| RecordIdError(s.to_owned()))?;
        Ok(Self(out))
    }
}

/// A public post.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Post {
    /// The text; hashtags are parsed from it.
    pub text: String,
    /// The record this post replies to.
    pub reply_to: Option<RecordId>,
    /// People mentioned in the post.
    pub mentions: Vec<AuthorId>,
    /// When every node should drop the post (ms since the Unix epoch), if ever.
    pub expires_at: Option<u64>,
    /// Attached files, at most [`MAX_ATTACHMENTS`]. A post without attachments encodes
    /// exactly as before attachments existed (see [`RecordKind`]).
    pub attachments: Vec<Attachment>,
}

/// What a record says. On the wire each kind is a `u32` variant number and its fields;
/// the numbers are part of the format, and new kinds take new numbers at the end. A post
/// is variant 0 without attachments (the original form, so every older record keeps its
/// bytes and id) and variant 7, with its attachment list appended, when it has
/// attachments; variant 7 with an empty list is not canonical and is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A public post.
    Post(Post),
    /// The author's profile; the latest (highest seq) one counts.
    Profile {
        /// Display name.
        name: String,
        /// Short biography.
        bio: String,
    },
    /// The author follows `target`.
    Follow {
        /// The person followed.
        target: AuthorId,
    },
    /// The author stops following `target`.
    Unfollow {
        /// The person unfollowed.
        target: AuthorId,
    },
    /// A reaction to a record; an empty `emoji` withdraws the author's reaction.
    Reaction {
        /// The record reacted to.
        target: RecordId,
        /// The reaction, or empty to remove it.
        emoji: String,
    },
    /// A repost of someone's record to the author's followers.
    Repost {
        /// The record shared.
        target: RecordId,
    },
    /// A tombstone for one of the author's own earlier records.
    Delete {
        /// The record deleted.
        target: RecordId,
    },
    /// The author's devices: their certificates and fallback keys, for `/kith/dm/2`
    /// ([`crate::olm`]); the latest (highest seq) one counts. Being introduced: the node
    /// does not publish these yet.
    Devices(Announcement),
    /// The nodes that hold sealed messages for the author while the author is offline
    /// (their mailboxes, issue #18), in the author's order of preference; the latest
    /// (highest seq) one counts, and an empty list names none. At most [`MAX_MAILBOXES`],
    /// no repeats, never the author.
    Mailboxes {
        /// The holders.
        holders: Vec<AuthorId>,
    },
    /// A circle post (posts for chosen friends, issue #19): the author's Megolm message
    /// for the circle's current session ([`crate::group::megolm`]). Only the circle's
    /// members, who were given the session's key, can read it; everyone else sees a
    /// padded ciphertext and a session tag (`docs/protocol.md` 20.5).
    Private(GroupMessage),
}

impl RecordKind {
    /// A short lower-case name of the kind, for logs and output.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Post(_) => "post",
            Self::Profile { .. } => "profile",
            Self::Follow { .. } => "follow",
            Self::Unfollow { .. } => "unfollow",
            Self::Reaction { .. } => "reaction",
            Self::Repost { .. } => "repost",
            Self::Delete { .. } => "delete",
            Self::Devices(_) => "devices",
            Self::Mailboxes { .. } => "mailboxes",
            Self::Private(_) => "private",
        }
    }
}

/// The unsigned content of a record.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Record {
    /// Who wrote it (and signed it).
    pub author: AuthorId,
    /// Position in the author's log: 1, 2, 3...
    pub seq: u64,
    /// Id of the author's record at `seq - 1`; `None` exactly when `seq` is 1.
    pub prev: Option<RecordId>,
    /// When it was written, ms since the Unix epoch (the author's clock).
    pub timestamp: u64,
    /// What it says.
    pub kind: RecordKind,
}

/// Why a record's fields are not well formed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FieldError {
    /// `seq` is 0.
    #[error("seq must start at 1")]
    ZeroSeq,
    /// `prev` is missing for seq > 1 or present for seq 1.
    #[error("prev must be present exactly when seq > 1")]
    BadPrev,
    /// A text field is longer than its limit.
    #[error("{field} is {len} bytes, more than the limit of {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A post with no text and no attachment.
    #[error("post text is empty")]
    EmptyText,
    /// More attachments than allowed.
    #[error("more than {MAX_ATTACHMENTS} attachments")]
    TooManyAttachments,
    /// An attachment that is not well formed.
    #[error("attachment: {0}")]
    Attachment(#[from] AttachmentError),
    /// More mentions than allowed.
    #[error("too many mentions")]
    TooManyMentions,
    /// A mention that is not an `@<peer-id>` word of the text.
    #[error("mentions {0}, who is not @mentioned in the text")]
    MentionNotInText(AuthorId),
    /// Following or unfollowing oneself.
    #[error("cannot follow or unfollow oneself")]
    SelfFollow,
    /// A device announcement that is not well formed or does not verify (certificates of
    /// another person, bad signatures, a device twice...).
    #[error("devices: {0}")]
    Devices(String),
    /// A mailbox list that is too long, repeats a holder or names the author.
    #[error("mailboxes: {0}")]
    Mailboxes(&'static str),
    /// A circle post whose ciphertext is not a well-formed Megolm message or is larger
    /// than [`MAX_PRIVATE_MEGOLM_BYTES`].
    #[error("private post: {0}")]
    Private(String),
    /// The timestamp is too far in the future.
    #[error("timestamp {timestamp} is more than {MAX_FUTURE_SKEW_MS} ms ahead of now ({now})")]
    FromTheFuture {
        /// The record's timestamp.
        timestamp: u64,
        /// The receiver's clock.
        now: u64,
    },
}

/// Why bytes were not accepted as a record.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Not a (canonical, size-bounded) encoding of a signed record.
    #[error("undecodable record: {0}")]
    Codec(#[from] CodecError),
    /// The fields are not well formed.
    #[error("malformed record: {0}")]
    Field(#[from] FieldError),
    /// The signature (or the author key) is not valid.
    #[error("record signature: {0}")]
    Signature(#[from] SignatureError),
    /// The bytes hash to a different id than the one expected.
    #[error("record hash does not match the expected id")]
    HashMismatch,
}

fn check_len(field: &'static str, text: &str, max: usize) -> Result<(), FieldError> {
    if text.len() > max {
        return Err(FieldError::TooLong { field, len: text.len(), max });
    }
    Ok(())
}

impl Record {
    /// Checks the fields that need no outside knowledge: seq/prev shape and text limits.
    /// Timestamps are checked against a clock in [`Record::check_time`].
    ///
    /// # Errors
    /// The first [`FieldError`] found.
    pub fn check_fields(&self) -> Result<(), FieldError> {
        if self.seq == 0 {
            return Err(FieldError::ZeroSeq);
        }
        if (self.seq == 1) != self.prev.is_none() {
            return Err(FieldError::BadPrev);
        }
        match &self.kind {
            RecordKind::Post(post) => {
                // White space by the pinned tables (`str::trim` follows the compiler's).
                let blank = post.text.chars().all(crate::unicode::is_white_space);
                if blank && post.attachments.is_empty() {
                    return Err(FieldError::EmptyText);
                }
                check_len("text", &post.text, MAX_TEXT_BYTES)?;
                if post.mentions.len() > MAX_MENTIONS_PER_POST {
                    return Err(FieldError::TooManyMentions);
                }
                if post.attachments.len() > MAX_ATTACHMENTS {
                    return Err(FieldError::TooManyAttachments);
                }
                for attachment in &post.attachments {
                    attachment.check()?;
                }
            }
            RecordKind::Profile { name, bio } => {
                check_len("name", name, MAX_NAME_BYTES)?;
                check_len("bio", bio, MAX_BIO_BYTES)?;
            }
            RecordKind::Follow { target } | RecordKind::Unfollow { target } => {
                if *target == self.author {
                    return Err(FieldError::SelfFollow);
                }
            }
            RecordKind::Reaction { emoji, .. } => check_len("emoji", emoji, MAX_REACTION_BYTES)?,
            RecordKind::Repost { .. } | RecordKind::Delete { .. } => {}
            RecordKind::Devices(announcement) => {
                // Certificates of the author only, every signature checked.
                announcement
                    .verify(&self.author)
                    .map_err(|e| FieldError::Devices(e.to_string()))?;
            }
            RecordKind::Mailboxes { holders } => {
                if holders.len() > MAX_MAILBOXES {
                    return Err(FieldError::Mailboxes("more holders than allowed"));
                }
                if holders.contains(&self.author) {
                    return Err(FieldError::Mailboxes("the author holds for themselves"));
                }
                let distinct: std::collections::BTreeSet<&AuthorId> = holders.iter().collect();
                if distinct.len() != holders.len() {
                    return Err(FieldError::Mailboxes("a holder named twice"));
                }
            }
            RecordKind::Private(message) => {
                if message.megolm.len() > MAX_PRIVATE_MEGOLM_BYTES {
                    return Err(FieldError::Private("ciphertext too long".into()));
                }
                message.check().map_err(|e| FieldError::Private(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Checks that the timestamp is not more than [`MAX_FUTURE_SKEW_MS`] ahead of `now_ms`.
    ///
    /// # Errors
    /// [`FieldError::FromTheFuture`].
    pub fn check_time(&self, now_ms: u64) -> Result<(), FieldError> {
        if self.timestamp > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
            return Err(FieldError::FromTheFuture { timestamp: self.timestamp, now: now_ms });
        }
        Ok(())
    }

    /// Checks that every person a post mentions is an `@<peer-id>` word of its text
    /// ([`crate::mentions::extract_mentions`]): a mention the reader cannot see would
    /// still notify the person and make their node keep the post.
    ///
    /// # Errors
    /// [`FieldError::MentionNotInText`] with the first hidden mention.
    pub fn check_mentions(&self) -> Result<(), FieldError> {
        let RecordKind::Post(post) = &self.kind else { return Ok(()) };
        if post.mentions.is_empty() {
            return Ok(());
        }
        let written = crate::mentions::extract_mentions(&post.text);
        match post.mentions.iter().find(|m| !written.contains(m)) {
            Some(hidden) => Err(FieldError::MentionNotInText(*hidden)),
            None => Ok(()),
        }
    }

    /// The hashtags of a post (empty for other kinds).
    pub fn tags(&self) -> Vec<Tag> {
        match &self.kind {
            RecordKind::Post(post) => extract_tags(&post.text),
            _ => Vec::new(),
        }
    }

    /// Signs the record with `keypair`, which must be the author's.
    ///
    /// # Errors
    /// [`FieldError`]s in the record, the codec's size limit, or
    /// [`SignatureError::BadKey`] if `keypair` is not the author's.
    pub fn sign(self, keypair: &Keypair) -> Result<VerifiedRecord, RecordError> {
        self.check_fields()?;
        if keypair.id() != self.author {
            return Err(SignatureError::BadKey.into());
        }
        let body = codec::encode(&self)?;
        let signature = keypair.sign(RECORD_DOMAIN, &body);
        let signed = SignedRecord { record: self, signature };
        let bytes = codec::encode(&signed)?;
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(CodecError::TooLarge { len: bytes.len(), max: MAX_RECORD_BYTES }.into());
        }
        let id = RecordId::of_bytes(&bytes);
        Ok(VerifiedRecord { signed, id, bytes })
    }
}

mod wire;

// The largest post fits a record: header (author, seq, prev, timestamp, kind variant),
// text, reply, mentions, expiry, attachments, and the signature.
const _: () = assert!(
    32 + 8
        + 33
        + 8
        + 4
        + (8 + MAX_TEXT_BYTES)
        + 33
        + (8 + 32 * MAX_MENTIONS_PER_POST)
        + 9
        + (8 + MAX_ATTACHMENTS * crate::attachment::MAX_ATTACHMENT_BYTES)
        + SIGNATURE_LEN
        <= MAX_RECORD_BYTES
);

// The largest device announcement fits a record: header, announcement, signature.
const _: () = assert!(
    32 + 8 + 33 + 8 + 4 + MAX_DEVICE_ANNOUNCEMENT_BYTES + SIGNATURE_LEN <= MAX_RECORD_BYTES
);

// The largest circle post fits a record: header, version, session tag, the ciphertext.
const _: () = assert!(
    32 + 8 + 33 + 8 + 4 + 1 + 16 + 8 + MAX_PRIVATE_MEGOLM_BYTES + SIGNATURE_LEN <= MAX_RECORD_BYTES
);

/// A record with its author's signature, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SignedRecord {
    /// The content.
    pub record: Record,
    /// ed25519 signature by `record.author` over [`RECORD_DOMAIN`] + encoded `record`.
    pub signature: [u8; SIGNATURE_LEN],
}

/// A record whose encoding, fields and signature have been checked, with its id and bytes.
/// Only [`Record::sign`] and [`VerifiedRecord::from_bytes`] make one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRecord {
    signed: SignedRecord,
    id: RecordId,
    bytes: Vec<u8>,
}

impl VerifiedRecord {
    /// Decodes and verifies a signed record from outside: size first, then canonical
    /// decoding, field checks and the strict signature check. Does not look at the clock;
    /// call [`Record::check_time`] for records arriving live.
    ///
    /// # Errors
    /// See [`RecordError`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let signed: SignedRecord = codec::decode::<_, MAX_RECORD_BYTES>(bytes)?;
        signed.record.check_fields()?;
        let body = codec::encode(&signed.record)?;
        signed.record.author.verify(RECORD_DOMAIN, &body, &signed.signature)?;
        Ok(Self { id: RecordId::of_bytes(bytes), bytes: bytes.to_vec(), signed })
    }

    /// Checks `bytes` as [`VerifiedRecord::from_bytes`] does, ahead of need: when the
    /// signature passes, that is remembered for a while, so that `from_bytes` of the same
    /// bytes soon after (on any thread) costs a hash instead of a signature verification.
    /// For a spare thread checking records that will be checked again shortly (the next
    /// sync page, while this one is stored). Every other check is still made again.
    ///
    /// # Errors
    /// As [`VerifiedRecord::from_bytes`].
    pub fn check_ahead(bytes: &[u8]) -> Result<(), RecordError> {
        crate::identity::remembering(|| Self::from_bytes(bytes).map(drop))
    }

    /// Like [`VerifiedRecord::from_bytes`], but also requires the bytes to hash to `expected`.
    /// The hash is checked first, before any signature work.
    ///
    /// # Errors
    /// [`RecordError::HashMismatch`], or see [`VerifiedRecord::from_bytes`].
    pub fn from_bytes_with_id(bytes: &[u8], expected: &RecordId) -> Result<Self, RecordError> {
        if bytes.len() <= MAX_RECORD_BYTES && RecordId::of_bytes(bytes) != *expected {
            return Err(RecordError::HashMismatch);
        }
        Self::from_bytes(bytes)
    }

    /// The record's id.
    pub fn id(&self) -> RecordId {
        self.id
    }

    /// The unsigned content.
    pub fn record(&self) -> &Record {
        &self.signed.record
    }

    /// The signature.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signed.signature
    }

    /// The canonical signed encoding (what is stored and sent).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}
