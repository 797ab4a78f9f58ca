//! Sealed direct messages: round trips, tampering, wrong recipients, forged senders,
//! padding sizes, limits, replies, and property tests on random input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kith_protocol::{
    codec::CodecError,
    dm::{
        seal_with_ephemeral, DmError, DmReply, DmRequest, MessageId, PairKeys, Plain, Sealed,
        SEALED_HEADER_LEN, SEALED_VERSION,
    },
    identity::{AuthorId, Keypair},
    limits::{
        DM_PAD_BLOCK, MAX_DM_REASON_BYTES, MAX_DM_REPLY_BYTES, MAX_DM_REQUEST_BYTES,
        MAX_DM_TEXT_BYTES, MAX_RECORD_BYTES, MAX_SEALED_BYTES,
    },
    record::{Record, RecordKind, VerifiedRecord},
};
use proptest::prelude::*;

fn alice() -> Keypair {
    Keypair::from_secret_bytes(&[1; 32])
}

fn bob() -> Keypair {
    Keypair::from_secret_bytes(&[2; 32])
}

fn carol() -> Keypair {
    Keypair::from_secret_bytes(&[3; 32])
}

fn plain(text: &str) -> Plain {
    Plain {
        id: MessageId::generate().unwrap(),
        timestamp: 1_700_000_000_000,
        text: text.into(),
        attachments: vec![],
    }
}

/// Seals from alice to bob, sends through bytes, and opens.
fn round_trip(text: &str) -> Vec<u8> {
    let message = plain(text);
    let sealed = Sealed::seal(&alice(), &bob().id(), &message).unwrap();
    assert_eq!(sealed.version, SEALED_VERSION);
    assert_eq!(sealed.sender, alice().id());
    assert_eq!(sealed.recipient, bob().id());
    let bytes = sealed.to_bytes().unwrap();
    let received = Sealed::from_bytes(&bytes).unwrap();
    assert_eq!(received, sealed);
    assert_eq!(received.open(&bob()).unwrap(), message);
    bytes
}

#[test]
fn pair_keys_seal_and_open_as_the_plain_calls_do() {
    let (a, b, c) = (alice(), bob(), carol());
    let a_to_b = PairKeys::new(&a, &b.id()).unwrap();
    let b_from_a = PairKeys::new(&b, &a.id()).unwrap();
    assert_eq!(a_to_b.peer(), &b.id());
    let message = plain("cached keys");
    // Either way of sealing opens either way, to the same message.
    for sealed in [
        Sealed::seal(&a, &b.id(), &message).unwrap(),
        Sealed::seal_with(&a, &a_to_b, &message).unwrap(),
    ] {
        assert_eq!((sealed.sender, sealed.recipient), (a.id(), b.id()));
        assert_eq!(sealed.open(&b).unwrap(), message);
        assert_eq!(sealed.open_with(&b, &b_from_a).unwrap(), message);
        // Keys of another pair are refused, not used.
        let c_from_a = PairKeys::new(&c, &a.id()).unwrap();
        let b_from_c = PairKeys::new(&b, &c.id()).unwrap();
        assert_eq!(sealed.open_with(&b, &c_from_a), Err(DmError::WrongKeys));
        assert_eq!(sealed.open_with(&b, &b_from_c), Err(DmError::WrongKeys));
        assert_eq!(sealed.open_with(&c, &c_from_a), Err(DmError::WrongRecipient));
    }
    assert_eq!(Sealed::seal_with(&b, &a_to_b, &message), Err(DmError::WrongKeys));
    // The debug form names the people only.
    assert!(!format!("{a_to_b:?}").contains("ss"));
}

#[test]
fn round_trips() {
    round_trip("x");
    round_trip("hi bob");
    round_trip("ünïcödé 👋 日本語 \u{0} \n\t");
    round_trip(&"a".repeat(MAX_DM_TEXT_BYTES));
    // A text at the limit made of 4-byte characters.
    round_trip(&"😀".repeat(MAX_DM_TEXT_BYTES / 4));
    // Empty text is a valid message at this layer (the node decides whether to send it).
    round_trip("");
}

#[test]
fn sealing_twice_differs() {
    let message = plain("same");
    let one = Sealed::seal(&alice(), &bob().id(), &message).unwrap();
    let two = Sealed::seal(&alice(), &bob().id(), &message).unwrap();
    assert_ne!(one.ephemeral, two.ephemeral);
    assert_ne!(one.ciphertext, two.ciphertext);
    assert_eq!(one.open(&bob()).unwrap(), two.open(&bob()).unwrap());
}

