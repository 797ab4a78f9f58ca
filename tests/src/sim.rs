//! Many-node simulation (issue 7): N in-process nodes on 127.0.0.1 (OS ports, mDNS off)
//! in a random sparse topology; M authors post K posts with hashtags; every node follows
//! some authors and subscribes some tags. Measures delivery, gossip latency, duplicates
//! and memory per node.
//!
//! The random choices (topology, follows, tags, posts) come from one seed, so a run can be
//! repeated with the same plan; timing is whatever the machine does.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use kith_tests::sim::{run, Config};
//! let report = run(&Config { nodes: 12, authors: 3, posts: 20, ..Config::default() }).await?;
//! assert_eq!(report.delivered, report.expected);
//! # Ok(()) }
//! ```

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use futures::future::join_all;
use kith_node::{
    api::{Request, Response},
    Node,
};
use kith_protocol::RecordId;
use libp2p::PeerId;
use tokio::sync::watch;

use crate::TestNode;

pub mod latency;
mod mesh;
mod plan;
mod probe;
mod report;

pub use latency::LinkLatency;
use mesh::{mesh_topics, meshes, say_missing, say_splits};
use plan::{post_text, tag_name};
pub use plan::{Plan, PlannedPost, Rng};
use probe::{
    counters, event_counts, gossip_counters, idle_slices, median, request, topic_string,
    unreachable_pairs, wait_quiet, wait_sync_round,
};
pub use report::{
    cpu_time, loopback_tx_bytes, loopback_tx_packets, peak_rss_kb, percentile, NodeGossip, Report,
};

/// How often readiness and delivery are checked.
const POLL: Duration = Duration::from_millis(100);

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Nodes in the process.
    pub nodes: usize,
    /// Nodes that post (the first `authors` nodes).
    pub authors: usize,
    /// Posts per author.
    pub posts: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Other nodes each node dials.
    pub degree: usize,
    /// Pause between two posts of one author.
    pub interval: Duration,
    /// All authors post at the same moments. Otherwise (the default) author `a` starts
    /// `a / authors` of an interval later, as independent people would not post in step.
    pub aligned: bool,
    /// Each node's store cache, MiB (the node's `store_cache_mb`).
    pub store_cache_mb: u64,
    /// How long to wait for every subscriber to be reachable from every publisher, and
    /// then again for the process to be quiet (set-up syncs and lookups done).
    pub ready_deadline: Duration,
    /// Extra wait once quiet, so that gossipsub heartbeats graft the meshes; the idle CPU
    /// and wire rates are measured over it.
    pub settle: Duration,
    /// Time left to pass between the set-up going quiet and the settle window
    /// (`--idle-wait-s`): periodic sync rounds that back off reach their longest wait
    /// some minutes after the last thing sync brought, so a window right after the
    /// set-up sees them at their shorter waits.
    pub idle_wait: Duration,
    /// Length of the idle window after the posts (`--after-s`); `None`: as `settle`.
    /// A long settle window (a whole period of the periodic jobs) then still fits a
    /// short run.
    pub after: Option<Duration>,
    /// How long after the last post to wait for deliveries.
    pub delivery_deadline: Duration,
    /// How long the wire and gossipsub counts run on after the last delivery, so that
    /// the gossip a post sets off after it has arrived (IHAVE for a few heartbeats, late
    /// copies) counts whatever the heartbeat.
    pub tail: Duration,
    /// Print each phase on stderr as it starts.
    pub progress: bool,
    /// Per-link one-way delay added in this process (see [`latency`]); `None` for plain
    /// loopback. Needs a network namespace of its own.
    pub latency: Option<LinkLatency>,
    /// Gossipsub's parameters for every node of the run (and of any run after it in this
    /// process).
    pub gossip: kith_node::net::GossipTuning,
    /// The timers of idle nodes (ping, identify, DHT, AutoNAT, sync) for every node of
    /// the run (and of any run after it in this process).
    pub idle: kith_node::net::IdleTuning,
    /// Whether the nodes keep gossipsub's metrics (its copies, duplicates and bytes in
    /// the report come from them; they cost CPU, and daemons do not keep them).
    pub gossip_metrics: bool,
    /// Start the posts just after every node has finished a periodic sync round (waiting
    /// at most one sync interval and a few seconds), so that the next round (idle traffic,
    /// about 4 MB at 100 nodes, and more when it meets posts in flight) does not land in
    /// the short publish window by chance. The idle rate subtracted is a median, which
    /// leaves such bursts out too. Only when the rounds come at a fixed pace: with
    /// backoff ([`kith_node::net::IdleTuning::sync_interval_max`]) and jitter, rounds are
    /// spread out and sparse (a node's next one may be minutes away), so there is no
    /// burst to step round and the posts start at once.
    pub after_sync_round: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nodes: 50,
            authors: 5,
            posts: 20,
            seed: 1,
            degree: 3,
            interval: Duration::from_millis(200),
            aligned: false,
            store_cache_mb: kith_node::config::DEFAULT_STORE_CACHE_MB,
            ready_deadline: Duration::from_secs(30),
            settle: Duration::from_secs(2),
            idle_wait: Duration::ZERO,
            after: None,
            delivery_deadline: Duration::from_secs(20),
            tail: Duration::from_secs(3),
            progress: false,
            latency: None,
            gossip: kith_node::net::GossipTuning::KITH,
            idle: kith_node::net::IdleTuning::KITH,
            gossip_metrics: true,
            after_sync_round: false,
        }
    }
}

