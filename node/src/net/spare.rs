//! Spare direct connections: never a gossip connection, and closed as they open (issue 21
//! item 2).
//!
//! Two nodes end up with a second direct connection between them when one dials the
//! other while connected (an AutoNAT dial-back, a dial of an address asked for) or both
//! dial at once. Of several direct connections to one peer a node keeps the oldest and
//! closes the others: the spares. libp2p-gossipsub 0.50 gives every connection to a peer
//! a handler, and all of them take from ONE send queue for that peer; its handler has no
//! `poll_close`, so a copy a spare's handler has taken from the queue, or written but the
//! other end had not read, when the spare closes is lost and nothing tells gossipsub.
//! With the spares closed 30 s after they opened, quiet 50- and 100-node runs lost posts
//! whenever the closes fell among them (docs/benchmarks.md "Why no-IHAVE is not the
//! default").
//!
//! [`GossipOnFirst`] wraps gossipsub so that this cannot happen:
//! - a direct connection that opens while another direct connection to the same peer is
//!   open (a spare) gets no gossipsub handler but [`Handler::Spare`], which refuses the
//!   gossipsub protocol and never opens a stream; gossipsub still counts the connection
//!   (so its bookkeeping of connections is unchanged), but nothing takes from the peer's
//!   queue through it, and the other end cannot send gossip on it either (its outbound
//!   gossipsub stream is refused by this end);
//! - and the wrapper closes that connection at once, with the same decision, taken once.
//!
//! So a connection that this node closes as a spare never carried a gossip message in
//! either direction: closing it cannot lose one. The one gossip connection to a peer is
//! its oldest open direct connection (or a relayed one while no direct one is open), as
//! before. Relayed connections are not spares (hole punching replaces them by a direct one,
//! and they end with their circuit).
//!
//! If two nodes dial each other at once and each sees the other's connection open second,
//! each closes a different one and they are disconnected (as with the 30 s rule before);
//! neither connection carried gossip (each had a spare end), so no post is lost with them.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    ops::{Deref, DerefMut},
    task::{Context, Poll},
};

