//! Gossipsub's parameters (issue 21): what each delivered post costs in bytes and CPU
//! comes down to these. [`GossipTuning::KITH`] is what a node runs; a simulation may run
//! every node of its process with another set (the libp2p defaults it replaced, or a set
//! under trial) to measure them side by side in one session. docs/benchmarks.md ("Gossip
//! bandwidth and CPU") has the measurements behind each value.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        RwLock,
    },
    time::Duration,
};

use libp2p::gossipsub;

/// The parameters of gossipsub that kith sets itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GossipTuning {
    /// Mesh degree: peers each message is pushed to (D).
    pub mesh_n: usize,
    /// Fewest mesh peers before the heartbeat grafts more (D_lo).
    pub mesh_n_low: usize,
    /// Most mesh peers before the heartbeat prunes some (D_hi).
    pub mesh_n_high: usize,
    /// Outbound (dialled by us) peers the mesh keeps, at most `mesh_n / 2`.
    pub mesh_outbound_min: usize,
    /// Peers outside the mesh sent IHAVE gossip each heartbeat, at least (D_lazy).
    pub gossip_lazy: usize,
    /// Share of the peers outside the mesh sent IHAVE gossip, if more than `gossip_lazy`.
    pub gossip_factor: f64,
    /// Heartbeat: mesh upkeep, scores, IHAVE gossip.
    pub heartbeat: Duration,
    /// Heartbeats a message stays in the cache answering IWANT.
    pub history_length: usize,
    /// Heartbeats a message is advertised in IHAVE gossip.
    pub history_gossip: usize,
    /// Whether a node's own message goes to every peer on the topic, not only its mesh.
    pub flood_publish: bool,
    /// Messages larger than this (protobuf bytes) are announced with IDONTWANT to the mesh
    /// on arrival, so that mesh peers do not send a copy too.
    pub idontwant_threshold: usize,
    /// How long a message to forward may wait in a peer's send queue before gossipsub
    /// drops it (a slow peer).
    pub forward_queue: Duration,
    /// Score a peer earns per second in a topic's mesh (gossipsub's P1, times the topic
    /// weight 0.5), counted up to an hour. A mesh that reaches D_hi is pruned to D at the
    /// next heartbeat, lowest score first (ties at random), and a GRAFT into a mesh at
    /// D_hi is refused: with a weight above zero the newest mesh peer is always the one
    /// pruned.
    pub mesh_time_weight: f64,
    /// Each peer's lot: a random score in [0, this) that each node draws for each peer it
    /// meets, adds to its first-delivery credit and draws again every few seconds (each
    /// round of the network task's upkeep, 3 s; `credit.rs`); 0: no lots. Opportunistic
    /// grafting (below) only grafts peers that score above the mesh's median, so without
    /// lots it does nothing while every score is equal (a hashtag, where nobody earns
    /// credit).
    pub mesh_lot: f64,
    /// Heartbeats between two rounds of gossipsub's opportunistic grafting: a node whose
    /// mesh of a topic has a median score under 20 grafts up to `mixing_peers` peers of
    /// the topic that score above that median, and the next heartbeat prunes the mesh
    /// back to D, lowest first. Each node runs its rounds every `mixing_ticks` × (1 ± up
    /// to [`MIXING_JITTER`]) heartbeats, drawn at its start, so that nodes started
    /// together do not all graft and prune in the same heartbeat.
    pub mixing_ticks: u64,
    /// Peers grafted in each round of opportunistic grafting, at most.
    pub mixing_peers: usize,
    /// Mending a split mesh (`mend.rs`): a record of a topic this node has taken for a
    /// while that comes by sync at least this long after it was written (so gossip
    /// missed it, and no late copy is still on its way) boosts one subscriber outside the
    /// topic's mesh for [`GossipTuning::mend_hold`], so that the next round of
    /// opportunistic grafting grafts it. `None`: no mending.
    pub mend_grace: Option<Duration>,
    /// Probing the meshes of this node's own records (`core/sync/probe.rs`): this long
    /// after a record goes out, a digest of its topic goes to a few subscribers outside
    /// the topic's mesh, and one in a part of the mesh that gossip did not reach pulls
    /// the record and passes it on there. `None`: no probes. Longer than `mend_grace`,
    /// so that what such a pull brings counts as missed.
    pub probe_after: Option<Duration>,
}

