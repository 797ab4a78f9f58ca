//! What the store keeps its trees in: sled on disk (the daemon), or memory (the
//! deterministic simulation, `scripts/sim-core`, and tests).
//!
//! [`Db`] and [`Tree`] offer the part of sled's API the store uses, with sled's own
//! types for keys, values and errors, so the store's code reads the same over both. Each
//! is an enum over the two backends (one `match` per call, no boxing): the sled path does
//! what it did before, and the on-disk format is sled's, unchanged.
//!
//! The memory backend models a crash: every tree keeps its `live` contents and its
//! `flushed` contents (with the keys written since the last flush), [`Db::flush`] makes
//! flushed equal live, and [`Db::image`] is what a crash leaves: the flushed contents
//! only. [`Db::from_image`] opens a database again from such an image (a restart). Tree
//! creation and drops, and the id counter ([`Db::generate_id`]), count as durable at once
//! (sled's ids never go back after a crash either).

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::{Bound, Deref, RangeBounds},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
};

pub(crate) use sled::IVec;

/// The name sled gives its default tree (listed by [`Db::tree_names`] on both backends).
const DEFAULT_TREE: &[u8] = b"__sled__default";

/// One database: sled's, or one in memory. Derefs to its default tree, as sled's does.
#[derive(Clone)]
pub(crate) struct Db {
    kind: DbKind,
    default: Tree,
}

#[derive(Clone)]
enum DbKind {
    Sled(sled::Db),
    Memory(Arc<MemDb>),
}

impl From<sled::Db> for Db {
    fn from(db: sled::Db) -> Self {
        let default = Tree::Sled(sled::Tree::clone(&db));
        Self { kind: DbKind::Sled(db), default }
    }
}

impl Deref for Db {
    type Target = Tree;

    fn deref(&self) -> &Tree {
        &self.default
    }
}

impl Db {
    /// A new, empty database in memory.
    pub(crate) fn memory() -> Self {
        Self::from_image(MemoryImage::default())
    }

    /// A database in memory holding what `image` holds (a restart after a crash).
    pub(crate) fn from_image(image: MemoryImage) -> Self {
        let mut trees = image.trees;
        let default =
            Arc::new(MemTree::from_flushed(trees.remove(DEFAULT_TREE).unwrap_or_default()));
        let trees = trees.into_iter().map(|(name, t)| (name, Arc::new(MemTree::from_flushed(t))));
        let mem = MemDb {
            default: Arc::clone(&default),
            trees: Mutex::new(trees.collect()),
            ids: AtomicU64::new(image.ids),
        };
        Self { kind: DbKind::Memory(Arc::new(mem)), default: Tree::Memory(default) }
    }

    /// Whether this database is in memory.
    pub(crate) fn in_memory(&self) -> bool {
        matches!(self.kind, DbKind::Memory(_))
    }

    /// What a crash now would leave: the flushed contents of every tree (`None` for sled,
    /// whose image is its files).
    pub(crate) fn image(&self) -> Option<MemoryImage> {
        let DbKind::Memory(mem) = &self.kind else { return None };
        let mut trees: BTreeMap<Vec<u8>, BTreeMap<IVec, IVec>> =
            lock(&mem.trees).iter().map(|(name, t)| (name.clone(), t.flushed())).collect();
        trees.insert(DEFAULT_TREE.to_vec(), mem.default.flushed());
        Some(MemoryImage { trees, ids: mem.ids.load(Ordering::SeqCst) })
    }

    /// Opens (or creates) the tree `name`.
    pub(crate) fn open_tree(&self, name: impl AsRef<[u8]>) -> sled::Result<Tree> {
        match &self.kind {
            DbKind::Sled(db) => Ok(Tree::Sled(db.open_tree(name)?)),
            DbKind::Memory(mem) => {
                let name = name.as_ref();
                if name == DEFAULT_TREE {
                    return Ok(self.default.clone());
                }
                let mut trees = lock(&mem.trees);
                let tree = trees.entry(name.to_vec()).or_default();
                Ok(Tree::Memory(Arc::clone(tree)))
            }
        }
    }

