use super::*;

#[test]
fn padded_sizes() {
    assert_eq!(PLAIN_OVERHEAD, 36);
    assert_eq!(SEALED_HEADER_LEN, 97);
    assert_eq!(padded_len(0), 256);
    assert_eq!(padded_len(220), 256);
    assert_eq!(padded_len(221), 512);
    // A longest text with the most and largest attachments.
    assert_eq!(MAX_PADDED_BYTES, 5888);
}

fn attachment(n: u8) -> SealedAttachment {
    use crate::{
        attachment::{Attachment, FileName, ImageInfo, MimeType, Thumbnail},
        blob::{BlobHash, BlobKey},
    };
    SealedAttachment {
        attachment: Attachment {
            hash: BlobHash::from_bytes([n; 32]),
            size: 300_000,
            mime: MimeType::new(&format!(
                "image/{}",
                "x".repeat(crate::limits::MAX_MIME_BYTES - 6)
            ))
            .unwrap(),
            name: FileName::new("x".repeat(crate::limits::MAX_FILE_NAME_BYTES)).unwrap(),
            image: Some(ImageInfo {
                width: 640,
                height: 480,
                thumbnail: Some(Thumbnail {
                    hash: BlobHash::from_bytes([n + 1; 32]),
                    size: 9000,
                    width: 320,
                    height: 240,
                }),
            }),
        },
        key: BlobKey::from_bytes([n + 2; 32]),
        sealed: BlobHash::from_bytes([n + 3; 32]),
        sealed_thumbnail: Some(BlobHash::from_bytes([n + 4; 32])),
    }
}

#[test]
fn attachments_travel_inside_and_old_messages_keep_their_bytes() {
    let mut plain = Plain {
        id: MessageId([7; 16]),
        timestamp: 5,
        text: "x".repeat(MAX_DM_TEXT_BYTES),
        attachments: vec![],
    };
    // Without attachments: exactly the head's encoding.
    let head = PlainHead { id: plain.id, timestamp: 5, text: plain.text.clone() };
    assert_eq!(codec::encode(&plain).unwrap(), codec::encode(&head).unwrap());
    plain.attachments = (0..MAX_ATTACHMENTS as u8).map(|i| attachment(i * 10)).collect();
    let padded = pad(&plain).unwrap();
    assert_eq!(padded.len(), MAX_PADDED_BYTES);
    assert_eq!(unpad(&padded).unwrap(), plain);
    plain.attachments.push(attachment(99));
    assert!(pad(&plain).is_err());

    // An empty list after the head is another encoding of a message without
    // attachments: refused.
    let mut body = codec::encode(&head).unwrap();
    body.extend_from_slice(&codec::encode(&Vec::<SealedAttachment>::new()).unwrap());
    assert!(Plain::decode_body(&body).is_err());
}

#[test]
fn pad_unpad_round_trip_and_strictness() {
    let plain =
        Plain { id: MessageId([7; 16]), timestamp: 5, text: "héllo".into(), attachments: vec![] };
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
    let plain = Plain {
        id: MessageId([0; 16]),
        timestamp: 0,
        text: "x".repeat(MAX_DM_TEXT_BYTES + 1),
        attachments: vec![],
    };
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