/// Spread of each node's period of opportunistic grafting ([`GossipTuning::mixing_ticks`]).
pub(crate) const MIXING_JITTER: f64 = 0.25;

/// `draw` as a uniform number in [0, 1).
pub(crate) fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 / (1u64 << 53) as f64
}

/// 1 + `jitter` × `draw` as a uniform number in [−1, 1): what a spread period is
/// multiplied by.
pub(crate) fn spread_factor(jitter: f64, draw: u64) -> f64 {
    1.0 + jitter * (2.0 * unit(draw) - 1.0)
}

impl GossipTuning {
    /// What kith nodes run (since session 16): [`GossipTuning::NO_IHAVE`]. Measured side
    /// by side with the previous default [`GossipTuning::LEAN_FLOOD`] on a quiet machine
    /// (docs/benchmarks.md "No-IHAVE as the default"): 4.8x the record per delivery over
    /// idle against 8.8x at 50 nodes, 4.6x against 9.0x at 100 (6.0x against 10.0x in a
    /// window that held a wave of pings), 100 % delivery, none by sync; p99 7.9 against
    /// 9.0 ms and 14.1 against 18.4 ms (26.0 against 20.5 in the ping wave).
    ///
    /// Since session 22 with a 2 s heartbeat rather than 700 ms ([`GossipTuning::NO_IHAVE`]
    /// as measured before). Without IHAVE gossip the heartbeat only keeps the meshes at
    /// their degree, shifts the message cache and cleans up; none of that is on a post's
    /// path (a post goes to the mesh at once). But every heartbeat scores every connected
    /// peer (peer scoring, `behaviour.rs`) and walks each topic's mesh and fanout: at 100
    /// nodes, each connected to the 99 others, that was a quarter to a third of an idle
    /// node's CPU (session 18's profile; what 2 s saved). A mesh that lost a peer is
    /// topped up within 2 s rather than 0.7 s (libp2p's default is 1 s); the message
    /// cache keeps 5 heartbeats, 10 s. Measured side by side
    /// with 700 ms, two 100-node sims at once (docs/benchmarks.md, session 22): idle CPU
    /// 21–25 % lower, bytes per delivery and p99 unchanged; with pings every 2 minutes
    /// ([`IdleTuning::KITH`]) 0.077 against 0.129 of a core for 100 idle nodes.
    ///
    /// Since session 23 without a score for time in the mesh (`mesh_time_weight` 0; every
    /// earlier set 0.01). With it, the newest peer of a mesh at D_hi always had the lowest
    /// score and was the one pruned, so a node at D never kept a new link and the meshes
    /// froze as the set-up first drew them, from each node's partial view of the other
    /// subscribers: small parts (three nodes at D_lo, four at D) that no heartbeat
    /// grafts out of and, without IHAVE gossip, no post reaches until a sync round. Ties
    /// are pruned at random, so each graft into a full mesh now redraws it and the
    /// set-up's own grafting mixes the meshes. Scores still rank peers by what matters to
    /// kith: the first-delivery credit (`credit.rs`) and invalid records. 100-node sims
    /// (docs/benchmarks.md, session 23): 0–1 split topics before the posts against 2–8
    /// with the weight, and no post missed.
    ///
    /// Session 24 tried lots (`mesh_lot`, 0 here): a random score per peer, drawn again
    /// every 3 s, so that opportunistic grafting keeps mixing the meshes and a part where
    /// every node sits at D_lo or more (four subscribers each grafted to the other three)
    /// comes apart (`tests/tests/mesh_mixing.rs` shows that it does). In 100-node sims
    /// the churn did more harm than the parts it mended: 5 of 20 runs with lots stood
    /// with a split mesh before the posts (subscribers pruned by all their mesh peers
    /// and held off for a minute by the backoff), against none of 10 without
    /// (docs/benchmarks.md, session 24). Kept at 0; `sim --gossip-set mesh_lot=0.1` tries
    /// them.
    ///
    /// Since session 25 with mending (`mend_grace` 30 s, `mend.rs`): such a part is
    /// joined to the rest once a record that gossip missed in it comes by sync, by a
    /// boost that makes opportunistic grafting graft one peer from outside; nothing
    /// changes while gossip brings everything.
    ///
    /// Since session 32 with probes (`probe_after` 5 s, `core/sync/probe.rs`) and a grace
    /// of 4 s rather than 30: a part of a mesh that an author's post did not reach learns
    /// of it from the author's probe 5 s later, pulls it, passes it on to the rest of
    /// the part and mends the mesh, rather than waiting minutes for a periodic round
    /// (one 100-node sim of eight in session 31 lost two deliveries that way).
    pub const KITH: Self = Self {
        heartbeat: Duration::from_secs(2),
        mesh_time_weight: 0.0,
        mend_grace: Some(Duration::from_secs(4)),
        probe_after: Some(Duration::from_secs(5)),
        ..Self::NO_IHAVE
    };

