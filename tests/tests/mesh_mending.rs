//! A record that gossip missed mends the mesh it missed (issue 21, `node/src/net/mend.rs`):
//! two parts of a topic's mesh, each closed on itself, stay apart with nothing to mix them
//! (no lots, `GossipTuning::KITH`); a post from one part reaches the other only by sync,
//! and that sync's catch makes each node of the part graft a peer outside it. In-process
//! nodes on 127.0.0.1 (OS ports, mDNS off).
//!
//! Its own test process: it runs its nodes with a faster gossip set, so that the rounds
//! of opportunistic grafting a daemon runs every 2 minutes come every second, and with
//! no periodic sync round (a round could fetch the post before gossip counts as late).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashSet, time::Duration};

use kith_node::net::{set_process_gossip_tuning, GossipTuning};
use kith_tests::{
    mesh::{meshes, parts, syncs_over, two_closed_groups, without_periodic_sync},
    TestNode,
};

/// A record is late (gossip missed it) once it is this old.
const GRACE: Duration = Duration::from_millis(300);

/// KITH without lots, with a 100 ms heartbeat, a round of opportunistic grafting about
/// every 10 heartbeats, and no outbound quota (so that the only graft a node at D_lo or
/// more makes is the opportunistic one); a record is late after [`GRACE`].
fn mending() -> GossipTuning {
    GossipTuning {
        heartbeat: Duration::from_millis(100),
        mixing_ticks: 10,
        mixing_peers: 1,
        mesh_outbound_min: 0,
        mend_grace: Some(GRACE),
        ..GossipTuning::KITH
    }
}

/// Polls the parts of `topic`'s mesh for up to 5 s; whether it became one.
async fn joins(nodes: &[TestNode], topic: &str) -> bool {
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if parts(&meshes(nodes, topic).await).len() == 1 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_came_by_sync_mends_the_mesh_it_missed() {
    assert_eq!(GossipTuning::KITH.mesh_lot, 0.0, "this test is about a mesh without lots");
    set_process_gossip_tuning(mending());
    without_periodic_sync();
    // Two groups of four, each connected within itself only, take #mend.
    let (nodes, topic) = two_closed_groups("mend").await;
    // Then every node of the second group but its first, the author, connects to every
    // node of the first group: no node is under D_lo and every score is equal, so
    // nothing grafts across. (An author whose mesh is under D sends a new post to
    // other peers of the topic too, at random: it must not reach the first group
    // that way.)
    // The author refuses connections with the first group (its peers would otherwise
    // lead the first group to it, through the DHT).
    for n in &nodes[..4] {
        nodes[4].node.net().set_blocked(n.id().to_peer_id().unwrap(), true).await;
    }
    for i in 5..8 {
        for j in 0..4 {
            nodes[i].dial(&nodes[j]).await;
        }
    }
    for i in 5..8 {
        for j in 0..4 {
            nodes[i].wait_connected(&nodes[j]).await;
        }
    }
    // The syncs each new connection starts are over (one still asking could fetch the
    // post before gossip counts as late).
    syncs_over(&nodes).await;

    // A post counts as missed only if written a grace or more after the topic was taken
    // (the mesh had time to form); the posts below are written at least this late.
    tokio::time::sleep(GRACE * 2).await;

    // Each missed post is one more chance: a mend grafts a peer at random, and that
    // peer's own heartbeat may prune it again (a quarter of the time).
    let mut mended = false;
    for round in 0..5 {
        let mut split = parts(&meshes(&nodes, &topic).await);
        split.sort_by_key(|p| p.iter().min().copied());
        assert_eq!(
            split,
            [HashSet::from([0, 1, 2, 3]), HashSet::from([4, 5, 6, 7])],
            "the groups' meshes before post {round}"
        );
        let post = nodes[4].post(&format!("post {round} from the second group #mend")).await;
        // Gossip does not cross: after three times the grace, the first group has
        // nothing. (A wait for something that must not happen.)
        tokio::time::sleep(GRACE * 3).await;
        for n in &nodes[..4] {
            assert!(n.feed_all(Some("mend"), None).await.iter().all(|i| i.id != post));
        }
        // Sync brings it, late, to the first node of the first group, which mends #mend
        // and passes it on to the others.
        for n in &nodes[..4] {
            n.sync().await;
            n.wait_record(&post).await;
        }
        if joins(&nodes, &topic).await {
            eprintln!("#mend mended after post {round}");
            mended = true;
            break;
        }
        // Not this time: the next post comes after the hold, when #mend may be mended
        // again.
        tokio::time::sleep(mending().mend_hold()).await;
    }
    assert!(mended, "five missed posts and #mend's mesh still in two parts");
    // The first node of the first group to sync passed the post on to the others (so
    // they may have had it by gossip before their own sync) and mended.
    let mut mends = 0;
    for n in &nodes[..4] {
        let events = n.node.net().stats().await.unwrap().events;
        mends += events.keys().filter(|k| k.starts_with("mesh mend: a record came by")).count();
    }
    assert!(mends >= 1, "no mend counted");

    // Gossip now carries a post across (no periodic sync round runs in this test).
    let post = nodes[4].post("across the mended #mend").await;
    for n in &nodes[..4] {
        n.wait_record(&post).await;
    }
    for n in nodes {
        n.stop().await;
    }
}
