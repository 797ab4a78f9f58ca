//! What a simulation measured, as a table or JSON, and the process counters it reads.

use std::time::Duration;

use super::Config;

/// One node's gossip in the publish phase, from gossipsub's own counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeGossip {
    /// Gossip messages received, every copy.
    pub copies: u64,
    /// Of those, copies of a message already received (gossipsub dropped them).
    pub duplicates: u64,
    /// Posts this node was expected to store and did.
    pub delivered: usize,
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
    /// Subscribers outside the largest part of their topic's gossipsub mesh just before
    /// the posts, over all topics (`probe::Meshes`).
    pub mesh_stranded: usize,
    /// Topics whose mesh was in more than one part just before the posts.
    pub mesh_split_topics: usize,
    /// [`Report::mesh_stranded`] and [`Report::mesh_split_topics`] at the end of the run,
    /// after the idle window that follows the posts (a split mended meanwhile, or one
    /// that formed).
    pub mesh_stranded_after: usize,
    pub mesh_split_topics_after: usize,
    /// Seconds from then until the process was quiet (background sync and lookups done).
    pub quiet_s: f64,
    /// Share of one core the process used just before the first post (heartbeats, pings).
    pub idle_cpu: f64,
    /// Share of one core the process used over the whole settle window after that (no
    /// posts; `--settle-s`), the steadier idle figure.
    pub idle_cpu_settled: f64,
    /// The swarm events of all nodes in the idle window, by kind (what idle nodes do).
    pub idle_events: std::collections::BTreeMap<&'static str, u64>,
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
    /// Each node's gossip copies and duplicates, same phase.
    pub node_gossip: Vec<NodeGossip>,
    /// (node, post) pairs stored though the node neither follows the author nor
    /// subscribes a tag of the post (history sync fetches whole author logs).
    pub unexpected: usize,
    /// Mean size of the signed records posted (bytes, as stored and sent), the floor of
    /// what one delivery can cost on the wire.
    pub record_bytes: f64,
    /// Peak resident memory of the whole process, kB.
    pub peak_rss_kb: u64,
    /// Bytes sent on the loopback interface during the publish phase (IP packets, every
    /// protocol), halved in latency mode where each byte crosses it twice (through a
    /// proxy); `None` when `/proc/net/dev` is unreadable.
    pub wire_bytes: Option<u64>,
    /// IP packets sent on the loopback interface in the same window as `wire_bytes`.
    pub wire_packets: Option<u64>,
    /// Seconds the wire counts ran: the publish phase and the tail after it.
    pub wire_window_s: f64,
    /// Gossipsub's counters summed over nodes for the same window (`copies`, `first`,
    /// `copy_bytes`, `sent`, `sent_bytes`, `iwant`, `idontwant`).
    pub gossip_totals: std::collections::BTreeMap<&'static str, u64>,
    /// Loopback bytes per second just before the first post (heartbeats, pings, DHT
    /// upkeep), counted the same way.
    pub idle_wire_per_s: Option<f64>,
    /// The median of the idle window's one-second loopback rates: the steady idle rate,
    /// without the bursts (a DHT bootstrap wave, a round of AutoNAT dial-backs) that a
    /// window may or may not catch; what [`Report::wire_bytes_per_delivery_over_idle`]
    /// subtracts, with the one after ([`Report::idle_rate`]).
    pub idle_wire_median_per_s: Option<f64>,
    /// The same median over a window as long after the tail (no posts).
    pub idle_wire_after_per_s: Option<f64>,
    /// The mean rate of that window after the tail: unlike the median it counts the
    /// periodic bursts (a sync round every 30 s) that a window as long as their period
    /// holds once.
    pub idle_wire_after_mean_per_s: Option<f64>,
    /// Seconds waited after the settle window for a periodic sync round to end
    /// ([`Config::after_sync_round`]; 0 when not asked).
    pub sync_wait_s: f64,
    /// The swarm events of all nodes in the publish window and tail, by kind (sync
    /// requests, DHT queries and pings that ran while the posts did).
    pub publish_events: std::collections::BTreeMap<&'static str, u64>,
    /// Whether the run had a network namespace to itself, so that `wire_bytes` counts
    /// only its own traffic (set by `scripts/sim` through `KITH_SIM_OWN_NETNS=1`).
    pub own_netns: bool,
}

