//! Protocol-level tests of `/kith/dm/2`: no network, two (or three) devices in memory.

use super::{
    account::{Device, PeerSessions},
    device::{SignedCertificate, VerifiedDevice},
    envelope::{Dm2Reply, Dm2Request, Envelope, OlmKind},
    inner::{Inner, Receipt},
    pickle::PickleKey,
    prekey::{
        fallback_due, forget_previous_due, Announcement, DeviceEntry, PrekeyKind,
        FALLBACK_GRACE_MS, FALLBACK_ROTATION_MS,
    },
    OlmError,
};
use crate::{
    dm::{DmReply, MessageId, Plain},
    identity::Keypair,
};

const T0: u64 = 1_700_000_000_000;

/// One side of a conversation: a person, their device and its certificate, and the
/// sessions with the other side's device.
pub(super) struct Side {
    person: Keypair,
    device: Device,
    cert: VerifiedDevice,
    sessions: Option<PeerSessions>,
}

fn side(seed: u8) -> Side {
    let person = Keypair::from_secret_bytes(&[seed; 32]);
    let device = Device::new();
    let cert = device.certify(&person, T0).unwrap();
    Side { person, device, cert, sessions: None }
}

/// Two sides with empty sessions with each other.
pub(super) fn pair() -> (Side, Side) {
    let (mut a, mut b) = (side(1), side(2));
    a.sessions = Some(PeerSessions::new(b.cert.id()));
    b.sessions = Some(PeerSessions::new(a.cert.id()));
    (a, b)
}

pub(super) fn plain(n: u32) -> Plain {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_le_bytes());
    Plain {
        id: MessageId::from_bytes(id),
        timestamp: T0 + u64::from(n),
        text: format!("message {n}"),
        attachments: vec![],
    }
}

/// `from` seals `plain(n)` for `to` (with `to`'s fallback key if it needs a prekey).
pub(super) fn send(from: &mut Side, to: &mut Side, n: u32) -> Envelope {
    let prekey = to.device.fallback_prekey(T0).unwrap();
    let sessions = from.sessions.as_mut().unwrap();
    from.device.seal(&from.person, sessions, &to.cert, Some(&prekey), &plain(n)).unwrap()
}

fn receive(to: &mut Side, from: &VerifiedDevice, envelope: &Envelope) -> Result<Plain, OlmError> {
    let sessions = to.sessions.as_mut().unwrap();
    to.device.open(sessions, from, envelope).map(|opened| match opened.inner {
        Inner::Message(plain) => plain,
        other => panic!("not a message: {other:?}"),
    })
}

#[test]
fn certificates_verify_and_forgeries_are_refused() {
    let alice = Keypair::from_secret_bytes(&[1; 32]);
    let mallory = Keypair::from_secret_bytes(&[9; 32]);
    let device = Device::new();
    let cert = device.certify(&alice, T0).unwrap();
    assert_eq!((cert.person(), cert.id(), cert.created()), (alice.id(), device.id(), T0));
    let bytes = cert.signed().to_bytes().unwrap();
    assert_eq!(bytes.len(), super::device::SIGNED_CERT_LEN);
    assert_eq!(SignedCertificate::from_bytes(&bytes).unwrap(), cert);

    // Signed by another identity, claiming Alice: the person's signature fails.
    let by_mallory = device.certify(&mallory, T0).unwrap();
    let mut forged = by_mallory.signed().clone();
    forged.certificate.person = alice.id();
    assert!(matches!(forged.verify(), Err(OlmError::Signature(_))));
    // Alice's signature with another device's counter-signature.
    let other = Device::new().certify(&alice, T0).unwrap();
    let mut swapped = cert.signed().clone();
    swapped.device_signature = other.signed().device_signature;
    assert!(matches!(swapped.verify(), Err(OlmError::Signature(_))));
    // Another device's keys under this device's id.
    let mut keys = cert.signed().clone();
    keys.certificate.keys = *other.keys();
    assert_eq!(keys.verify(), Err(OlmError::DeviceMismatch));
    // Any changed byte.
    for i in 0..bytes.len() {
        let mut changed = bytes.clone();
        changed[i] ^= 0x01;
        assert!(SignedCertificate::from_bytes(&changed).is_err(), "byte {i}");
    }
    assert!(SignedCertificate::from_bytes(&[bytes.as_slice(), &[0]].concat()).is_err());
    assert!(matches!(SignedCertificate::from_bytes(&[0; 300]), Err(OlmError::TooLarge { .. })));
}

