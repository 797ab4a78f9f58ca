//! Which connections a node takes: separate limits for inbound and outbound connections,
//! caps per address and per subnet for inbound ones, and room always made for the people
//! the node's person follows (mutual connections among them): when the inbound limit is
//! reached, a followed peer still gets in and a stranger's connection is closed for it.
//!
//! The decision is [`admit_inbound`], plain code over counts; [`Gate`] is the libp2p
//! behaviour that keeps the counts and applies it. Loopback simulations put every node on
//! 127.0.0.1: the per-address caps are configuration ([`ConnLimits`]) that tests and
//! `scripts/sim` lift.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    convert::Infallible,
    net::IpAddr,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::Instant,
};

use libp2p::{
    core::{transport::PortUse, Endpoint},
    multiaddr::Protocol,
    swarm::{
        dummy, CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm,
        ListenFailure, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

/// Connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most inbound connections from peers the node's person does not follow.
    pub max_inbound: usize,
    /// Most outbound connections (to anyone but followed peers).
    pub max_outbound: usize,
    /// Most inbound connections from one address (an IPv6 address counts by its /64);
    /// `None`: no cap. Followed peers are not counted against it.
    pub per_ip: Option<usize>,
    /// Most inbound connections from one subnet (IPv4 /24, IPv6 /48); `None`: no cap.
    pub per_subnet: Option<usize>,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self { max_inbound: 160, max_outbound: 96, per_ip: Some(16), per_subnet: Some(48) }
    }
}

impl ConnLimits {
    /// The defaults with the per-address caps lifted: for simulations that put every node
    /// on one address.
    pub fn lifted() -> Self {
        Self { per_ip: None, per_subnet: None, ..Self::default() }
    }
}

/// A set of peers shared between the node and the network task.
#[derive(Debug, Clone, Default)]
pub struct PeerSet(Arc<RwLock<HashSet<PeerId>>>);

impl PeerSet {
    /// Replaces the set.
    pub fn set(&self, peers: impl IntoIterator<Item = PeerId>) {
        let peers: HashSet<PeerId> = peers.into_iter().collect();
        match self.0.write() {
            Ok(mut guard) => *guard = peers,
            Err(poisoned) => *poisoned.into_inner() = peers,
        }
    }

    /// Whether `peer` is in it.
    pub fn contains(&self, peer: &PeerId) -> bool {
        match self.0.read() {
            Ok(guard) => guard.contains(peer),
            Err(poisoned) => poisoned.into_inner().contains(peer),
        }
    }
}

/// What the gate counts for one inbound connection's decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundCounts {
    /// Inbound connections from strangers now.
    pub strangers: usize,
    /// Inbound connections from strangers at the same address.
    pub same_ip: usize,
    /// Inbound connections from strangers in the same subnet.
    pub same_subnet: usize,
}

/// The decision on an inbound connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Take it.
    Yes,
    /// Take it, and close a stranger's inbound connection to make room.
    Evicting,
    /// Refuse it.
    No,
}

/// Whether to take an inbound connection: a followed peer always (evicting a stranger
/// when the inbound limit is reached), a stranger within the limits.
pub fn admit_inbound(followed: bool, counts: InboundCounts, limits: &ConnLimits) -> Admit {
    let full = counts.strangers >= limits.max_inbound;
    if followed {
        return if full { Admit::Evicting } else { Admit::Yes };
    }
    let over = |cap: Option<usize>, n: usize| cap.is_some_and(|cap| n >= cap);
    if full || over(limits.per_ip, counts.same_ip) || over(limits.per_subnet, counts.same_subnet) {
        return Admit::No;
    }
    Admit::Yes
}

/// The address a connection counts under (IPv6 by its /64) and its subnet (IPv4 /24,
/// IPv6 /48). `None` for addresses without an IP (relayed connections are counted by
/// the first IP in their address: the relay's).
fn address_of(addr: &Multiaddr) -> Option<(IpAddr, IpAddr)> {
    let ip = addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })?;
    Some(match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            (ip, IpAddr::V4([a, b, c, 0].into()))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let host = IpAddr::V6([s[0], s[1], s[2], s[3], 0, 0, 0, 0].into());
            (host, IpAddr::V6([s[0], s[1], s[2], 0, 0, 0, 0, 0].into()))
        }
    })
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    peer: PeerId,
    inbound: bool,
    /// Counted as a stranger's (not followed when it came).
    stranger: bool,
    address: Option<(IpAddr, IpAddr)>,
    since: Instant,
}

/// The connection gate: a libp2p behaviour with no protocol of its own.
pub(crate) struct Gate {
    limits: ConnLimits,
    followed: PeerSet,
    conns: HashMap<ConnectionId, Conn>,
    to_close: VecDeque<(PeerId, ConnectionId)>,
    /// Connections refused, for `status`.
    pub(crate) refused: u64,
    /// Strangers' connections closed to make room for followed peers.
    pub(crate) evicted: u64,
}

