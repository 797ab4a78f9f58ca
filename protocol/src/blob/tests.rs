use super::*;

fn bytes_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
}

const SIZES: [usize; 9] = [
    0,
    1,
    1024,
    BLOB_CHUNK_BYTES - 1,
    BLOB_CHUNK_BYTES,
    BLOB_CHUNK_BYTES + 1,
    2 * BLOB_CHUNK_BYTES,
    3 * BLOB_CHUNK_BYTES + 5,
    5 * BLOB_CHUNK_BYTES,
];

#[test]
fn hash_is_plain_blake3_and_every_chunk_checks() {
    for size in SIZES {
        let bytes = bytes_of(size);
        let (hash, manifest) = Manifest::build(&bytes);
        assert_eq!(hash.as_bytes(), blake3::hash(&bytes).as_bytes(), "size {size}");
        assert_eq!(manifest.size(), size as u64);
        let received = manifest.to_manifest().verify(&hash).unwrap();
        assert_eq!(received.chunk_count() as u64, chunk_count(size as u64));
        for index in 0..received.chunk_count() {
            let start = received.chunk_offset(index) as usize;
            let len = received.chunk_len(index).unwrap();
            let chunk = &bytes[start..start + len];
            received.check_chunk(index, chunk).unwrap();
            // One flipped bit anywhere in the chunk is caught.
            if !chunk.is_empty() {
                let mut bad = chunk.to_vec();
                bad[len / 2] ^= 1;
                assert_eq!(
                    received.check_chunk(index, &bad),
                    Err(BlobError::ChunkMismatch { index })
                );
            }
        }
        let count = received.chunk_count();
        assert_eq!(
            received.check_chunk(count, &[]),
            Err(BlobError::NoSuchChunk { index: count, count })
        );
    }
}

#[test]
fn streaming_builder_matches() {
    let bytes = bytes_of(3 * BLOB_CHUNK_BYTES + 5);
    let mut builder = ManifestBuilder::default();
    for chunk in bytes.chunks(BLOB_CHUNK_BYTES) {
        builder.push(chunk);
    }
    assert_eq!(builder.finish(), Manifest::build(&bytes));
}

#[test]
fn lying_manifests_are_refused() {
    let bytes = bytes_of(3 * BLOB_CHUNK_BYTES + 5);
    let (hash, manifest) = Manifest::build(&bytes);
    let good = manifest.to_manifest();

    let mut tampered = good.clone();
    tampered.cvs[1][0] ^= 1;
    assert_eq!(tampered.verify(&hash), Err(BlobError::ManifestMismatch));

    // A size that changes the chunk count is caught here; one within the last chunk is
    // caught by the last chunk, which cannot match it.
    let mut longer = good.clone();
    longer.size += BLOB_CHUNK_BYTES as u64;
    assert!(matches!(longer.verify(&hash), Err(BlobError::WrongCount { .. })));
    let mut off_by_one = good.clone();
    off_by_one.size += 1;
    let lie = off_by_one.verify(&hash).unwrap();
    let start = 3 * BLOB_CHUNK_BYTES;
    assert!(lie.check_chunk(3, &bytes[start..]).is_err());
    let mut padded = bytes[start..].to_vec();
    padded.push(0);
    assert!(lie.check_chunk(3, &padded).is_err());

    let mut fewer = good.clone();
    fewer.cvs.pop();
    assert!(matches!(fewer.verify(&hash), Err(BlobError::WrongCount { .. })));

    let other = BlobHash::of(b"something else");
    assert_eq!(good.clone().verify(&other), Err(BlobError::ManifestMismatch));

    let huge = Manifest { size: MAX_BLOB_BYTES + 1, cvs: vec![] };
    assert!(matches!(huge.verify(&hash), Err(BlobError::TooLarge { .. })));

    // A single-chunk blob has no chaining values; its chunk is checked by the hash.
    let small = Manifest { size: 10, cvs: vec![[0; 32]] };
    assert!(matches!(small.verify(&hash), Err(BlobError::WrongCount { .. })));
    let claimed = Manifest { size: 10, cvs: vec![] }.verify(&hash).unwrap();
    assert!(claimed.check_chunk(0, &bytes[..10]).is_err());
    assert!(matches!(claimed.check_chunk(0, &bytes[..9]), Err(BlobError::ChunkLength { .. })));
}

#[test]
fn hash_text_round_trip() {
    let hash = BlobHash::of(b"x");
    assert_eq!(hash.to_string().parse::<BlobHash>().unwrap(), hash);
    assert_eq!(hash.to_string().to_uppercase().parse::<BlobHash>().unwrap(), hash);
    assert!("abc".parse::<BlobHash>().is_err());
}

#[test]
fn wire_round_trip_and_limits() {
    let hash = BlobHash::of(b"x");
    for request in [BlobRequest::Manifest { hash }, BlobRequest::Chunk { hash, index: 7 }] {
        let bytes = request.to_bytes().unwrap();
        assert_eq!(BlobRequest::from_bytes(&bytes).unwrap(), request);
    }
    let chunk = BlobReply::Chunk(vec![1; BLOB_CHUNK_BYTES]);
    assert_eq!(BlobReply::from_bytes(&chunk.to_bytes().unwrap()).unwrap(), chunk);
    let over = BlobReply::Chunk(vec![1; crate::limits::MAX_BLOB_REPLY_BYTES]);
    assert!(over.to_bytes().is_err());
    // A hostile length prefix is refused before any allocation.
    let mut evil = 1u32.to_le_bytes().to_vec();
    evil.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(BlobReply::from_bytes(&evil).is_err());
    assert!(BlobRequest::from_bytes(&[9; 200]).is_err());
}
