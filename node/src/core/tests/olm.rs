//! Forward-secret messages (issue #17): this node's device, its announcement and its
//! rotation.

use kith_protocol::olm::prekey::{Announcement, FALLBACK_ROTATION_MS};

use super::{dm::pair, *};
use crate::core::{dm::Outgoing, DmProto, Timer};

/// `f`'s latest announcement in its own store.
fn announcement(f: &Fixture) -> Option<Announcement> {
    let record = f.core.store().devices(&f.core.me()).unwrap()?;
    match record.record.kind {
        RecordKind::Devices(a) => Some(a),
        other => panic!("{other:?}"),
    }
}

/// The text of [`out`]'s messages: long enough that a check that a sealed blob does not
/// hold it cannot fail by chance.
pub(super) const SECRET: &str = "only the recipient may read this";

pub(super) fn out(to: &Fixture, n: u8) -> Outgoing {
    Outgoing {
        peer: to.core.me(),
        id: kith_protocol::dm::MessageId::from_bytes([n; 16]),
        text: SECRET.into(),
        attachments: vec![],
    }
}

/// Issue #19: a node makes its device as soon as it has a mutual connection (someone
/// who may put it in a group or a circle), without doing anything else: key shares for
/// it wait until its device is known, and a circle member cannot know it is in one.
#[test]
fn a_node_makes_its_device_once_it_has_a_mutual_connection_without_messaging() {
    let (mut a, mut b) = (Fixture::new(1), Fixture::new(2));
    // No mutual connection: no device (nobody can put it in a group or circle).
    let effects = a.handle(Input::Timer(Timer::Devices), 1_000);
    assert!(matches!(
        effects.as_slice(),
        [Effect::Schedule { at: 3_601_000, timer: Timer::Devices }]
    ));
    a.publish(RecordKind::Follow { target: b.core.me() }, 1_100);
    assert!(a.core.store().olm_device().unwrap().is_none());
    assert!(announcement(&a).is_none());
    // B's follow of A arrives: A's first mutual connection. A makes its device and
    // announces it, after a flush.
    let (_, follow) = b.publish(RecordKind::Follow { target: a.core.me() }, 1_200);
    let keys = Keypair::from_secret_bytes(&[2; 32]);
    let message = gossip(&keys, &Topic::Author(b.core.me()), &follow);
    let first = a.handle(Input::Gossip(vec![message]), 1_300);
    let effects = a.settle(first, 1_300);
    let topic = Topic::Author(a.core.me()).to_string();
    assert!(published(&effects).contains(&topic), "{effects:?}");
    assert!(a.core.store().olm_device().unwrap().is_some());
    assert_eq!(announcement(&a).unwrap().verify(&a.core.me()).unwrap().len(), 1);
    // A node that has mutual connections from before and no device makes it at start.
    let (mut c, _d) = pair();
    let first = c.handle(Input::Timer(Timer::Devices), 2_000);
    let effects = c.settle(first, 2_000);
    assert!(published(&effects).contains(&Topic::Author(c.core.me()).to_string()));
    assert!(announcement(&c).is_some());
}

#[test]
fn the_first_message_makes_the_device_and_announces_it_once_durably() {
    let (mut a, b) = pair();
    let first = a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    let effects = a.settle(first, 100);
    let topic = Topic::Author(a.core.me()).to_string();
    assert!(published(&effects).contains(&topic), "{effects:?}");
    // Published only after a flush, and the device is durable with it.
    let flush = effects.iter().position(|e| matches!(e, Effect::Flush(_))).unwrap();
    let publish = effects.iter().position(|e| matches!(e, Effect::Publish { .. })).unwrap();
    assert!(flush < publish);
    let announced = announcement(&a).unwrap();
    assert_eq!(announced.verify(&a.core.me()).unwrap().len(), 1);
    let restarted = a.restart(1);
    assert_eq!(announcement(&restarted), Some(announced.clone()));
    assert!(restarted.core.store().olm_device().unwrap().is_some());

    // A second message announces nothing new.
    let again = a.handle(Input::MsgSend { message: out(&b, 2), answer: AnswerId(2) }, 200);
    assert!(published(&a.settle(again, 200)).is_empty());

    // After a restart the same device is loaded: the announcement stands.
    let mut restarted = a.restart(1);
    let next = restarted.handle(Input::Timer(Timer::Devices), 300);
    assert!(published(&restarted.settle(next, 300)).is_empty());
    assert_eq!(announcement(&restarted), Some(announced));
}

