//! The network layer: one task ([`EventLoop`]) owns the libp2p swarm; the rest of the node
//! holds a cloneable [`Client`] that sends it commands and awaits replies.
//!
//! The network layer never touches the store: what it receives goes out as [`Event`]s on
//! a bounded channel, and the node's logic decides (including whether gossipsub may
//! forward a message).

mod admission;
mod autonat;
mod behaviour;
mod coalesce;
mod credit;
mod event_loop;
mod frame;
mod mend;
mod ping;
mod spare;
mod stats;
mod tuning;

use std::time::Duration;

use libp2p::{gossipsub, identity::Keypair, request_response::ResponseChannel, Multiaddr, PeerId};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

pub use admission::{admit_inbound, Admit, ConnLimits, InboundCounts, PeerSet};
pub use behaviour::{
    RelayFriends, RelayMode, BLOB_PROTOCOL, DM_PROTOCOL, KAD_PROTOCOL, MAX_DM_REQUEST_BYTES,
    MAX_DM_RESPONSE_BYTES, MAX_GOSSIP_BYTES, SYNC_PROTOCOL,
};
pub use credit::{CREDIT_CAP, CREDIT_HALF_LIFE};
pub use event_loop::EventLoop;
pub use frame::FrameCodec;
pub use mend::MAX_BOOSTED;
pub use stats::{PeerInfo, Reachability, Stats};
pub(crate) use tuning::gossip_tuning;
pub use tuning::{
    idle_tuning, set_process_gossip_metrics, set_process_gossip_tuning, set_process_idle_tuning,
    GossipTuning, IdleTuning,
};

/// Capacity of the channel of events from the network to the node.
const EVENT_QUEUE: usize = 4096;
/// Gossip messages per second taken from one peer (propagation source); the excess is
/// dropped (`Ignore`) before it reaches the event queue, and counted.
pub const GOSSIP_RATE: f64 = 200.0;
/// Gossip messages one peer may send in a burst. Well under [`EVENT_QUEUE`], so that one
/// flooding peer cannot fill the queue and crowd out other peers' messages.
pub const GOSSIP_BURST: f64 = 1_000.0;
/// Capacity of the channel of commands to the event loop.
const COMMAND_QUEUE: usize = 1024;
/// How long a DHT lookup may take.
pub const DHT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `dial` waits for the connection.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(15);

/// Network errors.
#[derive(Debug, Error, Clone)]
pub enum NetError {
    /// The swarm could not be built or could not listen.
    #[error("network setup: {0}")]
    Setup(String),
    /// A dial failed.
    #[error("dial failed: {0}")]
    Dial(String),
    /// A request to a peer failed (unreachable, timed out, refused the protocol).
    #[error("request failed: {0}")]
    Request(String),
    /// Gossipsub refused a publish or subscribe.
    #[error("gossip: {0}")]
    Gossip(String),
    /// The network task has stopped.
    #[error("the network task has stopped")]
    Stopped,
}

/// What the network tells the node.
#[derive(Debug)]
pub enum Event {
    /// A gossip message awaiting validation. The node must answer with
    /// [`Client::report`] (accept, reject or ignore).
    Message {
        /// The peer that forwarded it.
        source: PeerId,
        /// Gossipsub's id for it.
        id: gossipsub::MessageId,
        /// The topic it came on.
        topic: String,
        /// The payload (a signed record).
        data: Vec<u8>,
    },
    /// A connection to `peer` is up; `addr` is its dialable address when we dialled it.
    Connected {
        /// The peer.
        peer: PeerId,
        /// The address we reached it at, if we dialled.
        addr: Option<Multiaddr>,
        /// Whether it is the only connection to `peer` (it was not connected before).
        first: bool,
    },
    /// The last connection to `peer` closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// The peer told us (identify) where it listens.
    Identified {
        /// The peer.
        peer: PeerId,
        /// Its listen addresses.
        addrs: Vec<Multiaddr>,
    },
    /// A request on one of kith's request-response protocols; answer with
    /// [`Client::respond`].
    Request {
        /// Which protocol.
        proto: Proto,
        /// The authenticated transport peer that sent it.
        peer: PeerId,
        /// The request bytes.
        bytes: Vec<u8>,
        /// Where the answer goes.
        channel: Responder,
    },
    /// A peer subscribed to a topic.
    Subscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: String,
    },
}

/// The peer an address leads to: its last `/p2p` part (a relayed address names the relay
/// first and the peer last).
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter()
        .filter_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .last()
}

/// kith's request-response protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// `/kith/dm/1`: direct messages.
    Dm,
    /// `/kith/dm/2`: forward-secret direct messages.
    Dm2,
    /// `/kith/group/1`: private groups.
    Group,
    /// `/kith/sync/1`: history sync.
    Sync,
    /// `/kith/mailbox/1`: envelopes held for people who are offline.
    Mailbox,
    /// `/kith/blob/1`: blob manifests and chunks.
    Blob,
}

