//! What a sync answer holds: the records a peer's question asks for, within a page
//! (friends get full pages, strangers small ones). Only reads the store; the budget for
//! serving (how many answers at once, bytes per second) is the driver's.

use std::collections::HashMap;

use kith_protocol::{
    sync::{
        Bucket, DigestResponse, Query, SyncError, SyncResponse, TagCursor, MAX_SYNC_RECORDS,
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

/// What summarising one tag of a digest costs the serving budget, in bytes: a tag's
/// summary reads its 30 days of index entries, as a tag question does, while the answer
/// is a few bytes; without this a stranger could name up to 128 busy tags in
/// every request for the price of one small answer ([`kith_protocol::sync::MAX_DIGEST_TAGS`]).
pub const DIGEST_TAG_COST: usize = 4 * 1024;

/// The encoded answer to `query` within `page` (a [`DigestResponse`] for a digest, a
/// [`SyncResponse`] otherwise), and what it costs the serving budget in bytes: its size,
/// plus [`DIGEST_TAG_COST`] for each tag a digest names.
pub fn answer(store: &Store, query: Query, page: Page) -> Result<(Vec<u8>, usize), SyncError> {
    let (bytes, extra) = match query {
        Query::Digest { authors, since, tags } => {
            (digest(store, &authors, since, &tags).to_bytes()?, tags.len() * DIGEST_TAG_COST)
        }
        query => (serve(store, query, page).to_bytes()?, 0),
    };
    let cost = bytes.len() + extra;
    Ok((bytes, cost))
}

/// The answer to `query` from what `store` holds, within `page` (see [`answer`] for the
/// encoded answer to any question, digests included).
pub fn serve(store: &Store, query: Query, page: Page) -> SyncResponse {
    match query {
        // Offers are taken by the core itself; digests are answered by [`answer`].
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
fn digest(
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
    let log = store.author_log_bytes(author, after, page.records).unwrap_or_default();
    let full = log.len() == page.records;
    for bytes in log {
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
