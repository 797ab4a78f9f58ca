//! Serving sync requests within a budget: a peer's 44-byte question could make this
//! node send a megabyte, so answers are limited in concurrency and in bytes per second
//! for all peers together, and strangers (people this node's person neither follows nor
//! is followed by) get small pages, few places and only what the friends leave over.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use kith_protocol::sync::Query;
use libp2p::PeerId;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{
    core::{
        sync::{self, Page, STRANGER_PAGE_BYTES},
        Input, ReplyId,
    },
    net::Responder,
    node::Node,
};

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
        crate::core::sync::is_friend(&self.inner.store, &self.inner.me, peer)
    }

    /// A sync request from `peer`, within the per-peer limit (over it the request is
    /// dropped: the peer sees a failed request and may ask again later), to the core
    /// (off the async threads: an offer's signatures are checked there).
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
        self.answer_request_blocking(channel, |reply| Input::SyncRequest {
            from: peer,
            bytes,
            reply,
        })
        .await;
    }

    /// Serves a question the core handed over ([`crate::core::Effect::Serve`]) within the
    /// serving budget: a request over it is dropped (the peer sees a failed request and
    /// may ask again later).
    pub(in crate::node) async fn serve_sync(&self, reply: ReplyId, query: Query, friend: bool) {
        let Some(channel) = self.take_responder(reply) else { return };
        let budget = &self.inner.sync.serving;
        let (permit, page, prepaid) = if friend {
            (budget.friend().await, Page::FRIEND, 0)
        } else {
            (budget.stranger(), Page::STRANGER, STRANGER_PAGE_BYTES)
        };
        let Some(_permit) = permit else {
            self.inner.rate_limited.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let store = self.inner.store.clone();
        let answer = tokio::task::spawn_blocking(move || sync::answer(&store, query, page))
            .await
            .unwrap_or_else(|_| sync::empty().to_bytes().map(|bytes| (bytes, 0)));
        match answer {
            Ok((bytes, cost)) => {
                budget.charge(cost, prepaid);
                self.inner.net.respond(channel, bytes).await;
            }
            Err(error) => {
                budget.charge(0, prepaid);
                tracing::error!(%error, "cannot encode a sync response");
            }
        }
    }
}
