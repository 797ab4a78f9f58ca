//! History sync, the driver's side: the decisions (what to ask, paging, gap filling,
//! offers, what an answer holds) are the core's ([`crate::core::sync`]); here are the
//! rounds (which peers, how many at once), the deadlines, the serving budget and the
//! questions sent over the network.

mod profiles;
mod serve;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use kith_protocol::{sync::SyncResponse, AuthorId, Tag, VerifiedRecord};
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{drive::lock, now_ms, Node};
use crate::{
    api::SyncCounters,
    core::{
        sync::{self, Pull, Pulled, QueryFailure},
        Answer, AnswerId, Effect, Input,
    },
    limits::RateLimiter,
    net::Proto,
};

pub use crate::core::sync::{STRANGER_PAGE_BYTES, STRANGER_PAGE_RECORDS};
pub use serve::{
    FRIEND_SERVE_BURST_BYTES, FRIEND_SERVE_BYTES_PER_SEC, SERVE_BURST_BYTES, SERVE_BYTES_PER_SEC,
};

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

/// Sync requests per second answered for one peer, and the burst (a new connection
/// syncs every followed author and subscribed tag at once).
const SYNC_REQUEST_RATE: f64 = 50.0;
const SYNC_REQUEST_BURST: f64 = 500.0;

/// The pace of the periodic sync rounds that `idle` asks for.
pub(super) fn pace(idle: &crate::net::IdleTuning) -> sync::Pace {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    sync::Pace {
        min_ms: ms(idle.sync_interval),
        max_ms: ms(idle.sync_interval_max),
        jitter: idle.sync_jitter,
    }
}

/// Sync state shown by `kith status` (records fetched and rejected are the core's).
pub(super) struct SyncState {
    syncing: AtomicU64,
    rounds: AtomicU64,
    last_round_ms: AtomicU64,
    friends: Semaphore,
    strangers: Semaphore,
    /// What serving others' sync requests may cost.
    serving: serve::ServeBudget,
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
            rounds: AtomicU64::new(0),
            last_round_ms: AtomicU64::new(0),
            friends: Semaphore::new(MAX_FRIEND_SYNCS),
            strangers: Semaphore::new(MAX_STRANGER_SYNCS),
            serving: serve::ServeBudget::default(),
            profiles: profiles::ProfileFetches::default(),
            requests: RateLimiter::new(SYNC_REQUEST_RATE, SYNC_REQUEST_BURST),
        }
    }
}

/// A pull's question asked before the core asked it (the pull, the peer, the question),
/// its answer, and the checks of its records going on meanwhile.
pub(super) type Prefetched =
    ((AnswerId, PeerId, Vec<u8>), Result<Vec<u8>, QueryFailure>, Option<CheckAhead>);

/// The signature checks of an early answer's records, made on a blocking thread while
/// the core checks and stores the page before (whose last checks and whose write leave a
/// core idle): the core's own checks of these records then find them passed
/// ([`kith_protocol::VerifiedRecord::check_ahead`]) and cost a hash. Dropped when the
/// core takes the answer (or it goes unused): the checks stop at the next record, so
/// the two never check the same records side by side.
pub(super) struct CheckAhead {
    stop: Arc<AtomicBool>,
}

impl CheckAhead {
    /// Starts checking the records of the sync answer `reply` (nothing if it does not
    /// decode: the core says why when it gets it). Stops at the first record that fails:
    /// a peer's bad records are checked once more by the core, not once per record.
    fn start(reply: &[u8]) -> Option<Self> {
        let records = SyncResponse::from_bytes(reply).ok()?.records;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        tokio::task::spawn_blocking(move || {
            for record in &records {
                if stopped.load(Ordering::Relaxed) || VerifiedRecord::check_ahead(record).is_err() {
                    break;
                }
            }
        });
        Some(Self { stop })
    }
}

impl Drop for CheckAhead {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Progress of a sync round: (peers done, peers in all, records fetched so far).
pub(crate) type Progress = mpsc::Sender<(usize, usize, u64)>;

impl Node {
    /// Sync state for `kith status`.
    pub(super) fn sync_snapshot(&self) -> SyncCounters {
        let state = &self.inner.sync;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (fetched, rejected) = self.core_sync_counters();
        SyncCounters {
            peers_syncing: get(&state.syncing),
            records_fetched: fetched,
            records_rejected: rejected,
            rounds: get(&state.rounds),
            last_round_ms: get(&state.last_round_ms),
        }
    }