impl Gate {
    pub(crate) fn new(limits: ConnLimits, followed: PeerSet) -> Self {
        Self {
            limits,
            followed,
            conns: HashMap::new(),
            to_close: VecDeque::new(),
            refused: 0,
            evicted: 0,
        }
    }

    /// Whether this node's person follows `peer`.
    pub(crate) fn is_followed(&self, peer: &PeerId) -> bool {
        self.followed.contains(peer)
    }

    /// New limits, for connections from now on.
    pub(crate) fn set_limits(&mut self, limits: ConnLimits) {
        self.limits = limits;
    }

    fn counts(&self, address: Option<(IpAddr, IpAddr)>) -> InboundCounts {
        let mut counts = InboundCounts::default();
        for c in self.conns.values().filter(|c| c.inbound && c.stranger) {
            counts.strangers += 1;
            if let (Some((ip, net)), Some((their_ip, their_net))) = (address, c.address) {
                counts.same_ip += usize::from(ip == their_ip);
                counts.same_subnet += usize::from(net == their_net);
            }
        }
        counts
    }

    /// The stranger's inbound connection to close for a followed peer: from the address
    /// with the most of them, the newest first.
    fn victim(&self) -> Option<(PeerId, ConnectionId)> {
        let mut per_ip: HashMap<Option<IpAddr>, usize> = HashMap::new();
        for c in self.conns.values().filter(|c| c.inbound && c.stranger) {
            *per_ip.entry(c.address.map(|a| a.0)).or_default() += 1;
        }
        self.conns
            .iter()
            .filter(|(_, c)| c.inbound && c.stranger)
            .max_by_key(|(_, c)| (per_ip.get(&c.address.map(|a| a.0)).copied(), c.since))
            .map(|(id, c)| (c.peer, *id))
    }

    fn denied(&mut self, what: &str) -> ConnectionDenied {
        self.refused += 1;
        ConnectionDenied::new(std::io::Error::other(what.to_owned()))
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let address = address_of(remote);
        let followed = self.followed.contains(&peer);
        match admit_inbound(followed, self.counts(address), &self.limits) {
            Admit::No => return Err(self.denied("connection limit")),
            Admit::Evicting => {
                if let Some(victim) = self.victim() {
                    self.conns.remove(&victim.1);
                    self.to_close.push_back(victim);
                    self.evicted += 1;
                }
            }
            Admit::Yes => {}
        }
        let since = Instant::now();
        self.conns.insert(id, Conn { peer, inbound: true, stranger: !followed, address, since });
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let followed = self.followed.contains(&peer);
        let outbound = self.conns.values().filter(|c| !c.inbound && c.stranger).count();
        if !followed && outbound >= self.limits.max_outbound {
            return Err(self.denied("outbound connection limit"));
        }
        let conn = Conn {
            peer,
            inbound: false,
            stranger: !followed,
            address: address_of(addr),
            since: Instant::now(),
        };
        self.conns.insert(id, conn);
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.conns.remove(&connection_id);
            }
            FromSwarm::DialFailure(failure) => {
                self.conns.remove(&failure.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.to_close.pop_front() {
            Some((peer_id, id)) => Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::One(id),
            }),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_within_limits_followed_peers_always() {
        let limits = ConnLimits::default();
        let none = InboundCounts::default();
        assert_eq!(admit_inbound(false, none, &limits), Admit::Yes);
        let full = InboundCounts { strangers: limits.max_inbound, ..none };
        assert_eq!(admit_inbound(false, full, &limits), Admit::No);
        assert_eq!(admit_inbound(true, full, &limits), Admit::Evicting);
        let same_ip = InboundCounts { strangers: 20, same_ip: 16, same_subnet: 16 };
        assert_eq!(admit_inbound(false, same_ip, &limits), Admit::No);
        assert_eq!(admit_inbound(true, same_ip, &limits), Admit::Yes);
        let subnet = InboundCounts { strangers: 60, same_ip: 1, same_subnet: 48 };
        assert_eq!(admit_inbound(false, subnet, &limits), Admit::No);
        assert_eq!(admit_inbound(false, same_ip, &ConnLimits::lifted()), Admit::Yes);
    }

    #[test]
    fn addresses_and_subnets() {
        let v4: Multiaddr = "/ip4/203.0.113.7/tcp/1".parse().unwrap();
        assert_eq!(
            address_of(&v4),
            Some(("203.0.113.7".parse().unwrap(), "203.0.113.0".parse().unwrap()))
        );
        let v6: Multiaddr = "/ip6/2001:db8:1:2:3:4:5:6/udp/1/quic-v1".parse().unwrap();
        assert_eq!(
            address_of(&v6),
            Some(("2001:db8:1:2::".parse().unwrap(), "2001:db8:1::".parse().unwrap()))
        );
        assert_eq!(address_of(&"/dns4/example.com/tcp/1".parse().unwrap()), None);
    }
}