#[test]
fn announcements_carry_verified_fallback_keys() {
    let alice = Keypair::from_secret_bytes(&[1; 32]);
    let mut device = Device::new();
    let cert = device.certify(&alice, T0).unwrap();
    let fallback = device.fallback_prekey(T0).unwrap();
    assert_eq!(fallback.prekey.kind, PrekeyKind::Fallback);
    let entry = DeviceEntry { certificate: cert.signed().clone(), fallback: fallback.clone() };
    let announcement = Announcement { devices: vec![entry.clone()] };
    let bytes = announcement.to_bytes().unwrap();
    let decoded = Announcement::from_bytes(&bytes).unwrap();
    let verified = decoded.verify(&alice.id()).unwrap();
    assert_eq!((verified[0].device.id(), &verified[0].fallback), (cert.id(), &fallback));
    // Not Alice's devices for anyone else.
    let bob = Keypair::from_secret_bytes(&[2; 32]);
    assert_eq!(decoded.verify(&bob.id()), Err(OlmError::WrongSender));
    // A device twice, none, or a one-time key as the fallback: refused by shape.
    let twice = Announcement { devices: vec![entry.clone(), entry.clone()] };
    assert!(matches!(twice.check_shape(), Err(OlmError::Malformed(_))));
    assert!(Announcement { devices: vec![] }.check_shape().is_err());
    let mut one_time = entry.clone();
    one_time.fallback = device.claim_one_time_key(T0).unwrap();
    assert!(Announcement { devices: vec![one_time] }.check_shape().is_err());
    // A fallback key signed by another device.
    let mut foreign = entry;
    let other = Device::new();
    let mut other_key = Device::new().fallback_prekey(T0).unwrap();
    other_key.prekey.device = cert.id();
    foreign.fallback = other_key;
    assert!(Announcement { devices: vec![foreign] }.verify(&alice.id()).is_err());
    drop(other);
}

#[test]
fn a_conversation_opens_both_ways_and_turns_into_normal_messages() {
    let (mut a, mut b) = pair();
    let first = send(&mut a, &mut b, 1);
    assert_eq!(first.kind, OlmKind::PreKey);
    let opened = b.device.open(b.sessions.as_mut().unwrap(), &a.cert, &first).unwrap();
    let got = (opened.inner, opened.sender, opened.new_session);
    assert_eq!(got, (Inner::Message(plain(1)), a.person.id(), true));
    // Until A reads a reply, its messages stay pre-key messages of the same session.
    let second = send(&mut a, &mut b, 2);
    assert_eq!(second.kind, OlmKind::PreKey);
    assert_eq!(receive(&mut b, &a.cert, &second), Ok(plain(2)));
    let reply = send(&mut b, &mut a, 3);
    assert_eq!(reply.kind, OlmKind::Normal);
    assert_eq!(receive(&mut a, &b.cert, &reply), Ok(plain(3)));
    let third = send(&mut a, &mut b, 4);
    assert_eq!(third.kind, OlmKind::Normal);
    // The sizes docs/protocol.md section 12.9.3 gives for a short text.
    assert_eq!((first.olm.len(), first.to_bytes().unwrap().len()), (426, 471));
    assert_eq!((third.olm.len(), third.to_bytes().unwrap().len()), (320, 365));
    assert_eq!(receive(&mut b, &a.cert, &third), Ok(plain(4)));
    assert_eq!((a.sessions.as_ref().unwrap().len(), b.sessions.as_ref().unwrap().len()), (1, 1));
    // The size tells only the padded block: a short text and one of 155 bytes match.
    let mut long = plain(5);
    long.text = "x".repeat(155);
    let sessions = a.sessions.as_mut().unwrap();
    let long = a.device.seal(&a.person, sessions, &b.cert, None, &long).unwrap();
    let short = send(&mut a, &mut b, 6);
    assert_eq!(long.olm.len(), short.olm.len());
    use super::envelope::{MAX_INNER_PADDED_BYTES, MAX_OLM_BYTES};
    assert_eq!((MAX_INNER_PADDED_BYTES, MAX_OLM_BYTES), (6144, 6672));
    // The longest text, as a first message to a new device: well within the limits.
    let (mut c, mut d) = pair();
    let prekey = d.device.fallback_prekey(T0).unwrap();
    let mut longest = plain(7);
    longest.text = "é".repeat(crate::limits::MAX_DM_TEXT_BYTES / 2);
    let sessions = c.sessions.as_mut().unwrap();
    let big = c.device.seal(&c.person, sessions, &d.cert, Some(&prekey), &longest).unwrap();
    assert!(big.olm.len() <= MAX_OLM_BYTES - 1024, "{}", big.olm.len());
    assert_eq!(Envelope::from_bytes(&big.to_bytes().unwrap()).as_ref(), Ok(&big));
    assert_eq!(receive(&mut d, &c.cert, &big), Ok(longest));
}

