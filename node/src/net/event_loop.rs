//! The task that owns the swarm.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    core::{transport::ListenerId, ConnectedPoint},
    gossipsub, identify, kad, mdns,
    multiaddr::Protocol,
    noise, relay, request_response,
    swarm::{dial_opts::DialOpts, ConnectionId, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    admission::PeerSet,
    behaviour::{Behaviour, BehaviourEvent, RelayFriends, RelayMode},
    coalesce::Coalesce,
    credit::Credit,
    Command, Config, Event, NetError, Proto, Reachability, Responder, Verdict, GOSSIP_BURST,
    GOSSIP_RATE,
};
use crate::limits::RateLimiter;

mod census;
mod commands;
mod nat;
mod unused;

use nat::{address_key, addresses_from_record, Reservation};

type DialReply = oneshot::Sender<Result<PeerId, NetError>>;
type RequestReply = oneshot::Sender<Result<Vec<u8>, NetError>>;

/// How often relays, reservations and the address record are looked after.
const MAINTENANCE: Duration = Duration::from_secs(3);
/// A peer lookup in progress: the DHT walk for the peer and the read of its address record
/// run together; the first with addresses answers.
struct Find {
    target: PeerId,
    reply: oneshot::Sender<Vec<Multiaddr>>,
    outstanding: usize,
}

/// One open connection.
#[derive(Debug, Clone, Copy)]
struct Conn {
    relayed: bool,
    since: Instant,
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
    /// First-delivery credit and lots, handed to gossipsub as each peer's application score.
    credit: Credit<PeerId>,
    /// Lots are drawn in [0, this) (`GossipTuning::mesh_lot`) ...
    mesh_lot: f64,
    /// ... from this generator, seeded at start (it also picks the peer a mend boosts).
    lot_rng: rand_pcg::Pcg64Mcg,
    /// When each topic was taken and last mended (`mend.rs`).
    mends: super::mend::Mends,
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
    /// The addresses of the record last put in the DHT (empty after a failed put, so
    /// that the next upkeep puts it again).
    address_record_sent: Vec<Multiaddr>,
    /// External addresses confirmed so far: AutoNAT confirms them again every few
    /// seconds, and only a new one is worth a log line.
    confirmed_addrs: std::collections::HashSet<Multiaddr>,
    /// Gossipsub's counters (copies received, duplicates among them).
    gossip_metrics: prometheus_client::registry::Registry,
    /// Swarm events since start, by kind (`census.rs`).
    events_seen: std::collections::BTreeMap<&'static str, u64>,
    /// When a request or answer last went to or came from each connected peer
    /// (`unused.rs`).
    last_used: HashMap<PeerId, Instant>,
    /// Peers reached by a dial of an address given to this node (bootstrap, remembered,
    /// asked for): their connections are kept.
    dialled_on_purpose: std::collections::HashSet<PeerId>,
}

fn build_swarm(
    keypair: libp2p::identity::Keypair,
    config: &Config,
    (friends, followed): (&RelayFriends, &PeerSet),
    registry: &mut prometheus_client::registry::Registry,
) -> Result<Swarm<Behaviour>, NetError> {
    let (limits, followed) = (config.limits, followed.clone());
    let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
    let (mdns, relay_mode) = (config.mdns, config.relay);
    let on = super::tuning::idle_tuning().coalesce_flushes;
    let muxer = move || Coalesce { muxer: yamux::Config::default(), on };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, muxer)
        .map_err(|e| setup(&e))?
        .with_quic()
        .with_relay_client(noise::Config::new, muxer)
        .map_err(|e| setup(&e))?
        .with_behaviour(|key, relay_client| {
            let limits = (limits, followed);
            Behaviour::new(key, mdns, relay_client, relay_mode, friends, limits, registry)
                .map_err(|e| Box::new(e) as _)
        })
        .map_err(|e| setup(&e))?
        // Connections stay open this long without use. Gossipsub keeps a stream open on
        // every connection to a gossipsub peer, which counts as use: in practice only
        // connections to peers without gossipsub time out (`event_loop/unused.rs`).
        .with_swarm_config(|c| {
            let idle = super::tuning::idle_tuning();
            let c = c.with_idle_connection_timeout(idle.idle_connection_timeout);
            if idle.lazy_streams {
                c.with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
            } else {
                c
            }
        })
        .build();
    Ok(swarm)
}

impl EventLoop {
    pub(crate) fn new(
        keypair: libp2p::identity::Keypair,
        config: &Config,
        sets: (&RelayFriends, &PeerSet),
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        listen_addrs: watch::Sender<Vec<Multiaddr>>,
    ) -> Result<Self, NetError> {
        let mut gossip_metrics = prometheus_client::registry::Registry::default();
        let mut swarm = build_swarm(keypair.clone(), config, sets, &mut gossip_metrics)?;
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
            credit: Credit::new(),
            mesh_lot: super::tuning::gossip_tuning().mesh_lot,
            mends: super::mend::Mends::new(&super::tuning::gossip_tuning()),
            lot_rng: rand_core::SeedableRng::seed_from_u64(getrandom::u64().unwrap_or_else(|_| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                now.map_or(0, |d| d.as_nanos() as u64)
            })),
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
            address_record_sent: Vec::new(),
            confirmed_addrs: std::collections::HashSet::new(),
            gossip_metrics,
            events_seen: Default::default(),
            last_used: HashMap::new(),
            dialled_on_purpose: Default::default(),
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

