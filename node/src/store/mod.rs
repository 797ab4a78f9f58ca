//! The node's store: a typed API over one sled database per home.
//!
//! Records (id -> signed bytes) are in the record heap, segment files of the store's own
//! with sled's `record_locs` tree (id -> location) pointing into them (`records.rs`,
//! `heap.rs`; an older store's `records` tree is still read). Trees: `log` (author, seq -> kind byte, id), `by_time`
//! (timestamp, id) for posts, `by_tag` (tag, timestamp, id), `follows` and `followers`
//! (pairs -> latest follow state), `subs` (subscribed tags), `profiles` (author -> latest
//! profile record), `devices` and `olm` (see `olm.rs`), `mailboxes` and `mailbox_local`
//! (see `mailbox.rs`), `held` (envelopes held for others, see `held.rs`), `forks`
//! (evidence of two records at one author/seq), `peers` (known
//! peer addresses), `petnames` and `name_skeletons` (see `names.rs`), and the blob trees of
//! [`Blobs`]. Writes that touch several trees hold the store's writer lock and write the
//! commit point last (see [`Store::insert`]). Callers that report success to a person
//! call [`Store::flush`] first.
//!
//! Every value is a typed struct in one encoding (`codec.rs`); the record indexes are
//! described once (`index.rs`); the layout is versioned and an older home is migrated
//! when it is opened (`migrate.rs`).

mod backend;
mod blobs;
mod circle;
mod codec;
mod dm;
mod group;
mod group_epochs;
mod grouped;
mod heap;
mod held;
mod home;
mod index;
mod keys;
mod mailbox;
mod migrate;
mod moderation;
mod names;
mod olm;
mod people;
mod quota;
mod read;
mod records;
mod social;
mod sync;

pub use backend::{set_store_thread_idle_hook, MemoryImage};
pub use blobs::{BlobCounts, BlobLimits, BlobMeta, BlobOrigin, BlobOwner, BlobStoreError, Blobs};
pub use circle::CircleState;
pub use dm::{Conversation, DmRecord, DmStatus, OutboxEntry, DM_ID_LEN};
pub use group::{GroupLine, GroupQueued, GroupState, TaggedPickle, MAX_KEPT_CIPHERTEXTS};
pub use grouped::InsertRun;
pub use held::{HeldTally, Released, Usage};
pub use mailbox::Presence;
pub use moderation::Moderation;
pub use olm::{ReceiptOut, StoredDevice};
pub use people::MAX_KNOWN_PEERS;
pub use read::LogReads;
pub use records::Compacted;
pub use social::{Notification, MAX_NOTIFICATIONS};

use std::path::Path;

use kith_protocol::{Record, RecordId, RecordKind, VerifiedRecord};
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use backend::{Db, Tree};
use records::Records;
use thiserror::Error;

use keys::{log_key, log_value};

/// What went wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another process (a running daemon) holds the database.
    #[error("the store at {path} is in use by another process (is a kith daemon running?)")]
    Locked {
        /// The database folder.
        path: String,
    },
    /// The database failed (disk, corruption).
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// Bytes on disk that do not decode: the store is damaged.
    #[error("store is damaged: {0}")]
    Corrupt(String),
    /// The store was written by a newer kith, in a layout this one does not know.
    #[error(
        "the store has layout {found}, written by a newer kith (this one knows layouts up \
         to {known})"
    )]
    NewerSchema {
        /// The store's layout.
        found: u32,
        /// The newest layout this kith knows.
        known: u32,
    },
}

/// The result of [`Store::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A record the store did not have; it is now stored and indexed.
    New,
    /// The store already had this record; nothing changed.
    Duplicate,
    /// The record was deleted by its author (a tombstone is kept); it is not stored.
    Deleted,
    /// The author already has a different record at this seq. The new one is kept as
    /// evidence only and the author is flagged; the log is not overwritten.
    Fork {
        /// The record already in the log at that seq.
        existing: RecordId,
    },
}

/// A record read back from the store (it was verified before it was stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's id.
    pub id: RecordId,
    /// Its content.
    pub record: Record,
}

/// A follow relation's latest state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowState {
    /// The seq of the record that set it.
    pub seq: u64,
    /// Whether the follow is active.
    pub active: bool,
}

