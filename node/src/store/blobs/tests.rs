#![allow(clippy::unwrap_used)]

use kith_protocol::{
    attachment::{Attachment, FileName, MimeType},
    blob::Manifest,
    Keypair, Post, Record, RecordKind,
};

use super::*;

const MIB: u64 = 1 << 20;

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed)).collect()
}

fn open(dir: &Path, quota: u64) -> (Store, Blobs) {
    let store = Store::open(&dir.join("store")).unwrap();
    let blobs = Blobs::open(
        &store,
        &dir.join("blobs"),
        BlobLimits { max_blob: 4 * MIB, quota, auto_budget: 2 * MIB },
    )
    .unwrap();
    (store, blobs)
}

/// Stores `data` as a fetched blob, the way a download does.
fn fetch(blobs: &Blobs, data: &[u8]) -> BlobHash {
    let (hash, manifest) = Manifest::build(data);
    let have = blobs.begin_partial(&manifest).unwrap();
    assert!(have.iter().all(|h| !h) || data.is_empty() || have.iter().any(|h| *h));
    for index in 0..manifest.chunk_count() {
        let start = manifest.chunk_offset(index) as usize;
        let len = manifest.chunk_len(index).unwrap();
        blobs.write_chunk(&manifest, index, &data[start..start + len]).unwrap();
    }
    blobs.finish_partial(&manifest, false).unwrap();
    hash
}

#[test]
fn import_read_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (_, blobs) = open(dir.path(), 64 * MIB);
    let data = bytes(600 * 1024, 3);
    let manifest = blobs.put_own(&data).unwrap();
    let hash = manifest.hash();
    assert_eq!(hash, BlobHash::of(&data));
    assert_eq!(fs::read(blobs.path(&hash)).unwrap(), data);
    assert_eq!(blobs.read_chunk(&hash, 1).unwrap().unwrap(), &data[256 * 1024..512 * 1024]);
    assert_eq!(blobs.read_chunk(&hash, 2).unwrap().unwrap().len(), 600 * 1024 - 512 * 1024);
    assert_eq!(blobs.read_chunk(&hash, 3).unwrap(), None);
    assert_eq!(blobs.manifest(&hash).unwrap().unwrap(), manifest);
    assert_eq!(blobs.meta(&hash).unwrap().unwrap().origin, BlobOrigin::Own);
    assert_eq!(
        blobs.counts(),
        BlobCounts { blobs: 1, bytes: data.len() as u64, partial: 0, auto_bytes: 0 }
    );
    // Storing it again changes nothing.
    blobs.put_own(&data).unwrap();
    assert_eq!(blobs.counts().bytes, data.len() as u64);
    // Too large: refused, nothing left behind.
    let big = vec![0u8; 4 * MIB as usize + 1];
    assert!(matches!(blobs.put_own(&big), Err(BlobStoreError::TooLarge { .. })));
    assert_eq!(fs::read_dir(dir.path().join("blobs/tmp")).unwrap().count(), 0);
    // The empty file is a blob too.
    let empty = blobs.put_own(&[]).unwrap();
    assert_eq!(blobs.read_chunk(&empty.hash(), 0).unwrap().unwrap(), Vec::<u8>::new());
}

#[test]
fn fetched_blobs_are_evicted_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let (_, blobs) = open(dir.path(), 3 * MIB);
    let own = blobs.put_own(&bytes(MIB as usize, 1)).unwrap().hash();
    let a = fetch(&blobs, &bytes(MIB as usize, 2));
    let b = fetch(&blobs, &bytes(MIB as usize, 3));
    // Full: the next fetched blob evicts the oldest fetched one, never our own.
    let c = fetch(&blobs, &bytes(MIB as usize, 4));
    assert!(blobs.has(&own).unwrap() && !blobs.has(&a).unwrap());
    assert!(blobs.has(&b).unwrap() && blobs.has(&c).unwrap());
    assert!(!blobs.path(&a).exists());
    assert_eq!(blobs.counts().bytes, 3 * MIB);
    // When only our own blobs are left, a fetch does not fit.
    let (_, small) = open(&dir.path().join("small"), MIB);
    small.put_own(&bytes(MIB as usize, 5)).unwrap();
    let (_, m) = Manifest::build(&bytes(10, 6));
    small.begin_partial(&m).unwrap();
    small.write_chunk(&m, 0, &bytes(10, 6)).unwrap();
    assert!(matches!(small.finish_partial(&m, false), Err(BlobStoreError::Full { .. })));
}

