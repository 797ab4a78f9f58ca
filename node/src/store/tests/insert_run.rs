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
            // The feeds' entries name where each record is, as one by one.
            let hinted = super::hints::assert_hints_name_locations(&many);
            assert_eq!(hinted, super::hints::assert_hints_name_locations(&one));
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

/// Eviction while posts wait in a run: strangers' records (among them earlier records of
/// an author whose posts wait) are evicted by the run's own inserts, and the run leaves
/// the store exactly as the same inserts one by one, every waiting post stored, and the
/// author's log tip right (a duplicate of a waiting post is a duplicate afterwards).
#[test]
fn eviction_while_posts_wait_leaves_what_one_by_one_leaves() {
    use crate::keep::{Keep, Quotas};
    use crate::store::Inserted;

    let friend = Keypair::from_secret_bytes(&[21; 32]);
    let strangers: Vec<Keypair> =
        (30..34u8).map(|i| Keypair::from_secret_bytes(&[i; 32])).collect();
    // The friend was a stranger first: two records kept as a stranger's.
    let mut plan: Vec<(VerifiedRecord, Keep)> = Vec::new();
    let mut prev = None;
    for seq in 1..=2u64 {
        let r = post(&friend, seq, prev, seq, &format!("early {seq}"), None);
        prev = Some(r.id());
        plan.push((r, Keep::Stranger));
    }
    let setup = plan.len();
    // Then followed: posts that wait in a run, between strangers' posts that write the run
    // and evict the oldest strangers' records (the friend's early ones first).
    for seq in 3..=12u64 {
        let r = post(&friend, seq, prev, 10 + seq, &format!("later {seq} #run"), prev);
        prev = Some(r.id());
        plan.push((r, Keep::Followed));
        if seq % 3 == 0 {
            let s = (seq as usize / 3) % strangers.len();
            let r = post(&strangers[s], 1, None, 10 + seq, "a stranger's", None);
            plan.push((r, Keep::Stranger));
        }
    }
    // Two strangers' records at most, ten records in all: the waiting posts evict too.
    let quotas = Quotas { strangers: 2, total: 10, ..Quotas::default() };

    let one_dir = tempfile::tempdir().unwrap();
    let one = open(one_dir.path(), 1024);
    let expected: Vec<Inserted> =
        plan.iter().map(|(r, keep)| one.insert_kept(r, *keep, &quotas).unwrap()).collect();
    assert!(expected.iter().all(|i| *i == Inserted::New), "{expected:?}");
    // The friend's early records were evicted; every later post is stored.
    assert!(!one.has(&plan[0].0.id()).unwrap() && !one.has(&plan[1].0.id()).unwrap());

    let dir = tempfile::tempdir().unwrap();
    {
        let many = open(dir.path(), 1024);
        for (r, keep) in &plan[..setup] {
            many.insert_kept(r, *keep, &quotas).unwrap();
        }
        let mut run = many.insert_run().unwrap();
        let (mut waited, mut evicted_waiting) = (0, 0);
        let got: Vec<Inserted> = plan[setup..]
            .iter()
            .map(|(r, keep)| {
                let strangers = many.stranger_count();
                let inserted = run.insert_kept(r, *keep, &quotas).unwrap();
                waited += usize::from(run.waiting());
                if run.waiting() && many.stranger_count() < strangers {
                    evicted_waiting += 1;
                }
                inserted
            })
            .collect();
        run.write().unwrap();
        drop(run);
        assert_eq!(waited, 10, "the friend's later posts waited in the run");
        assert!(evicted_waiting >= 2, "posts evicted while waiting: {evicted_waiting}");
        assert_eq!(got, expected[setup..]);
        for (r, _) in &plan {
            assert_eq!(many.has(&r.id()).unwrap(), one.has(&r.id()).unwrap(), "{:?}", r.record());
        }
        assert_eq!(many.counts(), one.counts());
        assert_eq!(many.total_count(), one.total_count());
        assert_eq!(many.stranger_count(), one.stranger_count());
        assert_eq!(many.tree_sizes().unwrap(), one.tree_sizes().unwrap());
        assert_eq!(many.latest_seq(&friend.id()).unwrap(), 12);
        assert_eq!(many.latest(&friend.id()).unwrap(), one.latest(&friend.id()).unwrap());
        // Every stored post of the friend is a duplicate now, in a run as one by one.
        let mut run = many.insert_run().unwrap();
        for (r, keep) in &plan[setup..] {
            if one.has(&r.id()).unwrap() {
                assert_eq!(run.insert_kept(r, *keep, &quotas).unwrap(), Inserted::Duplicate);
                assert_eq!(one.insert_kept(r, *keep, &quotas).unwrap(), Inserted::Duplicate);
            }
        }
        drop(run);
        many.flush_blocking().unwrap();
    }
    let again = open(dir.path(), 1024);
    assert_eq!(again.counts(), one.counts());
    assert_eq!(again.latest_seq(&friend.id()).unwrap(), 12);
    for (r, _) in &plan {
        assert_eq!(again.get(&r.id()).unwrap(), one.get(&r.id()).unwrap());
    }
}
