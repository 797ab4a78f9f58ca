//! Depositing with mailboxes (issue #18, sending): a message that cannot be delivered
//! directly is sealed once more and deposited with the recipient's mailboxes, turns
//! `held` once one accepted, does not hold up the messages behind it, and turns
//! `delivered` when the recipient's receipt comes back; a hostile mailbox cannot inject,
//! duplicate or block delivery through another.

use kith_protocol::mailbox::{sealed, Held as HeldEnvelope, MailboxReply, MailboxRequest};

use super::{
    dm::befriend,
    hold::{ask, collect},
    olm::{devices_pair, out, receive_on, received_ids, status_of, SECRET},
    *,
};
use crate::{core::DmProto, store::DmStatus};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `b` lists `mailboxes`; they and `a` have the record.
pub(super) fn list_with(b: &mut Fixture, mailboxes: &mut [&mut Fixture], a: &Fixture) {
    for m in mailboxes.iter_mut() {
        befriend(m, b);
    }
    let holders = mailboxes.iter().map(|m| m.core.me()).collect();
    let (_, record) = b.publish(RecordKind::Mailboxes { holders }, 10);
    for m in mailboxes.iter() {
        m.core.store().insert(&record).unwrap();
    }
    a.core.store().insert(&record).unwrap();
}

/// The deposits among `effects`: (message, envelope, mailboxes).
fn deposits(effects: &[Effect]) -> Vec<([u8; 16], Vec<u8>, Vec<AuthorId>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deposit { message, envelope, mailboxes, .. } => {
                Some((*message, envelope.clone(), mailboxes.clone()))
            }
            _ => None,
        })
        .collect()
}

fn delivers(effects: &[Effect]) -> Vec<[u8; 16]> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver { message, .. } => Some(*message),
            _ => None,
        })
        .collect()
}

fn sent_status(effects: &[Effect]) -> Option<DmStatus> {
    effects.iter().find_map(|e| match e {
        Effect::Answer { result: Ok(Answer::MsgSent { status, .. }), .. } => Some(*status),
        _ => None,
    })
}

/// `a`'s direct delivery of `message` to `b` fails: what follows, flushes done.
fn fail(a: &mut Fixture, b: &Fixture, message: u8, now: u64) -> Vec<Effect> {
    let peer = b.core.me();
    let failed = Input::DmDelivered { peer, message: [message; 16], result: Err("offline".into()) };
    let effects = a.handle(failed, now);
    a.settle(effects, now)
}

fn deposited(a: &mut Fixture, b: &Fixture, message: u8, accepted: usize, now: u64) -> Vec<Effect> {
    let input = Input::Deposited { peer: b.core.me(), message: [message; 16], accepted };
    let effects = a.handle(input, now);
    a.settle(effects, now)
}

/// What `b` does with `envelopes` collected from `m`, flushes done.
fn take(b: &mut Fixture, m: &Fixture, envelopes: &[Vec<u8>], now: u64) -> Vec<Effect> {
    let items = envelopes
        .iter()
        .enumerate()
        .map(|(i, envelope)| HeldEnvelope {
            position: i as u64 + 1,
            deposited: now,
            envelope: envelope.clone(),
        })
        .collect();
    let mailbox = m.core.me().to_peer_id().unwrap();
    let first = b.handle(Input::Collected { mailbox, items }, now);
    b.settle(first, now)
}

/// The receipts among `effects` for `to`: their `/kith/dm/2` requests.
fn receipts_for(effects: &[Effect], to: &Fixture) -> Vec<Vec<u8>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Receipt { peer, request, .. } if *peer == to.core.me() => Some(request.clone()),
            _ => None,
        })
        .collect()
}

fn copies(b: &Fixture, a: &Fixture, n: u8) -> usize {
    let id = kith_protocol::dm::MessageId::from_bytes([n; 16]).to_string();
    let thread = b.core.store().dm_thread(&a.core.me(), 1000).unwrap();
    thread.iter().filter(|m| m.id == id).count()
}

