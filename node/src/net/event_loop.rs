//! The task that owns the swarm.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    autonat,
    core::{transport::ListenerId, ConnectedPoint},
    dcutr, gossipsub, identify, kad, mdns,
    multiaddr::Protocol,
    noise, relay, request_response,
    swarm::{dial_opts::DialOpts, ConnectionId, DialError, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    behaviour::{self, Behaviour, BehaviourEvent, RelayFriends, RelayMode},
    Command, Config, Event, NetError, PeerInfo, Proto, Reachability, Responder, Stats, Verdict,
    GOSSIP_BURST, GOSSIP_RATE,
};
use crate::limits::RateLimiter;

/// Connections stay open this long without traffic (gossip keeps them busy anyway).
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

type DialReply = oneshot::Sender<Result<PeerId, NetError>>;
type RequestReply = oneshot::Sender<Result<Vec<u8>, NetError>>;

/// Relay reservations an unreachable node keeps.
const WANTED_RESERVATIONS: usize = 2;
/// How often relays, reservations and the address record are looked after.
const MAINTENANCE: Duration = Duration::from_secs(3);
/// A relay that refused or dropped a reservation is asked again after this long.
const RELAY_RETRY: Duration = Duration::from_secs(10);
/// The signed address record in the DHT is published again after this long.
const ADDRESS_RECORD_REFRESH: Duration = Duration::from_secs(10 * 60);

/// The DHT key of a peer's signed address record.
fn address_key(peer: &PeerId) -> kad::RecordKey {
    let mut key = b"kith/addr/".to_vec();
    key.extend_from_slice(&peer.to_bytes());
    kad::RecordKey::new(&key)
}

/// Addresses from a signed address record, if it is `peer`'s own and its signature holds.
fn addresses_from_record(peer: &PeerId, value: &[u8]) -> Option<Vec<Multiaddr>> {
    let envelope = libp2p::core::SignedEnvelope::from_protobuf_encoding(value).ok()?;
    let record = libp2p::core::PeerRecord::from_signed_envelope(envelope).ok()?;
    (record.peer_id() == *peer).then(|| record.addresses().iter().take(16).cloned().collect())
}

/// A peer lookup in progress: the DHT walk for the peer and the read of its address record
/// run together; the first with addresses answers.
struct Find {
    target: PeerId,
    reply: oneshot::Sender<Vec<Multiaddr>>,
    outstanding: usize,
}

/// A spare direct connection to a peer is closed once it is this old (AutoNAT dial-backs
/// and simultaneous dials make them; kept open, they would fill the per-peer limit). Longer
/// than any request or probe timeout, so that what started on it can finish.
const SPARE_CONNECTION_GRACE: Duration = Duration::from_secs(30);

/// One open connection.
#[derive(Debug, Clone, Copy)]
struct Conn {
    relayed: bool,
    since: Instant,
}

/// A relay this node listens through.
struct Reservation {
    relay: PeerId,
    /// The `/p2p-circuit` address, once the relay accepted.
    addr: Option<Multiaddr>,
}

/// Owns the swarm; run it with [`EventLoop::run`].
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    listen_addrs: watch::Sender<Vec<Multiaddr>>,
    pending_dials: HashMap<ConnectionId, DialReply>,
    remote_addrs: HashMap<PeerId, Multiaddr>,
    pending_requests: HashMap<(Proto, request_response::OutboundRequestId), RequestReply>,
    finds: HashMap<usize, Find>,
    find_queries: HashMap<kad::QueryId, usize>,
    next_find: usize,
    pending_providers: HashMap<kad::QueryId, (Vec<PeerId>, oneshot::Sender<Vec<PeerId>>)>,
    gossip_limit: RateLimiter<PeerId>,
    gossip_rate_limited: u64,
    gossip_overflow: u64,
    keypair: libp2p::identity::Keypair,
    relay_mode: RelayMode,
    /// Peers that offer the relay hop protocol, with an address to reach them at.
    relays: HashMap<PeerId, Multiaddr>,
    /// Relays that refused or dropped us recently, and when.
    relay_refused: HashMap<PeerId, Instant>,
    reservations: HashMap<ListenerId, Reservation>,
    /// Open connections per peer.
    connections: HashMap<PeerId, HashMap<ConnectionId, Conn>>,
    /// Addresses we reached peers at by dialling.
    dialled: HashMap<PeerId, Multiaddr>,
    relaying_for: std::collections::HashSet<PeerId>,
    relay_refused_count: u64,
    holepunch_ok: u64,
    holepunch_failed: u64,
    /// Whether the signed address record needs publishing, and when it last was.
    address_record_dirty: bool,
    address_record_at: Option<Instant>,
}