/// Every secret both sides hold, through their pickles, restored into fresh values.
fn restore(side: &Side, key: &PickleKey) -> Side {
    let sessions = side.sessions.as_ref().unwrap();
    Side {
        person: side.person.clone(),
        device: Device::from_pickle(&side.device.pickle(key).unwrap(), key).unwrap(),
        cert: side.cert.clone(),
        sessions: Some(
            PeerSessions::from_pickle(&sessions.pickle(key).unwrap(), key, sessions.peer())
                .unwrap(),
        ),
    }
}

#[test]
fn forward_secrecy_shown() {
    let (mut a, mut b) = pair();
    // The recorded part of the conversation: a first message on B's fallback key, then
    // both ways.
    let mut recorded = Vec::new();
    for round in 0..5u32 {
        let to_b = send(&mut a, &mut b, round * 2);
        assert_eq!(receive(&mut b, &a.cert, &to_b), Ok(plain(round * 2)));
        let to_a = send(&mut b, &mut a, round * 2 + 1);
        assert_eq!(receive(&mut a, &b.cert, &to_a), Ok(plain(round * 2 + 1)));
        recorded.push((to_b, true));
        recorded.push((to_a, false));
    }
    // B's used fallback key is replaced, and its secret forgotten after the grace.
    let new_fallback = b.device.maintain(T0 + 1).unwrap();
    assert!(new_fallback.is_some());
    assert_eq!(b.device.maintain(T0 + 1 + FALLBACK_GRACE_MS).unwrap(), None);
    // The conversation goes on (each side's ratchet turns over several times).
    for n in 100..110u32 {
        let to_b = send(&mut a, &mut b, n);
        assert_eq!(receive(&mut b, &a.cert, &to_b), Ok(plain(n)));
        let to_a = send(&mut b, &mut a, n + 50);
        assert_eq!(receive(&mut a, &b.cert, &to_a), Ok(plain(n + 50)));
    }
    // Every secret at the end: identity keys (hence pickle keys), device accounts and
    // stored sessions, restored from what each node keeps.
    let (ka, kb) = (PickleKey::derive(&a.person).unwrap(), PickleKey::derive(&b.person).unwrap());
    for (envelope, to_b) in &recorded {
        let (mut receiver, sender_cert) = if *to_b {
            (restore(&b, &kb), a.cert.clone())
        } else {
            (restore(&a, &ka), b.cert.clone())
        };
        let opened = receive(&mut receiver, &sender_cert, envelope);
        assert!(matches!(opened, Err(OlmError::Replay | OlmError::NoSession)), "{opened:?}");
        // Nor with no session at all (a new session from the spent or forgotten key).
        receiver.sessions = Some(PeerSessions::new(sender_cert.id()));
        let opened = receive(&mut receiver, &sender_cert, envelope);
        assert_eq!(opened, Err(OlmError::NoSession));
    }
    // While the restored state still opens what is sent next.
    let next = send(&mut a, &mut b, 999);
    assert_eq!(receive(&mut restore(&b, &kb), &a.cert, &next), Ok(plain(999)));
}

