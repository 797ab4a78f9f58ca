//! AutoNAT (v1) as kith runs it: libp2p's behaviour, told about each candidate address
//! once (issue 21 item 3).
//!
//! Identify reports the address a peer saw this node at as a new candidate on every
//! connection (and every identify round), the same address again and again. AutoNAT v1
//! takes each report of a node not known to be public as a reason to doubt: it lowers its
//! confidence and schedules another probe within `retry_interval`. A node behind a NAT
//! that keeps opening connections (DHT walks) so never becomes sure and probes every
//! 20 s for ever, each probe a dial-back attempt by another peer. Here a candidate
//! already passed on is not passed again (the last [`REMEMBERED`] are kept): AutoNAT
//! probes it at its refresh anyway, as it probes every candidate it holds.

use std::{
    collections::VecDeque,
    task::{Context, Poll},
};

use libp2p::{
    autonat,
    core::{transport::PortUse, Endpoint},
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

/// Candidate addresses remembered as already passed on.
const REMEMBERED: usize = 32;

/// AutoNAT v1, given each candidate address once.
pub(crate) struct Autonat {
    inner: autonat::v1::Behaviour,
    passed: VecDeque<Multiaddr>,
}

impl Autonat {
    pub(crate) fn new(inner: autonat::v1::Behaviour) -> Self {
        Self { inner, passed: VecDeque::new() }
    }

    /// What AutoNAT found so far.
    pub(crate) fn nat_status(&self) -> autonat::v1::NatStatus {
        self.inner.nat_status()
    }

    /// The address AutoNAT confirmed as public, if any.
    pub(crate) fn public_address(&self) -> Option<&Multiaddr> {
        self.inner.public_address()
    }

    /// Whether `candidate` is news (and, if so, remembers it).
    fn first_report(&mut self, candidate: &Multiaddr) -> bool {
        if self.passed.contains(candidate) {
            return false;
        }
        if self.passed.len() == REMEMBERED {
            self.passed.pop_front();
        }
        self.passed.push_back(candidate.clone());
        true
    }
}

impl NetworkBehaviour for Autonat {
    type ConnectionHandler = <autonat::v1::Behaviour as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = autonat::v1::Event;

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
        self.inner.handle_established_inbound_connection(id, peer, local, remote)
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
        self.inner.handle_established_outbound_connection(id, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::NewExternalAddrCandidate(candidate) = &event {
            if !self.first_report(candidate.addr) {
                return;
            }
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
        self.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_is_passed_on_once_among_the_last_remembered() {
        let peer = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id();
        let mut autonat = Autonat::new(autonat::v1::Behaviour::new(peer, Default::default()));
        let addr =
            |port: usize| -> Multiaddr { format!("/ip4/192.0.2.1/tcp/{port}").parse().unwrap() };
        assert!(autonat.first_report(&addr(1)));
        assert!(!autonat.first_report(&addr(1)), "the same candidate again");
        assert!(autonat.first_report(&addr(2)));
        for port in 3..=REMEMBERED + 1 {
            assert!(autonat.first_report(&addr(port)));
        }
        // addr(1) was the oldest of REMEMBERED + 1: forgotten, news again.
        assert!(autonat.first_report(&addr(1)));
        assert!(!autonat.first_report(&addr(REMEMBERED + 1)));
    }
}
