//! Ingest: outcomes, batches, and what reaches the keep decision.

use kith_protocol::{limits::MAX_FUTURE_SKEW_MS, Keypair, Post, RecordId, Tag, Topic};

use crate::keep::Came;

use super::*;

fn post(kp: &Keypair, ts: u64, text: &str) -> VerifiedRecord {
    crate::store::tests::post(kp, 1, None, ts, text)
}

/// The admission of a node whose person follows `authors` (their follows stored).
pub(crate) fn following(store: &Store, authors: &[&Keypair]) -> Admission {
    let me = Keypair::from_secret_bytes(&[0xee; 32]);
    let mut prev = store.latest(&me.id()).unwrap().map(|(_, id)| id);
    let mut seq = store.latest(&me.id()).unwrap().map_or(0, |(s, _)| s);
    for author in authors {
        seq += 1;
        let kind = RecordKind::Follow { target: author.id() };
        let follow = crate::store::tests::signed(&me, seq, prev, 1, kind);
        store.insert(&follow).unwrap();
        prev = Some(follow.id());
    }
    Admission::new(me.id())
}

#[test]
fn batch_matches_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kps: Vec<Keypair> = (1..=5u8).map(|i| Keypair::from_secret_bytes(&[i; 32])).collect();
    let mut batch: Vec<Vec<u8>> =
        kps.iter().map(|k| post(k, 10, "b #x").bytes().to_vec()).collect();
    batch.push(b"junk".to_vec());
    batch.push(batch[0].clone());
    let admission = following(&store, &kps.iter().collect::<Vec<_>>());
    let out = ingest_batch(&store, &admission, &batch, None, 20, 2);
    assert_eq!(out.len(), 7);
    assert!(out[..5].iter().all(|o| matches!(o, Ok(Outcome::New(_)))));
    assert!(matches!(out[5], Ok(Outcome::Invalid(_))));
    assert!(matches!(out[6], Ok(Outcome::Duplicate)));
    assert_eq!(store.counts().posts, 5);
}

#[test]
fn batch_over_many_chunks_matches_one_by_one() {
    let kps: Vec<Keypair> = (1..=7u8).map(|i| Keypair::from_secret_bytes(&[i; 32])).collect();
    let mut batch = Vec::new();
    let mut prev = vec![None; kps.len()];
    for i in 0..60u64 {
        let a = (i % 7) as usize;
        let rec = crate::store::tests::post(&kps[a], 1 + i / 7, prev[a], 10 + i, "p #x");
        prev[a] = Some(rec.id());
        batch.push(rec.bytes().to_vec());
        if i % 9 == 0 {
            batch.push(b"junk".to_vec());
        }
        if i % 11 == 0 {
            batch.push(batch[batch.len() / 2].clone());
        }
    }
    // A fork: another record at a seq already taken.
    batch.push(crate::store::tests::post(&kps[0], 1, None, 99, "other").bytes().to_vec());
    assert!(batch.len() > 4 * CHECK_CHUNK);

    let dir = tempfile::tempdir().unwrap();
    let one = Store::open(dir.path()).unwrap();
    let authors: Vec<&Keypair> = kps.iter().collect();
    let admission = following(&one, &authors);
    let expected: Vec<Outcome> =
        batch.iter().map(|b| ingest(&one, &admission, b, None, 1_000).unwrap()).collect();
    assert!(expected.contains(&Outcome::Fork) && expected.contains(&Outcome::Duplicate));
    for threads in [1, 2, 3] {
        assert_batch_gives(&batch, &authors, threads, &expected, &one);
    }
}

/// Asserts that `batch`, ingested in batches on `threads` threads into a fresh store of a
/// node following `authors`, gives `expected` (what ingest one by one gave into `one`).
fn assert_batch_gives(
    batch: &[Vec<u8>],
    authors: &[&Keypair],
    threads: usize,
    expected: &[Outcome],
    one: &Store,
) {
    let dir = tempfile::tempdir().unwrap();
    let many = Store::open(dir.path()).unwrap();
    let admission = following(&many, authors);
    let got: Vec<Outcome> = ingest_batch(&many, &admission, batch, None, 1_000, threads)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, expected, "{threads} threads");
    assert_eq!(one.counts(), many.counts());
}

#[test]
fn batch_uses_the_callers_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kp = Keypair::from_secret_bytes(&[1; 32]);
    let mut prev = None;
    let batch: Vec<Vec<u8>> = (1..=40u64)
        .map(|i| {
            let rec = crate::store::tests::post(&kp, i, prev, i, "p");
            prev = Some(rec.id());
            rec.bytes().to_vec()
        })
        .collect();
    let refused = batch[20].clone();
    let admission = Admission::new(kp.id());
    let out = ingest_batch_with(&store, &admission, Came::Direct, &batch, 1_000, 2, |b| {
        if b == refused.as_slice() {
            Err("not asked for".into())
        } else {
            check(b, None, 1_000)
        }
    });
    assert_eq!(out.len(), 40);
    assert!(matches!(&out[20], Ok(Outcome::Invalid(r)) if r == "not asked for"));
    assert_eq!(out.iter().filter(|o| matches!(o, Ok(Outcome::New(_)))).count(), 39);
}

