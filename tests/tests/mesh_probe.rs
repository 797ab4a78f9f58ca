//! An author's probe carries its post into a part of the mesh that gossip did not reach
//! (issue 21, `node/src/core/sync/probe.rs`): two parts of a hashtag's mesh, each closed
//! on itself; the author, in one, is connected to every node of the other. A while after
//! the post goes out, the author sends a digest of the tag to two subscribers outside its
//! mesh; each finds it ahead, pulls the post, and passes it on to its own part, so that
//! every node of that part has it with no periodic sync round at all. In-process nodes on
//! 127.0.0.1 (OS ports, mDNS off).
//!
//! Its own test process: it runs its nodes with a faster gossip set (a 100 ms heartbeat,
//! a probe 600 ms after a post) and no periodic sync round.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashSet, time::Duration};

use kith_node::net::{set_process_gossip_tuning, GossipTuning};
use kith_tests::{
    mesh::{meshes, parts, syncs_over, two_closed_groups, without_periodic_sync},
    TestNode,
};

/// A record is late (gossip missed it) once it is this old.
const GRACE: Duration = Duration::from_millis(300);

/// KITH without lots, with a 100 ms heartbeat, no outbound quota (so that nothing grafts
/// across the parts), a grace of [`GRACE`] and probes 600 ms after a post.
fn probing() -> GossipTuning {
    GossipTuning {
        heartbeat: Duration::from_millis(100),
        mesh_outbound_min: 0,
        mend_grace: Some(GRACE),
        probe_after: Some(GRACE * 2),
        ..GossipTuning::KITH
    }
}

/// The events counted by each of `nodes` whose name starts with `prefix`, summed.
async fn counted(node: &TestNode, prefix: &str) -> u64 {
    let events = node.node.net().stats().await.unwrap().events;
    events.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, n)| *n).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_reaches_a_part_of_the_mesh_gossip_missed_by_the_authors_probe() {
    assert_eq!(GossipTuning::KITH.mesh_lot, 0.0, "this test is about a mesh without lots");
    set_process_gossip_tuning(probing());
    without_periodic_sync();
    // Two groups of four, each connected within itself only, take #probe; then the
    // author (the second group's first node) connects to every node of the first. Every
    // node is at D_lo or more and every score is equal: nothing grafts across.
    let (nodes, topic) = two_closed_groups("probe").await;
    for j in 0..4 {
        nodes[4].dial(&nodes[j]).await;
    }
    for j in 0..4 {
        nodes[4].wait_connected(&nodes[j]).await;
    }
    // The syncs each new connection starts are over (one still asking could fetch the
    // post without the probe).
    syncs_over(&nodes).await;
    // A post counts as missed only if written a grace or more after the topic was taken.
    tokio::time::sleep(GRACE * 2).await;
    let mut split = parts(&meshes(&nodes, &topic).await);
    split.sort_by_key(|p| p.iter().min().copied());
    assert_eq!(split, [HashSet::from([0, 1, 2, 3]), HashSet::from([4, 5, 6, 7])]);

    let post = nodes[4].post("from the second group #probe").await;
    for n in &nodes {
        n.wait_record(&post).await;
    }
    // The author's probe went to two of the first group, which pulled the post and
    // passed it on; the other two got it from their mesh.
    let mut passed_on = 0;
    for n in &nodes[..4] {
        passed_on +=
            u64::from(counted(n, "mesh mend: records that came by sync passed on").await > 0);
    }
    assert!((1..=2).contains(&passed_on), "{passed_on} nodes of the first group passed it on");
    for n in &nodes[4..] {
        assert_eq!(counted(n, "mesh mend").await, 0, "the author's part missed nothing");
    }
    for n in nodes {
        n.stop().await;
    }
}
