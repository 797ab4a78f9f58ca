//! Mailboxes over loopback (issue #18): a node holds sealed envelopes for a mutual
//! connection that lists it, refuses everyone else, keeps them across a restart and
//! hands them to their recipient only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kith_node::{
    api::{Request, Response},
    net::Proto,
};
use kith_protocol::mailbox::{HeldId, MailboxReply, MailboxRequest, Refusal};
use kith_tests::{eventually, TestNode, DEADLINE};

/// `from` asks `m` over `/kith/mailbox/1`.
async fn ask(from: &TestNode, m: &TestNode, request: &MailboxRequest) -> MailboxReply {
    let peer = m.id().to_peer_id().unwrap();
    let bytes = request.to_bytes().unwrap();
    let reply = from.node.net().request(Proto::Mailbox, peer, vec![m.addr()], bytes).await;
    MailboxReply::from_bytes(&reply.expect("answered")).unwrap()
}

/// (messages, bytes) `m` says it holds for `who`.
async fn holding(m: &TestNode, who: &TestNode) -> Option<(u64, u64)> {
    match m.ok(Request::Mailbox).await {
        Response::Mailbox(status) => status
            .holding
            .iter()
            .find(|h| h.id == who.id().to_string())
            .map(|h| (h.messages, h.bytes)),
        r => panic!("unexpected {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_holds_for_a_listing_friend_only_and_keeps_it_across_a_restart() {
    let m = TestNode::start("m").await;
    let r = TestNode::start("r").await;
    let d = TestNode::start("d").await;
    r.dial(&m).await;
    r.befriend(&m).await;
    r.ok(Request::MailboxAdd { id: m.id().to_string() }).await;
    eventually(DEADLINE, "m to know r lists it", || async { holding(&m, &r).await.map(|_| ()) })
        .await;

    // A stranger deposits for r: held. For itself (it lists nobody, is nobody's friend):
    // refused.
    d.dial(&m).await;
    let envelope = vec![7u8; 512];
    let deposit = MailboxRequest::Deposit { recipient: r.id(), envelope: envelope.clone() };
    let id = HeldId::of(&envelope);
    assert_eq!(ask(&d, &m, &deposit).await, MailboxReply::Accepted { id });
    let for_d = MailboxRequest::Deposit { recipient: d.id(), envelope: envelope.clone() };
    assert_eq!(ask(&d, &m, &for_d).await, MailboxReply::Refused(Refusal::NotHolding));
    assert_eq!(holding(&m, &r).await, Some((1, 512)));

    // Held across a restart; collected by r only; deleted on r's acknowledgement.
    let m = m.restart().await;
    r.dial(&m).await;
    d.dial(&m).await;
    let collect = MailboxRequest::Collect { after: 0 };
    match ask(&d, &m, &collect).await {
        MailboxReply::Held { items, more: false } => assert!(items.is_empty()),
        other => panic!("{other:?}"),
    }
    match ask(&r, &m, &collect).await {
        MailboxReply::Held { items, more: false } => {
            assert_eq!(items.iter().map(|h| h.id()).collect::<Vec<_>>(), vec![id])
        }
        other => panic!("{other:?}"),
    }
    let ack = MailboxRequest::Ack { ids: vec![id] };
    assert_eq!(ask(&r, &m, &ack).await, MailboxReply::Acked { removed: 1 });
    assert_eq!(holding(&m, &r).await, Some((0, 0)));
    for node in [m, r, d] {
        node.stop().await;
    }
}
