use proptest::prelude::*;

use super::*;
use crate::identity::Keypair;

fn bob() -> AuthorId {
    Keypair::from_secret_bytes(&[2; 32]).id()
}

fn held(position: u64, byte: u8) -> Held {
    Held { position, deposited: 1_700_000_000_000 + position, envelope: vec![byte; 512] }
}

#[test]
fn every_request_and_reply_round_trips() {
    let requests = [
        MailboxRequest::Deposit { recipient: bob(), envelope: vec![1; MAX_HELD_ENVELOPE_BYTES] },
        MailboxRequest::Collect { after: 0 },
        MailboxRequest::Collect { after: u64::MAX },
        MailboxRequest::Ack { ids: (0..MAX_ACK_IDS as u8).map(|i| HeldId::of(&[i])).collect() },
    ];
    for request in requests {
        let bytes = request.to_bytes().unwrap();
        assert!(bytes.len() <= MAX_MAILBOX_REQUEST_BYTES);
        assert_eq!(MailboxRequest::from_bytes(&bytes).unwrap(), request);
    }
    let replies = [
        MailboxReply::Accepted { id: HeldId::of(b"x") },
        MailboxReply::Refused(Refusal::NotHolding),
        MailboxReply::Refused(Refusal::Unavailable),
        MailboxReply::Held { items: vec![held(1, 1), held(5, 2)], more: true },
        MailboxReply::Held { items: vec![], more: false },
        MailboxReply::Acked { removed: 3 },
    ];
    for reply in replies {
        let bytes = reply.to_bytes().unwrap();
        assert_eq!(MailboxReply::from_bytes(&bytes).unwrap(), reply);
    }
}

#[test]
fn a_full_collect_answer_of_largest_envelopes_is_refused_by_size_not_by_panic() {
    let items: Vec<Held> = (1..=MAX_COLLECT_ITEMS as u64)
        .map(|p| Held { position: p, deposited: p, envelope: vec![9; MAX_HELD_ENVELOPE_BYTES] })
        .collect();
    let reply = MailboxReply::Held { items, more: false };
    assert_eq!(reply.to_bytes(), Err(MailboxError::Limit("reply too large")));
}

#[test]
fn limits_are_checked_on_both_sides() {
    let empty = MailboxRequest::Deposit { recipient: bob(), envelope: vec![] };
    assert!(empty.to_bytes().is_err());
    assert!(MailboxRequest::from_bytes(&codec::encode(&empty).unwrap()).is_err());
    let large = MailboxRequest::Deposit {
        recipient: bob(),
        envelope: vec![0; MAX_HELD_ENVELOPE_BYTES + 1],
    };
    assert!(large.to_bytes().is_err());
    assert!(MailboxRequest::from_bytes(&codec::encode(&large).unwrap()).is_err());
    let acks = MailboxRequest::Ack { ids: vec![HeldId::of(b"a"); MAX_ACK_IDS + 1] };
    assert!(acks.to_bytes().is_err());
    assert!(MailboxRequest::from_bytes(&codec::encode(&acks).unwrap()).is_err());

    let many = MailboxReply::Held {
        items: (1..=MAX_COLLECT_ITEMS as u64 + 1).map(|p| held(p, 1)).collect(),
        more: true,
    };
    assert!(MailboxReply::from_bytes(&codec::encode(&many).unwrap()).is_err());
    // Positions must rise: a mailbox cannot make a collector loop on one cursor.
    let unordered = MailboxReply::Held { items: vec![held(5, 1), held(5, 2)], more: true };
    assert!(MailboxReply::from_bytes(&codec::encode(&unordered).unwrap()).is_err());
    let empty =
        MailboxReply::Held { items: vec![Held { envelope: vec![], ..held(1, 0) }], more: false };
    assert!(MailboxReply::from_bytes(&codec::encode(&empty).unwrap()).is_err());
}

#[test]
fn trailing_truncated_and_oversized_bytes_are_refused() {
    let bytes = MailboxRequest::Collect { after: 7 }.to_bytes().unwrap();
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(MailboxRequest::from_bytes(&longer).is_err());
    assert!(MailboxRequest::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(MailboxRequest::from_bytes(&vec![0; MAX_MAILBOX_REQUEST_BYTES + 1]).is_err());
    assert!(MailboxReply::from_bytes(&vec![0; MAX_MAILBOX_REPLY_BYTES + 1]).is_err());
}

#[test]
fn the_id_names_the_exact_bytes() {
    let envelope = vec![3u8; 256];
    let mut changed = envelope.clone();
    changed[100] ^= 1;
    assert_eq!(HeldId::of(&envelope), held_of(&envelope).id());
    assert_ne!(HeldId::of(&envelope), HeldId::of(&changed));
    assert_eq!(HeldId::from_bytes(*HeldId::of(&envelope).as_bytes()), HeldId::of(&envelope));
}

fn held_of(envelope: &[u8]) -> Held {
    Held { position: 1, deposited: 0, envelope: envelope.to_vec() }
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = MailboxRequest::from_bytes(&bytes);
        let _ = MailboxReply::from_bytes(&bytes);
    }
}