use libp2p::{
    core::{multiaddr::Protocol, transport::PortUse, upgrade::DeniedUpgrade, Endpoint},
    swarm::{
        handler::ConnectionEvent, CloseConnection, ConnectionDenied, ConnectionHandler,
        ConnectionHandlerEvent, ConnectionId, FromSwarm, NetworkBehaviour, SubstreamProtocol,
        THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

use super::behaviour::Gossipsub;

/// Gossipsub's own connection handler.
type Inner = THandler<Gossipsub>;

/// A connection's handler: gossipsub's, or none for a spare. (Not boxed: one lives per
/// connection, in that connection's task; gossipsub's own handler enum is as large.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Handler {
    /// The peer's gossip connection.
    Gossip(Inner),
    /// A spare direct connection: refuses gossipsub streams, opens none, keeps nothing
    /// alive, and ignores what gossipsub tells it.
    Spare,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = <Inner as ConnectionHandler>::FromBehaviour;
    type ToBehaviour = <Inner as ConnectionHandler>::ToBehaviour;
    type InboundProtocol = <Inner as ConnectionHandler>::InboundProtocol;
    type OutboundProtocol = <Inner as ConnectionHandler>::OutboundProtocol;
    type InboundOpenInfo = <Inner as ConnectionHandler>::InboundOpenInfo;
    type OutboundOpenInfo = <Inner as ConnectionHandler>::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        match self {
            Handler::Gossip(inner) => inner.listen_protocol(),
            // What gossipsub's own disabled handler offers: no protocol at all.
            Handler::Spare => SubstreamProtocol::new(either::Either::Right(DeniedUpgrade), ()),
        }
    }

    fn connection_keep_alive(&self) -> bool {
        match self {
            Handler::Gossip(inner) => inner.connection_keep_alive(),
            Handler::Spare => false,
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        match self {
            Handler::Gossip(inner) => inner.poll(cx),
            Handler::Spare => Poll::Pending,
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        match self {
            Handler::Gossip(inner) => inner.poll_close(cx),
            Handler::Spare => Poll::Ready(None),
        }
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        if let Handler::Gossip(inner) = self {
            inner.on_behaviour_event(event);
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        if let Handler::Gossip(inner) = self {
            inner.on_connection_event(event);
        }
    }
}

/// Gossipsub on one direct connection per peer; spare direct connections closed as they
/// open (see the module's documentation). Derefs to gossipsub.
pub(crate) struct GossipOnFirst {
    inner: Gossipsub,
    /// Open direct connections per peer.
    direct: HashMap<PeerId, HashSet<ConnectionId>>,
    /// Spares given [`Handler::Spare`] and not yet closed.
    spares: HashSet<ConnectionId>,
    /// Spares to close, with their peer.
    to_close: VecDeque<(PeerId, ConnectionId)>,
    /// Spares closed since start.
    closed: u64,
}

impl GossipOnFirst {
    pub(crate) fn new(inner: Gossipsub) -> Self {
        Self {
            inner,
            direct: HashMap::new(),
            spares: HashSet::new(),
            to_close: VecDeque::new(),
            closed: 0,
        }
    }

    /// Spare connections closed since start.
    pub(crate) fn spares_closed(&self) -> u64 {
        self.closed
    }

    /// Whether `id` was given no gossipsub handler (a spare not yet closed).
    #[cfg(test)]
    pub(crate) fn is_spare(&self, id: ConnectionId) -> bool {
        self.spares.contains(&id)
    }

    /// The handler for a connection that has just been established: gossipsub's unless it
    /// is a spare, which is then also queued to be closed.
    fn choose(&mut self, id: ConnectionId, peer: PeerId, relayed: bool, gossip: Inner) -> Handler {
        if is_spare(relayed, self.direct.get(&peer).map_or(0, HashSet::len)) {
            self.spares.insert(id);
            self.to_close.push_back((peer, id));
            Handler::Spare
        } else {
            Handler::Gossip(gossip)
        }
    }
}

/// Whether a connection that has just been established is a spare, given whether it is
/// relayed and how many direct connections to the same peer are open already.
fn is_spare(relayed: bool, open_direct: usize) -> bool {
    !relayed && open_direct > 0
}

fn relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

impl Deref for GossipOnFirst {
    type Target = Gossipsub;
    fn deref(&self) -> &Gossipsub {
        &self.inner
    }
}

impl DerefMut for GossipOnFirst {
    fn deref_mut(&mut self) -> &mut Gossipsub {
        &mut self.inner
    }
}

impl NetworkBehaviour for GossipOnFirst {
    type ConnectionHandler = Handler;
    type ToSwarm = <Gossipsub as NetworkBehaviour>::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner.handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Gossipsub is told of every connection, so that its count of the peer's
        // connections (and what it does when they close) stays as without this wrapper.
        let gossip = self.inner.handle_established_inbound_connection(id, peer, local, remote)?;
        Ok(self.choose(id, peer, relayed(local), gossip))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let gossip =
            self.inner.handle_established_outbound_connection(id, peer, addr, role, port_use)?;
        Ok(self.choose(id, peer, relayed(addr), gossip))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match &event {
            FromSwarm::ConnectionEstablished(e) if !e.endpoint.is_relayed() => {
                self.direct.entry(e.peer_id).or_default().insert(e.connection_id);
            }
            FromSwarm::ConnectionClosed(e) => {
                if self.spares.remove(&e.connection_id) {
                    self.closed += 1;
                }
                if let Some(open) = self.direct.get_mut(&e.peer_id) {
                    open.remove(&e.connection_id);
                    if open.is_empty() {
                        self.direct.remove(&e.peer_id);
                    }
                }
            }
            // A connection another behaviour refused after this one gave it a handler.
            FromSwarm::DialFailure(e) => {
                self.spares.remove(&e.connection_id);
            }
            FromSwarm::ListenFailure(e) => {
                self.spares.remove(&e.connection_id);
            }
            _ => {}
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        while let Some((peer_id, id)) = self.to_close.pop_front() {
            if self.spares.contains(&id) {
                tracing::debug!(peer = %peer_id, "closing a spare connection as it opens");
                return Poll::Ready(ToSwarm::CloseConnection {
                    peer_id,
                    connection: CloseConnection::One(id),
                });
            }
        }
        self.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use libp2p::{
        gossipsub, noise,
        swarm::{dial_opts::DialOpts, dial_opts::PeerCondition, SwarmEvent},
        tcp, yamux, Swarm, SwarmBuilder,
    };

    use super::*;

    #[test]
    fn only_a_direct_connection_beside_an_open_direct_one_is_a_spare() {
        assert!(!is_spare(false, 0), "the first direct connection carries gossip");
        assert!(is_spare(false, 1));
        assert!(is_spare(false, 2));
        assert!(!is_spare(true, 0), "a relayed connection is never a spare");
        assert!(!is_spare(true, 1));
        let relay = "12D3KooWGzGcvQCPo5yqSAQ4jVJ3dZQWVkkvYhTVDMJ6C3Fj1ufK";
        let circuit: Multiaddr =
            format!("/ip4/192.0.2.1/tcp/1/p2p/{relay}/p2p-circuit").parse().unwrap();
        assert!(relayed(&circuit));
        assert!(!relayed(&"/ip4/192.0.2.1/tcp/1".parse().unwrap()));
    }

    fn swarm() -> Swarm<GossipOnFirst> {
        SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| {
                let mut registry = prometheus_client::registry::Registry::default();
                GossipOnFirst::new(super::super::behaviour::gossipsub(&mut registry).unwrap())
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build()
    }

    /// A dials B, then dials B again while connected (as an AutoNAT dial-back does): the
    /// second connection gets no gossipsub handler and closes (on B too if its end of the
    /// handshake finished first), the first stays, and a post published afterwards arrives.
    #[tokio::test]
    async fn a_second_connection_carries_no_gossip_and_closes_and_gossip_goes_on() {
        let (mut a, mut b) = (swarm(), swarm());
        let topic = gossipsub::IdentTopic::new("spare-test");
        a.behaviour_mut().subscribe(&topic).unwrap();
        b.behaviour_mut().subscribe(&topic).unwrap();
        b.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = b.select_next_some().await {
                break address;
            }
        };
        let b_id = *b.local_peer_id();
        a.dial(addr.clone()).unwrap();
        let mut opened = [Vec::new(), Vec::new()];
        let mut closed = [Vec::new(), Vec::new()];
        let mut second_dialled = false;
        let mut published = false;
        let mut b_spare_failed = false;
        // Mesh upkeep makes no swarm event: look at A's mesh now and then.
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let run = async {
            loop {
                let event = tokio::select! {
                    e = a.select_next_some() => Some((0, e)),
                    e = b.select_next_some() => Some((1, e)),
                    _ = tick.tick() => None,
                };
                match event {
                    Some((side, SwarmEvent::ConnectionEstablished { connection_id, .. })) => {
                        let spare = if side == 0 {
                            a.behaviour().is_spare(connection_id)
                        } else {
                            b.behaviour().is_spare(connection_id)
                        };
                        assert_eq!(spare, !opened[side].is_empty(), "side {side}");
                        opened[side].push(connection_id);
                    }
                    Some((side, SwarmEvent::ConnectionClosed { connection_id, .. })) => {
                        closed[side].push(connection_id);
                    }
                    // A closed the spare before B's end of the handshake was done.
                    Some((1, SwarmEvent::IncomingConnectionError { .. })) => b_spare_failed = true,
                    Some((1, SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }))) => {
                        assert_eq!(message.data, b"after the spare closed");
                        break;
                    }
                    _ => {}
                }
                if !second_dialled && opened.iter().all(|o| o.len() == 1) {
                    let again = DialOpts::peer_id(b_id)
                        .addresses(vec![addr.clone()])
                        .condition(PeerCondition::Always)
                        .build();
                    a.dial(again).unwrap();
                    second_dialled = true;
                }
                let spares_gone = closed[0].len() == 1 && (closed[1].len() == 1 || b_spare_failed);
                if spares_gone && !published && a.behaviour().mesh_peers(&topic.hash()).count() > 0
                {
                    a.behaviour_mut()
                        .publish(topic.clone(), b"after the spare closed".to_vec())
                        .unwrap();
                    published = true;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("the spare closes and the post arrives");
        assert_eq!(opened[0].len(), 2);
        assert_eq!(closed[0], vec![opened[0][1]], "A closed only the spare");
        assert_eq!(a.behaviour().spares_closed(), 1);
        // B saw the spare open and closed it, or A closed it before B's handshake ended.
        let b_spares = usize::from(!b_spare_failed);
        assert_eq!(opened[1].len(), 1 + b_spares);
        assert_eq!(closed[1], opened[1][1..].to_vec(), "B closed only the spare");
        assert_eq!(b.behaviour().spares_closed(), b_spares as u64);
        assert!(a.is_connected(&b_id));
    }
}
