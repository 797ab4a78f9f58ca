//! The store's records (id -> signed bytes), on disk in the record heap (`heap.rs`) with
//! sled's `record_locs` tree (id -> [`Loc`]) saying where each is; in memory (the memory
//! backend) in the `records` tree as before.
//!
//! A store written before the heap keeps its records in its `records` tree: they are
//! read from there (every lookup that misses `record_locs` tries it, unless it was empty
//! when the store opened), erased from there, and never moved in bulk, so such a store
//! opens as fast as before. New records go to the heap.
//!
//! The order of writes keeps the store's rule (indexes first, the record last): the
//! frame is written to the heap and noted begun, then the indexes (a feed's entries name
//! the frame), then its location to `record_locs`, which is the commit point
//! (`records/pending.rs`). The live bytes of each heap segment are kept in memory, saved by each flush
//! (key `heap_live` of the default tree) and removed by the first write after it that
//! changes them, as the totals are (`quota.rs`); a store opened without them counts them
//! from `record_locs` before its first compaction.
//!
//! A record whose frame reads back damaged (missing, cut short, failing its check) reads
//! as not stored; the next compaction round forgets it ([`Store::forget_damaged`]: its
//! location and log entry go, it is uncounted), so history sync fetches it again.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use bincode::{Decode, Encode};
use kith_protocol::{AuthorId, RecordId};
use sled::IVec;

use super::{
    backend::{lock, Db, Tree},
    codec::{self, Value},
    corrupt,
    heap::{Heap, Lane, Loc},
    keys::{id_suffix, u64_at},
    Store, StoreError,
};

mod compact;
mod pending;

pub use compact::Compacted;
#[cfg(test)]
pub(super) use compact::{TEST_COMPACT_ROUND_BYTES, TEST_REST_PUTS};

