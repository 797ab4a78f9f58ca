//! Store queries for history sync: contiguous log prefixes, tag buckets and tag ranges.

use std::collections::BTreeMap;

use kith_protocol::{sync::Bucket, AuthorId, RecordId, Tag};

use super::{
    corrupt,
    keys::{id_suffix, log_key, tag_prefix, u64_at},
    Store, StoreError,
};

impl Store {
    /// The highest `n` such that this store holds seq 1..=n of `author` (0 if none).
    ///
    /// # Errors
    /// Disk errors.
    pub fn contiguous_seq(&self, author: &AuthorId) -> Result<u64, StoreError> {
        let mut expected = 1u64;
        for key in self.log.range(log_key(author, 1)..=log_key(author, u64::MAX)).keys() {
            let key = key?;
            if u64_at(&key, 32) != Some(expected) {
                break;
            }
            expected += 1;
        }
        Ok(expected - 1)
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
}
