//! New posts stored as a group (the batch path of ingest): a run of posts, each decided
//! as one insert after the other would decide it, written together at the end of the
//! run. Their signed bytes go to the record heap in one write, then each index tree gets
//! the run's entries in key order ([`Tree::insert_sorted`]: a leaf that takes several of
//! them is copied and written once, not once per entry), then the records' locations, the
//! commit point, last. So the store's rule holds for every record of the group: its
//! bytes, then its indexes, then its location; a crash in between leaves index entries
//! that the next opening takes back (`records/pending.rs`), as a crash inside one insert
//! does.
//!
//! An [`InsertRun`] holds the store's writer lock from its first insert until it is written:
//! no other writer (or flush) sees the store with a record counted and not yet written.
//! Its caller keeps to one rule (ingest's batch engine does): before checking a record
//! whose checks could read what the group holds (anything but a post known to follow a
//! record of the batch in its author's log, and not replying to a post in the group), it
//! calls [`InsertRun::write`]. Only posts wait in a group; any other record, and a stranger's
//! post (the strangers' queue may evict), writes the group first and is stored at once.

use std::{collections::HashMap, sync::MutexGuard};

use kith_protocol::{AuthorId, RecordId, RecordKind, VerifiedRecord};

use super::{
    corrupt,
    index::Entry,
    keys::{fork_key, id_suffix, log_key, log_value},
    Inserted, Store, StoreError,
};
use crate::keep::{Keep, Quotas};

/// Posts decided and not yet written; see the module's documentation.
pub struct InsertRun<'a> {
    store: &'a Store,
    _writer: MutexGuard<'a, ()>,
    /// The posts waiting, with their signed bytes, in order.
    records: Vec<(RecordId, Vec<u8>)>,
    /// Their log entries and plain index entries, each with its record's place in
    /// `records`.
    entries: Vec<(usize, Entry<'a>)>,
    /// Their log keys, with the id each names.
    logs: HashMap<[u8; 40], RecordId>,
    /// Whether the last [`InsertRun::insert_kept`] left its record waiting.
    waiting: bool,
    /// Records that were waiting when a write failed, not yet told to the caller.
    lost: usize,
}

impl Store {
    /// A new, empty group of posts; it holds the writer lock until it is dropped.
    ///
    /// # Errors
    /// A poisoned writer lock.
    pub fn insert_run(&self) -> Result<InsertRun<'_>, StoreError> {
        let writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        Ok(InsertRun {
            store: self,
            _writer: writer,
            records: Vec::new(),
            entries: Vec::new(),
            logs: HashMap::new(),
            waiting: false,
            lost: 0,
        })
    }

    /// The id of the log entry at `author`'s `seq`; read only up to the log's tip.
    pub(super) fn logged_at(
        &self,
        author: &AuthorId,
        seq: u64,
    ) -> Result<Option<RecordId>, StoreError> {
        if seq > self.log_tip(author)? {
            return Ok(None);
        }
        match self.log.get(log_key(author, seq))? {
            Some(entry) => Ok(Some(id_suffix(&entry).ok_or_else(|| corrupt("log entry"))?)),
            None => Ok(None),
        }
    }

    /// What an insert of `rec` is when it is not new, given the id in the log at its seq
    /// (`existing`) and whether the record is stored (`stored`, asked only when the log
    /// names it): a duplicate, a deleted record, or a fork (its evidence written here).
    /// `None`: it is new.
    pub(super) fn not_new(
        &self,
        rec: &VerifiedRecord,
        existing: Option<RecordId>,
        stored: impl FnOnce(&RecordId) -> Result<bool, StoreError>,
    ) -> Result<Option<Inserted>, StoreError> {
        let (id, r) = (rec.id(), rec.record());
        if existing == Some(id) && stored(&id)? {
            return Ok(Some(Inserted::Duplicate));
        }
        if self.is_tombstoned(&id, &r.author)? {
            return Ok(Some(Inserted::Deleted));
        }
        if let Some(existing) = existing.filter(|e| *e != id) {
            if self.wants_fork_evidence(&r.author)? {
                self.forks.insert(fork_key(&r.author, r.seq, &id), rec.bytes())?;
            }
            self.flagged.insert(r.author.as_bytes(), &[1u8])?;
            return Ok(Some(Inserted::Fork { existing }));
        }
        Ok(None)
    }
}

