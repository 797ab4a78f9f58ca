//! Records dated back on purpose (issue 21, `node/src/net/mend.rs`): a peer that holds
//! records of many topics, written a little while ago, makes a node that syncs them take
//! each for a record gossip missed. It mends at most [`MAX_BOOSTED`] meshes at once: the
//! peer buys a few boosts, not churn in every mesh. In-process nodes on 127.0.0.1.
//!
//! Its own test process: a record is late after 300 ms here, and a boost lasts 60 s (a
//! 100 ms heartbeat, opportunistic grafting every 240 heartbeats), so that every boost
//! of the test is still on when it counts them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kith_node::net::{set_process_gossip_tuning, GossipTuning, MAX_BOOSTED};
use kith_protocol::{Keypair, Post, Record, RecordKind, Tag, Topic};
use kith_tests::{eventually, mesh::without_periodic_sync, now_ms, TestNode, DEADLINE};

/// A record is late (gossip missed it) once it is this old.
const GRACE: Duration = Duration::from_millis(300);

fn dated() -> GossipTuning {
    GossipTuning {
        heartbeat: Duration::from_millis(100),
        mixing_ticks: 240,
        mend_grace: Some(GRACE),
        ..GossipTuning::KITH
    }
}

/// Records dated back on purpose, on many topics at once, mend at most
/// [`MAX_BOOSTED`]-many meshes: a peer that plants them buys a few boosts, not churn in
/// every mesh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_dated_back_on_many_topics_boost_at_most_four_peers() {
    set_process_gossip_tuning(dated());
    // Only the victim syncs: a node whose periodic round fetched the records from the
    // holder would take them for missed too and pass them on to its meshes, and the
    // victim would have some by gossip.
    without_periodic_sync();
    assert!(dated().mend_hold() >= Duration::from_secs(60));
    let mut nodes = Vec::new();
    // Twelve, so that each tag has eight peers outside the victim's mesh of it: more than
    // the boosts can use up.
    for i in 0..12 {
        nodes.push(TestNode::start(&format!("m{i}")).await);
    }
    for i in 0..12 {
        for j in i + 1..12 {
            nodes[i].dial(&nodes[j]).await;
        }
    }
    let tags: Vec<String> = (0..8).map(|i| format!("dated{i}")).collect();
    for n in &nodes {
        for tag in &tags {
            n.subscribe(tag).await;
        }
    }
    let (victim, holder) = (&nodes[0], &nodes[1]);
    let topics: Vec<String> =
        tags.iter().map(|t| Topic::Tag(Tag::parse(t).unwrap()).to_string()).collect();
    eventually(DEADLINE, "the victim's mesh of every tag to hold D_lo or more", || async {
        for topic in &topics {
            if victim.node.net().mesh_peers(topic.clone()).await.ok()?.len() < 2 {
                return None;
            }
        }
        Some(())
    })
    .await;
    // Records count as missed only if written a grace after the topics were taken.
    tokio::time::sleep(GRACE * 4).await;

    // One record on each tag, by a stranger, dated twice the grace back, held by one peer
    // only (planted, not gossiped): the victim's sync fetches all eight.
    let written = now_ms() - 2 * GRACE.as_millis() as u64;
    let mut ids = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        let key = Keypair::from_secret_bytes(&[40 + i as u8; 32]);
        let text = format!("dated back #{tag}");
        let kind = RecordKind::Post(Post {
            text,
            reply_to: None,
            mentions: vec![],
            expires_at: None,
            attachments: vec![],
        });
        let record = Record { author: key.id(), seq: 1, prev: None, timestamp: written, kind };
        let signed = record.sign(&key).unwrap();
        ids.push(signed.id());
        holder.ingest(signed.bytes());
    }
    // A peer serves two strangers at once and refuses more (`node/sync/serve.rs`): the
    // holder may turn some of the victim's questions away while the others sync with it.
    // The victim asks again until it holds all eight; each came by sync.
    eventually(DEADLINE, "the victim to fetch the eight records by sync", || async {
        if ids.iter().all(|id| victim.node.store().has(id).unwrap_or(false)) {
            return Some(());
        }
        victim.sync().await;
        None
    })
    .await;
    let mends = || async {
        let events = victim.node.net().stats().await.unwrap().events;
        events.get("mesh mend: a record came by sync, not gossip").copied().unwrap_or(0)
    };
    eventually(DEADLINE, "the victim to mend four meshes", || async {
        (mends().await >= MAX_BOOSTED as u64).then_some(())
    })
    .await;
    let mut boosted = 0;
    for n in &nodes[1..] {
        if victim.score_of(&n.id().to_peer_id().unwrap()).await.unwrap_or(0.0) >= 19.0 {
            boosted += 1;
        }
    }
    assert_eq!(boosted, MAX_BOOSTED, "peers boosted at once");
    assert_eq!(mends().await, MAX_BOOSTED as u64, "eight topics missed, four boosts at most");
    for n in nodes {
        n.stop().await;
    }
}
