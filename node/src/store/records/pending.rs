//! Records begun and not yet committed. A feed's index entries name where their record's
//! frame is in the heap (`index.rs`, [`Store::get_hinted`]), so a feed reads the record
//! without a look-up in `record_locs`. Such an entry must then never outlive an insert
//! that did not reach its commit point: a crash (or a disk error) between an insert's
//! indexes and its location would leave an entry that names a whole frame of a record
//! the store does not hold, shown in feeds and beyond the reach of its author's delete.
//!
//! So an insert notes its records begun (id and frame, keys `records_pending` and a
//! number in the default tree) after writing their frames and before their indexes, and
//! removes the note after their locations. sled recovers a prefix of its writes, so a
//! note found when the store opens names every record whose indexes may be there without
//! its location: [`Store::undo_pending`] takes back the index entries of each one not
//! stored, as erasing it would.

use std::sync::atomic::Ordering;

use bincode::{Decode, Encode};
use kith_protocol::RecordId;

use super::{io, HeapRecords, Records};
use crate::store::{
    codec::{self, Value},
    heap::Loc,
    read::decode_stored,
    Store, StoreError,
};

/// The prefix of the keys of records begun (default tree).
const PENDING_PREFIX: &[u8] = b"records_pending";

/// Records noted per key: a note stays well under the codec's limit on a value.
const PENDING_PER_KEY: usize = 1024;

/// Records begun: their ids and frames.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
struct Pending(Vec<([u8; 32], Loc)>);

impl Value for Pending {
    const WHAT: &'static str = "records begun";
}

fn pending_key(n: usize) -> Vec<u8> {
    let mut key = PENDING_PREFIX.to_vec();
    key.extend_from_slice(&(n as u32).to_be_bytes());
    key
}

impl HeapRecords {
    /// Notes `begun` (under the writer lock; no note is there: [`HeapRecords::end_pending`]
    /// or [`Store::undo_pending`] removed the last).
    pub(super) fn note_pending(&self, begun: &[(RecordId, Loc)]) -> Result<(), StoreError> {
        for (n, chunk) in begun.chunks(PENDING_PER_KEY).enumerate() {
            let note = Pending(chunk.iter().map(|(id, loc)| (*id.as_bytes(), *loc)).collect());
            codec::put(&self.db, pending_key(n), &note)?;
            self.noted.fetch_max(n + 1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Removes the note: what it named is committed.
    pub(super) fn end_pending(&self) -> Result<(), StoreError> {
        for n in 0..self.noted.swap(0, Ordering::Relaxed) {
            self.db.remove(pending_key(n))?;
        }
        Ok(())
    }
}

impl Records {
    /// The signed bytes of record `id`, read where `hint` (the end of a feed index's
    /// value) says its frame is, when that frame is whole and holds this record (its
    /// bytes hash to `id`); otherwise as [`Records::get`] reads them (no hint, or one
    /// that compaction has made stale).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub(in crate::store) fn get_hinted(
        &self,
        id: &RecordId,
        hint: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if let (Self::Heap(h), false) = (self, hint.is_empty()) {
            let at = codec::decode::<Loc>(hint).ok().and_then(|loc| h.heap.peek(&loc));
            if let Some(bytes) = at.filter(|bytes| RecordId::of_bytes(bytes) == *id) {
                return Ok(Some(bytes));
            }
        }
        self.get(id)
    }
}

impl Store {
    /// Takes back the index entries of the records noted begun and not stored (see the
    /// module's documentation), and removes the note; returns how many. Called when the
    /// store opens, and after a failed insert (under the writer lock). A note that does
    /// not decode, or a frame that does not read back as its record, is passed over with
    /// a warning: such an entry's hint reads as no record.
    ///
    /// # Errors
    /// Disk errors.
    pub(in crate::store) fn undo_pending(&self) -> Result<usize, StoreError> {
        let Records::Heap(h) = &self.records else { return Ok(0) };
        let mut undone = 0;
        for item in h.db.scan_prefix(PENDING_PREFIX) {
            let (key, value) = item?;
            let begun = match codec::decode::<Pending>(&value) {
                Ok(Pending(begun)) => begun,
                Err(e) => {
                    tracing::warn!(%e, "a note of records begun does not read: passed over");
                    Vec::new()
                }
            };
            for (id, loc) in begun {
                let id = RecordId::from_bytes(id);
                if h.locs.contains_key(id.as_bytes())? {
                    continue;
                }
                let bytes = h.heap.read(&loc).map_err(io)?;
                let Some(rec) = bytes
                    .filter(|bytes| RecordId::of_bytes(bytes) == id)
                    .and_then(|bytes| decode_stored(id, &bytes).ok())
                else {
                    continue;
                };
                self.totals_change()?;
                self.unindex(&id, &rec.record)?;
                undone += 1;
            }
            h.db.remove(key)?;
        }
        h.noted.store(0, Ordering::Relaxed);
        if undone > 0 {
            tracing::warn!(undone, "records begun and not stored: their index entries taken back");
        }
        Ok(undone)
    }

    /// Stores record `id` (`bytes`, `r`), which is new, under the writer lock: its frame,
    /// its indexes and count, then its location. A failure on the way takes back what it
    /// indexed.
    ///
    /// # Errors
    /// Disk errors.
    pub(in crate::store) fn put_indexed(
        &self,
        id: &RecordId,
        bytes: &[u8],
        r: &kith_protocol::Record,
        stranger: bool,
    ) -> Result<(), StoreError> {
        let loc = self.records.begin(id, bytes, crate::store::heap::Lane::of(stranger))?;
        let stored = (|| {
            self.index(id, r, loc.as_ref())?;
            self.count_added(&r.author, id, stranger)?;
            self.records.commit(id, bytes, loc)
        })();
        if stored.is_err() {
            if let Err(e) = self.undo_pending() {
                tracing::warn!(%e, "a failed insert's index entries could not be taken back");
            }
        }
        stored
    }
}
