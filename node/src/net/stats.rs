//! What the network task reports about itself: connected peers, reachability, and the
//! gossip and swarm counters shown by `kith status` and read by the simulations.

use libp2p::{Multiaddr, PeerId};

use super::RelayMode;

/// A connected peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer.
    pub peer: PeerId,
    /// The remote address of one connection.
    pub addr: Multiaddr,
    /// Its gossipsub score, if scored.
    pub score: Option<f64>,
    /// Whether every open connection to it goes through a relay (none is direct).
    pub relayed: bool,
}

/// Whether this node can be reached from outside, as AutoNAT found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reachability {
    /// Not known yet (no probe answered).
    #[default]
    Unknown,
    /// Peers could dial back: publicly reachable.
    Public,
    /// Peers could not dial back: behind NAT or a firewall.
    Private,
}

impl Reachability {
    /// `public`, `private` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }
}

/// Gossip statistics.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Topics this node subscribes to.
    pub topics: Vec<String>,
    /// Connected peers.
    pub peers: usize,
    /// Distinct peers in any of our meshes.
    pub mesh_peers: usize,
    /// Connected peers whose gossip score is below the graylist threshold (ignored).
    pub graylisted: usize,
    /// Connected peers whose gossip score is negative.
    pub penalised: usize,
    /// Gossip messages dropped since start because their peer was over its rate limit.
    pub gossip_rate_limited: u64,
    /// Gossip messages dropped since start because the node's event queue was full.
    pub gossip_overflow: u64,
    /// Reachability found by AutoNAT.
    pub reachability: Reachability,
    /// The address AutoNAT confirmed as public, if any.
    pub public_addr: Option<Multiaddr>,
    /// Relayed addresses this node holds a reservation for (`.../p2p-circuit`).
    pub relay_addrs: Vec<Multiaddr>,
    /// Whether (and for whom) this node relays.
    pub relay_mode: RelayMode,
    /// Peers holding a reservation on this node (as a relay).
    pub relaying_for: usize,
    /// Reservations this node refused as a relay (not a friend, or over the limits).
    pub relay_refused: u64,
    /// Hole punches (DCUtR) that upgraded a relayed connection to a direct one.
    pub holepunch_ok: u64,
    /// Hole punches that failed.
    pub holepunch_failed: u64,
    /// Connections refused by the connection limits since start.
    pub connections_refused: u64,
    /// Strangers' connections closed to make room for followed peers since start.
    pub connections_evicted: u64,
    /// Gossip messages received since start, every copy (gossipsub's own count, before
    /// it drops the copies it has seen; 0 unless the process keeps gossipsub's metrics,
    /// [`super::set_process_gossip_metrics`]).
    pub gossip_copies: u64,
    /// Of those, the copies of messages already received (dropped as duplicates).
    pub gossip_duplicates: u64,
    /// The swarm's events since start, by kind (pings, identify rounds, DHT requests,
    /// AutoNAT probes, syncs, connections opened and closed, ...).
    pub events: std::collections::BTreeMap<&'static str, u64>,
    /// Gossipsub's counters since start, by name (copies, first, copy_bytes, sent,
    /// sent_bytes, iwant, idontwant; see `behaviour::gossip_counters`), if kept
    /// ([`super::set_process_gossip_metrics`]).
    pub gossip: std::collections::BTreeMap<&'static str, u64>,
}