/// IPv4 (20 B) and TCP with timestamps (32 B): the header of every loopback packet.
const TCP_IP_HEADER_BYTES: u64 = 52;

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

    /// The same, less what the network sends when no one posts ([`Report::idle_rate`]
    /// over the window's length).
    pub fn wire_bytes_per_delivery_over_idle(&self) -> Option<f64> {
        let total = self.wire_bytes?;
        let idle = self.idle_rate()?;
        let extra = (total as f64 - idle * self.wire_window_s).max(0.0);
        (self.delivered > 0).then(|| extra / self.delivered as f64)
    }

    /// The idle rate subtracted: the lower of the medians before the posts and after
    /// them, so that a background still falling off after the set-up is not counted as
    /// idle (the figure over idle is then an upper bound); the mean before the posts
    /// when the windows are too short for a median.
    pub fn idle_rate(&self) -> Option<f64> {
        match (self.idle_wire_median_per_s, self.idle_wire_after_per_s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b).or(self.idle_wire_per_s),
        }
    }

    /// Where the bytes of one delivery went (per delivered post, same window, not less
    /// the idle rate): TCP/IP headers (52 B a packet on loopback: IPv4 20, TCP with
    /// timestamps 32; acknowledgements are nothing else), the gossip messages themselves
    /// (gossipsub's protobuf of every copy received: record and topic), and the rest
    /// (per-copy framing: gossipsub length prefix, yamux 12 B, Noise 18 B; gossipsub
    /// control: IHAVE, IWANT, IDONTWANT, GRAFT, PRUNE, subscriptions; every other
    /// protocol: sync, DHT, identify, ping).
    pub fn wire_breakdown(&self) -> Option<serde_json::Value> {
        let (bytes, packets) = (self.wire_bytes?, self.wire_packets?);
        if self.delivered == 0 {
            return None;
        }
        let per = |x: u64| (x as f64 / self.delivered as f64).round();
        let g = |k| self.gossip_totals.get(k).copied().unwrap_or(0);
        let headers = packets * TCP_IP_HEADER_BYTES;
        let messages = g("copy_bytes");
        let ratio = |x: u64| ((x as f64 / self.delivered as f64) * 100.0).round() / 100.0;
        Some(serde_json::json!({
            "packets": ratio(packets),
            "tcp_ip_headers": per(headers),
            "gossip_messages": per(messages),
            "rest": per(bytes.saturating_sub(headers + messages)),
            "gossip_copies": ratio(g("copies")),
            "gossip_sent": ratio(g("sent")),
            "iwant": ratio(g("iwant")),
            "idontwant": ratio(g("idontwant")),
        }))
    }

    /// Duplicate gossip copies per record stored from gossip.
    pub fn duplicates_per_delivery(&self) -> f64 {
        if self.accepted == 0 {
            0.0
        } else {
            self.duplicates as f64 / self.accepted as f64
        }
    }

    /// Gossip duplicates (copies gossipsub dropped) per delivered post: (mean over the
    /// nodes that had a delivery, the largest of one node, all nodes' together).
    pub fn gossip_duplicates_per_delivery(&self) -> (f64, f64, f64) {
        let ratios: Vec<f64> = self
            .node_gossip
            .iter()
            .filter(|g| g.delivered > 0)
            .map(|g| g.duplicates as f64 / g.delivered as f64)
            .collect();
        let mean =
            if ratios.is_empty() { 0.0 } else { ratios.iter().sum::<f64>() / ratios.len() as f64 };
        let max = ratios.iter().copied().fold(0.0, f64::max);
        let total: u64 = self.node_gossip.iter().map(|g| g.duplicates).sum();
        let all = if self.delivered == 0 { 0.0 } else { total as f64 / self.delivered as f64 };
        (mean, max, all)
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
        let mut out = serde_json::json!({
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
            "record_bytes": self.record_bytes.round(),
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
        });
        out["mesh_stranded_subscribers"] = self.mesh_stranded.into();
        out["mesh_split_topics"] = self.mesh_split_topics.into();
        out["mesh_stranded_subscribers_after"] = self.mesh_stranded_after.into();
        out["mesh_split_topics_after"] = self.mesh_split_topics_after.into();
        // Gossipsub's own counts (one macro call would pass serde_json's recursion limit).
        let dups = self.gossip_duplicates_per_delivery();
        let extra = serde_json::json!({
            "gossip": format!("{:?}", self.config.gossip),
            "idle": format!("{:?}", self.config.idle),
            "gossip_metrics": self.config.gossip_metrics,
            "idle_cpu_cores_settled": round(self.idle_cpu_settled),
            "idle_events": self.idle_events,
            "settle_s": self.config.settle.as_secs_f64(),
            "idle_wait_s": self.config.idle_wait.as_secs_f64(),
            "after_s": self.config.after.unwrap_or(self.config.settle).as_secs_f64(),
            "gossipsub_copies": self.node_gossip.iter().map(|g| g.copies).sum::<u64>(),
            "gossipsub_duplicates": self.node_gossip.iter().map(|g| g.duplicates).sum::<u64>(),
            "gossipsub_duplicates_per_delivery": round(dups.2),
            "gossipsub_duplicates_per_delivery_node_mean": round(dups.0),
            "gossipsub_duplicates_per_delivery_node_max": round(dups.1),
            "wire_window_s": round(self.wire_window_s),
            "idle_wire_bytes_per_s_median": self.idle_wire_median_per_s.map(|b| b.round()),
            "idle_wire_bytes_per_s_median_after": self.idle_wire_after_per_s.map(|b| b.round()),
            "idle_wire_bytes_per_s_mean_after": self.idle_wire_after_mean_per_s.map(|b| b.round()),
            "publish_events": self.publish_events,
            "sync_wait_s": round(self.sync_wait_s),
            "wire_per_delivery": self.wire_breakdown(),
        });
        if let (Some(out), serde_json::Value::Object(extra)) = (out.as_object_mut(), extra) {
            out.extend(extra);
        }
        out
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
                "gossip meshes before the posts",
                format!(
                    "{} topics split, {} subscribers outside their topic's largest part",
                    self.mesh_split_topics, self.mesh_stranded
                ),
            ),
            (
                "gossip meshes at the end",
                format!(
                    "{} topics split, {} subscribers outside their topic's largest part",
                    self.mesh_split_topics_after, self.mesh_stranded_after
                ),
            ),
            (
                "then quiet",
                format!("after {:.1} s more (idle: {:.2} cores)", self.quiet_s, self.idle_cpu),
            ),
            (
                "idle before the first post",
                format!(
                    "{:.3} cores over {:.0} s",
                    self.idle_cpu_settled,
                    self.config.settle.as_secs_f64()
                ),
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
                        "{b:.0} B, {} B over the idle rate of {:.0} kB/s (median; IP \
                         packets, all protocols, publish phase and tail; {})",
                        over.map_or("?".into(), |o| format!("{o:.0}")),
                        self.idle_rate().unwrap_or(0.0) / 1000.0,
                        if self.own_netns {
                            "this run's own network namespace"
                        } else {
                            "the whole machine's loopback"
                        }
                    ),
                    (None, _) => "unknown".into(),
                },
            ),
            ("gossipsub duplicates", {
                let (mean, max, all) = self.gossip_duplicates_per_delivery();
                format!(
                    "{all:.2} per delivery (per node: mean {mean:.2}, max {max:.2}); \
                         copies dropped by gossipsub"
                )
            }),
            ("mean signed record", format!("{:.0} B", self.record_bytes)),
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
    loopback_tx(0)
}

/// Packets sent on the loopback interface so far, if readable.
pub fn loopback_tx_packets() -> Option<u64> {
    loopback_tx(1)
}

/// Transmit counter `i` of the loopback interface (0 bytes, 1 packets).
fn loopback_tx(i: usize) -> Option<u64> {
    let dev = std::fs::read_to_string("/proc/net/dev").ok()?;
    let line = dev.lines().find_map(|l| l.trim_start().strip_prefix("lo:"))?;
    // Eight receive counters, then the transmit ones.
    line.split_whitespace().nth(8 + i)?.parse().ok()
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
