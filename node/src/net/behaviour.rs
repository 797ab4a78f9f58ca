//! The libp2p behaviour of a kith node and how it is configured.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use libp2p::{
    autonat, connection_limits, dcutr, gossipsub, identify,
    identity::Keypair,
    kad, mdns, relay, request_response,
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour},
    PeerId, StreamProtocol,
};
use sha2::{Digest, Sha256};

use super::{
    admission::{ConnLimits, Gate, PeerSet},
    frame::FrameCodec,
    tuning::IdleTuning,
    NetError,
};

/// Largest gossip message accepted or sent (bytes). Records are far smaller; this bounds
/// what a peer can make us buffer.
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;

/// Most connections per peer (one in use, one relayed or being upgraded by hole punching,
/// one spare: an AutoNAT dial-back, closed as it opens, `spare.rs`). Limits in and out are the
/// connection gate's (`admission.rs`).
const MAX_CONNECTIONS_PER_PEER: u32 = 3;
const MAX_PENDING: u32 = 64;

/// Most topics a peer (or this node) may subscribe to.
const MAX_TOPICS: usize = 2048;

/// The direct message protocol.
pub const DM_PROTOCOL: &str = "/kith/dm/1";
/// Largest direct message request (a sealed message plus follow proofs), bytes.
pub const MAX_DM_REQUEST_BYTES: usize = 32 * 1024;
/// Largest direct message reply (a receipt or refusal), bytes.
pub const MAX_DM_RESPONSE_BYTES: usize = 1024;
/// The history sync protocol.
pub const SYNC_PROTOCOL: &str = "/kith/sync/1";
/// The blob protocol: manifests and chunks of pictures and files.
pub const BLOB_PROTOCOL: &str = kith_protocol::blob::BLOB_PROTOCOL;
/// How long a request waits for its response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent request streams per connection.
const MAX_STREAMS: usize = 64;

/// The Kademlia DHT protocol (kith's own DHT, not the IPFS one).
pub const KAD_PROTOCOL: &str = "/kith/kad/1.0.0";

/// Protocol version announced by identify.
const IDENTIFY_PROTOCOL: &str = "/kith/1.0.0";

pub(crate) type Gossipsub = gossipsub::Behaviour<
    gossipsub::IdentityTransform,
    gossipsub::MaxCountSubscriptionFilter<gossipsub::AllowAllSubscriptionFilter>,
>;

/// Everything the swarm runs.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) gate: Gate,
    pub(crate) blocked: libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::BlockedPeers>,
    pub(crate) limits: connection_limits::Behaviour,
    /// Gossipsub on one direct connection per peer; spares closed as they open.
    pub(crate) gossipsub: super::spare::GossipOnFirst,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: super::ping::Ping,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) dm: request_response::Behaviour<FrameCodec>,
    /// `/kith/dm/2`: forward-secret direct messages (same limits).
    pub(crate) dm2: request_response::Behaviour<FrameCodec>,
    /// `/kith/group/1`: private groups' control messages, messages and history.
    pub(crate) group: request_response::Behaviour<FrameCodec>,
    pub(crate) sync: request_response::Behaviour<FrameCodec>,
    /// `/kith/mailbox/1`: envelopes held for people who are offline.
    pub(crate) mailbox: request_response::Behaviour<FrameCodec>,
    pub(crate) blob: request_response::Behaviour<FrameCodec>,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) autonat: super::autonat::Autonat,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) relay: Toggle<relay::Behaviour>,
    pub(crate) dcutr: dcutr::Behaviour,
}

/// Whether this node relays for others (circuit relay v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayMode {
    /// Never.
    #[default]
    Off,
    /// Only for mutual connections ("friends relay for friends").
    Friends,
    /// For anyone, within the limits.
    Open,
}

impl RelayMode {
    /// `off`, `friends` or `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayMode::Off => "off",
            RelayMode::Friends => "friends",
            RelayMode::Open => "open",
        }
    }
}

/// Who may hold a relay reservation on this node, updated by the node as its mutual
/// connections change.
pub type RelayFriends = PeerSet;

