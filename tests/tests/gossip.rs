//! Three in-process nodes on 127.0.0.1 (OS ports, mDNS off) connected by dial.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kith_node::api::{Request, Response};
use kith_protocol::{record::SignedRecord, Tag, Topic};
use kith_tests::{eventually, TestNode, DEADLINE};

async fn counters(node: &TestNode) -> kith_node::api::RecordCounters {
    match node.ok(Request::Status).await {
        Response::Status(s) => s.record_counters,
        r => panic!("unexpected {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reaches_follower_and_tag_subscriber_once() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    let c = TestNode::start("c").await;
    b.dial(&a).await;
    c.dial(&a).await;

    // B follows A and also subscribes to #rust, so the post reaches B on two topics.
    b.follow(&a).await;
    b.subscribe("rust").await;
    c.subscribe("#Rust").await;
    let rust = Topic::Tag(Tag::parse("rust").unwrap());
    a.wait_subscriber(&b, &Topic::Author(a.id())).await;
    a.wait_subscriber(&b, &rust).await;
    a.wait_subscriber(&c, &rust).await;

    let id = a.post("hello #rust").await;
    b.wait_record(&id).await;
    c.wait_record(&id).await;

    // In B's timeline once, though it came on the author topic and the tag topic.
    let b_feed = b.feed(None, None).await;
    assert_eq!(b_feed.iter().filter(|p| p.id == id).count(), 1, "{b_feed:?}");
    // Both gossip copies reach B: one is new and the other a duplicate, or both are
    // duplicates when A's offer (history sync, on B's subscription) delivered it first.
    eventually(DEADLINE, "B to see both copies", || async {
        let c = counters(&b).await;
        (c.accepted + c.duplicate >= 2 && c.duplicate >= 1).then_some(())
    })
    .await;
    let after = counters(&b).await;
    assert_eq!(after.rejected, 0);
    assert_eq!(b.node.store().counts().posts, 1);

    // C does not follow A: the post is in C's timeline through the tag, and by tag.
    let c_tag = c.feed(Some("rust"), None).await;
    assert_eq!(c_tag.len(), 1);
    assert_eq!(c_tag[0].text, "hello #rust");
    assert_eq!(c_tag[0].tags, vec!["rust".to_string()]);
    assert_eq!(c_tag[0].author, a.id().to_string());
    assert_eq!(c.feed(None, None).await.len(), 1);

    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_record_is_rejected_and_stored_nowhere() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    let c = TestNode::start("c").await;
    b.dial(&a).await;
    c.dial(&b).await;
    b.subscribe("rust").await;
    c.subscribe("rust").await;
    let rust = Topic::Tag(Tag::parse("rust").unwrap());
    a.wait_subscriber(&b, &rust).await;
    b.wait_subscriber(&c, &rust).await;

    // A signs a record, then tampers with its text: the signature no longer matches.
    let good = kith_protocol::Record {
        author: a.id(),
        seq: 99,
        prev: Some(kith_protocol::RecordId::from_bytes([7; 32])),
        timestamp: 1,
        kind: kith_protocol::RecordKind::Post(kith_protocol::Post {
            text: "forged #rust".into(),
            reply_to: None,
            mentions: vec![],
            expires_at: None,
            attachments: vec![],
        }),
    };
    let home_key = kith_protocol::Keypair::from_secret_bytes(&[9; 32]);
    // Signed by a different key than the author's: a forgery.
    let body = kith_protocol::codec::encode(&good).unwrap();
    let signature = home_key.sign(kith_protocol::record::RECORD_DOMAIN, &body);
    let forged = kith_protocol::codec::encode(&SignedRecord { record: good, signature }).unwrap();
    let forged_id = kith_protocol::RecordId::of_bytes(&forged);
    a.node.net().publish(rust.to_string(), forged).await.unwrap();

    eventually(DEADLINE, "B to reject the forgery", || async {
        (counters(&b).await.rejected >= 1).then_some(())
    })
    .await;
    // An honest post after the forgery still goes through the same path to C.
    let honest = a.post("honest #rust").await;
    b.wait_record(&honest).await;
    c.wait_record(&honest).await;
    for n in [&a, &b, &c] {
        assert!(!n.node.store().has(&forged_id).unwrap(), "{} stored the forgery", n.name);
    }
    // B did not forward the forgery: C can only have seen it straight from A, if the
    // DHT happened to connect them (at most once; gossipsub drops repeats).
    assert!(counters(&c).await.rejected <= 1);
    // A is penalised in B's view.
    let peers = match b.ok(Request::Peers).await {
        Response::Peers { peers } => peers,
        r => panic!("unexpected {r:?}"),
    };
    let a_peer = a.id().to_string();
    let score = peers.iter().find(|p| p.id == a_peer).and_then(|p| p.score).unwrap();
    assert!(score < 0.0, "A's score in B is {score}");
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_errors_not_panics() {
    let a = TestNode::start("a").await;
    let bad = [
        Request::Follow { id: "nobody".into() },
        Request::Follow { id: a.id().to_string() },
        Request::Subscribe { tag: "#".into() },
        Request::Subscribe { tag: "no spaces".into() },
        Request::Post { text: "   ".into(), reply_to: None, expires_in_ms: None, attach: vec![] },
        Request::Post {
            text: "x".repeat(5000),
            reply_to: None,
            expires_in_ms: None,
            attach: vec![],
        },
        Request::Post {
            text: "hi".into(),
            reply_to: Some("zz".into()),
            expires_in_ms: None,
            attach: vec![],
        },
        Request::Dial { addr: "not an addr".into() },
        Request::Feed {
            tag: None,
            author: Some("bad".into()),
            limit: None,
            live: false,
            before: None,
        },
        Request::Feed { tag: None, author: None, limit: Some(0), live: false, before: None },
        Request::ProfileShow { id: Some("x".into()) },
        Request::ProfileSet { name: None, bio: None },
        Request::ProfileSet { name: Some("n".repeat(100)), bio: None },
    ];
    for request in bad {
        match a.node.handle(request.clone()).await {
            Response::Error { message, .. } => assert!(!message.is_empty()),
            r => panic!("{request:?} should fail, got {r:?}"),
        }
    }
    assert_eq!(a.node.store().counts().records, 0);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_state_and_reconnects() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    b.dial(&a).await;
    b.follow(&a).await;
    b.subscribe("kith").await;
    let first = b.post("before restart #kith").await;
    let b = b.restart().await;
    // Remembered peers are redialled: B is connected to A again without being told.
    eventually(DEADLINE, "B to reconnect to A", || async {
        let peers = b.node.net().peers().await.ok()?;
        peers.iter().any(|p| p.peer == a.id().to_peer_id().unwrap()).then_some(())
    })
    .await;
    let feed = b.feed(None, None).await;
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].id, first);
    assert!(b.node.store().is_following(&b.id(), &a.id()).unwrap());
    match b.ok(Request::Tags).await {
        Response::Tags { tags } => assert_eq!(tags, vec!["kith".to_string()]),
        r => panic!("unexpected {r:?}"),
    }
    // Its log continues: the next post is seq 4 (follow, post, ... ) with the right prev.
    let second = b.post("after restart").await;
    let rec = b.node.store().get(&second.parse().unwrap()).unwrap().unwrap();
    assert_eq!(rec.record.prev.map(|p| p.to_string()), Some(first));
    // Subscriptions come back too: A's posts still reach B.
    a.wait_subscriber(&b, &Topic::Author(a.id())).await;
    let from_a = a.post("hi again").await;
    b.wait_record(&from_a).await;
    a.stop().await;
    b.stop().await;
}
