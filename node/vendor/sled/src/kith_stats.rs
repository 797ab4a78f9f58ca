//! kith (KITH-PATCHES.md, change 37): a count of the bytes sled writes into its log, by
//! tree and by why, for measuring only. Built with the `kith_write_stats` feature; without
//! it every function here is an empty inline function and nothing is counted.
//!
//! With the feature and `KITH_SLED_WRITE_STATS=<file>` in the environment, the counts are
//! appended to that file when a store's default tree is dropped (the store closed), and
//! start again from zero.

/// Why a message was written to the log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[allow(dead_code)]
pub(crate) enum Why {
    /// A fragment: one key set or removed (`Tree::insert`, `remove`, ...).
    Frag,
    /// Any other fragment (merge intentions, caps, ...).
    OtherLink,
    /// A whole node written because a page had 10 fragments (`link`'s consolidation).
    Consolidate,
    /// A whole leaf written by `Tree::insert_sorted`.
    Sorted,
    /// Both halves of a split.
    Split,
    /// The parent of a split node written with its new child (or a new root).
    SplitParent,
    /// A merge of two nodes.
    Merge,
    /// A page moved by the segment cleaner.
    Cleaner,
    /// The meta page (tree roots) or the id counter.
    Meta,
    /// A page freed.
    Free,
    /// A node replaced for another reason.
    OtherReplace,
}

#[cfg(feature = "kith_write_stats")]
mod imp {
    use super::Why;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::Mutex;

    thread_local! {
        static TREE: RefCell<Vec<u8>> = RefCell::new(Vec::new());
        static WHY: Cell<Option<Why>> = Cell::new(None);
    }

    #[derive(Default)]
    struct Counts {
        by: HashMap<(Vec<u8>, Why), (u64, u64)>,
        trees: HashMap<u64, Vec<u8>>,
        lo: Option<u64>,
        hi: u64,
    }

    static COUNTS: Mutex<Option<Counts>> = Mutex::new(None);

    pub(crate) fn set_tree(name: &[u8]) {
        TREE.with(|t| {
            let mut t = t.borrow_mut();
            if t.as_slice() != name {
                t.clear();
                t.extend_from_slice(name);
            }
        });
    }

    pub(crate) fn set_why(why: Option<Why>) -> Option<Why> {
        WHY.with(|w| w.replace(why))
    }

    pub(crate) fn why() -> Option<Why> {
        WHY.with(Cell::get)
    }

    pub(crate) fn record(why: Why, pid: u64, lsn: i64, len: usize) {
        let mut counts = COUNTS.lock().unwrap();
        let counts = counts.get_or_insert_with(Counts::default);
        let tree = if why == Why::Cleaner {
            let mut name = b"(cleaner) ".to_vec();
            name.extend_from_slice(
                counts.trees.get(&pid).map_or(&b"?"[..], |t| t.as_slice()),
            );
            name
        } else {
            let tree = TREE.with(|t| t.borrow().clone());
            if counts.trees.get(&pid) != Some(&tree) {
                counts.trees.insert(pid, tree.clone());
            }
            tree
        };
        let e = counts.by.entry((tree, why)).or_default();
        e.0 += len as u64;
        e.1 += 1;
        let lsn = lsn.max(0) as u64;
        counts.lo = Some(counts.lo.map_or(lsn, |lo| lo.min(lsn)));
        counts.hi = counts.hi.max(lsn + len as u64);
    }

    fn knob(name: &str) -> Option<usize> {
        std::env::var(name).ok().and_then(|v| v.parse().ok())
    }

    struct Knobs {
        index_split: Option<usize>,
        consolidate: Option<usize>,
        leaf_bytes: Option<usize>,
        leaf_max: Option<usize>,
        trees: Option<Vec<Vec<u8>>>,
    }

