//! kith-tests: harnesses for tests that run several kith nodes on loopback.
//!
//! [`TestNode`] runs a node in-process (OS-chosen 127.0.0.1 port, mDNS off, its own
//! temporary home); [`cli`] drives real `kith` processes. Every wait has a deadline.
//!
//! ```no_run
//! # async fn demo() {
//! use kith_tests::TestNode;
//! let (a, b) = (TestNode::start("a").await, TestNode::start("b").await);
//! b.dial(&a).await;
//! # }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod bench;
pub mod cli;
pub mod hostile;
pub mod hostile_blob;
pub mod mesh;
pub mod pictures;
pub mod sim;
pub mod sim_core;
pub mod store_scale;

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::Duration,
};

use kith_node::{
    api::{FeedItem, Request, Response, Status},
    config::{Config, DEFAULT_STORE_CACHE_MB},
    home::Home,
    ingest::Outcome,
    net::ConnLimits,
    node::MAX_FEED_LIMIT,
    Node, NodeTasks,
};
use kith_protocol::{AuthorId, Keypair, Post, Record, RecordKind, Topic, VerifiedRecord};
use libp2p::{Multiaddr, PeerId};
use tempfile::TempDir;

/// The default deadline for network waits.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` every 50 ms until it returns `Some`, or panics naming `what` after
/// `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Posts `1..=n` of `keypair`'s log, chained by `prev`, timestamped now, with
/// `text(seq)` as text. For tests that need records no node has published.
pub fn signed_log(keypair: &Keypair, n: u64, text: impl Fn(u64) -> String) -> Vec<VerifiedRecord> {
    let mut out: Vec<VerifiedRecord> = Vec::new();
    let now = now_ms();
    for seq in 1..=n {
        let record = Record {
            author: keypair.id(),
            seq,
            prev: out.last().map(VerifiedRecord::id),
            timestamp: now + seq,
            kind: RecordKind::Post(Post {
                text: text(seq),
                reply_to: None,
                mentions: vec![],
                expires_at: None,
                attachments: vec![],
            }),
        };
        out.push(record.sign(keypair).unwrap());
    }
    out
}

/// The configuration of a node in a test or benchmark: listening on 127.0.0.1 `port`
/// (0: OS-chosen) only, no mDNS, relay or web interface, no bootstrap peers, a store
/// cache of `store_cache_mb` MiB, connection caps lifted (everything is on 127.0.0.1).
pub fn local_config(port: u16, store_cache_mb: u64) -> Config {
    Config {
        listen: vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()],
        bootstrap: Vec::new(),
        mdns: false,
        name: None,
        relay: kith_node::net::RelayMode::Off,
        store_cache_mb,
        web: kith_node::config::WebSetting::Off,
        blobs: kith_node::config::BlobConfig::default(),
        dht_tags: true,
        limits: ConnLimits::lifted(),
        mailbox: kith_node::config::MailboxConfig::default(),
    }
}

/// A stopped node whose home is kept.
pub struct Paused {
    name: String,
    home: Home,
    dir: TempDir,
    port: u16,
}

impl Paused {
    /// Starts the node again on its home.
    pub async fn resume(self) -> TestNode {
        let keypair = self.home.load_identity().unwrap();
        TestNode::start_in(&self.name, self.dir, self.home, keypair, self.port).await
    }
}

/// How a [`TestNode`] starts.
struct Setup {
    /// TCP port (0: OS-chosen).
    port: u16,
    bootstrap: Vec<libp2p::Multiaddr>,
    store_cache_mb: u64,
    limits: ConnLimits,
    dht_tags: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            port: 0,
            bootstrap: Vec::new(),
            store_cache_mb: DEFAULT_STORE_CACHE_MB,
            // Every test node is on 127.0.0.1: no per-address caps.
            limits: ConnLimits::lifted(),
            dht_tags: true,
        }
    }
}

/// A node running in this process with its own temporary home.
pub struct TestNode {
    /// Name for messages.
    pub name: String,
    /// The node.
    pub node: Node,
    tasks: Option<NodeTasks>,
    home: Home,
    _dir: TempDir,
}

impl TestNode {
    /// The node's `config.toml` (absent until a setting is saved: test nodes are
    /// configured in code).
    pub fn config_path(&self) -> PathBuf {
        self.home.config_path()
    }