#[test]
fn replays_are_refused() {
    let (mut a, mut b) = pair();
    let first = send(&mut a, &mut b, 1);
    assert!(receive(&mut b, &a.cert, &first).is_ok());
    assert_eq!(receive(&mut b, &a.cert, &first), Err(OlmError::Replay));
    let reply = send(&mut b, &mut a, 2);
    assert!(receive(&mut a, &b.cert, &reply).is_ok());
    let normal = send(&mut a, &mut b, 3);
    assert!(receive(&mut b, &a.cert, &normal).is_ok());
    assert_eq!(receive(&mut b, &a.cert, &normal), Err(OlmError::Replay));
    // A first message replayed to a receiver that dropped its session opens again while
    // the fallback key it used is kept: the node's accepted ids (as on /kith/dm/1) catch
    // it. Once the key is rotated and forgotten, it opens nowhere.
    b.sessions = Some(PeerSessions::new(a.cert.id()));
    assert_eq!(receive(&mut b, &a.cert, &first), Ok(plain(1)));
    b.sessions = Some(PeerSessions::new(a.cert.id()));
    assert!(b.device.maintain(T0).unwrap().is_some());
    assert!(b.device.maintain(T0 + FALLBACK_GRACE_MS).unwrap().is_none());
    assert_eq!(receive(&mut b, &a.cert, &first), Err(OlmError::NoSession));
    // The digest names the exact envelope, for answering a repeat without opening it.
    assert_eq!(normal.digest().unwrap(), normal.clone().digest().unwrap());
    assert_ne!(normal.digest().unwrap(), first.digest().unwrap());
}

#[test]
fn a_message_for_one_device_does_not_open_on_another() {
    let (mut a, mut b) = pair();
    // Y: another device of the same person as B.
    let mut y = Side {
        person: b.person.clone(),
        device: Device::new(),
        cert: b.cert.clone(),
        sessions: None,
    };
    y.cert = y.device.certify(&y.person, T0).unwrap();
    y.sessions = Some(PeerSessions::new(a.cert.id()));
    let to_b = send(&mut a, &mut b, 1);
    assert_eq!(receive(&mut y, &a.cert, &to_b), Err(OlmError::WrongRecipient));
    // Relabelled for Y: Y holds no key it was sealed to.
    let mut relabelled = to_b.clone();
    relabelled.recipient_device = y.cert.id();
    assert_eq!(receive(&mut y, &a.cert, &relabelled), Err(OlmError::NoSession));
    assert_eq!(receive(&mut b, &a.cert, &to_b), Ok(plain(1)));
}

/// Flips every bit of every byte in turn: decoding or opening fails each time, and the
/// receiver is left able to open the real message.
fn assert_every_change_fails(to: &mut Side, from: &VerifiedDevice, envelope: &Envelope) {
    let bytes = envelope.to_bytes().unwrap();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut changed = bytes.clone();
            changed[i] ^= bit;
            if let Ok(decoded) = Envelope::from_bytes(&changed) {
                let opened = receive(to, from, &decoded);
                assert!(opened.is_err(), "byte {i} bit {bit:#x} opened: {opened:?}");
            }
        }
    }
}

#[test]
fn tampering_with_any_byte_fails() {
    let (mut a, mut b) = pair();
    let first = send(&mut a, &mut b, 1);
    assert_every_change_fails(&mut b, &a.cert, &first);
    assert_eq!(receive(&mut b, &a.cert, &first), Ok(plain(1)));
    let reply = send(&mut b, &mut a, 2);
    assert_eq!(receive(&mut a, &b.cert, &reply), Ok(plain(2)));
    let normal = send(&mut a, &mut b, 3);
    assert_every_change_fails(&mut b, &a.cert, &normal);
    assert_eq!(receive(&mut b, &a.cert, &normal), Ok(plain(3)));
}

#[test]
fn forty_messages_out_of_order_with_duplicates_open_exactly_once() {
    let (mut a, mut b) = pair();
    let hello = send(&mut a, &mut b, 0);
    receive(&mut b, &a.cert, &hello).unwrap();
    let reply = send(&mut b, &mut a, 1);
    receive(&mut a, &b.cert, &reply).unwrap();
    let sent: Vec<Envelope> = (10..50).map(|n| send(&mut a, &mut b, n)).collect();
    // A fixed shuffle (a multiplicative step modulo 40), each message twice.
    let mut order: Vec<usize> = (0..40).map(|i| (i * 17 + 5) % 40).collect();
    order.extend((0..40).rev().filter(|i| i % 3 != 0));
    order.splice(10..10, [order[3], order[0]]);
    let mut opened = Vec::new();
    let mut replays = 0;
    for &i in &order {
        match receive(&mut b, &a.cert, &sent[i]) {
            Ok(p) => opened.push(p.id),
            Err(OlmError::Replay) => replays += 1,
            Err(e) => panic!("message {i}: {e}"),
        }
    }
    let mut expected: Vec<MessageId> = (10..50).map(|n| plain(n).id).collect();
    expected.sort();
    opened.sort();
    assert_eq!(opened, expected);
    assert_eq!(replays, order.len() - 40);
}