    /// The default of sessions 12–15: [`GossipTuning::LEAN`]'s small mesh and sparse IHAVE
    /// gossip, with flood publishing kept, so that an author's new record goes straight to
    /// every connected subscriber of its topic and the small mesh only carries it on.
    /// Measured side by side with [`GossipTuning::BEFORE_ISSUE_21`] on a quiet machine
    /// (docs/benchmarks.md "The default gossip set"): at 100 nodes 100 % delivery,
    /// p99 17–49 ms against 220–656 ms, 1.1–1.3 ms of CPU per delivery against 1.9–2.6,
    /// about 9x the record on the wire against 23–29x. Kept to measure against.
    pub const LEAN_FLOOD: Self = Self { flood_publish: true, ..Self::LEAN };

    /// [`GossipTuning::LEAN`] without IHAVE gossip, and forwards that wait up to 10 s in a
    /// slow peer's queue rather than 1 s: the default since session 16 (issue 21 item 2;
    /// docs/benchmarks.md "No IHAVE gossip", "Why no-IHAVE is not the default" and
    /// "No-IHAVE as the default"). Session 15 found that it lost posts when kith closed
    /// spare connections among them: libp2p-gossipsub 0.50 shares one send queue per peer
    /// among all of that peer's connections and does not drain a connection that closes;
    /// IHAVE gossip and flood publishing repaired that, this set left it to history sync.
    /// Spare connections now never carry gossip and close as they open (`net/spare.rs`),
    /// so closing one cannot lose a copy. IHAVE cannot be kept for some topics only:
    /// gossipsub 0.50 sets `gossip_lazy`, `gossip_factor` and `history_gossip` for all
    /// topics (per topic only the mesh degrees).
    /// - No IHAVE gossip (`gossip_lazy` 0, `gossip_factor` 0): in kith's quiet topics an
    ///   IHAVE carries one or two ids and costs about what a copy does (a frame, a packet
    ///   and its ACK, the topic name): 0.6x the record per delivery at 50 nodes. What it
    ///   repairs (a copy a mesh peer dropped or never sent) history sync repairs too, at
    ///   once on a gap in a followed author's log and in the periodic rounds. IWANTs from
    ///   other nodes are still answered from the 5-heartbeat cache.
    /// - Forwards wait up to 10 s (libp2p: 1 s): without IHAVE a dropped forward has no
    ///   gossip repair; on a loaded machine a late copy is better than one by sync.
    pub const NO_IHAVE: Self = Self {
        gossip_lazy: 0,
        gossip_factor: 0.0,
        forward_queue: Duration::from_secs(10),
        ..Self::LEAN
    };