#[cfg(test)]
thread_local! {
    /// Stores opened on disk by this thread keep their records in the `records` tree, as
    /// a kith before the heap did (tests of such stores).
    pub(super) static TEST_TREE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Key of the saved live bytes per heap segment (default tree).
const LIVE_KEY: &[u8] = b"heap_live";

/// The live bytes of each heap segment, as saved by a flush.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
struct HeapLive(Vec<(u32, u64)>);

impl Value for HeapLive {
    const WHAT: &'static str = "heap live bytes";
}

/// Where a store's records are.
#[derive(Clone)]
pub(super) enum Records {
    /// The `records` tree (the memory backend).
    Tree(Tree),
    /// The record heap, with the `records` tree of an older store read too.
    Heap(Arc<HeapRecords>),
}

pub(super) struct HeapRecords {
    heap: Heap,
    /// id -> [`Loc`].
    locs: Tree,
    /// The `records` tree of a store written before the heap.
    legacy: Tree,
    /// Whether `legacy` may hold records (it had some when the store opened).
    legacy_used: bool,
    /// The default tree (for [`LIVE_KEY`]).
    db: Db,
    /// Whether the default tree holds live bytes that are still right.
    saved: AtomicBool,
    /// Segments compacted, to be removed by the next flush.
    doomed: Mutex<Vec<u32>>,
    /// Segments compaction could not read to their end (a torn frame before live ones):
    /// not compacted again until the store opens again.
    stuck: Mutex<Vec<u32>>,
    /// Records whose frame read back missing, cut short or failing its check, and where:
    /// forgotten by the next [`Store::forget_damaged`].
    damaged: Mutex<Vec<(RecordId, Loc)>>,
    /// Records stored (by [`Records::put`]) since the store opened.
    puts: AtomicU64,
    /// `puts` as the last [`Store::compact_records`] saw it.
    puts_seen: AtomicU64,
    /// Keys of the note of records begun written since it was last removed
    /// (`pending.rs`).
    noted: AtomicUsize,
}

/// Damaged records remembered at most until the next [`Store::forget_damaged`].
const MAX_DAMAGED: usize = 4096;

impl Records {
    /// The records of a store on disk: the heap in `dir`, over `db`'s trees.
    ///
    /// # Errors
    /// Disk errors.
    pub(super) fn heap(db: &Db, dir: &std::path::Path) -> Result<Self, StoreError> {
        #[cfg(test)]
        if TEST_TREE_ONLY.with(std::cell::Cell::get) {
            return Ok(Self::Tree(db.open_tree("records")?));
        }
        let heap = Heap::open(dir).map_err(|e| StoreError::Sled(e.into()))?;
        let legacy = db.open_tree("records")?;
        let saved = codec::get::<HeapLive>(db, LIVE_KEY)?;
        let locs = db.open_tree("record_locs")?;
        if let Some(HeapLive(live)) = &saved {
            heap.set_live(live.iter().copied().collect());
        } else if locs.is_empty() {
            heap.set_live(BTreeMap::new());
        }
        Ok(Self::Heap(Arc::new(HeapRecords {
            heap,
            locs,
            legacy_used: !legacy.is_empty(),
            legacy,
            db: db.clone(),
            saved: AtomicBool::new(saved.is_some()),
            doomed: Mutex::default(),
            stuck: Mutex::default(),
            damaged: Mutex::default(),
            puts: AtomicU64::new(0),
            puts_seen: AtomicU64::new(0),
            noted: AtomicUsize::new(0),
        })))
    }

    /// The signed bytes of record `id`.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub(super) fn get(&self, id: &RecordId) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::Tree(t) => Ok(t.get(id.as_bytes())?.map(|b| b.to_vec())),
            Self::Heap(h) => h.get(id),
        }
    }

    /// Whether record `id` is stored.
    ///
    /// # Errors
    /// Disk errors.
    pub(super) fn contains(&self, id: &RecordId) -> Result<bool, StoreError> {
        match self {
            Self::Tree(t) => Ok(t.contains_key(id.as_bytes())?),
            Self::Heap(h) => Ok(h.locs.contains_key(id.as_bytes())?
                || (h.legacy_used && h.legacy.contains_key(id.as_bytes())?)),
        }
    }

    /// Writes record `id`'s frame to the heap (a stranger's to the strangers' segments)
    /// and notes it begun (`pending.rs`): the first step of an insert, before its
    /// indexes, which [`Records::commit`] ends. `None` in memory: the bytes go at the
    /// commit.
    ///
    /// # Errors
    /// Disk errors.
    pub(super) fn begin(
        &self,
        id: &RecordId,
        bytes: &[u8],
        lane: Lane,
    ) -> Result<Option<Loc>, StoreError> {
        let Self::Heap(h) = self else { return Ok(None) };
        h.changed()?;
        let loc = h.heap.append_in(lane, bytes).map_err(io)?;
        h.note_pending(&[(*id, loc)])?;
        Ok(Some(loc))
    }

    /// Stores record `id`, begun at `loc`: the commit point of an insert (under the
    /// writer lock).
    ///
    /// # Errors
    /// Disk errors.
    pub(super) fn commit(
        &self,
        id: &RecordId,
        bytes: &[u8],
        loc: Option<Loc>,
    ) -> Result<(), StoreError> {
        match (self, loc) {
            (Self::Tree(t), _) => {
                t.insert(id.as_bytes(), bytes)?;
            }
            (Self::Heap(h), Some(loc)) => {
                codec::put(&h.locs, id.as_bytes(), &loc)?;
                h.puts.fetch_add(1, Ordering::Relaxed);
                h.end_pending()?;
            }
            (Self::Heap(_), None) => return Err(corrupt("a record committed without its frame")),
        }
        Ok(())
    }

    /// Stores many records at once (under the writer lock), their ids distinct and not
    /// stored: their signed bytes first (the heap: one write, noted begun), then
    /// `indexes` (which writes everything else they need, given where each frame is),
    /// then their locations, in id order with a write per leaf of `record_locs`: each
    /// location, the record's commit point, comes after its bytes and its indexes, as
    /// with [`Records::commit`].
    ///
    /// # Errors
    /// Disk errors, or `indexes`'s; then the frames written are dead space, and what was
    /// indexed stays begun until [`Store::undo_pending`].
    pub(super) fn put_many(
        &self,
        records: &[(RecordId, &[u8])],
        indexes: impl FnOnce(Option<&[Loc]>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut pairs = Vec::with_capacity(records.len());
        let tree = match self {
            Self::Tree(t) => {
                indexes(None)?;
                for (id, bytes) in records {
                    pairs.push((IVec::from(id.as_bytes()), IVec::from(*bytes)));
                }
                t
            }
            Self::Heap(h) => {
                h.changed()?;
                let frames: Vec<&[u8]> = records.iter().map(|(_, bytes)| *bytes).collect();
                let locs = h.heap.append_many(&frames).map_err(io)?;
                let encoded = (|| {
                    let begun: Vec<_> =
                        records.iter().map(|(id, _)| *id).zip(locs.clone()).collect();
                    h.note_pending(&begun)?;
                    indexes(Some(&locs))?;
                    for ((id, _), loc) in records.iter().zip(&locs) {
                        pairs.push((IVec::from(id.as_bytes()), IVec::from(codec::encode(loc)?)));
                    }
                    Ok::<_, StoreError>(())
                })();
                if let Err(e) = encoded {
                    locs.iter().for_each(|loc| h.heap.dead(loc));
                    return Err(e);
                }
                &h.locs
            }
        };
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        tree.insert_sorted(&pairs)?;
        if let Self::Heap(h) = self {
            h.puts.fetch_add(records.len() as u64, Ordering::Relaxed);
            h.end_pending()?;
        }
        Ok(())
    }

    /// Removes record `id`; whether it was stored (under the writer lock).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub(super) fn remove(&self, id: &RecordId) -> Result<bool, StoreError> {
        match self {
            Self::Tree(t) => Ok(t.remove(id.as_bytes())?.is_some()),
            Self::Heap(h) => {
                h.changed()?;
                if let Some(value) = h.locs.remove(id.as_bytes())? {
                    h.heap.dead(&codec::decode::<Loc>(&value)?);
                    return Ok(true);
                }
                Ok(h.legacy_used && h.legacy.remove(id.as_bytes())?.is_some())
            }
        }
    }

    /// Ids of stored records starting with `prefix` that `keep` keeps, in order, at most
    /// `limit`.
    ///
    /// # Errors
    /// Disk errors.
    pub(super) fn ids_with_prefix(
        &self,
        prefix: &[u8],
        keep: impl Fn(&RecordId) -> bool,
        limit: usize,
    ) -> Result<Vec<RecordId>, StoreError> {
        let trees: Vec<&Tree> = match self {
            Self::Tree(t) => vec![t],
            Self::Heap(h) if h.legacy_used => vec![&h.locs, &h.legacy],
            Self::Heap(h) => vec![&h.locs],
        };
        let mut out = Vec::new();
        for tree in trees {
            let mut found = 0;
            for key in tree.scan_prefix(prefix).keys() {
                let key = key?;
                let bytes: [u8; 32] = key.as_ref().try_into().map_err(|_| corrupt("record key"))?;
                let id = RecordId::from_bytes(bytes);
                if found < limit && keep(&id) {
                    out.push(id);
                    found += 1;
                }
            }
        }
        out.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        out.truncate(limit);
        Ok(out)
    }

    /// Calls `f` with every stored record's signed bytes (or, where `bytes` is false, with
    /// only its length known: an empty slice and the length).
    ///
    /// # Errors
    /// Disk errors or damage, or `f`'s.
    pub(super) fn for_each(
        &self,
        bytes: bool,
        mut f: impl FnMut(&[u8], u64) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let (tree, heap) = match self {
            Self::Tree(t) => (t, None),
            Self::Heap(h) => (&h.legacy, Some(h)),
        };
        for item in tree.iter() {
            let (_, value) = item?;
            f(&value, value.len() as u64)?;
        }
        let Some(h) = heap else { return Ok(()) };
        for item in h.locs.iter() {
            let (_, value) = item?;
            let loc = codec::decode::<Loc>(&value)?;
            if !bytes {
                f(&[], u64::from(loc.len))?;
            } else if let Some(record) = h.heap.read(&loc).map_err(io)? {
                f(&record, record.len() as u64)?;
            }
        }
        Ok(())
    }

    /// Records stored since the store opened (0 without a heap).
    #[cfg(test)]
    pub(super) fn puts(&self) -> u64 {
        match self {
            Self::Tree(_) => 0,
            Self::Heap(h) => h.puts.load(Ordering::Relaxed),
        }
    }

    /// Where record `id`'s frame is (tests).
    #[cfg(test)]
    pub(super) fn heap_loc(&self, id: &RecordId) -> Option<Loc> {
        let Self::Heap(h) = self else { return None };
        let value = h.locs.get(id.as_bytes()).ok()??;
        codec::decode::<Loc>(&value).ok()
    }

    /// Sets the heap's live bytes per segment, right or wrong (tests).
    #[cfg(test)]
    pub(super) fn set_heap_live(&self, live: BTreeMap<u32, u64>) {
        if let Self::Heap(h) = self {
            h.heap.set_live(live);
        }
    }

    /// Segments of the heap (0 without one).
    pub(super) fn heap_segments(&self) -> usize {
        match self {
            Self::Tree(_) => 0,
            Self::Heap(h) => h.heap.segments().len(),
        }
    }

    /// Calls `f` with the frame bytes of every record in the heap.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub(super) fn for_each_heap_loc(&self, mut f: impl FnMut(u64)) -> Result<(), StoreError> {
        let Self::Heap(h) = self else { return Ok(()) };
        for value in h.locs.iter().values() {
            f(codec::decode::<Loc>(&value?)?.frame_bytes());
        }
        Ok(())
    }

    /// The heap's files' bytes and the live bytes among them (`None`: not counted yet);
    /// `None` without a heap.
    pub(super) fn heap_bytes(&self) -> Option<(u64, Option<u64>)> {
        match self {
            Self::Tree(_) => None,
            Self::Heap(h) => Some(h.heap.bytes()),
        }
    }
}