/// Counts shown by `kith status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records stored.
    pub records: u64,
    /// Posts stored.
    pub posts: u64,
    /// Authors flagged for forking their log.
    pub forked_authors: u64,
}

/// The typed store.
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// id -> signed bytes (`records.rs`).
    records: Records,
    log: Tree,
    by_time: Tree,
    by_tag: Tree,
    follows: Tree,
    followers: Tree,
    subs: Tree,
    profiles: Tree,
    /// The latest `Devices` record of each author (see `olm.rs`).
    devices: Tree,
    /// The latest `Mailboxes` record of each author (see `mailbox.rs`).
    mailboxes: Tree,
    /// This node's own mailbox choices and its peers' presence (see `mailbox.rs`).
    mailbox_local: Tree,
    /// Envelopes this node holds as a mailbox for others (see `held.rs`).
    held: Tree,
    /// This node's device account and Olm sessions, as pickles (see `olm.rs`).
    olm: Tree,
    /// Private groups (`group.rs`).
    groups: Tree,
    forks: Tree,
    flagged: Tree,
    peers: Tree,
    dm_msgs: Tree,
    dm_index: Tree,
    outbox: Tree,
    replies: Tree,
    reactions: Tree,
    tombstones: Tree,
    expiry: Tree,
    notifications: Tree,
    moderation: Tree,
    /// Whether anyone was ever blocked or muted in this store: when not, reading the
    /// moderation state of each incoming record's author is skipped.
    moderation_used: Arc<std::sync::atomic::AtomicBool>,
    block_periods: Tree,
    blobs: Tree,
    blob_refs: Tree,
    blob_lru: Tree,
    blob_manifests: Tree,
    petnames: Tree,
    names: Tree,
    reposts: Tree,
    author_counts: Tree,
    strangers: Tree,
    tally: Arc<quota::Tally>,
    /// Per author, a seq this store held with every seq before it (where
    /// [`Store::contiguous_seq`] goes on from; see `sync.rs`).
    contiguous: Arc<Mutex<sync::ContiguousHints>>,
    /// Serialises writes that touch several trees.
    writer: Arc<Mutex<()>>,
    /// Serialises flushes.
    flush_lock: Arc<tokio::sync::Mutex<()>>,
    /// Flush requests taken so far, and the last request known to be covered by a
    /// finished flush: writers that wait together share one flush.
    flush_requests: Arc<AtomicU64>,
    flushed_upto: Arc<AtomicU64>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// The store's default in-memory cache. sled's own default (1 GiB) would let a node's
/// memory grow with everything it ever stored; records read often (the recent feed) fit
/// many times over in this. 16 MiB (32 before 2026-12-05): at 1,000,000 records every
/// feed's p99 stayed under 3.5 ms with it (docs/benchmarks.md, "The store at scale").
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// The size of sled's log segments in a store this kith creates. With sled's default
/// (512 KiB) the store took about 11 times its records' signed bytes at 100,000 records
/// and 13 times at 1,000,000: dead copies of rewritten pages stay in segments that are
/// not yet half dead. In a synthetic test (200,000 records and three indexes) 4 MiB
/// segments took 0.46 of the space of 512 KiB ones (8 MiB: 0.45, 16 MiB: 0.52) for
/// about 7 MiB more resident memory (8 MiB: 12 MiB more); see docs/benchmarks.md,
/// "sled's segment size". sled fixes the size when it creates a database and refuses
/// another one later, so a store keeps the size it was created with
/// ([`segment_size_for`]).
pub const SEGMENT_BYTES: usize = 4 * 1024 * 1024;

/// sled's segment size before [`SEGMENT_BYTES`] (its own default), which older stores have.
const OLD_SEGMENT_BYTES: usize = 512 * 1024;

/// Single-key writes a page of `log`, `by_time` and `by_tag` gathers before sled writes
/// it whole (sled's default for the other trees: 10). Measured at 300,000 records: 20
/// cut sled's own log writes by a fifth; each fragment a page keeps costs a log read
/// when it is read from disk and ~48 bytes of memory while the store is open.
const APPEND_TREE_FRAGMENTS: usize = 20;

