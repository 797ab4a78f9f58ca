//! Reaching peers beyond the LAN on loopback: nodes that know only a bootstrap node find
//! each other through the DHT (by id for people, by provider records for hashtags).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kith_node::api::{Request, Response};
use kith_tests::{eventually, TestNode, DEADLINE};

async fn connected(a: &TestNode, b: &TestNode) -> bool {
    let peer = b.id().to_peer_id().unwrap();
    a.node.net().peers().await.unwrap().iter().any(|p| p.peer == peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_and_tags_found_through_the_dht_via_one_bootstrap_node() {
    let r = TestNode::start("r").await;
    let a = TestNode::start_with_bootstrap("a", vec![r.addr()]).await;
    let b = TestNode::start_with_bootstrap("b", vec![r.addr()]).await;
    for n in [&a, &b] {
        eventually(DEADLINE, "bootstrap connection", || async {
            connected(n, &r).await.then_some(())
        })
        .await;
    }
    assert!(!connected(&a, &b).await, "A and B must not start connected");

    // Following reaches the person through the DHT; each then learns of the other's
    // follow, and they are mutual.
    b.follow(&a).await;
    eventually(DEADLINE, "B to reach A through the DHT", || async {
        connected(&b, &a).await.then_some(())
    })
    .await;
    a.befriend(&b).await;
    // A direct message is delivered over the connection found through the DHT.
    let (_, status) = a.msg(&b, "found you").await;
    eventually(DEADLINE, "delivery", || async {
        let t = a.thread(&b).await;
        (status == "delivered" || t.iter().all(|m| m.status == "delivered")).then_some(())
    })
    .await;
    assert_eq!(b.thread(&a).await.len(), 1);

    // C knows only R and subscribes to #p2p; A posts #p2p: C gets it.
    let c = TestNode::start_with_bootstrap("c", vec![r.addr()]).await;
    eventually(DEADLINE, "C's bootstrap", || async { connected(&c, &r).await.then_some(()) }).await;
    a.subscribe("p2p").await;
    c.subscribe("p2p").await;
    eventually(DEADLINE, "C to find another #p2p node", || async {
        (connected(&c, &a).await || connected(&c, &b).await).then_some(())
    })
    .await;
    let id = a.post("over the DHT #p2p").await;
    c.wait_record(&id).await;
    match c
        .ok(Request::Feed {
            tag: Some("p2p".into()),
            author: None,
            limit: None,
            live: false,
            before: None,
        })
        .await
    {
        Response::Feed { items, .. } => assert!(items.iter().any(|i| i.id == id)),
        r => panic!("unexpected {r:?}"),
    }
    for n in [a, b, c, r] {
        n.stop().await;
    }
}