#[test]
fn sending_to_oneself_works() {
    let message = plain("note to self");
    let sealed = Sealed::seal(&alice(), &alice().id(), &message).unwrap();
    assert_eq!(sealed.open(&alice()).unwrap(), message);
}

#[test]
fn every_bit_flip_is_refused() {
    let bytes = round_trip("flip me, every bit of me");
    let bob = bob();
    let mut checked = 0;
    for index in 0..bytes.len() {
        for bit in [0u8, 1, 3, 6, 7] {
            let mut tampered = bytes.clone();
            tampered[index] ^= 1 << bit;
            let result = Sealed::from_bytes(&tampered).and_then(|sealed| sealed.open(&bob));
            assert!(result.is_err(), "flip of bit {bit} of byte {index} was accepted");
            checked += 1;
        }
    }
    assert_eq!(checked, bytes.len() * 5);
}

#[test]
fn tampering_gives_the_expected_errors() {
    let bytes = round_trip("hello");
    let bob = bob();
    let flip = |index: usize, mask: u8| {
        let mut tampered = bytes.clone();
        tampered[index] ^= mask;
        Sealed::from_bytes(&tampered).and_then(|sealed| sealed.open(&bob))
    };
    // Version byte.
    assert!(matches!(flip(0, 1), Err(DmError::Malformed(_))));
    // Recipient field (offset 33..65).
    assert_eq!(flip(40, 1), Err(DmError::WrongRecipient));
    // Ephemeral key (65..97): the top bit is ignored by X25519, but it is part of the
    // associated data and the key derivation, so the message still fails to open.
    assert_eq!(flip(96, 0x80), Err(DmError::Decrypt));
    assert_eq!(flip(70, 1), Err(DmError::Decrypt));
    // Ciphertext and tag.
    assert_eq!(flip(SEALED_HEADER_LEN + 8, 1), Err(DmError::Decrypt));
    assert_eq!(flip(bytes.len() - 1, 1), Err(DmError::Decrypt));
    // The ciphertext length: a decoding error.
    assert!(matches!(flip(SEALED_HEADER_LEN, 1), Err(DmError::Codec(_))));
    // Sender's sign bit: same X25519 key, still refused (the ed25519 bytes are bound).
    assert!(flip(32, 0x80).is_err());
}

#[test]
fn unknown_version_refused() {
    let mut sealed = Sealed::seal(&alice(), &bob().id(), &plain("v2?")).unwrap();
    sealed.version = 2;
    assert!(matches!(sealed.open(&bob()), Err(DmError::Malformed(_))));
    let bytes = sealed.to_bytes().unwrap();
    assert!(matches!(Sealed::from_bytes(&bytes), Err(DmError::Malformed(_))));
}

#[test]
fn only_the_recipient_can_open() {
    let sealed = Sealed::seal(&alice(), &bob().id(), &plain("for bob only")).unwrap();
    assert_eq!(sealed.open(&carol()), Err(DmError::WrongRecipient));
    assert_eq!(sealed.open(&alice()), Err(DmError::WrongRecipient));
    // Carol rewrites the recipient to herself: the key differs, decryption fails.
    let mut stolen = sealed.clone();
    stolen.recipient = carol().id();
    assert_eq!(stolen.open(&carol()), Err(DmError::Decrypt));
}

#[test]
fn forged_sender_refused() {
    // Carol seals for bob with her own key, then claims to be alice.
    let mut forged = Sealed::seal(&carol(), &bob().id(), &plain("I am alice")).unwrap();
    assert!(forged.open(&bob()).is_ok());
    forged.sender = alice().id();
    assert_eq!(forged.open(&bob()), Err(DmError::Decrypt));
    assert_eq!(
        Sealed::from_bytes(&forged.to_bytes().unwrap()).unwrap().open(&bob()),
        Err(DmError::Decrypt)
    );
}

