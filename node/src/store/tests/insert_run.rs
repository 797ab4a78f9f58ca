//! Posts stored in runs (`grouped.rs`, ingest's batch path): the same store as inserts one
//! by one, the heap's live bytes counted right, and everything read back after reopening.

use kith_protocol::{Keypair, Post, RecordId, RecordKind, VerifiedRecord};

use super::super::{heap::TEST_SEGMENT_BYTES, Store};
use super::signed;
use crate::ingest::{self, Admission, Outcome};

/// Opens the store in `dir` with heap segments of `segment_bytes`.
fn open(dir: &std::path::Path, segment_bytes: u64) -> Store {
    TEST_SEGMENT_BYTES.with(|s| s.set(Some(segment_bytes)));
    let store = Store::open(dir).unwrap();
    TEST_SEGMENT_BYTES.with(|s| s.set(None));
    store
}

fn post(
    kp: &Keypair,
    seq: u64,
    prev: Option<RecordId>,
    ts: u64,
    text: &str,
    reply: Option<RecordId>,
) -> VerifiedRecord {
    let kind = RecordKind::Post(Post {
        text: text.to_owned(),
        reply_to: reply,
        mentions: vec![],
        expires_at: None,
        attachments: vec![],
    });
    signed(kp, seq, prev, ts, kind)
}

/// A node following `authors` (their follows stored in `store`).
fn following(store: &Store, authors: &[Keypair]) -> Admission {
    let me = Keypair::from_secret_bytes(&[0xee; 32]);
    let mut prev = None;
    for (i, author) in authors.iter().enumerate() {
        let follow = signed(&me, i as u64 + 1, prev, 1, RecordKind::Follow { target: author.id() });
        store.insert(&follow).unwrap();
        prev = Some(follow.id());
    }
    Admission::new(me.id())
}

/// Four authors' chains of posts (tags, replies to posts earlier in the batch and to
/// ones waiting with them), with duplicates, a fork, deletes of posts of the same batch,
/// reactions and a follow among them, and junk.
fn records() -> Vec<Vec<u8>> {
    let kps: Vec<Keypair> = (1..=4u8).map(|i| Keypair::from_secret_bytes(&[i; 32])).collect();
    let (mut prev, mut seq) = (vec![None; 4], vec![0u64; 4]);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut posts: Vec<RecordId> = Vec::new();
    let mut own: Vec<Option<RecordId>> = vec![None; 4];
    for i in 0..120u64 {
        let a = (i % 4) as usize;
        seq[a] += 1;
        let rec = match i % 17 {
            // The author's own last post, perhaps still waiting in the run.
            5 if own[a].is_some() => {
                let target = own[a].take().unwrap_or(posts[0]);
                signed(&kps[a], seq[a], prev[a], 10 + i, RecordKind::Delete { target })
            }
            9 if !posts.is_empty() => {
                let target = posts[posts.len() / 2];
                let kind = RecordKind::Reaction { target, emoji: "+".into() };
                signed(&kps[a], seq[a], prev[a], 10 + i, kind)
            }
            13 => {
                let target = kps[(a + 1) % 4].id();
                signed(&kps[a], seq[a], prev[a], 10 + i, RecordKind::Follow { target })
            }
            _ => {
                let reply = (i % 3 == 0).then(|| posts.last().copied()).flatten();
                let text =
                    if i % 2 == 0 { format!("p{i} #run #x{}", i % 5) } else { format!("p{i}") };
                post(&kps[a], seq[a], prev[a], 10 + i, &text, reply)
            }
        };
        prev[a] = Some(rec.id());
        if matches!(rec.record().kind, RecordKind::Post(_)) {
            posts.push(rec.id());
            own[a] = Some(rec.id());
        }
        out.push(rec.bytes().to_vec());
        if i % 19 == 0 {
            out.push(out[out.len() / 2].clone());
            out.push(b"junk".to_vec());
        }
    }
    // A fork: another record at a seq already taken.
    out.push(post(&kps[2], 1, None, 500, "fork", None).bytes().to_vec());
    out
}

#[test]
fn runs_store_what_inserts_one_by_one_store() {
    let kps: Vec<Keypair> = (1..=4u8).map(|i| Keypair::from_secret_bytes(&[i; 32])).collect();
    let batch = records();
    let dir = tempfile::tempdir().unwrap();
    let one = open(dir.path(), 1024);
    let admission = following(&one, &kps);
    let expected: Vec<Outcome> =
        batch.iter().map(|b| ingest::ingest(&one, &admission, b, None, 1_000).unwrap()).collect();
    assert!(expected.contains(&Outcome::Duplicate) && expected.contains(&Outcome::Fork));
    // Some deletes erased a post of the same batch.
    let new = expected.iter().filter(|o| matches!(o, Outcome::New(_))).count() as u64;
    assert!(one.counts().records < new + 4, "{} of {new}", one.counts().records);
    for threads in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let stored: Vec<RecordId> = {
            // Small heap segments: a run's frames fall in several.
            let many = open(dir.path(), 1024);
            let admission = following(&many, &kps);
            let got: Vec<Outcome> =
                ingest::ingest_batch(&many, &admission, &batch, None, 1_000, threads)
                    .into_iter()
                    .map(Result::unwrap)
                    .collect();
            assert_eq!(got, expected, "{threads} threads");
            assert_eq!(many.counts(), one.counts());
            // Every tree as one by one left it, the heap's live records and bytes too.
            assert_eq!(many.tree_sizes().unwrap(), one.tree_sizes().unwrap());
            assert_eq!(many.heap_file_bytes(), one.heap_file_bytes());
            let (_, live) = many.records.heap_bytes().unwrap();
            let counted = many.tree_sizes().unwrap().into_iter().find(|t| t.0 == "heap live");
            assert_eq!(live, counted.map(|t| t.2));
            // Records stored in runs count as stored, as one by one (the heap's
            // compaction takes a store that stores few as at rest).
            assert_eq!(many.records.puts(), one.records.puts());
            many.flush_blocking().unwrap();
            got.iter()
                .filter_map(|o| match o {
                    Outcome::New(r) if one.has(&r.id()).unwrap() => Some(r.id()),
                    _ => None,
                })
                .collect()
        };
        let again = open(dir.path(), 1024);
        for id in &stored {
            assert_eq!(again.get(id).unwrap(), one.get(id).unwrap());
        }
        assert_eq!(again.counts(), one.counts());
    }
}
