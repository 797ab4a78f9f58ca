//! Integration tests of the record API: signing, verification, ids, limits and field checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kith_protocol::{
    codec::{self, CodecError},
    identity::{AuthorId, Keypair, SignatureError},
    limits::{
        MAX_BIO_BYTES, MAX_FUTURE_SKEW_MS, MAX_MAILBOXES, MAX_MENTIONS_PER_POST, MAX_NAME_BYTES,
        MAX_REACTION_BYTES, MAX_RECORD_BYTES, MAX_TEXT_BYTES,
    },
    record::{
        FieldError, Post, Record, RecordError, RecordId, RecordKind, SignedRecord, VerifiedRecord,
        RECORD_DOMAIN,
    },
};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_700_000_000_000;

fn alice() -> Keypair {
    Keypair::from_secret_bytes(&[0xa1; 32])
}

fn bob() -> Keypair {
    Keypair::from_secret_bytes(&[0xb0; 32])
}

fn post(text: &str) -> RecordKind {
    RecordKind::Post(Post {
        text: text.into(),
        reply_to: None,
        mentions: vec![],
        expires_at: None,
        attachments: vec![],
    })
}

fn record(author: &Keypair, seq: u64, prev: Option<RecordId>, kind: RecordKind) -> Record {
    Record { author: author.id(), seq, prev, timestamp: NOW, kind }
}

/// A signed post that exercises every optional field.
fn full_post() -> VerifiedRecord {
    let kind = RecordKind::Post(Post {
        text: "hello #kith, see @you".into(),
        reply_to: Some(RecordId::from_bytes([7; 32])),
        mentions: vec![bob().id()],
        expires_at: Some(NOW + 86_400_000),
        attachments: vec![],
    });
    record(&alice(), 2, Some(RecordId::from_bytes([3; 32])), kind).sign(&alice()).unwrap()
}

/// Encodes a record with an arbitrary signature, bypassing `Record::sign`'s checks.
fn forge(record: Record, signature: [u8; 64]) -> Vec<u8> {
    codec::encode(&SignedRecord { record, signature }).unwrap()
}

/// Signs a record with `key` over the proper domain, without any field checks.
fn sign_raw(record: &Record, key: &Keypair) -> Vec<u8> {
    let body = codec::encode(record).unwrap();
    forge(record.clone(), key.sign(RECORD_DOMAIN, &body))
}