#[test]
fn the_fallback_key_is_rotated_when_old_and_the_new_one_announced() {
    let (mut a, b) = pair();
    let first = a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    a.settle(first, 100);
    let before = announcement(&a).unwrap();
    let later = 100 + FALLBACK_ROTATION_MS;
    let effects = a.handle(Input::Timer(Timer::Devices), later);
    let effects = a.settle(effects, later);
    assert_eq!(published(&effects), vec![Topic::Author(a.core.me()).to_string()]);
    let after = announcement(&a).unwrap();
    let (old, new) = (&before.devices[0], &after.devices[0]);
    assert_eq!(old.certificate, new.certificate);
    assert_ne!(old.fallback.prekey.key, new.fallback.prekey.key);
    assert_eq!(new.fallback.prekey.created, later);
}

/// Carries `from`'s `effects` (flushes settled) to `to` and the replies back, until no
/// delivery is left: `from`'s effects and `to`'s, in order.
pub(super) fn pump(
    from: &mut Fixture,
    to: &mut Fixture,
    effects: Vec<Effect>,
    now: u64,
) -> (Vec<Effect>, Vec<Effect>) {
    let mut queue: std::collections::VecDeque<Effect> = from.settle(effects, now).into();
    let (mut seen, mut theirs) = (Vec::new(), Vec::new());
    while let Some(effect) = queue.pop_front() {
        if let Effect::Deliver { peer, message, bytes, proto, .. } = &effect {
            let (got, response) = receive_on(to, from, bytes.clone(), *proto, now);
            theirs.extend(got);
            let input = Input::DmDelivered { peer: *peer, message: *message, result: Ok(response) };
            let next = from.handle(input, now);
            queue.extend(from.settle(next, now));
        }
        seen.push(effect);
    }
    (seen, theirs)
}

/// `to` receives `bytes` from `from` on `proto`: its effects and the response.
pub(super) fn receive_on(
    to: &mut Fixture,
    from: &Fixture,
    bytes: Vec<u8>,
    proto: DmProto,
    now: u64,
) -> (Vec<Effect>, Vec<u8>) {
    let peer = from.core.me().to_peer_id().unwrap();
    let reply = ReplyId(77);
    let input = match proto {
        DmProto::V1 => Input::DmRequest { from: peer, bytes, reply },
        DmProto::V2 => Input::Dm2Request { from: peer, bytes, reply },
    };
    let first = to.handle(input, now);
    let effects = to.settle(first, now);
    let response = effects
        .iter()
        .find_map(|e| match e {
            Effect::Respond { reply: r, bytes } if *r == reply => Some(bytes.clone()),
            _ => None,
        })
        .unwrap();
    (effects, response)
}

/// `a` sends `b` message `n`: `a`'s effects and `b`'s.
pub(super) fn talk(
    a: &mut Fixture,
    b: &mut Fixture,
    n: u8,
    now: u64,
) -> (Vec<Effect>, Vec<Effect>) {
    let first = a.handle(Input::MsgSend { message: out(b, n), answer: AnswerId(n.into()) }, now);
    pump(a, b, first, now)
}

/// Gives `to` the latest announcement of `from` (as gossip would).
pub(super) fn learn(to: &Fixture, from: &Fixture) {
    let stored = from.core.store().devices(&from.core.me()).unwrap().unwrap();
    let bytes = from.core.store().get_bytes(&stored.id).unwrap().unwrap();
    to.core.store().insert(&VerifiedRecord::from_bytes(&bytes).unwrap()).unwrap();
}

/// Two mutual connections whose devices are made and announced to each other (their
/// first messages went on `/kith/dm/1`).
pub(super) fn devices_pair() -> (Fixture, Fixture) {
    let (mut a, mut b) = pair();
    talk(&mut a, &mut b, 200, 50);
    talk(&mut b, &mut a, 201, 50);
    learn(&a, &b);
    learn(&b, &a);
    (a, b)
}