#[test]
fn a_repost_of_a_repost_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kp = Keypair::from_secret_bytes(&[1; 32]);
    let now = 1_000_000;
    let original = post(&kp, now, "shared");
    let repost = |seq, prev: &VerifiedRecord| {
        let kind = kith_protocol::RecordKind::Repost { target: prev.id() };
        crate::store::tests::signed(&kp, seq, Some(prev.id()), now, kind)
    };
    let admission = Admission::new(kp.id());
    let first = repost(2, &original);
    let second = repost(3, &first);
    assert!(matches!(
        ingest(&store, &admission, original.bytes(), None, now).unwrap(),
        Outcome::New(_)
    ));
    assert!(matches!(
        ingest(&store, &admission, first.bytes(), None, now).unwrap(),
        Outcome::New(_)
    ));
    let out = ingest(&store, &admission, second.bytes(), None, now).unwrap();
    assert_eq!(out, Outcome::Unwanted { forward: false });
    assert_eq!(out.verdict(), Verdict::Ignore);
    assert!(!store.has(&second.id()).unwrap());
}

#[test]
fn decisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kp = Keypair::from_secret_bytes(&[1; 32]);
    let admission = Admission::new(kp.id());
    let now = 1_000_000;
    let rec = post(&kp, now, "hi #rust");
    let rust = Topic::Tag(Tag::parse("rust").unwrap()).to_string();
    let go = Topic::Tag(Tag::parse("go").unwrap()).to_string();
    let author = Topic::Author(kp.id()).to_string();

    assert!(matches!(
        ingest(&store, &admission, rec.bytes(), Some(&go), now).unwrap(),
        Outcome::Invalid(_)
    ));
    assert!(!store.has(&rec.id()).unwrap());
    assert_eq!(
        ingest(&store, &admission, rec.bytes(), Some(&rust), now).unwrap(),
        Outcome::New(Box::new(rec.clone()))
    );
    assert_eq!(
        ingest(&store, &admission, rec.bytes(), Some(&author), now).unwrap(),
        Outcome::Duplicate
    );
    assert_eq!(Outcome::Duplicate.verdict(), Verdict::Accept);

    let mut bad = rec.bytes().to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let out = ingest(&store, &admission, &bad, Some(&author), now).unwrap();
    assert!(matches!(out, Outcome::Invalid(_)));
    assert_eq!(out.verdict(), Verdict::Reject);

    let future = post(&kp, now + MAX_FUTURE_SKEW_MS + 1, "later");
    assert!(matches!(
        ingest(&store, &admission, future.bytes(), None, now).unwrap(),
        Outcome::Invalid(_)
    ));
    assert!(matches!(ingest(&store, &admission, b"junk", None, now).unwrap(), Outcome::Invalid(_)));
    assert!(matches!(
        ingest(&store, &admission, rec.bytes(), Some("not/a/topic"), now).unwrap(),
        Outcome::Invalid(_)
    ));

    let fork = post(&kp, now, "other #rust");
    assert_eq!(ingest(&store, &admission, fork.bytes(), None, now).unwrap(), Outcome::Fork);
    assert!(store.is_flagged(&kp.id()).unwrap());
}

/// Issue #13 item 12. A record must fit its author's log as stored: `prev` names the
/// stored record before it, and it is not dated before that record. Before the fix both
/// were stored (a second history hung off any seq, backdated under older posts).
#[test]
fn a_record_that_does_not_fit_the_stored_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kp = Keypair::from_secret_bytes(&[0x31; 32]);
    let admission = following(&store, &[&kp]);
    let take = |r: &VerifiedRecord| ingest(&store, &admission, r.bytes(), None, 1_000).unwrap();
    let first = crate::store::tests::post(&kp, 1, None, 500, "one");
    assert!(matches!(take(&first), Outcome::New(_)));
    let elsewhere = RecordId::from_bytes([9; 32]);
    let wrong_prev = crate::store::tests::post(&kp, 2, Some(elsewhere), 600, "two");
    assert!(matches!(take(&wrong_prev), Outcome::Invalid(r) if r.contains("prev")));
    let backdated = crate::store::tests::post(&kp, 2, Some(first.id()), 499, "two");
    assert!(matches!(take(&backdated), Outcome::Invalid(r) if r.contains("before")));
    let same_time = crate::store::tests::post(&kp, 2, Some(first.id()), 500, "two");
    assert!(matches!(take(&same_time), Outcome::New(_)));
    // Without the record before it stored, a record is taken (a gap sync fills later).
    let after_gap = crate::store::tests::post(&kp, 5, Some(elsewhere), 10, "five");
    assert!(matches!(take(&after_gap), Outcome::New(_)));
    assert!(!store.has(&wrong_prev.id()).unwrap() && !store.has(&backdated.id()).unwrap());
}