/// The segment size to open the store in `path` with: the one recorded in sled's `conf`
/// file when the store exists, sled's old default for a store with data and no readable
/// `conf`, and `new` for a new store.
fn segment_size_for(path: &Path, new: usize) -> usize {
    if let Ok(conf) = std::fs::read(path.join("conf")) {
        let recorded = String::from_utf8_lossy(&conf)
            .lines()
            .find_map(|line| line.strip_prefix("segment_size: ")?.trim().parse::<usize>().ok())
            .filter(|size| size.is_power_of_two() && (256..=1 << 24).contains(size));
        if let Some(size) = recorded {
            return size;
        }
    }
    let has_data = std::fs::metadata(path.join("db")).is_ok_and(|m| m.len() > 0);
    if has_data {
        OLD_SEGMENT_BYTES
    } else {
        new
    }
}

impl Store {
    /// Opens (or creates) the store in `path`, with the default cache.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process has it open; other sled errors.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the store in `path`, keeping at most about `cache_bytes` of it
    /// in memory (sled's page cache; what was read or written recently).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        Self::open_sized(path, cache_bytes, segment_size_for(path, SEGMENT_BYTES))
    }

    /// Opens the store in `path` as [`Store::open`] does, creating it (when new) with sled
    /// segments of `segment_bytes` rather than [`SEGMENT_BYTES`]: for benchmarks that
    /// compare sizes, and tests of stores made by older kiths. An existing store keeps
    /// its own size.
    ///
    /// # Errors
    /// As [`Store::open`]; `segment_bytes` must be a power of two from 256 B to 16 MiB.
    pub fn open_with_segments(path: &Path, segment_bytes: usize) -> Result<Self, StoreError> {
        Self::open_sized(path, DEFAULT_CACHE_BYTES, segment_size_for(path, segment_bytes))
    }

    fn open_sized(path: &Path, cache_bytes: u64, segment_size: usize) -> Result<Self, StoreError> {
        // A store closed a moment ago in this process may still be held by sled's
        // background flusher: try a few times before calling it locked.
        let mut tries = 0;
        loop {
            match Self::open_once(path, cache_bytes, segment_size) {
                Err(StoreError::Locked { .. }) if tries < 20 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path, cache_bytes: u64, segment_size: usize) -> Result<Self, StoreError> {
        let config = sled::Config::new().path(path).cache_capacity(cache_bytes);
        let db = config.segment_size(segment_size).open().map_err(|e| match &e {
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("could not acquire lock") =>
            {
                StoreError::Locked { path: path.display().to_string() }
            }
            _ => StoreError::Sled(e),
        })?;
        Self::over(Db::from(db), Some(path))
    }

    /// A new, empty store in memory (see [`Store::memory_image`]).
    ///
    /// # Errors
    /// None in practice (the memory backend does not fail); the type is the store's.
    pub fn open_memory() -> Result<Self, StoreError> {
        Self::over(Db::memory(), None)
    }

    /// What a crash of this store now would leave, for [`Store::open_memory_image`]: the
    /// writes flushed so far, nothing written after the last flush. `None` for a store on
    /// disk (its image is its files).
    pub fn memory_image(&self) -> Option<MemoryImage> {
        self.db.image()
    }

    /// Opens a store in memory from `image` (a restart after a crash: only what was
    /// flushed is there), migrating and checking it as [`Store::open`] does.
    ///
    /// # Errors
    /// As [`Store::open`], except that nothing is locked.
    pub fn open_memory_image(image: MemoryImage) -> Result<Self, StoreError> {
        Self::over(Db::from_image(image), None)
    }

    /// The typed store over `db`, once `db` is at the current layout; its records in the
    /// record heap in `path` (a store on disk), else in the `records` tree.
    fn over(db: Db, path: Option<&Path>) -> Result<Self, StoreError> {
        migrate::run(&db)?;
        // The name index of an older store, keyed by folded names; `name_skeletons`
        // replaces it (rebuilt by `backfill_names`).
        db.drop_tree("names")?;
        let tree = |name: &str| db.open_tree(name);
        let records = match path {
            Some(path) => Records::heap(&db, &path.join("heap"))?,
            None => Records::Tree(tree("records")?),
        };
        let store = Self {
            log: tree("log")?,
            by_time: tree("by_time")?,
            by_tag: tree("by_tag")?,
            follows: tree("follows")?,
            followers: tree("followers")?,
            subs: tree("subs")?,
            profiles: tree("profiles")?,
            devices: tree("devices")?,
            mailboxes: tree("mailboxes")?,
            mailbox_local: tree("mailbox_local")?,
            held: tree("held")?,
            olm: tree("olm")?,
            groups: tree("groups")?,
            forks: tree("forks")?,
            flagged: tree("flagged")?,
            peers: tree("peers")?,
            dm_msgs: tree("dm_msgs")?,
            dm_index: tree("dm_index")?,
            outbox: tree("outbox")?,
            replies: tree("replies")?,
            reactions: tree("reactions")?,
            tombstones: tree("tombstones")?,
            expiry: tree("expiry")?,
            notifications: tree("notifications")?,
            moderation_used: Arc::new(std::sync::atomic::AtomicBool::new(
                !db.open_tree("moderation")?.is_empty(),
            )),
            moderation: tree("moderation")?,
            block_periods: tree("block_periods")?,
            blobs: tree("blobs")?,
            blob_refs: tree("blob_refs")?,
            blob_lru: tree("blob_lru")?,
            blob_manifests: tree("blob_manifests")?,
            petnames: tree("petnames")?,
            names: tree("name_skeletons")?,
            contiguous: Arc::default(),
            writer: Arc::new(Mutex::new(())),
            flush_lock: Arc::new(tokio::sync::Mutex::new(())),
            flush_requests: Arc::new(AtomicU64::new(0)),
            flushed_upto: Arc::new(AtomicU64::new(0)),
            reposts: tree("reposts")?,
            tally: Arc::new(quota::open_tally(
                &db,
                &records,
                &tree("by_time")?,
                &tree("author_counts")?,
                &tree("strangers")?,
            )?),
            author_counts: tree("author_counts")?,
            strangers: tree("strangers")?,
            records,
            db,
        };
        // The trees written at their ends: their hot leaves take many single writes and
        // are written whole at their split anyway ([`APPEND_TREE_FRAGMENTS`]).
        for tree in [&store.log, &store.by_time, &store.by_tag] {
            tree.set_fragments_per_page(APPEND_TREE_FRAGMENTS);
        }
        store.undo_pending()?;
        store.upgrade_tombstones()?;
        store.backfill_names()?;
        store.count_notifications()?;
        Ok(store)
    }

    /// Makes every write so far durable.
    ///
    /// # Errors
    /// The disk's error.
    pub async fn flush(&self) -> Result<(), StoreError> {
        // Taken after this caller's writes: a flush that starts after this point
        // covers them.
        let ticket = self.flush_requests.fetch_add(1, Ordering::SeqCst) + 1;
        // sled 0.34's flush_async deadlocks when several tasks call it at once (upstream
        // issues #1308, #1241): flushes go one at a time, each a blocking flush (see
        // below).
        let _one_at_a_time = self.flush_lock.lock().await;
        // Group commit: a flush that started after this caller's ticket was taken, and
        // has finished, made its writes durable already.
        if self.flushed_upto.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        let upto = self.flush_requests.load(Ordering::SeqCst);
        self.save_totals()?;
        // The record heap is made durable first: sled's flush then makes durable what
        // points into it.
        let doomed = self.records_before_flush()?;
        let db = self.db.clone();
        if db.in_memory() {
            // In memory: nothing to wait for.
            db.flush()?;
            self.flushed_upto.fetch_max(upto, Ordering::SeqCst);
            return Ok(());
        }
        // On a multi-threaded runtime the flush runs on this thread (its other tasks move
        // to another): a blocking task cost two thread wake-ups more on the way of every
        // flush (to the blocking thread and back), and a direct message waits for two
        // flushes (issue #17: p50 about 0.2 ms less in `scripts/bench-dm`). Elsewhere
        // (a current-thread runtime, where that is not allowed), a blocking task.
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi {
            tokio::task::block_in_place(|| db.flush())?;
        } else {
            tokio::task::spawn_blocking(move || db.flush())
                .await
                .map_err(|e| corrupt(&format!("flush task failed: {e}")))??;
        }
        self.records_flushed(doomed)?;
        self.flushed_upto.fetch_max(upto, Ordering::SeqCst);
        Ok(())
    }

    /// Makes every write so far durable, blocking the thread.
    ///
    /// # Errors
    /// The disk's error.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.save_totals()?;
        let doomed = self.records_before_flush()?;
        self.db.flush()?;
        self.records_flushed(doomed)?;
        Ok(())
    }

    /// Whether the store holds the record `id`.
    ///
    /// # Errors
    /// Disk errors.
    pub fn has(&self, id: &RecordId) -> Result<bool, StoreError> {
        self.records.contains(id)
    }

    /// Stores a verified record and indexes it, unless it is already stored or forks its
    /// author's log. Counted as a kept record that is not a stranger's (see
    /// [`Store::insert_kept`] for the rest).
    ///
    /// # Errors
    /// Disk errors; nothing is half-written.
    pub fn insert(&self, rec: &VerifiedRecord) -> Result<Inserted, StoreError> {
        // One writer at a time per store. sled's own transactions take a process-wide
        // lock and were seen to deadlock against flushes, so writes are ordered instead:
        // indexes first, the record last. The record is the commit point: a crash before
        // it leaves index entries that the next opening takes back (`records/pending.rs`).
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        self.insert_locked(rec, false)
    }

    /// [`Store::insert`] with the writer lock held; `stranger` queues the record for
    /// eviction.
    fn insert_locked(&self, rec: &VerifiedRecord, stranger: bool) -> Result<Inserted, StoreError> {
        let id = rec.id();
        let r = rec.record();
        let lkey = log_key(&r.author, r.seq);
        // The log entry is read first: a stored record always has one (written before
        // the record, never removed), so without it the record is not stored, and a new
        // record costs two reads (log, tombstones) rather than three. Past the log's tip
        // there is none to read.
        let existing = self.logged_at(&r.author, r.seq)?;
        if let Some(inserted) = self.not_new(rec, existing, |id| self.records.contains(id))? {
            return Ok(inserted);
        }
        self.totals_change()?;
        let post = matches!(r.kind, RecordKind::Post(_) | RecordKind::Private(_));
        self.log.insert(&lkey[..], &log_value(&id, post)[..])?;
        self.log_extended(&r.author, r.seq);
        self.put_indexed(&id, rec.bytes(), r, stranger)?;
        Ok(Inserted::New)
    }

    /// Bytes the store takes on disk (sled's own estimate, and the record heap's files).
    pub fn size_on_disk(&self) -> u64 {
        let heap = self.records.heap_bytes().map_or(0, |(files, _)| files);
        self.db.size_on_disk().unwrap_or(0) + heap
    }

    /// Records stored and the sum of their signed bytes, by reading every record: for
    /// tools that compare the store's size on disk with what it holds (slow on a big
    /// store; nothing the node calls).
    ///
    /// # Errors
    /// Disk errors.
    pub fn record_bytes(&self) -> Result<(u64, u64), StoreError> {
        let (mut count, mut bytes) = (0u64, 0u64);
        self.records.for_each(false, |_, len| {
            count += 1;
            bytes += len;
            Ok(())
        })?;
        Ok((count, bytes))
    }

    /// Every tree's name, entries, and bytes of keys and values, by reading them all: for
    /// tools that show where a store's bytes go (slow on a big store; nothing the node
    /// calls). The record heap follows as `heap live` (records there, bytes of their
    /// frames; its files' bytes are [`Store::heap_file_bytes`]).
    ///
    /// # Errors
    /// Disk errors.
    pub fn tree_sizes(&self) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let mut out = Vec::new();
        for name in self.db.tree_names() {
            let tree = self.db.open_tree(&name)?;
            let (mut entries, mut bytes) = (0u64, 0u64);
            for item in tree.iter() {
                let (key, value) = item?;
                entries += 1;
                bytes += (key.len() + value.len()) as u64;
            }
            out.push((String::from_utf8_lossy(&name).into_owned(), entries, bytes));
        }
        if self.records.heap_bytes().is_some() {
            let (mut entries, mut bytes) = (0u64, 0u64);
            self.records.for_each_heap_loc(|frame| {
                entries += 1;
                bytes += frame;
            })?;
            out.push(("heap live".to_owned(), entries, bytes));
        }
        Ok(out)
    }

    /// The record heap's segment files and the bytes they take (dead frames included);
    /// `None` for a store without one (in memory).
    pub fn heap_file_bytes(&self) -> Option<(usize, u64)> {
        let (files, _) = self.records.heap_bytes()?;
        Some((self.records.heap_segments(), files))
    }

    /// Record, post and flag counts.
    pub fn counts(&self) -> Counts {
        Counts {
            records: self.total_count(),
            posts: self.post_count(),
            forked_authors: self.flagged.len() as u64,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
