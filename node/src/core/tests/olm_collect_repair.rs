//! Repair on the collect path (issue #17 with #18): a deposited message that no session
//! opens when its recipient collects it is acknowledged there, and its sender, told
//! through its own mailboxes, seals it again on a new session and deposits it again; the
//! two are never online together.

use kith_protocol::{
    mailbox::{sealed, Held as HeldEnvelope},
    olm::{
        envelope::Dm2Request,
        inner::{Inner, Repair},
    },
};

use super::{
    deposit::list_with,
    dm::befriend,
    olm::{device_of, devices_pair, learn, out, received_ids, status_of, talk, SECRET},
    *,
};
use crate::store::DmStatus;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What `to` does with `envelopes` collected from mailbox `m`, flushes done.
fn take(to: &mut Fixture, m: &Fixture, envelopes: Vec<Vec<u8>>, now: u64) -> Vec<Effect> {
    let mailbox = m.core.me().to_peer_id().unwrap();
    let items = envelopes
        .into_iter()
        .enumerate()
        .map(|(i, envelope)| HeldEnvelope { position: i as u64 + 1, deposited: now, envelope })
        .collect();
    let first = to.handle(Input::Collected { mailbox, items }, now);
    to.settle(first, now)
}

/// The deposits among `effects`: (message, envelope sealed for the recipient).
fn deposits(effects: &[Effect]) -> Vec<([u8; 16], Vec<u8>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deposit { message, envelope, .. } => Some((*message, envelope.clone())),
            _ => None,
        })
        .collect()
}

/// The receipts and repair requests among `effects`: (to whom, direct request, deposit).
fn outgoing(effects: &[Effect]) -> Vec<(AuthorId, Vec<u8>, Vec<u8>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Receipt { peer, request, deposit, .. } => {
                Some((*peer, request.clone(), deposit.clone()))
            }
            _ => None,
        })
        .collect()
}

/// `a` sends `b` message `n` while `b` is offline: it is deposited with `b`'s mailbox and
/// held. Returns the deposit (sealed for `b`).
fn held_message(a: &mut Fixture, b: &Fixture, n: u8, now: u64) -> Vec<u8> {
    let first = a.handle(Input::MsgSend { message: out(b, n), answer: AnswerId(n.into()) }, now);
    let settled = a.settle(first, now);
    assert!(deposits(&settled).is_empty());
    let failed =
        Input::DmDelivered { peer: b.core.me(), message: [n; 16], result: Err("offline".into()) };
    let effects = a.handle(failed, now + 1);
    let effects = a.settle(effects, now + 1);
    let [(message, envelope)] = deposits(&effects).try_into().unwrap();
    assert_eq!(message, [n; 16]);
    let accepted = Input::Deposited { peer: b.core.me(), message, accepted: 1 };
    let effects = a.handle(accepted, now + 2);
    a.settle(effects, now + 2);
    assert_eq!(status_of(a, n), DmStatus::Held);
    envelope
}

/// The digest of the envelope `a` sealed for message `n`.
fn sealed_digest(a: &Fixture, n: u8) -> [u8; 32] {
    let bytes = a.core.store().olm_sealed(&[n; 16]).unwrap().unwrap();
    let Ok(Dm2Request::Deliver { envelope, .. }) = Dm2Request::from_bytes(&bytes) else {
        panic!("not a single sealed message")
    };
    envelope.digest().unwrap()
}

/// `b` has lost its sessions with `a`'s device.
fn lose_sessions(b: &Fixture, a: &Fixture) {
    b.core.store().set_olm_sessions(&device_of(a).id(), b"lost").unwrap();
}

/// Two mutual connections with sessions, each with a mailbox, and a message from `a`
/// held by `b`'s mailbox that `b` cannot open (its sessions with `a` are lost).
struct Broken {
    a: Fixture,
    b: Fixture,
    ma: Fixture,
    mb: Fixture,
    /// The held message's deposit.
    envelope: Vec<u8>,
    digest: [u8; 32],
}

fn broken() -> Broken {
    let (mut a, mut b) = devices_pair();
    talk(&mut a, &mut b, 1, 100);
    talk(&mut b, &mut a, 2, 110);
    let (mut ma, mut mb) = (Fixture::new(3), Fixture::new(4));
    list_with(&mut b, &mut [&mut mb], &a);
    list_with(&mut a, &mut [&mut ma], &b);
    let envelope = held_message(&mut a, &b, 3, 200);
    let digest = sealed_digest(&a, 3);
    lose_sessions(&b, &a);
    Broken { a, b, ma, mb, envelope, digest }
}