/// The author at the start of a `log` key.
fn author_at(key: &[u8]) -> Option<AuthorId> {
    Some(AuthorId::from_stored(key.get(..32)?.try_into().ok()?))
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Sled(e.into())
}

impl HeapRecords {
    fn get(&self, id: &RecordId) -> Result<Option<Vec<u8>>, StoreError> {
        let mut last = None;
        // A compaction may move the record between reading its location and reading its
        // frame (and a flush remove the old segment): then its location has changed.
        for _ in 0..3 {
            let Some(value) = self.locs.get(id.as_bytes())? else {
                if self.legacy_used {
                    return Ok(self.legacy.get(id.as_bytes())?.map(|b| b.to_vec()));
                }
                return Ok(None);
            };
            let loc = codec::decode::<Loc>(&value)?;
            if last == Some(loc) {
                let mut damaged = lock(&self.damaged);
                if damaged.len() < MAX_DAMAGED && !damaged.contains(&(*id, loc)) {
                    damaged.push((*id, loc));
                }
                return Ok(None);
            }
            if let Some(bytes) = self.heap.read(&loc).map_err(io)? {
                return Ok(Some(bytes));
            }
            last = Some(loc);
        }
        Ok(None)
    }

    /// Removes the saved live bytes before the first write that changes them.
    fn changed(&self) -> Result<(), StoreError> {
        if self.saved.swap(false, Ordering::Relaxed) {
            self.db.remove(LIVE_KEY)?;
        }
        Ok(())
    }