pub(super) fn protos(effects: &[Effect]) -> Vec<DmProto> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver { proto, .. } => Some(*proto),
            _ => None,
        })
        .collect()
}

pub(super) fn received_ids(effects: &[Effect]) -> Vec<[u8; 16]> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Received { message, .. } => Some(*message),
            _ => None,
        })
        .collect()
}

pub(super) fn status_of(f: &Fixture, n: u8) -> crate::store::DmStatus {
    f.core.store().dm_get(&f.core.me(), &[n; 16]).unwrap().unwrap().status
}

#[test]
fn the_first_messages_go_on_dm1_then_on_olm_sessions_sealed_and_flushed_before_they_leave() {
    let (mut a, mut b) = devices_pair();
    let first = a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    let settled = a.settle(first, 100);
    // Sealed: the session and the sealed request are flushed before the delivery.
    let flush = settled.iter().position(|e| matches!(e, Effect::Flush(_))).unwrap();
    let deliver = settled.iter().position(|e| matches!(e, Effect::Deliver { .. })).unwrap();
    assert!(flush < deliver, "{settled:?}");
    assert_eq!(protos(&settled), vec![DmProto::V2]);
    // A crash right after that flush: the same bytes go out again.
    let Effect::Deliver { bytes, .. } = &settled[deliver] else { unreachable!() };
    let mut crashed = a.restart(1);
    let again = crashed.handle(Input::Timer(Timer::Outbox), 200);
    let again = crashed.settle(again, 200);
    let resent: Vec<_> = again
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver { bytes, proto: DmProto::V2, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(resent, vec![bytes.clone()]);
    // The recipient opens it once; its receipt comes after its flush.
    let (got, response) = receive_on(&mut b, &a, bytes.clone(), DmProto::V2, 300);
    assert_eq!(received_ids(&got), vec![[1; 16]]);
    let flush = got.iter().position(|e| matches!(e, Effect::Flush(_))).unwrap();
    let respond = got.iter().position(|e| matches!(e, Effect::Respond { .. })).unwrap();
    assert!(flush < respond);
    let reply = kith_protocol::olm::envelope::Dm2Reply::from_bytes(&response).unwrap();
    assert!(matches!(
        reply,
        kith_protocol::olm::envelope::Dm2Reply::Receipt(
            kith_protocol::dm::DmReply::Delivered { .. }
        )
    ));
}

#[test]
fn a_duplicate_is_opened_once_stored_once_and_answered_delivered_even_after_a_restart() {
    let (mut a, mut b) = devices_pair();
    let first = a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    let settled = a.settle(first, 100);
    let bytes = settled
        .iter()
        .find_map(|e| match e {
            Effect::Deliver { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .unwrap();
    let (got, first_reply) = receive_on(&mut b, &a, bytes.clone(), DmProto::V2, 150);
    assert_eq!(received_ids(&got), vec![[1; 16]]);
    let count = b.core.store().dm_count();
    let (got, second_reply) = receive_on(&mut b, &a, bytes.clone(), DmProto::V2, 160);
    assert!(received_ids(&got).is_empty());
    assert_eq!(first_reply, second_reply);
    let mut b = b.restart(2);
    let (got, third_reply) = receive_on(&mut b, &a, bytes, DmProto::V2, 170);
    assert!(received_ids(&got).is_empty());
    assert_eq!(third_reply, first_reply);
    assert_eq!(b.core.store().dm_count(), count);
}

#[test]
fn a_conversation_goes_both_ways_in_order_on_sessions() {
    let (mut a, mut b) = devices_pair();
    let mut got_b = Vec::new();
    let mut got_a = Vec::new();
    for n in 1..=20u8 {
        let (mine, theirs) = talk(&mut a, &mut b, n, 100 + u64::from(n));
        assert_eq!(protos(&mine), vec![DmProto::V2]);
        got_b.extend(received_ids(&theirs));
        let (mine, theirs) = talk(&mut b, &mut a, 100 + n, 100 + u64::from(n));
        assert_eq!(protos(&mine), vec![DmProto::V2]);
        got_a.extend(received_ids(&theirs));
        assert_eq!(status_of(&a, n), crate::store::DmStatus::Delivered);
    }
    assert_eq!(got_b, (1..=20u8).map(|n| [n; 16]).collect::<Vec<_>>());
    assert_eq!(got_a, (101..=120u8).map(|n| [n; 16]).collect::<Vec<_>>());
}

#[test]
fn a_lost_session_is_replaced_and_the_message_sent_again_without_an_error() {
    let (mut a, mut b) = devices_pair();
    talk(&mut a, &mut b, 1, 100);
    talk(&mut b, &mut a, 2, 110);
    // b loses its sessions with a's device.
    let a_device = a.core.store().devices(&a.core.me()).unwrap().unwrap();
    let RecordKind::Devices(announced) = a_device.record.kind else { unreachable!() };
    let a_device = announced.devices[0].certificate.certificate.device;
    b.core.store().set_olm_sessions(&a_device, b"lost").unwrap();
    let (mine, theirs) = talk(&mut a, &mut b, 3, 120);
    // Sealed, refused with NewSession, a one-time key claimed, sealed again: delivered.
    assert_eq!(protos(&mine), vec![DmProto::V2; 3]);
    assert_eq!(received_ids(&theirs), vec![[3; 16]]);
    assert_eq!(status_of(&a, 3), crate::store::DmStatus::Delivered);
    assert!(mine.iter().all(|e| !matches!(e, Effect::Answer { result: Err(_), .. })));
    // And the conversation goes on.
    let (_, theirs) = talk(&mut a, &mut b, 4, 130);
    assert_eq!(received_ids(&theirs), vec![[4; 16]]);
    let (_, theirs) = talk(&mut b, &mut a, 5, 140);
    assert_eq!(received_ids(&theirs), vec![[5; 16]]);
}

/// The `/kith/dm/2` requests among `effects`, as they would travel.
pub(super) fn sealed_requests(effects: &[Effect]) -> Vec<Vec<u8>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver { bytes, proto: DmProto::V2, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

/// `f`'s announced device, verified.
pub(super) fn device_of(f: &Fixture) -> kith_protocol::olm::device::VerifiedDevice {
    let entries = announcement(f).unwrap().verify(&f.core.me()).unwrap();
    entries.into_iter().next().unwrap().device
}

/// Every secret node `f` (identity key `[secret; 32]`) keeps for `peer`'s device, read
/// back from its store: its device account and its sessions with that device.
fn secrets(
    f: &Fixture,
    secret: u8,
    peer: &kith_protocol::olm::device::VerifiedDevice,
) -> (kith_protocol::olm::account::Device, kith_protocol::olm::account::PeerSessions) {
    use kith_protocol::olm::{account, pickle::PickleKey};
    let key = PickleKey::derive(&Keypair::from_secret_bytes(&[secret; 32])).unwrap();
    let stored = f.core.store().olm_device().unwrap().unwrap();
    let device = account::Device::from_pickle(&stored.pickle, &key).unwrap();
    let pickle = f.core.store().olm_sessions(&peer.id()).unwrap().unwrap();
    (device, account::PeerSessions::from_pickle(&pickle, &key, peer.id()).unwrap())
}

/// Forward secrecy shown on what two nodes keep (issue #17): the sealed requests of a
/// conversation are recorded as they leave, the conversation goes on past the rotation
/// of the fallback key its first message used, and then every secret both nodes hold
/// (identity keys, hence pickle keys; device accounts; stored sessions) is read back from
/// their stores: none of the recorded messages opens, with the stored sessions or with
/// none, while the same state still opens the next message.
#[test]
fn recorded_messages_do_not_open_with_every_secret_both_nodes_keep_later() {
    use kith_protocol::olm::{envelope::Dm2Request, prekey::FALLBACK_GRACE_MS, OlmError};
    let (mut a, mut b) = devices_pair();
    let mut recorded = Vec::new();
    for n in 1..=10u8 {
        let (mine, _) = talk(&mut a, &mut b, n, 100 + u64::from(n));
        recorded.extend(sealed_requests(&mine).into_iter().map(|r| (r, true)));
        let (mine, _) = talk(&mut b, &mut a, 100 + n, 100 + u64::from(n));
        recorded.extend(sealed_requests(&mine).into_iter().map(|r| (r, false)));
    }
    assert_eq!(recorded.len(), 20);
    // Days later: the used fallback key was replaced at once and its secret is forgotten
    // after the grace, on the devices timer.
    let later = 1_000 + FALLBACK_GRACE_MS + super::super::dm::device::MAINTAIN_EVERY_MS;
    for f in [&mut a, &mut b] {
        let effects = f.handle(Input::Timer(Timer::Devices), later);
        f.settle(effects, later);
    }
    // The conversation goes on (both ratchets turn over several times).
    for n in 21..=40u8 {
        let now = later + u64::from(n);
        let (_, theirs) = talk(&mut a, &mut b, n, now);
        assert_eq!(received_ids(&theirs), vec![[n; 16]]);
        let (_, theirs) = talk(&mut b, &mut a, 100 + n, now);
        assert_eq!(received_ids(&theirs), vec![[100 + n; 16]]);
    }
    let (of_a, of_b) = (device_of(&a), device_of(&b));
    for (bytes, to_b) in &recorded {
        let Ok(Dm2Request::Deliver { envelope, .. }) = Dm2Request::from_bytes(bytes) else {
            panic!("not a message")
        };
        let ((mut device, mut sessions), sender) =
            if *to_b { (secrets(&b, 2, &of_a), &of_a) } else { (secrets(&a, 1, &of_b), &of_b) };
        let opened = device.open(&mut sessions, sender, &envelope);
        assert!(matches!(opened, Err(OlmError::Replay | OlmError::NoSession)), "{opened:?}");
        let mut none = kith_protocol::olm::account::PeerSessions::new(sender.id());
        assert_eq!(device.open(&mut none, sender, &envelope), Err(OlmError::NoSession));
    }
    // The same secrets open what is sent next.
    let first = a.handle(Input::MsgSend { message: out(&b, 99), answer: AnswerId(99) }, later);
    let next = sealed_requests(&a.settle(first, later));
    let Ok(Dm2Request::Deliver { envelope, .. }) = Dm2Request::from_bytes(&next[0]) else {
        panic!("not a message")
    };
    let (mut device, mut sessions) = secrets(&b, 2, &of_a);
    let opened = device.open(&mut sessions, &of_a, &envelope).unwrap();
    assert!(
        matches!(&opened.inner, kith_protocol::olm::inner::Inner::Message(p) if p.id.as_bytes() == &[99; 16]),
        "{opened:?}"
    );
}

/// `a` writes messages `ns` to `b` while message 1 travels (its delivery is returned),
/// then `b`'s receipt for 1 comes back: `a`'s effects after it.
pub(super) fn queue_behind(
    a: &mut Fixture,
    b: &mut Fixture,
    ns: std::ops::RangeInclusive<u8>,
) -> Vec<Effect> {
    let first = a.handle(Input::MsgSend { message: out(b, 1), answer: AnswerId(1) }, 100);
    let first = a.settle(first, 100);
    let one = sealed_requests(&first);
    assert_eq!(one.len(), 1);
    for n in ns {
        let effects =
            a.handle(Input::MsgSend { message: out(b, n), answer: AnswerId(n.into()) }, 100);
        assert!(protos(&a.settle(effects, 100)).is_empty(), "the lane is busy");
    }
    let (got, response) = receive_on(b, a, one[0].clone(), DmProto::V2, 110);
    assert_eq!(received_ids(&got), vec![[1; 16]]);
    let input = Input::DmDelivered { peer: b.core.me(), message: [1; 16], result: Ok(response) };
    let next = a.handle(input, 110);
    a.settle(next, 110)
}

/// The envelopes a `/kith/dm/2` request carries (none for a claim).
pub(super) fn envelopes_of(request: &[u8]) -> Vec<kith_protocol::olm::envelope::Envelope> {
    use kith_protocol::olm::envelope::Dm2Request;
    match Dm2Request::from_bytes(request).unwrap() {
        Dm2Request::Deliver { envelope, .. } => vec![envelope],
        Dm2Request::Batch { envelopes, .. } => envelopes,
        Dm2Request::Claim { .. } => Vec::new(),
    }
}

#[test]
fn messages_queued_behind_are_sealed_together_flushed_once_and_leave_in_one_batch() {
    let (mut a, mut b) = devices_pair();
    let settled = queue_behind(&mut a, &mut b, 2..=6);
    // Messages 2..=6 leave in one request after one flush that made them sealed and
    // durable.
    let flushes = settled.iter().filter(|e| matches!(e, Effect::Flush(_))).count();
    let requests = sealed_requests(&settled);
    assert_eq!(requests.len(), 1);
    let sealed: Vec<Vec<u8>> =
        (2..=6u8).map(|n| a.core.store().olm_sealed(&[n; 16]).unwrap().unwrap()).collect();
    let in_order: Vec<_> = sealed.iter().flat_map(|r| envelopes_of(r)).collect();
    assert_eq!(envelopes_of(&requests[0]), in_order);
    // (One flush, for the batch: the answer of `msg send` 1 needs none, message 1 was
    // flushed with its session before it left.)
    assert_eq!(flushes, 1, "{settled:?}");
    // A crash now: the restarted node sends exactly those envelopes, in order.
    let mut crashed = a.restart(1);
    let again = crashed.handle(Input::Timer(Timer::Outbox), 200);
    assert_eq!(sealed_requests(&crashed.settle(again, 200)), requests);
    // The recipient takes them in order and answers them all after one flush.
    let (seen, theirs) = pump(&mut a, &mut b, settled, 120);
    assert_eq!(sealed_requests(&seen), requests);
    assert_eq!(received_ids(&theirs), (2..=6u8).map(|n| [n; 16]).collect::<Vec<_>>());
    let flush = theirs.iter().position(|e| matches!(e, Effect::Flush(_))).unwrap();
    let respond = theirs.iter().position(|e| matches!(e, Effect::Respond { .. })).unwrap();
    assert!(flush < respond);
    assert_eq!(theirs.iter().filter(|e| matches!(e, Effect::Flush(_))).count(), 1);
    for n in 1..=6 {
        assert_eq!(status_of(&a, n), crate::store::DmStatus::Delivered, "message {n}");
        assert!(a.core.store().olm_sealed(&[n; 16]).unwrap().is_none());
    }
    // The same batch again (its answer lost): answered from the digests, stored once.
    let count = b.core.store().dm_count();
    let (got, response) = receive_on(&mut b, &a, requests[0].clone(), DmProto::V2, 130);
    assert!(received_ids(&got).is_empty());
    let reply = kith_protocol::olm::envelope::Dm2Reply::from_bytes(&response).unwrap();
    let kith_protocol::olm::envelope::Dm2Reply::Receipts(receipts) = reply else { panic!() };
    assert_eq!(receipts.len(), 5);
    assert_eq!(b.core.store().dm_count(), count);
}

#[test]
fn a_new_session_drops_every_message_sealed_ahead_and_seals_them_again() {
    let (mut a, mut b) = devices_pair();
    talk(&mut a, &mut b, 40, 90);
    talk(&mut b, &mut a, 41, 95);
    let settled = queue_behind(&mut a, &mut b, 2..=5);
    let ahead: Vec<Vec<u8>> =
        (2..=5u8).map(|n| a.core.store().olm_sealed(&[n; 16]).unwrap().unwrap()).collect();
    let ahead_envelopes: Vec<_> = ahead.iter().flat_map(|r| envelopes_of(r)).collect();
    // b loses its sessions with a's device: the batch stops at 2, which alone is
    // answered NewSession, and 3..=5, sealed on the same lost session, are sealed again
    // on the new one.
    b.core.store().set_olm_sessions(&device_of(&a).id(), b"lost").unwrap();
    let (seen, theirs) = pump(&mut a, &mut b, settled, 120);
    assert_eq!(received_ids(&theirs), (2..=5u8).map(|n| [n; 16]).collect::<Vec<_>>());
    let sent = sealed_requests(&seen);
    assert_eq!(envelopes_of(&sent[0]), ahead_envelopes, "the first try is the sealed batch");
    assert_eq!(sent[1], ahead[0], "then the first message alone");
    assert!(
        sent[2..].iter().flat_map(|r| envelopes_of(r)).all(|e| !ahead_envelopes.contains(&e)),
        "a request of the lost session left"
    );
    for n in 2..=5 {
        assert_eq!(status_of(&a, n), crate::store::DmStatus::Delivered, "message {n}");
    }
    assert!(seen.iter().all(|e| !matches!(e, Effect::Answer { result: Err(_), .. })));
}

#[test]
fn digests_of_accepted_envelopes_are_forgotten_after_a_month_and_a_repeat_is_not_stored_twice() {
    use crate::core::dm::RECEIVED_KEEP_MS;
    let (mut a, mut b) = devices_pair();
    let first = a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    let bytes = sealed_requests(&a.settle(first, 100)).remove(0);
    let (got, _) = receive_on(&mut b, &a, bytes.clone(), DmProto::V2, 150);
    assert_eq!(received_ids(&got), vec![[1; 16]]);
    let kept = b.core.store().olm_received_count().unwrap();
    assert!(kept >= 1);
    for (now, left) in [(150 + 3_600_000, kept), (151 + RECEIVED_KEEP_MS, 0)] {
        let effects = b.handle(Input::Timer(Timer::Devices), now);
        b.settle(effects, now);
        assert_eq!(b.core.store().olm_received_count().unwrap(), left, "at {now}");
    }
    // The envelope again, after its digest is gone: not opened as a new message.
    let count = b.core.store().dm_count();
    let (got, _) = receive_on(&mut b, &a, bytes, DmProto::V2, 200 + RECEIVED_KEEP_MS);
    assert!(received_ids(&got).is_empty());
    assert_eq!(b.core.store().dm_count(), count);
}

/// The first message on a session can reach a recipient that has not seen the sender's
/// announcement yet (it is on its way by gossip, on the same connection): the recipient
/// answers "not now" (an empty reply) and fetches the sender's log. The sender tries
/// again shortly rather than after the outbox's back-off, and `msg send` is not answered
/// "queued" meanwhile: it learns "delivered" once the recipient takes the message.
/// (`bench_dm` failed 1 to 2 runs in 100 on this: a first message answered "queued".)
#[test]
fn a_message_the_recipient_cannot_open_yet_is_tried_again_shortly_and_answered_delivered() {
    let (mut a, mut b) = pair();
    talk(&mut a, &mut b, 200, 50);
    talk(&mut b, &mut a, 201, 50);
    // A knows B's device; B has not seen A's announcement yet.
    learn(&a, &b);
    let first = a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    let settled = a.settle(first, 100);
    let Some((peer, message, bytes)) = settled.iter().find_map(|e| match e {
        Effect::Deliver { peer, message, bytes, proto: DmProto::V2, .. } => {
            Some((*peer, *message, bytes.clone()))
        }
        _ => None,
    }) else {
        panic!("not sent on a session: {settled:?}")
    };
    let (got, response) = receive_on(&mut b, &a, bytes, DmProto::V2, 110);
    assert!(response.is_empty(), "B cannot open it yet: {response:?}");
    assert!(got.iter().any(|e| matches!(e, Effect::FillGap { .. })), "{got:?}");
    let input = Input::DmDelivered { peer, message, result: Ok(response) };
    let next = a.handle(input, 120);
    let next = a.settle(next, 120);
    assert!(!next.iter().any(|e| matches!(e, Effect::Answer { .. })), "answered: {next:?}");
    let retry = next.iter().find_map(|e| match e {
        Effect::Schedule { at, timer: Timer::Outbox } => Some(*at),
        _ => None,
    });
    let at = retry.unwrap_or_else(|| panic!("no retry scheduled: {next:?}"));
    assert!(at < 120 + crate::core::outbox::RETRY_MIN_MS, "retried at {at}");
    // B's fetch brought A's announcement: the retry is opened, and answered delivered.
    learn(&b, &a);
    let again = a.handle(Input::Timer(Timer::Outbox), at);
    let (seen, theirs) = pump(&mut a, &mut b, again, at);
    assert_eq!(received_ids(&theirs), vec![[1; 16]]);
    let answered = seen.iter().find_map(|e| match e {
        Effect::Answer { answer: AnswerId(1), result: Ok(Answer::MsgSent { status, .. }) } => {
            Some(*status)
        }
        _ => None,
    });
    assert_eq!(answered, Some(crate::store::DmStatus::Delivered), "{seen:?}");
    assert_eq!(status_of(&a, 1), crate::store::DmStatus::Delivered);
}