/// A batch takes the records that follow one it stored just before without reading the
/// store, and refuses the same records as ingest one by one: a wrong `prev`, a record
/// dated before the one before it (stored in the same batch or earlier), a record after
/// a delete, and whatever comes after a record that was refused.
#[test]
fn a_batch_checks_the_log_as_one_by_one_does() {
    let kp = Keypair::from_secret_bytes(&[0x32; 32]);
    let other = Keypair::from_secret_bytes(&[0x33; 32]);
    let signed = crate::store::tests::signed;
    let p = |seq, prev: Option<&VerifiedRecord>, ts| {
        crate::store::tests::post(&kp, seq, prev.map(VerifiedRecord::id), ts, "p")
    };
    let elsewhere = RecordId::from_bytes([9; 32]);
    let r1 = p(1, None, 100);
    let r2 = p(2, Some(&r1), 200);
    let delete = signed(&kp, 3, Some(r2.id()), 300, RecordKind::Delete { target: r2.id() });
    let r4 = p(4, Some(&delete), 400);
    let stranger = crate::store::tests::post(&other, 1, None, 50, "s");
    let records = [
        r1.clone(),
        p(2, Some(&r1), 99),
        crate::store::tests::post(&kp, 2, Some(elsewhere), 200, "x"),
        r2.clone(),
        stranger,
        delete.clone(),
        p(4, Some(&delete), 299),
        r4.clone(),
        p(5, Some(&r4), 400),
        p(6, Some(&r2), 500),
    ];
    let batch: Vec<Vec<u8>> = records.iter().map(|r| r.bytes().to_vec()).collect();
    let dir = tempfile::tempdir().unwrap();
    let one = Store::open(dir.path()).unwrap();
    let admission = following(&one, &[&kp]);
    let expected: Vec<Outcome> =
        batch.iter().map(|b| ingest(&one, &admission, b, None, 1_000).unwrap()).collect();
    let invalid = |i: usize| matches!(&expected[i], Outcome::Invalid(_));
    assert!(invalid(1) && invalid(2) && invalid(6), "{expected:?}");
    assert!(matches!(expected[8], Outcome::New(_)) && invalid(9), "{expected:?}");
    for threads in [1, 2] {
        assert_batch_gives(&batch, &[&kp], threads, &expected, &one);
    }
}

/// A record that follows the one its batch just stored may be stored already (it came
/// before the records it follows, by gossip): the batch finds it, as one by one does.
#[test]
fn a_batch_finds_a_record_stored_before_the_ones_it_follows() {
    let kp = Keypair::from_secret_bytes(&[0x34; 32]);
    let p = |seq, prev: Option<&VerifiedRecord>, ts| {
        crate::store::tests::post(&kp, seq, prev.map(VerifiedRecord::id), ts, "p")
    };
    let r1 = p(1, None, 100);
    let r2 = p(2, Some(&r1), 200);
    let r3 = p(3, Some(&r2), 300);
    let r4 = p(4, Some(&r3), 400);
    let batch: Vec<Vec<u8>> = [&r1, &r2, &r3, &r4].iter().map(|r| r.bytes().to_vec()).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let admission = following(&store, &[&kp]);
    let early = ingest(&store, &admission, r3.bytes(), None, 1_000).unwrap();
    assert!(matches!(early, Outcome::New(_)), "{early:?}");
    let got: Vec<Outcome> = ingest_batch(&store, &admission, &batch, None, 1_000, 1)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        matches!(got[..], [Outcome::New(_), Outcome::New(_), Outcome::Duplicate, Outcome::New(_)]),
        "{got:?}"
    );
    assert_eq!(store.contiguous_seq(&kp.id()).unwrap(), 4);
}

/// Issue #13 item 12. A post may mention only people its text `@`-mentions: a hidden
/// mention still notified its target and made their node keep the post.
#[test]
fn hidden_mentions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kp = Keypair::from_secret_bytes(&[0x32; 32]);
    let them = Keypair::from_secret_bytes(&[0x33; 32]).id();
    let admission = following(&store, &[&kp]);
    let with = |seq: u64, prev: Option<RecordId>, text: String| {
        let post = Post {
            text,
            reply_to: None,
            mentions: vec![them],
            expires_at: None,
            attachments: vec![],
        };
        crate::store::tests::signed(&kp, seq, prev, 100, RecordKind::Post(post))
    };
    let hidden = with(1, None, "nothing to see".into());
    let out = ingest(&store, &admission, hidden.bytes(), None, 1_000).unwrap();
    assert!(matches!(out, Outcome::Invalid(r) if r.contains("mentioned")));
    let shown = with(1, None, format!("hello @{them}"));
    let out = ingest(&store, &admission, shown.bytes(), None, 1_000).unwrap();
    assert!(matches!(out, Outcome::New(_)));
}

