//! What the store counts for the keep quotas ([`crate::keep`]) and `kith status`: records
//! per author, strangers' records, all records and posts; and evicting strangers'
//! records, oldest first.
//!
//! Trees: `author_counts` (author -> records of theirs stored, an [`AuthorCount`]), `strangers`
//! (arrival number, u64 BE -> record id: strangers' records in the order they came). The
//! totals live in memory. A stranger's record erased another way (deleted, expired)
//! leaves its `strangers` entry behind until eviction reaches it; such entries count as
//! strangers' records until then, so the quota errs on the side of keeping less.
//!
//! Counting a million records takes seconds, so the totals are not counted at every
//! start: each flush writes them ([`Totals`], key `counts` of the default tree), and the
//! first write after it that adds or erases a record removes them again before anything
//! else. Sled keeps writes in order, so after a crash either no such write survived (the
//! totals are right) or the removal did too (the store is counted, as it always was). A
//! store written meanwhile by an older kith, which does not remove them, is caught by
//! comparing the records total with the sum of `author_counts`.
//!
//! The authors' counts live in memory too: a count changed since the last flush is kept
//! in [`Tally`] and written to `author_counts` by the flush, just before the totals (a
//! catch-up of one author's log wrote that author's count once per record). So
//! `author_counts` is exact wherever the totals are saved, and a store opened without
//! them (after a crash) counts its authors again as it counts its records.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use kith_protocol::{AuthorId, RecordId, RecordKind, VerifiedRecord};

use super::{
    backend::{lock, Db, IVec, Tree},
    codec::{self, AuthorCount, FollowValue, ProfileValue, Totals},
    corrupt,
    keys::{id_suffix, log_key, pair_key},
    records::Records,
    Inserted, Store, StoreError,
};
use crate::keep::{Keep, Quotas};

/// The in-memory totals.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Records stored.
    total: AtomicU64,
    /// Posts and reposts stored (entries of `by_time`).
    posts: AtomicU64,
    /// Whether the default tree holds [`Totals`] that are still right.
    saved: std::sync::atomic::AtomicBool,
    /// Entries of the `strangers` tree.
    strangers: AtomicU64,
    /// Notifications stored.
    notifications: AtomicU64,
    /// Unread notifications from strangers.
    stranger_unread: AtomicU64,
    /// Records of authors counted lately (0: none left), and whether the count changed
    /// since the last flush (then it is not yet written to `author_counts`).
    authors: Mutex<HashMap<AuthorId, (u64, bool)>>,
}

fn decrement(counter: &AtomicU64) {
    let _ =
        counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
}

impl Tally {
    /// The totals of `totals`, `strangers` strangers' records; `saved` when `totals` are
    /// the ones the store holds.
    pub(super) fn new(totals: Totals, strangers: usize, saved: bool) -> Self {
        Self {
            total: AtomicU64::new(totals.records),
            posts: AtomicU64::new(totals.posts),
            strangers: AtomicU64::new(strangers as u64),
            saved: saved.into(),
            ..Self::default()
        }
    }

    /// A post or repost indexed (`change` 1) or unindexed (-1).
    pub(super) fn posted(&self, change: i8) {
        if change > 0 {
            self.posts.fetch_add(1, Ordering::Relaxed);
        } else {
            decrement(&self.posts);
        }
    }

    pub(super) fn posts(&self) -> u64 {
        self.posts.load(Ordering::Relaxed)
    }

    pub(super) fn set_notifications(&self, all: u64, stranger_unread: u64) {
        self.notifications.store(all, Ordering::Relaxed);
        self.stranger_unread.store(stranger_unread, Ordering::Relaxed);
    }

