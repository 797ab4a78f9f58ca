//! `/kith/dm/2` batches: a lane's envelopes in one request, their receipts in one reply.

use super::{
    envelope::{Dm2Reply, Dm2Request, MAX_BATCH},
    tests::{pair, plain, send},
    OlmError,
};
use crate::{dm::DmReply, limits::MAX_DM_REASON_BYTES};

#[test]
fn a_batch_round_trips_in_order_and_its_size_is_bounded() {
    let (mut a, mut b) = pair();
    let envelopes: Vec<_> = (1..=3).map(|n| send(&mut a, &mut b, n)).collect();
    let batch = Dm2Request::Batch { envelopes: envelopes.clone(), follow_proof: Some(vec![7; 20]) };
    assert_eq!(Dm2Request::from_bytes(&batch.to_bytes().unwrap()), Ok(batch));
    // A full batch with a large follow record decodes (the decoder's limit counts what it
    // allocates too, about twice the bytes).
    let full: Vec<_> = (10..10 + MAX_BATCH as u32).map(|n| send(&mut a, &mut b, n)).collect();
    let full = Dm2Request::Batch { envelopes: full, follow_proof: Some(vec![7; 6000]) };
    let bytes = full.to_bytes().unwrap();
    assert!(bytes.len() > crate::limits::MAX_DM_REQUEST_BYTES / 2, "{}", bytes.len());
    assert_eq!(Dm2Request::from_bytes(&bytes), Ok(full));
    // None, or more than MAX_BATCH: refused after decoding, before anything is opened.
    let empty = Dm2Request::Batch { envelopes: Vec::new(), follow_proof: None };
    assert!(matches!(
        Dm2Request::from_bytes(&empty.to_bytes().unwrap()),
        Err(OlmError::Malformed(_))
    ));
    let many = vec![envelopes[0].clone(); MAX_BATCH + 1];
    let many = Dm2Request::Batch { envelopes: many, follow_proof: None };
    assert!(matches!(
        Dm2Request::from_bytes(&many.to_bytes().unwrap()),
        Err(OlmError::Malformed(_))
    ));
    // One envelope that is not well formed spoils the batch.
    let mut bad = envelopes.clone();
    bad[1].olm = vec![3; 100];
    let bad = Dm2Request::Batch { envelopes: bad, follow_proof: None };
    assert!(Dm2Request::from_bytes(&bad.to_bytes().unwrap()).is_err());
    // Over the request limit: refused before decoding.
    let big = vec![0u8; crate::limits::MAX_DM_REQUEST_BYTES + 1];
    assert!(matches!(Dm2Request::from_bytes(&big), Err(OlmError::TooLarge { .. })));
}

#[test]
fn the_longest_answer_to_a_batch_fits_in_a_reply() {
    let mut receipts: Vec<DmReply> =
        (0..MAX_BATCH as u32 - 1).map(|n| DmReply::Delivered { id: plain(n).id }).collect();
    receipts.push(DmReply::Refused { id: Some(plain(99).id), reason: "é".repeat(300) });
    let reply = Dm2Reply::Receipts(receipts);
    let bytes = reply.to_bytes().unwrap();
    let Ok(Dm2Reply::Receipts(back)) = Dm2Reply::from_bytes(&bytes) else { panic!() };
    assert_eq!(back.len(), MAX_BATCH);
    let DmReply::Refused { reason, .. } = &back[MAX_BATCH - 1] else { panic!() };
    assert!(reason.len() <= MAX_DM_REASON_BYTES);
    // More receipts than a batch holds: refused.
    let too_many = Dm2Reply::Receipts(vec![DmReply::Delivered { id: plain(1).id }; MAX_BATCH + 1]);
    let encoded = crate::codec::encode(&too_many).unwrap();
    assert!(matches!(Dm2Reply::from_bytes(&encoded), Err(OlmError::Malformed(_))));
    let empty = Dm2Reply::Receipts(Vec::new());
    assert_eq!(Dm2Reply::from_bytes(&empty.to_bytes().unwrap()), Ok(empty));
}
