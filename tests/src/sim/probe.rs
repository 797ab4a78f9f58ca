//! What the simulation reads from its nodes and the machine while it runs: readiness,
//! counters, sync rounds, topic reachability and the idle wire rate.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use kith_node::api::{Request, Response};
use kith_protocol::{Tag, Topic};
use libp2p::PeerId;

use super::{
    plan::{tag_name, SimTopic},
    report::{cpu_time, loopback_tx_bytes},
};
use crate::TestNode;

/// The window over which the process's CPU use is measured to tell it is quiet.
pub(super) const QUIET_WINDOW: Duration = Duration::from_millis(500);
/// The idle wire rate is read in slices this long; their median is the idle rate.
pub(super) const IDLE_SLICE: Duration = Duration::from_secs(1);
/// Below this share of one core the process counts as quiet.
pub(super) const QUIET_CPU: f64 = 0.3;

/// Waits until the process uses less than [`QUIET_CPU`] of a core over a
/// [`QUIET_WINDOW`] (setup syncs, DHT lookups and offers are done), or `deadline`.
pub(super) async fn wait_quiet(deadline: Duration) -> f64 {
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

pub(super) async fn request(node: &TestNode, request: Request) -> Result<Response, String> {
    match node.call(request.clone()).await {
        Response::Error { message, .. } => Err(format!("{}: {request:?}: {message}", node.name)),
        r => Ok(r),
    }
}

/// Each node's gossipsub counters since start (`kith_node::net::Stats::gossip`).
pub(super) async fn gossip_counters(
    nodes: &[TestNode],
) -> Result<Vec<BTreeMap<&'static str, u64>>, String> {
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        let s = node.node.net().stats().await.map_err(|e| format!("{}: {e}", node.name))?;
        out.push(s.gossip);
    }
    Ok(out)
}

/// The swarm events of all nodes since start, by kind.
pub(super) async fn event_counts(
    nodes: &[TestNode],
) -> Result<BTreeMap<&'static str, u64>, String> {
    let mut sum = BTreeMap::new();
    for node in nodes {
        let s = node.node.net().stats().await.map_err(|e| format!("{}: {e}", node.name))?;
        for (kind, n) in s.events {
            *sum.entry(kind).or_default() += n;
        }
    }
    Ok(sum)
}

/// Each node's count of periodic sync rounds completed.
pub(super) async fn sync_rounds(nodes: &[TestNode]) -> Result<Vec<u64>, String> {
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        match request(node, Request::Status).await? {
            Response::Status(s) => out.push(s.sync.rounds),
            r => return Err(format!("{}: unexpected status reply {r:?}", node.name)),
        }
    }
    Ok(out)
}

/// Waits until every node has completed a sync round it had not yet completed on entry,
/// and a second more for the last answers, or `deadline`; returns the seconds waited.
pub(super) async fn wait_sync_round(nodes: &[TestNode], deadline: Duration) -> Result<f64, String> {
    let start = Instant::now();
    let before = sync_rounds(nodes).await?;
    while start.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = sync_rounds(nodes).await?;
        if now.iter().zip(&before).all(|(n, b)| n > b) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            break;
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Sums of (accepted, duplicate, sync fetched) over all nodes.
pub(super) async fn counters(nodes: &[TestNode]) -> Result<(u64, u64, u64), String> {
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

pub(super) fn topic_string(nodes: &[TestNode], topic: SimTopic) -> Result<String, String> {
    Ok(match topic {
        SimTopic::Author(a) => Topic::Author(nodes[a].id()).to_string(),
        SimTopic::Tag(t) => {
            Topic::Tag(Tag::parse(&tag_name(t)).map_err(|e| e.to_string())?).to_string()
        }
    })
}

/// (publisher, topic) pairs from which some subscriber cannot be reached through peers
/// known to be on the topic (only subscribers relay a topic).
pub(super) async fn unreachable_pairs(
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

/// Waits `settle`, reading the loopback byte count every second: the rate of each
/// whole second (none when unreadable).
pub(super) async fn idle_slices(settle: Duration) -> Vec<f64> {
    let start = Instant::now();
    let mut rates = Vec::new();
    let mut last = (loopback_tx_bytes(), Instant::now());
    while start.elapsed() + IDLE_SLICE <= settle {
        tokio::time::sleep(IDLE_SLICE).await;
        let now = (loopback_tx_bytes(), Instant::now());
        if let (Some(a), Some(b)) = (last.0, now.0) {
            rates.push(b.saturating_sub(a) as f64 / (now.1 - last.1).as_secs_f64());
        }
        last = now;
    }
    tokio::time::sleep(settle.saturating_sub(start.elapsed())).await;
    rates
}

/// The median of `v`, if any.
pub(super) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}
