//! Closing connections nobody uses (issue 21 item 3).
//!
//! libp2p's idle timeout never closes a connection between two gossipsub nodes: each
//! side keeps a gossipsub stream open on it for as long as it lives, and an open stream
//! counts as use. Every peer a node ever reached (DHT walks, AutoNAT dial-backs, lookups)
//! stayed connected: at 100 nodes in `scripts/sim` every node held a connection to every
//! other, and each connection costs pings, gossipsub's per-peer heartbeat work and
//! wake-ups. So the event loop can close them itself ([`closable`]), when
//! [`crate::net::IdleTuning::unused_connection_grace`] is set. It is not, in what nodes
//! run: measured at 100 nodes, closing them cost more than keeping them (each closed
//! connection came back through the DHT, with a new handshake, identify and sync).

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use libp2p::PeerId;

use super::EventLoop;

/// What decides whether a peer's connections are still wanted.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Use {
    /// The peer subscribes to a gossip topic this node subscribes to (gossip, mesh
    /// repair and flood publishing need the connection).
    pub(super) shares_topic: bool,
    /// This node's person follows the peer.
    pub(super) followed: bool,
    /// This node dialled an address it was given for the peer (bootstrap, remembered,
    /// asked for).
    pub(super) dialled_on_purpose: bool,
    /// The peer relays for this node or this node for it.
    pub(super) relay: bool,
    /// One of the peer's connections is relayed (hole punching replaces it, and it ends
    /// with its circuit).
    pub(super) relayed: bool,
    /// How long since a request or answer went to or came from the peer, or since its
    /// newest connection opened if later.
    pub(super) unused_for: Duration,
}

/// Whether a peer's direct connections are closed: none of the reasons to keep them holds
/// and nothing was asked or answered on them for `grace`.
pub(super) fn closable(peer: &Use, grace: Duration) -> bool {
    !(peer.shares_topic || peer.followed || peer.dialled_on_purpose || peer.relay || peer.relayed)
        && peer.unused_for >= grace
}

impl EventLoop {
    /// Notes that a request or answer went to or came from `peer`.
    /// Only connected peers are noted: the entry goes when the last connection closes.
    pub(super) fn note_used(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer) {
            self.last_used.insert(peer, Instant::now());
        }
    }

    /// Closes the connections of peers [`closable`] says are not wanted.
    pub(super) fn close_unused_connections(&mut self) {
        let Some(grace) = crate::net::idle_tuning().unused_connection_grace else { return };
        let behaviour = self.swarm.behaviour();
        let gossip = &behaviour.gossipsub;
        let ours: HashSet<_> = gossip.topics().collect();
        let sharing: HashSet<PeerId> = gossip
            .all_peers()
            .filter(|(_, topics)| topics.iter().any(|t| ours.contains(t)))
            .map(|(peer, _)| *peer)
            .collect();
        let relays: HashSet<PeerId> = self.reservations.values().map(|r| r.relay).collect();
        let unused: Vec<PeerId> = self
            .connections
            .iter()
            .filter(|(_, open)| !open.is_empty())
            .filter(|(peer, open)| {
                let newest = open.values().map(|c| c.since).max();
                let last = self.last_used.get(peer).copied().max(newest);
                let facts = Use {
                    shares_topic: sharing.contains(peer),
                    followed: behaviour.gate.is_followed(peer),
                    dialled_on_purpose: self.dialled_on_purpose.contains(peer),
                    relay: relays.contains(peer) || self.relaying_for.contains(peer),
                    relayed: open.values().any(|c| c.relayed),
                    unused_for: last.map(|at| at.elapsed()).unwrap_or_default(),
                };
                closable(&facts, grace)
            })
            .map(|(peer, _)| *peer)
            .collect();
        for peer in unused {
            tracing::debug!(%peer, "closing an unused connection");
            *self.events_seen.entry("connection closed as unused").or_default() += 1;
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stranger_unused_for_the_grace_is_closed() {
        let grace = Duration::from_secs(30);
        let idle = Use { unused_for: grace, ..Use::default() };
        assert!(closable(&idle, grace));
        assert!(!closable(&Use { unused_for: grace - Duration::from_millis(1), ..idle }, grace));
        for kept in [
            Use { shares_topic: true, ..idle },
            Use { followed: true, ..idle },
            Use { dialled_on_purpose: true, ..idle },
            Use { relay: true, ..idle },
            Use { relayed: true, ..idle },
        ] {
            assert!(!closable(&kept, grace), "{kept:?}");
        }
    }
}