    /// The set measured to cost least per delivered post (issue 21 item 2; docs/
    /// benchmarks.md "Gossip bandwidth: fewer copies" has the figures and reasons), not
    /// the default: at 50 nodes it costs 4.2–4.4 times the record over idle against
    /// 18–20, with 100 % delivery and a lower p99; at 100 nodes on a loaded 2-core
    /// machine two runs of three had a much worse p99 and 200–300 records came by sync
    /// instead of gossip.
    /// - mesh D 3, D_lo 2, D_hi 4, at least 1 outbound (libp2p: 6/5/12, 2): a node
    ///   receives a message from about every mesh peer but the first, so the copies per
    ///   delivery follow the mesh degree; kith's topics are small (a person's followers,
    ///   a hashtag's subscribers, all grafted up to D_hi), so D_hi bounds the degree
    ///   more than D. D 2 left meshes split (posts lost); D_hi 3 made the heartbeat prune
    ///   and graft all the time.
    /// - no flood publishing: an author sends a new record to its mesh (3 peers), not to
    ///   every follower it is connected to (each of whom then got it again from the mesh).
    /// - IHAVE gossip to 1 peer outside the mesh per topic and heartbeat (`gossip_lazy` 1,
    ///   `gossip_factor` 0), each id advertised in one heartbeat only (`history_gossip`
    ///   1): a post is rare on a topic, so each IHAVE carries one or two ids and costs
    ///   about what a copy does.
    /// - heartbeat 700 ms, a 5-heartbeat message cache, IDONTWANT above 1,000 B (never
    ///   for a usual record: measured, its frame costs what it saves) as before.
    pub const LEAN: Self = Self {
        mesh_n: 3,
        mesh_n_low: 2,
        mesh_n_high: 4,
        mesh_outbound_min: 1,
        gossip_lazy: 1,
        gossip_factor: 0.0,
        history_gossip: 1,
        flood_publish: false,
        ..Self::BEFORE_ISSUE_21
    };

    /// What kith ran before issue 21: libp2p 0.57's defaults with flood publishing and a
    /// 700 ms heartbeat. Kept to measure against.
    pub const BEFORE_ISSUE_21: Self = Self {
        mesh_n: 6,
        mesh_n_low: 5,
        mesh_n_high: 12,
        mesh_outbound_min: 2,
        gossip_lazy: 6,
        gossip_factor: 0.25,
        heartbeat: Duration::from_millis(700),
        history_length: 5,
        history_gossip: 3,
        flood_publish: true,
        idontwant_threshold: 1000,
        forward_queue: Duration::from_secs(1),
        mesh_time_weight: 0.01,
        mesh_lot: 0.0,
        mixing_ticks: 60,
        mixing_peers: 2,
        mend_grace: None,
        probe_after: None,
    };

    /// These parameters on a gossipsub configuration.
    pub(crate) fn apply(&self, b: &mut gossipsub::ConfigBuilder) {
        b.mesh_n(self.mesh_n)
            .mesh_n_low(self.mesh_n_low)
            .mesh_n_high(self.mesh_n_high)
            .mesh_outbound_min(self.mesh_outbound_min)
            .gossip_lazy(self.gossip_lazy)
            .gossip_factor(self.gossip_factor)
            .heartbeat_interval(self.heartbeat)
            .history_length(self.history_length)
            .history_gossip(self.history_gossip)
            .flood_publish(self.flood_publish)
            .idontwant_message_size_threshold(self.idontwant_threshold)
            .forward_queue_duration(self.forward_queue)
            .opportunistic_graft_ticks(self.mixing_ticks_spread(getrandom::u64().ok()))
            .opportunistic_graft_peers(self.mixing_peers);
    }

    /// How long a mend's boost lasts, and how long a topic mended waits before it is
    /// mended again: two of the longest periods of opportunistic grafting, so that the
    /// boosted peer meets at least one round after any backoff from an earlier prune
    /// ran out (gossipsub's prune backoff, a minute, is shorter than one period).
    pub fn mend_hold(&self) -> Duration {
        let ticks = 2.0 * self.mixing_ticks.max(1) as f64 * (1.0 + MIXING_JITTER);
        self.heartbeat.mul_f64(ticks)
    }

    /// `mixing_ticks` × (1 + [`MIXING_JITTER`] × a uniform draw in [−1, 1] taken from
    /// `draw`), at least 1; `mixing_ticks` if there is no draw.
    fn mixing_ticks_spread(&self, draw: Option<u64>) -> u64 {
        let Some(draw) = draw else { return self.mixing_ticks.max(1) };
        let ticks = self.mixing_ticks as f64 * spread_factor(MIXING_JITTER, draw);
        (ticks.round() as u64).max(1)
    }
}

impl Default for GossipTuning {
    fn default() -> Self {
        Self::KITH
    }
}

/// The set nodes started from now on in this process use, if not [`GossipTuning::KITH`].
static PROCESS_TUNING: RwLock<Option<GossipTuning>> = RwLock::new(None);

