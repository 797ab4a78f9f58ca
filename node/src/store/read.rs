//! Reading records back: by id, by place in an author's log, and the post listings by
//! author, by tag and by time that feeds are built from.

use kith_protocol::{
    limits::MAX_RECORD_BYTES, record::SignedRecord, AuthorId, RecordId, RecordKind, Tag,
};

use super::{
    corrupt,
    keys::{
        by_time_value, id_suffix, log_key, log_says_not_post, tag_key, tag_prefix, time_key, u64_at,
    },
    Store, StoreError, StoredRecord,
};

/// sled's reads from its log ([`Store::log_reads`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogReads {
    /// Pages read: the cache's misses, and the pages its cleaner read to move them.
    pub pages: u64,
    /// Reads that waited for their page's bytes to reach the file.
    pub waits: u64,
    /// Their wait in all.
    pub waited: std::time::Duration,
}

impl Store {
    /// sled's reads of index pages from its log since the store opened. For measuring
    /// (`bench-store-scale`); always none for a store in memory.
    #[must_use]
    pub fn log_reads(&self) -> LogReads {
        let (pages, waits, waited) = self.db.log_reads();
        LogReads { pages, waits, waited }
    }

    /// Reads a stored record.
    ///
    /// # Errors
    /// Disk errors, or [`StoreError::Corrupt`] for undecodable bytes.
    pub fn get(&self, id: &RecordId) -> Result<Option<StoredRecord>, StoreError> {
        match self.records.get(id)? {
            Some(bytes) => Ok(Some(decode_stored(*id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// [`Store::get`], read first where a feed index's value says the record's frame is
    /// (`hint`, the value's end; see `records/pending.rs`).
    ///
    /// # Errors
    /// Disk errors, or [`StoreError::Corrupt`] for undecodable bytes.
    pub(super) fn get_hinted(
        &self,
        id: &RecordId,
        hint: &[u8],
    ) -> Result<Option<StoredRecord>, StoreError> {
        match self.records.get_hinted(id, hint)? {
            Some(bytes) => Ok(Some(decode_stored(*id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The signed bytes of a stored record.
    ///
    /// # Errors
    /// Disk errors.
    pub fn get_bytes(&self, id: &RecordId) -> Result<Option<Vec<u8>>, StoreError> {
        self.records.get(id)
    }

    /// The id of `author`'s record at `seq` in its log, if stored.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn log_at(&self, author: &AuthorId, seq: u64) -> Result<Option<RecordId>, StoreError> {
        match self.log.get(log_key(author, seq))? {
            Some(value) => Ok(Some(id_suffix(&value).ok_or_else(|| corrupt("log value"))?)),
            None => Ok(None),
        }
    }

    /// The highest seq stored for `author` and its record id.
    ///
    /// # Errors
    /// Disk errors.
    pub fn latest(&self, author: &AuthorId) -> Result<Option<(u64, RecordId)>, StoreError> {
        let Some((key, value)) = self.log.scan_prefix(author.as_bytes()).next_back().transpose()?
        else {
            return Ok(None);
        };
        let seq = u64_at(&key, 32).ok_or_else(|| corrupt("log key"))?;
        let id = id_suffix(&value).ok_or_else(|| corrupt("log value"))?;
        Ok(Some((seq, id)))
    }

    /// Records of `author` with seq greater than `after`, in seq order, at most `limit`.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn author_log(
        &self,
        author: &AuthorId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let start = log_key(author, after.saturating_add(1));
        let end = log_key(author, u64::MAX);
        let mut out = Vec::new();
        for item in self.log.range(start..=end).take(limit) {
            let (_, value) = item?;
            let id = id_suffix(&value).ok_or_else(|| corrupt("log value"))?;
            if let Some(rec) = self.get(&id)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Posts of `author` that `keep` accepts, newest (highest seq) first, at most `limit`;
    /// with `before_seq`, only those with a lower seq (the next page).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn posts_by_author(
        &self,
        author: &AuthorId,
        limit: usize,
        before_seq: Option<u64>,
        mut keep: impl FnMut(&StoredRecord) -> bool,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let entries = match before_seq {
            Some(seq) => self.log.range(log_key(author, 0)..log_key(author, seq)),
            None => self.log.scan_prefix(author.as_bytes()),
        };
        let mut out = Vec::new();
        for item in entries.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, value) = item?;
            // Reactions, follows and the like are skipped unread when the log says so.
            if log_says_not_post(&value) {
                continue;
            }
            let id = id_suffix(&value).ok_or_else(|| corrupt("log value"))?;
            if let Some(rec) = self.get(&id)? {
                if matches!(rec.record.kind, RecordKind::Post(_) | RecordKind::Private(_))
                    && keep(&rec)
                {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }

    /// Posts carrying `tag` that `keep` accepts, newest first, at most `limit`; with
    /// `before` (a timestamp and record id), only older ones (the next page).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn posts_by_tag(
        &self,
        tag: &Tag,
        limit: usize,
        before: Option<(u64, RecordId)>,
        mut keep: impl FnMut(&StoredRecord) -> bool,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let entries = match before {
            Some((ts, id)) => self.by_tag.range(tag_prefix(tag)..tag_key(tag, ts, &id)),
            None => self.by_tag.scan_prefix(tag_prefix(tag)),
        };
        let mut out = Vec::new();
        for item in entries.rev() {
            if out.len() >= limit {
                break;
            }
            let (key, hint) = item?;
            let id = id_suffix(&key).ok_or_else(|| corrupt("tag key"))?;
            if let Some(rec) = self.get_hinted(&id, &hint)? {
                if keep(&rec) {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }

    /// Posts (and reposts) newest first that `keep` accepts, at most `limit`; with
    /// `before` (a timestamp and record id), only older ones (the next page).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn posts_where(
        &self,
        limit: usize,
        before: Option<(u64, RecordId)>,
        mut keep: impl FnMut(&StoredRecord) -> bool,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let entries = match before {
            Some((ts, id)) => self.by_time.range(..time_key(ts, &id)),
            None => self.by_time.iter(),
        };
        let mut out = Vec::new();
        for item in entries.rev() {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            let id = id_suffix(&key).ok_or_else(|| corrupt("time key"))?;
            let hint = value.get(by_time_value(&value).1..).unwrap_or_default();
            if let Some(rec) = self.get_hinted(&id, hint)? {
                if keep(&rec) {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }
}

pub(super) fn decode_stored(id: RecordId, bytes: &[u8]) -> Result<StoredRecord, StoreError> {
    let signed: SignedRecord = kith_protocol::codec::decode::<_, MAX_RECORD_BYTES>(bytes)
        .map_err(|e| StoreError::Corrupt(format!("record {id}: {e}")))?;
    Ok(StoredRecord { id, record: signed.record })
}