    fn emit(&self, event: Event) {
        if self.events.try_send(event).is_err() {
            tracing::warn!("node event queue full; dropping a network event");
        }
    }

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        *self.events_seen.entry(census::kind(&event)).or_default() += 1;
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.handle_gossip(e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(e)) => self.handle_mdns(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.handle_identify(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.handle_kad(e),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(e)) => self.handle_autonat(e),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => self.handle_relay_client(e),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => self.handle_relay_server(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => self.handle_dcutr(e),
            // AutoNAT confirms the same address again at each probe: only a change is
            // worth publishing (the address record goes to about twenty DHT peers, and
            // identify pushes the new addresses to every peer).
            SwarmEvent::ExternalAddrConfirmed { address }
                if self.confirmed_addrs.insert(address.clone()) =>
            {
                tracing::info!(%address, "reachable from outside at this address");
                self.address_record_dirty = true;
                self.push_identify_unless_listening(&address);
            }
            SwarmEvent::ExternalAddrExpired { address }
                if self.confirmed_addrs.remove(&address) =>
            {
                self.address_record_dirty = true;
                self.push_identify_unless_listening(&address);
            }
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
            SwarmEvent::Behaviour(BehaviourEvent::Dm2(e)) => {
                self.handle_request_response(Proto::Dm2, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Group(e)) => {
                self.handle_request_response(Proto::Group, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => {
                self.handle_request_response(Proto::Sync, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mailbox(e)) => {
                self.handle_request_response(Proto::Mailbox, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Blob(e)) => {
                self.handle_request_response(Proto::Blob, e)
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
                    self.emit(Event::Disconnected { peer: peer_id });
                    self.credit.forget(&peer_id);
                    self.remote_addrs.remove(&peer_id);
                    self.connections.remove(&peer_id);
                    self.dialled.remove(&peer_id);
                    self.last_used.remove(&peer_id);
                    self.dialled_on_purpose.remove(&peer_id);
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
            Proto::Dm2 => &mut self.swarm.behaviour_mut().dm2,
            Proto::Group => &mut self.swarm.behaviour_mut().group,
            Proto::Sync => &mut self.swarm.behaviour_mut().sync,
            Proto::Mailbox => &mut self.swarm.behaviour_mut().mailbox,
            Proto::Blob => &mut self.swarm.behaviour_mut().blob,
        }
    }

    fn handle_request_response(
        &mut self,
        proto: Proto,
        event: request_response::Event<Vec<u8>, Vec<u8>>,
    ) {
        match &event {
            request_response::Event::Message { peer, .. }
            | request_response::Event::OutboundFailure { peer, .. }
            | request_response::Event::InboundFailure { peer, .. }
            | request_response::Event::ResponseSent { peer, .. } => self.note_used(*peer),
        }
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

    /// The peer a lookup query is looking for, if the query is one of ours.
    fn find_target(&self, query: kad::QueryId) -> Option<PeerId> {
        self.find_queries.get(&query).and_then(|f| self.finds.get(f)).map(|f| f.target)
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
                let Some(target) = self.find_target(id) else { return };
                let found: Vec<Multiaddr> = peers
                    .into_iter()
                    .filter(|p| p.peer_id == target)
                    .flat_map(|p| p.addrs)
                    .collect();
                self.find_progress(id, found, step.last);
            }
            kad::QueryResult::GetRecord(result) => {
                let Some(target) = self.find_target(id) else { return };
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
                self.address_record_sent.clear();
                self.address_record_dirty = true;
            }
            _ => {}
        }
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

    /// Pushes identify to every connected peer when an external address that is not
    /// also a listen address came or went: what identify tells peers (listen and external
    /// addresses) changed, and the periodic round is far apart (`IdleTuning`). Identify
    /// pushes changes of listen addresses itself. AutoNAT confirms addresses with this
    /// node's `/p2p/` suffix; a listen address with it is no news.
    fn push_identify_unless_listening(&mut self, address: &Multiaddr) {
        let bare: Multiaddr = address.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect();
        if self.swarm.listeners().any(|a| *a == bare) {
            return;
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        self.swarm.behaviour_mut().identify.push(peers);
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
            self.dialled_on_purpose.insert(peer);
            let _ = reply.send(Ok(peer));
        }
        tracing::debug!(%peer, "connected");
        let first = self.connections.get(&peer).is_some_and(|open| open.len() == 1);
        if first {
            self.meet(peer);
        }
        self.emit(Event::Connected { peer, addr: dialled, first });
    }
}
