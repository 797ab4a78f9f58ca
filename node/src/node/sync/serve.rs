//! Serving sync requests within a budget: a peer's 44-byte question could make this
//! node send a megabyte, so answers are limited in concurrency and in bytes per second
//! for all peers together, and strangers (people this node's person neither follows nor
//! is followed by) get small pages, few places and only what the friends leave over.

use std::{
    collections::HashMap,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use kith_protocol::{
    sync::{Bucket, Query, SyncRequest, SyncResponse, TagCursor, MAX_SYNC_RECORDS},
    AuthorId, Tag,
};
use libp2p::PeerId;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{Asked, RESPONSE_SLACK};
use crate::{net::Responder, node::Node, store::Store};

/// Bytes of answers served per second to all peers together, and the most saved up.
pub const SERVE_BYTES_PER_SEC: f64 = 2.0 * 1024.0 * 1024.0;
pub const SERVE_BURST_BYTES: f64 = 4.0 * 1024.0 * 1024.0;
/// Bytes of the budget that strangers leave to friends: a stranger is answered only
/// while more than this (and its page) is left.
const FRIENDS_RESERVE_BYTES: f64 = 1024.0 * 1024.0;
/// Answers being built at once for friends (more wait) and for strangers (more are
/// refused).
const FRIEND_SERVES: usize = 4;
const STRANGER_SERVES: usize = 2;
/// A stranger's page: at most this many records and bytes.
pub const STRANGER_PAGE_RECORDS: usize = 32;
pub const STRANGER_PAGE_BYTES: usize = 64 * 1024;

/// How much one answer may hold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Page {
    records: usize,
    bytes: usize,
}

impl Page {
    const FRIEND: Self =
        Self { records: MAX_SYNC_RECORDS, bytes: kith_protocol::sync::MAX_SYNC_RESPONSE_BYTES };
    const STRANGER: Self = Self { records: STRANGER_PAGE_RECORDS, bytes: STRANGER_PAGE_BYTES };

    /// Whether `size` more bytes (one encoded record) still fit after `used`.
    fn fits(self, used: usize, size: usize, count: usize) -> bool {
        count < self.records && used + size + 8 <= self.bytes.saturating_sub(RESPONSE_SLACK)
    }
}

/// The serving budget shared by every sync request.
pub(super) struct ServeBudget {
    friends: Semaphore,
    strangers: Semaphore,
    /// Bytes that may be sent now (negative after a friend's large answer) and when
    /// that was computed.
    bytes: std::sync::Mutex<(f64, Instant)>,
}

impl Default for ServeBudget {
    fn default() -> Self {
        Self {
            friends: Semaphore::new(FRIEND_SERVES),
            strangers: Semaphore::new(STRANGER_SERVES),
            bytes: std::sync::Mutex::new((SERVE_BURST_BYTES, Instant::now())),
        }
    }
}

impl ServeBudget {
    /// Runs `f` on the refilled byte budget.
    fn with_bytes<T>(&self, f: impl FnOnce(&mut f64) -> T) -> T {
        let mut guard = match self.bytes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (tokens, at) = &mut *guard;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * SERVE_BYTES_PER_SEC)
            .min(SERVE_BURST_BYTES);
        *at = now;
        f(tokens)
    }

    /// A place to build a friend's answer, once the byte budget is not in debt.
    async fn friend(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.friends.acquire().await.ok()?;
        loop {
            let debt = self.with_bytes(|t| (*t < 0.0).then_some(-*t));
            match debt {
                Some(debt) => {
                    tokio::time::sleep(Duration::from_secs_f64(debt / SERVE_BYTES_PER_SEC)).await;
                }
                None => return Some(permit),
            }
        }
    }

    /// A place to build a stranger's answer, with a page's bytes taken from the budget,
    /// or nothing (now, not later) when the places or the budget are taken.
    fn stranger(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.strangers.try_acquire().ok()?;
        let page = STRANGER_PAGE_BYTES as f64;
        let taken = self.with_bytes(|t| {
            let ok = *t >= FRIENDS_RESERVE_BYTES + page;
            if ok {
                *t -= page;
            }
            ok
        });
        taken.then_some(permit)
    }

    /// Charges `sent` bytes, less `prepaid` already taken.
    fn charge(&self, sent: usize, prepaid: usize) {
        self.with_bytes(|t| *t -= sent as f64 - prepaid as f64);
    }
}