    /// Drops the tree `name` and everything in it; whether it existed.
    pub(crate) fn drop_tree(&self, name: impl AsRef<[u8]>) -> sled::Result<bool> {
        match &self.kind {
            DbKind::Sled(db) => db.drop_tree(name),
            DbKind::Memory(mem) => {
                let name = name.as_ref();
                if name == DEFAULT_TREE {
                    return Err(sled::Error::Unsupported("cannot remove the default tree".into()));
                }
                Ok(lock(&mem.trees).remove(name).is_some())
            }
        }
    }

    /// The names of every tree, the default one included.
    pub(crate) fn tree_names(&self) -> Vec<IVec> {
        match &self.kind {
            DbKind::Sled(db) => db.tree_names(),
            DbKind::Memory(mem) => std::iter::once(IVec::from(DEFAULT_TREE))
                .chain(lock(&mem.trees).keys().map(|n| IVec::from(n.as_slice())))
                .collect(),
        }
    }

    /// Makes every write so far durable (in memory: flushed becomes live).
    pub(crate) fn flush(&self) -> sled::Result<usize> {
        match &self.kind {
            DbKind::Sled(db) => db.flush(),
            DbKind::Memory(mem) => {
                let trees: Vec<Arc<MemTree>> = lock(&mem.trees).values().cloned().collect();
                let flushed = trees.iter().chain([&mem.default]).map(|t| t.flush()).sum();
                Ok(flushed)
            }
        }
    }

    /// A number never returned before by this database, even after a crash.
    pub(crate) fn generate_id(&self) -> sled::Result<u64> {
        match &self.kind {
            DbKind::Sled(db) => db.generate_id(),
            DbKind::Memory(mem) => Ok(mem.ids.fetch_add(1, Ordering::SeqCst)),
        }
    }

    /// sled's reads from its log: pages read, reads that waited for their bytes to reach
    /// the file, and that wait in all (`KITH-PATCHES.md`, 47 and 48); none in memory.
    pub(crate) fn log_reads(&self) -> (u64, u64, std::time::Duration) {
        match &self.kind {
            DbKind::Sled(db) => {
                let (waits, waited) = db.kith_read_waits();
                (db.kith_page_reads(), waits, waited)
            }
            DbKind::Memory(_) => (0, 0, std::time::Duration::ZERO),
        }
    }

    /// Bytes on disk (in memory: the bytes of the keys and values held).
    pub(crate) fn size_on_disk(&self) -> sled::Result<u64> {
        match &self.kind {
            DbKind::Sled(db) => db.size_on_disk(),
            DbKind::Memory(mem) => {
                let trees: Vec<Arc<MemTree>> = lock(&mem.trees).values().cloned().collect();
                Ok(trees.iter().chain([&mem.default]).map(|t| t.bytes()).sum())
            }
        }
    }
}

/// What a memory database keeps over a crash: each tree's flushed contents, and the id
/// counter. Cheap to clone (values are shared).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryImage {
    trees: BTreeMap<Vec<u8>, BTreeMap<IVec, IVec>>,
    ids: u64,
}

impl MemoryImage {
    /// Every tree's name and contents, in name then key order (for digests).
    pub fn trees(&self) -> impl Iterator<Item = (&[u8], &BTreeMap<IVec, IVec>)> {
        self.trees.iter().map(|(name, tree)| (name.as_slice(), tree))
    }
}

struct MemDb {
    default: Arc<MemTree>,
    trees: Mutex<BTreeMap<Vec<u8>, Arc<MemTree>>>,
    ids: AtomicU64,
}

/// One tree of a memory database.
#[derive(Default)]
pub(crate) struct MemTree {
    state: Mutex<MemState>,
}

