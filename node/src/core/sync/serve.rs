//! What a sync answer holds: the records a peer's question asks for, within a page
//! (friends get full pages, strangers small ones). Only reads the store; the budget for
//! serving (how many answers at once, bytes per second) is the driver's.

use std::collections::HashMap;

use kith_protocol::{
    sync::{
        Bucket, DigestResponse, Query, SyncResponse, TagCursor, MAX_SYNC_RECORDS,
        MAX_SYNC_RESPONSE_BYTES,
    },
    AuthorId, RecordId, Tag,
};

use crate::store::Store;

/// A stranger's page: at most this many records and bytes.
pub const STRANGER_PAGE_RECORDS: usize = 32;
/// See [`STRANGER_PAGE_RECORDS`].
pub const STRANGER_PAGE_BYTES: usize = 64 * 1024;
/// Bytes kept free in a response for its framing.
const RESPONSE_SLACK: usize = 1024;

/// How much one answer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    records: usize,
    bytes: usize,
}

impl Page {
    /// A friend's page: as much as a response may hold.
    pub const FRIEND: Self = Self { records: MAX_SYNC_RECORDS, bytes: MAX_SYNC_RESPONSE_BYTES };
    /// A stranger's page.
    pub const STRANGER: Self = Self { records: STRANGER_PAGE_RECORDS, bytes: STRANGER_PAGE_BYTES };

    /// A page of at most `records` records and `bytes` bytes (tests use small ones).
    pub const fn new(records: usize, bytes: usize) -> Self {
        Self { records, bytes }
    }

    /// Whether `size` more bytes (one encoded record) still fit after `used`.
    fn fits(self, used: usize, size: usize, count: usize) -> bool {
        count < self.records && used + size + 8 <= self.bytes.saturating_sub(RESPONSE_SLACK)
    }
}

/// An answer with nothing in it.
pub fn empty() -> SyncResponse {
    SyncResponse { records: Vec::new(), more: false, next: None }
}

/// The answer to `query` from what `store` holds, within `page`.
pub fn serve(store: &Store, query: Query, page: Page) -> SyncResponse {
    match query {
        // Offers and digests are answered by the core itself.
        Query::Offer { .. } | Query::Digest { .. } => empty(),
        Query::Author { author, after } => serve_author(store, &author, after, page),
        Query::Profile { author } => {
            let current = store.profile(&author).ok().flatten();
            let bytes = current.and_then(|p| store.get_bytes(&p.id).ok().flatten());
            SyncResponse { records: bytes.into_iter().collect(), more: false, next: None }
        }
        Query::Tag { tag, since, buckets, after } => match Tag::parse(&tag) {
            Ok(tag) => serve_tag(store, &tag, since, &buckets, after, page),
            Err(_) => empty(),
        },
    }
}

/// The answer to a digest: the entries for which an author or tag question would bring
/// something (an author of whom this node holds a seq past the asker's; a tag of which
/// it holds posts since `since` and whose summary differs from the asker's, which is
/// when a tag question would be answered with records).
pub(super) fn digest(
    store: &Store,
    authors: &[(AuthorId, u64)],
    since: u64,
    tags: &[(String, Bucket)],
) -> DigestResponse {
    let mut differ = Vec::new();
    for (i, (author, seq)) in authors.iter().enumerate() {
        if store.latest(author).ok().flatten().is_some_and(|(latest, _)| latest > *seq) {
            differ.push(i as u32);
        }
    }
    for (i, (tag, theirs)) in tags.iter().enumerate() {
        let ours = Tag::parse(tag).ok().and_then(|tag| store.tag_buckets(&tag, since).ok());
        let ours = ours.map(|ours| Bucket::summary(&ours));
        // Holding none, this node would answer a tag question with nothing.
        if ours.is_some_and(|ours| ours.count > 0 && ours != *theirs) {
            differ.push((authors.len() + i) as u32);
        }
    }
    DigestResponse { differ, answered: true }
}

/// `author`'s records after seq `after`, in order, within `page`; `more` when the page
/// filled up.
fn serve_author(store: &Store, author: &AuthorId, after: u64, page: Page) -> SyncResponse {
    let mut out = Vec::new();
    let mut size = 0;
    let log = store.author_log(author, after, page.records).unwrap_or_default();
    let full = log.len() == page.records;
    for rec in log {
        let Ok(Some(bytes)) = store.get_bytes(&rec.id) else { break };
        if !page.fits(size, bytes.len(), out.len()) {
            return SyncResponse { records: out, more: true, next: None };
        }
        size += bytes.len() + 8;
        out.push(bytes);
    }
    SyncResponse { records: out, more: full, next: None }
}

/// Records with `tag` from every time bucket whose summary differs from the asker's,
/// after the cursor, within `page`.
fn serve_tag(
    store: &Store,
    tag: &Tag,
    since: u64,
    theirs: &[Bucket],
    after: Option<TagCursor>,
    page: Page,
) -> SyncResponse {
    let theirs: HashMap<u64, (u32, [u8; 16])> =
        theirs.iter().map(|b| (b.start, (b.count, b.fingerprint))).collect();
    let from = after.map_or(since, |c| c.timestamp.max(since));
    let mut out = Vec::new();
    let mut size = 0;
    let mut last = None;
    let mut bucket: Option<Bucket> = None;
    let mut pending: Vec<(u64, RecordId)> = Vec::new();
    let mut entries = store.tag_entries(tag, Bucket::start_of(from)).peekable();
    loop {
        let next = match entries.next() {
            Some(Ok(e)) => Some(e),
            Some(Err(_)) => break,
            None => None,
        };
        let boundary = match (&bucket, &next) {
            (Some(b), Some((ts, _))) => Bucket::start_of(*ts) != b.start,
            (Some(_), None) => true,
            _ => false,
        };
        if boundary {
            if let Some(b) = bucket.take() {
                let differs = theirs.get(&b.start) != Some(&(b.count, b.fingerprint));
                if differs {
                    for (ts, id) in pending.drain(..) {
                        if after.is_some_and(|c| (ts, id) <= (c.timestamp, c.id)) {
                            continue;
                        }
                        let Ok(Some(bytes)) = store.get_bytes(&id) else { continue };
                        if !page.fits(size, bytes.len(), out.len()) {
                            return SyncResponse { records: out, more: true, next: last };
                        }
                        size += bytes.len() + 8;
                        out.push(bytes);
                        last = Some(TagCursor { timestamp: ts, id });
                    }
                }
                pending.clear();
            }
        }
        let Some((ts, id)) = next else { break };
        let start = Bucket::start_of(ts);
        bucket.get_or_insert_with(|| Bucket::empty(start)).add(&id);
        pending.push((ts, id));
    }
    SyncResponse { records: out, more: false, next: None }
}