impl Node {
    /// Whether `peer` is the node of someone this node's person follows or is followed
    /// by.
    pub(in crate::node) fn is_friend(&self, peer: &PeerId) -> bool {
        let Ok(them) = AuthorId::from_peer_id(peer) else { return false };
        let store = &self.inner.store;
        let me = &self.inner.me;
        store.is_following(me, &them).unwrap_or(false)
            || store.is_following(&them, me).unwrap_or(false)
    }

    /// Answers a sync request from `peer`, within the serving budget: a request over it
    /// is dropped (the peer sees a failed request and may ask again later).
    pub(in crate::node) async fn handle_sync_request(
        &self,
        peer: PeerId,
        bytes: Vec<u8>,
        channel: Responder,
    ) {
        if !self.inner.sync.requests.allow(peer) {
            // Dropping the channel fails the request; the peer may retry later.
            self.inner.rate_limited.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let query = match SyncRequest::from_bytes(&bytes) {
            Ok(request) => request.query,
            Err(error) => {
                tracing::info!(%peer, %error, "malformed sync request");
                let empty = SyncResponse { records: Vec::new(), more: false, next: None };
                if let Ok(bytes) = empty.to_bytes() {
                    self.inner.net.respond(channel, bytes).await;
                }
                return;
            }
        };
        if let Query::Offer { records } = query {
            // A peer offers its own recent records only: anything else is refused, so an
            // offer cannot plant other authors' records.
            if let Ok(offerer) = AuthorId::from_peer_id(&peer) {
                self.ingest_synced(records, Asked::Author(offerer)).await;
            }
            let empty = SyncResponse { records: Vec::new(), more: false, next: None };
            if let Ok(bytes) = empty.to_bytes() {
                self.inner.net.respond(channel, bytes).await;
            }
            return;
        }
        let budget = &self.inner.sync.serving;
        let (permit, page, prepaid) = if self.is_friend(&peer) {
            (budget.friend().await, Page::FRIEND, 0)
        } else {
            (budget.stranger(), Page::STRANGER, STRANGER_PAGE_BYTES)
        };
        let Some(_permit) = permit else {
            self.inner.rate_limited.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let response = self.serve(query, page).await;
        match response.to_bytes() {
            Ok(bytes) => {
                budget.charge(bytes.len(), prepaid);
                self.inner.net.respond(channel, bytes).await;
            }
            Err(error) => {
                budget.charge(0, prepaid);
                tracing::error!(%error, "cannot encode a sync response");
            }
        }
    }

    async fn serve(&self, query: Query, page: Page) -> SyncResponse {
        let empty = SyncResponse { records: Vec::new(), more: false, next: None };
        let store = self.inner.store.clone();
        match query {
            Query::Offer { .. } => empty,
            Query::Author { author, after } => tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                let mut size = 0;
                let log = store.author_log(&author, after, page.records).unwrap_or_default();
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
            })
            .await
            .unwrap_or(empty),
            Query::Profile { author } => tokio::task::spawn_blocking(move || {
                let current = store.profile(&author).ok().flatten();
                let bytes = current.and_then(|p| store.get_bytes(&p.id).ok().flatten());
                SyncResponse { records: bytes.into_iter().collect(), more: false, next: None }
            })
            .await
            .unwrap_or(empty),
            Query::Tag { tag, since, buckets, after } => {
                let Ok(tag) = Tag::parse(&tag) else { return empty };
                tokio::task::spawn_blocking(move || {
                    serve_tag(&store, &tag, since, &buckets, after, page)
                })
                .await
                .unwrap_or(empty)
            }
        }
    }
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
    let mut pending: Vec<(u64, kith_protocol::RecordId)> = Vec::new();
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
