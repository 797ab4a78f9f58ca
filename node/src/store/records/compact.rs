//! Compaction of the record heap ([`Store::compact_records`], the daemon's round every
//! minute): the live frames of sparse sealed segments are copied to the active one and
//! their locations repointed; the next flush removes the emptied segments.
//!
//! Which segments: sealed ones under half live (copying their live frames costs at most
//! the space they give back), or under nine tenths in a round when the store is at rest
//! (at most [`REST_PUTS`] records stored since the round before). Deletions and
//! evictions spread over every segment leave each of them some 15 % dead for good (the
//! 1,000,000-record home of `bench_store_scale`: 316 MB of heap files for 267 MB of live
//! frames), which the half-live rule never takes; at rest it does, once: the copies fill
//! whole new segments, which stay until a tenth of them dies.
//!
//! Two passes. First the copies: one walk over `record_locs` in key order finds the
//! records whose frames are in the round's segments (each leaf read once; a look-up per
//! frame read almost every leaf from sled's log again, most of the CPU of compacting a
//! whole 1,000,000-record heap); their frames are appended to the active segment and
//! counted dead at once (nothing points to a copy yet: a flush meanwhile saves live
//! bytes without it, and after a crash it is dead space, as a torn frame is). Then the
//! locations, sorted by record id, in runs of [`COMPACT_BATCH`] under the writer lock: a
//! record whose location is still the one copied is pointed to its copy (counted live,
//! the old frame dead); one erased or stored again meanwhile keeps its location, and the
//! copy stays dead. The runs are written with `Tree::insert_sorted` (vendored sled,
//! KITH-PATCHES.md change 7): each leaf of `record_locs` a run falls in is copied once
//! and written whole to sled's log once, where an insert per record copied the leaf each
//! time and wrote a log fragment each time (a segment's frames are in arrival order, so
//! its records' ids are all over the tree: a round of 64 MiB moves about ten records
//! into every leaf). In id order, consecutive runs fall in consecutive leaves, so a
//! round reads and writes each leaf about once.
//!
//! Order of writes, as an insert's: a copy is written before its location; a segment is
//! removed only by a flush that began after all of its frames' locations were written
//! (it is handed to the flush at the end of the round).

use std::{collections::BTreeSet, sync::atomic::Ordering};

use kith_protocol::RecordId;

use super::{io, HeapRecords, Records};
use crate::store::{
    backend::{lock, IVec},
    codec, corrupt,
    heap::Loc,
    index::Entry,
    read::decode_stored,
    Store, StoreError,
};

/// Frames copied, or locations written, per hold of the writer lock: writers wait at
/// most this many.
const COMPACT_BATCH: usize = 256;

/// A sealed segment less live than this (per cent of a segment) is compacted: copying
/// its live frames costs at most as much as the space it gives back.
const COMPACT_LIVE_PERCENT: u64 = 50;

/// The same in a round when the store is at rest: what a settled store keeps dead is at
/// most a tenth of its sealed segments.
const REST_COMPACT_LIVE_PERCENT: u64 = 90;

/// At most this many records stored since the round before: the store is at rest. The
/// daemon's rounds are a minute apart, so about 17 a second: more than gossip brings a
/// person who follows hundreds (a post now and then), far less than a build or a
/// catch-up stores (thousands a second), whose deletions and evictions are not over yet.
const REST_PUTS: u64 = 1_000;

/// Live bytes one [`Store::compact_records`] copies at most (it stops after the segment
/// that passes it): the copies and the segments they empty are both on disk until the
/// flush after it, so a store never needs more than this much room beyond its heap.
const COMPACT_ROUND_BYTES: u64 = 64 * 1024 * 1024;

#[cfg(test)]
thread_local! {
    /// [`REST_PUTS`] for compactions on this thread (tests: fewer).
    pub(in crate::store) static TEST_REST_PUTS: std::cell::Cell<Option<u64>> =
        const { std::cell::Cell::new(None) };
    /// [`COMPACT_ROUND_BYTES`] for compactions on this thread (tests: smaller).
    pub(in crate::store) static TEST_COMPACT_ROUND_BYTES: std::cell::Cell<Option<u64>> =
        const { std::cell::Cell::new(None) };
}