#[test]
fn a_collected_message_no_session_opens_is_sealed_again_after_a_repair_through_mailboxes() {
    let Broken { mut a, mut b, ma, mb, envelope, digest } = broken();

    // B collects it: no session opens it. Acknowledged, nothing stored, and A is sent a
    // repair request naming the envelope's digest.
    let count = b.core.store().dm_count();
    let effects = take(&mut b, &mb, vec![envelope], 300);
    assert!(received_ids(&effects).is_empty());
    assert_eq!(b.core.store().dm_count(), count);
    assert!(effects.iter().any(|e| matches!(e, Effect::MailboxAck { ids, .. } if ids.len() == 1)));
    let [(to, _, deposit)] = outgoing(&effects).try_into().unwrap();
    assert_eq!(to, a.core.me());
    // Sealed on a session, then for A's person: the mailbox sees neither who asks, nor the
    // digest, nor anything of the message.
    assert!(!contains(&deposit, b.core.me().as_bytes()));
    assert!(!contains(&deposit, &digest));
    assert!(!contains(&deposit, SECRET.as_bytes()));

    // A, later, collects the request from its own mailbox: no message is stored from it,
    // message 3 is queued again, its old sealed request is gone, and its lane goes.
    let count = a.core.store().dm_count();
    let effects = take(&mut a, &ma, vec![deposit], 400);
    assert!(received_ids(&effects).is_empty());
    assert_eq!(a.core.store().dm_count(), count);
    assert!(outgoing(&effects).is_empty(), "a repair request gets no receipt: {effects:?}");
    assert_eq!(status_of(&a, 3), DmStatus::Queued);
    assert!(a.core.store().olm_sealed(&[3; 16]).unwrap().is_none());
    assert!(effects.iter().any(|e| matches!(e, Effect::Schedule { timer: Timer::Outbox, .. })));

    // Its lane seals message 3 on a new session; B is offline: deposited again, held.
    let due = a.handle(Input::Timer(Timer::Outbox), 410);
    let settled = a.settle(due, 410);
    let failed =
        Input::DmDelivered { peer: b.core.me(), message: [3; 16], result: Err("offline".into()) };
    let effects = a.handle(failed, 420);
    let effects: Vec<Effect> = settled.into_iter().chain(a.settle(effects, 420)).collect();
    let [(message, again)] = deposits(&effects).try_into().unwrap();
    assert_eq!(message, [3; 16]);
    assert_ne!(sealed_digest(&a, 3), digest);
    let accepted = Input::Deposited { peer: b.core.me(), message, accepted: 1 };
    let effects = a.handle(accepted, 430);
    a.settle(effects, 430);
    assert_eq!(status_of(&a, 3), DmStatus::Held);

    // B collects the new one: stored once, and its receipt goes back to A.
    let effects = take(&mut b, &mb, vec![again], 500);
    assert_eq!(received_ids(&effects), vec![[3; 16]]);
    let [(to, _, receipt)] = outgoing(&effects).try_into().unwrap();
    assert_eq!(to, a.core.me());
    take(&mut a, &ma, vec![receipt], 600);
    assert_eq!(status_of(&a, 3), DmStatus::Delivered);
    assert!(a.core.store().dm_outbox().unwrap().is_empty());
    // And they go on talking directly.
    let (_, theirs) = talk(&mut a, &mut b, 4, 700);
    assert_eq!(received_ids(&theirs), vec![[4; 16]]);
}

/// `from` seals a repair request naming `digests` for `to` and deposits it (sealed for
/// `to`'s person).
fn repair_from(from: &mut Fixture, to: &Fixture, digests: Vec<[u8; 32]>) -> Vec<u8> {
    let id = kith_protocol::dm::MessageId::from_bytes([0xee; 16]);
    let repair = Inner::Repair(Repair { id, digests });
    let out = from.core.dm.seal_out(&from.core.cx, &to.core.me(), &repair).unwrap().unwrap();
    sealed::seal(&to.core.me(), &from.core.me(), &out.request).unwrap()
}

/// Whether `a`'s held message 3 and its sealed request are as they were.
fn untouched(a: &Fixture, digest: [u8; 32]) -> bool {
    status_of(a, 3) == DmStatus::Held && sealed_digest(a, 3) == digest
}

#[test]
fn a_repair_for_an_unknown_digest_changes_nothing() {
    let Broken { mut a, mut b, ma, digest, .. } = broken();
    let deposit = repair_from(&mut b, &a, vec![[9; 32]]);
    let opened = a.core.store().olm_received_count().unwrap();
    let effects = take(&mut a, &ma, vec![deposit], 400);
    // Opened and taken (its digest kept), and nothing changed.
    assert_eq!(a.core.store().olm_received_count().unwrap(), opened + 1);
    assert!(untouched(&a, digest), "{effects:?}");
    assert!(!effects.iter().any(|e| matches!(e, Effect::Schedule { timer: Timer::Outbox, .. })));
    // The sessions with B were kept: the next message goes on them (no new session).
    assert!(a.core.store().olm_sessions(&device_of(&b).id()).unwrap().is_some());
}

#[test]
fn a_repair_request_from_someone_else_is_ignored() {
    let Broken { mut a, b, ma, digest, .. } = broken();
    // C, with a device of its own, knows A's device, and names the digest of A's message
    // to B: as a stranger to A, then as a mutual connection of A's.
    let (mut c, mut d) = (Fixture::new(5), Fixture::new(6));
    befriend(&mut c, &mut d);
    talk(&mut c, &mut d, 1, 100);
    learn(&c, &a);
    learn(&a, &c);
    let opened = a.core.store().olm_received_count().unwrap();
    let forged = repair_from(&mut c, &a, vec![digest]);
    take(&mut a, &ma, vec![forged], 400);
    // Refused before anything is opened.
    assert_eq!(a.core.store().olm_received_count().unwrap(), opened);
    assert!(untouched(&a, digest));
    befriend(&mut a, &mut c);
    let forged = repair_from(&mut c, &a, vec![digest]);
    take(&mut a, &ma, vec![forged], 410);
    // Opened (C is a mutual connection now), but it names no message of A's to C.
    assert_eq!(a.core.store().olm_received_count().unwrap(), opened + 1);
    assert!(untouched(&a, digest));
    drop(b);
}