/// Makes every node started after this call in this process use `tuning` (a simulation
/// measuring another set; a daemon never calls it).
pub fn set_process_gossip_tuning(tuning: GossipTuning) {
    if let Ok(mut t) = PROCESS_TUNING.write() {
        *t = Some(tuning);
    }
}

/// The set a node starting now uses.
pub(crate) fn gossip_tuning() -> GossipTuning {
    PROCESS_TUNING.read().ok().and_then(|t| *t).unwrap_or_default()
}

/// Whether nodes started from now on in this process keep gossipsub's metrics.
static PROCESS_GOSSIP_METRICS: AtomicBool = AtomicBool::new(false);

/// Makes every node started after this call in this process keep gossipsub's metrics
/// (counters per topic, read by [`super::Stats::gossip`]), or not. Nodes do not by
/// default: nothing in a daemon reads them, and they cost CPU in every heartbeat (each
/// connected peer's send queue sampled into two histograms) and at every message (a
/// counter looked up by topic name several times). A simulation that reports gossipsub's
/// copies and duplicates turns them on.
pub fn set_process_gossip_metrics(on: bool) {
    PROCESS_GOSSIP_METRICS.store(on, Ordering::Relaxed);
}

/// Whether a node starting now keeps gossipsub's metrics.
pub(crate) fn gossip_metrics() -> bool {
    PROCESS_GOSSIP_METRICS.load(Ordering::Relaxed)
}

/// The timers that run while nothing happens (issue 21 item 3): what an idle node costs
/// its machine and its peers comes down to these. [`IdleTuning::KITH`] is what a node
/// runs; a simulation may run every node of its process with another set
/// ([`IdleTuning::BEFORE_ISSUE_21`], or one under trial) to measure them side by side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleTuning {
    /// Ping on each connection this node dialled (it keeps NAT mappings warm; kith reads
    /// nothing else from it).
    pub ping_interval: Duration,
    /// Ping on each connection this node accepted (`None`: as `ping_interval`). The
    /// dialler's pings refresh the mappings at both ends (`ping.rs`).
    pub listener_ping_interval: Option<Duration>,
    /// Spread of the ping intervals: each connection pings every `ping_interval` ×
    /// (1 ± up to this), so that connections opened together do not ping together
    /// (`ping.rs`); 0: all at `ping_interval`.
    pub ping_jitter: f64,
    /// Identify asked again on each connection (each end asks; the first time at once).
    pub identify_interval: Duration,
    /// Spread of the identify period: each node asks every `identify_interval` × (1 ± up
    /// to this), drawn once at its start, so that connections opened together (a node's
    /// start, a simulation's set-up) are not identified again together; 0: all at
    /// `identify_interval`.
    pub identify_jitter: f64,
    /// Kademlia's periodic bootstrap (a walk towards random keys), if any.
    pub kad_bootstrap: Option<Duration>,
    /// Spread of the bootstrap's period: each node walks every `kad_bootstrap` × (1 ± up
    /// to this), drawn once at its start, so that nodes started together do not walk
    /// together; 0: all at `kad_bootstrap`.
    pub kad_bootstrap_jitter: f64,
    /// AutoNAT: next probe while not yet sure.
    pub autonat_retry: Duration,
    /// AutoNAT: next probe once sure.
    pub autonat_refresh: Duration,
    /// Spread of AutoNAT's refresh: each node probes every `autonat_refresh` × (1 ± up
    /// to this), drawn once at its start, so that nodes started together do not probe
    /// together; 0: all at `autonat_refresh`.
    pub autonat_jitter: f64,
    /// Connections with nothing in use close after this long.
    pub idle_connection_timeout: Duration,
    /// Periodic history sync rounds: the time between two rounds while rounds find
    /// something new (the shortest).
    pub sync_interval: Duration,
    /// The longest time between two periodic sync rounds: after each round that finds
    /// nothing new the time to the next doubles, up to this
    /// ([`crate::core::sync::Pace`]); `sync_interval` for rounds at a fixed pace.
    pub sync_interval_max: Duration,
    /// Each time between two sync rounds is drawn from its nominal value × (1 ± this),
    /// so that nodes started together do not sync together.
    pub sync_jitter: f64,
    /// Whether every new connection to a peer starts a sync with it, not only the first
    /// (an AutoNAT dial-back or a second dial is another connection to a peer already
    /// synced with).
    pub sync_every_connection: bool,
    /// Whether a sync with a peer starts with one digest of what this node holds, and
    /// asks only about the authors and tags the peer would send something for
    /// ([`crate::core::sync::Pull::Changed`]), rather than asking about every one.
    pub sync_digest: bool,
    /// Direct connections to a peer that shares no gossip topic with this node, is not
    /// followed, was not dialled on purpose and holds no relay reservation are closed
    /// once nothing was asked or answered on them for this long (`None`: kept, as
    /// libp2p keeps every connection on which gossipsub has a stream open). Off in
    /// [`IdleTuning::KITH`]: with 30 s, 100 nodes in `scripts/sim` closed and opened
    /// connections again and again (DHT walks, each new connection's identify and sync),
    /// which cost more than the connections did (docs/benchmarks.md).
    pub unused_connection_grace: Option<Duration>,
    /// Whether a stream this node opens sends its first bytes with the protocol it names
    /// (multistream-select's `V1Lazy`, same bytes on the wire as `V1`) rather than
    /// waiting a round trip for the other end to confirm the protocol first. Only the
    /// last protocol a stream offers is sent so (kith's own protocols offer one);
    /// an end that refuses it closes the stream, which the opener reads as a failed
    /// request instead of an unsupported protocol.
    pub lazy_streams: bool,
    /// Whether the yamux frames one pass of a connection's task writes go out as one
    /// encrypted frame and one TCP segment rather than one each (`net/coalesce.rs`).
    pub coalesce_flushes: bool,
}

