//! The running node: owns the store and a network client, takes events from both, and
//! answers control requests. The network and the store never call each other; this
//! module decides.

mod attach;
pub use attach::human_size;
mod blobs;
pub(crate) mod circle;
mod collect;
mod discovery;
mod dm;
mod drive;
mod errors;
mod events;
mod feed;
mod group;
mod handlers;
mod inbound;
pub use inbound::{InboundStats, FRIENDS_RESERVED, MAX_INBOUND_REQUESTS};
mod invite;
mod mailbox;
mod people;
mod settings;
mod social;
mod stream;
pub use stream::{is_live, streams, Responses};
mod sync;
pub(crate) use sync::Stranger;

/// What serving sync requests may cost (issue #13 item 6), for tests and benchmarks.
pub use sync::{
    FRIEND_SERVE_BURST_BYTES, FRIEND_SERVE_BYTES_PER_SEC, SERVE_BURST_BYTES, SERVE_BYTES_PER_SEC,
    STRANGER_PAGE_BYTES, STRANGER_PAGE_RECORDS,
};

pub use feed::{DEFAULT_FEED_LIMIT, MAX_FEED_LIMIT};
pub use handlers::{LiveFeed, DEFAULT_THREAD_LIMIT};
pub use invite::{DEFAULT_INVITE_MS, MAX_INVITE_MS};
pub use social::LiveNotifications;
mod view;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use kith_protocol::{AuthorId, Keypair, Topic};
use libp2p::Multiaddr;
use thiserror::Error;
use tokio::{
    sync::{broadcast, mpsc},
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;

use crate::{
    api::{FeedItem, Request, Response},
    config::Config,
    home::Home,
    limits::RateLimiter,
    net::{self, Event},
    store::{BlobLimits, BlobStoreError, Blobs, Store, StoreError},
};

/// Gossip messages ingested in one hop to a blocking thread, at most.
const GOSSIP_BATCH: usize = 64;

/// How long start-up waits for a listen address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests (direct messages and sync) per second from one peer, and the burst: enough
/// for a fast conversation between two mutual connections, while a flooding peer costs
/// at most about a tenth of a core of refusals. Sync requests have their own, lower
/// limit inside this one (`sync.rs`).
const REQUEST_RATE: f64 = 1000.0;
const REQUEST_BURST: f64 = 2000.0;
/// How long shutdown waits for the node's tasks to end after telling them to stop; the
/// ones still running then are aborted (none of them was acknowledged to anyone: every
/// answer that claims a write flushes it first), and the store is flushed last.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Capacity of the live feed broadcast (slow live readers skip ahead).
const LIVE_QUEUE: usize = 1024;
/// How often the record heap is looked at for segments to compact (`Store::compact_records`:
/// nothing to do costs a look at a few counters).
const COMPACT_EVERY: Duration = Duration::from_secs(60);

/// Errors starting or stopping a node.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The network.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// The identity cannot be used for libp2p.
    #[error("identity: {0}")]
    Identity(String),
    /// The blob folder cannot be used.
    #[error(transparent)]
    Blobs(#[from] BlobStoreError),
}

/// The last eight characters of a peer id (they all begin `12D3KooW`), to name a node
/// or a peer in the log's spans.
pub(crate) fn short_peer(peer: &libp2p::PeerId) -> String {
    let id = peer.to_string();
    id.get(id.len().saturating_sub(8)..).unwrap_or(&id).to_owned()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A new post for live feeds.
#[derive(Debug, Clone)]
pub(crate) struct LivePost {
    item: FeedItem,
    author: AuthorId,
}

struct Inner {
    keypair: Keypair,
    me: AuthorId,
    store: Store,
    blobs: Blobs,
    blob: blobs::BlobState,
    /// Thumbnails of followed authors' new posts, to fetch.
    thumbs: mpsc::Sender<blobs::ThumbJob>,
    net: net::Client,
    live: broadcast::Sender<LivePost>,
    /// The node's decisions (see [`crate::core`]): locked only while it handles an
    /// input, never across an await.
    core: std::sync::Mutex<drive::Engine>,
    /// Control and inbound requests waiting for the core.
    pending: drive::Pending,
    /// Requests refused by the per-peer rate limit (the core counts the rest).
    rate_limited: AtomicU64,
    started: Instant,
    sync: sync::SyncState,
    notes: broadcast::Sender<crate::api::NotificationEntry>,
    /// Cancelled when the node shuts down: no task starts after it, and every task
    /// that waits (timers, queues, idle control connections) stops.
    closing: CancellationToken,
    /// Every task the node starts (see [`Node::spawn`]); shutdown waits for them.
    /// The span every task and control request of this node runs in: `node{id}`, with
    /// `peer{id}` and `request{proto, peer}` or `control` inside it.
    span: tracing::Span,
    tasks: std::sync::Mutex<JoinSet<()>>,
    /// Set by a `stop` request: the daemon should shut down.
    stop: tokio::sync::watch::Sender<bool>,
    /// Per-peer limit on DM and sync requests (gossip is limited in the network task).
    request_limit: RateLimiter<libp2p::PeerId>,
    /// One bound on inbound requests handled at once, across all peers.
    inbound: inbound::Inbound,
    /// Whether subscribed hashtags are announced and looked up in the DHT.
    dht_tags: std::sync::atomic::AtomicBool,
    /// The configuration the node runs with (its live values as changed since start).
    config: std::sync::Mutex<Config>,
    /// Where changed settings are saved.
    config_path: std::path::PathBuf,
    /// One settings change at a time.
    settings_lock: tokio::sync::Mutex<()>,
    /// The mailboxes being collected from now (one collect at a time from each).
    collecting: std::sync::Mutex<std::collections::HashSet<libp2p::PeerId>>,
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

/// The network task of a running node, to await after [`Node::shutdown`] (which waits
/// for every other task itself).
pub struct NodeTasks {
    net: JoinHandle<()>,
}

impl NodeTasks {
    /// Waits for the network task to end.
    pub async fn join(self) {
        let _ = self.net.await;
    }
}

impl Node {
    /// Opens the home's store, starts the network and waits until it listens.
    ///
    /// # Errors
    /// [`NodeError`] for a locked or broken store, or a network that cannot listen.
    pub async fn start(
        home: &Home,
        keypair: Keypair,
        config: &Config,
    ) -> Result<(Self, NodeTasks), NodeError> {
        let store = Store::open_with_cache(
            &home.store_path(),
            config.store_cache_mb.saturating_mul(1 << 20),
        )?;
        let uncommitted = store.dm_drop_uncommitted(&keypair.id())?;
        if uncommitted > 0 {
            tracing::warn!(
                messages = uncommitted,
                "dropped the outbox entries of messages a crash cut before they were stored"
            );
        }
        let mib = |n: u64| n.saturating_mul(1 << 20);
        let limits = BlobLimits {
            max_blob: mib(config.blobs.max_blob_mb),
            quota: mib(config.blobs.blob_quota_mb),
            auto_budget: mib(config.blobs.thumbnail_budget_mb),
        };
        let blobs = Blobs::open(&store, &home.blobs_path(), limits)?;
        let libp2p_key = keypair.to_libp2p().map_err(|e| NodeError::Identity(e.to_string()))?;
        let net_config = net::Config {
            listen: config.listen.clone(),
            mdns: config.mdns,
            relay: config.relay,
            limits: config.limits,
        };
        let span = tracing::info_span!("node", id = %short_peer(&libp2p_key.public().to_peer_id()));
        let (client, event_loop, events) = net::new(libp2p_key, &net_config)?;
        let net_task =
            tokio::spawn(tracing::Instrument::instrument(event_loop.run(), span.clone()));
        let (live, _) = broadcast::channel(LIVE_QUEUE);
        let (thumbs, thumb_jobs) = mpsc::channel(blobs::THUMB_QUEUE);
        let engine = drive::Engine::new(keypair.clone(), store.clone(), config.mailbox);
        let node = Self {
            inner: Arc::new(Inner {
                me: keypair.id(),
                dht_tags: config.dht_tags.into(),
                config: std::sync::Mutex::new(config.clone()),
                config_path: home.config_path(),
                settings_lock: tokio::sync::Mutex::new(()),
                keypair,
                store,
                blobs,
                blob: blobs::BlobState::new(config.blobs.blob_upload_kib_s.saturating_mul(1024)),
                thumbs,
                net: client,
                live,
                core: std::sync::Mutex::new(engine),
                pending: drive::Pending::default(),
                rate_limited: AtomicU64::new(0),
                started: Instant::now(),
                sync: sync::SyncState::default(),
                notes: broadcast::channel(LIVE_QUEUE).0,
                closing: CancellationToken::new(),
                tasks: std::sync::Mutex::new(JoinSet::new()),
                span,
                stop: tokio::sync::watch::channel(false).0,
                request_limit: RateLimiter::new(REQUEST_RATE, REQUEST_BURST),
                inbound: inbound::Inbound::default(),
                collecting: std::sync::Mutex::default(),
            }),
        };
        node.inner.net.wait_listening(LISTEN_TIMEOUT).await?;
        node.resubscribe().await?;
        node.apply_blocks().await;
        if let Some(name) = &config.name {
            node.publish_initial_profile(name).await;
        }
        node.spawn(node.clone().run_events(events));
        // After a restart every queue is tried at once, then backs off again.
        node.drive_outbox();
        node.drive_devices();
        node.drive_mailboxes();
        node.drive_hold_sweep();
        node.drive_sync_rounds();
        let start = crate::core::discovery::Start {
            bootstrap: config.bootstrap.clone(),
            relay_friends: config.relay == net::RelayMode::Friends,
            dht_tags: config.dht_tags,
        };
        node.drive(crate::core::Input::Discover(start)).await;
        node.drive_expiry();
        node.spawn(node.clone().run_blob_collect());
        node.spawn(node.clone().run_records_compact());
        node.spawn(node.clone().run_thumbnails(thumb_jobs));
        let tasks = NodeTasks { net: net_task };
        Ok((node, tasks))
    }

    /// This node's person.
    pub fn id(&self) -> AuthorId {
        self.inner.me
    }

    /// The store (for tests and tools).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The blob store (for tests and tools).
    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// The network handle (for tests and tools).
    pub fn net(&self) -> &net::Client {
        &self.inner.net
    }

    /// Listen addresses, each ending in `/p2p/<id>`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.inner.net.listen_addrs()
    }

    /// How busy the inbound request handlers are: the global bound, requests in flight,
    /// the peak and how many were refused.
    pub fn inbound(&self) -> InboundStats {
        self.inner.inbound.stats()
    }

    /// Lowers the bound on inbound requests handled at once to `limit`, `reserved` of
    /// them for friends (for tests: a few peers can then reach it).
    #[doc(hidden)]
    pub fn narrow_inbound(&self, limit: usize, reserved: usize) {
        self.inner.inbound.narrow(limit, reserved);
    }

    /// Answers one control request.
    pub async fn handle(&self, request: Request) -> Response {
        use tracing::Instrument;
        // Only the command's name is in the span: the request may hold a message's text.
        let cmd = serde_json::to_value(&request)
            .ok()
            .and_then(|v| v.get("cmd").and_then(|c| c.as_str()).map(str::to_owned));
        let span = tracing::info_span!(parent: &self.inner.span, "control", cmd = cmd.as_deref().unwrap_or("?"));
        match self.dispatch(request).instrument(span).await {
            Ok(response) => {
                self.name_the_shown(&response);
                response
            }
            Err(error) => error.into(),
        }
    }

    /// Resolves when a control request asked the daemon to stop (`kith stop`).
    pub async fn stop_requested(&self) {
        let mut rx = self.inner.stop.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Stops the node: tells every task to stop and starts no new one, stops the
    /// network, waits for the tasks (at most [`SHUTDOWN_GRACE`], then aborts the rest),
    /// and flushes the store last. Calling it again only flushes again.
    ///
    /// # Errors
    /// The store's flush error.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.inner.closing.cancel();
        self.inner.net.shutdown().await;
        let mut tasks = std::mem::take(&mut *self.tasks());
        let waited = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if waited.is_err() {
            tracing::warn!(
                tasks = tasks.len(),
                "tasks still running after the grace period: aborted"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        self.inner.store.flush().await
    }

    /// Starts `task` as one of the node's tasks: shutdown waits for it (and aborts it
    /// after [`SHUTDOWN_GRACE`]). Once shutdown has begun nothing starts. The task runs
    /// in the span it was started from (a peer's, a request's, a control request's), or
    /// else in the node's.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        use tracing::Instrument;
        if self.inner.closing.is_cancelled() {
            return;
        }
        let current = tracing::Span::current();
        let span = if current.is_none() { self.inner.span.clone() } else { current };
        let mut tasks = self.tasks();
        // Finished tasks are collected here, so the set holds only running ones.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task.instrument(span));
    }

    /// Tasks of the node running now (for tests: none after shutdown).
    pub fn running_tasks(&self) -> usize {
        let mut tasks = self.tasks();
        while tasks.try_join_next().is_some() {}
        tasks.len()
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        match self.inner.tasks.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Resolves when the node begins to shut down.
    pub(crate) async fn closed(&self) {
        self.inner.closing.cancelled().await;
    }

    /// Subscribes to the gossip topics this node's state asks for: own author topic,
    /// followed authors, subscribed tags.
    async fn resubscribe(&self) -> Result<(), NodeError> {
        let mut topics = vec![Topic::Author(self.inner.me)];
        for author in self.inner.store.following(&self.inner.me)? {
            topics.push(Topic::Author(author));
        }
        for tag in self.inner.store.subscriptions()? {
            topics.push(Topic::Tag(tag));
        }
        for topic in topics {
            self.inner.net.subscribe(topic.to_string()).await?;
        }
        Ok(())
    }

    /// Waits `d`, or less if the node shuts down meanwhile; `false` means it is shutting
    /// down and the caller should stop.
    pub(crate) async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.inner.closing.is_cancelled(),
            () = self.closed() => false,
        }
    }

    /// Compacts the store's record heap every [`COMPACT_EVERY`] (after the first wait, so
    /// a start does none), and flushes when that emptied segments so that they are removed;
    /// a compaction that left segments for later goes on after its flush.
    async fn run_records_compact(self) {
        while self.pause(COMPACT_EVERY).await {
            while !self.inner.closing.is_cancelled() {
                let store = self.inner.store.clone();
                match tokio::task::spawn_blocking(move || store.compact_records()).await {
                    Ok(Ok(done)) if done.segments == 0 => break,
                    Ok(Ok(done)) => {
                        tracing::info!(?done, "record heap compacted");
                        if let Err(error) = self.inner.store.flush().await {
                            tracing::error!(%error, "flush after compacting the record heap failed");
                            break;
                        }
                        if !done.more {
                            break;
                        }
                    }
                    Ok(Err(error)) => {
                        tracing::error!(%error, "record heap compaction failed");
                        break;
                    }
                    Err(error) => {
                        tracing::error!(%error, "record heap compaction task failed");
                        break;
                    }
                }
            }
        }
    }

    /// Tells the network layer whom to refuse.
    async fn apply_blocks(&self) {
        for (who, m) in self.inner.store.moderated().unwrap_or_default() {
            if let (true, Ok(peer)) = (m.blocked, who.to_peer_id()) {
                self.inner.net.set_blocked(peer, true).await;
            }
        }
    }

    /// Subscribes to live posts.
    pub(crate) fn live(&self) -> broadcast::Receiver<LivePost> {
        self.inner.live.subscribe()
    }
}
