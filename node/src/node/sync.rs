//! History sync: asking peers for what this node misses (followed authors' logs by
//! position, subscribed tags by time buckets), serving their questions, and offering
//! our own recent records to a peer that just subscribed to a topic they went to.

mod profiles;
mod serve;

use std::{
    collections::HashSet,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use kith_protocol::{
    codec,
    limits::MAX_RECORD_BYTES,
    record::SignedRecord,
    sync::{Query, SyncRequest, SyncResponse, MAX_OFFER_RECORDS},
    AuthorId, RecordKind, Tag, Topic, VerifiedRecord,
};
use libp2p::PeerId;
use tokio::sync::{mpsc, Mutex, Semaphore};

use super::{now_ms, Node};
use crate::{
    api::SyncCounters,
    ingest::{self, Outcome},
    keep::Came,
    limits::RateLimiter,
    net::Proto,
};

pub use serve::{
    SERVE_BURST_BYTES, SERVE_BYTES_PER_SEC, STRANGER_PAGE_BYTES, STRANGER_PAGE_RECORDS,
};

/// How often the node syncs with (some of) its peers.
pub(super) const SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// Peers synced with on each periodic round.
const PEERS_PER_ROUND: usize = 8;
/// Friends (followed, or following this node's person) synced with at once; more wait.
const MAX_FRIEND_SYNCS: usize = 4;
/// Strangers synced with at once; more are skipped until the next round, so strangers
/// (a silent one, say) never hold up a friend's sync.
const MAX_STRANGER_SYNCS: usize = 2;
/// Whether a sync with a stranger waits for one of the [`MAX_STRANGER_SYNCS`] places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stranger {
    /// Wait: the person asked for this sync (`kith sync`) and expects every peer asked.
    Wait,
    /// Skip the stranger until the next round if no place is free (the node's own rounds
    /// and the sync with a new connection).
    IfFree,
}
/// How long one sync question may go unanswered: a peer that does not answer in time is
/// left for this sync (its other questions are not asked).
const QUERY_DEADLINE: Duration = Duration::from_secs(5);
/// Most time one sync with one peer may take.
const PEER_SYNC_DEADLINE: Duration = Duration::from_secs(120);
/// Pages fetched per author or tag in one sync with one peer.
const MAX_PAGES: usize = 200;
/// How far back tag sync looks, ms (30 days).
const TAG_HORIZON_MS: u64 = 30 * 24 * 3_600_000;
/// Own records younger than this are offered to a peer that subscribes to their topic.
const OFFER_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Bytes kept free in a response for its framing.
const RESPONSE_SLACK: usize = 1024;

/// Sync requests per second answered for one peer, and the burst (a new connection
/// syncs every followed author and subscribed tag at once).
const SYNC_REQUEST_RATE: f64 = 50.0;
const SYNC_REQUEST_BURST: f64 = 500.0;

/// Sync state shown by `kith status`.
pub(super) struct SyncState {
    syncing: AtomicU64,
    fetched: AtomicU64,
    rejected: AtomicU64,
    rounds: AtomicU64,
    last_round_ms: AtomicU64,
    friends: Semaphore,
    strangers: Semaphore,
    /// What serving others' sync requests may cost.
    serving: serve::ServeBudget,
    /// Authors with a gap being filled (so one gap causes one fetch).
    gaps: Mutex<HashSet<AuthorId>>,
    /// Profiles being fetched for people shown without a name.
    profiles: profiles::ProfileFetches,
    /// Per-peer limit on sync requests, inside the node's limit on all requests: a sync
    /// answer reads up to a page of records, so a peer gets fewer of them than of
    /// direct messages.
    requests: RateLimiter<PeerId>,
}

impl Default for SyncState {
    fn default() -> Self {
        Self {
            syncing: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
            last_round_ms: AtomicU64::new(0),
            friends: Semaphore::new(MAX_FRIEND_SYNCS),
            strangers: Semaphore::new(MAX_STRANGER_SYNCS),
            serving: serve::ServeBudget::default(),
            gaps: Mutex::new(HashSet::new()),
            profiles: profiles::ProfileFetches::default(),
            requests: RateLimiter::new(SYNC_REQUEST_RATE, SYNC_REQUEST_BURST),
        }
    }
}