impl IdleTuning {
    /// What kith nodes run: pings every 2 minutes rather than 15 s (kith reads no
    /// round-trip time from them and libp2p's ping closes nothing; they keep NAT mappings
    /// of TCP connections warm, and 2 minutes, 132 s at most with the spread, is under the
    /// shortest idle timeout common NATs and load balancers give an established TCP
    /// connection, 4 minutes (RFC 5382 asks for at least 2 hours); QUIC keeps its own
    /// connections alive every 5 s; 60 s until session 22, when halving the pings cut 100
    /// idle nodes' CPU by about a seventh and their idle traffic by 40 %,
    /// docs/benchmarks.md), from the dialling side only (the accepting side every 10
    /// minutes), spread ±10 % per connection; a sync only with the first connection to a
    /// peer; syncs that start with a digest; and periodic sync rounds every 30 s while
    /// they find something new, backing off to one every 4 minutes when they do not
    /// (±25 %: a record that gossip missed is fetched within 5 minutes at worst); and
    /// Kademlia's periodic bootstrap walk every 30 minutes rather than 5, spread ±25 %
    /// per node. A walk refreshes every bucket of the routing table (about 190 DHT
    /// requests per node and walk at 100 nodes; more in a bigger network), which
    /// lookups mostly keep fresh anyway: the Kademlia paper refreshes a bucket after an
    /// hour without a lookup, IPFS's DHT every 10 minutes. libp2p restarts the period
    /// at every walk, so nodes that walked together at their set-up walked together
    /// again every 5 minutes; the spread takes that wave apart.
    /// Identify is asked on each connection when it opens and then every 30 minutes
    /// rather than 5, spread ±25 % per node: what a node learns from a peer's identify
    /// (listen addresses, protocols) is pushed by the peer when it changes (listen
    /// addresses, and external ones AutoNAT confirms, `behaviour.rs`; protocols by
    /// libp2p's handler), so the periodic round is a fallback, as in go-libp2p, which
    /// has none. AutoNAT probes again every 15 minutes once sure rather than 5 (libp2p's
    /// default), spread ±25 % per node: a refresh only finds a change of reachability
    /// behind the same addresses (a new or lost address makes AutoNAT probe at once),
    /// and each probe is a dial-back, a new connection with its handshake and identify.
    /// Both had all nodes of a set-up do their round together every 5 minutes.
    /// docs/benchmarks.md ("Idle CPU and idle traffic" and after) has the measurements.
    pub const KITH: Self = Self {
        ping_interval: Duration::from_secs(120),
        listener_ping_interval: Some(Duration::from_secs(10 * 60)),
        ping_jitter: 0.1,
        kad_bootstrap: Some(Duration::from_secs(30 * 60)),
        kad_bootstrap_jitter: 0.25,
        identify_interval: Duration::from_secs(30 * 60),
        identify_jitter: 0.25,
        autonat_refresh: Duration::from_secs(15 * 60),
        autonat_jitter: 0.25,
        sync_interval_max: Duration::from_secs(4 * 60),
        sync_jitter: 0.25,
        sync_every_connection: false,
        sync_digest: true,
        lazy_streams: true,
        coalesce_flushes: true,
        ..Self::BEFORE_ISSUE_21
    };