#[derive(Default)]
struct MemState {
    live: BTreeMap<IVec, IVec>,
    flushed: BTreeMap<IVec, IVec>,
    /// Keys written or removed since the last flush.
    dirty: BTreeSet<IVec>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one holds consistent maps.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemTree {
    fn from_flushed(flushed: BTreeMap<IVec, IVec>) -> Self {
        let state = MemState { live: flushed.clone(), flushed, dirty: BTreeSet::new() };
        Self { state: Mutex::new(state) }
    }

    fn flushed(&self) -> BTreeMap<IVec, IVec> {
        lock(&self.state).flushed.clone()
    }

    /// Makes flushed equal live; the number of keys that changed.
    fn flush(&self) -> usize {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let dirty = std::mem::take(&mut state.dirty);
        for key in &dirty {
            match state.live.get(key) {
                Some(value) => state.flushed.insert(key.clone(), value.clone()),
                None => state.flushed.remove(key),
            };
        }
        dirty.len()
    }

    fn bytes(&self) -> u64 {
        lock(&self.state).live.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }

    fn write(&self, key: &[u8], value: Option<IVec>) -> Option<IVec> {
        let mut state = lock(&self.state);
        let key = IVec::from(key);
        state.dirty.insert(key.clone());
        match value {
            Some(value) => state.live.insert(key, value),
            None => state.live.remove(&key),
        }
    }

    /// The first entry within `(lo, hi)` from the front (or the back).
    fn next_in(&self, lo: &Bound<IVec>, hi: &Bound<IVec>, back: bool) -> Option<(IVec, IVec)> {
        if empty_range(lo, hi) {
            return None;
        }
        let state = lock(&self.state);
        let bounds = (as_slice(lo), as_slice(hi));
        let mut range = state.live.range::<[u8], _>(bounds);
        let (k, v) = if back { range.next_back()? } else { range.next()? };
        Some((k.clone(), v.clone()))
    }
}

fn as_slice(b: &Bound<IVec>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Whether no key lies within `(lo, hi)` (`BTreeMap::range` panics on such bounds).
fn empty_range(lo: &Bound<IVec>, hi: &Bound<IVec>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        _ => false,
    }
}

fn owned_bound<K: AsRef<[u8]>>(b: Bound<&K>) -> Bound<IVec> {
    match b {
        Bound::Included(k) => Bound::Included(IVec::from(k.as_ref())),
        Bound::Excluded(k) => Bound::Excluded(IVec::from(k.as_ref())),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest key greater than every key starting with `prefix` (none if there is
/// no such key: the prefix is empty or all 0xff).
fn prefix_end(prefix: &[u8]) -> Bound<IVec> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Bound::Excluded(IVec::from(end));
        }
    }
    Bound::Unbounded
}

/// One tree: sled's, or one in memory.
#[derive(Clone)]
pub(crate) enum Tree {
    /// On disk.
    Sled(sled::Tree),
    /// In memory.
    Memory(Arc<MemTree>),
}

impl Tree {
    /// The value at `key`.
    pub(crate) fn get<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<Option<IVec>> {
        match self {
            Self::Sled(t) => t.get(key),
            Self::Memory(t) => Ok(lock(&t.state).live.get(key.as_ref()).cloned()),
        }
    }

    /// Whether `key` has a value.
    pub(crate) fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<bool> {
        match self {
            Self::Sled(t) => t.contains_key(key),
            Self::Memory(t) => Ok(lock(&t.state).live.contains_key(key.as_ref())),
        }
    }

    /// Sets `key` to `value`; the value it had.
    pub(crate) fn insert<K: AsRef<[u8]>, V: Into<IVec>>(
        &self,
        key: K,
        value: V,
    ) -> sled::Result<Option<IVec>> {
        match self {
            Self::Sled(t) => t.insert(key, value),
            Self::Memory(t) => Ok(t.write(key.as_ref(), Some(value.into()))),
        }
    }

