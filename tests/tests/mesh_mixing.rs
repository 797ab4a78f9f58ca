//! Lots and opportunistic grafting mix a topic's mesh (issue 21; tried in session 24,
//! off in `GossipTuning::KITH`): a part of the mesh in which every node sits at or above
//! D_lo never grafts on its own, and no post crosses into it. In-process nodes on
//! 127.0.0.1 (OS ports, mDNS off).
//!
//! This file is its own test process: it runs its nodes with lots on and a faster gossip
//! set ([`mixing`]) so that the rounds a daemon runs every 2 minutes come every second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashSet, time::Duration};

use kith_node::net::{set_process_gossip_tuning, GossipTuning};
use kith_tests::{
    eventually,
    mesh::{meshes, parts, two_closed_groups},
    TestNode, DEADLINE,
};

/// Lots on (KITH has none), a 100 ms heartbeat and a round of opportunistic grafting
/// about every 10 heartbeats, one peer a round; no outbound quota (mesh_outbound_min 0),
/// so that the only graft a node at D_lo or more makes is the opportunistic one.
fn mixing() -> GossipTuning {
    GossipTuning {
        heartbeat: Duration::from_millis(100),
        mesh_lot: 0.1,
        mixing_ticks: 10,
        mixing_peers: 1,
        mesh_outbound_min: 0,
        ..GossipTuning::KITH
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_closed_parts_of_a_mesh_mix_into_one() {
    set_process_gossip_tuning(mixing());
    // Two groups of four, each connected within itself only, take #mix.
    let (nodes, topic) = two_closed_groups("mix").await;
    let mut before = parts(&meshes(&nodes, &topic).await);
    before.sort_by_key(|p| p.iter().min().copied());
    let groups = [HashSet::from([0, 1, 2, 3]), HashSet::from([4, 5, 6, 7])];
    assert_eq!(before, groups, "the groups' meshes before they meet");

    // Now every node of the second group connects to every node of the first. No node is
    // under D_lo, so the heartbeat grafts nobody new; only opportunistic grafting, towards
    // peers whose lot ranks above the mesh's median, joins the parts.
    for i in 4..8 {
        for j in 0..4 {
            nodes[i].dial(&nodes[j]).await;
        }
    }
    for i in 4..8 {
        for j in 0..4 {
            nodes[i].wait_connected(&nodes[j]).await;
        }
    }
    let joined = eventually(DEADLINE, "the two parts of #mix's mesh to join", || async {
        let p = parts(&meshes(&nodes, &topic).await);
        (p.len() == 1).then_some(p)
    })
    .await;
    assert_eq!(joined[0].len(), 8);

    // And a post from the first group now reaches the second.
    let post = nodes[0].post("across #mix").await;
    for n in &nodes[4..] {
        n.wait_record(&post).await;
    }
    for n in nodes {
        n.stop().await;
    }
}

/// Each node draws a lot for each peer it meets: a small random score, so that peers of
/// equal credit differ. Three peers of one node: each scored within [0, `mesh_lot`), and
/// not all alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_peer_draws_its_own_lot() {
    set_process_gossip_tuning(mixing());
    let hub = TestNode::start("hub").await;
    let mut others = Vec::new();
    for name in ["b", "c", "d"] {
        let n = TestNode::start(name).await;
        n.dial(&hub).await;
        hub.wait_connected(&n).await;
        others.push(n);
    }
    let lot = mixing().mesh_lot;
    let scores = eventually(DEADLINE, "the hub to score its three peers", || async {
        let mut scores = Vec::new();
        for n in &others {
            scores.push(hub.score_of(&n.id().to_peer_id().unwrap()).await?);
        }
        Some(scores)
    })
    .await;
    for s in &scores {
        assert!((0.0..lot).contains(s), "a lot outside [0, {lot}): {scores:?}");
    }
    assert!(
        scores.iter().any(|s| *s != scores[0]),
        "three draws alike (or none drawn): {scores:?}"
    );
    hub.stop().await;
    for n in others {
        n.stop().await;
    }
}