    /// Sends sync request `bytes` to `peer`; its answer's bytes, or why there are none
    /// (silent: no answer within [`QUERY_DEADLINE`]).
    pub(super) async fn sync_query(
        &self,
        peer: PeerId,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, QueryFailure> {
        let request = self.inner.net.request(Proto::Sync, peer, Vec::new(), bytes);
        match tokio::time::timeout(QUERY_DEADLINE, request).await {
            Err(_) => Err(QueryFailure {
                reason: format!("no answer in {QUERY_DEADLINE:?}"),
                silent: true,
            }),
            Ok(Err(error)) => Err(QueryFailure { reason: error.to_string(), silent: false }),
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    /// Hands the answer to the pull question `request` to the core (on a blocking
    /// thread: it checks signatures) and meanwhile asks `peer` the page the core will ask
    /// next if every record of this one passes its checks
    /// ([`sync::next_page_guess`]): the peer reads the next page while this node checks
    /// and stores this one. Returns the core's effects, and the early question with its
    /// answer, to be used only if the core asks exactly that question next.
    pub(super) async fn pull_answer(
        &self,
        answer: AnswerId,
        peer: PeerId,
        request: &[u8],
        result: Result<Vec<u8>, QueryFailure>,
    ) -> (Vec<Effect>, Option<Prefetched>) {
        let guess = result.as_ref().ok().and_then(|reply| sync::next_page_guess(request, reply));
        let step = self.step_blocking(Input::PullAnswer { answer, result });
        match guess {
            None => (step.await, None),
            Some(next) => {
                let early = async {
                    let reply = self.sync_query(peer, next.clone()).await;
                    let ahead = reply.as_deref().ok().and_then(CheckAhead::start);
                    (reply, ahead)
                };
                let (effects, (reply, ahead)) = tokio::join!(step, early);
                (effects, Some(((answer, peer, next), reply, ahead)))
            }
        }
    }

    /// Pulls `what` from `peer` (the core asks, page by page; the questions are sent as
    /// the core's effects are carried out), for at most `deadline` when given.
    pub(super) async fn pull(
        &self,
        peer: PeerId,
        what: Pull,
        deadline: Option<Duration>,
    ) -> Pulled {
        let pending = &self.inner.pending;
        let answer = AnswerId(pending.next.fetch_add(1, Ordering::Relaxed));
        let (tx, mut rx) = oneshot::channel();
        lock(&pending.answers).insert(answer, tx);
        let run = self.drive(Input::Pull { peer, what, answer });
        let finished = match deadline {
            Some(deadline) => tokio::time::timeout(deadline, run).await.is_ok(),
            None => {
                run.await;
                true
            }
        };
        lock(&pending.answers).remove(&answer);
        match rx.try_recv() {
            Ok(Ok(Answer::Pulled(pulled))) => pulled,
            _ => {
                if !finished {
                    tracing::debug!(%peer, "sync took too long; left for the next round");
                }
                // Stopped before its end: the core forgets it.
                self.drive(Input::PullStop { answer }).await;
                Pulled::default()
            }
        }
    }

    /// Fetches `author`'s records that this node misses from `peer`: from the end of its
    /// contiguous prefix on, page by page.
    pub(super) async fn sync_author(&self, peer: PeerId, author: AuthorId) -> Pulled {
        self.pull(peer, Pull::Author(author), None).await
    }

    /// Fetches posts with `tag` that this node misses from `peer`.
    pub(super) async fn sync_tag(&self, peer: PeerId, tag: &Tag) -> Pulled {
        self.pull(peer, Pull::Tag(tag.clone()), None).await
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
        let what =
            if crate::net::idle_tuning().sync_digest { Pull::Changed } else { Pull::Everything };
        let pulled = self.pull(peer, what, Some(PEER_SYNC_DEADLINE)).await;
        state.syncing.fetch_sub(1, Ordering::Relaxed);
        if pulled.fetched > 0 {
            tracing::info!(%peer, fetched = pulled.fetched, "synced");
        }
        pulled.fetched
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

    /// Runs a periodic sync round and reports it to the core, which schedules the next
    /// ([`crate::core::sync::Pace`]).
    pub(super) fn run_sync_round(&self) {
        let node = self.clone();
        self.spawn(async move {
            let (fetched, _) = node.sync_round(PEERS_PER_ROUND, None, Stranger::IfFree).await;
            node.drive(Input::SyncRoundDone { fetched }).await;
        });
    }

    /// Syncs with `peer` in a task of its own (its digest showed it ahead of this node).
    pub(super) fn sync_later(&self, peer: PeerId) {
        let node = self.clone();
        self.spawn(async move {
            node.sync_with(peer, Stranger::IfFree).await;
        });
    }

    /// Probes `topics` ([`crate::core::Effect::Probe`]): a few peers that take each and
    /// are outside this node's mesh of it get one digest of their topics' entries; the
    /// answers do not matter.
    pub(super) fn probe(&self, since: u64, topics: Vec<(String, sync::ProbeEntry)>) {
        let node = self.clone();
        self.spawn(async move {
            let names = topics.iter().map(|(t, _)| t.clone()).collect();
            let peers = node.inner.net.outsiders(names, sync::PROBE_PEERS).await;
            for (peer, bytes) in sync::probe_requests(since, &topics, &peers) {
                if let Err(failure) = node.sync_query(peer, bytes).await {
                    tracing::debug!(%peer, error = %failure.reason, "probe not answered");
                }
            }
        });
    }

    /// A record arrived whose predecessor is missing: fetch the gap from the peer that
    /// sent it (once per author at a time: the core keeps track).
    pub(super) fn fill_gap(&self, peer: PeerId, author: AuthorId) {
        let node = self.clone();
        self.spawn(async move {
            node.pull(peer, Pull::Gap(author), None).await;
        });
    }

    /// A peer subscribed to `topic`: the core offers it our recent records that went
    /// there.
    pub(super) fn peer_subscribed(&self, peer: PeerId, topic: &str) {
        let node = self.clone();
        let topic = topic.to_owned();
        self.spawn(async move { node.drive(Input::PeerSubscribed { peer, topic }).await });
    }
}
