//! Store queries for history sync: contiguous log prefixes, tag buckets and tag ranges.

use std::collections::{BTreeMap, HashMap};

use kith_protocol::{sync::Bucket, AuthorId, RecordId, Tag};

use super::{
    corrupt,
    keys::{id_suffix, log_key, tag_prefix, u64_at},
    Store, StoreError,
};

/// Where [`Store::contiguous_seq`] goes on from: per author, a seq held with every seq
/// before it when it was last computed. Log entries are only removed by eviction, which
/// lowers the author's hint and counts a removal (before and after the entry goes): a
/// computation that saw a removal start or end while it scanned does not keep its result.
///
/// Beside them, per author, the highest seq in the author's log (its tip), for authors
/// an insert wrote since the store opened: read once under the writer lock, raised by
/// each insert and forgotten when an entry of that log is removed, all under the writer
/// lock, so exact. An insert past the tip knows without reading that the log has no
/// entry at its seq (a catch-up stores each record past it).
#[derive(Debug, Default)]
pub(super) struct ContiguousHints {
    hints: HashMap<AuthorId, u64>,
    removals: u64,
    tips: HashMap<AuthorId, u64>,
}

/// Most log tips kept in memory (about 50 bytes each); past it they are forgotten and
/// read again when needed.
const MAX_TIPS: usize = 16_384;

impl Store {
    /// The highest `n` such that this store holds seq 1..=n of `author` (0 if none).
    ///
    /// Reads only the log past what an earlier call found (a sync pull asks after every
    /// page, so a full scan each time made catching up on a long log quadratic).
    ///
    /// # Errors
    /// Disk errors.
    pub fn contiguous_seq(&self, author: &AuthorId) -> Result<u64, StoreError> {
        let (from, removals) = {
            let hints = super::backend::lock(&self.contiguous);
            (hints.hints.get(author).copied().unwrap_or(0), hints.removals)
        };
        let mut expected = from.saturating_add(1);
        for key in self.log.range(log_key(author, expected)..=log_key(author, u64::MAX)).keys() {
            let key = key?;
            if u64_at(&key, 32) != Some(expected) {
                break;
            }
            expected += 1;
        }
        let found = expected - 1;
        let mut hints = super::backend::lock(&self.contiguous);
        if hints.removals == removals && found > from {
            hints.hints.insert(*author, found);
        }
        Ok(found)
    }

