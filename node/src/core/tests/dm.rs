//! Direct messages: admission, the outbox's lanes and retries, receipts, replays,
//! restarts.

use std::sync::Arc;

use kith_protocol::dm::{DmReply, MessageId, PairKeys};

use super::*;
use crate::{
    api::ErrorKind,
    core::{dm::Outgoing, outbox, Timer},
    store::{DmStatus, Moderation},
};

/// Makes `a` and `b` follow each other, each store knowing both follows.
pub(super) fn befriend(a: &mut Fixture, b: &mut Fixture) {
    let (_, ab) = a.publish(RecordKind::Follow { target: b.core.me() }, 5);
    let (_, ba) = b.publish(RecordKind::Follow { target: a.core.me() }, 5);
    b.core.store().insert(&ab).unwrap();
    a.core.store().insert(&ba).unwrap();
}

pub(super) fn pair() -> (Fixture, Fixture) {
    let (mut a, mut b) = (Fixture::new(1), Fixture::new(2));
    befriend(&mut a, &mut b);
    (a, b)
}

fn message(to: &Fixture, n: u8, text: &str) -> Outgoing {
    Outgoing {
        peer: to.core.me(),
        id: MessageId::from_bytes([n; 16]),
        text: text.into(),
        attachments: vec![],
    }
}

/// The deliveries asked for: (peer, message, bytes, lookup).
fn deliveries(effects: &[Effect]) -> Vec<(AuthorId, [u8; 16], Vec<u8>, bool)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver { peer, message, bytes, lookup, .. } => {
                Some((*peer, *message, bytes.clone(), *lookup))
            }
            _ => None,
        })
        .collect()
}

/// The answers given: (answer, result).
fn answers(effects: Vec<Effect>) -> Vec<(AnswerId, Result<Answer, ApiError>)> {
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Answer { answer, result } => Some((answer, result)),
            _ => None,
        })
        .collect()
}

/// The one item of `items`.
fn only<T: std::fmt::Debug>(mut items: Vec<T>) -> T {
    assert_eq!(items.len(), 1, "{items:?}");
    items.remove(0)
}

fn sent_status(result: &Result<Answer, ApiError>) -> Option<DmStatus> {
    match result {
        Ok(Answer::MsgSent { status, .. }) => Some(*status),
        _ => None,
    }
}

/// `to` receives request `bytes` from `from`: the response bytes (after the flush).
fn receive(to: &mut Fixture, from: &Fixture, bytes: Vec<u8>, now: u64) -> (Vec<Effect>, Vec<u8>) {
    let peer = from.core.me().to_peer_id().unwrap();
    let first = to.handle(Input::DmRequest { from: peer, bytes, reply: ReplyId(9) }, now);
    let effects = to.settle(first, now);
    let response = effects
        .iter()
        .find_map(|e| match e {
            Effect::Respond { reply: ReplyId(9), bytes } => Some(bytes.clone()),
            _ => None,
        })
        .unwrap();
    (effects, response)
}

fn send(f: &mut Fixture, out: Outgoing, answer: u64, now: u64) -> Vec<Effect> {
    f.handle(Input::MsgSend { message: out, answer: AnswerId(answer) }, now)
}

fn delivered(
    f: &mut Fixture,
    to: &Fixture,
    m: u8,
    result: Result<Vec<u8>, String>,
    now: u64,
) -> Vec<Effect> {
    let input = Input::DmDelivered { peer: to.core.me(), message: [m; 16], result };
    let effects = f.handle(input, now);
    f.settle(effects, now)
}

