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