/// Relay limits: a friend's relayed connection carries messages and sync, not bulk data,
/// and should soon be replaced by a hole-punched direct one.
const RELAY_MAX_RESERVATIONS: usize = 64;
const RELAY_MAX_CIRCUITS: usize = 32;
const RELAY_CIRCUIT_DURATION: Duration = Duration::from_secs(10 * 60);
const RELAY_CIRCUIT_BYTES: u64 = 4 * 1024 * 1024;

fn relay_server(
    peer_id: PeerId,
    mode: RelayMode,
    friends: &RelayFriends,
) -> Option<relay::Behaviour> {
    if mode == RelayMode::Off {
        return None;
    }
    let mut config = relay::Config {
        max_reservations: RELAY_MAX_RESERVATIONS,
        max_circuits: RELAY_MAX_CIRCUITS,
        max_circuit_duration: RELAY_CIRCUIT_DURATION,
        max_circuit_bytes: RELAY_CIRCUIT_BYTES,
        ..Default::default()
    };
    if mode == RelayMode::Friends {
        let friends = friends.clone();
        config.reservation_rate_limiters.push(Box::new(
            move |peer: PeerId, _: &libp2p::Multiaddr, _: std::time::Instant| {
                friends.contains(&peer)
            },
        ));
    }
    let mut relay = relay::Behaviour::new(peer_id, config);
    // Advertise the hop protocol whether or not AutoNAT has confirmed an address: whoever
    // turned relaying on knows this node is reachable (and loopback tests need it).
    relay.set_status(Some(relay::Status::Enable));
    Some(relay)
}

/// AutoNAT: probe soon after start, settle after two agreeing answers, probe again at
/// this node's share of the refresh period (spread per node, [`IdleTuning`]), and accept
/// private addresses (home networks, test namespaces, loopback) as well as global ones;
/// each candidate address is reported to it once (`autonat.rs`).
fn autonat(peer_id: PeerId, idle: &IdleTuning) -> super::autonat::Autonat {
    let config = autonat::v1::Config {
        boot_delay: Duration::from_secs(2),
        retry_interval: idle.autonat_retry,
        refresh_interval: spread(idle.autonat_refresh, idle.autonat_jitter, getrandom::u64().ok()),
        throttle_server_period: Duration::from_secs(10),
        confidence_max: 2,
        // Longer than the swarm's 10 s connection timeout: a dial-back into a NAT that
        // drops packets fails by timing out, and that answer must arrive in time.
        timeout: Duration::from_secs(25),
        only_global_ips: false,
        ..Default::default()
    };
    super::autonat::Autonat::new(autonat::v1::Behaviour::new(peer_id, config))
}

/// Identify: asked on each connection as it opens, then again at this node's share of
/// the identify period (spread per node, [`IdleTuning`]). Changes reach peers before
/// that: a new or lost listen address (a relay reservation's circuit address, a new
/// interface) is pushed to every connected peer at once, as are external addresses
/// AutoNAT confirms (`event_loop.rs`) and protocols (libp2p's handler pushes those).
fn identify(keypair: &Keypair, idle: &IdleTuning) -> identify::Behaviour {
    let interval = spread(idle.identify_interval, idle.identify_jitter, getrandom::u64().ok());
    identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), keypair.public())
            .with_agent_version(format!("kith/{}", env!("CARGO_PKG_VERSION")))
            .with_interval(interval)
            .with_push_listen_addr_updates(true),
    )
}

/// `base` × (1 + `jitter` × a uniform draw in [−1, 1] taken from `draw`); `base` if there
/// is no draw.
fn spread(base: Duration, jitter: f64, draw: Option<u64>) -> Duration {
    let Some(draw) = draw else { return base };
    base.mul_f64(super::tuning::spread_factor(jitter.clamp(0.0, 0.9), draw))
}

