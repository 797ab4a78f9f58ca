//! The home timeline read from the indexes: the posts of the people shown (from
//! `by_time`, whose value is the author, so nobody else's record is read) merged with the
//! posts of each subscribed tag (`by_tag`), newest first, each once. Reading only what the
//! timeline shows keeps a page's cost independent of how many other people's records the
//! store holds (a million records of a thousand authors, a hundred of them followed).

use std::collections::HashSet;

use kith_protocol::{AuthorId, RecordId, Tag};

use super::{
    backend::{IVec, Iter},
    corrupt,
    keys::{id_suffix, tag_key, tag_prefix, time_key},
    Store, StoreError, StoredRecord,
};

/// One index read newest first: its next (time, id) key, with the index's own prefix cut.
struct Source<'a> {
    entries: std::iter::Rev<Iter>,
    /// Bytes before the time key (a tag's prefix; none in `by_time`).
    skip: usize,
    /// Only entries whose value is one of these authors (`by_time`).
    authors: Option<&'a HashSet<[u8; 32]>>,
    head: Option<[u8; 40]>,
    /// Where the head's record is in the heap, as its value ends (none: not said).
    hint: IVec,
}

impl<'a> Source<'a> {
    fn new(
        entries: Iter,
        skip: usize,
        authors: Option<&'a HashSet<[u8; 32]>>,
    ) -> Result<Self, StoreError> {
        let hint = IVec::default();
        let mut source = Self { entries: entries.rev(), skip, authors, head: None, hint };
        source.advance()?;
        Ok(source)
    }

    fn advance(&mut self) -> Result<(), StoreError> {
        self.head = None;
        for item in self.entries.by_ref() {
            let (key, value) = item?;
            let mut hint = value;
            if let Some(authors) = self.authors {
                let by: Option<[u8; 32]> = hint.get(..32).and_then(|by| by.try_into().ok());
                if !by.is_some_and(|by| authors.contains(&by)) {
                    continue;
                }
                hint = hint.subslice(32, hint.len() - 32);
            }
            let at = key.get(self.skip..).and_then(|k| <[u8; 40]>::try_from(k).ok());
            self.head = Some(at.ok_or_else(|| corrupt("time key"))?);
            self.hint = hint;
            break;
        }
        Ok(())
    }
}

impl Store {
    /// Posts (and reposts) by one of `authors` or carrying one of `tags` that `keep`
    /// accepts, newest first, at most `limit`; with `before` (a timestamp and record id),
    /// only older ones (the next page). The same as [`Store::posts_where`] with that
    /// filter, reading only the records it shows.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn home_posts(
        &self,
        authors: &HashSet<AuthorId>,
        tags: &[Tag],
        limit: usize,
        before: Option<(u64, RecordId)>,
        mut keep: impl FnMut(&StoredRecord) -> bool,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let wanted: HashSet<[u8; 32]> = authors.iter().map(|a| *a.as_bytes()).collect();
        let mut sources = Vec::with_capacity(tags.len() + 1);
        let by_time = match before {
            Some((ts, id)) => self.by_time.range(..time_key(ts, &id)),
            None => self.by_time.iter(),
        };
        sources.push(Source::new(by_time, 0, Some(&wanted))?);
        for tag in tags {
            let prefix = tag_prefix(tag);
            let entries = match before {
                Some((ts, id)) => self.by_tag.range(prefix.clone()..tag_key(tag, ts, &id)),
                None => self.by_tag.scan_prefix(&prefix),
            };
            sources.push(Source::new(entries, prefix.len(), None)?);
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(top) = sources.iter().filter_map(|s| s.head).max() else { break };
            // A post by someone followed with a subscribed tag is in several indexes.
            let mut hint = IVec::default();
            for source in &mut sources {
                if source.head == Some(top) {
                    if hint.is_empty() {
                        hint = std::mem::take(&mut source.hint);
                    }
                    source.advance()?;
                }
            }
            let id = id_suffix(&top).ok_or_else(|| corrupt("time key"))?;
            if let Some(rec) = self.get_hinted(&id, &hint)? {
                if keep(&rec) {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }
}
