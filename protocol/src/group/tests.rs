#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::{
    megolm::{
        GroupMessage, Inbound, Outbound, SessionShare, ROTATE_AFTER_MESSAGES, ROTATE_AFTER_MS,
    },
    membership::{Group, Leave, Membership, SignedLeave, SignedMembership, MAX_MEMBERSHIP_BYTES},
    GroupError, GroupId, MAX_GROUP_MEMBERS,
};
use crate::{
    dm::{MessageId, Plain},
    identity::{AuthorId, Keypair},
    limits::MAX_DM_TEXT_BYTES,
    olm::pickle::PickleKey,
};

fn person(seed: u8) -> Keypair {
    Keypair::from_secret_bytes(&[seed; 32])
}

fn plain(text: &str) -> Plain {
    Plain {
        id: MessageId::generate().unwrap(),
        timestamp: 1_000,
        text: text.into(),
        attachments: vec![],
    }
}

/// Alice (creator) with Bob and Carol, epoch 1.
fn trio() -> (Keypair, Keypair, Keypair, Group) {
    let (alice, bob, carol) = (person(1), person(2), person(3));
    let id = GroupId::from_bytes([7; 16]);
    let first =
        Membership::new(id, 1, &alice.id(), "friends", &[carol.id(), bob.id()], 10).unwrap();
    let group = Group::new(first.sign(&alice).unwrap().verify().unwrap());
    (alice, bob, carol, group)
}

fn next(group: &Group, creator: &Keypair, members: &[AuthorId]) -> Membership {
    Membership::new(group.id(), group.epoch() + 1, &creator.id(), group.name(), members, 20)
        .unwrap()
}

#[test]
fn a_signed_membership_round_trips_and_lists_the_creator() {
    let (alice, bob, carol, group) = trio();
    let bytes = group.current().signed().to_bytes().unwrap();
    assert!(bytes.len() <= MAX_MEMBERSHIP_BYTES);
    let again = SignedMembership::from_bytes(&bytes).unwrap();
    assert_eq!(&again, group.current());
    let members: Vec<_> = group.members().copied().collect();
    let mut want = vec![alice.id(), bob.id(), carol.id()];
    want.sort();
    assert_eq!(members, want);
    assert_eq!((group.epoch(), group.creator(), group.name()), (1, alice.id(), "friends"));
}

#[test]
fn only_the_creator_changes_membership() {
    let (alice, bob, carol, mut group) = trio();
    // Bob signs an epoch that names himself as creator: a valid signature, wrong person.
    let forged = Membership::new(group.id(), 2, &bob.id(), "mine", &[carol.id()], 20).unwrap();
    let err = group.apply(forged.sign(&bob).unwrap().verify().unwrap()).unwrap_err();
    assert_eq!(err, GroupError::WrongSigner);
    // Bob puts Alice's name on a change and signs it himself: the signature fails.
    let claimed = next(&group, &alice, &[bob.id()]);
    let mut signed = claimed.sign(&alice).unwrap();
    signed.signature =
        bob.sign(super::membership::MEMBERSHIP_DOMAIN, &crate::codec::encode(&claimed).unwrap());
    assert!(matches!(signed.verify(), Err(GroupError::Signature(_))));
    // Signing someone else's membership is refused before any signature is made.
    assert_eq!(next(&group, &alice, &[bob.id()]).sign(&bob).unwrap_err(), GroupError::WrongSigner);
    assert_eq!(group.epoch(), 1);
    assert!(group.is_member(&carol.id()));
}

#[test]
fn a_replayed_or_late_change_is_refused_and_changes_nothing() {
    let (alice, bob, carol, mut group) = trio();
    let two = next(&group, &alice, &[bob.id()]).sign(&alice).unwrap();
    let change = group.apply(two.clone().verify().unwrap()).unwrap();
    assert_eq!(change.removed, vec![carol.id()]);
    assert!(change.rotates());
    let three = next(&group, &alice, &[bob.id(), carol.id()]).sign(&alice).unwrap();
    let change = group.apply(three.verify().unwrap()).unwrap();
    assert!(!change.rotates());
    assert_eq!((change.added, change.removed), (vec![carol.id()], vec![]));
    // Epoch 2 again (replayed) would remove Carol again: refused.
    let err = group.apply(two.verify().unwrap()).unwrap_err();
    assert_eq!(err, GroupError::Stale { epoch: 2, current: 3 });
    assert!(group.is_member(&carol.id()));
    // Another group's change is refused too.
    let other = Membership::new(GroupId::from_bytes([8; 16]), 9, &alice.id(), "x", &[], 1).unwrap();
    assert_eq!(
        group.apply(other.sign(&alice).unwrap().verify().unwrap()),
        Err(GroupError::WrongGroup)
    );
}