/// Where to send the answer to an inbound request.
pub struct Responder(pub(crate) Proto, pub(crate) ResponseChannel<Vec<u8>>);

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// The validation verdict for a gossip message (decided by [`crate::ingest`], which
/// needs no swarm to decide it).
pub use crate::ingest::Verdict;

/// How the network is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Whether to discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Whether this node relays for others.
    pub relay: RelayMode,
    /// Connection limits.
    pub limits: ConnLimits,
}

pub(crate) enum Command {
    FindPeer {
        peer: PeerId,
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Provide {
        key: Vec<u8>,
    },
    StopProviding {
        key: Vec<u8>,
    },
    SetLimits {
        limits: ConnLimits,
    },
    FindProviders {
        key: Vec<u8>,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Outsiders {
        topics: Vec<String>,
        most: usize,
        reply: oneshot::Sender<Vec<Vec<PeerId>>>,
    },
    DialPeer {
        peer: PeerId,
    },
    Block {
        peer: PeerId,
        blocked: bool,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NetError>>,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<usize, NetError>>,
    },
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<bool, NetError>>,
    },
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<bool>,
    },
    Report {
        id: gossipsub::MessageId,
        source: PeerId,
        verdict: Verdict,
    },
    Missed {
        topics: crate::core::MissedTopics,
    },
    Request {
        proto: Proto,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    Respond {
        channel: Responder,
        bytes: Vec<u8>,
    },
    IsConnected {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
    TopicPeers {
        topic: String,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    MeshPeers {
        topic: String,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A cloneable handle to the network task.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    listen_addrs: watch::Receiver<Vec<Multiaddr>>,
    local_peer: PeerId,
    relay_friends: RelayFriends,
    followed: PeerSet,
}

impl Client {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// This node's peer id.
    pub fn local_peer(&self) -> PeerId {
        self.local_peer
    }

    /// Sets the peers this node relays for when relaying is limited to friends.
    pub fn set_relay_friends(&self, peers: impl IntoIterator<Item = PeerId>) {
        self.relay_friends.set(peers);
    }

    /// Sets the peers this node's person follows: always let in, beyond every connection
    /// limit.
    pub fn set_followed(&self, peers: impl IntoIterator<Item = PeerId>) {
        self.followed.set(peers);
    }

    /// Dials `addr` and waits (up to [`DIAL_TIMEOUT`]) until connected.
    ///
    /// # Errors
    /// [`NetError::Dial`] with the reason.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NetError> {
        let attempt = self.ask(|reply| Command::Dial { addr, reply });
        match tokio::time::timeout(DIAL_TIMEOUT, attempt).await {
            Ok(result) => result?,
            Err(_) => Err(NetError::Dial("timed out".into())),
        }
    }

    /// Publishes `data` on `topic`; returns to how many peers it could be sent (0 when no
    /// peer is on the topic yet, which is not an error: history sync catches up later).
    ///
    /// # Errors
    /// [`NetError::Gossip`] for refusals other than "no peers".
    pub async fn publish(&self, topic: String, data: Vec<u8>) -> Result<usize, NetError> {
        self.ask(|reply| Command::Publish { topic, data, reply }).await?
    }

    /// Subscribes to `topic` (and registers its score parameters).
    ///
    /// # Errors
    /// [`NetError::Gossip`] if gossipsub refuses.
    pub async fn subscribe(&self, topic: String) -> Result<bool, NetError> {
        self.ask(|reply| Command::Subscribe { topic, reply }).await?
    }

    /// Unsubscribes from `topic`.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn unsubscribe(&self, topic: String) -> Result<bool, NetError> {
        self.ask(|reply| Command::Unsubscribe { topic, reply }).await
    }

    /// Reports the validation verdict of a gossip message. Never waits for the swarm.
    pub fn report(&self, id: gossipsub::MessageId, source: PeerId, verdict: Verdict) {
        if self.commands.try_send(Command::Report { id, source, verdict }).is_err() {
            // The queue is full: gossipsub drops unvalidated messages from its cache on its
            // own, so a lost verdict only means the message is not forwarded.
            tracing::debug!("validation verdict dropped: command queue full");
        }
    }

    /// Records of these topics came by sync, written between the youngest and the oldest
    /// age given (ms) ago: if gossip missed them, they are passed on to the topic's mesh
    /// and the mesh is mended (`mend.rs`). Never waits for the swarm.
    pub fn missed(&self, topics: crate::core::MissedTopics) {
        if self.commands.try_send(Command::Missed { topics }).is_err() {
            tracing::debug!("missed gossip not reported: command queue full");
        }
    }

    /// Sends a request on `proto` to `peer` (dialling `addrs` if not connected) and
    /// waits for the reply bytes.
    ///
    /// # Errors
    /// [`NetError::Request`] when the peer cannot be reached or does not answer in time.
    pub async fn request(
        &self,
        proto: Proto,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, NetError> {
        self.ask(|reply| Command::Request { proto, peer, addrs, bytes, reply }).await?
    }

    /// Sends a direct message request; see [`Client::request`].
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn send_dm(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, NetError> {
        self.request(Proto::Dm, peer, addrs, bytes).await
    }

    /// Answers an inbound request.
    pub async fn respond(&self, channel: Responder, bytes: Vec<u8>) {
        let _ = self.commands.send(Command::Respond { channel, bytes }).await;
    }

    /// Looks `peer` up in the DHT; its addresses, or none when not found in time.
    pub async fn find_peer(&self, peer: PeerId) -> Vec<Multiaddr> {
        let ask = self.ask(|reply| Command::FindPeer { peer, reply });
        match tokio::time::timeout(DHT_TIMEOUT, ask).await {
            Ok(Ok(addrs)) => addrs,
            _ => Vec::new(),
        }
    }

    /// Announces in the DHT that this node provides `key` (a hashtag's key).
    pub async fn provide(&self, key: Vec<u8>) {
        let _ = self.commands.send(Command::Provide { key }).await;
    }

    /// Stops announcing `key` in the DHT (the announcement is no longer renewed; peers
    /// drop it when it expires).
    pub async fn stop_providing(&self, key: Vec<u8>) {
        let _ = self.commands.send(Command::StopProviding { key }).await;
    }

    /// Applies new connection limits to connections from now on (those up stay).
    pub async fn set_limits(&self, limits: ConnLimits) {
        let _ = self.commands.send(Command::SetLimits { limits }).await;
    }

    /// Peers that announced `key` in the DHT, found within [`DHT_TIMEOUT`].
    pub async fn find_providers(&self, key: Vec<u8>) -> Vec<PeerId> {
        let ask = self.ask(|reply| Command::FindProviders { key, reply });
        match tokio::time::timeout(DHT_TIMEOUT, ask).await {
            Ok(Ok(peers)) => peers,
            _ => Vec::new(),
        }
    }

    /// For each of `topics`, up to `most` connected peers that take it and are outside
    /// this node's mesh of it, at random, those picked for an earlier topic first (so
    /// that one request can probe several topics); none if the network task is gone.
    pub async fn outsiders(&self, topics: Vec<String>, most: usize) -> Vec<Vec<PeerId>> {
        self.ask(|reply| Command::Outsiders { topics, most, reply }).await.unwrap_or_default()
    }

    /// Dials a peer by id, with the addresses the DHT knows.
    pub async fn dial_peer(&self, peer: PeerId) {
        let _ = self.commands.send(Command::DialPeer { peer }).await;
    }

    /// Refuses (and closes) connections with `peer`, or allows them again.
    pub async fn set_blocked(&self, peer: PeerId, blocked: bool) {
        let _ = self.commands.send(Command::Block { peer, blocked }).await;
    }

    /// Whether a connection to `peer` is open.
    pub async fn is_connected(&self, peer: PeerId) -> bool {
        self.ask(|reply| Command::IsConnected { peer, reply }).await.unwrap_or(false)
    }

    /// Connected peers.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// Gossip statistics.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn stats(&self) -> Result<Stats, NetError> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// Peers known to be subscribed to `topic`.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn topic_peers(&self, topic: String) -> Result<Vec<PeerId>, NetError> {
        self.ask(|reply| Command::TopicPeers { topic, reply }).await
    }

    /// The peers in this node's gossipsub mesh for `topic` (those it forwards the topic's
    /// messages to), empty when the node is not subscribed to it.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn mesh_peers(&self, topic: String) -> Result<Vec<PeerId>, NetError> {
        self.ask(|reply| Command::MeshPeers { topic, reply }).await
    }

    /// The addresses this node listens on now.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs.borrow().clone()
    }

    /// Waits until the node listens on at least one address, up to `timeout`.
    ///
    /// # Errors
    /// [`NetError::Setup`] on timeout.
    pub async fn wait_listening(&self, timeout: Duration) -> Result<(), NetError> {
        let mut rx = self.listen_addrs.clone();
        let wait = async { rx.wait_for(|addrs| !addrs.is_empty()).await.map(|_| ()) };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(NetError::Stopped),
            Err(_) => Err(NetError::Setup("no listen address came up".into())),
        }
    }

    /// Stops the network task and waits for it.
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }
}

/// Builds the swarm and starts listening. Returns the handle, the loop to spawn, and the
/// stream of events for the node.
///
/// # Errors
/// [`NetError::Setup`] when the transport or a listen address fails.
pub fn new(
    keypair: Keypair,
    config: &Config,
) -> Result<(Client, EventLoop, mpsc::Receiver<Event>), NetError> {
    let local_peer = keypair.public().to_peer_id();
    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
    let (addr_tx, addr_rx) = watch::channel(Vec::new());
    let relay_friends = RelayFriends::default();
    let followed = PeerSet::default();
    let sets = (&relay_friends, &followed);
    let event_loop = EventLoop::new(keypair, config, sets, command_rx, event_tx, addr_tx)?;
    let client =
        Client { commands: command_tx, listen_addrs: addr_rx, local_peer, relay_friends, followed };
    Ok((client, event_loop, event_rx))
}
