//! A hostile gossip peer: a bare rust-libp2p swarm (TCP, Noise, Yamux, gossipsub), not a
//! kith node, that speaks kith's gossipsub dialect (anonymous messages, no scoring of its
//! own) and publishes whatever bytes it is given, as often and as fast as it is asked.
//!
//! One task owns the swarm; [`HostilePeer`] sends it commands and awaits the replies.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    gossipsub::{self, IdentTopic, MessageAuthenticity, PublishError, TopicHash},
    identity::Keypair,
    noise,
    swarm::{dial_opts::DialOpts, ConnectionId, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm, SwarmBuilder,
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};

use crate::DEADLINE;

/// The largest message the hostile peer will send: far over kith's 64 KiB gossip limit.
pub const HOSTILE_MAX_TRANSMIT: usize = 1024 * 1024;

/// Messages each connection may hold waiting to be sent.
const SEND_QUEUE: usize = 64 * 1024;

/// Messages published per turn of the loop before the swarm gets a turn.
const PUBLISH_BATCH: usize = 256;

/// What a batch of publishes did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Published {
    /// Messages handed to gossipsub for at least one peer.
    pub sent: usize,
    /// Messages gossipsub refused outright (no subscribed peer, too large for it).
    pub refused: usize,
    /// Times the send queues were full and the peer waited for them to drain.
    pub queue_full: usize,
    /// From the first publish to the last.
    pub elapsed: Duration,
}

enum Command {
    Dial { addr: Multiaddr, reply: oneshot::Sender<Result<(), String>> },
    Subscribed { peer: PeerId, topic: TopicHash, reply: oneshot::Sender<bool> },
    Publish { topic: IdentTopic, data: Vec<Vec<u8>>, reply: oneshot::Sender<Published> },
}

struct Batch {
    topic: IdentTopic,
    data: VecDeque<Vec<u8>>,
    done: Published,
    started: Instant,
    reply: oneshot::Sender<Published>,
}

/// A handle to the hostile peer's task. Dropping it stops the peer.
pub struct HostilePeer {
    commands: mpsc::Sender<Command>,
    peer: PeerId,
    task: JoinHandle<()>,
}