#[test]
fn a_deleted_group_takes_no_more_changes() {
    let (alice, bob, _, mut group) = trio();
    let deletion = group.current().membership().deletion(30);
    let change = group.apply(deletion.sign(&alice).unwrap().verify().unwrap()).unwrap();
    assert!(change.deleted && change.rotates());
    assert!(group.deleted() && group.members().next().is_none());
    let revive = next(&group, &alice, &[bob.id()]).sign(&alice).unwrap().verify().unwrap();
    assert!(matches!(group.apply(revive), Err(GroupError::Stale { .. })));
}

#[test]
fn malformed_memberships_are_refused() {
    let (alice, bob, carol, group) = trio();
    let good = group.current().membership().clone();
    let mut unsorted = good.clone();
    unsorted.members.reverse();
    let mut no_creator = good.clone();
    no_creator.members.retain(|m| *m != alice.id());
    let mut repeated = good.clone();
    repeated.members.insert(0, repeated.members[0]);
    let mut nameless = good.clone();
    nameless.name = "  ".into();
    let mut zero = good.clone();
    zero.epoch = 0;
    let mut version = good.clone();
    version.version = 9;
    let mut deleted_with_members = good.clone();
    deleted_with_members.deleted = true;
    for bad in [unsorted, no_creator, repeated, nameless, zero, version, deleted_with_members] {
        assert!(matches!(bad.check(), Err(GroupError::Malformed(_))), "{bad:?}");
        assert!(bad.sign(&alice).is_err());
    }
    let crowd: Vec<AuthorId> =
        (0..=MAX_GROUP_MEMBERS as u8).map(|i| person(100 + i).id()).collect();
    assert!(Membership::new(group.id(), 2, &alice.id(), "big", &crowd, 1).is_err());
    let _ = (bob, carol);
}

#[test]
fn a_member_who_leaves_stops_counting_and_the_next_epoch_rotates() {
    let (alice, bob, carol, mut group) = trio();
    let notice = Leave::sign(&carol, group.id(), 1, 15).unwrap();
    let leave = SignedLeave::from_bytes(&notice.to_bytes().unwrap()).unwrap();
    assert_eq!(group.leave(&leave), Ok(true));
    assert_eq!(group.leave(&leave), Ok(false), "a repeat changes nothing");
    assert!(!group.is_member(&carol.id()));
    // The creator's next epoch (made before it heard) still rotates for Carol.
    let change = group.apply(
        next(&group, &alice, &[bob.id(), carol.id()]).sign(&alice).unwrap().verify().unwrap(),
    );
    assert_eq!(change.unwrap().added, vec![]);
    // The creator cannot leave (they delete), an outsider cannot, a future epoch waits.
    let creator = Leave::sign(&alice, group.id(), 2, 1).unwrap().leave;
    let outsider = Leave::sign(&person(9), group.id(), 2, 1).unwrap().leave;
    let future = Leave::sign(&bob, group.id(), 5, 1).unwrap().leave;
    assert_eq!(group.leave(&creator), Err(GroupError::NotMember));
    assert_eq!(group.leave(&outsider), Err(GroupError::NotMember));
    assert!(matches!(group.leave(&future), Err(GroupError::Stale { .. })));
    // A notice signed by someone else than the member it names is refused.
    let mut forged = Leave::sign(&bob, group.id(), 2, 1).unwrap();
    forged.leave.member = carol.id();
    assert!(matches!(
        SignedLeave::from_bytes(&forged.to_bytes().unwrap()),
        Err(GroupError::Signature(_))
    ));
}

#[test]
fn members_read_each_message_and_nothing_else() {
    let (alice, bob, carol, group) = trio();
    let mut out = Outbound::new(group.id(), 1, 10);
    let share = SessionShare::from_bytes(&out.share(&alice.id()).to_bytes().unwrap()).unwrap();
    let mut at_bob = Inbound::from_share(&share, &alice.id()).unwrap();
    let first = plain("hello group");
    let message =
        GroupMessage::from_bytes(&out.encrypt(&alice.id(), &first).unwrap().to_bytes().unwrap())
            .unwrap();
    let got = at_bob.decrypt(&message).unwrap();
    assert_eq!(
        (got.plain, got.sender, got.group, got.epoch),
        (first.clone(), alice.id(), group.id(), 1)
    );
    // Read twice (two paths): the same index, for the caller to store once.
    assert_eq!(at_bob.decrypt(&message).unwrap().index, got.index);
    // A share carried by someone else than its sender is refused.
    assert_eq!(Inbound::from_share(&share, &carol.id()).err(), Some(GroupError::WrongSigner));
    // Another session's message is not this session's.
    let mut bobs = Outbound::new(group.id(), 1, 10);
    let other = bobs.encrypt(&bob.id(), &plain("from bob")).unwrap();
    assert_eq!(at_bob.decrypt(&other).err(), Some(GroupError::WrongSession));
    // A tampered message does not decrypt.
    let mut tampered = message.clone();
    let last = tampered.megolm.len() - 70;
    tampered.megolm[last] ^= 1;
    assert!(at_bob.decrypt(&tampered).is_err());
}