    /// A notification added (`change` 1) or removed (-1); `stranger_unread` if it was an
    /// unread one from a stranger.
    pub(super) fn noted(&self, stranger_unread: bool, change: i8) {
        if change > 0 {
            self.notifications.fetch_add(1, Ordering::Relaxed);
            if stranger_unread {
                self.stranger_unread.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            decrement(&self.notifications);
            if stranger_unread {
                decrement(&self.stranger_unread);
            }
        }
    }

    pub(super) fn stranger_read(&self) {
        decrement(&self.stranger_unread);
    }

    pub(super) fn notifications(&self) -> u64 {
        self.notifications.load(Ordering::Relaxed)
    }

    pub(super) fn stranger_unread(&self) -> u64 {
        self.stranger_unread.load(Ordering::Relaxed)
    }
}

/// Where the [`Totals`] are saved (sled's default tree).
const TOTALS_KEY: &[u8] = b"counts";

/// The tally of a store opening: its saved totals when they are right, else counted.
///
/// # Errors
/// Disk errors or damage.
pub(super) fn open_tally(
    db: &Db,
    records: &Records,
    by_time: &Tree,
    author_counts: &Tree,
    strangers: &Tree,
) -> Result<Tally, StoreError> {
    let saved = codec::get::<Totals>(db, TOTALS_KEY)?;
    let strangers = strangers.len();
    if let Some(totals) = saved {
        let mut sum = 0u64;
        for item in author_counts.iter() {
            let AuthorCount(n) = codec::decode(&item?.1)?;
            sum = sum.saturating_add(n);
        }
        if sum == totals.records {
            return Ok(Tally::new(totals, strangers, true));
        }
        tracing::info!("the store's saved totals are out of date: counting its records");
    }
    let totals =
        Totals { records: count_authors(records, author_counts)?, posts: by_time.len() as u64 };
    Ok(Tally::new(totals, strangers, false))
}

/// Counts the records of each author in `records` and writes the counts to
/// `author_counts` (removing authors with none); returns how many records there are.
/// For a store opened without its saved totals: its authors' counts may be behind its
/// records, which the last flush did not cover (they are written by flushes).
///
/// # Errors
/// Disk errors, or a record too short to hold its author.
fn count_authors(records: &Records, author_counts: &Tree) -> Result<u64, StoreError> {
    let mut counts: HashMap<[u8; 32], u64> = HashMap::new();
    let mut total = 0u64;
    records.for_each(true, |bytes, _| {
        // A record's encoding starts with its author's 32 key bytes (`Record::author`).
        let author: [u8; 32] =
            bytes.get(..32).and_then(|a| a.try_into().ok()).ok_or_else(|| corrupt("record"))?;
        *counts.entry(author).or_default() += 1;
        total += 1;
        Ok(())
    })?;
    for item in author_counts.iter() {
        let (key, value) = item?;
        let stored: Option<&[u8; 32]> = key.as_ref().try_into().ok();
        let right = stored.and_then(|a| counts.remove(a)).map(AuthorCount);
        match right {
            Some(n) if codec::decode::<AuthorCount>(&value).ok() == Some(n) => {}
            Some(n) => codec::put(author_counts, key, &n)?,
            None => {
                author_counts.remove(key)?;
            }
        }
    }
    for (author, n) in counts {
        codec::put(author_counts, author, &AuthorCount(n))?;
    }
    Ok(total)
}

/// Most authors' counts kept in memory after a flush wrote them (about 50 bytes each);
/// the counts not written yet are kept whatever their number.
const MAX_COUNTS_KEPT: usize = 4_096;

/// Most fork evidence records kept per author: the first is proof enough, a few more
/// show it was no accident; an author forking without end cannot fill the disk.
const MAX_FORK_EVIDENCE: usize = 4;

impl Store {
    /// Stores a record the keep decision chose to keep, counted as `keep` says; a
    /// stranger's record may evict the oldest strangers' records to stay within
    /// `quotas` (never the record just stored).
    ///
    /// # Errors
    /// Disk errors.
    pub fn insert_kept(
        &self,
        rec: &VerifiedRecord,
        keep: Keep,
        quotas: &Quotas,
    ) -> Result<Inserted, StoreError> {
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        let inserted = self.insert_locked(rec, keep == Keep::Stranger)?;
        if inserted == Inserted::New {
            self.evict_over(quotas, &rec.id())?;
        }
        Ok(inserted)
    }