#[test]
fn admission_refuses_oneself_empty_blocked_and_one_sided() {
    let (mut a, b) = pair();
    let stranger = Fixture::new(3);
    let kind = |out: Outgoing, a: &mut Fixture| {
        let effects = send(a, out, 1, 100);
        match answers(effects).pop() {
            Some((_, Err(error))) => error.kind,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(kind(message(&a, 1, "me"), &mut a), ErrorKind::Refused);
    assert_eq!(kind(message(&b, 1, "  "), &mut a), ErrorKind::Invalid);
    assert_eq!(kind(message(&stranger, 1, "hi"), &mut a), ErrorKind::NotMutual);
    a.core
        .store()
        .set_moderation(&b.core.me(), Moderation { blocked: true, muted: false })
        .unwrap();
    assert_eq!(kind(message(&b, 1, "hi"), &mut a), ErrorKind::Refused);
    // Nothing was stored or queued for any of them.
    assert_eq!(a.core.store().dm_outbox_len(), 0);
}

#[test]
fn a_message_goes_out_is_received_once_and_answered_delivered_after_a_flush() {
    let (mut a, mut b) = pair();
    let effects = send(&mut a, message(&b, 1, "hello"), 7, 100);
    assert!(matches!(
        effects[0],
        Effect::Schedule { at: 3_100, timer: Timer::SendWait(AnswerId(7)) }
    ));
    let (to, id, bytes, lookup) = only(deliveries(&effects));
    assert_eq!((to, id, lookup), (b.core.me(), [1; 16], false));
    let (got, receipt) = receive(&mut b, &a, bytes.clone(), 150);
    assert!(got.iter().any(|e| matches!(e, Effect::Received { hidden: false, .. })));
    // The flush comes before the receipt.
    let flush = got.iter().position(|e| matches!(e, Effect::Flush(_))).unwrap();
    let respond = got.iter().position(|e| matches!(e, Effect::Respond { .. })).unwrap();
    assert!(flush < respond);
    // The same message again (a retry): a receipt, nothing stored twice.
    let (again, receipt2) = receive(&mut b, &a, bytes, 160);
    assert!(!again.iter().any(|e| matches!(e, Effect::Received { .. })));
    assert_eq!(receipt, receipt2);
    assert_eq!(b.core.store().dm_thread(&a.core.me(), 10).unwrap().len(), 1);
    let done = delivered(&mut a, &b, 1, Ok(receipt), 200);
    let (answer, result) = only(answers(done));
    assert_eq!(answer, AnswerId(7));
    assert_eq!(sent_status(&result), Some(DmStatus::Delivered));
    assert_eq!(a.core.store().dm_outbox_len(), 0);
    // The wait's timer after the answer changes nothing.
    assert!(a.handle(Input::Timer(Timer::SendWait(AnswerId(7))), 3_100).is_empty());
}

#[test]
fn a_peers_messages_go_one_at_a_time_in_the_order_written() {
    let (mut a, b) = pair();
    let first = send(&mut a, message(&b, 1, "one"), 1, 100);
    assert_eq!(deliveries(&first).len(), 1);
    // The lane is busy: the second waits its turn.
    let second = send(&mut a, message(&b, 2, "two"), 2, 101);
    assert!(deliveries(&second).is_empty());
    let receipt = DmReply::Delivered { id: MessageId::from_bytes([1; 16]) }.to_bytes().unwrap();
    let next = delivered(&mut a, &b, 1, Ok(receipt), 110);
    assert_eq!(deliveries(&next).iter().map(|d| d.1).collect::<Vec<_>>(), vec![[2; 16]]);
    let (answer, result) = only(answers(next));
    assert_eq!(answer, AnswerId(1));
    assert_eq!(sent_status(&result), Some(DmStatus::Delivered));
}

#[test]
fn an_unreachable_peers_queue_backs_off_and_the_sender_hears_queued() {
    let (mut a, b) = pair();
    send(&mut a, message(&b, 1, "one"), 1, 1_000);
    let failed = delivered(&mut a, &b, 1, Err("unreachable".into()), 1_100);
    assert!(failed
        .iter()
        .any(|e| matches!(e, Effect::Schedule { at: 2_100, timer: Timer::Outbox })));
    let (answer, result) = only(answers(failed));
    assert_eq!(answer, AnswerId(1));
    assert_eq!(sent_status(&result), Some(DmStatus::Queued));
    // Not due yet; then due, and now the DHT is asked (it failed before).
    assert!(a.handle(Input::Timer(Timer::Outbox), 2_000).is_empty());
    let retry = a.handle(Input::Timer(Timer::Outbox), 2_100);
    assert_eq!(
        deliveries(&retry).iter().map(|d| (d.1, d.3)).collect::<Vec<_>>(),
        vec![([1; 16], true)]
    );
    let again = delivered(&mut a, &b, 1, Err("unreachable".into()), 2_200);
    assert!(again.iter().any(|e| matches!(e, Effect::Schedule { at: 4_200, .. })));
    // A connection from the peer tries at once, whatever the schedule.
    let peer = b.core.me().to_peer_id().unwrap();
    assert_eq!(deliveries(&a.handle(Input::Connected { peer }, 2_300)).len(), 1);
}

#[test]
fn the_retry_delay_doubles_up_to_its_limit() {
    let mut lanes = outbox::Lanes::default();
    let peer = [1; 32];
    let mut delays = Vec::new();
    for _ in 0..9 {
        lanes.claim(peer, [0; 16]);
        delays.push(lanes.finish(peer, false, 0).unwrap());
    }
    assert_eq!(delays, vec![1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    // Delivered all: the schedule is forgotten.
    lanes.claim(peer, [0; 16]);
    assert_eq!(lanes.finish(peer, true, 0), None);
    assert_eq!(lanes.due([peer], 0, None), vec![peer]);
}

#[test]
fn a_receipt_for_another_message_or_a_late_reply_changes_nothing() {
    let (mut a, b) = pair();
    send(&mut a, message(&b, 1, "one"), 1, 100);
    // A receipt naming another message: still queued.
    let wrong = DmReply::Delivered { id: MessageId::from_bytes([5; 16]) }.to_bytes().unwrap();
    let effects = delivered(&mut a, &b, 1, Ok(wrong), 110);
    let (_, result) = only(answers(effects));
    assert_eq!(sent_status(&result), Some(DmStatus::Queued));
    assert_eq!(a.core.store().dm_outbox_len(), 1);
    // A reply for a message the lane is not delivering now is ignored.
    let late = DmReply::Delivered { id: MessageId::from_bytes([1; 16]) }.to_bytes().unwrap();
    assert!(delivered(&mut a, &b, 1, Ok(late), 120).is_empty());
}

#[test]
fn a_refusal_is_answered_with_the_recipients_reason() {
    let (mut a, _) = pair();
    // B' does not follow A: it refuses, and says only that.
    let mut b = Fixture::new(2);
    let effects = send(&mut a, message(&b, 1, "hi"), 1, 100);
    let (_, _, bytes, _) = only(deliveries(&effects));
    let (got, refusal) = receive(&mut b, &a, bytes, 110);
    assert!(!got.iter().any(|e| matches!(e, Effect::Received { .. } | Effect::Flush(_))));
    let done = delivered(&mut a, &b, 1, Ok(refusal), 120);
    let (_, result) = only(answers(done));
    let error = result.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Refused);
    assert_eq!(error.message, "refused by the recipient: not a mutual connection");
    assert_eq!(a.core.store().dm_outbox_len(), 0);
}

#[test]
fn the_sender_hears_queued_when_the_wait_ends_first() {
    let (mut a, b) = pair();
    send(&mut a, message(&b, 1, "hi"), 4, 100);
    let waited = a.handle(Input::Timer(Timer::SendWait(AnswerId(4))), 3_100);
    let (answer, result) = only(answers(a.settle(waited, 3_100)));
    assert_eq!(answer, AnswerId(4));
    assert_eq!(sent_status(&result), Some(DmStatus::Queued));
    // Delivered later: recorded, and nobody is answered twice.
    let receipt = DmReply::Delivered { id: MessageId::from_bytes([1; 16]) }.to_bytes().unwrap();
    assert!(answers(delivered(&mut a, &b, 1, Ok(receipt), 3_200)).is_empty());
    assert_eq!(a.core.store().dm_outbox_len(), 0);
}

#[test]
fn after_a_restart_every_queue_is_tried_at_once() {
    let (mut a, b) = pair();
    let mut c = Fixture::new(3);
    befriend(&mut a, &mut c);
    send(&mut a, message(&b, 1, "to b"), 1, 100);
    send(&mut a, message(&b, 2, "to b again"), 2, 101);
    send(&mut a, message(&c, 3, "to c"), 3, 102);
    delivered(&mut a, &b, 1, Err("down".into()), 110);
    delivered(&mut a, &c, 3, Err("down".into()), 110);
    // The old core would wait; after a crash and restart (what was flushed: every
    // message, since each was answered) both peers are tried now, each at its oldest.
    let mut restarted = a.restart(1);
    assert!(a.handle(Input::Timer(Timer::Outbox), 120).is_empty());
    let effects = restarted.handle(Input::Timer(Timer::Outbox), 120);
    let mut tried: Vec<_> = deliveries(&effects).iter().map(|d| (d.0, d.1)).collect();
    tried.sort();
    let mut expected = vec![(b.core.me(), [1; 16]), (c.core.me(), [3; 16])];
    expected.sort();
    assert_eq!(tried, expected);
}

#[test]
fn pair_key_cache_is_bounded_and_keeps_recent_peers() {
    use crate::core::dm::keys::{PairKeyCache, MAX_PAIR_KEYS};
    let me = Keypair::from_secret_bytes(&[1; 32]);
    let peers: Vec<AuthorId> = (0..MAX_PAIR_KEYS + 20)
        .map(|i| {
            let mut secret = [7u8; 32];
            secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
            Keypair::from_secret_bytes(&secret).id()
        })
        .collect();
    let mut cache = PairKeyCache::default();
    let first = peers[0];
    for (i, peer) in peers.iter().enumerate() {
        cache.put(Arc::new(PairKeys::new(&me, peer).unwrap()));
        // The first peer stays in use.
        assert!(cache.get(&first).is_some(), "after {i}");
    }
    assert_eq!(cache.len(), MAX_PAIR_KEYS);
    assert!(cache.get(&peers[1]).is_none());
    assert!(cache.get(peers.last().unwrap()).is_some());
}
