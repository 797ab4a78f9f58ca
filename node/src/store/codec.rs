//! The one encoding of the store's values: every value a tree holds is a typed struct
//! encoded by [`kith_protocol::codec`] (bincode, canonical, decoded with a size limit).
//! Keys stay hand-laid big-endian bytes (`keys.rs`): their byte order is the order the
//! queries scan in. Index entries with nothing to say have empty values, and values that
//! are a bare record id are its 32 bytes (the codec's encoding of `[u8; 32]`).
//!
//! Values that a newer record replaces (a follow state, the current profile, a
//! reaction) are [`Versioned`]: written by [`put_if_newer`] only, removed by
//! [`remove_if_set_by`].

use super::backend::Tree;
use bincode::{Decode, Encode};
use kith_protocol::codec;

use super::StoreError;

/// Largest value the store reads back. The largest real one is a queued message's sealed
/// request (at most `MAX_DM_REQUEST_BYTES`, 32 KiB) with its bookkeeping.
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A value kept in one of the store's trees.
pub(crate) trait Value: Encode + Decode<()> {
    /// What it is, named in errors about a damaged store.
    const WHAT: &'static str;
}

/// A value set by the newest record of its kind: a record with a lower or equal seq does
/// not replace it.
pub(crate) trait Versioned: Value {
    /// The seq of the record that set it.
    fn seq(&self) -> u64;
}

/// Encodes a value.
///
/// # Errors
/// [`StoreError::Corrupt`] only if the codec refuses it (it does not for the store's types).
pub(crate) fn encode<V: Value>(value: &V) -> Result<Vec<u8>, StoreError> {
    codec::encode(value).map_err(|e| StoreError::Corrupt(format!("{}: {e}", V::WHAT)))
}

/// Decodes a value read from the store.
///
/// # Errors
/// [`StoreError::Corrupt`] for bytes that are not one canonical encoding of `V`.
pub(crate) fn decode<V: Value>(bytes: &[u8]) -> Result<V, StoreError> {
    codec::decode::<V, MAX_VALUE_BYTES>(bytes)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", V::WHAT)))
}

/// Reads and decodes the value at `key`.
///
/// # Errors
/// Disk errors, or damage.
pub(crate) fn get<V: Value>(tree: &Tree, key: impl AsRef<[u8]>) -> Result<Option<V>, StoreError> {
    tree.get(key)?.map(|v| decode(&v)).transpose()
}

/// Encodes and writes `value` at `key`.
///
/// # Errors
/// Disk errors.
pub(crate) fn put<V: Value>(
    tree: &Tree,
    key: impl AsRef<[u8]>,
    value: &V,
) -> Result<(), StoreError> {
    tree.insert(key.as_ref(), encode(value)?)?;
    Ok(())
}

/// Writes `value` at `key` unless the value there was set by a record with the same or a
/// higher seq ("the newer record wins"; an undecodable old value counts as older). When it
/// writes, `before` runs first (to update what depends on the old value). Returns whether
/// it wrote. Call with the store's writer lock held.
///
/// # Errors
/// Disk errors, or the error of `before`.
pub(crate) fn put_if_newer<V: Versioned>(
    tree: &Tree,
    key: impl AsRef<[u8]>,
    value: &V,
    before: impl FnOnce() -> Result<(), StoreError>,
) -> Result<bool, StoreError> {
    let key = key.as_ref();
    let newer = match tree.get(key)? {
        Some(old) => decode::<V>(&old).map_or(true, |old| old.seq() < value.seq()),
        None => true,
    };
    if newer {
        before()?;
        put(tree, key, value)?;
    }
    Ok(newer)
}

/// The value at `key`, if it was set by the record with `seq`.
///
/// # Errors
/// Disk errors.
pub(crate) fn set_by<V: Versioned>(
    tree: &Tree,
    key: impl AsRef<[u8]>,
    seq: u64,
) -> Result<Option<V>, StoreError> {
    Ok(tree.get(key)?.and_then(|v| decode::<V>(&v).ok()).filter(|v| v.seq() == seq))
}

/// Removes the value at `key` if the record with `seq` set it (a record being erased
/// takes back only what it set itself). Returns whether it removed.
///
/// # Errors
/// Disk errors.
pub(crate) fn remove_if_set_by<V: Versioned>(
    tree: &Tree,
    key: impl AsRef<[u8]>,
    seq: u64,
) -> Result<bool, StoreError> {
    let key = key.as_ref();
    if set_by::<V>(tree, key, seq)?.is_some() {
        tree.remove(key)?;
        return Ok(true);
    }
    Ok(false)
}

