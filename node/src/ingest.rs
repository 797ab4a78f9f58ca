//! Ingest: the one path by which a record from outside (gossip now, sync and import
//! later) enters the store. Pure logic over the store; tests drive it without a network.

use kith_protocol::{Topic, VerifiedRecord};

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
            Self::Gone => Verdict::Ignore,
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
    if let kith_protocol::RecordKind::Post(post) = &record.record().kind {
        if post.expires_at.is_some_and(|at| at <= now_ms) {
            return Ok(Outcome::Gone);
        }
    }
    Ok(match store.insert(&record)? {
        Inserted::New => Outcome::New(Box::new(record)),
        Inserted::Duplicate => Outcome::Duplicate,
        Inserted::Fork { .. } => Outcome::Fork,
        Inserted::Deleted => Outcome::Gone,
    })
}

/// Ingests a batch: the checks run on `threads` threads at once, then the records are
/// stored in order by this thread. Same outcomes as calling [`ingest`] on each.
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
    let threads = threads.clamp(1, 16);
    let chunk = batch.len().div_ceil(threads).max(1);
    let checked: Vec<Result<VerifiedRecord, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = batch
            .chunks(chunk)
            .map(|part| {
                scope
                    .spawn(move || part.iter().map(|b| check(b, topic, now_ms)).collect::<Vec<_>>())
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|_| vec![Err("check panicked".into())]))
            .collect()
    });
    checked
        .into_iter()
        .map(|c| match c {
            Ok(record) => admit(store, record, now_ms),
            Err(reason) => Ok(Outcome::Invalid(reason)),
        })
        .collect()
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