fn request_response(
    protocol: &'static str,
    max_request: usize,
    max_response: usize,
) -> request_response::Behaviour<FrameCodec> {
    request_response::Behaviour::with_codec(
        FrameCodec::new(max_request, max_response),
        [(StreamProtocol::new(protocol), request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(REQUEST_TIMEOUT)
            .with_max_concurrent_streams(MAX_STREAMS),
    )
}

/// The gossipsub message id: derived from the topic and the record bytes, so the same
/// record relayed by anyone on one topic is recognised as one message, while the same
/// record on another topic is another message (each topic's mesh needs its own copy).
pub(crate) fn message_id(topic: &str, data: &[u8]) -> gossipsub::MessageId {
    let mut h = Sha256::new();
    h.update((topic.len() as u64).to_be_bytes());
    h.update(topic.as_bytes());
    h.update(data);
    let digest = h.finalize();
    gossipsub::MessageId::new(&digest[..20])
}

/// Score parameters registered for every topic the node subscribes to.
pub(crate) fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 0.5,
        time_in_mesh_weight: super::tuning::gossip_tuning().mesh_time_weight,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 3600.0,
        // No credit for any valid message brought first: a peer flooding strangers'
        // valid records earned it all. Kith gives that credit itself, only for records
        // of authors the node knows (`credit.rs`, the application-specific score).
        first_message_deliveries_weight: 0.0,
        // Quiet topics are normal (a person posts a few times a day): no penalty for a
        // mesh peer that delivers little.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // An invalid record costs a lot: two put a peer below the graylist threshold.
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.3,
        ..Default::default()
    }
}

fn peer_score_params() -> gossipsub::PeerScoreParams {
    // Loopback peers are on this machine: never count them as IP colocation. Real
    // addresses keep the default penalty.
    let whitelist: HashSet<IpAddr> =
        [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)].into_iter().collect();
    gossipsub::PeerScoreParams {
        ip_colocation_factor_whitelist: whitelist,
        // The application-specific score is the first-delivery credit of `credit.rs`,
        // counted in points (at most `CREDIT_CAP`).
        app_specific_weight: 1.0,
        ..Default::default()
    }
}

/// Gossipsub's counters, registered in `registry`, for the topics this node may subscribe
/// (only if asked: [`super::tuning::set_process_gossip_metrics`]).
fn gossip_metrics() -> gossipsub::MetricsConfig {
    gossipsub::MetricsConfig { max_topics: MAX_TOPICS, ..Default::default() }
}

pub(super) fn gossipsub(
    registry: &mut prometheus_client::registry::Registry,
) -> Result<Gossipsub, NetError> {
    let mut builder = gossipsub::ConfigBuilder::default();
    builder
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| message_id(m.topic.as_str(), &m.data))
        .max_transmit_size(MAX_GOSSIP_BYTES);
    super::tuning::gossip_tuning().apply(&mut builder);
    let config = builder.build().map_err(|e| NetError::Setup(format!("gossipsub config: {e}")))?;
    let filter = gossipsub::MaxCountSubscriptionFilter {
        filter: gossipsub::AllowAllSubscriptionFilter {},
        max_subscribed_topics: MAX_TOPICS,
        max_subscriptions_per_request: MAX_TOPICS,
    };
    let mut behaviour = gossipsub::Behaviour::new_with_subscription_filter(
        gossipsub::MessageAuthenticity::Anonymous,
        config,
        filter,
    )
    .map_err(|e| NetError::Setup(format!("gossipsub: {e}")))?;
    if super::tuning::gossip_metrics() {
        behaviour = behaviour.with_metrics(registry, gossip_metrics());
    }
    behaviour
        .with_peer_score(peer_score_params(), gossipsub::PeerScoreThresholds::default())
        .map_err(|e| NetError::Setup(format!("peer scoring: {e}")))?;
    Ok(behaviour)
}

