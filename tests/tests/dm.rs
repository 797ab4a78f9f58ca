//! Direct messages between in-process nodes on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kith_node::api::{Request, Response};
use kith_tests::{eventually, TestNode, DEADLINE};

fn texts(thread: &[kith_node::api::MessageEntry], from: &TestNode) -> Vec<String> {
    let id = from.id().to_string();
    thread.iter().filter(|m| m.from == id).map(|m| m.text.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_each_way_in_order_exactly_once() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    b.dial(&a).await;
    a.befriend(&b).await;
    let expected_a: Vec<String> = (0..100).map(|i| format!("a→b {i}")).collect();
    let expected_b: Vec<String> = (0..100).map(|i| format!("b→a {i}")).collect();
    for i in 0..100 {
        let (_, s1) = a.msg(&b, &expected_a[i]).await;
        let (_, s2) = b.msg(&a, &expected_b[i]).await;
        assert_eq!((s1.as_str(), s2.as_str()), ("delivered", "delivered"), "message {i}");
    }
    let at_b = b.thread(&a).await;
    let at_a = a.thread(&b).await;
    assert_eq!(texts(&at_b, &a), expected_a);
    assert_eq!(texts(&at_a, &b), expected_b);
    assert_eq!(at_a.len(), 200);
    assert_eq!(at_b.len(), 200);
    assert!(at_a.iter().filter(|m| m.from == a.id().to_string()).all(|m| m.status == "delivered"));
    assert!(at_b.iter().filter(|m| m.from == a.id().to_string()).all(|m| m.status == "received"));
    // Inbox: one conversation, read after `thread`.
    match b.ok(Request::MsgInbox).await {
        Response::Inbox { conversations } => {
            assert_eq!(conversations.len(), 1);
            assert_eq!(conversations[0].peer, a.id().to_string());
            assert_eq!(conversations[0].unread, 0);
        }
        r => panic!("unexpected {r:?}"),
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_mutual_is_refused_by_sender_and_receiver() {
    let a = TestNode::start("a").await;
    let c = TestNode::start("c").await;
    c.dial(&a).await;
    c.follow(&a).await;
    match c
        .call(Request::MsgSend { to: a.id().to_string(), text: "hi".into(), attach: vec![] })
        .await
    {
        Response::Error { message, .. } => {
            assert!(message.contains("not a mutual connection"), "{message}")
        }
        r => panic!("should be refused, got {r:?}"),
    }
    assert_eq!(a.node.store().dm_count(), 0);
    assert_eq!(c.node.store().dm_count(), 0);
    a.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_refuses_when_it_does_not_follow_back() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    b.dial(&a).await;
    a.befriend(&b).await;
    // B unfollows A, but A has not heard of it yet when it sends: stop B's gossip of the
    // unfollow reaching A by checking the receiver's own state only.
    b.ok(Request::Unfollow { id: a.id().to_string() }).await;
    // Whatever A knows, B must refuse and store nothing from A.
    let reply = a
        .call(Request::MsgSend {
            to: b.id().to_string(),
            text: "still there?".into(),
            attach: vec![],
        })
        .await;
    match reply {
        Response::Error { message, .. } => {
            assert!(message.contains("not a mutual connection"), "{message}")
        }
        r => panic!("should be refused, got {r:?}"),
    }
    assert_eq!(b.node.store().dm_count(), 0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipient_gets_queued_messages_once_then_statuses_turn_delivered() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    b.dial(&a).await;
    a.befriend(&b).await;
    let b = b.pause().await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let (id, status) = a.msg_to_id(&b_id_of(&a).await, &format!("queued {i}")).await;
        assert_eq!(status, "queued");
        ids.push(id);
    }
    // A restarts with a non-empty outbox.
    let a = a.restart().await;
    let b = b.resume().await;
    // B redials A (it remembers A); A's outbox drains on the connection.
    eventually(DEADLINE, "all 10 delivered", || async {
        let thread = a.thread(&b).await;
        (thread.len() == 10 && thread.iter().all(|m| m.status == "delivered")).then_some(())
    })
    .await;
    let at_b = b.thread(&a).await;
    let got: Vec<String> = at_b.iter().map(|m| m.text.clone()).collect();
    let want: Vec<String> = (0..10).map(|i| format!("queued {i}")).collect();
    assert_eq!(got, want);
    assert_eq!(b.node.store().dm_count(), 10);
    assert_eq!(a.node.store().dm_outbox_len(), 0);
    a.stop().await;
    b.stop().await;
}

async fn b_id_of(a: &TestNode) -> String {
    match a.ok(Request::Following).await {
        Response::Follows { entries } => entries[0].id.clone(),
        r => panic!("unexpected {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_sealed_message_is_dropped() {
    use kith_protocol::dm::{DmRequest, MessageId, PairKeys, Plain, Sealed};
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    b.dial(&a).await;
    a.befriend(&b).await;
    // A `/kith/dm/1` request sealed by A's person, made here: A's node itself seals on
    // `/kith/dm/2` once it knows B's device, which, since every node with a mutual
    // connection makes its device (issue #19), it soon does.
    let keys = a.keypair();
    let plain = Plain {
        id: MessageId::generate().unwrap(),
        timestamp: kith_tests::now_ms(),
        text: "only once".into(),
        attachments: vec![],
    };
    let sealed = Sealed::seal_with(&keys, &PairKeys::new(&keys, &b.id()).unwrap(), &plain);
    let request = DmRequest { sealed: sealed.unwrap(), follow_proof: None }.to_bytes().unwrap();
    // Sent twice, the exact bytes: B answers both (an idempotent receipt) and stores one.
    let peer = b.id().to_peer_id().unwrap();
    for _ in 0..2 {
        let reply = a.node.net().send_dm(peer, vec![b.addr()], request.clone()).await.unwrap();
        let reply = kith_protocol::dm::DmReply::from_bytes(&reply).unwrap();
        assert!(matches!(reply, kith_protocol::dm::DmReply::Delivered { .. }), "{reply:?}");
        assert_eq!(b.node.store().dm_count(), 1);
        assert_eq!(b.thread(&a).await.len(), 1);
    }
    a.stop().await;
    b.stop().await;
}

/// Shutdown with work in flight (issue #16, the driver): a hundred posts and direct messages
/// are being made while the node stops, with deliveries, syncs and request handlers
/// running as its tasks. Shutdown returns, leaves none of the node's tasks running, and
/// after a restart the store holds every post and message the node acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_work_in_flight_keeps_every_acknowledged_write() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    b.dial(&a).await;
    a.befriend(&b).await;
    assert!(a.node.running_tasks() > 0, "the node's loops run as its tasks");
    let mut work = tokio::task::JoinSet::new();
    for i in 0..100 {
        let node = a.node.clone();
        let to = b.id().to_string();
        work.spawn(async move {
            let request = if i % 2 == 0 {
                Request::Post {
                    text: format!("post {i}"),
                    reply_to: None,
                    expires_in_ms: None,
                    attach: vec![],
                }
            } else {
                Request::MsgSend { to, text: format!("message {i}"), attach: vec![] }
            };
            node.handle(request).await
        });
    }
    let mut answers = Vec::new();
    // Stop while they are being answered.
    tokio::time::timeout(DEADLINE, a.node.shutdown())
        .await
        .expect("shutdown returns within the deadline")
        .unwrap();
    assert_eq!(a.node.running_tasks(), 0, "shutdown waited for every task");
    tokio::time::timeout(DEADLINE, async {
        while let Some(answer) = work.join_next().await {
            answers.push(answer.unwrap());
        }
    })
    .await
    .expect("the requests in flight end");
    let (mut posts, mut messages) = (Vec::new(), Vec::new());
    for answer in answers {
        match answer {
            Response::Record { id } => posts.push(id),
            Response::MsgSent { id, .. } => messages.push(id),
            _ => {}
        }
    }
    println!(
        "of 100 requests made while the node stopped: {} posts and {} messages acknowledged",
        posts.len(),
        messages.len()
    );
    assert!(!posts.is_empty() || !messages.is_empty(), "something was acknowledged");
    let b_id = b.id().to_string();
    b.stop().await;
    let a = a.pause().await.resume().await;
    for id in &posts {
        let record: kith_protocol::RecordId = id.parse().unwrap();
        assert!(a.node.store().has(&record).unwrap(), "acknowledged post {id} lost");
    }
    let thread = match a.ok(Request::MsgThread { peer: b_id, limit: Some(100) }).await {
        Response::Thread { messages } => messages,
        r => panic!("unexpected reply {r:?}"),
    };
    for id in &messages {
        assert!(thread.iter().any(|m| &m.id == id), "acknowledged message {id} lost");
    }
    a.stop().await;
}

/// The device `of` announced, as `at`'s store knows it.
fn announced_device(at: &TestNode, of: &TestNode) -> Option<kith_protocol::olm::device::DeviceId> {
    let record = at.node.store().devices(&of.id()).unwrap()?;
    match record.record.kind {
        kith_protocol::RecordKind::Devices(a) => Some(a.devices[0].certificate.certificate.device),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_devices_are_announced_messages_go_on_olm_sessions_in_order() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    b.dial(&a).await;
    a.befriend(&b).await;
    // Each side made and announced its device when the other became a mutual connection
    // (issue #19); the first messages may go on /kith/dm/1 if an announcement is still
    // on its way.
    let (_, s1) = a.msg(&b, "a→b first").await;
    let (_, s2) = b.msg(&a, "b→a first").await;
    assert_eq!((s1.as_str(), s2.as_str()), ("delivered", "delivered"));
    eventually(DEADLINE, "each node to hold the other's device announcement", || async {
        (announced_device(&a, &b).is_some() && announced_device(&b, &a).is_some()).then_some(())
    })
    .await;
    let mut expected_a = vec!["a→b first".to_owned()];
    let mut expected_b = vec!["b→a first".to_owned()];
    for i in 0..30 {
        let (ta, tb) = (format!("a→b {i}"), format!("b→a {i}"));
        let (_, s1) = a.msg(&b, &ta).await;
        let (_, s2) = b.msg(&a, &tb).await;
        assert_eq!((s1.as_str(), s2.as_str()), ("delivered", "delivered"), "message {i}");
        expected_a.push(ta);
        expected_b.push(tb);
    }
    assert_eq!(texts(&b.thread(&a).await, &a), expected_a);
    assert_eq!(texts(&a.thread(&b).await, &b), expected_b);
    // Both sides hold Olm sessions with the other's device: the messages went on /kith/dm/2.
    let (a_dev, b_dev) = (announced_device(&b, &a).unwrap(), announced_device(&a, &b).unwrap());
    assert!(a.node.store().olm_sessions(&b_dev).unwrap().is_some());
    assert!(b.node.store().olm_sessions(&a_dev).unwrap().is_some());
    a.stop().await;
    b.stop().await;
}