#[test]
fn transplanted_ciphertext_refused() {
    // The ciphertext of one message under the header of another.
    let one = Sealed::seal(&alice(), &bob().id(), &plain("one")).unwrap();
    let two = Sealed::seal(&alice(), &bob().id(), &plain("two")).unwrap();
    let mut mixed = one.clone();
    mixed.ciphertext = two.ciphertext.clone();
    assert_eq!(mixed.open(&bob()), Err(DmError::Decrypt));
    let mut mixed = one;
    mixed.ephemeral = two.ephemeral;
    assert_eq!(mixed.open(&bob()), Err(DmError::Decrypt));
}

#[test]
fn low_order_keys_refused() {
    // The Montgomery u = 0 point (order 4 on the curve, order 2 on its image): all-zero DH.
    let mut sealed = Sealed::seal(&alice(), &bob().id(), &plain("x")).unwrap();
    sealed.ephemeral = [0; 32];
    assert_eq!(sealed.open(&bob()), Err(DmError::BadKey));
    sealed.ephemeral[0] = 1; // u = 1, order 4
    assert_eq!(sealed.open(&bob()), Err(DmError::BadKey));

    // A small-order ed25519 key as the recipient or the sender: the identity point.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = AuthorId::from_bytes(identity).unwrap();
    assert_eq!(Sealed::seal(&alice(), &weak, &plain("x")), Err(DmError::BadKey));
    let mut sealed = Sealed::seal(&alice(), &bob().id(), &plain("x")).unwrap();
    sealed.sender = weak;
    assert_eq!(sealed.open(&bob()), Err(DmError::BadKey));
}

/// The size of the encoded sealed message of a text of `n` bytes, from the documented
/// layout: 97-byte header, 8-byte ciphertext length, padded plaintext, 16-byte tag; the
/// padded plaintext is 36 bytes plus the text, rounded up to a multiple of 256.
fn documented_size(n: usize) -> usize {
    97 + 8 + (36 + n).div_ceil(256) * 256 + 16
}

#[test]
fn size_depends_only_on_the_padded_length() {
    let size = |n: usize| {
        Sealed::seal(&alice(), &bob().id(), &plain(&"a".repeat(n)))
            .unwrap()
            .to_bytes()
            .unwrap()
            .len()
    };
    // Texts of 0..=220 bytes share the first size, 221..=476 the second, and so on.
    for n in [0, 1, 200, 220] {
        assert_eq!(size(n), 377, "{n}");
    }
    for n in [221, 250, 251, 256, 476] {
        assert_eq!(size(n), 633, "{n}");
    }
    assert_eq!(size(477), 889);
    assert_eq!(size(MAX_DM_TEXT_BYTES), 4473);
    // Every length up to the limit.
    for n in 0..=MAX_DM_TEXT_BYTES {
        let sealed = Sealed::seal(&alice(), &bob().id(), &plain(&"b".repeat(n))).unwrap();
        assert_eq!(sealed.ciphertext.len() % DM_PAD_BLOCK, 16, "{n}");
        assert_eq!(sealed.to_bytes().unwrap().len(), documented_size(n), "{n}");
    }
    assert!(documented_size(MAX_DM_TEXT_BYTES) <= MAX_SEALED_BYTES);
}

#[test]
fn over_long_text_refused() {
    let too_long = plain(&"a".repeat(MAX_DM_TEXT_BYTES + 1));
    assert_eq!(
        Sealed::seal(&alice(), &bob().id(), &too_long),
        Err(DmError::TextTooLong { len: MAX_DM_TEXT_BYTES + 1, max: MAX_DM_TEXT_BYTES })
    );
}

#[test]
fn oversized_input_refused_before_decoding() {
    // Junk that would not decode: the size check comes first.
    let junk = vec![0xffu8; MAX_SEALED_BYTES + 1];
    assert_eq!(
        Sealed::from_bytes(&junk),
        Err(DmError::TooLarge { len: MAX_SEALED_BYTES + 1, max: MAX_SEALED_BYTES })
    );
    // A valid message with one byte appended is refused as trailing bytes.
    let mut bytes = round_trip("trailing");
    bytes.push(0);
    assert_eq!(Sealed::from_bytes(&bytes), Err(DmError::Codec(CodecError::TrailingBytes(1))));
    let junk = vec![0u8; MAX_DM_REPLY_BYTES + 1];
    assert_eq!(
        DmReply::from_bytes(&junk),
        Err(DmError::TooLarge { len: MAX_DM_REPLY_BYTES + 1, max: MAX_DM_REPLY_BYTES })
    );
}

