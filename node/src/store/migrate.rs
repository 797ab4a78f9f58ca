//! The store's layout version and the migration that carries an older home over when it
//! is opened.
//!
//! Sled's default tree holds `schema`, the layout version ([`Schema`]); a store without
//! it has layout 0 (every home written before the version existed, such as the fixture
//! `node/tests/fixtures/home-v0`). Layout 1 encodes every value through `codec.rs`;
//! layout 0 had JSON (messages, outbox, notifications, peers, blob metadata) and
//! hand-laid big-endian bytes (follow states, profile pointers, reactions, block periods,
//! record counts) and bare UTF-8 (petnames). Keys did not change.
//!
//! A migration survives a crash at any point: the converted values are first written to
//! staging trees (`migration:<tree>`), flushed, and marked complete (`migration:staged`);
//! then each tree is replaced by its staging copy, flushed, and only then is the new
//! version written and the staging trees dropped. Opening again after a crash redoes the
//! conversion (before the mark) or the copy (after it); neither reads a half-converted
//! tree.
//!
//! Layout 2 converts no value: from it on, a store on disk keeps new records in its
//! record heap (`records.rs`), which a kith of layout 1 would not read, so a layout-1
//! store is simply marked 2. Layout 3 converts none either: from it on, the values of the
//! feeds' indexes (`by_time`, `by_tag`) may end with where the record is in the heap
//! (`records/pending.rs`), and a `by_time` value may hold only the author's first bytes
//! (`keys::by_time_value`), which a kith of layout 2 would misread (its home timeline
//! takes a `by_time` value for the author only when it is the whole id), so a layout-1 or
//! layout-2 store is simply marked 3; its entries without a location still read.

use serde::Deserialize;

use super::{
    backend::Db,
    blobs::{BlobMeta, BlobOrigin},
    codec::{
        self, AuthorCount, BlockPeriod, FollowValue, Petname, ProfileValue, ReactionValue, Schema,
        Value,
    },
    dm::{DmRecord, DmStatus, OutboxEntry, DM_ID_LEN},
    people::KnownPeer,
    social::Notification,
    StoreError,
};

/// The layout this code reads and writes.
pub(crate) const CURRENT: u32 = 3;

/// Where the layout version is kept (in sled's default tree).
const SCHEMA_KEY: &[u8] = b"schema";
/// Set once every staging tree is complete.
const STAGED_KEY: &[u8] = b"migration:staged";
/// Staging trees are named this and the tree's name.
const STAGING: &str = "migration:";

/// How one value of an older layout becomes its current form; `None` for a value that
/// does not decode (only a damaged store holds one: it is dropped, and counted in a
/// warning).
type Convert = fn(&[u8]) -> Option<Vec<u8>>;

/// The trees whose values changed from layout 0 to layout 1, and how.
const TO_V1: &[(&str, Convert)] = &[
    ("dm_msgs", v0::message),
    ("outbox", v0::outbox_entry),
    ("notifications", v0::notification),
    ("peers", v0::known_peer),
    ("blobs", v0::blob_meta),
    ("follows", v0::follow),
    ("followers", v0::follow),
    ("profiles", v0::profile),
    ("reactions", v0::reaction),
    ("block_periods", v0::block_period),
    ("author_counts", v0::author_count),
    ("petnames", v0::petname),
];

/// The layout version of `db`: 0 when none is written.
///
/// # Errors
/// Disk errors, or a version that does not decode.
pub(crate) fn version(db: &Db) -> Result<u32, StoreError> {
    Ok(codec::get::<Schema>(db, SCHEMA_KEY)?.map_or(0, |s| s.0))
}

