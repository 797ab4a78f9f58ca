//! `msg send` answers and flushes (issue #17, numbers): a message on an Olm session was
//! flushed with its session before it left, so its answer needs no flush of its own; a
//! crash that loses its new status only sends the same bytes again.

use super::{
    dm::pair,
    olm::{devices_pair, out, receive_on, received_ids, sealed_requests, status_of},
    *,
};
use crate::{core::DmProto, store::DmStatus};

/// Whether `effects` answer `msg send` `answer` with "delivered".
fn delivered(effects: &[Effect], answer: AnswerId) -> Option<usize> {
    effects.iter().position(|e| {
        matches!(e, Effect::Answer { answer: a, result: Ok(Answer::MsgSent { status: DmStatus::Delivered, .. }) } if *a == answer)
    })
}

/// `a` sends `b` message `n`, `b` takes it: `a`'s effects on the receipt.
fn send_and_receipt(a: &mut Fixture, b: &mut Fixture, n: u8, now: u64) -> (Vec<u8>, Vec<Effect>) {
    let first = a.handle(Input::MsgSend { message: out(b, n), answer: AnswerId(n.into()) }, now);
    let settled = a.settle(first, now);
    let (bytes, proto) = settled
        .iter()
        .find_map(|e| match e {
            Effect::Deliver { bytes, proto, .. } => Some((bytes.clone(), *proto)),
            _ => None,
        })
        .unwrap();
    let (got, response) = receive_on(b, a, bytes.clone(), proto, now + 1);
    assert_eq!(received_ids(&got), vec![[n; 16]]);
    let input = Input::DmDelivered { peer: b.core.me(), message: [n; 16], result: Ok(response) };
    (bytes, a.handle(input, now + 2))
}

#[test]
fn a_message_on_a_session_is_answered_without_a_flush_and_a_lost_status_only_sends_it_again() {
    let (mut a, mut b) = devices_pair();
    let (bytes, after) = send_and_receipt(&mut a, &mut b, 1, 100);
    // Answered at once: no flush among the effects of the receipt.
    assert!(delivered(&after, AnswerId(1)).is_some(), "{after:?}");
    assert!(!after.iter().any(|e| matches!(e, Effect::Flush(_))), "{after:?}");
    assert_eq!(status_of(&a, 1), DmStatus::Delivered);

    // A crash before any later flush: the message and its outbox entry are there (they
    // were flushed with the session); only its status is lost.
    let mut crashed = a.restart(1);
    assert_eq!(status_of(&crashed, 1), DmStatus::Queued);
    let again = crashed.handle(Input::Timer(Timer::Outbox), 200);
    let again = crashed.settle(again, 200);
    assert_eq!(sealed_requests(&again), vec![bytes.clone()]);
    // The recipient knows those bytes by their digest: the same receipt, nothing stored.
    let count = b.core.store().dm_count();
    let (got, response) = receive_on(&mut b, &crashed, bytes, DmProto::V2, 210);
    assert!(received_ids(&got).is_empty());
    assert_eq!(b.core.store().dm_count(), count);
    let input = Input::DmDelivered { peer: b.core.me(), message: [1; 16], result: Ok(response) };
    crashed.handle(input, 220);
    assert_eq!(status_of(&crashed, 1), DmStatus::Delivered);
    assert!(crashed.core.store().dm_outbox().unwrap().is_empty());
}

#[test]
fn a_message_on_dm1_is_answered_only_after_a_flush() {
    // No devices yet: the message goes on `/kith/dm/1`, not flushed before it left.
    let (mut a, mut b) = pair();
    let (_, after) = send_and_receipt(&mut a, &mut b, 1, 100);
    assert!(delivered(&after, AnswerId(1)).is_none(), "{after:?}");
    let after = a.settle(after, 102);
    let flush = after.iter().position(|e| matches!(e, Effect::Flush(_))).unwrap();
    assert!(flush < delivered(&after, AnswerId(1)).unwrap(), "{after:?}");
}