#[test]
fn a_lost_session_is_detected_and_replaced() {
    let (mut a, mut b) = pair();
    let first = send(&mut a, &mut b, 1);
    receive(&mut b, &a.cert, &first).unwrap();
    let reply = send(&mut b, &mut a, 2);
    receive(&mut a, &b.cert, &reply).unwrap();
    // B loses its sessions (a store restored from before, a corrupted pickle).
    b.sessions = Some(PeerSessions::new(a.cert.id()));
    let lost = send(&mut a, &mut b, 3);
    let error = receive(&mut b, &a.cert, &lost).unwrap_err();
    assert!(error.needs_new_session(), "{error:?}");
    // B answers NewSession; A starts again from a claimed one-time key and re-sends.
    assert_eq!(
        Dm2Reply::from_bytes(&Dm2Reply::NewSession.to_bytes().unwrap()),
        Ok(Dm2Reply::NewSession)
    );
    let claimed = b.device.claim_one_time_key(T0).unwrap();
    let sessions = a.sessions.as_mut().unwrap();
    sessions.clear();
    let again = a.device.seal(&a.person, sessions, &b.cert, Some(&claimed), &plain(3)).unwrap();
    assert_eq!(again.kind, OlmKind::PreKey);
    assert_eq!(receive(&mut b, &a.cert, &again), Ok(plain(3)));
    // The one-time key is spent: a second session from it does not open.
    let mut c = side(3);
    c.sessions = Some(PeerSessions::new(b.cert.id()));
    let sessions = c.sessions.as_mut().unwrap();
    let reused = c.device.seal(&c.person, sessions, &b.cert, Some(&claimed), &plain(4)).unwrap();
    let mut from_c = PeerSessions::new(c.cert.id());
    assert_eq!(b.device.open(&mut from_c, &c.cert, &reused), Err(OlmError::NoSession));
    // A corrupted sessions pickle is refused as such (and so treated as lost).
    let key = PickleKey::derive(&b.person).unwrap();
    let mut pickle = b.sessions.as_ref().unwrap().pickle(&key).unwrap();
    let last = pickle.len() - 1;
    pickle[last] ^= 1;
    assert!(matches!(PeerSessions::from_pickle(&pickle, &key, a.cert.id()), Err(OlmError::Pickle)));
}

#[test]
fn pickles_round_trip_only_with_their_key_and_label() {
    let (mut a, mut b) = pair();
    let first = send(&mut a, &mut b, 1);
    receive(&mut b, &a.cert, &first).unwrap();
    let key = PickleKey::derive(&b.person).unwrap();
    let wrong = PickleKey::derive(&a.person).unwrap();
    let device = b.device.pickle(&key).unwrap();
    let restored = Device::from_pickle(&device, &key).unwrap();
    assert_eq!(restored.id(), b.device.id());
    assert_eq!(restored.pickle(&key).map(|p| p.len()), Ok(device.len()));
    assert!(matches!(Device::from_pickle(&device, &wrong), Err(OlmError::Pickle)));
    let sessions = b.sessions.as_ref().unwrap().pickle(&key).unwrap();
    assert!(PeerSessions::from_pickle(&sessions, &key, a.cert.id()).is_ok());
    assert!(matches!(
        PeerSessions::from_pickle(&sessions, &wrong, a.cert.id()),
        Err(OlmError::Pickle)
    ));
    // The sessions of one device are not taken for another's, nor the device's state.
    assert!(matches!(
        PeerSessions::from_pickle(&sessions, &key, b.cert.id()),
        Err(OlmError::Pickle)
    ));
    assert!(matches!(Device::from_pickle(&sessions, &key), Err(OlmError::Pickle)));
    // Every byte matters; nothing of the secrets shows.
    for i in [0, 1, 40, device.len() - 1] {
        let mut changed = device.clone();
        changed[i] ^= 1;
        assert!(Device::from_pickle(&changed, &key).is_err(), "byte {i}");
    }
    assert!(Device::from_pickle(&[], &key).is_err());
    assert_eq!(format!("{key:?}"), "PickleKey(..)");
    // Two pickles of the same state differ (fresh salt).
    assert_ne!(b.device.pickle(&key).unwrap(), device);
}