/// `$value`, or in tests what this thread set in `$test` instead.
macro_rules! or_test {
    ($value:expr, $test:ident) => {{
        #[cfg(test)]
        let value = $test.with(std::cell::Cell::get).unwrap_or($value);
        #[cfg(not(test))]
        let value = $value;
        value
    }};
}

/// What one [`Store::compact_records`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Segments emptied (removed by the next flush).
    pub segments: usize,
    /// Records moved out of them.
    pub moved: usize,
    /// Whether segments were left for another call (after [`COMPACT_ROUND_BYTES`]).
    pub more: bool,
    /// Whether the store was at rest (segments up to nine tenths live were taken).
    pub at_rest: bool,
}

/// The first pass of a compaction: the records in the segments compacted (in order of
/// their frames), the copies made of their frames, and the segments emptied.
#[derive(Debug, Default)]
pub(in crate::store) struct Copies {
    inside: Vec<(Loc, RecordId)>,
    /// Index in `inside`, and where the copy is.
    copied: Vec<(u32, Loc)>,
    emptied: Vec<u32>,
    done: Compacted,
}

#[cfg(test)]
impl Copies {
    /// Records whose frames were copied.
    pub(in crate::store) fn records(&self) -> usize {
        self.copied.len()
    }
}

impl Store {
    /// Copies the live records of the sealed heap segments that are less than half live
    /// (nine tenths when the store is at rest: at most [`REST_PUTS`] records stored
    /// since the last call) to the active one and repoints them; the next flush removes
    /// the emptied segments. Stops after 64 MiB of copies ([`Compacted::more`]: call
    /// again after a flush). Takes the writer lock for [`COMPACT_BATCH`] records at a
    /// time. Nothing to do for a store in memory. See `records/compact.rs`.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn compact_records(&self) -> Result<Compacted, StoreError> {
        let copies = self.compact_copy()?;
        self.compact_repoint(copies)
    }

    fn writer(&self) -> Result<std::sync::MutexGuard<'_, ()>, StoreError> {
        self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))
    }

    /// The first pass: the live frames of the segments to compact, copied.
    pub(in crate::store) fn compact_copy(&self) -> Result<Copies, StoreError> {
        let Records::Heap(h) = &self.records else { return Ok(Copies::default()) };
        self.forget_damaged()?;
        if h.heap.live().is_none() {
            let _writer = self.writer()?;
            if h.heap.live().is_none() {
                h.count()?;
            }
        }
        let puts = h.puts.load(Ordering::Relaxed);
        let since = puts.saturating_sub(h.puts_seen.swap(puts, Ordering::Relaxed));
        let mut out = Copies::default();
        out.done.at_rest = since <= or_test!(REST_PUTS, TEST_REST_PUTS);
        let percent =
            if out.done.at_rest { REST_COMPACT_LIVE_PERCENT } else { COMPACT_LIVE_PERCENT };
        // This round's segments: the sparse ones, least live first, until their live
        // frames pass the round's bound.
        let live = h.heap.live().unwrap_or_default();
        let mut round = BTreeSet::new();
        let mut bytes = 0;
        for seg in h.heap.sparse(percent).unwrap_or_default() {
            if lock(&h.doomed).contains(&seg) || lock(&h.stuck).contains(&seg) {
                continue;
            }
            if bytes >= or_test!(COMPACT_ROUND_BYTES, TEST_COMPACT_ROUND_BYTES) {
                out.done.more = true;
                break;
            }
            bytes += live.get(&seg).copied().unwrap_or(0);
            round.insert(seg);
        }
        if round.is_empty() {
            return Ok(out);
        }
        // Which records are in them: one pass over the locations in key order (each leaf
        // of `record_locs` read once; a look-up per frame read a leaf from sled's log for
        // almost every one). Without the writer lock: a record erased meanwhile is copied
        // for nothing (its copy stays dead), one stored meanwhile is not in these
        // segments.
        for item in h.locs.iter() {
            let (key, value) = item?;
            let loc = codec::decode::<Loc>(&value)?;
            if round.contains(&loc.seg) {
                let id: [u8; 32] = key.as_ref().try_into().map_err(|_| corrupt("record key"))?;
                out.inside.push((loc, RecordId::from_bytes(id)));
            }
        }
        out.inside.sort_unstable_by_key(|(loc, _)| (loc.seg, loc.off));
        for seg in round {
            let (frames, whole) = h.heap.scan(seg).map_err(io)?;
            let from = out.inside.partition_point(|(loc, _)| loc.seg < seg);
            let to = out.inside.partition_point(|(loc, _)| loc.seg <= seg);
            // The records' frames, matched by offset (both in order).
            let mut next = from;
            let mut found = Vec::with_capacity(to - from);
            for (loc, bytes) in &frames {
                while next < to && out.inside[next].0.off < loc.off {
                    next += 1;
                }
                if next < to && out.inside[next].0 == *loc {
                    found.push((next, bytes));
                    next += 1;
                }
            }
            for batch in found.chunks(COMPACT_BATCH) {
                let _writer = self.writer()?;
                for (i, bytes) in batch {
                    let copy = h.heap.append(bytes).map_err(io)?;
                    // Live only once its location is written (the second pass).
                    h.heap.dead(&copy);
                    out.copied.push((*i as u32, copy));
                }
            }
            if whole && found.len() == to - from {
                out.emptied.push(seg);
            } else {
                // A frame cut short or failing its check, or a location where no whole
                // frame is: the segment stays (its readable records are copied).
                tracing::warn!(seg, "a heap segment has a damaged frame: left as it is");
                lock(&h.stuck).push(seg);
            }
        }
        Ok(out)
    }

    /// The second pass: the copied records' locations written, in id order.
    pub(in crate::store) fn compact_repoint(
        &self,
        copies: Copies,
    ) -> Result<Compacted, StoreError> {
        let Records::Heap(h) = &self.records else { return Ok(copies.done) };
        let Copies { inside, mut copied, emptied, mut done } = copies;
        // Each record is in `inside` once (a location per record), so copied once.
        copied.sort_unstable_by(|a, b| {
            inside[a.0 as usize].1.as_bytes().cmp(inside[b.0 as usize].1.as_bytes())
        });
        for run in copied.chunks(COMPACT_BATCH) {
            let _writer = self.writer()?;
            let mut pairs = Vec::with_capacity(run.len());
            let mut moved = Vec::with_capacity(run.len());
            for (i, copy) in run {
                let (from, id) = &inside[*i as usize];
                if h.loc(id)? == Some(*from) {
                    pairs.push((IVec::from(id.as_bytes()), IVec::from(codec::encode(copy)?)));
                    moved.push((from, copy, id));
                }
            }
            if pairs.is_empty() {
                continue;
            }
            h.changed()?;
            if let Err(e) = h.locs.insert_sorted(&pairs) {
                // Some of the run may be written: count the live bytes again from the
                // locations before the next compaction.
                h.heap.forget_live();
                return Err(e.into());
            }
            let mut hinted = Vec::new();
            for (from, copy, id) in moved {
                h.heap.alive(copy);
                h.heap.dead(from);
                done.moved += 1;
                hinted.extend(self.feed_entries_at(h, id, copy));
            }
            // The feeds' entries name the copies now (a hint left stale costs a feed the
            // look-up in `record_locs` that the hint saves).
            self.write_entries(hinted)?;
        }
        done.segments = emptied.len();
        lock(&h.doomed).extend(emptied);
        Ok(done)
    }
}

impl Store {
    /// The feed entries (`by_time`, `by_tag`) of record `id`, whose frame is at `loc`,
    /// naming `loc`: none when the frame does not read back as the record.
    fn feed_entries_at(&self, h: &HeapRecords, id: &RecordId, loc: &Loc) -> Vec<Entry<'_>> {
        let Some(bytes) = h.heap.peek(loc).filter(|bytes| RecordId::of_bytes(bytes) == *id) else {
            return Vec::new();
        };
        let Ok(rec) = decode_stored(*id, &bytes) else { return Vec::new() };
        let entries = self.entries(id, &rec.record).into_iter().filter(|e| e.hint);
        entries.filter_map(|e| e.placed(Some(loc)).ok()).collect()
    }
}

impl HeapRecords {
    /// Where record `id`'s frame is (none: not in the heap).
    fn loc(&self, id: &RecordId) -> Result<Option<Loc>, StoreError> {
        self.locs.get(id.as_bytes())?.map(|v| codec::decode::<Loc>(&v)).transpose()
    }
}