impl Config {
    /// Checks that the numbers make a simulation.
    ///
    /// # Errors
    /// A one-line message naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes < 2 {
            return Err(format!("--nodes must be at least 2, not {}", self.nodes));
        }
        if self.authors == 0 || self.authors > self.nodes {
            return Err(format!("--authors must be between 1 and --nodes, not {}", self.authors));
        }
        if self.posts == 0 {
            return Err("--posts must be at least 1".into());
        }
        if self.degree == 0 || self.degree >= self.nodes {
            return Err(format!("--degree must be between 1 and --nodes - 1, not {}", self.degree));
        }
        if self.store_cache_mb == 0 {
            return Err("--store-cache-mb must be at least 1".into());
        }
        if self.latency.is_some_and(|l| l.min > l.max) {
            return Err("--latency-ms: the first number must not exceed the second".into());
        }
        Ok(())
    }
}

/// Records (post id, arrival) from a node's live feed until `stop` changes.
fn watch_feed(
    node: &Node,
    cap: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<Vec<(String, Instant)>>, String> {
    let mut feed = node.live_feed(None, None).map_err(|e| e.to_string())?;
    Ok(tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            tokio::select! {
                item = feed.next() => match item {
                    Some(item) if seen.len() < cap => seen.push((item.id, Instant::now())),
                    Some(_) => {}
                    None => break,
                },
                _ = stop.changed() => break,
            }
        }
        seen
    }))
}

/// A post as published.
struct Sent {
    /// Record id as text (as live feeds give it) and parsed.
    id: String,
    rid: RecordId,
    post: PlannedPost,
    /// Around the author's `Request::Post`.
    start: Instant,
    end: Instant,
}

/// Posts `posts` from `node` one after another, `interval` apart, the first after `offset`.
async fn publish(
    node: Node,
    posts: Vec<(usize, PlannedPost)>,
    offset: Duration,
    interval: Duration,
) -> Result<Vec<Sent>, String> {
    let mut out = Vec::with_capacity(posts.len());
    tokio::time::sleep(offset).await;
    for (seq, post) in posts {
        let text = post_text(seq, post.author, &post.tags);
        let start = Instant::now();
        let reply = node
            .handle(Request::Post { text, reply_to: None, expires_in_ms: None, attach: vec![] })
            .await;
        let end = Instant::now();
        let id = match reply {
            Response::Record { id } => id,
            r => return Err(format!("post by node {}: {r:?}", post.author)),
        };
        let rid = id.parse().map_err(|e| format!("post id {id}: {e}"))?;
        out.push(Sent { id, rid, post, start, end });
        tokio::time::sleep(interval).await;
    }
    Ok(out)
}

/// Runs one simulation and stops its nodes.
///
/// # Errors
/// An invalid config, or a node that refused a setup request (dial, follow, subscribe,
/// post), as one line.
pub async fn run(config: &Config) -> Result<Report, String> {
    config.validate()?;
    let plan = Plan::new(config);
    kith_node::net::set_process_gossip_tuning(config.gossip);
    kith_node::net::set_process_idle_tuning(config.idle);
    kith_node::net::set_process_gossip_metrics(config.gossip_metrics);
    let t0 = Instant::now();
    let cache = config.store_cache_mb;
    let starts = (0..config.nodes)
        .map(|i| async move { TestNode::start_with_cache(&format!("n{i:03}"), cache).await });
    let nodes: Vec<TestNode> = join_all(starts).await;
    let result = match config.latency {
        Some(latency) => {
            let ports: Vec<u16> = nodes.iter().map(TestNode::port).collect();
            match latency::install(&ports, latency, config.seed).await {
                Ok(_links) => simulate(config, &plan, &nodes, t0).await,
                Err(e) => Err(e),
            }
        }
        None => simulate(config, &plan, &nodes, t0).await,
    };
    join_all(nodes.into_iter().map(TestNode::stop)).await;
    result
}

