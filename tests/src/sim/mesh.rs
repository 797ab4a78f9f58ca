//! The gossipsub meshes of the simulated topics, read from every subscriber: a topic's
//! mesh split in parts strands the subscribers outside the part a post enters.

use std::collections::{HashMap, HashSet, VecDeque};

use kith_protocol::RecordId;
use libp2p::PeerId;

use super::{peer_index, plan, probe::topic_string, Plan, Sent};
use crate::TestNode;

/// The gossipsub meshes of the simulated topics: each topic's subscribers as a graph
/// whose edges are mesh links. A post reaches only the part of that graph its first
/// copies enter (no IHAVE gossip repairs a split), so a subscriber outside the largest
/// part is stranded until history sync fetches what it missed.
pub(super) struct Meshes {
    /// Per topic: the sizes of its parts, largest first.
    pub(super) parts: Vec<Vec<usize>>,
    /// Per topic: node index -> the part it is in (index into that topic's sizes).
    pub(super) part_of: Vec<HashMap<usize, usize>>,
}

impl Meshes {
    /// Subscribers outside the largest part of their topic's mesh, over all topics.
    pub(super) fn stranded(&self) -> usize {
        self.parts.iter().map(|sizes| sizes.iter().skip(1).sum::<usize>()).sum()
    }

    /// Topics whose mesh is in more than one part.
    pub(super) fn split_topics(&self) -> usize {
        self.parts.iter().filter(|sizes| sizes.len() > 1).count()
    }
}

/// Reads every subscriber's mesh peers for each of `topics` (name, subscribers).
pub(super) async fn meshes(
    nodes: &[TestNode],
    index: &HashMap<PeerId, usize>,
    topics: &[(String, Vec<usize>)],
) -> Meshes {
    let mut out = Meshes { parts: Vec::new(), part_of: Vec::new() };
    for (topic, subs) in topics {
        let members: HashSet<usize> = subs.iter().copied().collect();
        let mut links: HashMap<usize, Vec<usize>> = HashMap::new();
        for &s in subs {
            let peers = nodes[s].node.net().mesh_peers(topic.clone()).await.unwrap_or_default();
            for v in peers.iter().filter_map(|p| index.get(p).copied()) {
                if members.contains(&v) {
                    links.entry(s).or_default().push(v);
                    links.entry(v).or_default().push(s);
                }
            }
        }
        let mut part_of: HashMap<usize, usize> = HashMap::new();
        let mut sizes = Vec::new();
        for &s in subs {
            if part_of.contains_key(&s) {
                continue;
            }
            let part = sizes.len();
            part_of.insert(s, part);
            let mut queue = VecDeque::from([s]);
            let mut size = 0;
            while let Some(u) = queue.pop_front() {
                size += 1;
                for &v in links.get(&u).map(Vec::as_slice).unwrap_or_default() {
                    if let std::collections::hash_map::Entry::Vacant(e) = part_of.entry(v) {
                        e.insert(part);
                        queue.push_back(v);
                    }
                }
            }
            sizes.push(size);
        }
        // Largest first: renumber the parts by size.
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by_key(|&p| std::cmp::Reverse(sizes[p]));
        let rank: HashMap<usize, usize> = order.iter().enumerate().map(|(r, &p)| (p, r)).collect();
        out.parts.push(order.iter().map(|&p| sizes[p]).collect());
        out.part_of.push(part_of.into_iter().map(|(n, p)| (n, rank[&p])).collect());
    }
    out
}

/// The peer index and each simulated topic's name and subscribers, for [`meshes`].
pub(super) type MeshTopics =
    (HashMap<PeerId, usize>, Vec<(String, Vec<usize>)>, Vec<plan::SimTopic>);

pub(super) fn mesh_topics(plan: &Plan, nodes: &[TestNode]) -> Result<MeshTopics, String> {
    let index = peer_index(nodes);
    let mut named = Vec::new();
    let mut kinds = Vec::new();
    for (topic, subs, _) in plan.topics() {
        named.push((topic_string(nodes, topic)?, subs));
        kinds.push(topic);
    }
    Ok((index, named, kinds))
}

/// On stderr: each topic whose mesh is in more than one part (read before the posts, and
/// again at the end of the run), with the parts' sizes.
pub(super) fn say_splits(kinds: &[plan::SimTopic], before: &Meshes) {
    for (kind, sizes) in kinds.iter().zip(&before.parts).filter(|(_, sizes)| sizes.len() > 1) {
        eprintln!("sim: the mesh of {kind:?} is in parts of {sizes:?} subscribers");
    }
}

/// On stderr: each (node, post) not delivered by the deadline (up to 20), with the part
/// of each of the post's topics' mesh the node was in before the posts and is in now.
pub(super) fn say_missing(
    plan: &Plan,
    sent: &[Sent],
    missing: &HashSet<(usize, RecordId)>,
    kinds: &[plan::SimTopic],
    before: &Meshes,
    now: &Meshes,
) {
    let mut lines: Vec<String> = Vec::new();
    for s in sent {
        for n in plan.expected(&s.post) {
            if !missing.contains(&(n, s.rid)) {
                continue;
            }
            let mut parts = Vec::new();
            for (t, kind) in kinds.iter().enumerate() {
                let on = match kind {
                    plan::SimTopic::Author(a) => *a == s.post.author,
                    plan::SimTopic::Tag(tag) => s.post.tags.contains(tag),
                };
                if let (true, Some(b), Some(c)) =
                    (on, before.part_of[t].get(&n), now.part_of[t].get(&n))
                {
                    parts.push(format!(
                        "{kind:?}: part {b} of {:?} before, {c} of {:?} now",
                        before.parts[t], now.parts[t]
                    ));
                }
            }
            lines.push(format!("node {n}, author {}: {}", s.post.author, parts.join("; ")));
        }
    }
    lines.sort();
    lines.dedup();
    eprintln!("sim: {} deliveries missing; by node and author:", missing.len());
    for line in lines.iter().take(20) {
        eprintln!("sim:   {line}");
    }
}