fn field_error(result: Result<VerifiedRecord, RecordError>) -> FieldError {
    match result {
        Err(RecordError::Field(e)) => e,
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn sign_then_verify_round_trip() {
    let signed = full_post();
    let received = VerifiedRecord::from_bytes(signed.bytes()).unwrap();
    assert_eq!(received, signed);
    assert_eq!(received.record(), signed.record());
    assert_eq!(received.id(), signed.id());
    assert_eq!(received.signature(), signed.signature());
    assert_eq!(received.bytes(), signed.bytes());
    assert_eq!(VerifiedRecord::from_bytes_with_id(signed.bytes(), &signed.id()).unwrap(), signed);
}

#[test]
fn every_kind_round_trips() {
    let me = alice();
    let target = RecordId::from_bytes([9; 32]);
    let kinds = [
        post("hi"),
        RecordKind::Profile { name: "Alice".into(), bio: "writes #rust".into() },
        RecordKind::Follow { target: bob().id() },
        RecordKind::Unfollow { target: bob().id() },
        RecordKind::Reaction { target, emoji: "🎉".into() },
        RecordKind::Reaction { target, emoji: String::new() },
        RecordKind::Repost { target },
        RecordKind::Delete { target },
        RecordKind::Mailboxes { holders: vec![bob().id()] },
        RecordKind::Mailboxes { holders: vec![] },
    ];
    for kind in kinds {
        let signed = record(&me, 1, None, kind).sign(&me).unwrap();
        assert_eq!(VerifiedRecord::from_bytes(signed.bytes()).unwrap(), signed);
    }
}

#[test]
fn signed_bytes_are_record_bytes_then_signature() {
    let signed = full_post();
    let body = codec::encode(signed.record()).unwrap();
    assert_eq!(signed.bytes().len(), body.len() + 64);
    assert_eq!(&signed.bytes()[..body.len()], body.as_slice());
    assert_eq!(&signed.bytes()[body.len()..], signed.signature());
    // The signature covers the domain prefix followed by the record bytes.
    assert_eq!(signed.record().author.verify(RECORD_DOMAIN, &body, signed.signature()), Ok(()));
    assert_eq!(
        signed.record().author.verify(b"", &body, signed.signature()),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn record_id_is_sha256_of_signed_bytes() {
    let signed = full_post();
    let digest: [u8; 32] = Sha256::digest(signed.bytes()).into();
    assert_eq!(signed.id().as_bytes(), &digest);
    assert_eq!(signed.id(), RecordId::of_bytes(signed.bytes()));
    assert_eq!(signed.id().to_string(), hex::encode(digest));
    assert_eq!(signed.id().to_string().parse::<RecordId>().unwrap(), signed.id());
}

#[test]
fn flipping_any_byte_is_refused() {
    let signed = full_post();
    let bytes = signed.bytes();
    for index in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = bytes.to_vec();
            bad[index] ^= mask;
            let result = VerifiedRecord::from_bytes(&bad);
            assert!(result.is_err(), "byte {index} ^ {mask:#04x} accepted: {result:?}");
        }
    }
}

#[test]
fn signature_by_another_key_is_refused() {
    let rec = record(&alice(), 1, None, post("not really alice"));
    let bytes = sign_raw(&rec, &bob());
    assert_eq!(
        VerifiedRecord::from_bytes(&bytes),
        Err(RecordError::Signature(SignatureError::BadSignature))
    );
    // Record::sign refuses to sign with a key that is not the author's.
    assert_eq!(rec.sign(&bob()), Err(RecordError::Signature(SignatureError::BadKey)));
}

#[test]
fn signature_without_domain_is_refused() {
    let rec = record(&alice(), 1, None, post("hi"));
    let body = codec::encode(&rec).unwrap();
    let bytes = forge(rec, alice().sign(b"", &body));
    assert_eq!(
        VerifiedRecord::from_bytes(&bytes),
        Err(RecordError::Signature(SignatureError::BadSignature))
    );
}

#[test]
fn small_order_author_key_is_refused() {
    // The identity point (y = 1) decodes, but has small order: every signature check fails.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = AuthorId::from_bytes(identity).unwrap();
    assert_eq!(weak.verify(b"", b"", &[0; 64]), Err(SignatureError::BadKey));

    let rec = Record { author: weak, ..record(&alice(), 1, None, post("hi")) };
    assert_eq!(
        VerifiedRecord::from_bytes(&forge(rec, [0; 64])),
        Err(RecordError::Signature(SignatureError::BadKey))
    );
}

#[test]
fn author_bytes_off_the_curve_are_refused() {
    let signed = full_post();
    let off_curve = (0u8..=255)
        .map(|b| [b; 32])
        .find(|candidate| AuthorId::from_bytes(*candidate).is_err())
        .unwrap();
    let mut bytes = signed.bytes().to_vec();
    bytes[..32].copy_from_slice(&off_curve);
    assert_eq!(
        VerifiedRecord::from_bytes(&bytes),
        Err(RecordError::Signature(SignatureError::BadKey))
    );
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    // A valid record followed by padding: the size check fires, not the trailing-bytes check.
    let signed = full_post();
    let mut bytes = signed.bytes().to_vec();
    bytes.resize(MAX_RECORD_BYTES + 1, 0);
    assert_eq!(
        VerifiedRecord::from_bytes(&bytes),
        Err(RecordError::Codec(CodecError::TooLarge {
            len: MAX_RECORD_BYTES + 1,
            max: MAX_RECORD_BYTES
        }))
    );
    // Junk that could never decode is refused the same way.
    let junk = vec![0xff; MAX_RECORD_BYTES * 4];
    assert!(matches!(
        VerifiedRecord::from_bytes(&junk),
        Err(RecordError::Codec(CodecError::TooLarge { .. }))
    ));
    // With an expected id, oversize still wins over the hash check.
    assert!(matches!(
        VerifiedRecord::from_bytes_with_id(&junk, &signed.id()),
        Err(RecordError::Codec(CodecError::TooLarge { .. }))
    ));
    // At exactly the limit, the size check passes and decoding decides.
    bytes.truncate(MAX_RECORD_BYTES);
    let trailing = MAX_RECORD_BYTES - signed.bytes().len();
    assert_eq!(
        VerifiedRecord::from_bytes(&bytes),
        Err(RecordError::Codec(CodecError::TrailingBytes(trailing)))
    );
}

#[test]
fn malformed_encodings_are_refused() {
    let signed = full_post();
    let bytes = signed.bytes();
    assert!(matches!(VerifiedRecord::from_bytes(&[]), Err(RecordError::Codec(_))));
    for len in [1, 32, bytes.len() - 1] {
        assert!(
            matches!(VerifiedRecord::from_bytes(&bytes[..len]), Err(RecordError::Codec(_))),
            "truncated to {len}"
        );
    }
    let mut extra = bytes.to_vec();
    extra.push(0);
    assert_eq!(
        VerifiedRecord::from_bytes(&extra),
        Err(RecordError::Codec(CodecError::TrailingBytes(1)))
    );
    // An unknown RecordKind variant (index 7) at offset 32 + 8 + 33 + 8 = 81.
    let mut unknown = bytes.to_vec();
    assert_eq!(unknown[81..85], [0, 0, 0, 0]);
    unknown[81] = 7;
    assert!(matches!(VerifiedRecord::from_bytes(&unknown), Err(RecordError::Codec(_))));
}

#[test]
fn wrong_id_is_a_hash_mismatch() {
    let signed = full_post();
    let wrong = RecordId::from_bytes([0; 32]);
    assert_eq!(
        VerifiedRecord::from_bytes_with_id(signed.bytes(), &wrong),
        Err(RecordError::HashMismatch)
    );
    // The hash is checked before anything is decoded.
    assert_eq!(VerifiedRecord::from_bytes_with_id(b"junk", &wrong), Err(RecordError::HashMismatch));
    // Matching id, bad bytes: the usual error.
    let junk_id = RecordId::of_bytes(b"junk");
    assert!(matches!(
        VerifiedRecord::from_bytes_with_id(b"junk", &junk_id),
        Err(RecordError::Codec(_))
    ));
}

#[test]
fn seq_and_prev_shape() {
    let me = alice();
    let prev = Some(RecordId::from_bytes([1; 32]));
    assert_eq!(field_error(record(&me, 0, None, post("x")).sign(&me)), FieldError::ZeroSeq);
    assert_eq!(field_error(record(&me, 0, prev, post("x")).sign(&me)), FieldError::ZeroSeq);
    assert_eq!(field_error(record(&me, 1, prev, post("x")).sign(&me)), FieldError::BadPrev);
    assert_eq!(field_error(record(&me, 2, None, post("x")).sign(&me)), FieldError::BadPrev);
    assert!(record(&me, 1, None, post("x")).sign(&me).is_ok());
    assert!(record(&me, 2, prev, post("x")).sign(&me).is_ok());
    assert!(record(&me, u64::MAX, prev, post("x")).sign(&me).is_ok());
}

#[test]
fn post_text_rules() {
    let me = alice();
    for blank in ["", " ", "\n\t ", "\u{3000}"] {
        assert_eq!(
            field_error(record(&me, 1, None, post(blank)).sign(&me)),
            FieldError::EmptyText,
            "{blank:?}"
        );
    }
    let longest = "a".repeat(MAX_TEXT_BYTES);
    assert!(record(&me, 1, None, post(&longest)).sign(&me).is_ok());
    let too_long = "a".repeat(MAX_TEXT_BYTES + 1);
    assert_eq!(
        field_error(record(&me, 1, None, post(&too_long)).sign(&me)),
        FieldError::TooLong { field: "text", len: MAX_TEXT_BYTES + 1, max: MAX_TEXT_BYTES }
    );
    // The limit is in bytes of UTF-8, not characters.
    let wide = "é".repeat(MAX_TEXT_BYTES / 2 + 1);
    assert!(matches!(
        field_error(record(&me, 1, None, post(&wide)).sign(&me)),
        FieldError::TooLong { field: "text", .. }
    ));
}

#[test]
fn mention_limit() {
    let me = alice();
    let people: Vec<AuthorId> = (0..=MAX_MENTIONS_PER_POST)
        .map(|i| Keypair::from_secret_bytes(&[i as u8 + 1; 32]).id())
        .collect();
    let with = |n: usize| {
        RecordKind::Post(Post {
            text: "hi all".into(),
            reply_to: None,
            mentions: people[..n].to_vec(),
            expires_at: None,
            attachments: vec![],
        })
    };
    assert!(record(&me, 1, None, with(MAX_MENTIONS_PER_POST)).sign(&me).is_ok());
    assert_eq!(
        field_error(record(&me, 1, None, with(MAX_MENTIONS_PER_POST + 1)).sign(&me)),
        FieldError::TooManyMentions
    );
}

#[test]
fn profile_and_reaction_limits() {
    let me = alice();
    let profile = |name: usize, bio: usize| RecordKind::Profile {
        name: "n".repeat(name),
        bio: "b".repeat(bio),
    };
    assert!(record(&me, 1, None, profile(MAX_NAME_BYTES, MAX_BIO_BYTES)).sign(&me).is_ok());
    assert!(record(&me, 1, None, profile(0, 0)).sign(&me).is_ok());
    assert_eq!(
        field_error(record(&me, 1, None, profile(MAX_NAME_BYTES + 1, 0)).sign(&me)),
        FieldError::TooLong { field: "name", len: MAX_NAME_BYTES + 1, max: MAX_NAME_BYTES }
    );
    assert_eq!(
        field_error(record(&me, 1, None, profile(0, MAX_BIO_BYTES + 1)).sign(&me)),
        FieldError::TooLong { field: "bio", len: MAX_BIO_BYTES + 1, max: MAX_BIO_BYTES }
    );
    let reaction = |n: usize| RecordKind::Reaction {
        target: RecordId::from_bytes([5; 32]),
        emoji: "x".repeat(n),
    };
    assert!(record(&me, 1, None, reaction(MAX_REACTION_BYTES)).sign(&me).is_ok());
    assert_eq!(
        field_error(record(&me, 1, None, reaction(MAX_REACTION_BYTES + 1)).sign(&me)),
        FieldError::TooLong {
            field: "emoji",
            len: MAX_REACTION_BYTES + 1,
            max: MAX_REACTION_BYTES
        }
    );
}

#[test]
fn self_follow_is_refused() {
    let me = alice();
    for kind in [RecordKind::Follow { target: me.id() }, RecordKind::Unfollow { target: me.id() }] {
        assert_eq!(field_error(record(&me, 1, None, kind).sign(&me)), FieldError::SelfFollow);
    }
}

#[test]
fn receivers_check_fields_before_the_signature() {
    // A correctly signed record with bad fields is refused for its fields.
    let bad = record(&alice(), 0, None, post("x"));
    assert_eq!(
        VerifiedRecord::from_bytes(&sign_raw(&bad, &alice())),
        Err(RecordError::Field(FieldError::ZeroSeq))
    );
    // Bad fields and a bad signature: the field error is reported.
    let forged = forge(record(&alice(), 1, None, post(" ")), [0; 64]);
    assert_eq!(VerifiedRecord::from_bytes(&forged), Err(RecordError::Field(FieldError::EmptyText)));
    let self_follow = RecordKind::Follow { target: alice().id() };
    let forged = forge(record(&alice(), 1, None, self_follow), [0; 64]);
    assert_eq!(
        VerifiedRecord::from_bytes(&forged),
        Err(RecordError::Field(FieldError::SelfFollow))
    );
}

#[test]
fn future_skew_boundary() {
    let rec = |timestamp: u64| Record { timestamp, ..record(&alice(), 1, None, post("x")) };
    assert_eq!(rec(NOW).check_time(NOW), Ok(()));
    assert_eq!(rec(0).check_time(NOW), Ok(()), "old records are fine");
    assert_eq!(rec(NOW + MAX_FUTURE_SKEW_MS).check_time(NOW), Ok(()));
    assert_eq!(
        rec(NOW + MAX_FUTURE_SKEW_MS + 1).check_time(NOW),
        Err(FieldError::FromTheFuture { timestamp: NOW + MAX_FUTURE_SKEW_MS + 1, now: NOW })
    );
    // No overflow near the end of time.
    assert_eq!(rec(u64::MAX).check_time(u64::MAX - 1), Ok(()));
    assert_eq!(rec(u64::MAX).check_time(u64::MAX - MAX_FUTURE_SKEW_MS), Ok(()));
    assert!(rec(u64::MAX).check_time(u64::MAX - MAX_FUTURE_SKEW_MS - 1).is_err());
    // from_bytes does not look at the clock.
    let future = rec(u64::MAX).sign(&alice()).unwrap();
    assert!(VerifiedRecord::from_bytes(future.bytes()).is_ok());
}

#[test]
fn tags_come_from_post_text_only() {
    let signed = full_post();
    let tags: Vec<String> = signed.record().tags().iter().map(|t| t.to_string()).collect();
    assert_eq!(tags, ["kith"]);
    let profile =
        record(&alice(), 1, None, RecordKind::Profile { name: "#name".into(), bio: "#bio".into() });
    assert!(profile.tags().is_empty());
}

fn attached(n: usize, text: &str) -> RecordKind {
    use kith_protocol::{
        attachment::{Attachment, FileName, MimeType},
        blob::BlobHash,
    };
    let attachment = |i: usize| Attachment {
        hash: BlobHash::of(&i.to_le_bytes()),
        size: 1000 + i as u64,
        mime: MimeType::new("application/pdf").unwrap(),
        name: FileName::new(format!("doc{i}.pdf")).unwrap(),
        image: None,
    };
    RecordKind::Post(Post {
        text: text.into(),
        reply_to: None,
        mentions: vec![],
        expires_at: None,
        attachments: (0..n).map(attachment).collect(),
    })
}

#[test]
fn attachments_round_trip_and_keep_old_posts_unchanged() {
    use kith_protocol::limits::MAX_ATTACHMENTS;
    // A post with attachments may have no text; one without may not.
    let signed = record(&alice(), 1, None, attached(MAX_ATTACHMENTS, "")).sign(&alice()).unwrap();
    let back = VerifiedRecord::from_bytes(signed.bytes()).unwrap();
    assert_eq!(back.record(), signed.record());
    assert_eq!(signed.bytes()[32 + 8 + 1 + 8..][..4], 7u32.to_le_bytes());
    let plain = record(&alice(), 1, None, attached(0, "x")).sign(&alice()).unwrap();
    assert_eq!(plain.bytes()[32 + 8 + 1 + 8..][..4], 0u32.to_le_bytes());
    assert_eq!(
        record(&alice(), 1, None, attached(0, " ")).sign(&alice()),
        Err(RecordError::Field(FieldError::EmptyText))
    );
    assert_eq!(
        record(&alice(), 1, None, attached(MAX_ATTACHMENTS + 1, "x")).sign(&alice()),
        Err(RecordError::Field(FieldError::TooManyAttachments))
    );
    // A forged variant 7 with no attachments is a second encoding of a plain post.
    let mut body = codec::encode(&record(&alice(), 1, None, attached(0, "x"))).unwrap();
    body[32 + 8 + 1 + 8..][..4].copy_from_slice(&7u32.to_le_bytes());
    body.extend_from_slice(&0u64.to_le_bytes());
    body.extend_from_slice(&[0; 64]);
    assert!(matches!(
        VerifiedRecord::from_bytes(&body),
        Err(RecordError::Codec(CodecError::Malformed(_)))
    ));
    // An unknown kind.
    body[32 + 8 + 1 + 8..][..4].copy_from_slice(&8u32.to_le_bytes());
    assert!(matches!(
        VerifiedRecord::from_bytes(&body),
        Err(RecordError::Codec(CodecError::Malformed(_)))
    ));
}

#[test]
fn bad_attachments_are_refused() {
    use kith_protocol::attachment::AttachmentError;
    let mut kind = attached(1, "x");
    let RecordKind::Post(post) = &mut kind else { unreachable!() };
    post.attachments[0].size = kith_protocol::limits::MAX_BLOB_BYTES + 1;
    let r = record(&alice(), 1, None, kind.clone());
    assert!(matches!(
        r.sign(&alice()),
        Err(RecordError::Field(FieldError::Attachment(AttachmentError::TooLarge(_))))
    ));
    // A file name with a path in it does not even decode.
    let good = record(&alice(), 1, None, attached(1, "x")).sign(&alice()).unwrap();
    let mut bytes = good.bytes().to_vec();
    let at = bytes.windows(4).position(|w| w == b"doc0").unwrap();
    bytes[at + 3] = b'/';
    assert!(matches!(
        VerifiedRecord::from_bytes(&bytes),
        Err(RecordError::Codec(CodecError::Malformed(_)))
    ));
}

#[test]
fn mailbox_lists_are_bounded_and_name_others_once() {
    let me = alice();
    let others: Vec<_> =
        (1..=MAX_MAILBOXES as u8 + 1).map(|i| Keypair::from_secret_bytes(&[i; 32]).id()).collect();
    let list = |holders: &[AuthorId]| RecordKind::Mailboxes { holders: holders.to_vec() };
    assert!(record(&me, 1, None, list(&others[..MAX_MAILBOXES])).sign(&me).is_ok());
    for (bad, why) in [
        (list(&others), "more holders than allowed"),
        (list(&[bob().id(), me.id()]), "the author holds for themselves"),
        (list(&[bob().id(), bob().id()]), "a holder named twice"),
    ] {
        assert_eq!(field_error(record(&me, 1, None, bad).sign(&me)), FieldError::Mailboxes(why));
    }
}