impl Behaviour {
    pub(crate) fn new(
        keypair: &Keypair,
        mdns_on: bool,
        relay_client: relay::client::Behaviour,
        relay_mode: RelayMode,
        friends: &RelayFriends,
        (limits, followed): (ConnLimits, PeerSet),
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, NetError> {
        let peer_id = keypair.public().to_peer_id();
        let idle = super::tuning::idle_tuning();
        let mdns = if mdns_on {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                    .map_err(|e| NetError::Setup(format!("mdns: {e}")))?,
            )
        } else {
            None
        };
        let conn_limits = connection_limits::ConnectionLimits::default()
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
            .with_max_pending_incoming(Some(MAX_PENDING))
            .with_max_pending_outgoing(Some(MAX_PENDING));
        let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
        kad_config.set_periodic_bootstrap_interval(
            idle.kad_bootstrap.map(|d| spread(d, idle.kad_bootstrap_jitter, getrandom::u64().ok())),
        );
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // A node answers DHT queries until AutoNAT finds it unreachable (then it becomes a
        // client; see docs/networking.md).
        kad.set_mode(Some(kad::Mode::Server));
        Ok(Self {
            kad,
            autonat: autonat(peer_id, &idle),
            relay_client,
            relay: Toggle::from(relay_server(peer_id, relay_mode, friends)),
            dcutr: dcutr::Behaviour::new(peer_id),
            blocked: libp2p::allow_block_list::Behaviour::default(),
            limits: connection_limits::Behaviour::new(conn_limits),
            gate: Gate::new(limits, followed),
            gossipsub: super::spare::GossipOnFirst::new(gossipsub(registry)?),
            identify: identify(keypair, &idle),
            ping: super::ping::Ping::new(&idle),
            mdns: Toggle::from(mdns),
            dm: request_response(DM_PROTOCOL, MAX_DM_REQUEST_BYTES, MAX_DM_RESPONSE_BYTES),
            dm2: request_response(
                kith_protocol::olm::DM2_PROTOCOL,
                MAX_DM_REQUEST_BYTES,
                MAX_DM_RESPONSE_BYTES,
            ),
            mailbox: request_response(
                kith_protocol::mailbox::MAILBOX_PROTOCOL,
                kith_protocol::mailbox::MAX_MAILBOX_REQUEST_BYTES,
                kith_protocol::mailbox::MAX_MAILBOX_REPLY_BYTES,
            ),
            group: request_response(
                kith_protocol::group::wire::GROUP_PROTOCOL,
                kith_protocol::group::wire::MAX_GROUP_REQUEST_BYTES,
                kith_protocol::group::wire::MAX_GROUP_REPLY_BYTES,
            ),
            sync: request_response(
                SYNC_PROTOCOL,
                kith_protocol::sync::MAX_SYNC_REQUEST_BYTES,
                kith_protocol::sync::MAX_SYNC_RESPONSE_BYTES,
            ),
            blob: request_response(
                BLOB_PROTOCOL,
                kith_protocol::limits::MAX_BLOB_REQUEST_BYTES,
                kith_protocol::limits::MAX_BLOB_REPLY_BYTES,
            ),
        })
    }
}

/// Gossipsub's own counters since start, read from `registry` (its metrics, encoded),
/// summed over topics, by name: `copies` (messages received, every copy), `first` (the
/// first copies; the rest are duplicates gossipsub dropped), `copy_bytes` (protobuf bytes
/// of every copy received), `sent` and `sent_bytes` (messages this node sent: published
/// and forwarded), `iwant` (messages asked for after IHAVE gossip), `idontwant`
/// (IDONTWANT messages received).
pub(crate) fn gossip_counters(
    registry: &prometheus_client::registry::Registry,
) -> std::collections::BTreeMap<&'static str, u64> {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return Default::default();
    }
    let sum = |name: &str| -> u64 {
        let (labelled, plain) = (format!("{name}_total{{"), format!("{name}_total "));
        text.lines()
            .filter(|l| l.starts_with(&labelled) || l.starts_with(&plain))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    [
        ("copies", "topic_msg_recv_counts_unfiltered"),
        ("first", "topic_msg_recv_counts"),
        ("copy_bytes", "topic_msg_recv_bytes_unfiltered"),
        ("sent", "topic_msg_sent_counts"),
        ("sent_bytes", "topic_msg_sent_bytes"),
        ("iwant", "topic_iwant_msgs"),
        ("idontwant", "idontwant_msgs"),
    ]
    .into_iter()
    .map(|(key, metric)| (key, sum(metric)))
    .collect()
}