impl HostilePeer {
    /// Starts a hostile peer with the transport identity `key` (it does not listen; it
    /// dials).
    pub fn start(key: Keypair) -> Self {
        let peer = key.public().to_peer_id();
        // Every publish gets a fresh id, so gossipsub never refuses a replay as a duplicate
        // on this side. Ids are local: kith nodes compute their own from topic and bytes.
        let next_id = AtomicU64::new(0);
        let config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            .message_id_fn(move |_| {
                gossipsub::MessageId::new(&next_id.fetch_add(1, Ordering::Relaxed).to_be_bytes())
            })
            .max_transmit_size(HOSTILE_MAX_TRANSMIT)
            // Room for a whole flood to every peer, kept until sent: a message refused by
            // one full queue would otherwise be lost for that peer while another took it.
            .connection_handler_queue_len(SEND_QUEUE)
            .publish_queue_duration(DEADLINE)
            .build()
            .unwrap();
        let gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config).unwrap();
        let swarm = tcp_swarm(key, gossipsub, Duration::from_secs(300));
        let (commands, rx) = mpsc::channel(16);
        let task = tokio::spawn(
            EventLoop {
                swarm,
                commands: rx,
                dials: HashMap::new(),
                subscribed: HashSet::new(),
                batch: None,
                queue_full: false,
            }
            .run(),
        );
        Self { commands, peer, task }
    }

    /// Its peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> T {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.expect("hostile peer running");
        rx.await.expect("hostile peer replies")
    }

    /// Dials `addr` (ending in `/p2p/<id>`) and waits for the connection.
    pub async fn dial(&self, addr: &Multiaddr) {
        let dial = self.ask(|reply| Command::Dial { addr: addr.clone(), reply });
        tokio::time::timeout(DEADLINE, dial)
            .await
            .expect("hostile dial timed out")
            .expect("hostile dial failed");
    }

    /// Whether `peer` has told this peer it subscribes to `topic`.
    pub async fn sees_subscribed(&self, peer: PeerId, topic: &str) -> bool {
        let topic = IdentTopic::new(topic).hash();
        self.ask(|reply| Command::Subscribed { peer, topic, reply }).await
    }

    /// Publishes each of `data` on `topic`, in order, as fast as the send queues take
    /// them; waits until all are handed over.
    pub async fn publish(&self, topic: &str, data: Vec<Vec<u8>>) -> Published {
        let topic = IdentTopic::new(topic);
        self.ask(|reply| Command::Publish { topic, data, reply }).await
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct EventLoop {
    swarm: Swarm<gossipsub::Behaviour>,
    commands: mpsc::Receiver<Command>,
    dials: HashMap<ConnectionId, oneshot::Sender<Result<(), String>>>,
    subscribed: HashSet<(PeerId, TopicHash)>,
    batch: Option<Batch>,
    queue_full: bool,
}

impl EventLoop {
    async fn run(mut self) {
        loop {
            self.publish_some();
            let (busy, wait) = (self.batch.is_some(), self.queue_full);
            tokio::select! {
                event = self.swarm.select_next_some() => self.handle_event(event),
                command = self.commands.recv(), if !busy => match command {
                    Some(command) => self.handle_command(command),
                    None => break,
                },
                // The connection tasks drain the queues on their own; look again shortly.
                () = tokio::time::sleep(Duration::from_millis(1)), if wait => {}
                // More to publish: let the connection tasks run, then go on.
                () = tokio::task::yield_now(), if busy && !wait => {}
            }
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Dial { addr, reply } => {
                let opts = DialOpts::unknown_peer_id().address(addr).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            Command::Subscribed { peer, topic, reply } => {
                let _ = reply.send(self.subscribed.contains(&(peer, topic)));
            }
            Command::Publish { topic, data, reply } => {
                let (done, started) = (Published::default(), Instant::now());
                self.batch = Some(Batch { topic, data: data.into(), done, started, reply });
            }
        }
    }

    /// Publishes up to [`PUBLISH_BATCH`] messages of the current batch; stops early when
    /// every send queue is full. Replies when the batch is done.
    fn publish_some(&mut self) {
        self.queue_full = false;
        let Some(batch) = self.batch.as_mut() else { return };
        for _ in 0..PUBLISH_BATCH {
            let Some(data) = batch.data.front() else { break };
            let gs = self.swarm.behaviour_mut();
            match gs.publish(batch.topic.clone(), data.clone()) {
                Ok(_) => batch.done.sent += 1,
                Err(PublishError::AllQueuesFull(_)) => {
                    batch.done.queue_full += 1;
                    self.queue_full = true;
                    return;
                }
                Err(_) => batch.done.refused += 1,
            }
            batch.data.pop_front();
        }
        if batch.data.is_empty() {
            if let Some(mut batch) = self.batch.take() {
                batch.done.elapsed = batch.started.elapsed();
                let _ = batch.reply.send(batch.done);
            }
        }
    }

    fn handle_event(&mut self, event: SwarmEvent<gossipsub::Event>) {
        match event {
            SwarmEvent::ConnectionEstablished { connection_id, .. } => {
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(()));
                }
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, topic, .. }) => {
                self.subscribed.insert((peer_id, topic));
            }
            SwarmEvent::Behaviour(gossipsub::Event::Unsubscribed { peer_id, topic }) => {
                self.subscribed.remove(&(peer_id, topic));
            }
            _ => {}
        }
    }
}

/// Connections from fresh identities, each its own bare swarm (TCP, Noise, Yamux, no
/// protocol) that dials a node and holds the connection open as long as the node lets it.
/// Dropping the flood closes them all.
pub struct ConnectionFlood {
    tasks: Vec<JoinHandle<()>>,
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Dials made at once by a [`ConnectionFlood`]: under a node's limit on pending inbound
/// connections, so that only its established-connection limits decide.
const FLOOD_WAVE: usize = 32;

impl ConnectionFlood {
    /// Opens `n` connections to `target` (ending in `/p2p/<id>`), `FLOOD_WAVE` at a
    /// time, each wave once every dial in it got an answer (or the deadline passed).
    pub async fn start(target: &Multiaddr, n: usize) -> Self {
        let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let wave = left.min(FLOOD_WAVE);
            left -= wave;
            let mut answers = Vec::with_capacity(wave);
            for _ in 0..wave {
                let (tx, rx) = oneshot::channel();
                tasks.push(tokio::spawn(hold_connection(target.clone(), open.clone(), tx)));
                answers.push(rx);
            }
            for rx in answers {
                let _ = tokio::time::timeout(DEADLINE, rx).await;
            }
        }
        Self { tasks, open }
    }

