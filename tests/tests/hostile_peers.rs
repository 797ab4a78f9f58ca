//! What a hostile peer could do to a node (issue #13), each attack reproduced against real
//! in-process nodes on 127.0.0.1 with attackers built on [`kith_tests::hostile`]: every
//! test here failed against the node before its fix and passes now. `docs/reliability.md`
//! lists them with the figures they print.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kith_node::api::Request;
use kith_protocol::{Keypair, RecordKind, Topic, VerifiedRecord};
use kith_tests::{eventually, hostile::HostilePeer, signed_log, TestNode, DEADLINE};

/// `n` reposts by `author`, each of the record before it, after `first` (seq 1).
fn repost_chain(author: &Keypair, first: &VerifiedRecord, n: u64) -> Vec<VerifiedRecord> {
    let mut out = vec![first.clone()];
    for seq in 2..=n + 1 {
        let prev = out.last().unwrap().id();
        let record = kith_protocol::Record {
            author: author.id(),
            seq,
            prev: Some(prev),
            timestamp: first.record().timestamp + seq,
            kind: RecordKind::Repost { target: prev },
        };
        out.push(record.sign(author).unwrap());
    }
    out
}

/// Finding 1: a chain of reposts followed recursively overflowed the stack of a node with
/// a live feed open (about 2,000 records, 360 kB, from one author). Now a repost is
/// resolved one level, and a repost of anything but a post is not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_reposts_does_not_crash_a_node_with_a_live_feed() {
    let node = TestNode::start("victim").await;
    let author = Keypair::from_secret_bytes(&[0x31; 32]);
    node.follow_id(&author.id()).await;
    let mut live = node.node.live_feed(None, None).unwrap();
    let first = signed_log(&author, 1, |_| "the post".into()).remove(0);
    let chain = repost_chain(&author, &first, 3_000);

    // Each attacker sends less than the per-peer gossip burst, so that on the node before
    // the fix every record was stored and the chain grew one level per record.
    let topic = Topic::Author(author.id()).to_string();
    let peer = node.id().to_peer_id().unwrap();
    let mut expected = 0;
    for slice in chain.chunks(750) {
        let attacker = HostilePeer::start(libp2p::identity::Keypair::generate_ed25519());
        attacker.dial(&node.addr()).await;
        eventually(DEADLINE, "the attacker to see the node on the author's topic", || async {
            attacker.sees_subscribed(peer, &topic).await.then_some(())
        })
        .await;
        let bytes = slice.iter().map(|r| r.bytes().to_vec()).collect();
        assert_eq!(attacker.publish(&topic, bytes).await.sent, slice.len());
        expected += slice.len() as u64;
        // Every message reaches the node and gets a verdict, and the node still answers.
        eventually(DEADLINE, "the node to take the slice", || async {
            let c = node.status().await.record_counters;
            (c.accepted + c.duplicate + c.unwanted >= expected).then_some(())
        })
        .await;
    }
    // The live feed showed the post (first, or as a repost of it) and is still open.
    let item = tokio::time::timeout(DEADLINE, live.next()).await.unwrap().unwrap();
    assert_eq!(item.id, first.id().to_string());
    let c = node.status().await.record_counters;
    assert!(c.unwanted > 0, "reposts of reposts were refused: {c:?}");
    node.ok(Request::Feed { tag: None, author: None, limit: Some(10_000), live: false }).await;
    node.stop().await;
}
