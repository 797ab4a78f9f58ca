//! The home timeline read from the indexes: the posts of the people shown (from
//! `by_time`, whose value starts with the author's first bytes, so hardly anybody else's
//! record is read, and the record's author is checked) merged with the
//! posts of each subscribed tag (`by_tag`), newest first, each once. Reading only what the
//! timeline shows keeps a page's cost independent of how many other people's records the
//! store holds (a million records of a thousand authors, a hundred of them followed).

use std::collections::HashSet;

use kith_protocol::{AuthorId, RecordId, Tag};

use super::{
    backend::{IVec, Iter},
    corrupt,
    keys::{by_time_value, id_suffix, tag_key, tag_prefix, time_key, AUTHOR_PREFIX},
    Store, StoreError, StoredRecord,
};

/// One index read newest first: its next (time, id) key, with the index's own prefix cut.
struct Source<'a> {
    entries: std::iter::Rev<Iter>,
    /// Bytes before the time key (a tag's prefix; none in `by_time`).
    skip: usize,
    /// Only entries whose value names one of these authors (`by_time`; the first bytes of
    /// their ids, [`by_time_value`]).
    authors: Option<&'a HashSet<[u8; AUTHOR_PREFIX]>>,
    head: Option<[u8; 40]>,
    /// Where the head's record is in the heap, as its value ends (none: not said).
    hint: IVec,
}

impl<'a> Source<'a> {
    fn new(
        entries: Iter,
        skip: usize,
        authors: Option<&'a HashSet<[u8; AUTHOR_PREFIX]>>,
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
                let (by, at) = by_time_value(&hint);
                let by: Option<[u8; AUTHOR_PREFIX]> = by.and_then(|by| by.try_into().ok());
                if !by.is_some_and(|by| authors.contains(&by)) {
                    continue;
                }
                hint = hint.subslice(at, hint.len() - at);
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
        let wanted: HashSet<[u8; AUTHOR_PREFIX]> =
            authors.iter().filter_map(|a| a.as_bytes()[..AUTHOR_PREFIX].try_into().ok()).collect();
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
            let (mut hint, mut tagged) = (IVec::default(), false);
            for (i, source) in sources.iter_mut().enumerate() {
                if source.head == Some(top) {
                    if hint.is_empty() {
                        hint = std::mem::take(&mut source.hint);
                    }
                    tagged |= i > 0;
                    source.advance()?;
                }
            }
            let id = id_suffix(&top).ok_or_else(|| corrupt("time key"))?;
            if let Some(rec) = self.get_hinted(&id, &hint)? {
                // `by_time` matched the author's first bytes only.
                if (tagged || authors.contains(&rec.record.author)) && keep(&rec) {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }
}