#[test]
fn a_member_added_later_reads_from_when_they_joined_unless_given_the_history() {
    let (alice, bob, _, group) = trio();
    let mut out = Outbound::new(group.id(), 1, 10);
    let mut at_bob = Inbound::from_share(&out.share(&alice.id()), &alice.id()).unwrap();
    let before = out.encrypt(&alice.id(), &plain("before dave")).unwrap();
    at_bob.decrypt(&before).unwrap();
    // Dave gets the share as it is now.
    let mut at_dave = Inbound::from_share(&out.share(&alice.id()), &alice.id()).unwrap();
    let after = out.encrypt(&alice.id(), &plain("after dave")).unwrap();
    assert_eq!(at_dave.decrypt(&before).err(), Some(GroupError::Decrypt));
    assert_eq!(at_dave.decrypt(&after).unwrap().plain.text, "after dave");
    // The creator may forward Bob's copy from its start; nobody else may.
    let history = at_bob.export();
    assert_eq!(Inbound::from_share(&history, &alice.id()).err(), Some(GroupError::WrongSigner));
    assert_eq!(
        Inbound::from_forwarded(&history, &bob.id(), &alice.id()).err(),
        Some(GroupError::WrongSigner)
    );
    let mut full = Inbound::from_forwarded(&history, &alice.id(), &alice.id()).unwrap();
    assert_eq!(full.decrypt(&before).unwrap().plain.text, "before dave");
    assert_eq!(full.first_index(), 0);
}

#[test]
fn after_a_removal_the_new_session_is_unreadable_with_the_old_key() {
    let (alice, bob, carol, group) = trio();
    let mut old = Outbound::new(group.id(), 1, 10);
    let mut at_carol = Inbound::from_share(&old.share(&alice.id()), &alice.id()).unwrap();
    old.encrypt(&alice.id(), &plain("while carol was in")).unwrap();
    // Carol is removed: Alice rotates and shares the new session with Bob only.
    let mut new = Outbound::new(group.id(), 2, 20);
    let mut at_bob = Inbound::from_share(&new.share(&alice.id()), &alice.id()).unwrap();
    let secret = new.encrypt(&alice.id(), &plain("after carol left")).unwrap();
    assert_eq!(at_bob.decrypt(&secret).unwrap().plain.text, "after carol left");
    assert_eq!(at_carol.decrypt(&secret).err(), Some(GroupError::WrongSession));
    // Even pretending it is the old session's message does not open it.
    let mut disguised = secret.clone();
    disguised.session = at_carol.tag();
    assert!(at_carol.decrypt(&disguised).is_err());
    let _ = (bob, carol);
}

#[test]
fn sessions_rotate_by_count_and_age() {
    let (alice, _, _, group) = trio();
    let mut out = Outbound::new(group.id(), 1, 1_000);
    assert!(!out.should_rotate(1_000));
    assert!(out.should_rotate(1_000 + ROTATE_AFTER_MS));
    for _ in 0..ROTATE_AFTER_MESSAGES {
        out.encrypt(&alice.id(), &plain("x")).unwrap();
    }
    assert!(out.should_rotate(1_001));
}

#[test]
fn sessions_survive_a_pickle_and_only_open_with_their_key_and_label() {
    let (alice, bob, _, group) = trio();
    let (key, wrong) = (PickleKey::derive(&alice).unwrap(), PickleKey::derive(&bob).unwrap());
    let mut out = Outbound::new(group.id(), 1, 10);
    let mut inbound = Inbound::from_share(&out.share(&alice.id()), &alice.id()).unwrap();
    out.encrypt(&alice.id(), &plain("one")).unwrap();
    let pickled = out.pickle(&key).unwrap();
    let mut out = Outbound::from_pickle(&pickled, &key, group.id()).unwrap();
    assert!(Outbound::from_pickle(&pickled, &wrong, group.id()).is_err());
    assert!(Outbound::from_pickle(&pickled, &key, GroupId::from_bytes([1; 16])).is_err());
    let two = out.encrypt(&alice.id(), &plain("two")).unwrap();
    assert_eq!(out.sent(), 2, "the restored session continues, it does not reuse a key");

    let tag = inbound.tag();
    let saved = inbound.pickle(&key).unwrap();
    inbound = Inbound::from_pickle(&saved, &key, tag).unwrap();
    assert_eq!((inbound.sender(), inbound.group(), inbound.epoch()), (alice.id(), group.id(), 1));
    assert_eq!(inbound.decrypt(&two).unwrap().plain.text, "two");
    let other_tag = Outbound::new(group.id(), 1, 10).tag();
    assert!(Inbound::from_pickle(&saved, &key, other_tag).is_err());
    assert!(Inbound::from_pickle(&saved, &wrong, tag).is_err());
}