/// A batch keeps what it read of whom the person follows only until a record of the
/// person's follows or unfollows someone.
#[test]
fn a_follow_in_a_batch_counts_for_the_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let admission = following(&store, &[]);
    let me = Keypair::from_secret_bytes(&[0xee; 32]);
    let them = Keypair::from_secret_bytes(&[0x35; 32]);
    let follows_me = RecordKind::Follow { target: me.id() };
    let first = crate::store::tests::signed(&them, 1, None, 100, follows_me);
    let mine = RecordKind::Follow { target: them.id() };
    let follow = crate::store::tests::signed(&me, 1, None, 150, mine);
    let post = crate::store::tests::post(&them, 2, Some(first.id()), 200, "now followed");
    let batch: Vec<Vec<u8>> = [&first, &follow, &post].iter().map(|r| r.bytes().to_vec()).collect();
    let got: Vec<Outcome> = ingest_batch(&store, &admission, &batch, None, 1_000, 1)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(matches!(got[..], [Outcome::New(_), Outcome::New(_), Outcome::New(_)]), "{got:?}");
    assert!(store.is_following(&me.id(), &them.id()).unwrap());
}

/// A run of batches, each flushed: the same outcomes as one by one, each batch reported
/// in order after its flush, empty batches too, and nothing stored while a flush runs.
#[test]
fn batches_with_flushes_match_one_by_one_and_store_nothing_during_a_flush() {
    let kps: Vec<Keypair> = (1..=5u8).map(|i| Keypair::from_secret_bytes(&[i; 32])).collect();
    let mut records = Vec::new();
    let mut prev = vec![None; kps.len()];
    for i in 0..90u64 {
        let a = (i % 5) as usize;
        let rec = crate::store::tests::post(&kps[a], 1 + i / 5, prev[a], 10 + i, "p #x");
        prev[a] = Some(rec.id());
        records.push(rec.bytes().to_vec());
        if i % 13 == 0 {
            records.push(b"junk".to_vec());
            records.push(records[records.len() / 3].clone());
        }
    }
    let authors: Vec<&Keypair> = kps.iter().collect();
    let dir = tempfile::tempdir().unwrap();
    let one = Store::open(dir.path()).unwrap();
    let admission = following(&one, &authors);
    let expected: Vec<Outcome> =
        records.iter().map(|b| ingest(&one, &admission, b, None, 1_000).unwrap()).collect();
    // Batches of several chunks, of one record, and empty ones.
    let (a, rest) = records.split_at(3 * CHECK_CHUNK + 5);
    let (b, c) = rest.split_at(1);
    let batches: Vec<&[Vec<u8>]> = vec![a, &[], b, c, &[]];
    for threads in [1, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let many = Store::open(dir.path()).unwrap();
        let admission = following(&many, &authors);
        let flushes = std::sync::Mutex::new(Vec::new());
        let flush = || {
            let before = many.counts().records;
            many.flush_blocking()?;
            flushes.lock().unwrap().push((before, many.counts().records));
            Ok(())
        };
        let run = BatchRun {
            store: &many,
            admission: &admission,
            came: Came::Direct,
            now_ms: 1_000,
            threads,
            flush: Some(&flush),
        };
        let (mut got, mut order, mut stored) = (Vec::new(), Vec::new(), Vec::new());
        let check = |bytes: &[u8]| check(bytes, None, 1_000);
        ingest_batches_with(&run, &batches, check, |i, outcomes, flushed| {
            flushed.unwrap();
            order.push(i);
            stored.push(many.counts().records);
            got.extend(outcomes.into_iter().map(Result::unwrap));
        });
        assert_eq!(got, expected, "{threads} threads");
        assert_eq!(order, [0, 1, 2, 3, 4], "{threads} threads");
        let flushes = flushes.into_inner().unwrap();
        // One flush per non-empty batch, nothing stored while it ran, and each batch
        // reported with the store as its flush left it.
        assert_eq!(flushes.len(), 3, "{threads} threads");
        assert!(flushes.iter().all(|(before, after)| before == after), "{flushes:?}");
        let after: Vec<u64> = flushes.iter().map(|f| f.1).collect();
        assert_eq!([stored[0], stored[2], stored[3]], after[..], "{threads} threads");
        assert_eq!(one.counts(), many.counts());
    }
}
