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
pub const MAX_FUTURE_SKEW_MS: u64 = 600 * 1000;
