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
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use futures::future::join_all;
use kith_node::{
    api::{Request, Response},
    Node,
};
use kith_protocol::{RecordId, Tag, Topic};
use libp2p::PeerId;
use tokio::sync::watch;

use crate::TestNode;

pub mod latency;

pub use latency::LinkLatency;

/// How often readiness and delivery are checked.
const POLL: Duration = Duration::from_millis(100);

/// The window over which the process's CPU use is measured to tell it is quiet.
const QUIET_WINDOW: Duration = Duration::from_millis(500);
/// Below this share of one core the process counts as quiet.
const QUIET_CPU: f64 = 0.3;

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
    /// Extra wait once quiet, so that gossipsub heartbeats graft the meshes.
    pub settle: Duration,
    /// How long after the last post to wait for deliveries.
    pub delivery_deadline: Duration,
    /// Print each phase on stderr as it starts.
    pub progress: bool,
    /// Per-link one-way delay added in this process (see [`latency`]); `None` for plain
    /// loopback. Needs a network namespace of its own.
    pub latency: Option<LinkLatency>,
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
            delivery_deadline: Duration::from_secs(20),
            progress: false,
            latency: None,
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

/// A small seeded generator (SplitMix64): enough for picking peers and tags, and no
/// dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that always yields the same sequence for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Up to `k` distinct numbers of `0..n`, never `except`, in random order.
    pub fn pick(&mut self, n: usize, k: usize, except: Option<usize>) -> Vec<usize> {
        let mut pool: Vec<usize> = (0..n).filter(|&i| Some(i) != except).collect();
        let k = k.min(pool.len());
        for i in 0..k {
            let j = i + self.below(pool.len() - i);
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool
    }
}

/// One post to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPost {
    /// Index of the author's node.
    pub author: usize,
    /// Indexes of its hashtags.
    pub tags: Vec<usize>,
}

/// Every random choice of a run, made up front from the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Per node: the nodes it dials.
    pub dials: Vec<Vec<usize>>,
    /// Per node: the authors it follows.
    pub follows: Vec<Vec<usize>>,
    /// Per node: the tags it subscribes.
    pub subscriptions: Vec<Vec<usize>>,
    /// Posts, in each author's order.
    pub posts: Vec<PlannedPost>,
    /// How many distinct tags there are.
    pub tags: usize,
}

impl Plan {
    /// The plan for `config` (which must be valid).
    pub fn new(config: &Config) -> Self {
        let mut rng = Rng::new(config.seed);
        let n = config.nodes;
        // About seven subscribers per tag, and at least three tags.
        let tags = (n / 5).max(3);
        let dials = (0..n).map(|i| rng.pick(n, config.degree, Some(i))).collect();
        let follows = (0..n)
            .map(|i| {
                let k = 1 + rng.below(2);
                let mut f = rng.pick(config.authors, k, Some(i));
                f.sort_unstable();
                f
            })
            .collect();
        let subscriptions = (0..n)
            .map(|_| {
                let k = 1 + rng.below(2);
                let mut s = rng.pick(tags, k, None);
                s.sort_unstable();
                s
            })
            .collect();
        let mut posts = Vec::with_capacity(config.authors * config.posts);
        for author in 0..config.authors {
            for _ in 0..config.posts {
                let k = 1 + rng.below(2);
                let mut t = rng.pick(tags, k, None);
                t.sort_unstable();
                posts.push(PlannedPost { author, tags: t });
            }
        }
        Self { dials, follows, subscriptions, posts, tags }
    }

    /// The nodes that should store `post`: those that follow its author or subscribe one
    /// of its tags (never the author).
    pub fn expected(&self, post: &PlannedPost) -> Vec<usize> {
        (0..self.follows.len())
            .filter(|&i| i != post.author)
            .filter(|&i| {
                self.follows[i].contains(&post.author)
                    || self.subscriptions[i].iter().any(|t| post.tags.contains(t))
            })
            .collect()
    }