    /// Of the segments whose live count fell to nothing, those no location points into
    /// (each frame's record id, from its bytes, looked up): a count gone wrong must not
    /// remove a record. A segment that does not read to its end, or fails to be checked,
    /// is left to compaction.
    fn verified_empty(&self, segments: Vec<u32>) -> Vec<u32> {
        let pointed_into = |seg: u32| -> Result<bool, StoreError> {
            let (frames, whole) = self.heap.scan(seg).map_err(io)?;
            for (loc, bytes) in &frames {
                let id = RecordId::of_bytes(bytes);
                if let Some(value) = self.locs.get(id.as_bytes())? {
                    if codec::decode::<Loc>(&value)? == *loc {
                        return Ok(true);
                    }
                }
            }
            Ok(!whole)
        };
        segments
            .into_iter()
            .filter(|seg| match pointed_into(*seg) {
                Ok(false) => true,
                Ok(true) => {
                    tracing::warn!(seg, "a heap segment counted empty still holds records");
                    false
                }
                Err(e) => {
                    tracing::warn!(seg, %e, "a heap segment counted empty could not be checked");
                    false
                }
            })
            .collect()
    }

    /// Counts the live bytes of each segment from the locations (under the writer lock).
    fn count(&self) -> Result<(), StoreError> {
        let mut live: BTreeMap<u32, u64> = BTreeMap::new();
        for value in self.locs.iter().values() {
            let loc = codec::decode::<Loc>(&value?)?;
            *live.entry(loc.seg).or_default() += loc.frame_bytes();
        }
        self.heap.set_live(live);
        Ok(())
    }
}

