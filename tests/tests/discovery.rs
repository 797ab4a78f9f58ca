//! Reaching peers beyond the LAN on loopback: nodes that know only a bootstrap node find
//! each other through the DHT (by id for people, by provider records for hashtags).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kith_node::api::{Request, Response};
use kith_protocol::{Tag, Topic};
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

/// Issue #13, item 7: a node with `dht_tags = false` does not announce its hashtags to the
/// DHT. D (tags kept out) subscribes to #quiet first, then E (the default) does: the DHT
/// comes to list E as a provider of #quiet, and never D. Before the setting, every node
/// announced every subscribed tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_dht_tags_off_is_not_listed_as_a_tag_provider() {
    let r = TestNode::start("r").await;
    let d = TestNode::start_without_dht_tags("d", vec![r.addr()]).await;
    let e = TestNode::start_with_bootstrap("e", vec![r.addr()]).await;
    for n in [&d, &e] {
        eventually(DEADLINE, "bootstrap connection", || async {
            connected(n, &r).await.then_some(())
        })
        .await;
    }
    d.subscribe("quiet").await;
    e.subscribe("quiet").await;
    // The DHT key of a tag is its topic name (`tag_key` in node/src/node/discovery.rs).
    let key = Topic::Tag(Tag::parse("quiet").unwrap()).to_string().into_bytes();
    let (d_peer, e_peer) = (d.id().to_peer_id().unwrap(), e.id().to_peer_id().unwrap());
    let providers = eventually(DEADLINE, "the DHT to list E for #quiet", || async {
        let found = r.node.net().find_providers(key.clone()).await;
        found.contains(&e_peer).then_some(found)
    })
    .await;
    assert!(!providers.contains(&d_peer), "D announced #quiet: {providers:?}");
    for n in [d, e, r] {
        n.stop().await;
    }
}

/// A restarted node listens on a new port, so a friend who had dialled it cannot find it
/// again; the restarted node must dial the friend. It can: following someone makes the
/// node reach them, and the address it dialled them at is remembered.
#[tokio::test]
async fn a_restarted_node_redials_a_followed_peer_that_had_dialled_it() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    b.dial(&a).await;
    a.follow(&b).await;
    let b_peer = b.id().to_peer_id().unwrap();
    let b_port = format!("/tcp/{}/", b.port());
    // A is already connected (B dialled it), so its follow dials nothing; it learns
    // where B listens when it dials B back for B's AutoNAT probe. B's first probe comes
    // 2 s after B starts; on a loaded machine B may not have reached A by then, and the
    // next probe comes 20 s later (`IdleTuning::autonat_retry`): past `DEADLINE` from
    // here. Three times it leaves room for two probes.
    eventually(DEADLINE * 3, "A to remember where B listens", || async {
        let known = a.node.store().known_peers_of(&b_peer.to_string()).ok()?;
        known.iter().any(|addr| addr.contains(&b_port)).then_some(())
    })
    .await;
    let a = a.restart_on_new_port().await;
    eventually(DEADLINE, "A to reconnect to B", || async {
        let peers = a.node.net().peers().await.ok()?;
        peers.iter().any(|p| p.peer == b_peer).then_some(())
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// A dial to where a peer listens now connects even while another dial of that peer is
/// under way to where nobody answers (as a queued message's dial to the address
/// remembered before the peer restarted). The second dial used to be answered
/// "connected" at once, with no connection made, and two restarted daemons could stay
/// apart for good: each took the other for reached (docs/reliability.md, dm kill -9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_to_a_new_address_connects_while_a_dial_to_an_old_one_hangs() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    let b_peer = b.id().to_peer_id().unwrap();
    // Takes TCP connections (the kernel's backlog) and never answers: a dial there waits
    // in its handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let old = format!("/ip4/127.0.0.1/tcp/{}/p2p/{b_peer}", silent.local_addr().unwrap().port());
    let net = a.node.net();
    let mut hanging = Box::pin(net.dial(old.parse().unwrap()));
    // Polled once: the first dial is handed to the network task, which takes commands in
    // order.
    assert!(futures::poll!(&mut hanging).is_pending(), "the dial to nobody answered");
    assert_eq!(net.dial(b.addr()).await.unwrap(), b_peer);
    assert!(net.is_connected(b_peer).await, "the dial was answered without a connection");
    drop((hanging, silent));
    a.stop().await;
    b.stop().await;
}
