//! Every size and count limit of the wire format, in one place.

/// Largest encoded signed record accepted from anywhere (bytes). Checked on the raw bytes
/// before decoding, and given to the decoder as its allocation limit.
pub const MAX_RECORD_BYTES: usize = 8 * 1024;

/// Longest post text (bytes of UTF-8).
pub const MAX_TEXT_BYTES: usize = 4 * 1024;

/// Longest profile name (bytes of UTF-8).
pub const MAX_NAME_BYTES: usize = 64;

/// Longest profile bio (bytes of UTF-8).
pub const MAX_BIO_BYTES: usize = 1024;

/// Most hashtags taken from one post; later ones are ignored.
pub const MAX_TAGS_PER_POST: usize = 10;

/// Longest hashtag, in characters, after the `#`. Longer words are not hashtags.
pub const MAX_TAG_CHARS: usize = 64;

/// Most mentions carried by one post.
pub const MAX_MENTIONS_PER_POST: usize = 16;

/// Longest reaction (an emoji or short word), in bytes.
pub const MAX_REACTION_BYTES: usize = 32;

/// How far in the future a record's timestamp may be, in milliseconds (Farcaster uses 600 s).
/// Also how long after a group membership ended a message of it may be dated and still be
/// taken (`docs/protocol.md` 20.7): the same allowance for clocks that disagree.
pub const MAX_FUTURE_SKEW_MS: u64 = 600 * 1000;

/// Longest direct message text (bytes of UTF-8). Checked when sealing and again after
/// opening.
pub const MAX_DM_TEXT_BYTES: usize = 4 * 1024;

/// A sealed direct message's plaintext (length prefix, id, timestamp, text) is padded with
/// zeros to a multiple of this many bytes, so its size tells only the text length rounded
/// up to a block.
pub const DM_PAD_BLOCK: usize = 256;

/// Largest encoded sealed direct message accepted (bytes). Checked on the raw bytes before
/// decoding, and given to the decoder as its allocation limit. The largest message kith
/// makes is 4473 bytes (a 97-byte header, an 8-byte ciphertext length, 4352 bytes of padded
/// plaintext for a [`MAX_DM_TEXT_BYTES`] text, and a 16-byte tag); the rest is headroom.
pub const MAX_SEALED_BYTES: usize = 8 * 1024;

/// Largest encoded request on `/kith/dm/1` (bytes): a sealed message of at most
/// [`MAX_SEALED_BYTES`] and a follow record of at most [`MAX_RECORD_BYTES`], with room to
/// spare. Checked on the raw bytes before decoding.
pub const MAX_DM_REQUEST_BYTES: usize = 32 * 1024;

/// Largest encoded reply on `/kith/dm/1` (bytes), checked before decoding.
pub const MAX_DM_REPLY_BYTES: usize = 1024;

/// Longest refusal reason in a direct message reply (bytes of UTF-8). Longer reasons are
/// truncated (at a character boundary) when the reply is made or encoded, and refused when
/// decoded.
pub const MAX_DM_REASON_BYTES: usize = 256;

/// Size of a blob chunk, the unit in which blobs travel and are checked (256 KiB): a whole
/// subtree of BLAKE3's hash tree, so each chunk is checked on its own as it arrives.
pub const BLOB_CHUNK_BYTES: usize = 256 * 1024;

/// Largest blob the protocol knows of (1 GiB). Each node sets its own, lower maximum
/// (25 MiB by default); this bounds the manifest of a blob and the chunk count.
pub const MAX_BLOB_BYTES: u64 = 1 << 30;

/// Most attachments carried by one post or direct message.
pub const MAX_ATTACHMENTS: usize = 4;

/// Longest attachment file name (bytes of UTF-8).
pub const MAX_FILE_NAME_BYTES: usize = 128;

/// Longest attachment MIME type (`type/subtype`, bytes).
pub const MAX_MIME_BYTES: usize = 64;

/// Largest thumbnail blob (bytes).
pub const MAX_THUMBNAIL_BYTES: u32 = 64 * 1024;

/// Longest side of a thumbnail (pixels).
pub const MAX_THUMBNAIL_SIDE: u16 = 1024;

/// Largest encoded request on `/kith/blob/1` (bytes), checked before decoding.
pub const MAX_BLOB_REQUEST_BYTES: usize = 128;

/// Largest encoded reply on `/kith/blob/1` (bytes), checked before decoding: a chunk of
/// [`BLOB_CHUNK_BYTES`] or the manifest of a [`MAX_BLOB_BYTES`] blob, with framing.
pub const MAX_BLOB_REPLY_BYTES: usize = BLOB_CHUNK_BYTES + 64;

/// Plaintext bytes per sealed segment of a private blob (64 KiB); each segment carries
/// its own 16-byte tag.
pub const BLOB_SEGMENT_BYTES: usize = 64 * 1024;

/// Largest encoded device certificate accepted (bytes); a certificate is 248.
pub const MAX_DEVICE_CERT_BYTES: usize = 256;

/// Most devices one person's device announcement lists.
pub const MAX_DEVICES: usize = 4;

/// Largest encoded device announcement (bytes): [`MAX_DEVICES`] certificates with their
/// fallback keys (372 bytes each) and the list's length, with room to spare.
pub const MAX_DEVICE_ANNOUNCEMENT_BYTES: usize = 2048;

/// Largest encoded `/kith/dm/2` envelope accepted (bytes). Checked on the raw bytes before
/// decoding, and given to the decoder as its allocation limit.
pub const MAX_ENVELOPE_BYTES: usize = 8 * 1024;

/// Largest encrypted account or session pickle (bytes) a node reads back.
pub const MAX_PICKLE_BYTES: usize = 1024 * 1024;

/// Most mailboxes a person names in their `Mailboxes` record.
pub const MAX_MAILBOXES: usize = 8;