/// Dials the topology, then follows and subscribes one node at a time, so that the DHT
/// provider records of earlier subscribers are there for later ones to find.
async fn connect(plan: &Plan, nodes: &[TestNode]) -> Result<(), String> {
    let dial = |i: usize, j: usize| async move {
        let dial = || request(&nodes[i], Request::Dial { addr: nodes[j].addr().to_string() });
        // Once more on a failure: in a process that runs several simulations one after
        // another, a dial of the set-up has failed Noise's handshake (a port of the run
        // before reused), which says nothing about the set under trial.
        match dial().await {
            Err(e) => {
                eprintln!("sim: set-up dial failed, once more: {e}");
                dial().await
            }
            ok => ok,
        }
    };
    let dials =
        plan.dials.iter().enumerate().flat_map(|(i, to)| to.iter().map(move |&j| dial(i, j)));
    for r in join_all(dials).await {
        r?;
    }
    for (i, node) in nodes.iter().enumerate() {
        for &a in &plan.follows[i] {
            request(node, Request::Follow { id: nodes[a].id().to_string() }).await?;
        }
        for &t in &plan.subscriptions[i] {
            request(node, Request::Subscribe { tag: tag_name(t) }).await?;
        }
    }
    Ok(())
}

/// Waits until every subscriber is reachable from every publisher of its topics, or the
/// deadline; returns the pairs still not.
async fn wait_ready(config: &Config, plan: &Plan, nodes: &[TestNode]) -> Result<usize, String> {
    let index = peer_index(nodes);
    let mut topics = Vec::new();
    for (topic, subs, pubs) in plan.topics() {
        topics.push((topic_string(nodes, topic)?, subs, pubs));
    }
    let start = Instant::now();
    loop {
        let bad = unreachable_pairs(nodes, &index, &topics).await;
        if bad == 0 || start.elapsed() > config.ready_deadline {
            return Ok(bad);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Each node's index by its peer id.
fn peer_index(nodes: &[TestNode]) -> HashMap<PeerId, usize> {
    nodes.iter().enumerate().filter_map(|(i, n)| n.id().to_peer_id().ok().map(|p| (p, i))).collect()
}

/// Waits until every expected (node, post) is stored, or the deadline; returns those
/// still missing.
async fn wait_delivered(
    config: &Config,
    nodes: &[TestNode],
    mut pending: HashSet<(usize, RecordId)>,
) -> HashSet<(usize, RecordId)> {
    let start = Instant::now();
    loop {
        pending.retain(|(n, id)| !nodes[*n].node.store().has(id).unwrap_or(false));
        if pending.is_empty() || start.elapsed() > config.delivery_deadline {
            return pending;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Gossip latency of each delivery, ms: from the author's node handing the record to
/// gossip (its own live feed event, after sign, store and flush) to the receiver's live
/// feed event (after verify and store). The author's whole `Request::Post` is timed
/// separately.
fn latencies(
    plan: &Plan,
    sent: &[Sent],
    arrivals: &[HashMap<String, Instant>],
    missing: &HashSet<(usize, RecordId)>,
) -> Vec<f64> {
    let mut out = Vec::new();
    for s in sent {
        let from = arrivals[s.post.author].get(&s.id).copied().unwrap_or(s.start);
        for n in plan.expected(&s.post) {
            if missing.contains(&(n, s.rid)) {
                continue;
            }
            if let Some(at) = arrivals[n].get(&s.id) {
                out.push(at.saturating_duration_since(from).as_secs_f64() * 1000.0);
            }
        }
    }
    out
}

async fn simulate(
    config: &Config,
    plan: &Plan,
    nodes: &[TestNode],
    t0: Instant,
) -> Result<Report, String> {
    let say = |what: &str| {
        if config.progress {
            eprintln!("sim: {:6.1} s  {what}", t0.elapsed().as_secs_f64());
        }
    };
    say("nodes started; dialling, following, subscribing");
    connect(plan, nodes).await?;
    say("waiting until every subscriber is reachable");
    let setup_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let unready = wait_ready(config, plan, nodes).await?;
    let ready_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    say("waiting until the process is quiet");
    let idle_cpu = wait_quiet(config.ready_deadline).await;
    let quiet_s = t2.elapsed().as_secs_f64();
    if !config.idle_wait.is_zero() {
        say("quiet; waiting before the idle window (--idle-wait-s)");
        tokio::time::sleep(config.idle_wait).await;
    }
    say("measuring the idle window");
    let (idle_wire_before, idle_start) = (loopback_tx_bytes(), Instant::now());
    let idle_cpu_before = cpu_time();
    let events_before = event_counts(nodes).await?;
    let idle_before = idle_slices(config.settle).await;
    let mut idle_events = event_counts(nodes).await?;
    for (kind, n) in &mut idle_events {
        *n = n.saturating_sub(events_before.get(kind).copied().unwrap_or(0));
    }
    idle_events.retain(|_, n| *n > 0);
    let idle_window_s = idle_start.elapsed().as_secs_f64();
    let idle_cpu_settled = cpu_time().saturating_sub(idle_cpu_before).as_secs_f64() / idle_window_s;
    let idle_wire_per_s = match (idle_wire_before, loopback_tx_bytes()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / idle_window_s),
        _ => None,
    };
    let fixed_pace = config.idle.sync_interval_max <= config.idle.sync_interval;
    let sync_wait_s = if config.after_sync_round && fixed_pace {
        say("waiting for a periodic sync round to end");
        wait_sync_round(nodes, config.idle.sync_interval + Duration::from_secs(10)).await?
    } else {
        0.0
    };
    let mesh_topics = mesh_topics(plan, nodes)?;
    let meshes_before = meshes(nodes, &mesh_topics.0, &mesh_topics.1).await;
    say_splits(&mesh_topics.2, &meshes_before);
    say("publishing");
    let cpu_before = cpu_time();
    let (wire_before, packets_before) = (loopback_tx_bytes(), loopback_tx_packets());
    let t3 = Instant::now();

    let before = counters(nodes).await?;
    let copies_before = gossip_counters(nodes).await?;
    let publish_events_before = event_counts(nodes).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let cap = plan.posts.len() + 16;
    let mut feeds = Vec::with_capacity(nodes.len());
    for node in nodes {
        feeds.push(watch_feed(&node.node, cap, stop_rx.clone())?);
    }
    let mut per_author: Vec<Vec<(usize, PlannedPost)>> = vec![Vec::new(); config.authors];
    for (seq, post) in plan.posts.iter().enumerate() {
        per_author[post.author].push((seq, post.clone()));
    }
    let publishers = per_author.into_iter().enumerate().map(|(a, posts)| {
        let offset = if config.aligned {
            Duration::ZERO
        } else {
            config.interval.mul_f64(a as f64 / config.authors as f64)
        };
        publish(nodes[a].node.clone(), posts, offset, config.interval)
    });
    let mut sent: Vec<Sent> = Vec::with_capacity(plan.posts.len());
    for r in join_all(publishers).await {
        sent.extend(r?);
    }

    let expected: HashSet<(usize, RecordId)> =
        sent.iter().flat_map(|s| plan.expected(&s.post).into_iter().map(|n| (n, s.rid))).collect();
    say("waiting for deliveries");
    let missing = wait_delivered(config, nodes, expected.clone()).await;
    let cpu = cpu_time().saturating_sub(cpu_before).as_secs_f64();
    let publish_s = t3.elapsed().as_secs_f64();
    if !missing.is_empty() && config.progress {
        let now = meshes(nodes, &mesh_topics.0, &mesh_topics.1).await;
        say_missing(plan, &sent, &missing, &mesh_topics.2, &meshes_before, &now);
    }
    tokio::time::sleep(config.tail).await;
    let wire_bytes = match (wire_before, loopback_tx_bytes()) {
        (Some(a), Some(b)) if config.latency.is_some() => Some(b.saturating_sub(a) / 2),
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let wire_packets = match (packets_before, loopback_tx_packets()) {
        (Some(a), Some(b)) if config.latency.is_some() => Some(b.saturating_sub(a) / 2),
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let wire_window_s = t3.elapsed().as_secs_f64();
    let after = counters(nodes).await?;
    let copies_after = gossip_counters(nodes).await?;
    let mut publish_events = event_counts(nodes).await?;
    for (kind, n) in &mut publish_events {
        *n = n.saturating_sub(publish_events_before.get(kind).copied().unwrap_or(0));
    }
    publish_events.retain(|_, n| *n > 0);
    let mut gossip_totals: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (a, b) in copies_after.iter().zip(&copies_before) {
        for (key, n) in a {
            *gossip_totals.entry(key).or_default() +=
                n.saturating_sub(b.get(key).copied().unwrap_or(0));
        }
    }
    // The background (set-up's tail, DHT and AutoNAT rounds) may still be falling when
    // the posts start: a second idle window after them bounds it from the other side.
    say("measuring the idle window after");
    let idle_after_slices = idle_slices(config.after.unwrap_or(config.settle)).await;
    let idle_after_mean = (!idle_after_slices.is_empty())
        .then(|| idle_after_slices.iter().sum::<f64>() / idle_after_slices.len() as f64);
    let idle_after = median(idle_after_slices);
    let meshes_after = meshes(nodes, &mesh_topics.0, &mesh_topics.1).await;
    say_splits(&mesh_topics.2, &meshes_after);
    // In latency mode each byte crosses loopback twice (through a proxy).
    let halve = |b: f64| if config.latency.is_some() { b / 2.0 } else { b };
    let mut node_deliveries = vec![0usize; nodes.len()];
    for (n, _) in expected.difference(&missing) {
        node_deliveries[*n] += 1;
    }
    let node_gossip = copies_after
        .iter()
        .zip(&copies_before)
        .zip(node_deliveries)
        .map(|((a, b), delivered)| {
            let diff = |key| {
                a.get(key).copied().unwrap_or(0).saturating_sub(b.get(key).copied().unwrap_or(0))
            };
            let copies = diff("copies");
            NodeGossip { copies, duplicates: copies.saturating_sub(diff("first")), delivered }
        })
        .collect();
    let unexpected = sent
        .iter()
        .flat_map(|s| (0..nodes.len()).map(move |n| (n, s)))
        .filter(|(n, s)| *n != s.post.author && !expected.contains(&(*n, s.rid)))
        .filter(|(n, s)| nodes[*n].node.store().has(&s.rid).unwrap_or(false))
        .count();
    let _ = stop_tx.send(true);
    let mut arrivals: Vec<HashMap<String, Instant>> = Vec::with_capacity(feeds.len());
    for f in feeds {
        arrivals.push(f.await.map_err(|e| format!("live feed task: {e}"))?.into_iter().collect());
    }

    let mut latencies_ms = latencies(plan, &sent, &arrivals, &missing);
    let mut post_call_ms: Vec<f64> =
        sent.iter().map(|s| (s.end - s.start).as_secs_f64() * 1000.0).collect();
    let sizes: Vec<usize> = sent
        .iter()
        .filter_map(|s| nodes[s.post.author].node.store().get_bytes(&s.rid).ok().flatten())
        .map(|b| b.len())
        .collect();
    let record_bytes = if sizes.is_empty() {
        0.0
    } else {
        sizes.iter().sum::<usize>() as f64 / sizes.len() as f64
    };
    latencies_ms.sort_by(f64::total_cmp);
    post_call_ms.sort_by(f64::total_cmp);
    Ok(Report {
        config: config.clone(),
        setup_s,
        ready_s,
        unready,
        mesh_stranded: meshes_before.stranded(),
        mesh_split_topics: meshes_before.split_topics(),
        mesh_stranded_after: meshes_after.stranded(),
        mesh_split_topics_after: meshes_after.split_topics(),
        quiet_s,
        idle_cpu,
        idle_cpu_settled,
        idle_events,
        publish_s,
        cpu_s: cpu,
        expected: expected.len(),
        delivered: expected.len() - missing.len(),
        latencies_ms,
        post_call_ms,
        accepted: after.0.saturating_sub(before.0),
        duplicates: after.1.saturating_sub(before.1),
        sync_fetched: after.2.saturating_sub(before.2),
        node_gossip,
        unexpected,
        record_bytes,
        peak_rss_kb: peak_rss_kb(),
        wire_bytes,
        wire_packets,
        wire_window_s,
        gossip_totals,
        idle_wire_median_per_s: median(idle_before).map(halve),
        idle_wire_after_per_s: idle_after.map(halve),
        idle_wire_after_mean_per_s: idle_after_mean.map(halve),
        sync_wait_s,
        publish_events,
        idle_wire_per_s: idle_wire_per_s.map(halve),
        own_netns: std::env::var_os("KITH_SIM_OWN_NETNS").is_some_and(|v| v == "1"),
    })
}