/// Brings `db` to the [`CURRENT`] layout (a new, empty store is simply marked current).
/// Call before anything else reads the store.
///
/// # Errors
/// [`StoreError::NewerSchema`] for a store written by a newer kith (it is left as it
/// is); disk errors.
pub(crate) fn run(db: &Db) -> Result<(), StoreError> {
    let found = version(db)?;
    if found > CURRENT {
        return Err(StoreError::NewerSchema { found, known: CURRENT });
    }
    if found == 1 || found == 2 {
        // Layout 1 or 2 to 3: nothing to convert.
        db.insert(SCHEMA_KEY, codec::encode(&Schema(CURRENT))?)?;
        db.flush()?;
    } else if found < CURRENT {
        if !db.is_empty() || db.tree_names().len() > 1 {
            tracing::info!(from = found, to = CURRENT, "migrating the store");
        }
        stage(db)?;
        replace(db)?;
    }
    // Left behind by a crash after the version was written.
    for name in db.tree_names() {
        if name.starts_with(STAGING.as_bytes()) {
            db.drop_tree(name)?;
        }
    }
    Ok(())
}

fn staging_name(tree: &str) -> String {
    format!("{STAGING}{tree}")
}

/// Writes the converted copy of every changed tree, unless a finished one is there.
pub(crate) fn stage(db: &Db) -> Result<(), StoreError> {
    if db.contains_key(STAGED_KEY)? {
        return Ok(());
    }
    for (name, convert) in TO_V1 {
        let (from, staging) = (db.open_tree(name)?, db.open_tree(staging_name(name))?);
        staging.clear()?;
        let mut dropped = 0u64;
        for item in from.iter() {
            let (key, value) = item?;
            match convert(&value) {
                Some(value) => {
                    staging.insert(key, value)?;
                }
                None => dropped += 1,
            }
        }
        if dropped > 0 {
            tracing::warn!(tree = name, dropped, "store migration: undecodable values dropped");
        }
    }
    db.flush()?;
    db.insert(STAGED_KEY, &[1u8][..])?;
    db.flush()?;
    Ok(())
}

/// Replaces every changed tree by its staging copy, then writes the version.
fn replace(db: &Db) -> Result<(), StoreError> {
    for (name, _) in TO_V1 {
        let (to, staging) = (db.open_tree(name)?, db.open_tree(staging_name(name))?);
        to.clear()?;
        for item in staging.iter() {
            let (key, value) = item?;
            to.insert(key, value)?;
        }
    }
    db.flush()?;
    db.insert(SCHEMA_KEY, codec::encode(&Schema(CURRENT))?)?;
    db.remove(STAGED_KEY)?;
    db.flush()?;
    Ok(())
}

/// Layout 0: how its values were written, read once to convert them.
mod v0 {
    use super::*;

    fn encoded(value: &impl Value) -> Option<Vec<u8>> {
        codec::encode(value).ok()
    }

    fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_be_bytes(bytes.get(at..at.checked_add(8)?)?.try_into().ok()?))
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Status {
        Queued,
        Delivered,
        Refused,
        Received,
    }

    #[derive(Deserialize)]
    struct Message {
        id: String,
        from: String,
        to: String,
        text: String,
        timestamp: u64,
        #[serde(default)]
        sent_at: Option<u64>,
        status: Status,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        read: bool,
        #[serde(default)]
        attachments: Vec<String>,
    }

    /// `dm_msgs`: JSON.
    pub(super) fn message(value: &[u8]) -> Option<Vec<u8>> {
        let m: Message = serde_json::from_slice(value).ok()?;
        let status = match m.status {
            Status::Queued => DmStatus::Queued,
            Status::Delivered => DmStatus::Delivered,
            Status::Refused => DmStatus::Refused,
            Status::Received => DmStatus::Received,
        };
        encoded(&DmRecord {
            id: m.id,
            from: m.from,
            to: m.to,
            text: m.text,
            timestamp: m.timestamp,
            sent_at: m.sent_at,
            status,
            reason: m.reason,
            read: m.read,
            attachments: m.attachments,
        })
    }

    #[derive(Deserialize)]
    struct Outbox {
        id: [u8; DM_ID_LEN],
        peer: [u8; 32],
        request: Vec<u8>,
        attempts: u32,
        #[serde(default)]
        order: u64,
    }

    /// `outbox`: JSON.
    pub(super) fn outbox_entry(value: &[u8]) -> Option<Vec<u8>> {
        let o: Outbox = serde_json::from_slice(value).ok()?;
        let (id, peer, request, attempts, order) = (o.id, o.peer, o.request, o.attempts, o.order);
        encoded(&OutboxEntry { id, peer, request, attempts, order })
    }

    #[derive(Deserialize)]
    struct Note {
        kind: String,
        from: String,
        record: String,
        timestamp: u64,
        read: bool,
        #[serde(default)]
        stranger: bool,
    }

    /// `notifications`: JSON.
    pub(super) fn notification(value: &[u8]) -> Option<Vec<u8>> {
        let n: Note = serde_json::from_slice(value).ok()?;
        let (kind, from, record, timestamp) = (n.kind, n.from, n.record, n.timestamp);
        encoded(&Notification { kind, from, record, timestamp, read: n.read, stranger: n.stranger })
    }

    #[derive(Deserialize)]
    struct Peer {
        addrs: Vec<String>,
        #[serde(default)]
        last: u64,
    }

    /// `peers`: JSON, an object or (the first form) a bare list of addresses.
    pub(super) fn known_peer(value: &[u8]) -> Option<Vec<u8>> {
        let peer = serde_json::from_slice::<Peer>(value).ok().or_else(|| {
            serde_json::from_slice::<Vec<String>>(value).ok().map(|addrs| Peer { addrs, last: 0 })
        })?;
        encoded(&KnownPeer { addrs: peer.addrs, last: peer.last })
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Origin {
        Own,
        Fetched,
    }

    #[derive(Deserialize)]
    struct Blob {
        size: u64,
        origin: Origin,
        added_ms: u64,
        used_ms: u64,
        #[serde(default)]
        auto: bool,
    }

    /// `blobs`: JSON.
    pub(super) fn blob_meta(value: &[u8]) -> Option<Vec<u8>> {
        let b: Blob = serde_json::from_slice(value).ok()?;
        let origin = match b.origin {
            Origin::Own => BlobOrigin::Own,
            Origin::Fetched => BlobOrigin::Fetched,
        };
        let (size, added_ms, used_ms, auto) = (b.size, b.added_ms, b.used_ms, b.auto);
        encoded(&BlobMeta { size, origin, added_ms, used_ms, auto })
    }

    /// `follows`, `followers`: seq (u64 BE), then 1 for a follow.
    pub(super) fn follow(value: &[u8]) -> Option<Vec<u8>> {
        encoded(&FollowValue { seq: u64_at(value, 0)?, active: *value.get(8)? == 1 })
    }

    /// `profiles`: seq (u64 BE), then the profile record's id.
    pub(super) fn profile(value: &[u8]) -> Option<Vec<u8>> {
        encoded(&ProfileValue { seq: u64_at(value, 0)?, id: value.get(8..40)?.try_into().ok()? })
    }

    /// `reactions`: seq (u64 BE), then the emoji's UTF-8.
    pub(super) fn reaction(value: &[u8]) -> Option<Vec<u8>> {
        let emoji = String::from_utf8_lossy(value.get(8..)?).into_owned();
        encoded(&ReactionValue { seq: u64_at(value, 0)?, emoji })
    }

    /// `block_periods`: start, end (u64 BE each).
    pub(super) fn block_period(value: &[u8]) -> Option<Vec<u8>> {
        encoded(&BlockPeriod { start: u64_at(value, 0)?, end: u64_at(value, 8)? })
    }

    /// `author_counts`: u64 BE.
    pub(super) fn author_count(value: &[u8]) -> Option<Vec<u8>> {
        encoded(&AuthorCount(u64_at(value, 0)?))
    }

    /// `petnames`: the name's UTF-8.
    pub(super) fn petname(value: &[u8]) -> Option<Vec<u8>> {
        encoded(&Petname(String::from_utf8_lossy(value).into_owned()))
    }
}
