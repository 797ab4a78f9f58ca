//! Forward-secret messages (issue #17): what a `kill -9` can leave behind, and lanes that
//! must not stay wedged.

use kith_protocol::{dm::MessageId, olm::envelope::Dm2Reply};

use super::{
    olm::{
        device_of, devices_pair, out, pump, receive_on, received_ids, sealed_requests, status_of,
        talk,
    },
    *,
};
use crate::{
    core::{outbox::Lanes, DmProto},
    store::DmStatus,
};

/// The lost-message state the kill -9 test once met (seed 1796367000853420137): the
/// recipient's store kept its session's new state (the message key spent) but not the
/// message nor the envelope's digest, as when another task's flush lands between the
/// recipient's writes and the process is killed before its own flush. Before, the
/// recipient answered the sender's retry of those same bytes with nothing, and the
/// sender tried them again forever (its outbox never emptied). Now the recipient asks
/// for a new session and the message goes on it, once.
#[test]
fn a_spent_key_whose_message_was_lost_is_repaired_with_a_new_session() {
    let (mut a, mut b) = devices_pair();
    talk(&mut a, &mut b, 1, 100);
    talk(&mut b, &mut a, 2, 110);
    let first = a.handle(Input::MsgSend { message: out(&b, 3), answer: AnswerId(3) }, 200);
    let bytes = sealed_requests(&a.settle(first, 200)).remove(0);
    // b's durable state before message 3, then b opens it.
    let mut crashed = b.restart(2);
    let (got, _) = receive_on(&mut b, &a, bytes.clone(), DmProto::V2, 210);
    assert_eq!(received_ids(&got), vec![[3; 16]]);
    // The crash kept the session that opened it, not the message.
    let a_device = device_of(&a).id();
    let session = b.core.store().olm_sessions(&a_device).unwrap().unwrap();
    crashed.core.store().set_olm_sessions(&a_device, &session).unwrap();
    crashed.core.store().flush_blocking().unwrap();
    assert!(crashed.core.store().dm_get(&a.core.me(), &[3; 16]).unwrap().is_none());

    // a's retry: the same bytes.
    let (got, response) = receive_on(&mut crashed, &a, bytes, DmProto::V2, 220);
    assert!(received_ids(&got).is_empty());
    assert_eq!(Dm2Reply::from_bytes(&response).unwrap(), Dm2Reply::NewSession);
    let input = Input::DmDelivered { peer: b.core.me(), message: [3; 16], result: Ok(response) };
    let next = a.handle(input, 230);
    let (seen, theirs) = pump(&mut a, &mut crashed, next, 230);
    assert_eq!(received_ids(&theirs), vec![[3; 16]]);
    assert_eq!(status_of(&a, 3), DmStatus::Delivered);
    assert!(seen.iter().all(|e| !matches!(e, Effect::Answer { result: Err(_), .. })));
    let stored = crashed.core.store().dm_thread(&a.core.me(), 100).unwrap();
    assert_eq!(
        stored.iter().filter(|m| m.id == MessageId::from_bytes([3; 16]).to_string()).count(),
        1
    );
    // And the conversation goes on, both ways.
    let (_, theirs) = talk(&mut a, &mut crashed, 4, 240);
    assert_eq!(received_ids(&theirs), vec![[4; 16]]);
    let (_, theirs) = talk(&mut crashed, &mut a, 5, 250);
    assert_eq!(received_ids(&theirs), vec![[5; 16]]);
}

/// A crash right after the recipient stored the message and the digest, before its
/// session: the retry is answered from the digest, and the session it kept still opens
/// what comes next.
#[test]
fn a_message_kept_without_its_session_is_answered_and_the_next_one_opens() {
    let (mut a, mut b) = devices_pair();
    talk(&mut a, &mut b, 1, 100);
    let a_device = device_of(&a).id();
    let old = b.core.store().olm_sessions(&a_device).unwrap().unwrap();
    let first = a.handle(Input::MsgSend { message: out(&b, 2), answer: AnswerId(2) }, 200);
    let bytes = sealed_requests(&a.settle(first, 200)).remove(0);
    let (got, reply) = receive_on(&mut b, &a, bytes.clone(), DmProto::V2, 210);
    assert_eq!(received_ids(&got), vec![[2; 16]]);
    // The session's new state lost, the message and digest kept.
    b.core.store().set_olm_sessions(&a_device, &old).unwrap();
    b.core.store().flush_blocking().unwrap();
    let mut b = b.restart(2);
    let (got, again) = receive_on(&mut b, &a, bytes, DmProto::V2, 220);
    assert!(received_ids(&got).is_empty());
    assert_eq!(again, reply);
    let input = Input::DmDelivered { peer: b.core.me(), message: [2; 16], result: Ok(again) };
    let next = a.handle(input, 230);
    a.settle(next, 230);
    assert_eq!(status_of(&a, 2), DmStatus::Delivered);
    let (_, theirs) = talk(&mut a, &mut b, 3, 240);
    assert_eq!(received_ids(&theirs), vec![[3; 16]]);
}