    /// Sets every `(key, value)` of `pairs` at once: a crash keeps all of them or none
    /// (sled's `apply_batch`; in memory, one lock). One pair is one plain insert: sled
    /// writes its log buffer to disk (with a `sync_file_range`) at every batch, which
    /// one write does not need to be atomic.
    pub(crate) fn insert_all(&self, pairs: &[(&[u8], &[u8])]) -> sled::Result<()> {
        match (self, pairs) {
            (Self::Sled(t), [(key, value)]) => t.insert(*key, *value).map(|_| ()),
            (Self::Sled(t), _) => {
                let mut batch = sled::Batch::default();
                for (key, value) in pairs {
                    batch.insert(*key, *value);
                }
                t.apply_batch(batch)
            }
            (Self::Memory(t), _) => {
                let mut state = lock(&t.state);
                for (key, value) in pairs {
                    let key = IVec::from(*key);
                    state.dirty.insert(key.clone());
                    state.live.insert(key, IVec::from(*value));
                }
                Ok(())
            }
        }
    }

    /// Sets every `(key, value)` of `pairs`, keys ascending without repeats, as inserts
    /// one after the other would, with each leaf they fall in copied and written once
    /// (vendored sled's `insert_sorted`; KITH-PATCHES.md changes 7 and 28): for many
    /// small writes into few leaves. Not atomic as a whole. Returns how many keys were
    /// new.
    /// How many single-key writes a page of this tree gathers before sled writes it
    /// whole (vendored sled, `KITH-PATCHES.md` change 39; not stored: set at each open).
    pub(crate) fn set_fragments_per_page(&self, n: usize) {
        if let Self::Sled(t) = self {
            t.set_fragments_per_page(n);
        }
    }

    pub(crate) fn insert_sorted(&self, pairs: &[(IVec, IVec)]) -> sled::Result<usize> {
        match self {
            Self::Sled(t) => t.insert_sorted(pairs),
            Self::Memory(t) => {
                Ok(pairs.iter().filter(|(k, v)| t.write(k, Some(v.clone())).is_none()).count())
            }
        }
    }

    /// Removes `key`; the value it had.
    pub(crate) fn remove<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<Option<IVec>> {
        match self {
            Self::Sled(t) => t.remove(key),
            Self::Memory(t) => Ok(t.write(key.as_ref(), None)),
        }
    }

    /// Sets `key` to `new` if its value is `old` (`None`: absent, or removes it).
    pub(crate) fn compare_and_swap<K, OV, NV>(
        &self,
        key: K,
        old: Option<OV>,
        new: Option<NV>,
    ) -> sled::Result<Result<(), sled::CompareAndSwapError>>
    where
        K: AsRef<[u8]>,
        OV: AsRef<[u8]>,
        NV: Into<IVec>,
    {
        match self {
            Self::Sled(t) => t.compare_and_swap(key, old, new),
            Self::Memory(t) => {
                let key = key.as_ref();
                let new = new.map(Into::into);
                let mut state = lock(&t.state);
                let current = state.live.get(key);
                if current.map(AsRef::as_ref) != old.as_ref().map(AsRef::as_ref) {
                    let current = current.cloned();
                    return Ok(Err(sled::CompareAndSwapError { current, proposed: new }));
                }
                let key = IVec::from(key);
                state.dirty.insert(key.clone());
                match new {
                    Some(value) => state.live.insert(key, value),
                    None => state.live.remove(&key),
                };
                Ok(Ok(()))
            }
        }
    }

    /// Every entry, in key order.
    pub(crate) fn iter(&self) -> Iter {
        match self {
            Self::Sled(t) => Iter::Sled(t.iter()),
            Self::Memory(t) => Iter::memory(t, Bound::Unbounded, Bound::Unbounded),
        }
    }

    /// The entries within `range`, in key order.
    pub(crate) fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        match self {
            Self::Sled(t) => Iter::Sled(t.range(range)),
            Self::Memory(t) => {
                let (lo, hi) = (owned_bound(range.start_bound()), owned_bound(range.end_bound()));
                Iter::memory(t, lo, hi)
            }
        }
    }