#[test]
fn smaller_limits_apply_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_, blobs) = open(dir.path(), 8 * MIB);
    let own = blobs.put_own(&bytes(MIB as usize, 1)).unwrap().hash();
    let old = fetch(&blobs, &bytes(MIB as usize, 2));
    let new = fetch(&blobs, &bytes(MIB as usize, 3));
    let limits = BlobLimits { max_blob: MIB, quota: 2 * MIB, auto_budget: MIB };
    blobs.set_limits(limits).unwrap();
    assert_eq!(blobs.limits(), limits);
    // The least recently used fetched blob goes; our own stays.
    assert!(blobs.has(&own).unwrap() && blobs.has(&new).unwrap() && !blobs.has(&old).unwrap());
    assert_eq!(blobs.counts().bytes, 2 * MIB);
    // Below what our own blobs take: every fetched one goes, ours stay, no error.
    blobs.set_limits(BlobLimits { quota: MIB / 2, ..limits }).unwrap();
    assert!(blobs.has(&own).unwrap() && !blobs.has(&new).unwrap());
    // The new largest size holds for what comes next.
    let big = bytes(MIB as usize + 1, 4);
    assert!(matches!(blobs.put_own(&big), Err(BlobStoreError::TooLarge { .. })));
}

#[test]
fn downloads_resume_from_the_chunks_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(3 * 256 * 1024 + 10, 7);
    let (hash, manifest) = Manifest::build(&data);
    {
        let (_, blobs) = open(dir.path(), 64 * MIB);
        assert_eq!(blobs.begin_partial(&manifest).unwrap(), [false; 4]);
        blobs.write_chunk(&manifest, 0, &data[..256 * 1024]).unwrap();
        blobs.write_chunk(&manifest, 2, &data[512 * 1024..768 * 1024]).unwrap();
        // A wrong chunk on disk (a crash in the middle of a write) is not counted.
        blobs.write_chunk(&manifest, 3, &[9; 10]).unwrap();
    }
    let (_, blobs) = open(dir.path(), 64 * MIB);
    let resumed = blobs.partial_manifest(&hash).unwrap().unwrap();
    assert_eq!(resumed, manifest);
    assert_eq!(blobs.begin_partial(&resumed).unwrap(), [true, false, true, false]);
    blobs.write_chunk(&resumed, 1, &data[256 * 1024..512 * 1024]).unwrap();
    blobs.write_chunk(&resumed, 3, &data[768 * 1024..]).unwrap();
    blobs.finish_partial(&resumed, false).unwrap();
    assert_eq!(fs::read(blobs.path(&hash)).unwrap(), data);
    assert_eq!(blobs.partial_manifest(&hash).unwrap(), None);
    assert_eq!(blobs.counts().partial, 0);
}

fn post_with(kp: &Keypair, hash: BlobHash) -> kith_protocol::VerifiedRecord {
    let attachment = Attachment {
        hash,
        size: 5,
        mime: MimeType::new("text/plain").unwrap(),
        name: FileName::new("a.txt").unwrap(),
        image: None,
    };
    let kind = RecordKind::Post(Post {
        text: String::new(),
        reply_to: None,
        mentions: vec![],
        expires_at: None,
        attachments: vec![attachment],
    });
    Record { author: kp.id(), seq: 1, prev: None, timestamp: 1, kind }.sign(kp).unwrap()
}