#[test]
fn fallback_rotation_follows_schedule_and_use() {
    assert!(!fallback_due(T0, false, T0 + FALLBACK_ROTATION_MS - 1));
    assert!(fallback_due(T0, false, T0 + FALLBACK_ROTATION_MS));
    assert!(fallback_due(T0, true, T0));
    assert!(!forget_previous_due(T0, T0 + FALLBACK_GRACE_MS - 1));
    assert!(forget_previous_due(T0, T0 + FALLBACK_GRACE_MS));
    assert!(fallback_due(u64::MAX, false, u64::MAX));

    let (mut a, mut b) = pair();
    let old = b.device.fallback_prekey(T0).unwrap();
    assert_eq!(b.device.maintain(T0 + 1).unwrap(), None);
    // A first message in flight on the old key, then a rotation by schedule.
    let in_flight = send(&mut a, &mut b, 1);
    let new = b.device.maintain(T0 + FALLBACK_ROTATION_MS).unwrap().unwrap();
    assert_ne!(new.prekey.key, old.prekey.key);
    assert_eq!(b.device.fallback_prekey(T0).unwrap(), new);
    // Within the grace the old key still opens it; that use rotates again only after
    // the previous secret is forgotten.
    assert_eq!(receive(&mut b, &a.cert, &in_flight), Ok(plain(1)));
    assert_eq!(b.device.maintain(T0 + FALLBACK_ROTATION_MS + 1).unwrap(), None);
    let later = T0 + FALLBACK_ROTATION_MS + FALLBACK_GRACE_MS;
    assert!(b.device.maintain(later).unwrap().is_some(), "the used key is replaced");
}

#[test]
fn requests_and_replies_round_trip_and_are_bounded() {
    let (mut a, mut b) = pair();
    let envelope = send(&mut a, &mut b, 1);
    let bytes = envelope.to_bytes().unwrap();
    assert_eq!(Envelope::from_bytes(&bytes), Ok(envelope.clone()));
    let request =
        Dm2Request::Deliver { envelope: envelope.clone(), follow_proof: Some(vec![1; 10]) };
    assert_eq!(Dm2Request::from_bytes(&request.to_bytes().unwrap()), Ok(request));
    let claim = Dm2Request::Claim { device: b.cert.id() };
    assert_eq!(Dm2Request::from_bytes(&claim.to_bytes().unwrap()), Ok(claim));
    let key = b.device.claim_one_time_key(T0).unwrap();
    for reply in [
        Dm2Reply::Receipt(DmReply::Delivered { id: plain(1).id }),
        Dm2Reply::Receipt(DmReply::refused(None, "no")),
        Dm2Reply::Claimed(Some(key)),
        Dm2Reply::Claimed(None),
    ] {
        assert_eq!(Dm2Reply::from_bytes(&reply.to_bytes().unwrap()), Ok(reply));
    }
    let long = Dm2Reply::Receipt(DmReply::Refused { id: None, reason: "é".repeat(300) });
    assert!(Dm2Reply::from_bytes(&long.to_bytes().unwrap()).is_ok());
    // Too large, unknown version, a kind that does not fit the Olm message, garbage.
    let big = vec![0u8; crate::limits::MAX_ENVELOPE_BYTES + 1];
    assert!(matches!(Envelope::from_bytes(&big), Err(OlmError::TooLarge { .. })));
    let mut version = envelope.clone();
    version.version = 1;
    assert!(matches!(
        Envelope::from_bytes(&version.to_bytes().unwrap()),
        Err(OlmError::Malformed(_))
    ));
    let mut kind = envelope.clone();
    kind.kind = OlmKind::Normal;
    assert!(Envelope::from_bytes(&kind.to_bytes().unwrap()).is_err());
    let mut garbage = envelope;
    garbage.olm = vec![3; 100];
    assert!(Envelope::from_bytes(&garbage.to_bytes().unwrap()).is_err());
    let proof = Dm2Request::Deliver {
        envelope: send(&mut a, &mut b, 2),
        follow_proof: Some(vec![0; 9000]),
    };
    assert!(Dm2Request::from_bytes(&proof.to_bytes().unwrap()).is_err());
}