    /// The entries whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> Iter {
        match self {
            Self::Sled(t) => Iter::Sled(t.scan_prefix(prefix)),
            Self::Memory(t) => {
                let prefix = prefix.as_ref();
                Iter::memory(t, Bound::Included(IVec::from(prefix)), prefix_end(prefix))
            }
        }
    }

    /// The entry with the smallest key.
    pub(crate) fn first(&self) -> sled::Result<Option<(IVec, IVec)>> {
        match self {
            Self::Sled(t) => t.first(),
            Self::Memory(t) => Ok(t.next_in(&Bound::Unbounded, &Bound::Unbounded, false)),
        }
    }

    /// Removes and returns the entry with the smallest key.
    pub(crate) fn pop_min(&self) -> sled::Result<Option<(IVec, IVec)>> {
        match self {
            Self::Sled(t) => t.pop_min(),
            Self::Memory(t) => {
                let mut state = lock(&t.state);
                let popped = state.live.pop_first();
                if let Some((key, _)) = &popped {
                    state.dirty.insert(key.clone());
                }
                Ok(popped)
            }
        }
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Sled(t) => t.len(),
            Self::Memory(t) => lock(&t.state).live.len(),
        }
    }

    /// Whether the tree has no entries.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Self::Sled(t) => t.is_empty(),
            Self::Memory(t) => lock(&t.state).live.is_empty(),
        }
    }

    /// Makes the writes so far durable: sled's flushes the whole database; a memory
    /// tree's only this tree (a caller counting on more would be caught by a simulated
    /// crash).
    pub(crate) fn flush(&self) -> sled::Result<usize> {
        match self {
            Self::Sled(t) => t.flush(),
            Self::Memory(t) => Ok(t.flush()),
        }
    }

    /// Removes every entry.
    pub(crate) fn clear(&self) -> sled::Result<()> {
        match self {
            Self::Sled(t) => t.clear(),
            Self::Memory(t) => {
                let mut guard = lock(&t.state);
                let state = &mut *guard;
                let live = std::mem::take(&mut state.live);
                state.dirty.extend(live.into_keys());
                Ok(())
            }
        }
    }
}

/// Entries of a tree in key order, from either end; like sled's, a memory iterator sees
/// writes made while it runs (it reads one entry at a time past the last one it gave).
pub(crate) enum Iter {
    /// sled's iterator.
    Sled(sled::Iter),
    /// A memory tree's entries still within `(lo, hi)`.
    Memory {
        /// The tree.
        tree: Arc<MemTree>,
        /// Below the next entry from the front.
        lo: Bound<IVec>,
        /// Above the next entry from the back.
        hi: Bound<IVec>,
    },
}

impl Iter {
    fn memory(tree: &Arc<MemTree>, lo: Bound<IVec>, hi: Bound<IVec>) -> Self {
        Self::Memory { tree: Arc::clone(tree), lo, hi }
    }

    /// The keys only.
    pub(crate) fn keys(self) -> impl DoubleEndedIterator<Item = sled::Result<IVec>> {
        self.map(|entry| entry.map(|(key, _)| key))
    }

    /// The values only.
    pub(crate) fn values(self) -> impl DoubleEndedIterator<Item = sled::Result<IVec>> {
        self.map(|entry| entry.map(|(_, value)| value))
    }
}

impl Iterator for Iter {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Sled(it) => it.next(),
            Self::Memory { tree, lo, hi } => {
                let (k, v) = tree.next_in(lo, hi, false)?;
                *lo = Bound::Excluded(k.clone());
                Some(Ok((k, v)))
            }
        }
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Self::Sled(it) => it.next_back(),
            Self::Memory { tree, lo, hi } => {
                let (k, v) = tree.next_in(lo, hi, true)?;
                *hi = Bound::Excluded(k.clone());
                Some(Ok((k, v)))
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// Sets a function sled's own threads (its flusher and I/O pool) call when they have
/// done work and are about to wait; set once per process (the daemon's allocator hook,
/// `cli/src/alloc.rs`; vendored sled's KITH-PATCHES change 15).
pub fn set_store_thread_idle_hook(hook: fn()) {
    sled::set_thread_idle_hook(hook);
}