/// The latest follow record's state of one pair of people (`follows`: follower, target;
/// `followers`: target, follower).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct FollowValue {
    /// The seq of the record that set it.
    pub seq: u64,
    /// Follow (true) or unfollow.
    pub active: bool,
}

impl Value for FollowValue {
    const WHAT: &'static str = "follow state";
}

impl Versioned for FollowValue {
    fn seq(&self) -> u64 {
        self.seq
    }
}

/// An author's current profile record (`profiles`: author).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct ProfileValue {
    /// The seq of the profile record.
    pub seq: u64,
    /// Its id.
    pub id: [u8; 32],
}

impl Value for ProfileValue {
    const WHAT: &'static str = "profile pointer";
}

impl Versioned for ProfileValue {
    fn seq(&self) -> u64 {
        self.seq
    }
}

/// A person's current reaction to a record (`reactions`: target, reactor); an empty emoji
/// is a withdrawn reaction.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct ReactionValue {
    /// The seq of the reaction record.
    pub seq: u64,
    /// The reaction.
    pub emoji: String,
}

impl Value for ReactionValue {
    const WHAT: &'static str = "reaction";
}

impl Versioned for ReactionValue {
    fn seq(&self) -> u64 {
        self.seq
    }
}

/// The last period a person was blocked in (`block_periods`: author), ms; `end` is
/// `u64::MAX` while the block lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct BlockPeriod {
    /// When the block began.
    pub start: u64,
    /// When it ended.
    pub end: u64,
}

impl Value for BlockPeriod {
    const WHAT: &'static str = "block period";
}

/// How many records of one author are stored (`author_counts`: author).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct AuthorCount(pub u64);

impl Value for AuthorCount {
    const WHAT: &'static str = "record count";
}

/// A petname (`petnames`: author), as the person gave it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Petname(pub String);

impl Value for Petname {
    const WHAT: &'static str = "petname";
}

/// The store's totals as of its last flush (sled's default tree, key `counts`), present
/// only while no record was added or erased since: a store opened with it need not count
/// its records (see `quota.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Totals {
    /// Records stored.
    pub records: u64,
    /// Posts and reposts stored (entries of `by_time`).
    pub posts: u64,
}

impl Value for Totals {
    const WHAT: &'static str = "totals";
}

/// The layout version of a store (sled's default tree, key `schema`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Schema(pub u32);

impl Value for Schema {
    const WHAT: &'static str = "schema version";
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::backend::Db;

    #[test]
    fn the_newer_record_wins_and_takes_back_only_its_own() {
        let disk = sled::Config::new().temporary(true).open().unwrap();
        for db in [Db::from(disk), Db::memory()] {
            let tree = db.open_tree("t").unwrap();
            let v = |seq, active| FollowValue { seq, active };
            let mut ran = 0;
            assert!(put_if_newer(&tree, b"k", &v(5, true), || {
                ran += 1;
                Ok(())
            })
            .unwrap());
            // Older and equal seqs do not replace it, and do not run `before`.
            for seq in [4, 5] {
                assert!(!put_if_newer(&tree, b"k", &v(seq, false), || {
                    ran += 1;
                    Ok(())
                })
                .unwrap());
            }
            assert_eq!(ran, 1);
            assert_eq!(get::<FollowValue>(&tree, b"k").unwrap(), Some(v(5, true)));
            assert!(put_if_newer(&tree, b"k", &v(6, false), || Ok(())).unwrap());
            // Only the record that set it takes it back.
            assert!(!remove_if_set_by::<FollowValue>(&tree, b"k", 5).unwrap());
            assert!(remove_if_set_by::<FollowValue>(&tree, b"k", 6).unwrap());
            assert_eq!(get::<FollowValue>(&tree, b"k").unwrap(), None);
            // A damaged value is replaced by any record, and reads as damage.
            tree.insert(b"k", &[1u8][..]).unwrap();
            assert!(matches!(get::<FollowValue>(&tree, b"k"), Err(StoreError::Corrupt(_))));
            assert!(put_if_newer(&tree, b"k", &v(1, true), || Ok(())).unwrap());
        }
    }
}