impl Store {
    /// Forgets the records found damaged since the last call (their frame missing, cut
    /// short or failing its check), so that peers' history sync brings them again: each
    /// one's location and its author's log entry go (the log has a hole again, which
    /// sync fills), and it is no longer counted. Its other index entries stay: readers
    /// skip entries without a record, and storing the record again rewrites them. One
    /// read of the whole log finds whose they are (damage is rare; done by
    /// [`Store::compact_records`], off the writers' way). Returns how many were forgotten.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn forget_damaged(&self) -> Result<usize, StoreError> {
        let Records::Heap(h) = &self.records else { return Ok(0) };
        let damaged: BTreeMap<RecordId, Loc> =
            std::mem::take(&mut *lock(&h.damaged)).into_iter().collect();
        if damaged.is_empty() {
            return Ok(0);
        }
        let mut found = Vec::new();
        for item in self.log.iter() {
            let (key, value) = item?;
            let id = id_suffix(&value).ok_or_else(|| corrupt("log value"))?;
            if let Some(loc) = damaged.get(&id) {
                found.push((key, id, *loc));
            }
        }
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        let mut forgotten = 0;
        for (key, id, loc) in found {
            let here = h.locs.get(id.as_bytes())?.map(|v| codec::decode::<Loc>(&v)).transpose()?;
            let entry = self.log.get(&key)?;
            if here != Some(loc) || entry.as_deref().and_then(id_suffix) != Some(id) {
                continue;
            }
            let (Some(author), Some(seq)) = (author_at(&key), u64_at(&key, 32)) else {
                return Err(corrupt("log key"));
            };
            self.totals_change()?;
            h.changed()?;
            self.log_entry_removed(&author, seq);
            self.log.remove(&key)?;
            self.log_entry_removed(&author, seq);
            h.locs.remove(id.as_bytes())?;
            h.heap.dead(&loc);
            self.count_removed(&author)?;
            tracing::warn!(%id, "a damaged record is forgotten: history sync may bring it again");
            forgotten += 1;
        }
        Ok(forgotten)
    }

    /// Before a flush: saves the live bytes (when changed) and takes the segments to
    /// remove once the flush is done ([`Store::records_flushed`]).
    ///
    /// # Errors
    /// Disk errors.
    pub(super) fn records_before_flush(&self) -> Result<Vec<u32>, StoreError> {
        let Records::Heap(h) = &self.records else { return Ok(vec![]) };
        // Strangers' segments emptied by evictions: nothing to copy. A sealed segment gains
        // no location, so once checked it stays empty; the locations' removal is written,
        // and this flush makes it durable before the segment goes.
        let empty = h.verified_empty(h.heap.take_empty());
        let doomed = {
            let mut doomed = lock(&h.doomed);
            for seg in empty {
                if !doomed.contains(&seg) {
                    doomed.push(seg);
                }
            }
            std::mem::take(&mut *doomed)
        };
        {
            let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
            if !h.saved.load(Ordering::Relaxed) {
                if let Some(live) = h.heap.live() {
                    let live = live.into_iter().filter(|(seg, _)| !doomed.contains(seg));
                    codec::put(&h.db, LIVE_KEY, &HeapLive(live.collect()))?;
                    h.saved.store(true, Ordering::Relaxed);
                }
            }
        }
        if let Err(e) = h.heap.sync() {
            lock(&h.doomed).extend(doomed);
            return Err(io(e));
        }
        Ok(doomed)
    }

    /// After a flush: removes the segments compaction emptied before it.
    ///
    /// # Errors
    /// Disk errors.
    pub(super) fn records_flushed(&self, doomed: Vec<u32>) -> Result<(), StoreError> {
        let Records::Heap(h) = &self.records else { return Ok(()) };
        for seg in doomed {
            h.heap.remove(seg).map_err(io)?;
        }
        Ok(())
    }
}