#[test]
fn ciphertext_shape_checked_before_decrypting() {
    let mut sealed = Sealed::seal(&alice(), &bob().id(), &plain("shape")).unwrap();
    sealed.ciphertext.truncate(100);
    assert!(matches!(sealed.open(&bob()), Err(DmError::Malformed(_))));
    assert!(matches!(Sealed::from_bytes(&sealed.to_bytes().unwrap()), Err(DmError::Malformed(_))));
    sealed.ciphertext = vec![0; 16];
    assert!(matches!(sealed.open(&bob()), Err(DmError::Malformed(_))));
    // More padded blocks than the longest message (text and attachments) needs.
    sealed.ciphertext = vec![0; 24 * 256 + 16];
    assert!(matches!(Sealed::from_bytes(&sealed.to_bytes().unwrap()), Err(DmError::Malformed(_))));
}

#[test]
fn requests_round_trip() {
    let follow = Record {
        author: alice().id(),
        seq: 1,
        prev: None,
        timestamp: 1_700_000_000_000,
        kind: RecordKind::Follow { target: bob().id() },
    }
    .sign(&alice())
    .unwrap();
    let sealed = Sealed::seal(&alice(), &bob().id(), &plain("with proof")).unwrap();
    let sealed_bytes = sealed.to_bytes().unwrap();
    for proof in [None, Some(follow.bytes().to_vec())] {
        let request = DmRequest { sealed: sealed.clone(), follow_proof: proof.clone() };
        let bytes = request.to_bytes().unwrap();
        // Layout: the sealed message, then the Option.
        let mut expected = sealed_bytes.clone();
        match &proof {
            None => expected.push(0),
            Some(p) => {
                expected.push(1);
                expected.extend_from_slice(&(p.len() as u64).to_le_bytes());
                expected.extend_from_slice(p);
            }
        }
        assert_eq!(bytes, expected);
        let received = DmRequest::from_bytes(&bytes).unwrap();
        assert_eq!(received, request);
        assert_eq!(received.sealed.open(&bob()).unwrap().text, "with proof");
        if let Some(p) = received.follow_proof {
            assert_eq!(VerifiedRecord::from_bytes(&p).unwrap().id(), follow.id());
        }
    }
}

#[test]
fn bad_requests_refused() {
    let junk = vec![0u8; MAX_DM_REQUEST_BYTES + 1];
    assert_eq!(
        DmRequest::from_bytes(&junk),
        Err(DmError::TooLarge { len: MAX_DM_REQUEST_BYTES + 1, max: MAX_DM_REQUEST_BYTES })
    );
    let mut sealed = Sealed::seal(&alice(), &bob().id(), &plain("x")).unwrap();
    let too_big =
        DmRequest { sealed: sealed.clone(), follow_proof: Some(vec![0; MAX_DM_REQUEST_BYTES]) };
    assert!(matches!(too_big.to_bytes(), Err(DmError::TooLarge { .. })));
    let long_proof =
        DmRequest { sealed: sealed.clone(), follow_proof: Some(vec![0; MAX_RECORD_BYTES + 1]) };
    let bytes = long_proof.to_bytes().unwrap();
    assert!(matches!(DmRequest::from_bytes(&bytes), Err(DmError::Malformed(_))));
    sealed.version = 9;
    let bytes = DmRequest { sealed, follow_proof: None }.to_bytes().unwrap();
    assert!(matches!(DmRequest::from_bytes(&bytes), Err(DmError::Malformed(_))));
}

#[test]
fn message_id_text_forms() {
    let id = MessageId::from_bytes([0xab; 16]);
    assert_eq!(id.to_string(), "ab".repeat(16));
    assert_eq!(format!("{id:?}"), format!("MessageId({})", "ab".repeat(16)));
    assert_eq!(format!(" {} ", "AB".repeat(16)).parse::<MessageId>(), Ok(id));
    assert!("ab".repeat(15).parse::<MessageId>().is_err());
    assert!("ab".repeat(17).parse::<MessageId>().is_err());
    assert!("zz".repeat(16).parse::<MessageId>().is_err());
    assert_eq!(id.as_bytes(), &[0xab; 16]);
    assert_ne!(MessageId::generate().unwrap(), MessageId::generate().unwrap());
}