    /// Connections open now, as the attackers see them.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for ConnectionFlood {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One attacker: dials, says whether the connection came up, keeps it until closed.
async fn hold_connection(
    target: Multiaddr,
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    answer: oneshot::Sender<bool>,
) {
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    if swarm.dial(target).is_err() {
        let _ = answer.send(false);
        return;
    }
    let mut answer = Some(answer);
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { .. } => {
                open.fetch_add(1, Ordering::Relaxed);
                if let Some(a) = answer.take() {
                    let _ = a.send(true);
                }
            }
            SwarmEvent::ConnectionClosed { .. } => {
                open.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            SwarmEvent::OutgoingConnectionError { .. } => {
                if let Some(a) = answer.take() {
                    let _ = a.send(false);
                }
                return;
            }
            _ => {}
        }
    }
}

/// What a [`RequestFlood`] got back.
#[derive(Debug, Default, Clone, Copy)]
pub struct Replies {
    /// Requests answered (any answer).
    pub answered: usize,
    /// Requests that failed (refused, dropped, timed out, stream limits).
    pub failed: usize,
    /// From the first request sent to the last answer or failure.
    pub elapsed: Duration,
}

/// A bare request-response peer (TCP, Noise, Yamux, kith's length-prefixed frames) that
/// sends a node as many requests on one protocol as it is told, all at once.
pub struct RequestFlood {
    swarm: Swarm<libp2p::request_response::Behaviour<kith_node::net::FrameCodec>>,
    target: PeerId,
}

impl RequestFlood {
    /// Connects to `addr` (ending in `/p2p/<id>`) with a fresh identity, to speak
    /// `protocol`.
    pub async fn connect(addr: &Multiaddr, protocol: &'static str) -> Self {
        use libp2p::request_response::{Behaviour, Config, ProtocolSupport};
        let codec = kith_node::net::FrameCodec::new(64 * 1024, 64 * 1024);
        let behaviour = Behaviour::with_codec(
            codec,
            [(libp2p::StreamProtocol::new(protocol), ProtocolSupport::Outbound)],
            Config::default().with_max_concurrent_streams(4096),
        );
        let key = Keypair::generate_ed25519();
        let mut swarm = tcp_swarm(key, behaviour, Duration::from_secs(120));
        let target = dial_and_wait(&mut swarm, addr).await;
        Self { swarm, target }
    }

    /// Sends `n` copies of `bytes` at once and waits (bounded) until each is answered or
    /// has failed.
    pub async fn send(&mut self, bytes: &[u8], n: usize) -> Replies {
        use libp2p::request_response::{Event, Message};
        let started = Instant::now();
        for _ in 0..n {
            self.swarm.behaviour_mut().send_request(&self.target, bytes.to_vec());
        }
        let mut out = Replies::default();
        tokio::time::timeout(DEADLINE * 3, async {
            while out.answered + out.failed < n {
                match self.swarm.select_next_some().await {
                    SwarmEvent::Behaviour(Event::Message {
                        message: Message::Response { .. },
                        ..
                    }) => out.answered += 1,
                    SwarmEvent::Behaviour(Event::OutboundFailure { .. }) => out.failed += 1,
                    _ => {}
                }
            }
        })
        .await
        .expect("every request answered or failed");
        out.elapsed = started.elapsed();
        out
    }
}

/// A swarm of `key` over TCP with Noise and Yamux, running `behaviour`, keeping idle
/// connections for `idle`.
pub fn tcp_swarm<B: libp2p::swarm::NetworkBehaviour>(
    key: Keypair,
    behaviour: B,
    idle: Duration,
) -> Swarm<B> {
    SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build()
}

/// Dials `addr` from `swarm` and waits (bounded) for the connection; the peer's id.
pub async fn dial_and_wait<B: libp2p::swarm::NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    addr: &Multiaddr,
) -> PeerId {
    swarm.dial(addr.clone()).unwrap();
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                swarm.select_next_some().await
            {
                return peer_id;
            }
        }
    })
    .await
    .expect("the connection comes up")
}