impl SyncState {
    pub(super) fn snapshot(&self) -> SyncCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SyncCounters {
            peers_syncing: get(&self.syncing),
            records_fetched: get(&self.fetched),
            records_rejected: get(&self.rejected),
            rounds: get(&self.rounds),
            last_round_ms: get(&self.last_round_ms),
        }
    }
}

/// What a sync answer was asked for. A record outside it is refused: a peer can make
/// this node verify records, never store ones it did not ask for.
enum Asked {
    /// Records of this author (an author query).
    Author(AuthorId),
    /// Posts carrying this tag (a tag query).
    Tag(Tag),
    /// This author's profile (a profile query).
    Profile(AuthorId),
}

impl Asked {
    /// The checks for one record of an answer: [`ingest::check`], after refusing a
    /// record outside what was asked.
    fn check(&self, bytes: &[u8], now: u64) -> Result<VerifiedRecord, String> {
        match self {
            Self::Author(author) | Self::Profile(author) => {
                // Look at the author before the full check; a record that does not decode
                // is left for `check` to refuse with its own reason.
                let decoded = codec::decode::<SignedRecord, MAX_RECORD_BYTES>(bytes);
                if let Ok(signed) = decoded {
                    if signed.record.author != *author {
                        let found = signed.record.author;
                        return Err(format!("a record of {found} in an answer about {author}"));
                    }
                    let profile = matches!(signed.record.kind, RecordKind::Profile { .. });
                    if matches!(self, Self::Profile(_)) && !profile {
                        return Err(format!("a record other than a profile for {author}"));
                    }
                }
                ingest::check(bytes, None, now)
            }
            Self::Tag(tag) => {
                // As on the tag's gossip topic: a record without the tag is refused.
                ingest::check(bytes, Some(&Topic::Tag(tag.clone()).to_string()), now)
            }
        }
    }
}

/// What one author's or tag's sync with a peer got.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pulled {
    /// New records stored.
    pub(super) fetched: u64,
    /// Whether the peer left a question unanswered past [`QUERY_DEADLINE`] (then nothing
    /// more is asked of it this time).
    pub(super) failed: bool,
}

/// Why a sync question got no usable answer.
#[derive(Debug)]
struct QueryFailed {
    reason: String,
    /// No answer within [`QUERY_DEADLINE`] (rather than a refusal or a bad answer).
    silent: bool,
}

impl std::fmt::Display for QueryFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl QueryFailed {
    fn new(reason: impl ToString) -> Self {
        Self { reason: reason.to_string(), silent: false }
    }
}

/// Progress of a sync round: (peers done, peers in all, records fetched so far).
pub(crate) type Progress = mpsc::Sender<(usize, usize, u64)>;

impl Node {
    async fn query(&self, peer: PeerId, query: Query) -> Result<SyncResponse, QueryFailed> {
        let bytes = SyncRequest { query }.to_bytes().map_err(QueryFailed::new)?;
        let request = self.inner.net.request(Proto::Sync, peer, Vec::new(), bytes);
        let reply = tokio::time::timeout(QUERY_DEADLINE, request)
            .await
            .map_err(|_| QueryFailed {
                reason: format!("no answer in {QUERY_DEADLINE:?}"),
                silent: true,
            })?
            .map_err(QueryFailed::new)?;
        SyncResponse::from_bytes(&reply).map_err(QueryFailed::new)
    }