#[cfg(test)]
mod tests {
    /// Section 9.1 of `docs/protocol.md`: the gossip message id of the section 10 record
    /// on its tag topic, as documented.
    #[test]
    fn message_id_matches_the_documented_vector() {
        let doc = include_str!("../../../docs/protocol.md");
        let value = |label: &str| -> String {
            let mut lines = doc.lines().skip_while(|l| *l != label);
            assert_eq!(lines.next(), Some(label), "{label} not in docs/protocol.md");
            lines.take_while(|l| l.starts_with("    ")).map(str::trim).collect()
        };
        let signed = hex::decode(value("signed bytes (146 bytes)")).unwrap();
        let id = super::message_id("kith/1/tag/kith", &signed);
        assert_eq!(hex::encode(&id.0), value("message id on kith/1/tag/kith"));
    }

    /// Time in a mesh earns no score (session 23): with it the newest mesh peer was
    /// always the one pruned and meshes froze in parts (docs/protocol.md, section 9.1).
    /// Invalid records still cost, and no peer earns anything for merely being there.
    #[test]
    fn time_in_a_mesh_earns_no_score() {
        let p = super::topic_score_params();
        assert_eq!(p.time_in_mesh_weight, 0.0);
        assert_eq!(p.first_message_deliveries_weight, 0.0);
        assert!(p.invalid_message_deliveries_weight < 0.0);
        assert!(p.validate().is_ok());
    }

    /// The bootstrap period of a node: within `base` × (1 ± jitter), the ends reached by
    /// the extreme draws, `base` itself with no jitter or no draw.
    #[test]
    fn the_bootstrap_period_is_spread_within_its_bounds() {
        use std::time::Duration;
        let base = Duration::from_secs(600);
        assert_eq!(super::spread(base, 0.0, Some(u64::MAX)), base);
        assert_eq!(super::spread(base, 0.25, None), base);
        assert_eq!(super::spread(base, 0.25, Some(0)), Duration::from_secs(450));
        let top = super::spread(base, 0.25, Some(u64::MAX));
        assert!(top > Duration::from_secs(749) && top <= Duration::from_secs(750), "{top:?}");
        for draw in [1u64 << 20, 1 << 40, 1 << 63, 12_345_678_901_234_567] {
            let d = super::spread(base, 0.25, Some(draw));
            assert!(d >= Duration::from_secs(450) && d <= Duration::from_secs(750), "{d:?}");
        }
    }

    /// A listen address added after a peer identified this node reaches the peer at once
    /// (identify's push), not at the next periodic round (half an hour away or more).
    #[tokio::test]
    async fn a_new_listen_address_is_pushed_to_connected_peers() {
        use futures::StreamExt;
        use libp2p::{identify, noise, swarm::SwarmEvent, tcp, yamux, Multiaddr, SwarmBuilder};
        use std::time::Duration;
        let swarm = || {
            SwarmBuilder::with_new_identity()
                .with_tokio()
                .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
                .unwrap()
                .with_behaviour(|key| super::identify(key, &super::IdleTuning::KITH))
                .unwrap()
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
                .build()
        };
        let (mut a, mut b) = (swarm(), swarm());
        let any: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
        a.listen_on(any.clone()).unwrap();
        let first = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = a.select_next_some().await {
                break address;
            }
        };
        b.dial(first).unwrap();
        let mut second = None;
        let wait = async {
            loop {
                tokio::select! {
                    event = a.select_next_some() => {
                        if let SwarmEvent::NewListenAddr { address, .. } = event {
                            second = Some(address);
                        }
                    }
                    event = b.select_next_some() => {
                        let SwarmEvent::Behaviour(identify::Event::Received { info, .. }) = event
                        else { continue };
                        match &second {
                            Some(addr) if info.listen_addrs.contains(addr) => return,
                            Some(_) => {}
                            // The first identify arrived: now a new listen address.
                            None => {
                                a.listen_on(any.clone()).unwrap();
                            }
                        }
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("the new listen address pushed to the peer");
    }
}
