//! Ingest: the one path by which a record from outside (gossip now, sync and import
//! later) enters the store. Pure logic over the store; tests drive it without a network.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    mpsc,
};

use kith_protocol::{RecordKind, Topic, VerifiedRecord};

use crate::{
    net::Verdict,
    store::{Inserted, Store, StoreError},
};

/// What ingest did with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new record, now stored.
    New(Box<VerifiedRecord>),
    /// Already stored; nothing changed.
    Duplicate,
    /// A second record at an author/seq already taken: kept as evidence, author flagged.
    Fork,
    /// Deleted by its author earlier (tombstone kept), past its expiry, or by someone this
    /// node's person blocked: not stored.
    Gone,
    /// Valid, but not something this node keeps (a repost of something that is not a
    /// post): not stored. `forward` says whether gossip still carries it on, because the
    /// owner of the topic it came on needs it.
    Unwanted {
        /// Whether to forward it on its gossip topic.
        forward: bool,
    },
    /// Not acceptable; the reason.
    Invalid(String),
}

impl Outcome {
    /// The gossip verdict: valid records (new or not) may be forwarded, since a record
    /// already known may still be new to the peers of this topic.
    pub fn verdict(&self) -> Verdict {
        match self {
            Self::New(_) | Self::Duplicate | Self::Fork => Verdict::Accept,
            Self::Invalid(_) => Verdict::Reject,
            // Valid but unwanted: neither forwarded nor held against the peer, who may
            // not have seen the delete yet.
            Self::Gone | Self::Unwanted { forward: false } => Verdict::Ignore,
            Self::Unwanted { forward: true } => Verdict::Accept,
        }
    }
}

/// Checks `bytes` (size, encoding, fields, signature, clock, topic) and stores the record
/// if it is new. `topic` is the gossip topic it came on, if any.
///
/// # Errors
/// Only disk errors: bad input is an [`Outcome::Invalid`], never an error.
pub fn ingest(
    store: &Store,
    bytes: &[u8],
    topic: Option<&str>,
    now_ms: u64,
) -> Result<Outcome, StoreError> {
    match check(bytes, topic, now_ms) {
        Ok(record) => admit(store, record, now_ms),
        Err(reason) => Ok(Outcome::Invalid(reason)),
    }
}

/// The checks that need no store: size, canonical encoding, fields, strict signature,
/// clock and topic. The costly part of ingest, safe to run on many threads at once.
///
/// # Errors
/// Why the record is invalid, as one line.
pub fn check(bytes: &[u8], topic: Option<&str>, now_ms: u64) -> Result<VerifiedRecord, String> {
    let record = VerifiedRecord::from_bytes(bytes).map_err(|e| e.to_string())?;
    record.record().check_time(now_ms).map_err(|e| e.to_string())?;
    if let Some(name) = topic {
        match Topic::parse(name) {
            Some(Topic::Tag(tag)) => {
                if !record.record().tags().contains(&tag) {
                    return Err(format!("record does not carry #{tag}"));
                }
            }
            Some(Topic::Author(_)) => {}
            None => return Err(format!("not a kith topic: {name}")),
        }
    }
    Ok(record)
}

/// Stores a checked record unless it is unwanted (blocked author, expired, deleted) or
/// already known.
///
/// # Errors
/// Disk errors.
pub fn admit(store: &Store, record: VerifiedRecord, now_ms: u64) -> Result<Outcome, StoreError> {
    if store.moderation(&record.record().author)?.blocked {
        return Ok(Outcome::Gone);
    }
    match &record.record().kind {
        RecordKind::Post(post) if post.expires_at.is_some_and(|at| at <= now_ms) => {
            return Ok(Outcome::Gone);
        }
        // A repost shares a post: one of anything else (a chain of reposts) is refused
        // when its target is known. Feeds resolve a repost one level only either way.
        RecordKind::Repost { target }
            if store
                .get(target)?
                .is_some_and(|t| !matches!(t.record.kind, RecordKind::Post(_))) =>
        {
            return Ok(Outcome::Unwanted { forward: false });
        }
        _ => {}
    }
    Ok(match store.insert(&record)? {
        Inserted::New => Outcome::New(Box::new(record)),
        Inserted::Duplicate => Outcome::Duplicate,
        Inserted::Fork { .. } => Outcome::Fork,
        Inserted::Deleted => Outcome::Gone,
    })
}