#[test]
fn owners_decide_who_may_fetch_and_what_is_collected() {
    let dir = tempfile::tempdir().unwrap();
    let (store, blobs) = open(dir.path(), 64 * MIB);
    let alice = Keypair::from_secret_bytes(&[1; 32]);
    let bob = Keypair::from_secret_bytes(&[2; 32]).id();
    let carol = Keypair::from_secret_bytes(&[3; 32]).id();

    let public = blobs.put_own(b"hello").unwrap().hash();
    let sealed = blobs.put_own(b"sealed bytes").unwrap().hash();
    let local = blobs.put_own(b"opened bytes").unwrap().hash();
    let stray = fetch(&blobs, b"nobody wants this");
    // Before any record refers to it, nobody may fetch it.
    assert!(!blobs.may_serve(&public, &bob).unwrap());

    let record = post_with(&alice, public);
    store.insert(&record).unwrap();
    assert!(blobs.may_serve(&public, &bob).unwrap());
    let message = [5u8; 16];
    blobs.add_owner(&sealed, BlobOwner::Sealed { peer: bob, message }).unwrap();
    blobs.add_owner(&local, BlobOwner::Local { peer: bob, message }).unwrap();
    assert!(blobs.may_serve(&sealed, &bob).unwrap());
    assert!(!blobs.may_serve(&sealed, &carol).unwrap());
    assert!(!blobs.may_serve(&local, &bob).unwrap());
    assert!(!blobs.may_serve(&stray, &bob).unwrap());

    // Within the grace period nothing goes; after it, only what nobody needs.
    let now = crate::node::now_ms();
    assert_eq!(blobs.collect(now, 3_600_000).unwrap(), 0);
    assert_eq!(blobs.collect(now + 7_200_000, 3_600_000).unwrap(), 1);
    assert!(!blobs.has(&stray).unwrap());
    assert!(blobs.has(&public).unwrap() && blobs.has(&sealed).unwrap());

    // Deleting the post frees its attachment.
    let delete = Record {
        author: alice.id(),
        seq: 2,
        prev: Some(record.id()),
        timestamp: 2,
        kind: RecordKind::Delete { target: record.id() },
    }
    .sign(&alice)
    .unwrap();
    store.insert(&delete).unwrap();
    assert!(!blobs.may_serve(&public, &bob).unwrap());
    assert_eq!(blobs.collect(now + 7_200_000, 3_600_000).unwrap(), 1);
    assert!(!blobs.has(&public).unwrap());
    assert!(!blobs.path(&public).exists());
}

#[test]
fn thumbnails_fetched_on_our_own_stay_within_their_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (_, blobs) = open(dir.path(), 64 * MIB);
    let fetch_auto = |seed: u8| {
        let data = bytes(MIB as usize, seed);
        let (hash, manifest) = Manifest::build(&data);
        blobs.begin_partial(&manifest).unwrap();
        for index in 0..manifest.chunk_count() {
            let start = manifest.chunk_offset(index) as usize;
            let len = manifest.chunk_len(index).unwrap();
            blobs.write_chunk(&manifest, index, &data[start..start + len]).unwrap();
        }
        blobs.finish_partial(&manifest, true).unwrap();
        hash
    };
    let asked = fetch(&blobs, &bytes(MIB as usize, 9));
    let first = fetch_auto(1);
    let second = fetch_auto(2);
    assert_eq!(blobs.counts().auto_bytes, 2 * MIB);
    // The budget (2 MiB) is full: the oldest thumbnail goes, not what was asked for.
    let third = fetch_auto(3);
    assert!(!blobs.has(&first).unwrap());
    assert!(
        blobs.has(&second).unwrap() && blobs.has(&third).unwrap() && blobs.has(&asked).unwrap()
    );
    assert_eq!(blobs.counts().auto_bytes, 2 * MIB);
}