#[test]
fn a_lane_whose_peer_connects_while_it_is_busy_goes_again_at_once_if_that_try_fails() {
    let (peer, message) = ([1; 32], [2; 16]);
    let mut lanes = Lanes::default();
    // A lane that failed a few times waits longer and longer.
    let mut at = 0;
    for now in [1_000, 10_000, 20_000, 40_000] {
        lanes.claim(peer, message);
        at = lanes.finish(peer, false, now).unwrap();
    }
    assert!(at >= 40_000 + 8_000, "{at}");
    // The peer connects while a try is under way: if that one fails, no wait.
    lanes.claim(peer, message);
    lanes.nudge(&peer);
    assert_eq!(lanes.finish(peer, false, 50_000), Some(50_000));
    // A nudge of an idle lane does nothing (it is started by the caller).
    lanes.nudge(&peer);
    lanes.claim(peer, message);
    assert!(lanes.finish(peer, false, 60_000).unwrap() > 60_000);
}

#[test]
fn a_message_that_reached_its_peer_resets_the_lanes_back_off() {
    let (peer, message) = ([1; 32], [2; 16]);
    let mut lanes = Lanes::default();
    for now in [1_000, 10_000, 20_000, 40_000, 80_000] {
        lanes.claim(peer, message);
        lanes.finish(peer, false, now);
    }
    lanes.claim(peer, message);
    lanes.reached(&peer);
    assert_eq!(
        lanes.finish(peer, false, 100_000),
        Some(100_000 + crate::core::outbox::RETRY_MIN_MS)
    );
}

/// A message queued for `/kith/dm/2` is not sealed for `/kith/dm/1` as well (two X25519
/// ladders for nothing); if its lane sends it on `/kith/dm/1` after all (no device of
/// the peer known any more), it is sealed then, and delivered once.
#[test]
fn a_message_queued_for_sessions_is_sealed_for_dm1_only_if_it_goes_there() {
    let (mut a, b) = devices_pair();
    a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    let queued = a.core.store().dm_outbox().unwrap();
    assert_eq!(queued.iter().map(|e| (e.id, e.request.len())).collect::<Vec<_>>(), [([1; 16], 0)]);

    // Peers with no devices: such an entry (left by a node that knew the device) goes on
    // /kith/dm/1, sealed when its lane reaches it.
    let (mut a, mut b) = super::dm::pair();
    let record = crate::store::DmRecord {
        id: MessageId::from_bytes([7; 16]).to_string(),
        from: a.core.me().to_string(),
        to: b.core.me().to_string(),
        text: "sealed late".into(),
        timestamp: 50,
        sent_at: None,
        status: DmStatus::Queued,
        reason: None,
        read: true,
        attachments: Vec::new(),
    };
    let entry = crate::store::OutboxEntry {
        id: [7; 16],
        peer: *b.core.me().as_bytes(),
        request: Vec::new(),
        attempts: 0,
        order: 0,
    };
    let (me, peer) = (a.core.me(), b.core.me());
    a.core.store().dm_insert(&peer, &me, &[7; 16], &record, Some(&entry)).unwrap();
    let first = a.handle(Input::Timer(Timer::Outbox), 100);
    let effects = a.settle(first, 100);
    let sent: Vec<(DmProto, Vec<u8>)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver { proto, bytes, .. } => Some((*proto, bytes.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "{effects:?}");
    assert_eq!(sent[0].0, DmProto::V1);
    let (got, _) = receive_on(&mut b, &a, sent[0].1.clone(), DmProto::V1, 200);
    assert_eq!(received_ids(&got), vec![[7; 16]]);
    let thread = b.core.store().dm_thread(&me, 10).unwrap();
    assert_eq!(thread.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["sealed late"]);
}
