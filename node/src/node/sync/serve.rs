//! Serving sync requests within a budget: a peer's 44-byte question could make this
//! node send a megabyte, so answers are limited in concurrency and in bytes per second:
//! the node's budget for all peers together, which friends (people this node's person
//! follows or is followed by) wait for, and within it the strangers' smaller one, from
//! which strangers get small pages, few places and only what the friends leave over.

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

/// The strangers' budget: bytes of answers per second, and the most saved up. Every
/// answer counts against it (a friend's too, down to nothing), and a stranger is
/// answered only while more than [`FRIENDS_RESERVE_BYTES`] and its page are left: what
/// strangers may take is what it was when this was the budget of every peer.
pub const SERVE_BYTES_PER_SEC: f64 = 2.0 * 1024.0 * 1024.0;
pub const SERVE_BURST_BYTES: f64 = 4.0 * 1024.0 * 1024.0;
/// The node's budget, which friends wait for: bytes of answers per second to all peers
/// together, and the most saved up. Larger than the strangers' so that a friend's
/// catch-up of a year of posts (100,000 records of about 190 bytes: 18 MB of answers)
/// comes in one go rather than at 2 MiB/s.
pub const FRIEND_SERVE_BYTES_PER_SEC: f64 = 8.0 * 1024.0 * 1024.0;
pub const FRIEND_SERVE_BURST_BYTES: f64 = 32.0 * 1024.0 * 1024.0;
/// Bytes of the strangers' budget that strangers leave to friends: a stranger is
/// answered only while more than this (and its page) is left.
const FRIENDS_RESERVE_BYTES: f64 = 1024.0 * 1024.0;
/// Answers being built at once for friends (more wait) and for strangers (more are
/// refused).
const FRIEND_SERVES: usize = 4;
const STRANGER_SERVES: usize = 2;

/// A token bucket of bytes: `tokens` may be sent now (negative: in debt), as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_sec: f64, burst: f64, now: Instant) -> Self {
        Self { per_sec, burst, tokens: burst, at: now }
    }

    /// The tokens at `now`, refilled.
    fn refill(&mut self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.at = self.at.max(now);
        self.tokens
    }
}

/// The two byte budgets: the node's (friends wait for it; every answer counts) and the
/// strangers' (only strangers are held to it; every answer counts).
#[derive(Debug, Clone, Copy)]
struct Buckets {
    node: Bucket,
    strangers: Bucket,
}

impl Buckets {
    fn new(now: Instant) -> Self {
        Self {
            node: Bucket::full(FRIEND_SERVE_BYTES_PER_SEC, FRIEND_SERVE_BURST_BYTES, now),
            strangers: Bucket::full(SERVE_BYTES_PER_SEC, SERVE_BURST_BYTES, now),
        }
    }

    /// How long a friend's answer waits: until the node's budget is out of debt.
    fn friend_wait(&mut self, now: Instant) -> Option<Duration> {
        let tokens = self.node.refill(now);
        (tokens < 0.0).then(|| Duration::from_secs_f64(-tokens / self.node.per_sec))
    }

    /// Takes a stranger's page from both budgets, if the strangers' budget has more than
    /// the friends' reserve and the page left (and the node's is not spent).
    fn take_stranger_page(&mut self, now: Instant) -> bool {
        let page = STRANGER_PAGE_BYTES as f64;
        let ok = self.strangers.refill(now) >= FRIENDS_RESERVE_BYTES + page
            && self.node.refill(now) >= page;
        if ok {
            self.strangers.tokens -= page;
            self.node.tokens -= page;
        }
        ok
    }

    /// Charges an answer of `sent` bytes, less `prepaid` already taken. A friend's answer
    /// draws the strangers' budget down to nothing at most (strangers get what friends
    /// leave, and are not held up long after a friend's catch-up).
    fn charge(&mut self, now: Instant, sent: usize, prepaid: usize, friend: bool) {
        let cost = sent as f64 - prepaid as f64;
        self.node.refill(now);
        self.node.tokens -= cost;
        let before = self.strangers.refill(now);
        let after = before - cost;
        self.strangers.tokens = if friend { after.max(before.min(0.0)) } else { after };
    }
}

/// The serving budget shared by every sync request.
pub(super) struct ServeBudget {
    friends: Semaphore,
    strangers: Semaphore,
    bytes: std::sync::Mutex<Buckets>,
}

impl Default for ServeBudget {
    fn default() -> Self {
        Self {
            friends: Semaphore::new(FRIEND_SERVES),
            strangers: Semaphore::new(STRANGER_SERVES),
            bytes: std::sync::Mutex::new(Buckets::new(Instant::now())),
        }
    }
}