    /// What kith ran before issue 21 item 3.
    pub const BEFORE_ISSUE_21: Self = Self {
        ping_interval: Duration::from_secs(15),
        listener_ping_interval: None,
        ping_jitter: 0.0,
        identify_interval: Duration::from_secs(5 * 60),
        identify_jitter: 0.0,
        kad_bootstrap: Some(Duration::from_secs(5 * 60)),
        kad_bootstrap_jitter: 0.0,
        autonat_retry: Duration::from_secs(20),
        autonat_refresh: Duration::from_secs(5 * 60),
        autonat_jitter: 0.0,
        idle_connection_timeout: Duration::from_secs(120),
        sync_interval: Duration::from_secs(30),
        sync_interval_max: Duration::from_secs(30),
        sync_jitter: 0.0,
        sync_every_connection: true,
        sync_digest: false,
        unused_connection_grace: None,
        lazy_streams: false,
        coalesce_flushes: false,
    };
}

impl Default for IdleTuning {
    fn default() -> Self {
        Self::KITH
    }
}

/// The idle set nodes started from now on in this process use, if not [`IdleTuning::KITH`].
static PROCESS_IDLE_TUNING: RwLock<Option<IdleTuning>> = RwLock::new(None);

/// Makes every node started after this call in this process use `tuning` (a simulation
/// measuring another set; a daemon never calls it).
pub fn set_process_idle_tuning(tuning: IdleTuning) {
    if let Ok(mut t) = PROCESS_IDLE_TUNING.write() {
        *t = Some(tuning);
    }
}

/// The idle set a node starting now uses.
pub fn idle_tuning() -> IdleTuning {
    PROCESS_IDLE_TUNING.read().ok().and_then(|t| *t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::GossipTuning;

    /// Gossipsub's constraints (its spec; libp2p checks them only for topics configured
    /// one by one): D_out <= D_lo <= D <= D_hi, D_out <= D / 2, and the IHAVE window
    /// within the cache.
    #[test]
    fn the_sets_keep_gossipsubs_constraints() {
        for t in [
            GossipTuning::KITH,
            GossipTuning::LEAN_FLOOD,
            GossipTuning::NO_IHAVE,
            GossipTuning::LEAN,
            GossipTuning::BEFORE_ISSUE_21,
        ] {
            assert!(t.mesh_outbound_min <= t.mesh_n_low, "{t:?}");
            assert!(t.mesh_n_low <= t.mesh_n && t.mesh_n <= t.mesh_n_high, "{t:?}");
            assert!(t.mesh_outbound_min * 2 <= t.mesh_n, "{t:?}");
            assert!(t.history_gossip <= t.history_length, "{t:?}");
            assert!(t.mesh_n_low >= 2, "a mesh of degree 1 is a set of pairs: {t:?}");
            assert!(t.mesh_time_weight >= 0.0, "P1 weighs zero or more: {t:?}");
            // A lot never outweighs one record's credit, nor reaches the opportunistic
            // graft threshold (20) by itself.
            assert!((0.0..1.0).contains(&t.mesh_lot), "{t:?}");
            assert!(t.mixing_ticks >= 1, "{t:?}");
            for draw in [None, Some(0), Some(u64::MAX), Some(u64::MAX / 2)] {
                let ticks = t.mixing_ticks_spread(draw) as f64;
                let most = t.mixing_ticks as f64 * super::MIXING_JITTER + 1.0;
                assert!((ticks - t.mixing_ticks as f64).abs() <= most, "{draw:?} {t:?}");
            }
            assert_eq!(t.mixing_ticks_spread(None), t.mixing_ticks);
        }
    }
}