#[test]
fn the_largest_message_fits_its_limits_and_an_over_long_one_is_refused() {
    let (alice, _, _, group) = trio();
    let mut out = Outbound::new(group.id(), 1, 10);
    let big = plain(&"é".repeat(MAX_DM_TEXT_BYTES / 2));
    let message = out.encrypt(&alice.id(), &big).unwrap();
    assert!(GroupMessage::from_bytes(&message.to_bytes().unwrap()).is_ok());
    let too_big = plain(&"x".repeat(MAX_DM_TEXT_BYTES + 1));
    assert!(matches!(out.encrypt(&alice.id(), &too_big), Err(GroupError::Message(_))));
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = SignedMembership::from_bytes(&bytes);
        let _ = SignedLeave::from_bytes(&bytes);
        let _ = SessionShare::from_bytes(&bytes);
        if let Ok(message) = GroupMessage::from_bytes(&bytes) {
            let (alice, _, _, group) = trio();
            let out = Outbound::new(group.id(), 1, 10);
            let mut inbound = Inbound::from_share(&out.share(&alice.id()), &alice.id()).unwrap();
            let _ = inbound.decrypt(&message);
        }
        if let Ok(share) = SessionShare::from_bytes(&bytes) {
            let _ = Inbound::from_share(&share, &share.sender.clone());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn a_changed_byte_never_passes_as_something_else(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (alice, _, _, group) = trio();
        let signed = group.current().signed().to_bytes().unwrap();
        let mut changed = signed.clone();
        changed[at.index(signed.len())] ^= 1 << bit;
        prop_assert!(SignedMembership::from_bytes(&changed).is_err());

        let mut out = Outbound::new(group.id(), 1, 10);
        let mut inbound = Inbound::from_share(&out.share(&alice.id()), &alice.id()).unwrap();
        let sent = plain("fixed");
        let message = out.encrypt(&alice.id(), &sent).unwrap().to_bytes().unwrap();
        let mut changed = message.clone();
        changed[at.index(message.len())] ^= 1 << bit;
        if let Ok(read) = GroupMessage::from_bytes(&changed).and_then(|m| inbound.decrypt(&m)) {
            prop_assert_eq!(read.plain, sent);
        }
    }
}

#[test]
fn a_circle_post_is_a_record_only_its_members_read() {
    use crate::{
        limits::MAX_TEXT_BYTES,
        record::{FieldError, Record, RecordError, RecordKind, VerifiedRecord},
    };
    let (alice, bob, carol, group) = trio();
    let mut out = Outbound::new(group.id(), 1, 10);
    let mut at_bob = Inbound::from_share(&out.share(&alice.id()), &alice.id()).unwrap();
    let text = "x".repeat(MAX_TEXT_BYTES);
    let message = out.encrypt(&alice.id(), &plain(&text)).unwrap();
    let record = Record {
        author: alice.id(),
        seq: 1,
        prev: None,
        timestamp: 10,
        kind: RecordKind::Private(message.clone()),
    };
    // The longest text fits a record, and the record round trips.
    let signed = record.clone().sign(&alice).unwrap();
    let again = VerifiedRecord::from_bytes(signed.bytes()).unwrap();
    assert_eq!(again.record().kind, RecordKind::Private(message.clone()));
    assert!(again.record().tags().is_empty());
    let RecordKind::Private(carried) = &again.record().kind else { unreachable!() };
    assert_eq!(at_bob.decrypt(carried).unwrap().plain.text, text);
    // Someone without the key reads nothing (their own session for the circle opens
    // nothing of Alice's).
    let mut carols = Outbound::new(group.id(), 1, 10);
    let mut at_carol = Inbound::from_share(&carols.share(&carol.id()), &carol.id()).unwrap();
    carols.encrypt(&carol.id(), &plain("mine")).unwrap();
    assert!(at_carol.decrypt(carried).is_err());
    // A ciphertext that is not a canonical Megolm message is refused as a record field.
    let mut broken = message;
    broken.megolm.truncate(10);
    let bad = Record { kind: RecordKind::Private(broken), ..record };
    assert!(matches!(bad.clone().sign(&alice), Err(RecordError::Field(FieldError::Private(_)))));
    assert!(matches!(bad.check_fields(), Err(FieldError::Private(_))));
    let _ = bob;
}