#[test]
fn sealing_needs_a_prekey_of_that_device() {
    let (a, mut b) = pair();
    let mut sessions = PeerSessions::new(b.cert.id());
    let no_key = a.device.seal(&a.person, &mut sessions, &b.cert, None, &plain(1));
    assert_eq!(no_key, Err(OlmError::NeedPrekey));
    let c = side(3);
    let mut foreign = Device::new().fallback_prekey(T0).unwrap();
    assert_eq!(
        a.device.seal(&a.person, &mut sessions, &b.cert, Some(&foreign), &plain(1)),
        Err(OlmError::DeviceMismatch)
    );
    foreign.prekey.device = b.cert.id();
    assert!(matches!(
        a.device.seal(&a.person, &mut sessions, &b.cert, Some(&foreign), &plain(1)),
        Err(OlmError::Signature(_))
    ));
    let mut to_c = PeerSessions::new(c.cert.id());
    let prekey = b.device.fallback_prekey(T0).unwrap();
    assert_eq!(
        a.device.seal(&a.person, &mut to_c, &b.cert, Some(&prekey), &plain(1)),
        Err(OlmError::DeviceMismatch)
    );
    let mut long = plain(1);
    long.text = "x".repeat(crate::limits::MAX_DM_TEXT_BYTES + 1);
    assert!(matches!(
        a.device.seal(&a.person, &mut sessions, &b.cert, Some(&prekey), &long),
        Err(OlmError::Message(_))
    ));
    assert!(sessions.is_empty());
}

#[test]
fn devices_travel_as_a_record_of_their_person() {
    use crate::record::{Record, RecordError, RecordKind, VerifiedRecord};
    let alice = Keypair::from_secret_bytes(&[1; 32]);
    let bob = Keypair::from_secret_bytes(&[2; 32]);
    let mut device = Device::new();
    let entry = DeviceEntry {
        certificate: device.certify(&alice, T0).unwrap().signed().clone(),
        fallback: device.fallback_prekey(T0).unwrap(),
    };
    let record = |author: &Keypair| Record {
        author: author.id(),
        seq: 1,
        prev: None,
        timestamp: T0,
        kind: RecordKind::Devices(Announcement { devices: vec![entry.clone()] }),
    };
    let signed = record(&alice).sign(&alice).unwrap();
    let received = VerifiedRecord::from_bytes(signed.bytes()).unwrap();
    assert_eq!(received.record().kind.name(), "devices");
    // Variant 8, then the announcement.
    let kind_at = 32 + 8 + 1 + 8;
    assert_eq!(signed.bytes()[kind_at..kind_at + 4], 8u32.to_le_bytes());
    // Bob cannot announce Alice's device as his.
    assert!(matches!(record(&bob).sign(&bob), Err(RecordError::Field(_))));
}

#[test]
fn a_receipt_travels_on_the_session_of_the_messages() {
    let (mut a, mut b) = pair();
    let first = send(&mut a, &mut b, 1);
    assert_eq!(receive(&mut b, &a.cert, &first).unwrap(), plain(1));
    let receipt = Inner::Receipt(Receipt { ids: vec![plain(1).id] });
    let sessions = b.sessions.as_mut().unwrap();
    let sealed = b.device.seal_inner(&b.person, sessions, &a.cert, None, &receipt).unwrap();
    let opened = a.device.open(a.sessions.as_mut().unwrap(), &b.cert, &sealed).unwrap();
    assert_eq!((opened.inner, opened.sender), (receipt, b.person.id()));
    // An empty receipt is not sealed.
    let empty = Inner::Receipt(Receipt { ids: vec![] });
    let sessions = b.sessions.as_mut().unwrap();
    assert!(b.device.seal_inner(&b.person, sessions, &a.cert, None, &empty).is_err());
}