/// Records a batch worker checks at a time: small enough that storing starts soon after
/// the batch does, large enough that the hand-over costs nothing next to 8 signatures.
const CHECK_CHUNK: usize = 8;

/// Most threads a batch uses, whatever the caller asks.
pub const MAX_BATCH_THREADS: usize = 16;

/// Ingests a batch on `threads` threads: the checks (the costly part) run on all of them
/// at once, and this thread stores the checked records in batch order as they become
/// ready, checking records itself while it waits. Same outcomes, in the same order, as
/// calling [`ingest`] on each record in turn.
///
/// # Errors
/// Per record, disk errors only.
pub fn ingest_batch(
    store: &Store,
    batch: &[Vec<u8>],
    topic: Option<&str>,
    now_ms: u64,
    threads: usize,
) -> Vec<Result<Outcome, StoreError>> {
    ingest_batch_with(store, batch, now_ms, threads, |bytes| check(bytes, topic, now_ms))
}

/// Like [`ingest_batch`], with the checks given by the caller: `check` must call
/// [`check`] (it may refuse a record before that, e.g. one a sync answer was not asked
/// for). `check` runs on several threads at once.
///
/// # Errors
/// Per record, disk errors only.
pub fn ingest_batch_with<F>(
    store: &Store,
    batch: &[Vec<u8>],
    now_ms: u64,
    threads: usize,
    check: F,
) -> Vec<Result<Outcome, StoreError>>
where
    F: Fn(&[u8]) -> Result<VerifiedRecord, String> + Sync,
{
    let chunks: Vec<&[Vec<u8>]> = batch.chunks(CHECK_CHUNK).collect();
    let helpers = threads.clamp(1, MAX_BATCH_THREADS).min(chunks.len()).saturating_sub(1);
    let next = AtomicUsize::new(0);
    let check_chunk = |i: usize| -> Option<Vec<Result<VerifiedRecord, String>>> {
        chunks.get(i).map(|part| part.iter().map(|b| check(b)).collect())
    };
    let mut out = Vec::with_capacity(batch.len());
    std::thread::scope(|scope| {
        // At most one message per chunk: the channel never blocks a helper.
        let (tx, rx) = mpsc::sync_channel(chunks.len());
        let workers: Vec<_> = (0..helpers)
            .map(|_| {
                let tx = tx.clone();
                let (next, check_chunk) = (&next, &check_chunk);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(checked) = check_chunk(i) else { break };
                    if tx.send((i, checked)).is_err() {
                        break;
                    }
                })
            })
            .collect();
        drop(tx);
        // Chunks that arrived ahead of their turn.
        let mut ready: Vec<Option<Vec<Result<VerifiedRecord, String>>>> =
            (0..chunks.len()).map(|_| None).collect();
        for turn in 0..chunks.len() {
            let checked = loop {
                if let Some(done) = ready.get_mut(turn).and_then(Option::take) {
                    break Some(done);
                }
                // Not ready: collect what the helpers finished, else check a chunk here,
                // else wait for a helper.
                if let Ok((i, done)) = rx.try_recv() {
                    put(&mut ready, i, done);
                    continue;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if let Some(done) = check_chunk(i) {
                    put(&mut ready, i, done);
                    continue;
                }
                match rx.recv() {
                    Ok((i, done)) => put(&mut ready, i, done),
                    // Every helper is gone and the chunk never came: a helper panicked.
                    Err(_) => break None,
                }
            };
            let len = chunks.get(turn).map_or(0, |c| c.len());
            match checked {
                Some(checked) => out.extend(checked.into_iter().map(|c| match c {
                    Ok(record) => admit(store, record, now_ms),
                    Err(reason) => Ok(Outcome::Invalid(reason)),
                })),
                None => out.extend((0..len).map(|_| Ok(Outcome::Invalid("check failed".into())))),
            }
        }
        for worker in workers {
            // Joined here, so a helper's panic does not propagate; its chunks were
            // reported as failed above.
            let _ = worker.join();
        }
    });
    out
}