#[test]
fn replies_round_trip() {
    let id = MessageId::from_bytes([9; 16]);
    for reply in [
        DmReply::Delivered { id },
        DmReply::refused(Some(id), "not a mutual connection"),
        DmReply::refused(None, ""),
        DmReply::refused(None, "r".repeat(MAX_DM_REASON_BYTES)),
    ] {
        let bytes = reply.to_bytes().unwrap();
        assert!(bytes.len() <= MAX_DM_REPLY_BYTES);
        assert_eq!(DmReply::from_bytes(&bytes).unwrap(), reply);
    }
    // Layout: variant index u32 LE, then the fields.
    let bytes = DmReply::Delivered { id }.to_bytes().unwrap();
    assert_eq!(bytes, [&[0u8, 0, 0, 0][..], &[9; 16]].concat());
}

#[test]
fn long_reasons_truncated_on_encode_and_refused_on_decode() {
    let long = DmReply::Refused { id: None, reason: "é".repeat(300) };
    let bytes = long.to_bytes().unwrap();
    let DmReply::Refused { reason, .. } = DmReply::from_bytes(&bytes).unwrap() else {
        panic!("not a refusal");
    };
    assert_eq!(reason, "é".repeat(128));
    assert_eq!(DmReply::refused(None, "é".repeat(300)), DmReply::from_bytes(&bytes).unwrap());

    // Someone else's encoder sending 257 bytes of reason: refused.
    let mut raw = vec![1, 0, 0, 0, 0];
    raw.extend_from_slice(&257u64.to_le_bytes());
    raw.extend_from_slice(&[b'x'; 257]);
    assert!(matches!(DmReply::from_bytes(&raw), Err(DmError::Malformed(_))));
}

#[test]
fn fixed_ephemeral_is_deterministic() {
    let message = Plain {
        id: MessageId::from_bytes([5; 16]),
        timestamp: 1,
        text: "det".into(),
        attachments: vec![],
    };
    let one = seal_with_ephemeral(&alice(), &bob().id(), &message, [7; 32]).unwrap();
    let two = seal_with_ephemeral(&alice(), &bob().id(), &message, [7; 32]).unwrap();
    assert_eq!(one, two);
    assert_eq!(one.open(&bob()).unwrap(), message);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_text_round_trips(
        text in "\\PC{0,300}",
        id in any::<[u8; 16]>(),
        timestamp in any::<u64>(),
        sender in any::<[u8; 32]>(),
        recipient in any::<[u8; 32]>(),
    ) {
        let sender = Keypair::from_secret_bytes(&sender);
        let recipient = Keypair::from_secret_bytes(&recipient);
        let message = Plain { id: MessageId::from_bytes(id), timestamp, text, attachments: vec![] };
        let bytes = Sealed::seal(&sender, &recipient.id(), &message).unwrap().to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), documented_size(message.text.len()));
        let opened = Sealed::from_bytes(&bytes).unwrap().open(&recipient).unwrap();
        prop_assert_eq!(opened, message);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(sealed) = Sealed::from_bytes(&bytes) {
            let _ = sealed.open(&bob());
        }
        let _ = DmReply::from_bytes(&bytes);
        if let Ok(request) = DmRequest::from_bytes(&bytes) {
            let _ = request.sealed.open(&bob());
        }
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        cut in 0usize..700,
    ) {
        // A real header and ciphertext length, then junk: exercises the decoder past the
        // header.
        let bytes = Sealed::seal(&alice(), &bob().id(), &plain("x")).unwrap().to_bytes().unwrap();
        let mut mixed = bytes[..SEALED_HEADER_LEN + 8].to_vec();
        mixed.extend_from_slice(&body);
        mixed.truncate(cut.max(1));
        if let Ok(sealed) = Sealed::from_bytes(&mixed) {
            prop_assert!(sealed.open(&bob()).is_err());
        }
    }

    #[test]
    fn random_replies_round_trip(
        id in proptest::option::of(any::<[u8; 16]>()),
        reason in "\\PC{0,400}",
    ) {
        let reply = DmReply::refused(id.map(MessageId::from_bytes), reason.clone());
        let DmReply::Refused { reason: kept, .. } = &reply else { unreachable!() };
        prop_assert!(kept.len() <= MAX_DM_REASON_BYTES);
        prop_assert!(reason.starts_with(kept.as_str()));
        let bytes = reply.to_bytes().unwrap();
        prop_assert_eq!(DmReply::from_bytes(&bytes).unwrap(), reply);
    }
}