    /// Each gossip topic a post goes to, with its subscribers and its publishers.
    fn topics(&self) -> Vec<(SimTopic, Vec<usize>, Vec<usize>)> {
        let mut out = Vec::new();
        let authors: HashSet<usize> = self.posts.iter().map(|p| p.author).collect();
        let mut authors: Vec<usize> = authors.into_iter().collect();
        authors.sort_unstable();
        for a in authors {
            let subs = (0..self.follows.len()).filter(|&i| self.follows[i].contains(&a)).collect();
            out.push((SimTopic::Author(a), subs, vec![a]));
        }
        for t in 0..self.tags {
            let subs = (0..self.subscriptions.len())
                .filter(|&i| self.subscriptions[i].contains(&t))
                .collect();
            let mut pubs: Vec<usize> =
                self.posts.iter().filter(|p| p.tags.contains(&t)).map(|p| p.author).collect();
            pubs.sort_unstable();
            pubs.dedup();
            if !pubs.is_empty() {
                out.push((SimTopic::Tag(t), subs, pubs));
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
enum SimTopic {
    Author(usize),
    Tag(usize),
}

fn tag_name(t: usize) -> String {
    format!("simtag{t}")
}

fn post_text(seq: usize, author: usize, tags: &[usize]) -> String {
    let tags: Vec<String> = tags.iter().map(|&t| format!("#{}", tag_name(t))).collect();
    format!("sim post {seq} by node {author} {}", tags.join(" "))
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The configuration run.
    pub config: Config,
    /// Seconds to start the nodes, dial the topology, follow and subscribe.
    pub setup_s: f64,
    /// Seconds from the last follow/subscribe until every subscriber was reachable.
    pub ready_s: f64,
    /// (publisher, topic) pairs with a subscriber still unreachable at the ready deadline.
    pub unready: usize,
    /// Seconds from then until the process was quiet (background sync and lookups done).
    pub quiet_s: f64,
    /// Share of one core the process used just before the first post (heartbeats, pings).
    pub idle_cpu: f64,
    /// Seconds from the first post until every delivery was seen (or the deadline).
    pub publish_s: f64,
    /// CPU seconds the process used in that time.
    pub cpu_s: f64,
    /// (node, post) pairs that should be stored.
    pub expected: usize,
    /// Of those, stored by the delivery deadline.
    pub delivered: usize,
    /// Gossip latency of each delivery seen on a live feed, ms, sorted.
    pub latencies_ms: Vec<f64>,
    /// Duration of each author's `Request::Post` (sign, store, flush, publish), ms, sorted.
    pub post_call_ms: Vec<f64>,
    /// Records stored from gossip, summed over nodes, during the publish phase.
    pub accepted: u64,
    /// Copies of known records received by gossip, summed, same phase.
    pub duplicates: u64,
    /// Records fetched by history sync, summed, same phase.
    pub sync_fetched: u64,
    /// (node, post) pairs stored though the node neither follows the author nor
    /// subscribes a tag of the post (history sync fetches whole author logs).
    pub unexpected: usize,
    /// Peak resident memory of the whole process, kB.
    pub peak_rss_kb: u64,
    /// Bytes sent on the loopback interface during the publish phase (IP packets, every
    /// protocol), halved in latency mode where each byte crosses it twice (through a
    /// proxy); `None` when `/proc/net/dev` is unreadable.
    pub wire_bytes: Option<u64>,
    /// Loopback bytes per second just before the first post (heartbeats, pings, DHT
    /// upkeep), counted the same way.
    pub idle_wire_per_s: Option<f64>,
    /// Whether the run had a network namespace to itself, so that `wire_bytes` counts
    /// only its own traffic (set by `scripts/sim` through `KITH_SIM_OWN_NETNS=1`).
    pub own_netns: bool,
}

/// The value at percentile `p` (nearest rank) of sorted `v`; 0 when empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

impl Report {
    /// Delivered over expected (1 when nothing was expected).
    pub fn delivery_ratio(&self) -> f64 {
        if self.expected == 0 {
            1.0
        } else {
            self.delivered as f64 / self.expected as f64
        }
    }

    /// Loopback bytes per delivered (node, post) pair.
    pub fn wire_bytes_per_delivery(&self) -> Option<f64> {
        self.wire_bytes.filter(|_| self.delivered > 0).map(|b| b as f64 / self.delivered as f64)
    }

    /// The same, less what the network sends when no one posts (the idle rate over the
    /// publish phase's length).
    pub fn wire_bytes_per_delivery_over_idle(&self) -> Option<f64> {
        let (total, idle) = (self.wire_bytes?, self.idle_wire_per_s?);
        let extra = (total as f64 - idle * self.publish_s).max(0.0);
        (self.delivered > 0).then(|| extra / self.delivered as f64)
    }

    /// Duplicate gossip copies per record stored from gossip.
    pub fn duplicates_per_delivery(&self) -> f64 {
        if self.accepted == 0 {
            0.0
        } else {
            self.duplicates as f64 / self.accepted as f64
        }
    }

    /// Process CPU time per delivered (node, post) pair in the publish phase, ms.
    pub fn cpu_ms_per_delivery(&self) -> f64 {
        if self.delivered == 0 {
            0.0
        } else {
            self.cpu_s * 1000.0 / self.delivered as f64
        }
    }

    /// Peak process memory divided by the number of nodes, kB.
    pub fn rss_per_node_kb(&self) -> u64 {
        self.peak_rss_kb / self.config.nodes as u64
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let l = &self.latencies_ms;
        let round = |x: f64| (x * 100.0).round() / 100.0;
        serde_json::json!({
            "nodes": self.config.nodes,
            "authors": self.config.authors,
            "posts": self.config.posts,
            "posts_total": self.config.authors * self.config.posts,
            "seed": self.config.seed,
            "degree": self.config.degree,
            "interval_ms": self.config.interval.as_millis() as u64,
            "aligned": self.config.aligned,
            "store_cache_mb": self.config.store_cache_mb,
            "link_latency_ms": self.config.latency.map(|l| {
                serde_json::json!([l.min.as_millis() as u64, l.max.as_millis() as u64])
            }),
            "expected_deliveries": self.expected,
            "deliveries": self.delivered,
            "delivery_ratio": self.delivery_ratio(),
            "latency_samples": l.len(),
            "p50_ms": round(percentile(l, 50.0)),
            "p95_ms": round(percentile(l, 95.0)),
            "p99_ms": round(percentile(l, 99.0)),
            "max_ms": round(percentile(l, 100.0)),
            "post_call_p50_ms": round(percentile(&self.post_call_ms, 50.0)),
            "post_call_p99_ms": round(percentile(&self.post_call_ms, 99.0)),
            "duplicates_per_delivery": round(self.duplicates_per_delivery()),
            "gossip_accepted": self.accepted,
            "gossip_duplicates": self.duplicates,
            "sync_fetched": self.sync_fetched,
            "unexpected_deliveries": self.unexpected,
            "setup_s": round(self.setup_s),
            "ready_s": round(self.ready_s),
            "unready_topic_publishers": self.unready,
            "quiet_s": round(self.quiet_s),
            "idle_cpu_cores": round(self.idle_cpu),
            "publish_s": round(self.publish_s),
            "cpu_s": round(self.cpu_s),
            "cpu_ms_per_delivery": round(self.cpu_ms_per_delivery()),
            "peak_rss_kb": self.peak_rss_kb,
            "wire_bytes": self.wire_bytes,
            "wire_bytes_per_delivery": self.wire_bytes_per_delivery().map(|b| b.round()),
            "idle_wire_bytes_per_s": self.idle_wire_per_s.map(|b| b.round()),
            "wire_bytes_per_delivery_over_idle":
                self.wire_bytes_per_delivery_over_idle().map(|b| b.round()),
            "own_netns": self.own_netns,
            "rss_per_node_kb": self.rss_per_node_kb(),
        })
    }

    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let c = &self.config;
        let l = &self.latencies_ms;
        let p = |v: &[f64], q| format!("{:.1}", percentile(v, q));
        let rows = [
            ("nodes", format!("{} (each dials {})", c.nodes, c.degree)),
            ("authors x posts", format!("{} x {} = {}", c.authors, c.posts, c.authors * c.posts)),
            (
                "posting",
                format!(
                    "every {} ms per author, {}",
                    c.interval.as_millis(),
                    if c.aligned { "all authors at once" } else { "authors staggered" }
                ),
            ),
            ("seed", c.seed.to_string()),
            (
                "link latency",
                c.latency.map_or("none (loopback)".into(), |l| {
                    format!("{}-{} ms one way, per link", l.min.as_millis(), l.max.as_millis())
                }),
            ),
            ("setup (start, dial, follow)", format!("{:.1} s", self.setup_s)),
            (
                "subscribers reachable",
                format!("after {:.1} s, {} publisher/topic pairs not", self.ready_s, self.unready),
            ),
            (
                "then quiet",
                format!("after {:.1} s more (idle: {:.2} cores)", self.quiet_s, self.idle_cpu),
            ),
            (
                "delivery",
                format!(
                    "{}/{} = {:.2}% within {} s",
                    self.delivered,
                    self.expected,
                    100.0 * self.delivery_ratio(),
                    c.delivery_deadline.as_secs()
                ),
            ),
            ("latency samples", l.len().to_string()),
            (
                "latency p50/p95/p99/max",
                format!("{} / {} / {} / {} ms", p(l, 50.0), p(l, 95.0), p(l, 99.0), p(l, 100.0)),
            ),
            (
                "post call p50/p99",
                format!("{} / {} ms", p(&self.post_call_ms, 50.0), p(&self.post_call_ms, 99.0)),
            ),
            (
                "duplicates per delivery",
                format!(
                    "{:.2} ({} duplicate / {} accepted)",
                    self.duplicates_per_delivery(),
                    self.duplicates,
                    self.accepted
                ),
            ),
            (
                "CPU in publish phase",
                format!(
                    "{:.1} s in {:.1} s, {:.2} ms per delivery",
                    self.cpu_s,
                    self.publish_s,
                    self.cpu_ms_per_delivery()
                ),
            ),
            (
                "loopback bytes per delivery",
                match (self.wire_bytes_per_delivery(), self.wire_bytes_per_delivery_over_idle()) {
                    (Some(b), over) => format!(
                        "{b:.0} B, {} B over the idle rate of {:.0} kB/s (IP packets, all \
                         protocols, publish phase; {})",
                        over.map_or("?".into(), |o| format!("{o:.0}")),
                        self.idle_wire_per_s.unwrap_or(0.0) / 1000.0,
                        if self.own_netns {
                            "this run's own network namespace"
                        } else {
                            "the whole machine's loopback"
                        }
                    ),
                    (None, _) => "unknown".into(),
                },
            ),
            ("records via sync", self.sync_fetched.to_string()),
            ("stored by uninterested nodes", self.unexpected.to_string()),
            (
                "peak RSS",
                format!("{} kB, {} kB per node", self.peak_rss_kb, self.rss_per_node_kb()),
            ),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            out.push_str(&format!("{k:<width$}  {v}\n"));
        }
        out
    }
}

/// Bytes sent on the loopback interface so far (`/proc/net/dev`), if readable.
pub fn loopback_tx_bytes() -> Option<u64> {
    let dev = std::fs::read_to_string("/proc/net/dev").ok()?;
    let line = dev.lines().find_map(|l| l.trim_start().strip_prefix("lo:"))?;
    // Eight receive counters, then transmitted bytes.
    line.split_whitespace().nth(8)?.parse().ok()
}

/// Peak resident set size of this process (VmHWM), kB; 0 if unknown.
pub fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time this process has used (user and system), from `/proc/self/stat`; zero if
/// unknown. Linux reports it in ticks of 1/100 s.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Waits until the process uses less than [`QUIET_CPU`] of a core over a
/// [`QUIET_WINDOW`] (setup syncs, DHT lookups and offers are done), or `deadline`.
async fn wait_quiet(deadline: Duration) -> f64 {
    let start = Instant::now();
    loop {
        let cpu = cpu_time();
        tokio::time::sleep(QUIET_WINDOW).await;
        let used = (cpu_time().saturating_sub(cpu)).as_secs_f64() / QUIET_WINDOW.as_secs_f64();
        if used < QUIET_CPU || start.elapsed() > deadline {
            return used;
        }
    }
}

async fn request(node: &TestNode, request: Request) -> Result<Response, String> {
    match node.call(request.clone()).await {
        Response::Error { message } => Err(format!("{}: {request:?}: {message}", node.name)),
        r => Ok(r),
    }
}

/// Sums of (accepted, duplicate, sync fetched) over all nodes.
async fn counters(nodes: &[TestNode]) -> Result<(u64, u64, u64), String> {
    let mut sum = (0, 0, 0);
    for node in nodes {
        match request(node, Request::Status).await? {
            Response::Status(s) => {
                sum.0 += s.record_counters.accepted;
                sum.1 += s.record_counters.duplicate;
                sum.2 += s.sync.records_fetched;
            }
            r => return Err(format!("{}: unexpected status reply {r:?}", node.name)),
        }
    }
    Ok(sum)
}

fn topic_string(nodes: &[TestNode], topic: SimTopic) -> Result<String, String> {
    Ok(match topic {
        SimTopic::Author(a) => Topic::Author(nodes[a].id()).to_string(),
        SimTopic::Tag(t) => {
            Topic::Tag(Tag::parse(&tag_name(t)).map_err(|e| e.to_string())?).to_string()
        }
    })
}

/// (publisher, topic) pairs from which some subscriber cannot be reached through peers
/// known to be on the topic (only subscribers relay a topic).
async fn unreachable_pairs(
    nodes: &[TestNode],
    index: &HashMap<PeerId, usize>,
    topics: &[(String, Vec<usize>, Vec<usize>)],
) -> usize {
    let mut bad = 0;
    for (topic, subs, pubs) in topics {
        let mut known: HashMap<usize, Vec<usize>> = HashMap::new();
        for &i in subs.iter().chain(pubs) {
            if known.contains_key(&i) {
                continue;
            }
            let peers = nodes[i].node.net().topic_peers(topic.clone()).await.unwrap_or_default();
            known.insert(i, peers.iter().filter_map(|p| index.get(p).copied()).collect());
        }
        for &p in pubs {
            let mut seen = HashSet::from([p]);
            let mut queue = VecDeque::from([p]);
            while let Some(u) = queue.pop_front() {
                for &v in known.get(&u).map(Vec::as_slice).unwrap_or_default() {
                    if seen.insert(v) {
                        queue.push_back(v);
                    }
                }
            }
            if subs.iter().any(|s| !seen.contains(s)) {
                bad += 1;
            }
        }
    }
    bad
}

/// Records (post id, arrival) from a node's live feed until `stop` changes.
fn watch_feed(
    node: &Node,
    cap: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<Vec<(String, Instant)>>, String> {
    let mut feed = node.live_feed(None, None)?;
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
        let reply = node.handle(Request::Post { text, reply_to: None, expires_in_ms: None }).await;
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
    let dials = plan.dials.iter().enumerate().flat_map(|(i, to)| {
        to.iter()
            .map(move |&j| request(&nodes[i], Request::Dial { addr: nodes[j].addr().to_string() }))
    });
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
    let index: HashMap<PeerId, usize> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.id().to_peer_id().ok().map(|p| (p, i)))
        .collect();
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
    let (idle_wire_before, idle_start) = (loopback_tx_bytes(), Instant::now());
    tokio::time::sleep(config.settle).await;
    let idle_wire_per_s = match (idle_wire_before, loopback_tx_bytes()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / idle_start.elapsed().as_secs_f64()),
        _ => None,
    };
    say("publishing");
    let cpu_before = cpu_time();
    let wire_before = loopback_tx_bytes();
    let t3 = Instant::now();

    let before = counters(nodes).await?;
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
    let wire_bytes = match (wire_before, loopback_tx_bytes()) {
        (Some(a), Some(b)) if config.latency.is_some() => Some(b.saturating_sub(a) / 2),
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let publish_s = t3.elapsed().as_secs_f64();
    let after = counters(nodes).await?;
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
    latencies_ms.sort_by(f64::total_cmp);
    post_call_ms.sort_by(f64::total_cmp);
    Ok(Report {
        config: config.clone(),
        setup_s,
        ready_s,
        unready,
        quiet_s,
        idle_cpu,
        publish_s,
        cpu_s: cpu,
        expected: expected.len(),
        delivered: expected.len() - missing.len(),
        latencies_ms,
        post_call_ms,
        accepted: after.0.saturating_sub(before.0),
        duplicates: after.1.saturating_sub(before.1),
        sync_fetched: after.2.saturating_sub(before.2),
        unexpected,
        peak_rss_kb: peak_rss_kb(),
        wire_bytes,
        idle_wire_per_s: idle_wire_per_s
            .map(|b| if config.latency.is_some() { b / 2.0 } else { b }),
        own_netns: std::env::var_os("KITH_SIM_OWN_NETNS").is_some_and(|v| v == "1"),
    })
}