    /// The first file under this node's home whose bytes contain `needle`, after a flush
    /// of its store: for tests that private content never lands on a node it is not for.
    pub async fn home_file_containing(&self, needle: &[u8]) -> Option<PathBuf> {
        self.node.store().flush().await.unwrap();
        file_containing(self.home.dir(), needle)
    }

    /// Starts a node with a fresh identity.
    pub async fn start(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join(name));
        home.ensure_dir().unwrap();
        let keypair = home.create_identity().unwrap();
        Self::start_in(name, dir, home, keypair, 0).await
    }

    /// Starts a node with a fresh identity and a store cache of `store_cache_mb` MiB.
    pub async fn start_with_cache(name: &str, store_cache_mb: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join(name));
        home.ensure_dir().unwrap();
        let keypair = home.create_identity().unwrap();
        Self::start_full(name, dir, home, keypair, Setup { store_cache_mb, ..Setup::default() })
            .await
    }

    /// Starts a node with a fresh identity and the given connection limits (other nodes
    /// of these tests lift the per-address caps: every node is on 127.0.0.1).
    pub async fn start_with_limits(name: &str, limits: ConnLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join(name));
        home.ensure_dir().unwrap();
        let keypair = home.create_identity().unwrap();
        Self::start_full(name, dir, home, keypair, Setup { limits, ..Setup::default() }).await
    }

    /// Starts on `port` (0: OS-chosen). A restarted node keeps its port, as a real node
    /// with a configured port does, so that peers that remember it can reconnect.
    async fn start_in(name: &str, dir: TempDir, home: Home, keypair: Keypair, port: u16) -> Self {
        Self::start_full(name, dir, home, keypair, Setup { port, ..Setup::default() }).await
    }

    /// Starts a node with a fresh identity that knows only `bootstrap` peers.
    pub async fn start_with_bootstrap(name: &str, bootstrap: Vec<libp2p::Multiaddr>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join(name));
        home.ensure_dir().unwrap();
        let keypair = home.create_identity().unwrap();
        Self::start_full(name, dir, home, keypair, Setup { bootstrap, ..Setup::default() }).await
    }

    /// As [`TestNode::start_with_bootstrap`], with hashtags kept out of the DHT
    /// (`dht_tags = false`).
    pub async fn start_without_dht_tags(name: &str, bootstrap: Vec<libp2p::Multiaddr>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join(name));
        home.ensure_dir().unwrap();
        let keypair = home.create_identity().unwrap();
        let setup = Setup { bootstrap, dht_tags: false, ..Setup::default() };
        Self::start_full(name, dir, home, keypair, setup).await
    }

    async fn start_full(
        name: &str,
        dir: TempDir,
        home: Home,
        keypair: Keypair,
        setup: Setup,
    ) -> Self {
        let config = Config {
            bootstrap: setup.bootstrap,
            dht_tags: setup.dht_tags,
            limits: setup.limits,
            ..local_config(setup.port, setup.store_cache_mb)
        };
        // After a stop, background tasks of the old node may hold the store for a moment
        // (a request in flight ends as soon as it sees the network is gone).
        let mut tries = 0;
        let (node, tasks) = loop {
            match Node::start(&home, keypair.clone(), &config).await {
                Ok(started) => break started,
                Err(kith_node::NodeError::Store(kith_node::store::StoreError::Locked {
                    ..
                })) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{name}: cannot start: {e}"),
            }
        };
        Self { name: name.to_owned(), node, tasks: Some(tasks), home, _dir: dir }
    }

    /// Stops the node and starts it again on the same home (a new port).
    pub async fn restart(mut self) -> Self {
        self.stop_in_place().await;
        let port = self.port();
        let TestNode { name, node, home, _dir: dir, .. } = self;
        // The store closes when the last handle to the node is gone.
        drop(node);
        let keypair = home.load_identity().unwrap();
        Self::start_in(&name, dir, home, keypair, port).await
    }

    /// Stops the node and starts it again on the same home on a port the OS chooses, as
    /// a daemon whose config does not fix its port would.
    pub async fn restart_on_new_port(mut self) -> Self {
        self.stop_in_place().await;
        let TestNode { name, node, home, _dir: dir, .. } = self;
        drop(node);
        let keypair = home.load_identity().unwrap();
        Self::start_in(&name, dir, home, keypair, 0).await
    }

    async fn stop_in_place(&mut self) {
        self.node.shutdown().await.unwrap();
        if let Some(tasks) = self.tasks.take() {
            tasks.join().await;
        }
    }

    /// Stops the node but keeps its home, to start it again with [`Paused::resume`].
    pub async fn pause(mut self) -> Paused {
        let port = self.port();
        self.stop_in_place().await;
        let TestNode { name, node, home, _dir: dir, .. } = self;
        drop(node);
        Paused { name, home, dir, port }
    }

    /// Sends a request and returns the reply, error or not.
    pub async fn call(&self, request: Request) -> Response {
        self.node.handle(request).await
    }

    /// Stops the node.
    pub async fn stop(mut self) {
        self.stop_in_place().await;
    }

    /// This node's person.
    pub fn id(&self) -> AuthorId {
        self.node.id()
    }

    /// This node's person's keys (read from its home).
    pub fn keypair(&self) -> Keypair {
        self.home.load_identity().unwrap()
    }

    /// Sends a control request; panics on an error reply.
    pub async fn ok(&self, request: Request) -> Response {
        match self.node.handle(request.clone()).await {
            Response::Error { message, .. } => {
                panic!("{}: {request:?} failed: {message}", self.name)
            }
            r => r,
        }
    }

    /// The TCP port this node listens on.
    pub fn port(&self) -> u16 {
        self.addr()
            .iter()
            .find_map(|p| match p {
                libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
                _ => None,
            })
            .unwrap()
    }

    /// The loopback listen address.
    pub fn addr(&self) -> Multiaddr {
        self.node.listen_addrs().into_iter().next().expect("listening")
    }

    /// `peer`'s gossipsub score in this node's view (`None`: not connected or not scored).
    pub async fn score_of(&self, peer: &PeerId) -> Option<f64> {
        match self.ok(Request::Peers).await {
            Response::Peers { peers } => {
                peers.iter().find(|p| p.id == peer.to_string()).and_then(|p| p.score)
            }
            r => panic!("unexpected {r:?}"),
        }
    }

    /// Connects this node to `other`.
    pub async fn dial(&self, other: &TestNode) {
        self.ok(Request::Dial { addr: other.addr().to_string() }).await;
    }

    /// Connects this node to an address (ending in `/p2p/<id>`).
    pub async fn dial_addr(&self, addr: &Multiaddr) {
        self.ok(Request::Dial { addr: addr.to_string() }).await;
    }

    /// Whether this node has a connection to `peer` now.
    pub async fn is_connected(&self, peer: &PeerId) -> bool {
        self.node.net().is_connected(*peer).await
    }

    /// Waits until this node has a connection to `other`.
    pub async fn wait_connected(&self, other: &TestNode) {
        let peer = other.id().to_peer_id().unwrap();
        let what = format!("{} to be connected to {}", self.name, other.name);
        eventually(DEADLINE, &what, || async { self.is_connected(&peer).await.then_some(()) })
            .await;
    }

    /// The node's status.
    pub async fn status(&self) -> Status {
        match self.ok(Request::Status).await {
            Response::Status(status) => *status,
            r => panic!("unexpected reply {r:?}"),
        }
    }

    /// Runs one sync round with every connected peer; returns (records fetched, peers).
    pub async fn sync(&self) -> (u64, usize) {
        match self.ok(Request::Sync).await {
            Response::Synced { fetched, peers } => (fetched, peers),
            r => panic!("unexpected reply {r:?}"),
        }
    }

    /// Verifies and stores `bytes` directly, as if they had arrived from outside but
    /// without gossip or sync, and as if this node's person had chosen to keep them
    /// (`kith_node::ingest::import`: no keep decision): tests plant records with it.
    pub fn ingest(&self, bytes: &[u8]) -> Outcome {
        kith_node::ingest::import(self.node.store(), bytes, now_ms()).unwrap()
    }

    /// Posts `text`; returns the record id.
    pub async fn post(&self, text: &str) -> String {
        match self
            .ok(Request::Post {
                text: text.into(),
                reply_to: None,
                expires_in_ms: None,
                attach: vec![],
            })
            .await
        {
            Response::Record { id } => id,
            r => panic!("unexpected reply {r:?}"),
        }
    }

    /// Follows `other`.
    pub async fn follow(&self, other: &TestNode) {
        self.follow_id(&other.id()).await;
    }

    /// Follows the author `id` (who need not run a node).
    pub async fn follow_id(&self, id: &AuthorId) {
        self.ok(Request::Follow { id: id.to_string() }).await;
    }

    /// Subscribes to a hashtag.
    pub async fn subscribe(&self, tag: &str) {
        self.ok(Request::Subscribe { tag: tag.into() }).await;
    }

    /// The feed for a request.
    pub async fn feed(&self, tag: Option<&str>, author: Option<&AuthorId>) -> Vec<FeedItem> {
        let request = Request::Feed {
            tag: tag.map(str::to_owned),
            author: author.map(|a| a.to_string()),
            limit: Some(1000),
            live: false,
            before: None,
        };
        match self.ok(request).await {
            Response::Feed { items, .. } => items,
            r => panic!("unexpected reply {r:?}"),
        }
    }

    /// The feed for a request, up to the largest limit the node allows.
    pub async fn feed_all(&self, tag: Option<&str>, author: Option<&AuthorId>) -> Vec<FeedItem> {
        let request = Request::Feed {
            tag: tag.map(str::to_owned),
            author: author.map(|a| a.to_string()),
            limit: Some(MAX_FEED_LIMIT),
            live: false,
            before: None,
        };
        match self.ok(request).await {
            Response::Feed { items, .. } => items,
            r => panic!("unexpected reply {r:?}"),
        }
    }

    /// Waits until `other` is known to this node as a subscriber of `topic`.
    pub async fn wait_subscriber(&self, other: &TestNode, topic: &Topic) {
        let peer = other.id().to_peer_id().unwrap();
        let what = format!("{} to see {} on {topic}", self.name, other.name);
        eventually(DEADLINE, &what, || async {
            let peers = self.node.net().topic_peers(topic.to_string()).await.ok()?;
            peers.contains(&peer).then_some(())
        })
        .await;
    }

    /// Makes `self` and `other` follow each other and waits until each knows it.
    pub async fn befriend(&self, other: &TestNode) {
        self.follow(other).await;
        other.follow(self).await;
        let what = format!("{} and {} to be mutual", self.name, other.name);
        eventually(DEADLINE, &what, || async {
            let a = self.node.store();
            let b = other.node.store();
            let (x, y) = (self.id(), other.id());
            (a.is_following(&y, &x).unwrap() && b.is_following(&x, &y).unwrap()).then_some(())
        })
        .await;
    }

    /// Sends a direct message; returns (id, status).
    pub async fn msg(&self, to: &TestNode, text: &str) -> (String, String) {
        let request =
            Request::MsgSend { to: to.id().to_string(), text: text.into(), attach: vec![] };
        match self.ok(request).await {
            Response::MsgSent { id, status } => (id, status),
            r => panic!("unexpected reply {r:?}"),
        }
    }

    /// Sends a direct message to an id; returns (id, status).
    pub async fn msg_to_id(&self, to: &str, text: &str) -> (String, String) {
        let request = Request::MsgSend { to: to.into(), text: text.into(), attach: vec![] };
        match self.ok(request).await {
            Response::MsgSent { id, status } => (id, status),
            r => panic!("unexpected reply {r:?}"),
        }
    }

    /// The thread with `other`, oldest first.
    pub async fn thread(&self, other: &TestNode) -> Vec<kith_node::api::MessageEntry> {
        let request = Request::MsgThread { peer: other.id().to_string(), limit: Some(10_000) };
        match self.ok(request).await {
            Response::Thread { messages } => messages,
            r => panic!("unexpected reply {r:?}"),
        }
    }

    /// Waits until the store holds the record `id`.
    pub async fn wait_record(&self, id: &str) {
        let rid: kith_protocol::RecordId = id.parse().unwrap();
        let what = format!("{} to store {id}", self.name);
        eventually(DEADLINE, &what, || async {
            self.node.store().has(&rid).unwrap().then_some(())
        })
        .await;
    }
}

/// The first file under `dir` (recursively) whose bytes contain `needle`.
pub fn file_containing(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = file_containing(&path, needle) {
                return Some(found);
            }
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
        {
            return Some(path);
        }
    }
    None
}