impl InsertRun<'_> {
    /// Whether record `id` waits in this group.
    pub fn holds(&self, id: &RecordId) -> bool {
        self.records.iter().any(|(waiting, _)| waiting == id)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether the last [`InsertRun::insert_kept`] left its record waiting (it is written by
    /// the next [`InsertRun::write`]).
    pub fn waiting(&self) -> bool {
        self.waiting
    }

    /// How many waiting records a failed write lost since the last call (their inserts
    /// answered `New`; they are not stored).
    pub fn take_lost(&mut self) -> usize {
        std::mem::take(&mut self.lost)
    }

    /// [`Store::insert_kept`] in this group: a post not kept as a stranger's waits here
    /// (decided as if the group were written); anything else writes the group, then is
    /// stored at once.
    ///
    /// # Errors
    /// Disk errors; a failed write of the group also counts its records in
    /// [`InsertRun::take_lost`].
    pub fn insert_kept(
        &mut self,
        rec: &VerifiedRecord,
        keep: Keep,
        quotas: &Quotas,
    ) -> Result<Inserted, StoreError> {
        self.waiting = false;
        let store = self.store;
        let stranger = keep == Keep::Stranger;
        if stranger || !matches!(rec.record().kind, RecordKind::Post(_)) {
            self.write()?;
            let inserted = store.insert_locked(rec, stranger)?;
            if inserted == Inserted::New {
                store.evict_over(quotas, &rec.id())?;
            }
            return Ok(inserted);
        }
        let (id, r) = (rec.id(), rec.record());
        let lkey = log_key(&r.author, r.seq);
        let existing = match self.logs.get(&lkey) {
            Some(waiting) => Some(*waiting),
            None => store.logged_at(&r.author, r.seq)?,
        };
        let waits = |id: &RecordId| self.holds(id);
        let stored = |id: &RecordId| Ok(waits(id) || store.records.contains(id)?);
        if let Some(inserted) = store.not_new(rec, existing, stored)? {
            return Ok(inserted);
        }
        store.totals_change()?;
        let n = self.records.len();
        let log = Entry::new(&store.log, lkey.to_vec(), log_value(&id, true).to_vec());
        self.entries.push((n, log));
        store.log_extended(&r.author, r.seq);
        self.entries.extend(store.entries(&id, r).into_iter().map(|e| (n, e)));
        store.count_added(&r.author, &id, false)?;
        self.logs.insert(lkey, id);
        self.records.push((id, rec.bytes().to_vec()));
        self.waiting = true;
        store.evict_over(quotas, &id)?;
        Ok(Inserted::New)
    }

    /// Writes the waiting records: their bytes, then every index tree's entries in key
    /// order, then their locations. The writer lock stays held.
    ///
    /// # Errors
    /// Disk errors: then the waiting records are lost (see [`InsertRun::take_lost`]).
    pub fn write(&mut self) -> Result<(), StoreError> {
        if self.records.is_empty() {
            return Ok(());
        }
        let store = self.store;
        let records = std::mem::take(&mut self.records);
        let entries = std::mem::take(&mut self.entries);
        self.logs.clear();
        let refs: Vec<(RecordId, &[u8])> =
            records.iter().map(|(id, bytes)| (*id, bytes.as_slice())).collect();
        let written = store.records.put_many(&refs, |locs| {
            let entries = entries
                .into_iter()
                .map(|(n, e)| e.placed(locs.and_then(|locs| locs.get(n))))
                .collect::<Result<Vec<_>, _>>()?;
            store.write_entries(entries)
        });
        if written.is_err() {
            self.lost += records.len();
            if let Err(e) = store.undo_pending() {
                tracing::warn!(%e, "a failed group's index entries could not be taken back");
            }
        }
        written
    }
}

impl Drop for InsertRun<'_> {
    fn drop(&mut self) {
        // Not while a panic unwinds (a bug): a second one would abort the process.
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = self.write() {
            tracing::warn!(%e, "a group of records could not be written");
        }
    }
}
