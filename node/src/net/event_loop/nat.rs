//! NAT traversal in the swarm task: reachability (AutoNAT), relay reservations while
//! unreachable, the relay server's bookkeeping, hole punching (DCUtR), the signed address
//! record in the DHT.

use std::time::{Duration, Instant};

use libp2p::{
    autonat, core::transport::ListenerId, dcutr, kad, multiaddr::Protocol, relay, Multiaddr, PeerId,
};

use super::EventLoop;
use crate::net::Reachability;

/// Relay reservations an unreachable node keeps.
const WANTED_RESERVATIONS: usize = 2;
/// A relay that refused or dropped a reservation is asked again after this long.
const RELAY_RETRY: Duration = Duration::from_secs(10);
/// The signed address record in the DHT is published again after this long.
const ADDRESS_RECORD_REFRESH: Duration = Duration::from_secs(10 * 60);

/// The DHT key of a peer's signed address record.
pub(super) fn address_key(peer: &PeerId) -> kad::RecordKey {
    let mut key = b"kith/addr/".to_vec();
    key.extend_from_slice(&peer.to_bytes());
    kad::RecordKey::new(&key)
}

/// Addresses from a signed address record, if it is `peer`'s own and its signature holds.
pub(super) fn addresses_from_record(peer: &PeerId, value: &[u8]) -> Option<Vec<Multiaddr>> {
    let envelope = libp2p::core::SignedEnvelope::from_protobuf_encoding(value).ok()?;
    let record = libp2p::core::PeerRecord::from_signed_envelope(envelope).ok()?;
    (record.peer_id() == *peer).then(|| record.addresses().iter().take(16).cloned().collect())
}

/// A relay this node listens through.
pub(super) struct Reservation {
    pub(super) relay: PeerId,
    /// The `/p2p-circuit` address, once the relay accepted.
    pub(super) addr: Option<Multiaddr>,
}

impl EventLoop {
    pub(super) fn reachability(&self) -> Reachability {
        match self.swarm.behaviour().autonat.nat_status() {
            autonat::v1::NatStatus::Public(_) => Reachability::Public,
            autonat::v1::NatStatus::Private => Reachability::Private,
            autonat::v1::NatStatus::Unknown => Reachability::Unknown,
        }
    }

    pub(super) fn handle_autonat(&mut self, event: autonat::v1::Event) {
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

    pub(super) fn handle_relay_client(&mut self, event: relay::client::Event) {
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

    pub(super) fn handle_relay_server(&mut self, event: relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                self.relaying_for.insert(src_peer_id);
            }
            relay::Event::ReservationReqDenied { src_peer_id, .. } => {
                self.relay_refused_count += 1;
                tracing::debug!(peer = %src_peer_id, "relay reservation refused");
            }
            // libp2p-relay reports `ReservationClosed` when any connection of the peer
            // closes, including ones that never held the reservation; while the peer is
            // still connected its reservation may live on (and a lost one is renewed by
            // the client), so only a peer that is gone stops counting.
            relay::Event::ReservationClosed { src_peer_id }
                if !self.swarm.is_connected(&src_peer_id) =>
            {
                self.relaying_for.remove(&src_peer_id);
            }
            relay::Event::ReservationTimedOut { src_peer_id } => {
                self.relaying_for.remove(&src_peer_id);
            }
            _ => {}
        }
    }

    pub(super) fn handle_dcutr(&mut self, event: dcutr::Event) {
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

    /// Periodic upkeep: unused connections, relay reservations while unreachable, the signed
    /// address record. (Spare connections are closed as they open: `net/spare.rs`.)
    pub(super) fn maintain(&mut self) {
        self.close_unused_connections();
        self.decay_credit();
        if self.reachability() == Reachability::Private {
            self.maintain_relays();
        }
        let stale = self.address_record_at.is_none_or(|at| at.elapsed() > ADDRESS_RECORD_REFRESH);
        if self.address_record_dirty || stale {
            self.publish_address_record();
        }
    }

    /// While unreachable, keeps up to [`WANTED_RESERVATIONS`] relay reservations.
    pub(super) fn maintain_relays(&mut self) {
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
        // In an order nobody can choose by grinding peer ids: random per process.
        let order = std::collections::hash_map::RandomState::new();
        candidates.sort_by_cached_key(|(p, _)| std::hash::BuildHasher::hash_one(&order, p));
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
    pub(super) fn publish_address_record(&mut self) {
        let mut addrs: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        if addrs.is_empty() {
            addrs = self.swarm.listeners().cloned().collect();
        }
        addrs.retain(|a| !a.iter().any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())));
        addrs.truncate(16);
        if addrs.is_empty() || self.swarm.connected_peers().next().is_none() {
            return;
        }
        // The same addresses as the record already out there: nothing to say (AutoNAT's
        // probes and status flips mark the record dirty without changing it), until the
        // refresh is due.
        let stale = self.address_record_at.is_none_or(|at| at.elapsed() > ADDRESS_RECORD_REFRESH);
        if addrs == self.address_record_sent && !stale {
            self.address_record_dirty = false;
            return;
        }
        self.address_record_sent.clone_from(&addrs);
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
        assert_eq!(crate::net::peer_of(&addr), Some(target));
    }
}