fn put<T>(ready: &mut [Option<T>], i: usize, done: T) {
    if let Some(slot) = ready.get_mut(i) {
        *slot = Some(done);
    }
}

#[cfg(test)]
mod tests {
    use kith_protocol::{limits::MAX_FUTURE_SKEW_MS, Keypair, Tag, Topic};

    use super::*;

    fn post(kp: &Keypair, ts: u64, text: &str) -> VerifiedRecord {
        crate::store::tests::post(kp, 1, None, ts, text)
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
        let out = ingest_batch(&store, &batch, None, 20, 2);
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
        let expected: Vec<Outcome> =
            batch.iter().map(|b| ingest(&one, b, None, 1_000).unwrap()).collect();
        assert!(expected.contains(&Outcome::Fork) && expected.contains(&Outcome::Duplicate));
        for threads in [1, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let many = Store::open(dir.path()).unwrap();
            let got: Vec<Outcome> = ingest_batch(&many, &batch, None, 1_000, threads)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(got, expected, "{threads} threads");
            assert_eq!(one.counts(), many.counts());
        }
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
        let out = ingest_batch_with(&store, &batch, 1_000, 2, |b| {
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
        let first = repost(2, &original);
        let second = repost(3, &first);
        assert!(matches!(ingest(&store, original.bytes(), None, now).unwrap(), Outcome::New(_)));
        assert!(matches!(ingest(&store, first.bytes(), None, now).unwrap(), Outcome::New(_)));
        let out = ingest(&store, second.bytes(), None, now).unwrap();
        assert_eq!(out, Outcome::Unwanted { forward: false });
        assert_eq!(out.verdict(), Verdict::Ignore);
        assert!(!store.has(&second.id()).unwrap());
    }

    #[test]
    fn decisions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kp = Keypair::from_secret_bytes(&[1; 32]);
        let now = 1_000_000;
        let rec = post(&kp, now, "hi #rust");
        let rust = Topic::Tag(Tag::parse("rust").unwrap()).to_string();
        let go = Topic::Tag(Tag::parse("go").unwrap()).to_string();
        let author = Topic::Author(kp.id()).to_string();

        assert!(matches!(
            ingest(&store, rec.bytes(), Some(&go), now).unwrap(),
            Outcome::Invalid(_)
        ));
        assert!(!store.has(&rec.id()).unwrap());
        assert_eq!(
            ingest(&store, rec.bytes(), Some(&rust), now).unwrap(),
            Outcome::New(Box::new(rec.clone()))
        );
        assert_eq!(ingest(&store, rec.bytes(), Some(&author), now).unwrap(), Outcome::Duplicate);
        assert_eq!(Outcome::Duplicate.verdict(), Verdict::Accept);

        let mut bad = rec.bytes().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let out = ingest(&store, &bad, Some(&author), now).unwrap();
        assert!(matches!(out, Outcome::Invalid(_)));
        assert_eq!(out.verdict(), Verdict::Reject);

        let future = post(&kp, now + MAX_FUTURE_SKEW_MS + 1, "later");
        assert!(matches!(ingest(&store, future.bytes(), None, now).unwrap(), Outcome::Invalid(_)));
        assert!(matches!(ingest(&store, b"junk", None, now).unwrap(), Outcome::Invalid(_)));
        assert!(matches!(
            ingest(&store, rec.bytes(), Some("not/a/topic"), now).unwrap(),
            Outcome::Invalid(_)
        ));

        let fork = post(&kp, now, "other #rust");
        assert_eq!(ingest(&store, fork.bytes(), None, now).unwrap(), Outcome::Fork);
        assert!(store.is_flagged(&kp.id()).unwrap());
    }
}
