use super::*;

#[test]
fn padded_sizes() {
    assert_eq!(PLAIN_OVERHEAD, 36);
    assert_eq!(SEALED_HEADER_LEN, 97);
    assert_eq!(padded_len(0), 256);
    assert_eq!(padded_len(220), 256);
    assert_eq!(padded_len(221), 512);
    assert_eq!(MAX_PADDED_BYTES, 4352);
}

#[test]
fn pad_unpad_round_trip_and_strictness() {
    let plain = Plain { id: MessageId([7; 16]), timestamp: 5, text: "héllo".into() };
    let padded = pad(&plain).unwrap();
    assert_eq!(padded.len(), 256);
    assert_eq!(unpad(&padded).unwrap(), plain);

    let mut bad = padded.to_vec();
    *bad.last_mut().unwrap() = 1;
    assert!(matches!(unpad(&bad), Err(DmError::Malformed(_))));

    // Extra padding block: not what pad makes.
    let mut long = padded.to_vec();
    long.resize(512, 0);
    assert!(matches!(unpad(&long), Err(DmError::Malformed(_))));

    // Length prefix too large for the buffer.
    let mut big = padded.to_vec();
    big[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(unpad(&big), Err(DmError::Malformed(_))));
    assert!(matches!(unpad(&[1, 2]), Err(DmError::Malformed(_))));
}

#[test]
fn unpad_refuses_over_long_text() {
    let plain =
        Plain { id: MessageId([0; 16]), timestamp: 0, text: "x".repeat(MAX_DM_TEXT_BYTES + 1) };
    let body = codec::encode(&plain).unwrap();
    let mut padded = codec::encode(&(body.len() as u32)).unwrap();
    padded.extend_from_slice(&body);
    padded.resize(padded.len().next_multiple_of(DM_PAD_BLOCK), 0);
    assert_eq!(
        unpad(&padded),
        Err(DmError::TextTooLong { len: MAX_DM_TEXT_BYTES + 1, max: MAX_DM_TEXT_BYTES })
    );
}

#[test]
fn reason_truncation_respects_char_boundaries() {
    let reason = "é".repeat(200); // 400 bytes
    let DmReply::Refused { reason: cut, .. } = DmReply::refused(None, reason) else {
        unreachable!()
    };
    assert_eq!(cut.len(), 256);
    let reason = format!("a{}", "é".repeat(200)); // boundary at odd offsets
    let DmReply::Refused { reason: cut, .. } = DmReply::refused(None, reason) else {
        unreachable!()
    };
    assert_eq!(cut.len(), 255);
}