/// `a` sends message 1 to `b`, whose direct delivery fails: the request that was tried,
/// and what followed the failure.
fn send_and_fail(a: &mut Fixture, b: &Fixture) -> (Vec<u8>, Vec<Effect>) {
    let first = a.handle(Input::MsgSend { message: out(b, 1), answer: AnswerId(1) }, 100);
    let settled = a.settle(first, 100);
    let request = settled
        .iter()
        .find_map(|e| match e {
            Effect::Deliver { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .unwrap();
    (request, fail(a, b, 1, 110))
}

#[test]
fn an_undelivered_message_is_deposited_sealed_held_and_does_not_hold_up_the_next() {
    let (mut a, mut b) = devices_pair();
    let mut m = Fixture::new(3);
    list_with(&mut b, &mut [&mut m], &a);

    // B is offline: the direct delivery fails, the message is deposited with B's
    // mailbox, sealed again: the mailbox sees neither A nor the text.
    let first = a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    let settled = a.settle(first, 100);
    assert_eq!(delivers(&settled), vec![[1; 16]]);
    let effects = fail(&mut a, &b, 1, 110);
    let found = deposits(&effects);
    assert_eq!(found.len(), 1, "{effects:?}");
    let (message, envelope, mailboxes) = found[0].clone();
    assert_eq!((message, mailboxes), ([1; 16], vec![m.core.me()]));
    assert!(!contains(&envelope, a.core.me().as_bytes()));
    assert!(!contains(&envelope, SECRET.as_bytes()));
    assert_eq!(status_of(&a, 1), DmStatus::Queued);
    let deposit = MailboxRequest::Deposit { recipient: b.core.me(), envelope: envelope.clone() };
    assert!(matches!(ask(&mut m, &a, &deposit, 120), MailboxReply::Accepted { .. }));

    // Accepted: `msg send` answers held (after a flush); still in the outbox.
    let effects = deposited(&mut a, &b, 1, 1, 130);
    assert_eq!(sent_status(&effects), Some(DmStatus::Held));
    assert_eq!(status_of(&a, 1), DmStatus::Held);
    assert_eq!(a.core.store().dm_outbox().unwrap().len(), 1);
    // The lane retries later (the held message directly), and is not stuck.
    assert!(effects.iter().any(|e| matches!(e, Effect::Schedule { timer: Timer::Outbox, .. })));

    // Message 2: its lane tries the held message directly first; B is still away, so
    // message 2 is deposited without another dial.
    let first = a.handle(Input::MsgSend { message: out(&b, 2), answer: AnswerId(2) }, 200);
    let settled = a.settle(first, 200);
    assert_eq!(delivers(&settled), vec![[1; 16]], "{settled:?}");
    let effects = fail(&mut a, &b, 1, 210);
    assert!(delivers(&effects).is_empty(), "{effects:?}");
    let found = deposits(&effects);
    assert_eq!(found.iter().map(|d| d.0).collect::<Vec<_>>(), vec![[2; 16]]);
    let second = found[0].1.clone();
    let deposit = MailboxRequest::Deposit { recipient: b.core.me(), envelope: second.clone() };
    assert!(matches!(ask(&mut m, &a, &deposit, 220), MailboxReply::Accepted { .. }));
    let effects = deposited(&mut a, &b, 2, 1, 230);
    assert_eq!(sent_status(&effects), Some(DmStatus::Held));
    assert_eq!(status_of(&a, 2), DmStatus::Held);

    // B collects both, in order: each stored once; its receipt turns them delivered.
    let (held, _) = collect(&mut m, &b, 0, 300);
    assert_eq!(held, vec![envelope, second]);
    let effects = take(&mut b, &m, &held, 300);
    assert_eq!(received_ids(&effects), vec![[1; 16], [2; 16]]);
    let receipts = receipts_for(&effects, &a);
    assert_eq!(receipts.len(), 1);
    let (_, response) = receive_on(&mut a, &b, receipts[0].clone(), DmProto::V2, 400);
    assert!(!response.is_empty());
    assert_eq!((status_of(&a, 1), status_of(&a, 2)), (DmStatus::Delivered, DmStatus::Delivered));
    assert!(a.core.store().dm_outbox().unwrap().is_empty());
    assert_eq!((copies(&b, &a, 1), copies(&b, &a, 2)), (1, 1));
}

#[test]
fn without_an_accepting_mailbox_the_message_stays_queued_and_its_lane_backs_off() {
    let (mut a, mut b) = devices_pair();
    let mut m = Fixture::new(3);
    list_with(&mut b, &mut [&mut m], &a);
    let first = a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    let _ = a.settle(first, 100);
    let effects = fail(&mut a, &b, 1, 110);
    assert_eq!(deposits(&effects).len(), 1);
    let effects = deposited(&mut a, &b, 1, 0, 120);
    assert_eq!(sent_status(&effects), Some(DmStatus::Queued));
    assert_eq!(status_of(&a, 1), DmStatus::Queued);
    assert!(effects.iter().any(|e| matches!(e, Effect::Schedule { timer: Timer::Outbox, .. })));
    // Tried again when due: directly first, then deposited again.
    let effects = a.handle(Input::Timer(Timer::Outbox), 5_000);
    let settled = a.settle(effects, 5_000);
    assert_eq!(delivers(&settled), vec![[1; 16]]);
    let effects = fail(&mut a, &b, 1, 5_010);
    assert_eq!(deposits(&effects).len(), 1);

    // A recipient that lists no mailbox: queued, no deposit.
    let (mut a, b) = devices_pair();
    let first = a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    let _ = a.settle(first, 100);
    let effects = fail(&mut a, &b, 1, 110);
    assert!(deposits(&effects).is_empty());
    assert_eq!(sent_status(&effects), Some(DmStatus::Queued));
}

#[test]
fn a_held_message_delivered_directly_later_is_stored_once_and_receipted_once() {
    let (mut a, mut b) = devices_pair();
    let mut m = Fixture::new(3);
    list_with(&mut b, &mut [&mut m], &a);
    let (request, effects) = send_and_fail(&mut a, &b);
    let (_, envelope, _) = deposits(&effects).remove(0);
    let _ = deposited(&mut a, &b, 1, 1, 120);

    // A restarts (what was flushed survives): B is reachable when A's lane looks again,
    // and the held message goes directly.
    let mut a = a.restart(1);
    let effects = a.handle(Input::Connected { peer: b.core.me().to_peer_id().unwrap() }, 200);
    let settled = a.settle(effects, 200);
    let again = settled
        .iter()
        .find_map(|e| match e {
            Effect::Deliver { bytes, message, .. } if *message == [1; 16] => Some(bytes.clone()),
            _ => None,
        })
        .expect("tried directly");
    assert_eq!(again, request, "the same bytes: the recipient knows them by their digest");
    let (effects, reply) = receive_on(&mut b, &a, again, DmProto::V2, 210);
    assert_eq!(received_ids(&effects), vec![[1; 16]]);
    let peer = b.core.me();
    let done = a.handle(Input::DmDelivered { peer, message: [1; 16], result: Ok(reply) }, 220);
    let _ = a.settle(done, 220);
    assert_eq!(status_of(&a, 1), DmStatus::Delivered);

    // The copy the mailbox held comes later: not stored again.
    let effects = take(&mut b, &m, &[envelope], 300);
    assert!(received_ids(&effects).is_empty());
    assert_eq!(copies(&b, &a, 1), 1);
}

#[test]
fn a_hostile_mailbox_cannot_inject_duplicate_or_block_what_another_holds() {
    let (mut a, mut b) = devices_pair();
    let (mut good, mut evil) = (Fixture::new(3), Fixture::new(4));
    list_with(&mut b, &mut [&mut good, &mut evil], &a);
    let (request, effects) = send_and_fail(&mut a, &b);
    let (_, envelope, mailboxes) = deposits(&effects).remove(0);
    assert_eq!(mailboxes, vec![good.core.me(), evil.core.me()]);
    let deposit = MailboxRequest::Deposit { recipient: b.core.me(), envelope: envelope.clone() };
    assert!(matches!(ask(&mut good, &a, &deposit, 120), MailboxReply::Accepted { .. }));
    // The evil mailbox withholds it (never answers, then hands over something else).
    let effects = deposited(&mut a, &b, 1, 1, 130);
    assert_eq!(sent_status(&effects), Some(DmStatus::Held));

    // What the evil mailbox hands B: garbage, an envelope sealed for someone else, a
    // forged deposit claiming to be from A (a request it made up, and A's real request
    // re-sealed: the mailbox cannot have it, but even if it did, it is one message),
    // and replays of the good mailbox's envelope.
    let forged = sealed::seal(&b.core.me(), &a.core.me(), b"made up").unwrap();
    let foreign = sealed::seal(&evil.core.me(), &a.core.me(), &request).unwrap();
    let resealed = sealed::seal(&b.core.me(), &a.core.me(), &request).unwrap();
    let hostile = vec![vec![0; 300], foreign, forged, resealed, envelope.clone(), envelope.clone()];
    let before = b.core.store().dm_count();
    let effects = take(&mut b, &evil, &hostile, 200);
    assert_eq!(received_ids(&effects), vec![[1; 16]]);
    assert_eq!(copies(&b, &a, 1), 1);
    assert_eq!(b.core.store().dm_count(), before + 1, "nothing else was stored");

    // The good mailbox's copy: not stored again, receipted (receipts are idempotent).
    let (held, _) = collect(&mut good, &b, 0, 300);
    let effects = take(&mut b, &good, &held, 300);
    assert!(received_ids(&effects).is_empty());
    assert_eq!(copies(&b, &a, 1), 1);
    let receipts = receipts_for(&effects, &a);
    assert_eq!(receipts.len(), 1);
    let _ = receive_on(&mut a, &b, receipts[0].clone(), DmProto::V2, 400);
    assert_eq!(status_of(&a, 1), DmStatus::Delivered);
}

#[test]
fn a_receipt_not_taken_before_a_crash_is_sent_again_after_the_restart_until_it_is() {
    let (mut a, mut b) = devices_pair();
    let mut m = Fixture::new(3);
    list_with(&mut b, &mut [&mut m], &a);
    let (_, effects) = send_and_fail(&mut a, &b);
    let (_, envelope, _) = deposits(&effects).remove(0);
    let effects = take(&mut b, &m, &[envelope], 200);
    let receipts = receipts_for(&effects, &a);
    assert_eq!(receipts.len(), 1);
    let key = effects
        .iter()
        .find_map(|e| match e {
            Effect::Receipt { key, .. } => Some(*key),
            _ => None,
        })
        .unwrap();

    // B crashes before the receipt was taken: after the restart it goes again, the same.
    let mut b = b.restart(2);
    let again = b.handle(Input::Timer(Timer::Outbox), 300);
    assert_eq!(receipts_for(&again, &a), receipts);
    // Only once per run.
    assert!(receipts_for(&b.handle(Input::Timer(Timer::Outbox), 400), &a).is_empty());

    // Taken: forgotten (flushed with whatever comes next), not sent after a restart.
    let _ = b.handle(Input::ReceiptSent { key }, 500);
    b.core.store().flush_blocking().unwrap();
    let mut b = b.restart(2);
    assert!(receipts_for(&b.handle(Input::Timer(Timer::Outbox), 600), &a).is_empty());

    // The receipt reaches A: delivered.
    let _ = receive_on(&mut a, &b, receipts[0].clone(), DmProto::V2, 700);
    assert_eq!(status_of(&a, 1), DmStatus::Delivered);
}