fn build_swarm(
    keypair: libp2p::identity::Keypair,
    config: &Config,
    friends: &RelayFriends,
) -> Result<Swarm<Behaviour>, NetError> {
    let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
    let (mdns, relay_mode) = (config.mdns, config.relay);
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| setup(&e))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| setup(&e))?
        .with_behaviour(|key, relay_client| {
            Behaviour::new(key, mdns, relay_client, relay_mode, friends)
                .map_err(|e| Box::new(e) as _)
        })
        .map_err(|e| setup(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    Ok(swarm)
}

/// The peer an address leads to: its last `/p2p` part (a relayed address names the relay
/// first and the peer last).
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter()
        .filter_map(|p| match p {
            Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .last()
}

impl EventLoop {
    pub(crate) fn new(
        keypair: libp2p::identity::Keypair,
        config: &Config,
        friends: &RelayFriends,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        listen_addrs: watch::Sender<Vec<Multiaddr>>,
    ) -> Result<Self, NetError> {
        let mut swarm = build_swarm(keypair.clone(), config, friends)?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Setup(format!("cannot listen on {addr}: {e}")))?;
        }
        Ok(Self {
            swarm,
            commands,
            events,
            listen_addrs,
            pending_dials: HashMap::new(),
            pending_requests: HashMap::new(),
            finds: HashMap::new(),
            find_queries: HashMap::new(),
            next_find: 0,
            pending_providers: HashMap::new(),
            remote_addrs: HashMap::new(),
            gossip_limit: RateLimiter::new(GOSSIP_RATE, GOSSIP_BURST),
            gossip_rate_limited: 0,
            gossip_overflow: 0,
            keypair,
            relay_mode: config.relay,
            relays: HashMap::new(),
            relay_refused: HashMap::new(),
            reservations: HashMap::new(),
            connections: HashMap::new(),
            dialled: HashMap::new(),
            relaying_for: Default::default(),
            relay_refused_count: 0,
            holepunch_ok: 0,
            holepunch_failed: 0,
            address_record_dirty: true,
            address_record_at: None,
        })
    }

    /// Runs until shut down or until every [`super::Client`] is dropped.
    pub async fn run(mut self) {
        let mut maintenance = tokio::time::interval(MAINTENANCE);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
                _ = maintenance.tick() => self.maintain(),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => { let _ = reply.send(()); break; }
                    Some(command) => self.handle_command(command),
                    None => break,
                },
            }
        }
        tracing::debug!("network task stopped");
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Dial { addr, reply } => self.handle_dial(addr, reply),
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.handle_publish(topic, data));
            }
            Command::Subscribe { topic, reply } => {
                let _ = reply.send(self.handle_subscribe(&topic));
            }
            Command::Unsubscribe { topic, reply } => {
                let topic = gossipsub::IdentTopic::new(topic);
                let _ = reply.send(self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic));
            }
            Command::Report { id, source, verdict } => self.handle_report(&id, &source, verdict),
            Command::Request { proto, peer, addrs, bytes, reply } => {
                let id = self.rr(proto).send_request_with_addresses(&peer, bytes, addrs);
                self.pending_requests.insert((proto, id), reply);
            }
            Command::Respond { channel: Responder(proto, channel), bytes } => {
                if self.rr(proto).send_response(channel, bytes).is_err() {
                    tracing::debug!(?proto, "reply not sent: the peer went away");
                }
            }
            Command::FindPeer { peer, reply } => self.start_find(peer, reply),
            Command::Provide { key } => {
                if let Err(error) = self.swarm.behaviour_mut().kad.start_providing(key.into()) {
                    tracing::debug!(%error, "cannot provide in the DHT");
                }
            }
            Command::FindProviders { key, reply } => {
                let id = self.swarm.behaviour_mut().kad.get_providers(key.into());
                self.pending_providers.insert(id, (Vec::new(), reply));
            }
            Command::DialPeer { peer } => {
                if !self.swarm.is_connected(&peer) {
                    if let Err(error) = self.swarm.dial(DialOpts::peer_id(peer).build()) {
                        tracing::debug!(%peer, %error, "dial by id failed");
                    }
                }
            }
            Command::Block { peer, blocked } => {
                let list = &mut self.swarm.behaviour_mut().blocked;
                if blocked {
                    list.block_peer(peer);
                } else {
                    list.unblock_peer(peer);
                }
            }
            Command::IsConnected { peer, reply } => {
                let _ = reply.send(self.swarm.is_connected(&peer));
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peers());
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Command::TopicPeers { topic, reply } => {
                let hash = gossipsub::IdentTopic::new(topic).hash();
                let gs = &self.swarm.behaviour().gossipsub;
                let peers =
                    gs.all_peers().filter(|(_, t)| t.contains(&&hash)).map(|(p, _)| *p).collect();
                let _ = reply.send(peers);
            }
            // Handled in `run`.
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn handle_dial(&mut self, addr: Multiaddr, reply: DialReply) {
        let target = peer_of(&addr);
        if let Some(peer) = target {
            if peer == *self.swarm.local_peer_id() {
                let _ = reply.send(Err(NetError::Dial("that is this node's own address".into())));
                return;
            }
            if self.swarm.is_connected(&peer) {
                let _ = reply.send(Ok(peer));
                return;
            }
        }
        let opts = match target {
            Some(peer) => DialOpts::peer_id(peer).addresses(vec![addr]).build(),
            None => DialOpts::unknown_peer_id().address(addr).build(),
        };
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(id, reply);
            }
            Err(DialError::DialPeerConditionFalse(_)) => {
                // Already connected or dialling; the peer is known to be reachable.
                match target {
                    Some(peer) => {
                        let _ = reply.send(Ok(peer));
                    }
                    None => {
                        let _ = reply.send(Err(NetError::Dial("already dialling".into())));
                    }
                }
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Dial(e.to_string())));
            }
        }
    }

    fn handle_publish(&mut self, topic: String, data: Vec<u8>) -> Result<usize, NetError> {
        let topic = gossipsub::IdentTopic::new(topic);
        let hash = topic.hash();
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(_) => {
                let gs = &self.swarm.behaviour().gossipsub;
                Ok(gs.all_peers().filter(|(_, topics)| topics.contains(&&hash)).count())
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic)
            | Err(gossipsub::PublishError::Duplicate) => Ok(0),
            Err(e) => Err(NetError::Gossip(e.to_string())),
        }
    }

    fn handle_subscribe(&mut self, topic: &str) -> Result<bool, NetError> {
        let topic = gossipsub::IdentTopic::new(topic);
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        // Per-topic scores are kept only for registered topics: register before joining.
        gs.set_topic_params(topic.clone(), behaviour::topic_score_params())
            .map_err(|e| NetError::Gossip(e.to_string()))?;
        gs.subscribe(&topic).map_err(|e| NetError::Gossip(e.to_string()))
    }

    fn handle_report(&mut self, id: &gossipsub::MessageId, source: &PeerId, verdict: Verdict) {
        let acceptance = match verdict {
            Verdict::Accept => gossipsub::MessageAcceptance::Accept,
            Verdict::Reject => gossipsub::MessageAcceptance::Reject,
            Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
    }

    fn peers(&self) -> Vec<PeerInfo> {
        let gs = &self.swarm.behaviour().gossipsub;
        let mut seen = HashMap::new();
        for peer in self.swarm.connected_peers() {
            seen.insert(*peer, gs.peer_score(peer));
        }
        let mut out: Vec<PeerInfo> = Vec::new();
        for (peer, score) in seen {
            let addr = self.remote_addrs.get(&peer).cloned().unwrap_or_else(Multiaddr::empty);
            let relayed = self
                .connections
                .get(&peer)
                .is_some_and(|c| !c.is_empty() && c.values().all(|c| c.relayed));
            out.push(PeerInfo { peer, addr, score, relayed });
        }
        out.sort_by_key(|p| p.peer.to_string());
        out
    }

    fn stats(&self) -> Stats {
        let gs = &self.swarm.behaviour().gossipsub;
        let mut topics: Vec<String> = gs.topics().map(|t| t.to_string()).collect();
        topics.sort();
        let mesh: std::collections::HashSet<&PeerId> = gs.all_mesh_peers().collect();
        let graylist = gossipsub::PeerScoreThresholds::default().graylist_threshold;
        let scores: Vec<f64> =
            self.swarm.connected_peers().filter_map(|p| gs.peer_score(p)).collect();
        Stats {
            topics,
            peers: self.swarm.connected_peers().count(),
            mesh_peers: mesh.len(),
            graylisted: scores.iter().filter(|s| **s < graylist).count(),
            penalised: scores.iter().filter(|s| **s < 0.0).count(),
            gossip_rate_limited: self.gossip_rate_limited,
            gossip_overflow: self.gossip_overflow,
            reachability: self.reachability(),
            public_addr: self.swarm.behaviour().autonat.public_address().cloned(),
            relay_addrs: self.reservations.values().filter_map(|r| r.addr.clone()).collect(),
            relay_mode: self.relay_mode,
            relaying_for: self.relaying_for.len(),
            relay_refused: self.relay_refused_count,
            holepunch_ok: self.holepunch_ok,
            holepunch_failed: self.holepunch_failed,
        }
    }

    fn emit(&self, event: Event) {
        if self.events.try_send(event).is_err() {
            tracing::warn!("node event queue full; dropping a network event");
        }
    }

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.handle_gossip(e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(e)) => self.handle_mdns(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.handle_identify(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.handle_kad(e),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(e)) => self.handle_autonat(e),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => self.handle_relay_client(e),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => self.handle_relay_server(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => self.handle_dcutr(e),
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
                self.address_record_dirty = true;
            }
            SwarmEvent::ExternalAddrExpired { .. } => self.address_record_dirty = true,
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                if let Some(reservation) = self.reservations.remove(&listener_id) {
                    tracing::info!(relay = %reservation.relay, ?reason, "relay reservation ended");
                    self.relay_refused.insert(reservation.relay, Instant::now());
                    self.address_record_dirty = true;
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dm(e)) => {
                self.handle_request_response(Proto::Dm, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => {
                self.handle_request_response(Proto::Sync, e)
            }
            SwarmEvent::NewListenAddr { listener_id, address } => {
                if let Some(reservation) = self.reservations.get_mut(&listener_id) {
                    reservation.addr = Some(address.clone());
                    // Reachable through the relay from now on: say so in the DHT at once.
                    self.address_record_dirty = true;
                    self.publish_address_record();
                }
                self.handle_listen_addr(address, true)
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.handle_listen_addr(address, false)
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                self.handle_connected(peer_id, connection_id, endpoint)
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                if let Some(open) = self.connections.get_mut(&peer_id) {
                    open.remove(&connection_id);
                }
                if num_established == 0 {
                    self.remote_addrs.remove(&peer_id);
                    self.connections.remove(&peer_id);
                    self.dialled.remove(&peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, peer_id } => {
                if let Some(reservation) =
                    self.reservations.values().find(|r| Some(r.relay) == peer_id)
                {
                    self.relay_refused.insert(reservation.relay, Instant::now());
                }
                tracing::debug!(peer = ?peer_id, %error, "outgoing connection failed");
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(NetError::Dial(error.to_string())));
                }
            }
            SwarmEvent::ListenerError { error, .. } => tracing::warn!(%error, "listener error"),
            _ => {}
        }
    }

    fn handle_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message { propagation_source, message_id, message } => {
                // Limited per peer before the shared queue: a flooding peer's excess never
                // takes the place of other peers' messages. Not penalised: an honest relay
                // may be busy.
                if !self.gossip_limit.allow(propagation_source) {
                    self.gossip_rate_limited += 1;
                    self.handle_report(&message_id, &propagation_source, Verdict::Ignore);
                    return;
                }
                let event = Event::Message {
                    source: propagation_source,
                    id: message_id.clone(),
                    topic: message.topic.to_string(),
                    data: message.data,
                };
                if self.events.try_send(event).is_err() {
                    // Overloaded: do not forward what we could not check, and do not blame
                    // the peer for our load.
                    self.gossip_overflow += 1;
                    self.handle_report(&message_id, &propagation_source, Verdict::Ignore);
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic, .. } => {
                self.emit(Event::Subscribed { peer: peer_id, topic: topic.to_string() })
            }
            _ => {}
        }
    }

    fn rr(&mut self, proto: Proto) -> &mut request_response::Behaviour<super::frame::FrameCodec> {
        match proto {
            Proto::Dm => &mut self.swarm.behaviour_mut().dm,
            Proto::Sync => &mut self.swarm.behaviour_mut().sync,
        }
    }

    fn handle_request_response(
        &mut self,
        proto: Proto,
        event: request_response::Event<Vec<u8>, Vec<u8>>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let channel = Responder(proto, channel);
                    let event = Event::Request { proto, peer, bytes: request, channel };
                    if self.events.try_send(event).is_err() {
                        // Overloaded: dropping the channel fails the request; the sender
                        // retries later.
                        tracing::warn!(%peer, ?proto, "request dropped: node queue full");
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.pending_requests.remove(&(proto, request_id)) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                tracing::debug!(%peer, %error, ?proto, "request failed");
                if let Some(reply) = self.pending_requests.remove(&(proto, request_id)) {
                    let _ = reply.send(Err(NetError::Request(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, ?proto, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn handle_mdns(&mut self, event: mdns::Event) {
        if let mdns::Event::Discovered(found) = event {
            for (peer, addr) in found {
                if !self.swarm.is_connected(&peer) {
                    let opts = DialOpts::peer_id(peer).addresses(vec![addr]).build();
                    if let Err(error) = self.swarm.dial(opts) {
                        tracing::debug!(%peer, %error, "mdns dial failed");
                    }
                }
            }
        }
    }

    fn start_find(&mut self, target: PeerId, reply: oneshot::Sender<Vec<Multiaddr>>) {
        let id = self.next_find;
        self.next_find += 1;
        let kad = &mut self.swarm.behaviour_mut().kad;
        let walk = kad.get_closest_peers(target);
        let record = kad.get_record(address_key(&target));
        self.find_queries.insert(walk, id);
        self.find_queries.insert(record, id);
        self.finds.insert(id, Find { target, reply, outstanding: 2 });
    }

    /// A lookup query produced `found` (possibly nothing); `last` when the query is over.
    fn find_progress(&mut self, query: kad::QueryId, found: Vec<Multiaddr>, last: bool) {
        let Some(&id) = self.find_queries.get(&query) else { return };
        if last {
            self.find_queries.remove(&query);
        }
        let Some(find) = self.finds.get_mut(&id) else { return };
        if last {
            find.outstanding = find.outstanding.saturating_sub(1);
        }
        if found.is_empty() && find.outstanding > 0 {
            return;
        }
        if let Some(find) = self.finds.remove(&id) {
            let _ = find.reply.send(found);
        }
    }

    fn handle_kad(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed { id, result, step, .. } = event else { return };
        match result {
            kad::QueryResult::GetClosestPeers(result) => {
                let peers = match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                let target =
                    self.find_queries.get(&id).and_then(|f| self.finds.get(f)).map(|f| f.target);
                let Some(target) = target else { return };
                let found: Vec<Multiaddr> = peers
                    .into_iter()
                    .filter(|p| p.peer_id == target)
                    .flat_map(|p| p.addrs)
                    .collect();
                self.find_progress(id, found, step.last);
            }
            kad::QueryResult::GetRecord(result) => {
                let target =
                    self.find_queries.get(&id).and_then(|f| self.finds.get(f)).map(|f| f.target);
                let Some(target) = target else { return };
                let found = match result {
                    Ok(kad::GetRecordOk::FoundRecord(found)) => {
                        addresses_from_record(&target, &found.record.value).unwrap_or_default()
                    }
                    _ => Vec::new(),
                };
                // One good record is enough: stop asking.
                let done = step.last || !found.is_empty();
                if done && !step.last {
                    if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        query.finish();
                    }
                }
                self.find_progress(id, found, done);
            }
            kad::QueryResult::GetProviders(result) => {
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = result {
                    if let Some((found, _)) = self.pending_providers.get_mut(&id) {
                        found.extend(providers);
                    }
                }
                if step.last {
                    if let Some((found, reply)) = self.pending_providers.remove(&id) {
                        let _ = reply.send(found);
                    }
                }
            }
            kad::QueryResult::PutRecord(Err(error)) => {
                tracing::debug!(%error, "address record not stored in the DHT");
            }
            _ => {}
        }
    }

    fn reachability(&self) -> Reachability {
        match self.swarm.behaviour().autonat.nat_status() {
            autonat::v1::NatStatus::Public(_) => Reachability::Public,
            autonat::v1::NatStatus::Private => Reachability::Private,
            autonat::v1::NatStatus::Unknown => Reachability::Unknown,
        }
    }

    fn handle_autonat(&mut self, event: autonat::v1::Event) {
        let autonat::v1::Event::StatusChanged { old, new } = event else { return };
        tracing::info!(?old, ?new, "reachability changed");
        let kad = &mut self.swarm.behaviour_mut().kad;
        match new {
            autonat::v1::NatStatus::Private => {
                // Unreachable: ask the DHT, do not answer it (others could not dial us).
                kad.set_mode(Some(kad::Mode::Client));
                self.maintain_relays();
            }
            autonat::v1::NatStatus::Public(_) => {
                kad.set_mode(Some(kad::Mode::Server));
                // Directly reachable: relayed addresses are no longer needed.
                let ids: Vec<ListenerId> = self.reservations.keys().copied().collect();
                for id in ids {
                    self.swarm.remove_listener(id);
                }
            }
            autonat::v1::NatStatus::Unknown => {}
        }
        self.address_record_dirty = true;
    }

    fn handle_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted { relay_peer_id, renewal, .. } => {
                if !renewal {
                    tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
                }
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "relayed connection opened");
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "relayed connection accepted");
            }
        }
    }

    fn handle_relay_server(&mut self, event: relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                self.relaying_for.insert(src_peer_id);
            }
            relay::Event::ReservationReqDenied { src_peer_id, .. } => {
                self.relay_refused_count += 1;
                tracing::debug!(peer = %src_peer_id, "relay reservation refused");
            }
            relay::Event::ReservationClosed { src_peer_id }
            | relay::Event::ReservationTimedOut { src_peer_id } => {
                self.relaying_for.remove(&src_peer_id);
            }
            _ => {}
        }
    }

    fn handle_dcutr(&mut self, event: dcutr::Event) {
        match event.result {
            Ok(_) => {
                self.holepunch_ok += 1;
                tracing::info!(peer = %event.remote_peer_id, "hole punch: direct connection");
            }
            Err(error) => {
                self.holepunch_failed += 1;
                tracing::info!(peer = %event.remote_peer_id, %error, "hole punch failed");
            }
        }
    }

    /// Closes spare direct connections: of several direct connections to one peer, both
    /// sides keep the oldest (which is also the one a relay reservation is made on).
    /// Relayed connections are left alone (hole punching replaces them, and they end with
    /// their circuit).
    fn close_spare_connections(&mut self) {
        let mut spare = Vec::new();
        for open in self.connections.values() {
            let mut direct: Vec<(&ConnectionId, &Conn)> =
                open.iter().filter(|(_, c)| !c.relayed).collect();
            if direct.len() < 2 {
                continue;
            }
            direct.sort_by_key(|(_, c)| c.since);
            spare.extend(
                direct
                    .into_iter()
                    .skip(1)
                    .filter(|(_, c)| c.since.elapsed() >= SPARE_CONNECTION_GRACE)
                    .map(|(id, _)| *id),
            );
        }
        for id in spare {
            self.swarm.close_connection(id);
        }
    }

    /// Periodic upkeep: spare connections, relay reservations while unreachable, the
    /// signed address record.
    fn maintain(&mut self) {
        self.close_spare_connections();
        if self.reachability() == Reachability::Private {
            self.maintain_relays();
        }
        let stale = self.address_record_at.is_none_or(|at| at.elapsed() > ADDRESS_RECORD_REFRESH);
        if self.address_record_dirty || stale {
            self.publish_address_record();
        }
    }

    /// While unreachable, keeps up to [`WANTED_RESERVATIONS`] relay reservations.
    fn maintain_relays(&mut self) {
        let now = Instant::now();
        self.relay_refused.retain(|_, at| now.duration_since(*at) < RELAY_RETRY);
        let used: Vec<PeerId> = self.reservations.values().map(|r| r.relay).collect();
        let mut candidates: Vec<(PeerId, Multiaddr)> = self
            .relays
            .iter()
            .filter(|(peer, _)| !used.contains(peer) && !self.relay_refused.contains_key(peer))
            .filter(|(peer, _)| self.swarm.is_connected(peer))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        candidates.sort_by_key(|(p, _)| p.to_string());
        for (relay, addr) in
            candidates.into_iter().take(WANTED_RESERVATIONS.saturating_sub(used.len()))
        {
            let circuit = addr.with_p2p(relay).unwrap_or_else(|a| a).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(id) => {
                    tracing::debug!(%relay, "asking for a relay reservation");
                    self.reservations.insert(id, Reservation { relay, addr: None });
                }
                Err(error) => {
                    tracing::debug!(%relay, %error, "cannot listen through relay");
                    self.relay_refused.insert(relay, now);
                }
            }
        }
    }

    /// Publishes this node's addresses, signed, under its key in the DHT, so that peers
    /// can find it even when it is a DHT client (unreachable, behind a relay).
    fn publish_address_record(&mut self) {
        let mut addrs: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        if addrs.is_empty() {
            addrs = self.swarm.listeners().cloned().collect();
        }
        addrs.retain(|a| !a.iter().any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())));
        addrs.truncate(16);
        if addrs.is_empty() || self.swarm.connected_peers().next().is_none() {
            return;
        }
        let record = match libp2p::core::PeerRecord::new(&self.keypair, addrs) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, "cannot sign the address record");
                return;
            }
        };
        let value = record.into_signed_envelope().into_protobuf_encoding();
        let key = address_key(self.swarm.local_peer_id());
        let record = kad::Record::new(key, value);
        if let Err(error) = self.swarm.behaviour_mut().kad.put_record(record, kad::Quorum::One) {
            tracing::debug!(%error, "cannot store the address record");
            return;
        }
        self.address_record_dirty = false;
        self.address_record_at = Some(Instant::now());
    }

    fn handle_identify(&mut self, event: identify::Event) {
        if let identify::Event::Received { peer_id, info, .. } = event {
            let kad_protocol = libp2p::StreamProtocol::new(super::behaviour::KAD_PROTOCOL);
            if info.protocols.contains(&kad_protocol) {
                for addr in info.listen_addrs.iter().take(8) {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
                }
            }
            if info.protocols.contains(&relay::HOP_PROTOCOL_NAME) {
                let direct = |a: &&Multiaddr| !a.iter().any(|p| p == Protocol::P2pCircuit);
                let reach = self
                    .dialled
                    .get(&peer_id)
                    .cloned()
                    .or_else(|| info.listen_addrs.iter().find(direct).cloned());
                if let Some(addr) = reach {
                    self.relays.insert(peer_id, addr);
                    if self.reachability() == Reachability::Private {
                        self.maintain_relays();
                    }
                }
            } else {
                self.relays.remove(&peer_id);
            }
            let addrs: Vec<Multiaddr> = info.listen_addrs.into_iter().take(8).collect();
            self.emit(Event::Identified { peer: peer_id, addrs });
        }
    }

    fn handle_listen_addr(&mut self, address: Multiaddr, added: bool) {
        let full = address.with_p2p(*self.swarm.local_peer_id()).unwrap_or_else(|a| a);
        self.listen_addrs.send_modify(|addrs| {
            addrs.retain(|a| a != &full);
            if added {
                tracing::info!(address = %full, "listening");
                addrs.push(full);
            }
        });
    }

    fn handle_connected(&mut self, peer: PeerId, id: ConnectionId, endpoint: ConnectedPoint) {
        let dialled = match &endpoint {
            ConnectedPoint::Dialer { address, .. } => Some(address.clone()),
            ConnectedPoint::Listener { .. } => None,
        };
        self.remote_addrs.insert(peer, endpoint.get_remote_address().clone());
        let conn = Conn { relayed: endpoint.is_relayed(), since: Instant::now() };
        self.connections.entry(peer).or_default().insert(id, conn);
        if let Some(addr) = &dialled {
            if !endpoint.is_relayed() {
                self.dialled.insert(peer, addr.clone());
            }
        }
        if let Some(reply) = self.pending_dials.remove(&id) {
            let _ = reply.send(Ok(peer));
        }
        tracing::debug!(%peer, "connected");
        self.emit(Event::Connected { peer, addr: dialled });
    }
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;

    fn signed(key: &Keypair, addrs: Vec<Multiaddr>) -> Vec<u8> {
        libp2p::core::PeerRecord::new(key, addrs)
            .unwrap()
            .into_signed_envelope()
            .into_protobuf_encoding()
    }

    #[test]
    fn address_records_are_taken_only_from_their_own_peer() {
        let alice = Keypair::generate_ed25519();
        let mallory = Keypair::generate_ed25519();
        let a = alice.public().to_peer_id();
        let addr: Multiaddr = "/ip4/192.0.2.1/tcp/4001".parse().unwrap();
        let good = signed(&alice, vec![addr.clone()]);
        assert_eq!(addresses_from_record(&a, &good), Some(vec![addr.clone()]));
        // Mallory signs a record pointing elsewhere: it names Mallory, not Alice.
        let forged = signed(&mallory, vec!["/ip4/203.0.113.9/tcp/1".parse().unwrap()]);
        assert_eq!(addresses_from_record(&a, &forged), None);
        // Any changed byte breaks the signature or the encoding.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert_ne!(addresses_from_record(&a, &bad), Some(vec![addr.clone()]), "byte {i}");
        }
        assert_eq!(addresses_from_record(&a, b"garbage"), None);
        // At most 16 addresses are read from a record.
        let many: Vec<Multiaddr> =
            (0..40).map(|p| format!("/ip4/192.0.2.1/tcp/{}", 1000 + p).parse().unwrap()).collect();
        assert_eq!(addresses_from_record(&a, &signed(&alice, many)).unwrap().len(), 16);
    }

    #[test]
    fn the_peer_of_a_relayed_address_is_the_last_one() {
        let relay = Keypair::generate_ed25519().public().to_peer_id();
        let target = Keypair::generate_ed25519().public().to_peer_id();
        let addr: Multiaddr =
            format!("/ip4/10.0.0.1/tcp/1/p2p/{relay}/p2p-circuit/p2p/{target}").parse().unwrap();
        assert_eq!(peer_of(&addr), Some(target));
    }
}