    /// Saves the totals (before a flush): a store opened after the flush need not count
    /// its records. Nothing is written when the saved totals are still right (no write
    /// changed them since they were saved): a flush after writes that count no record (a
    /// direct message, a session) then writes only those.
    ///
    /// # Errors
    /// Disk errors.
    pub(super) fn save_totals(&self) -> Result<(), StoreError> {
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        let t = &self.tally;
        if t.saved.load(Ordering::Relaxed) {
            return Ok(());
        }
        // The authors' counts first: where the totals are found, they are too.
        // In key order, all at once: a batch of a busy feed changes the counts of a
        // hundred authors, which fall in one or two of sled's leaves; written one by one,
        // each copied a whole leaf (about 40 % of a flush's work in `bench_ingest`).
        let mut authors = lock(&t.authors);
        let mut changed: Vec<(AuthorId, u64)> = authors
            .iter()
            .filter(|(_, (_, changed))| *changed)
            .map(|(a, (n, _))| (*a, *n))
            .collect();
        changed.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut puts = Vec::with_capacity(changed.len());
        for (author, n) in &changed {
            if *n == 0 {
                self.author_counts.remove(author.as_bytes())?;
            } else {
                puts.push((
                    IVec::from(author.as_bytes()),
                    IVec::from(codec::encode(&AuthorCount(*n))?),
                ));
            }
        }
        self.author_counts.insert_sorted(&puts)?;
        for (author, _) in &changed {
            if let Some((_, changed)) = authors.get_mut(author) {
                *changed = false;
            }
        }
        // Written: what is kept from here on is only a copy of `author_counts`.
        if authors.len() > MAX_COUNTS_KEPT {
            authors.clear();
        }
        drop(authors);
        let totals = Totals { records: t.total.load(Ordering::Relaxed), posts: t.posts() };
        codec::put(&self.db, TOTALS_KEY, &totals)?;
        t.saved.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Removes the saved totals before the first write that changes them (under the
    /// writer lock).
    ///
    /// # Errors
    /// Disk errors.
    pub(super) fn totals_change(&self) -> Result<(), StoreError> {
        if self.tally.saved.swap(false, Ordering::Relaxed) {
            self.db.remove(TOTALS_KEY)?;
        }
        Ok(())
    }

    /// Posts and reposts stored.
    pub fn post_count(&self) -> u64 {
        self.tally.posts()
    }

    /// Records stored of `author`.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn author_count(&self, author: &AuthorId) -> Result<u64, StoreError> {
        if let Some((n, _)) = lock(&self.tally.authors).get(author) {
            return Ok(*n);
        }
        Ok(codec::get::<AuthorCount>(&self.author_counts, author.as_bytes())?.map_or(0, |c| c.0))
    }

    /// Sets `author`'s count, to be written by the next flush (under the writer lock).
    fn set_author_count(&self, author: &AuthorId, n: u64) {
        lock(&self.tally.authors).insert(*author, (n, true));
    }

    /// Strangers' records stored (see the module documentation).
    pub fn stranger_count(&self) -> u64 {
        self.tally.strangers.load(Ordering::Relaxed)
    }

    /// Records stored in all.
    pub fn total_count(&self) -> u64 {
        self.tally.total.load(Ordering::Relaxed)
    }

    /// Counts a new record (under the writer lock); a stranger's is queued for eviction.
    pub(super) fn count_added(
        &self,
        author: &AuthorId,
        id: &RecordId,
        stranger: bool,
    ) -> Result<(), StoreError> {
        let n = self.author_count(author)?;
        self.set_author_count(author, n.saturating_add(1));
        self.tally.total.fetch_add(1, Ordering::Relaxed);
        if stranger {
            let arrival = self.db.generate_id()?;
            self.strangers.insert(arrival.to_be_bytes(), id.as_bytes())?;
            self.tally.strangers.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Uncounts an erased record (under the writer lock).
    pub(super) fn count_removed(&self, author: &AuthorId) -> Result<(), StoreError> {
        let n = self.author_count(author)?;
        self.set_author_count(author, n.saturating_sub(1));
        decrement(&self.tally.total);
        Ok(())
    }

    /// Whether another fork of `author` is worth keeping as evidence.
    pub(super) fn wants_fork_evidence(&self, author: &AuthorId) -> Result<bool, StoreError> {
        let kept = self.forks.scan_prefix(author.as_bytes()).keys().take(MAX_FORK_EVIDENCE);
        Ok(kept.count() < MAX_FORK_EVIDENCE)
    }

    /// Evicts the oldest strangers' records while over a quota (under the writer lock),
    /// never `keep`. Returns how many were evicted.
    pub(super) fn evict_over(&self, quotas: &Quotas, keep: &RecordId) -> Result<usize, StoreError> {
        let mut evicted = 0;
        loop {
            let strangers = self.stranger_count();
            let over = strangers > quotas.strangers
                || (self.total_count() > quotas.total && strangers > 0);
            if !over {
                return Ok(evicted);
            }
            let Some((key, value)) = self.strangers.first()? else { return Ok(evicted) };
            let id = id_suffix(&value).ok_or_else(|| corrupt("strangers entry"))?;
            if id == *keep {
                return Ok(evicted);
            }
            self.strangers.remove(key)?;
            decrement(&self.tally.strangers);
            if self.evict(&id)? {
                evicted += 1;
            }
        }
    }

    /// Removes every trace of a stored record: content, indexes, its log entry (so that
    /// it may come again), and the follow state or profile it set. Returns whether it
    /// was stored.
    pub(super) fn evict(&self, id: &RecordId) -> Result<bool, StoreError> {
        let Some(old) = self.get(id)? else { return Ok(false) };
        self.erase(&old)?;
        let r = &old.record;
        let lkey = log_key(&r.author, r.seq);
        if self.log.get(lkey)?.and_then(|v| id_suffix(&v)) == Some(*id) {
            self.log_entry_removed(&r.author, r.seq);
            self.log.remove(lkey)?;
            self.log_entry_removed(&r.author, r.seq);
        }
        match &r.kind {
            RecordKind::Follow { target } | RecordKind::Unfollow { target } => {
                let key = pair_key(&r.author, target);
                if codec::remove_if_set_by::<FollowValue>(&self.follows, key, r.seq)? {
                    self.followers.remove(pair_key(target, &r.author))?;
                }
            }
            RecordKind::Profile { .. } => {
                codec::remove_if_set_by::<ProfileValue>(
                    &self.profiles,
                    r.author.as_bytes(),
                    r.seq,
                )?;
            }
            RecordKind::Devices(_) => {
                codec::remove_if_set_by::<ProfileValue>(&self.devices, r.author.as_bytes(), r.seq)?;
            }
            RecordKind::Mailboxes { .. } => {
                let key = r.author.as_bytes();
                codec::remove_if_set_by::<ProfileValue>(&self.mailboxes, key, r.seq)?;
            }
            _ => {}
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use kith_protocol::{Keypair, RecordKind};

    use super::*;
    use crate::store::tests::{post, signed};

    #[test]
    fn strangers_records_are_evicted_oldest_first_and_may_come_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let quotas = Quotas { strangers: 3, ..Quotas::default() };
        let friend = Keypair::from_secret_bytes(&[1; 32]);
        let me = Keypair::from_secret_bytes(&[2; 32]);
        let kept = post(&friend, 1, None, 1, "a friend's");
        store.insert_kept(&kept, Keep::Followed, &quotas).unwrap();
        let strangers: Vec<_> = (10..15u8)
            .map(|i| {
                let kp = Keypair::from_secret_bytes(&[i; 32]);
                signed(&kp, 1, None, 2, RecordKind::Follow { target: me.id() })
            })
            .collect();
        for r in &strangers {
            assert_eq!(store.insert_kept(r, Keep::Stranger, &quotas).unwrap(), Inserted::New);
        }
        assert_eq!(store.stranger_count(), 3);
        assert_eq!(store.total_count(), 4);
        for (i, r) in strangers.iter().enumerate() {
            assert_eq!(store.has(&r.id()).unwrap(), i >= 2, "stranger {i}");
        }
        // An evicted follow leaves nothing behind: no follower, no log entry, no count.
        let gone = &strangers[0];
        assert!(!store.is_following(&gone.record().author, &me.id()).unwrap());
        assert!(store.is_following(&strangers[4].record().author, &me.id()).unwrap());
        assert_eq!(store.latest(&gone.record().author).unwrap(), None);
        assert_eq!(store.author_count(&gone.record().author).unwrap(), 0);
        assert!(store.has(&kept.id()).unwrap());
        // It may come again (and then pushes out the oldest in turn).
        assert_eq!(store.insert_kept(gone, Keep::Stranger, &quotas).unwrap(), Inserted::New);
        assert!(!store.has(&strangers[2].id()).unwrap());
        // The total: strangers go first.
        let tight = Quotas { total: 2, ..quotas };
        let more = post(&friend, 2, Some(kept.id()), 3, "another");
        store.insert_kept(&more, Keep::Followed, &tight).unwrap();
        assert_eq!(store.total_count(), 2);
        assert!(store.has(&kept.id()).unwrap() && store.has(&more.id()).unwrap());
        assert_eq!(store.counts().records, 2);
    }

    #[test]
    fn totals_are_saved_by_a_flush_and_counted_when_out_of_date() {
        let store = Store::open_memory().unwrap();
        let kp = Keypair::from_secret_bytes(&[6; 32]);
        let first = post(&kp, 1, None, 1, "first");
        store.insert(&first).unwrap();
        let like = signed(
            &kp,
            2,
            Some(first.id()),
            2,
            RecordKind::Reaction { target: first.id(), emoji: "+1".into() },
        );
        store.insert(&like).unwrap();
        store.flush_blocking().unwrap();
        // A crash right after the flush: the saved totals are used, not counted.
        let reopened = Store::open_memory_image(store.memory_image().unwrap()).unwrap();
        assert!(reopened.tally.saved.load(Ordering::Relaxed));
        assert_eq!((reopened.counts().records, reopened.counts().posts), (2, 1));
        // A write after the flush takes them back (before it writes anything else);
        // a crash before the next flush finds what the last flush saved.
        let second = post(&kp, 3, Some(like.id()), 3, "second");
        reopened.insert(&second).unwrap();
        assert!(!reopened.tally.saved.load(Ordering::Relaxed));
        assert_eq!(reopened.db.get(TOTALS_KEY).unwrap(), None);
        assert_eq!((reopened.counts().records, reopened.counts().posts), (3, 2));
        let crashed = Store::open_memory_image(reopened.memory_image().unwrap()).unwrap();
        assert_eq!((crashed.counts().records, crashed.counts().posts), (2, 1));
        // Totals left behind by a kith that does not take them back (an older one, which
        // wrote the author's count with the record) no longer match the authors' counts:
        // the store is counted.
        reopened.flush_blocking().unwrap();
        let stale = Totals { records: 2, posts: 1 };
        codec::put(&reopened.db, TOTALS_KEY, &stale).unwrap();
        reopened.db.flush().unwrap();
        let counted = Store::open_memory_image(reopened.memory_image().unwrap()).unwrap();
        assert!(!counted.tally.saved.load(Ordering::Relaxed));
        assert_eq!((counted.counts().records, counted.counts().posts), (3, 2));
        // Erasing counts down (a delete of the second post).
        let gone = signed(&kp, 4, Some(second.id()), 4, RecordKind::Delete { target: second.id() });
        counted.insert(&gone).unwrap();
        assert_eq!((counted.counts().records, counted.counts().posts), (3, 1));
    }

    #[test]
    fn authors_counts_are_written_by_a_flush_and_counted_after_a_crash() {
        let store = Store::open_memory().unwrap();
        let (ann, bob) =
            (Keypair::from_secret_bytes(&[7; 32]), Keypair::from_secret_bytes(&[8; 32]));
        let mut prev = None;
        for seq in 1..=3 {
            let r = post(&ann, seq, prev, seq, "ann's");
            prev = Some(r.id());
            store.insert(&r).unwrap();
        }
        let bobs = post(&bob, 1, None, 1, "bob's");
        store.insert(&bobs).unwrap();
        // Counted in memory, written by the flush.
        assert_eq!(store.author_count(&ann.id()).unwrap(), 3);
        assert_eq!(store.author_counts.len(), 0);
        store.flush_blocking().unwrap();
        assert_eq!(
            codec::get::<AuthorCount>(&store.author_counts, ann.id().as_bytes()).unwrap(),
            Some(AuthorCount(3))
        );
        // Writes that reach the disk without a flush of the store (sled's own periodic
        // one) and then a crash: the totals were taken back, so the store counts its
        // records and its authors' records again.
        let more = post(&ann, 4, prev, 4, "ann's fourth");
        store.insert(&more).unwrap();
        let gone = signed(&bob, 2, Some(bobs.id()), 2, RecordKind::Delete { target: bobs.id() });
        store.insert(&gone).unwrap();
        store.db.flush().unwrap();
        let crashed = Store::open_memory_image(store.memory_image().unwrap()).unwrap();
        assert!(!crashed.tally.saved.load(Ordering::Relaxed));
        assert_eq!(crashed.author_count(&ann.id()).unwrap(), 4);
        assert_eq!(crashed.author_count(&bob.id()).unwrap(), 1);
        assert_eq!(crashed.counts().records, 5);
        // Then saved with the totals, which the next start takes as they are.
        crashed.flush_blocking().unwrap();
        let reopened = Store::open_memory_image(crashed.memory_image().unwrap()).unwrap();
        assert!(reopened.tally.saved.load(Ordering::Relaxed));
        assert_eq!(reopened.author_count(&ann.id()).unwrap(), 4);
        assert_eq!(reopened.author_count(&bob.id()).unwrap(), 1);
    }

    #[test]
    fn fork_evidence_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kp = Keypair::from_secret_bytes(&[5; 32]);
        store.insert(&post(&kp, 1, None, 1, "first")).unwrap();
        for i in 0..20u64 {
            let fork = post(&kp, 1, None, 2 + i, "again");
            assert!(matches!(store.insert(&fork).unwrap(), Inserted::Fork { .. }));
        }
        assert!(store.is_flagged(&kp.id()).unwrap());
        assert_eq!(store.forks.len(), MAX_FORK_EVIDENCE);
    }
}