    fn knobs() -> &'static Knobs {
        static K: std::sync::OnceLock<Knobs> = std::sync::OnceLock::new();
        K.get_or_init(|| Knobs {
            index_split: knob("KITH_X_INDEX_SPLIT"),
            consolidate: knob("KITH_X_CONSOLIDATE"),
            leaf_bytes: knob("KITH_X_LEAF_BYTES"),
            leaf_max: knob("KITH_X_LEAF_MAX"),
            trees: std::env::var("KITH_X_TREES")
                .ok()
                .map(|v| v.split(',').map(|t| t.as_bytes().to_vec()).collect()),
        })
    }

    fn selected() -> bool {
        match &knobs().trees {
            None => true,
            Some(list) => TREE.with(|t| list.iter().any(|x| *x == *t.borrow())),
        }
    }

    pub(crate) fn index_split(default: usize) -> usize {
        knobs().index_split.unwrap_or(default)
    }

    pub(crate) fn consolidate(default: usize) -> usize {
        match knobs().consolidate {
            Some(c) if selected() => c,
            _ => default,
        }
    }

    pub(crate) fn leaf_limits(entries: usize, bytes: u64) -> (usize, u64) {
        let k = knobs();
        if (k.leaf_bytes.is_some() || k.leaf_max.is_some()) && selected() {
            (
                k.leaf_max.unwrap_or(entries),
                k.leaf_bytes.map_or(bytes, |b| b as u64),
            )
        } else {
            (entries, bytes)
        }
    }

    pub(crate) fn dump() {
        let path = match std::env::var_os("KITH_SLED_WRITE_STATS") {
            Some(p) => p,
            None => return,
        };
        let counts = COUNTS.lock().unwrap().take();
        let counts = match counts {
            Some(c) => c,
            None => return,
        };
        let mut rows: Vec<_> = counts.by.into_iter().collect();
        rows.sort_by(|a, b| (b.1).0.cmp(&(a.1).0));
        let total: u64 = rows.iter().map(|r| (r.1).0).sum();
        let mut out = format!(
            "sled log: {} bytes in messages, lsn span {} bytes\n",
            total,
            counts.hi.saturating_sub(counts.lo.unwrap_or(0))
        );
        for ((tree, why), (bytes, msgs)) in rows {
            out.push_str(&format!(
                "{}\t{:?}\t{}\t{}\n",
                String::from_utf8_lossy(&tree),
                why,
                bytes,
                msgs
            ));
        }
        if let Ok(mut f) =
            std::fs::OpenOptions::new().create(true).append(true).open(path)
        {
            let _ = f.write_all(out.as_bytes());
        }
    }
}

#[cfg(not(feature = "kith_write_stats"))]
mod imp {
    use super::Why;

    #[inline(always)]
    pub(crate) fn set_tree(_name: &[u8]) {}

    #[inline(always)]
    pub(crate) fn set_why(_why: Option<Why>) -> Option<Why> {
        None
    }

    #[inline(always)]
    pub(crate) fn why() -> Option<Why> {
        None
    }

    #[inline(always)]
    pub(crate) fn record(_why: Why, _pid: u64, _lsn: i64, _len: usize) {}

    #[inline(always)]
    pub(crate) fn dump() {}

    #[inline(always)]
    pub(crate) fn index_split(default: usize) -> usize {
        default
    }

    #[inline(always)]
    pub(crate) fn consolidate(default: usize) -> usize {
        default
    }

    #[inline(always)]
    pub(crate) fn leaf_limits(entries: usize, bytes: u64) -> (usize, u64) {
        (entries, bytes)
    }
}

pub(crate) use imp::{
    consolidate, dump, index_split, leaf_limits, record, set_tree, set_why, why,
};

/// Counts the log messages written while it lives under `why`, and puts back the reason
/// before it when dropped.
pub(crate) fn because(why: Why) -> Because {
    Because(set_why(Some(why)))
}

/// See [`because`].
pub(crate) struct Because(Option<Why>);

#[cfg(feature = "kith_write_stats")]
impl Drop for Because {
    fn drop(&mut self) {
        set_why(self.0);
    }
}