    /// Verifies and stores records from sync through the one ingest path; returns how
    /// many were new. Records outside what was `asked` are refused like invalid ones.
    async fn ingest_synced(&self, records: Vec<Vec<u8>>, asked: Asked) -> u64 {
        let store = self.inner.store.clone();
        let admission = self.inner.admission;
        let outcomes = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            ingest::ingest_batch_with(
                &store,
                &admission,
                Came::Direct,
                &records,
                now,
                threads,
                |r| asked.check(r, now),
            )
        })
        .await
        .unwrap_or_default();
        let mut new = 0;
        for outcome in outcomes {
            match outcome {
                Ok(Outcome::New(record)) => {
                    new += 1;
                    self.announce(&record);
                }
                Ok(Outcome::Invalid(reason)) => {
                    self.inner.sync.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%reason, "rejected a synced record");
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "store failed during sync"),
            }
        }
        self.inner.sync.fetched.fetch_add(new, Ordering::Relaxed);
        new
    }

    /// Fetches `author`'s records that this node misses from `peer`: from the end of its
    /// contiguous prefix on, page by page. A seq no peer can serve (a deleted or expired
    /// record) does not stop later records: the next page starts after the last record
    /// received.
    pub(super) async fn sync_author(&self, peer: PeerId, author: AuthorId) -> Pulled {
        let mut fetched = 0;
        let Ok(mut after) = self.inner.store.contiguous_seq(&author) else {
            return Pulled { fetched, failed: false };
        };
        for _ in 0..MAX_PAGES {
            let response = match self.query(peer, Query::Author { author, after }).await {
                Ok(r) => r,
                Err(error) => {
                    tracing::debug!(%peer, %error, "author sync failed");
                    return Pulled { fetched, failed: error.silent };
                }
            };
            let last = response.records.last().and_then(|b| seq_of(b, &author));
            if response.records.is_empty() {
                break;
            }
            fetched += self.ingest_synced(response.records, Asked::Author(author)).await;
            let contiguous = self.inner.store.contiguous_seq(&author).unwrap_or(after);
            let next = contiguous.max(last.unwrap_or(0));
            // Stop when the peer has no more, or serves nothing past where we were.
            if !response.more || next <= after {
                break;
            }
            after = next;
        }
        Pulled { fetched, failed: false }
    }

    /// Fetches posts with `tag` that this node misses from `peer`.
    pub(super) async fn sync_tag(&self, peer: PeerId, tag: &Tag) -> Pulled {
        let since = now_ms().saturating_sub(TAG_HORIZON_MS);
        let mut after = None;
        let mut fetched = 0;
        for _ in 0..MAX_PAGES {
            let Ok(buckets) = self.inner.store.tag_buckets(tag, since) else { break };
            let query = Query::Tag { tag: tag.to_string(), since, buckets, after };
            let response = match self.query(peer, query).await {
                Ok(r) => r,
                Err(error) => {
                    tracing::debug!(%peer, %error, "tag sync failed");
                    return Pulled { fetched, failed: error.silent };
                }
            };
            fetched += self.ingest_synced(response.records, Asked::Tag(tag.clone())).await;
            match response.next {
                Some(next) if Some(next) != after => after = Some(next),
                _ => break,
            }
        }
        Pulled { fetched, failed: false }
    }

    /// One sync with `peer`: every followed author and every subscribed tag, until the
    /// peer fails to answer one question or [`PEER_SYNC_DEADLINE`] passes. A friend waits
    /// for a place; a stranger too when the person asked for this sync
    /// ([`Stranger::Wait`]), else it gets one only if one is free now.
    pub(super) async fn sync_with(&self, peer: PeerId, stranger: Stranger) -> u64 {
        let state = &self.inner.sync;
        let permit = if self.is_friend(&peer) {
            state.friends.acquire().await.ok()
        } else {
            match stranger {
                Stranger::Wait => state.strangers.acquire().await.ok(),
                Stranger::IfFree => state.strangers.try_acquire().ok(),
            }
        };
        let Some(_permit) = permit else { return 0 };
        state.syncing.fetch_add(1, Ordering::Relaxed);
        let store = &self.inner.store;
        let fetched = std::sync::atomic::AtomicU64::new(0);
        let questions = async {
            for author in store.following(&self.inner.me).unwrap_or_default() {
                let pulled = self.sync_author(peer, author).await;
                fetched.fetch_add(pulled.fetched, Ordering::Relaxed);
                if pulled.failed {
                    return;
                }
            }
            for tag in store.subscriptions().unwrap_or_default() {
                let pulled = self.sync_tag(peer, &tag).await;
                fetched.fetch_add(pulled.fetched, Ordering::Relaxed);
                if pulled.failed {
                    return;
                }
            }
        };
        if tokio::time::timeout(PEER_SYNC_DEADLINE, questions).await.is_err() {
            tracing::debug!(%peer, "sync took too long; left for the next round");
        }
        let fetched = fetched.into_inner();
        state.syncing.fetch_sub(1, Ordering::Relaxed);
        if fetched > 0 {
            tracing::info!(%peer, fetched, "synced");
        }
        fetched
    }

    /// Syncs with connected peers (at most `max_peers`), reporting progress.
    pub(crate) async fn sync_round(
        &self,
        max_peers: usize,
        progress: Option<Progress>,
        stranger: Stranger,
    ) -> (u64, usize) {
        let mut peers: Vec<PeerId> = match self.inner.net.peers().await {
            Ok(p) => p.into_iter().map(|p| p.peer).collect(),
            Err(_) => Vec::new(),
        };
        // Each round starts further along the list, so that with more than `max_peers`
        // connections every peer gets its turn, not always the same first few.
        if !peers.is_empty() {
            let round = self.inner.sync.rounds.load(Ordering::Relaxed) as usize;
            let start = round.wrapping_mul(max_peers) % peers.len();
            peers.rotate_left(start);
        }
        peers.truncate(max_peers);
        // Friends first: a round that meets silent strangers has synced the friends by then.
        peers.sort_by_key(|p| !self.is_friend(p));
        let total = peers.len();
        let mut fetched = 0;
        if let Some(tx) = &progress {
            let _ = tx.send((0, total, 0)).await;
        }
        for (done, peer) in peers.into_iter().enumerate() {
            fetched += self.sync_with(peer, stranger).await;
            if let Some(tx) = &progress {
                let _ = tx.send((done + 1, total, fetched)).await;
            }
        }
        let state = &self.inner.sync;
        state.rounds.fetch_add(1, Ordering::Relaxed);
        state.last_round_ms.store(now_ms(), Ordering::Relaxed);
        (fetched, total)
    }

    /// Syncs periodically.
    pub(super) async fn run_sync_timer(self) {
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        tick.tick().await;
        while self.tick(&mut tick).await {
            self.sync_round(PEERS_PER_ROUND, None, Stranger::IfFree).await;
        }
    }

    /// A record arrived whose predecessor is missing: fetch the gap from the peer that
    /// sent it (once per author at a time).
    pub(super) fn fill_gap(&self, peer: PeerId, author: AuthorId) {
        let node = self.clone();
        self.spawn(async move {
            if !node.inner.sync.gaps.lock().await.insert(author) {
                return;
            }
            node.sync_author(peer, author).await;
            node.inner.sync.gaps.lock().await.remove(&author);
        });
    }

    /// A peer subscribed to `topic`: offer it our recent records that went there. On its
    /// own author topic the peer is that person's node: if we follow them, our follow
    /// goes too, however old, so that they learn of it without fetching our log (a node
    /// no longer pulls a subscriber's whole log to find their follow).
    pub(super) fn peer_subscribed(&self, peer: PeerId, topic: &str) {
        let Some(parsed) = Topic::parse(topic) else { return };
        let node = self.clone();
        let topic = topic.to_owned();
        self.spawn(async move {
            let mut offer = node.recent_for_topic(&topic);
            let owner = AuthorId::from_peer_id(&peer).ok().filter(|a| parsed == Topic::Author(*a));
            if let Some(proof) = owner.and_then(|owner| node.follow_proof(&owner)) {
                if !offer.contains(&proof) {
                    offer.truncate(MAX_OFFER_RECORDS - 1);
                    offer.push(proof);
                }
            }
            if !offer.is_empty() {
                if let Err(error) = node.query(peer, Query::Offer { records: offer }).await {
                    tracing::debug!(%peer, %error, "offer failed");
                }
            }
        });
    }

    /// Our own records of the last [`OFFER_WINDOW_MS`] that were published to `topic`.
    fn recent_for_topic(&self, topic: &str) -> Vec<Vec<u8>> {
        let store = &self.inner.store;
        let me = self.inner.me;
        let Ok(Some((latest, _))) = store.latest(&me) else { return Vec::new() };
        let from = latest.saturating_sub(4 * MAX_OFFER_RECORDS as u64);
        let cutoff = now_ms().saturating_sub(OFFER_WINDOW_MS);
        let mut out = Vec::new();
        for rec in
            store.author_log(&me, from, 4 * MAX_OFFER_RECORDS).unwrap_or_default().iter().rev()
        {
            if rec.record.timestamp < cutoff || out.len() == MAX_OFFER_RECORDS {
                break;
            }
            if self.topics_for(&rec.record).iter().any(|t| t == topic) {
                if let Ok(Some(bytes)) = store.get_bytes(&rec.id) {
                    out.push(bytes);
                }
            }
        }
        out
    }
}

/// The seq of an encoded record of `author` (not verified: only used as a cursor).
fn seq_of(bytes: &[u8], author: &AuthorId) -> Option<u64> {
    let signed: SignedRecord = codec::decode::<_, MAX_RECORD_BYTES>(bytes).ok()?;
    (signed.record.author == *author).then_some(signed.record.seq)
}
