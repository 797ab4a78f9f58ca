//! Mailboxes over loopback (issue #18): a node holds sealed envelopes for a mutual
//! connection that lists it, refuses everyone else, keeps them across a restart and
//! hands them to their recipient only, whose node collects them when it connects.
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
async fn holding(m: &TestNode, who: &kith_protocol::AuthorId) -> Option<(u64, u64)> {
    match m.ok(Request::Mailbox).await {
        Response::Mailbox(status) => {
            status.holding.iter().find(|h| h.id == who.to_string()).map(|h| (h.messages, h.bytes))
        }
        r => panic!("unexpected {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_holds_for_a_listing_friend_only_across_a_restart_until_collected() {
    let m = TestNode::start("m").await;
    let r = TestNode::start("r").await;
    let d = TestNode::start("d").await;
    r.dial(&m).await;
    r.befriend(&m).await;
    r.ok(Request::MailboxAdd { id: m.id().to_string() }).await;
    let r_id = r.id();
    eventually(DEADLINE, "m to know r lists it", || async { holding(&m, &r_id).await.map(|_| ()) })
        .await;

    // r goes offline. A stranger deposits for r: held. For itself (it lists nobody, is
    // nobody's friend): refused.
    let r = r.pause().await;
    d.dial(&m).await;
    let envelope = vec![7u8; 512];
    let deposit = MailboxRequest::Deposit { recipient: r_id, envelope: envelope.clone() };
    let id = HeldId::of(&envelope);
    assert_eq!(ask(&d, &m, &deposit).await, MailboxReply::Accepted { id });
    let for_d = MailboxRequest::Deposit { recipient: d.id(), envelope: envelope.clone() };
    assert_eq!(ask(&d, &m, &for_d).await, MailboxReply::Refused(Refusal::NotHolding));
    assert_eq!(holding(&m, &r_id).await, Some((1, 512)));

    // Held across a restart; a collect by anyone else gets nothing; r, back, collects
    // it on connecting and acknowledges it (it is garbage to r: dropped, deleted).
    let m = m.restart().await;
    d.dial(&m).await;
    match ask(&d, &m, &MailboxRequest::Collect { after: 0 }).await {
        MailboxReply::Held { items, more: false } => assert!(items.is_empty()),
        other => panic!("{other:?}"),
    }
    assert_eq!(holding(&m, &r_id).await, Some((1, 512)));
    let r = r.resume().await;
    r.dial(&m).await;
    eventually(DEADLINE, "r to collect and acknowledge", || async {
        (holding(&m, &r_id).await == Some((0, 0))).then_some(())
    })
    .await;
    for node in [m, r, d] {
        node.stop().await;
    }
}
