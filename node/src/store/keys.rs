//! Big-endian composite keys for the store's trees, so sled's byte order is the order
//! the queries want (by author then seq, by tag then time).

use kith_protocol::{AuthorId, RecordId, Tag};

/// Separates a tag from what follows it in a key; never appears in UTF-8.
const TAG_END: u8 = 0xFF;

pub(crate) fn log_key(author: &AuthorId, seq: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(author.as_bytes());
    key[32..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// What the first byte of a `log` value says about the record (after it comes the
/// record's id): a post or private post, listed by [`super::Store::posts_by_author`].
pub(crate) const LOG_POST: u8 = 1;
/// The first byte of a `log` value for any other record.
pub(crate) const LOG_OTHER: u8 = 0;

/// A `log` value: the record's kind byte ([`LOG_POST`] or [`LOG_OTHER`]) and its id.
/// Stores written before 2026-12-05 hold the id alone (32 bytes); both are read with
/// [`id_suffix`], and [`log_says_not_post`] lets a listing of posts skip the rest without
/// reading them.
pub(crate) fn log_value(id: &RecordId, post: bool) -> [u8; 33] {
    let mut value = [0u8; 33];
    value[0] = if post { LOG_POST } else { LOG_OTHER };
    value[1..].copy_from_slice(id.as_bytes());
    value
}

/// Whether a `log` value says its record is not a post (`false` when it does not say:
/// an older 32-byte value).
pub(crate) fn log_says_not_post(value: &[u8]) -> bool {
    value.len() == 33 && value[0] == LOG_OTHER
}

pub(crate) fn time_key(timestamp: u64, id: &RecordId) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..8].copy_from_slice(&timestamp.to_be_bytes());
    key[8..].copy_from_slice(id.as_bytes());
    key
}

pub(crate) fn tag_prefix(tag: &Tag) -> Vec<u8> {
    let mut key = tag.as_str().as_bytes().to_vec();
    key.push(TAG_END);
    key
}

pub(crate) fn tag_key(tag: &Tag, timestamp: u64, id: &RecordId) -> Vec<u8> {
    let mut key = tag_prefix(tag);
    key.extend_from_slice(&time_key(timestamp, id));
    key
}

pub(crate) fn pair_key(a: &AuthorId, b: &AuthorId) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(a.as_bytes());
    key[32..].copy_from_slice(b.as_bytes());
    key
}

pub(crate) fn fork_key(author: &AuthorId, seq: u64, id: &RecordId) -> Vec<u8> {
    let mut key = log_key(author, seq).to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

/// Bytes of the author's id a `by_time` value starts with: enough to pass over other
/// people's entries unread (readers check the record's author).
pub(crate) const AUTHOR_PREFIX: usize = 8;

/// A `by_time` value: the first bytes of the author's id (none for a value that is too
/// short), and where the record's place in the heap starts (the value's end when it has
/// none). Three forms: the author's whole id (layout 2 and before), the whole id and the
/// place (written by 8caee80 only), the first [`AUTHOR_PREFIX`] bytes and the place.
pub(crate) fn by_time_value(value: &[u8]) -> (Option<&[u8]>, usize) {
    let at = if value.len() >= 32 { 32 } else { AUTHOR_PREFIX.min(value.len()) };
    (value.get(..AUTHOR_PREFIX), at)
}

/// The record id at the end of a time or tag key.
pub(crate) fn id_suffix(key: &[u8]) -> Option<RecordId> {
    let start = key.len().checked_sub(32)?;
    let bytes: [u8; 32] = key.get(start..)?.try_into().ok()?;
    Some(RecordId::from_bytes(bytes))
}

/// The second author of a pair key.
pub(crate) fn pair_second(key: &[u8]) -> Option<AuthorId> {
    let bytes: [u8; 32] = key.get(32..64)?.try_into().ok()?;
    Some(AuthorId::from_stored(bytes))
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}
