//! Collecting from mailboxes (issue #18): a message deposited for an offline recipient,
//! sealed so that the mailbox cannot tell who sent it, is collected, stored once however
//! often and by whichever path it comes, acknowledged only after the flush, and answered
//! with an end-to-end receipt that marks it delivered at the sender.

use kith_protocol::mailbox::{sealed, HeldId, MailboxReply, MailboxRequest};

use super::{
    dm::befriend,
    hold::{ask, collect, list},
    olm::{devices_pair, out, receive_on, received_ids, status_of, SECRET},
    *,
};
use crate::{core::DmProto, store::DmStatus};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What `b` does with `items` collected from `m`, flushes done.
fn take(b: &mut Fixture, m: &Fixture, items: Vec<kith_protocol::mailbox::Held>) -> Vec<Effect> {
    let mailbox = m.core.me().to_peer_id().unwrap();
    let first = b.handle(Input::Collected { mailbox, items }, 200);
    b.settle(first, 200)
}

fn acked(effects: &[Effect]) -> Vec<HeldId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::MailboxAck { ids, .. } => Some(ids.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_deposited_message_is_collected_once_and_its_receipt_marks_it_delivered() {
    let (mut a, mut b) = devices_pair();
    let mut m = Fixture::new(3);
    befriend(&mut m, &mut b);
    list(&mut b, &m);

    // A seals message 1 for B, who is offline: the delivery fails, the message waits.
    let first = a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    let settled = a.settle(first, 100);
    let request = settled
        .iter()
        .find_map(|e| match e {
            Effect::Deliver { bytes, proto: DmProto::V2, .. } => Some(bytes.clone()),
            _ => None,
        })
        .unwrap();
    let failed =
        Input::DmDelivered { peer: b.core.me(), message: [1; 16], result: Err("offline".into()) };
    let effects = a.handle(failed, 110);
    let _ = a.settle(effects, 110);
    assert_eq!(status_of(&a, 1), DmStatus::Queued);

    // Deposited sealed for B: the mailbox sees neither A nor A's device nor the text.
    let blob = sealed::seal(&b.core.me(), &a.core.me(), &request).unwrap();
    assert!(!contains(&blob, a.core.me().as_bytes()));
    assert!(!contains(&blob, SECRET.as_bytes()));
    let deposit = MailboxRequest::Deposit { recipient: b.core.me(), envelope: blob.clone() };
    assert_eq!(ask(&mut m, &a, &deposit, 120), MailboxReply::Accepted { id: HeldId::of(&blob) });

    // B collects: stored once, acknowledged after the flush, a receipt for A.
    let (items, _) = collect(&mut m, &b, 0, 200);
    let items: Vec<_> = items
        .into_iter()
        .enumerate()
        .map(|(i, envelope)| kith_protocol::mailbox::Held {
            position: i as u64 + 1,
            deposited: 120,
            envelope,
        })
        .collect();
    let effects = take(&mut b, &m, items.clone());
    assert_eq!(received_ids(&effects), vec![[1; 16]]);
    let flush = effects.iter().position(|e| matches!(e, Effect::Flush(_))).unwrap();
    let ack = effects.iter().position(|e| matches!(e, Effect::MailboxAck { .. })).unwrap();
    assert!(flush < ack);
    assert_eq!(acked(&effects), vec![HeldId::of(&blob)]);
    let (receipt, receipt_deposit, mailboxes) = effects
        .iter()
        .find_map(|e| match e {
            Effect::Receipt { peer, request, deposit, mailboxes, .. } if *peer == a.core.me() => {
                Some((request.clone(), deposit.clone(), mailboxes.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert!(mailboxes.is_empty(), "A lists no mailbox");

    // The same envelope again (a replaying mailbox, a second mailbox), or the message
    // directly: never stored twice.
    let again = take(&mut b, &m, items);
    assert!(received_ids(&again).is_empty());
    assert_eq!(acked(&again), vec![HeldId::of(&blob)]);
    let (direct, _) = receive_on(&mut b, &a, request, DmProto::V2, 250);
    assert!(received_ids(&direct).is_empty());
    assert_eq!(
        b.core
            .store()
            .dm_thread(&a.core.me(), 100)
            .unwrap()
            .iter()
            .filter(|m| m.id == kith_protocol::dm::MessageId::from_bytes([1; 16]).to_string())
            .count(),
        1
    );

    // Garbage and an envelope sealed for someone else: acknowledged (deleted), nothing
    // stored.
    let foreign = sealed::seal(&m.core.me(), &a.core.me(), b"not for b").unwrap();
    let junk = vec![
        kith_protocol::mailbox::Held { position: 10, deposited: 1, envelope: vec![9; 300] },
        kith_protocol::mailbox::Held { position: 11, deposited: 1, envelope: foreign.clone() },
    ];
    let effects = take(&mut b, &m, junk);
    assert!(received_ids(&effects).is_empty());
    assert_eq!(acked(&effects), vec![HeldId::of(&[9; 300]), HeldId::of(&foreign)]);

    // The receipt reaches A, directly or (opened from A's mailbox) deposited: delivered.
    let opened = sealed::open(&Keypair::from_secret_bytes(&[1; 32]), &receipt_deposit).unwrap();
    assert_eq!((opened.sender, &opened.request), (b.core.me(), &receipt));
    assert!(!contains(&receipt_deposit, b.core.me().as_bytes()));
    let (_, response) = receive_on(&mut a, &b, receipt, DmProto::V2, 300);
    assert!(!response.is_empty());
    assert_eq!(status_of(&a, 1), DmStatus::Delivered);
    assert!(a.core.store().dm_outbox().unwrap().is_empty());
}
