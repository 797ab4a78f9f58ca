//! Blocking and muting: a blocked person's records are dropped until unblocked, their
//! messages are not delivered, a muted person's records are kept but hidden.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_person_is_dropped_until_unblocked() {
    let (a, b, c) = trio().await;
    // A second path from B to A, through C, so that blocking B (which also closes the
    // A–B connection) is tested on records that still reach A.
    a.dial(&c).await;
    let b_topic = Topic::Author(b.id());
    a.wait_subscriber(&c, &b_topic).await;
    c.wait_subscriber(&a, &b_topic).await;
    let before = b.post("B before the block").await;
    a.wait_record(&before).await;

    assert_eq!(a.ok(Request::Block { id: b.id().to_string() }).await, Response::Ok);
    let entry = ModerationEntry { id: b.id().to_string(), blocked: true, muted: false };
    assert_eq!(blocked(&a).await, vec![entry.clone()]);
    assert!(timeline_item(&a, &before).await.is_none(), "A still shows B's post");
    let b_peer = b.id().to_peer_id().unwrap();
    eventually(DEADLINE, "A to drop its connection to B", || async {
        (!a.is_connected(&b_peer).await).then_some(())
    })
    .await;

    // B's new post reaches C, but not A's store, by gossip or by sync.
    let during = b.post("B during the block").await;
    c.wait_record(&during).await;
    let from_c = c.post("C during the block").await;
    a.wait_record(&from_c).await;
    a.sync().await;
    assert!(!has(&a, &during), "A stored a blocked person's post");
    // B's direct message is not accepted by A.
    let request =
        Request::MsgSend { to: a.id().to_string(), text: "let me in".into(), attach: vec![] };
    match b.call(request).await {
        Response::Error { .. } => {}
        Response::MsgSent { status, .. } => assert_ne!(status, "delivered"),
        r => panic!("unexpected reply {r:?}"),
    }
    assert!(a.thread(&b).await.iter().all(|m| m.text != "let me in"));

    // The block survives a restart.
    let a = a.restart().await;
    assert_eq!(blocked(&a).await, vec![entry]);
    a.wait_connected(&c).await;
    let during2 = b.post("B during the block, after A restarted").await;
    c.wait_record(&during2).await;
    a.sync().await;
    assert!(!has(&a, &during) && !has(&a, &during2), "A stored a blocked person's post");
    assert!(!a.is_connected(&b_peer).await, "A accepted a connection from B");
    let kinds: Vec<String> = notes(&a)
        .await
        .into_iter()
        .filter(|n| n.from == b.id().to_string())
        .map(|n| n.kind)
        .collect();
    assert!(!kinds.contains(&"message".to_owned()), "A was notified of B's message");

    // Unblocked: B's posts show again and the ones A refused are fetched.
    assert_eq!(a.ok(Request::Unblock { id: b.id().to_string() }).await, Response::Ok);
    assert_eq!(blocked(&a).await, vec![]);
    assert!(timeline_item(&a, &before).await.is_some());
    let after = b.post("B after the block").await;
    a.wait_record(&after).await;
    eventually(DEADLINE, "A to fetch B's posts from the block", || async {
        a.sync().await;
        (has(&a, &during) && has(&a, &during2)).then_some(())
    })
    .await;
    // And B's messages are accepted again.
    a.dial(&b).await;
    let (_, status) = b.msg(&a, "hello again").await;
    // Delivered now, or queued (or held by a mailbox of A's) if B's first try raced the
    // new connection, then delivered.
    assert!(["delivered", "queued", "held"].contains(&status.as_str()), "{status}");
    eventually(DEADLINE, "A to receive B's message after the block", || async {
        a.thread(&b).await.iter().any(|m| m.text == "hello again").then_some(())
    })
    .await;
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_written_during_a_block_is_not_delivered_after_it() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    b.dial(&a).await;
    a.befriend(&b).await;
    assert_eq!(a.ok(Request::Block { id: b.id().to_string() }).await, Response::Ok);
    let request =
        Request::MsgSend { to: a.id().to_string(), text: "while blocked".into(), attach: vec![] };
    match b.call(request).await {
        Response::Error { .. } => {}
        Response::MsgSent { status, .. } => assert_ne!(status, "delivered"),
        r => panic!("unexpected reply {r:?}"),
    }
    assert_eq!(a.ok(Request::Unblock { id: b.id().to_string() }).await, Response::Ok);
    // The block closes A's connection to B, perhaps while this dial's handshake runs
    // (seen once in CI: "Handshake failed: input error"): dial until one gets through.
    eventually(DEADLINE, "A to dial B again after the block", || async {
        let dial = Request::Dial { addr: b.addr().to_string() };
        (!matches!(a.call(dial).await, Response::Error { .. })).then_some(())
    })
    .await;
    let (_, status) = b.msg(&a, "after the block").await;
    // Delivered now, or queued (or held by a mailbox of A's) if B's first try raced the
    // new connection, then delivered.
    assert!(["delivered", "queued", "held"].contains(&status.as_str()), "{status}");
    eventually(DEADLINE, "A to receive B's message after the block", || async {
        a.thread(&b).await.iter().any(|m| m.text == "after the block").then_some(())
    })
    .await;
    // A refused B's message when it came; unblocking does not let it in afterwards.
    let texts: Vec<String> = a.thread(&b).await.into_iter().map(|m| m.text).collect();
    assert_eq!(texts, vec!["after the block".to_owned()], "A's messages from B");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muted_person_is_kept_but_hidden() {
    let (a, b, c) = trio().await;
    let p = a.post("A's post").await;
    wait_everywhere(&[&c], &p).await;
    assert_eq!(a.ok(Request::Mute { id: c.id().to_string() }).await, Response::Ok);
    let entry = ModerationEntry { id: c.id().to_string(), blocked: false, muted: true };
    assert_eq!(blocked(&a).await, vec![entry]);

    // C's records still reach and are kept by A, but A is not shown or told about them.
    let m = c.post("C, muted").await;
    let x = react(&c, &p, "👎").await;
    wait_everywhere(&[&a, &b], &m).await;
    wait_everywhere(&[&a, &b], &x).await;
    assert!(timeline_item(&a, &m).await.is_none(), "A shows a muted person's post");
    assert!(timeline_item(&b, &m).await.is_some(), "muting on A hid the post on B");
    assert_eq!(about(&notes(&a).await, &[x.as_str()]), vec![], "A was notified by a muted person");

    assert_eq!(a.ok(Request::Unmute { id: c.id().to_string() }).await, Response::Ok);
    assert_eq!(blocked(&a).await, vec![]);
    assert!(timeline_item(&a, &m).await.is_some());
    // Unmuted: new reactions notify again.
    let x2 = react(&c, &p, "👍").await;
    eventually(DEADLINE, "A to be notified of C's reaction", || async {
        (about(&notes(&a).await, &[x2.as_str()]) == vec![note("reaction", &c, &x2)]).then_some(())
    })
    .await;
    for n in [a, b, c] {
        n.stop().await;
    }
}