    /// The signed bytes of `author`'s records after seq `after`, in log order, at most
    /// `limit` log entries' worth: what [`Store::author_log`] and [`Store::get_bytes`]
    /// give together, with one read of each record and no decoding (a sync answer sends
    /// the bytes as stored).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn author_log_bytes(
        &self,
        author: &AuthorId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let start = log_key(author, after.saturating_add(1));
        let mut out = Vec::new();
        for item in self.log.range(start..=log_key(author, u64::MAX)).values().take(limit) {
            let id = id_suffix(&item?).ok_or_else(|| corrupt("log value"))?;
            if let Some(bytes) = self.records.get(&id)? {
                out.push(bytes);
            }
        }
        Ok(out)
    }

    /// The highest seq in `author`'s log (0: none), from memory after the first time
    /// (see [`ContiguousHints`]). Only under the writer lock.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub(super) fn log_tip(&self, author: &AuthorId) -> Result<u64, StoreError> {
        if let Some(tip) = super::backend::lock(&self.contiguous).tips.get(author) {
            return Ok(*tip);
        }
        let tip = self.latest(author)?.map_or(0, |(seq, _)| seq);
        let mut hints = super::backend::lock(&self.contiguous);
        if hints.tips.len() >= MAX_TIPS {
            hints.tips.clear();
        }
        hints.tips.insert(*author, tip);
        Ok(tip)
    }

    /// `author`'s log has an entry at `seq` now (under the writer lock).
    pub(super) fn log_extended(&self, author: &AuthorId, seq: u64) {
        if let Some(tip) = super::backend::lock(&self.contiguous).tips.get_mut(author) {
            *tip = (*tip).max(seq);
        }
    }

    /// The highest seq stored of `author` (0: none): the seq of [`Store::latest`], from
    /// memory when an insert of this store has read it.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn latest_seq(&self, author: &AuthorId) -> Result<u64, StoreError> {
        if let Some(tip) = super::backend::lock(&self.contiguous).tips.get(author) {
            return Ok(*tip);
        }
        Ok(self.latest(author)?.map_or(0, |(seq, _)| seq))
    }

    /// The log entry of `author`'s `seq` is being removed (call before and after).
    pub(super) fn log_entry_removed(&self, author: &AuthorId, seq: u64) {
        let mut hints = super::backend::lock(&self.contiguous);
        hints.removals += 1;
        hints.tips.remove(author);
        if let Some(hint) = hints.hints.get_mut(author) {
            *hint = (*hint).min(seq.saturating_sub(1));
        }
    }

    /// (timestamp, id) of the posts with `tag` at or after `since`, oldest first.
    ///
    /// # Errors
    /// Disk errors or damage, per item.
    pub fn tag_entries(
        &self,
        tag: &Tag,
        since: u64,
    ) -> impl Iterator<Item = Result<(u64, RecordId), StoreError>> + '_ {
        let prefix = tag_prefix(tag);
        let mut start = prefix.clone();
        start.extend_from_slice(&since.to_be_bytes());
        let plen = prefix.len();
        self.by_tag
            .range(start..)
            .keys()
            .take_while(move |k| k.as_ref().map_or(true, |k| k.starts_with(&prefix)))
            .map(move |k| {
                let k = k?;
                let ts = u64_at(&k, plen).ok_or_else(|| corrupt("tag key"))?;
                let id = id_suffix(&k).ok_or_else(|| corrupt("tag key"))?;
                Ok((ts, id))
            })
    }

    /// This store's reconciliation buckets for `tag` from `since` on (non-empty only).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn tag_buckets(&self, tag: &Tag, since: u64) -> Result<Vec<Bucket>, StoreError> {
        let mut buckets: BTreeMap<u64, Bucket> = BTreeMap::new();
        for entry in self.tag_entries(tag, since) {
            let (ts, id) = entry?;
            let start = Bucket::start_of(ts);
            buckets.entry(start).or_insert_with(|| Bucket::empty(start)).add(&id);
        }
        Ok(buckets.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use kith_protocol::{Keypair, VerifiedRecord};

    use super::*;

    /// A post whose `prev` is made up, so logs can have gaps.
    fn post(kp: &Keypair, seq: u64, ts: u64, text: &str) -> VerifiedRecord {
        let prev = (seq > 1).then(|| RecordId::from_bytes([seq as u8; 32]));
        crate::store::tests::post(kp, seq, prev, ts, text)
    }

    #[test]
    fn contiguous_prefix_and_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kp = Keypair::from_secret_bytes(&[1; 32]);
        assert_eq!(store.contiguous_seq(&kp.id()).unwrap(), 0);
        for seq in [1, 2, 3, 5, 6] {
            store.insert(&post(&kp, seq, seq * 1000, "x #t")).unwrap();
        }
        assert_eq!(store.contiguous_seq(&kp.id()).unwrap(), 3);
        let tag = Tag::parse("t").unwrap();
        let entries: Vec<u64> = store.tag_entries(&tag, 2500).map(|e| e.unwrap().0).collect();
        assert_eq!(entries, [3000, 5000, 6000]);
        let buckets = store.tag_buckets(&tag, 0).unwrap();
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].count, 5);
        assert!(store.tag_entries(&Tag::parse("other").unwrap(), 0).next().is_none());
    }

    /// The prefix is read on from where the last call ended, and an evicted record
    /// below that point shortens it again (else sync would never fetch it back).
    #[test]
    fn the_contiguous_prefix_goes_on_from_the_last_call_and_falls_back_on_eviction() {
        let store = Store::open_memory().unwrap();
        let kp = Keypair::from_secret_bytes(&[2; 32]);
        let log: Vec<_> = (1..=8).map(|seq| post(&kp, seq, seq * 1000, "x")).collect();
        for record in &log[..5] {
            store.insert(record).unwrap();
        }
        assert_eq!(store.contiguous_seq(&kp.id()).unwrap(), 5);
        store.insert(&log[6]).unwrap();
        assert_eq!(store.contiguous_seq(&kp.id()).unwrap(), 5);
        store.insert(&log[5]).unwrap();
        assert_eq!(store.contiguous_seq(&kp.id()).unwrap(), 7);
        assert!(store.evict(&log[2].id()).unwrap());
        assert_eq!(store.contiguous_seq(&kp.id()).unwrap(), 2);
        store.insert(&log[2]).unwrap();
        assert_eq!(store.contiguous_seq(&kp.id()).unwrap(), 7);
        // Another author's prefix is its own.
        let other = Keypair::from_secret_bytes(&[3; 32]);
        assert_eq!(store.contiguous_seq(&other.id()).unwrap(), 0);
    }
}
