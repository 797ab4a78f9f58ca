//! A gossip topic's mesh as seen from a set of in-process nodes: each node's mesh peers,
//! and the parts the mesh stands in (`mesh_mixing.rs`, `mesh_mending.rs`).

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;

use kith_protocol::{Tag, Topic};

use crate::{eventually, TestNode, DEADLINE};

/// Every node's mesh peers on `topic`, as indexes into `nodes`.
pub async fn meshes(nodes: &[TestNode], topic: &str) -> Vec<HashSet<usize>> {
    let index: HashMap<PeerId, usize> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.id().to_peer_id().ok().map(|p| (p, i)))
        .collect();
    let mut out = Vec::new();
    for n in nodes {
        let peers = n.node.net().mesh_peers(topic.to_owned()).await.unwrap_or_default();
        out.push(peers.iter().filter_map(|p| index.get(p).copied()).collect());
    }
    out
}

/// The parts of the mesh graph (a link counts both ways), each as its nodes.
pub fn parts(meshes: &[HashSet<usize>]) -> Vec<HashSet<usize>> {
    let mut links: Vec<HashSet<usize>> = meshes.to_vec();
    for (a, peers) in meshes.iter().enumerate() {
        for &b in peers {
            links[b].insert(a);
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for start in 0..meshes.len() {
        if !seen.insert(start) {
            continue;
        }
        let (mut part, mut todo) = (HashSet::from([start]), vec![start]);
        while let Some(a) = todo.pop() {
            for &b in &links[a] {
                if seen.insert(b) {
                    part.insert(b);
                    todo.push(b);
                }
            }
        }
        out.push(part);
    }
    out
}

/// Starts eight nodes in two groups of four (`[0..4]`, `[4..8]`), each group connected
/// within itself only, all taking `tag`; returns them and the tag's topic once every
/// node's mesh of it holds D_lo (2) peers or more: two parts, no node under D_lo.
pub async fn two_closed_groups(tag: &str) -> (Vec<TestNode>, String) {
    let mut nodes = Vec::new();
    for i in 0..8 {
        nodes.push(TestNode::start(&format!("n{i}")).await);
    }
    for group in [0, 4] {
        for i in group..group + 4 {
            for j in i + 1..group + 4 {
                nodes[i].dial(&nodes[j]).await;
            }
        }
    }
    for n in &nodes {
        n.subscribe(tag).await;
    }
    let topic = Topic::Tag(Tag::parse(tag).unwrap()).to_string();
    eventually(DEADLINE, "each group's mesh to hold every node at D_lo or more", || async {
        let m = meshes(&nodes, &topic).await;
        m.iter().all(|peers| peers.len() >= 2).then_some(())
    })
    .await;
    (nodes, topic)
}

/// Makes every node started after this call in this process run no periodic sync round
/// (one could fetch a post before gossip counts as late, or before a probe).
pub fn without_periodic_sync() {
    let hour = std::time::Duration::from_secs(3600);
    kith_node::net::set_process_idle_tuning(kith_node::net::IdleTuning {
        sync_interval: hour,
        sync_interval_max: hour,
        ..kith_node::net::IdleTuning::KITH
    });
}

/// Waits until no node of `nodes` is syncing with a peer (the syncs that new
/// connections start are over).
pub async fn syncs_over(nodes: &[TestNode]) {
    eventually(DEADLINE, "the syncs of the new connections to end", || async {
        for n in nodes {
            if n.status().await.sync.peers_syncing > 0 {
                return None;
            }
        }
        Some(())
    })
    .await;
}