impl ServeBudget {
    /// Runs `f` on the byte budgets.
    fn with_bytes<T>(&self, f: impl FnOnce(&mut Buckets) -> T) -> T {
        let mut guard = match self.bytes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// A place to build a friend's answer, once the node's byte budget is not in debt.
    async fn friend(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.friends.acquire().await.ok()?;
        while let Some(wait) = self.with_bytes(|b| b.friend_wait(Instant::now())) {
            tokio::time::sleep(wait).await;
        }
        Some(permit)
    }

    /// A place to build a stranger's answer, with a page's bytes taken from the budgets,
    /// or nothing (now, not later) when the places or the budget are taken.
    fn stranger(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.strangers.try_acquire().ok()?;
        self.with_bytes(|b| b.take_stranger_page(Instant::now())).then_some(permit)
    }

    /// Charges `sent` bytes, less `prepaid` already taken.
    fn charge(&self, sent: usize, prepaid: usize, friend: bool) {
        self.with_bytes(|b| b.charge(Instant::now(), sent, prepaid, friend));
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
                budget.charge(cost, prepaid, friend);
                self.inner.net.respond(channel, bytes).await;
            }
            Err(error) => {
                budget.charge(0, prepaid, friend);
                tracing::error!(%error, "cannot encode a sync response");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    /// Answers of `size` bytes a friend is served at `now` before it has to wait.
    fn friend_bytes_at_once(b: &mut Buckets, now: Instant, size: usize) -> f64 {
        let mut sent = 0.0;
        while b.friend_wait(now).is_none() {
            b.charge(now, size, 0, true);
            sent += size as f64;
        }
        sent
    }

    /// Stranger pages served at `now` before the next is refused.
    fn stranger_bytes_at_once(b: &mut Buckets, now: Instant) -> f64 {
        let mut sent = 0.0;
        while b.take_stranger_page(now) {
            sent += STRANGER_PAGE_BYTES as f64;
        }
        sent
    }

    #[test]
    fn a_friend_gets_the_larger_budget_and_a_stranger_does_not() {
        let t0 = Instant::now();
        // A friend: the node's 32 MiB at once (answers of 1 MiB, the last one into debt),
        // then 8 MiB a second.
        let mut b = Buckets::new(t0);
        let sent = friend_bytes_at_once(&mut b, t0, 1 << 20);
        assert_eq!(sent, FRIEND_SERVE_BURST_BYTES + MIB);
        let wait = b.friend_wait(t0).unwrap();
        assert!((wait.as_secs_f64() - MIB / FRIEND_SERVE_BYTES_PER_SEC).abs() < 1e-6);
        let t1 = t0 + wait + Duration::from_secs(1);
        let more = friend_bytes_at_once(&mut b, t1, 1 << 20);
        assert_eq!(more, FRIEND_SERVE_BYTES_PER_SEC + MIB);
        // A stranger: what the old budget of every peer left it (4 MiB saved up, less
        // the friends' 1 MiB), then 2 MiB a second; never the friends' 32 MiB or 8 MiB/s.
        let mut b = Buckets::new(t0);
        let sent = stranger_bytes_at_once(&mut b, t0);
        let page = STRANGER_PAGE_BYTES as f64;
        assert!(sent > SERVE_BURST_BYTES - FRIENDS_RESERVE_BYTES - 2.0 * page, "{sent}");
        assert!(sent <= SERVE_BURST_BYTES - FRIENDS_RESERVE_BYTES, "{sent}");
        let more = stranger_bytes_at_once(&mut b, t0 + Duration::from_secs(1));
        assert!(more > SERVE_BYTES_PER_SEC - 2.0 * page, "{more}");
        assert!(more <= SERVE_BYTES_PER_SEC + page, "{more}");
    }

    #[test]
    fn strangers_get_only_what_friends_leave_and_are_not_held_up_long_after() {
        let t0 = Instant::now();
        let mut b = Buckets::new(t0);
        // A friend's catch-up takes the node's whole budget: no stranger is served.
        friend_bytes_at_once(&mut b, t0, 1 << 20);
        assert!(!b.take_stranger_page(t0));
        // A friend's answers drew the strangers' budget to nothing, not into debt: a
        // second later the strangers' budget has 2 MiB again (and the node's 8 MiB, less
        // its 1 MiB of debt), so a stranger is served.
        let t1 = t0 + Duration::from_secs(1);
        let sent = stranger_bytes_at_once(&mut b, t1);
        assert!(sent > 0.0 && sent <= SERVE_BYTES_PER_SEC - FRIENDS_RESERVE_BYTES, "{sent}");
        // Strangers' answers count against the node's budget too.
        let mut b = Buckets::new(t0);
        let before = b.node.refill(t0);
        assert!(b.take_stranger_page(t0));
        b.charge(t0, STRANGER_PAGE_BYTES, STRANGER_PAGE_BYTES, false);
        assert_eq!(b.node.refill(t0), before - STRANGER_PAGE_BYTES as f64);
    }
}
