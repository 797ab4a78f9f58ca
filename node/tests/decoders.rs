//! Every decoder of outside input, under proptest: arbitrary bytes never panic and are
//! refused with an error; valid encodings with bytes flipped, cut, added or spliced are
//! never accepted as a signed record or an opened message.
//!
//! The cargo-fuzz target bodies (`fuzz/src/lib.rs`, included below) run here too, on stable
//! Rust: through the properties, and in [`fuzz_bodies_for_a_bounded_time`], a small
//! mutation fuzzer that runs each body for `KITH_FUZZ_SECS` seconds (default 1;
//! `KITH_FUZZ_SEED` replays a run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unreachable_pub, dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod fuzz;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kith_node::{
    api::Request,
    ingest::{ingest, Admission, Outcome},
    store::Store,
};
use kith_protocol::{
    dm::{DmReply, DmRequest, Sealed},
    olm::envelope::{Dm2Reply, Dm2Request, Envelope},
    sync::{SyncRequest, SyncResponse},
    Keypair, Post, Record, RecordKind, Topic, VerifiedRecord,
};
use proptest::{collection::vec, prelude::*};

/// One change to a valid encoding.
#[derive(Clone, Debug)]
enum Mutation {
    /// Flip one bit at a position (taken modulo the length).
    Flip { at: usize, bit: u8 },
    /// Overwrite one byte.
    Set { at: usize, byte: u8 },
    /// Keep only the first `len` bytes (modulo the length).
    Truncate { len: usize },
    /// Append bytes.
    Extend { bytes: Vec<u8> },
    /// Insert bytes at a position.
    Insert { at: usize, bytes: Vec<u8> },
    /// Remove up to `n` bytes at a position.
    Remove { at: usize, n: usize },
    /// Overwrite 8 bytes with an integer (lengths and counts are little-endian u64s).
    Int { at: usize, value: u64 },
}

impl Mutation {
    fn apply(&self, data: &mut Vec<u8>) {
        let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
        match self {
            Self::Flip { at, bit } if !data.is_empty() => {
                let i = pos(*at, data.len());
                data[i] ^= 1 << (bit % 8);
            }
            Self::Set { at, byte } if !data.is_empty() => {
                let i = pos(*at, data.len());
                data[i] = *byte;
            }
            Self::Truncate { len } => data.truncate(pos(*len, data.len())),
            Self::Extend { bytes } => data.extend_from_slice(bytes),
            Self::Insert { at, bytes } => {
                let i = pos(*at, data.len() + 1);
                data.splice(i..i, bytes.iter().copied());
            }
            Self::Remove { at, n } => {
                let i = pos(*at, data.len() + 1);
                let end = (i + n).min(data.len());
                data.drain(i..end);
            }
            Self::Int { at, value } if data.len() >= 8 => {
                let i = pos(*at, data.len() - 7);
                data[i..i + 8].copy_from_slice(&value.to_le_bytes());
            }
            _ => {}
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let small = || vec(any::<u8>(), 1..16);
    let int = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        Just(1 << 31),
        any::<u64>()
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        small().prop_map(|bytes| Mutation::Extend { bytes }),
        (any::<usize>(), small()).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1..64usize).prop_map(|(at, n)| Mutation::Remove { at, n }),
        (any::<usize>(), int).prop_map(|(at, value)| Mutation::Int { at, value }),
    ]
}

fn mutated(original: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut data = original.to_vec();
    for m in mutations {
        m.apply(&mut data);
    }
    data
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

/// A freshly signed post by a random key.
fn signed_post() -> impl Strategy<Value = VerifiedRecord> {
    (any::<[u8; 32]>(), 1..1_000u64, any::<[u8; 32]>(), 0..1u64 << 45, "\\PC{1,64}")
        .prop_filter_map("blank text", |(seed, seq, prev, timestamp, text)| {
            let key = Keypair::from_secret_bytes(&seed);
            let prev = (seq > 1).then(|| kith_protocol::RecordId::from_bytes(prev));
            let post = Post {
                text,
                reply_to: None,
                mentions: vec![],
                expires_at: None,
                attachments: vec![],
            };
            Record { author: key.id(), seq, prev, timestamp, kind: RecordKind::Post(post) }
                .sign(&key)
                .ok()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_are_refused_by_every_decoder(bytes in vec(any::<u8>(), 0..2048)) {
        prop_assert!(VerifiedRecord::from_bytes(&bytes).is_err());
        prop_assert!(Sealed::from_bytes(&bytes).is_err());
        prop_assert!(DmRequest::from_bytes(&bytes).is_err());
        prop_assert!(DmReply::from_bytes(&bytes).is_err());
        prop_assert!(SyncRequest::from_bytes(&bytes).is_err());
        prop_assert!(SyncResponse::from_bytes(&bytes).is_err());
        prop_assert!(serde_json::from_slice::<Request>(&bytes).is_err());
        prop_assert!(Envelope::from_bytes(&bytes).is_err());
        prop_assert!(Dm2Request::from_bytes(&bytes).is_err());
        prop_assert!(Dm2Reply::from_bytes(&bytes).is_err());
        fuzz::record(&bytes);
        fuzz::sealed(&bytes);
        fuzz::envelope(&bytes);
        fuzz::sync_request(&bytes);
        fuzz::sync_response(&bytes);
        fuzz::control_request(&bytes);
        fuzz::mailbox(&bytes);
        fuzz::group(&bytes);
    }

    #[test]
    fn json_junk_is_refused_or_round_trips(
        json in r#"\{("(cmd|text|id|tag|limit|live|to|peer|addr)":("[a-z_]{0,12}"|[0-9]{1,20}|-1|true|null|\[\]|\{\}),?){0,4}\}"#,
        seed in any::<prop::sample::Index>(),
        mutations in vec(mutation(), 0..4),
    ) {
        fuzz::control_request(json.as_bytes());
        let seeds = &fuzz::seeds().control_requests;
        fuzz::control_request(&mutated(seed.get::<Vec<u8>>(seeds), &mutations));
    }
}

/// Runs `test` on `cases` values of `strategy` with one store for all of them (opening a
/// sled store per case would dominate the run time).
fn with_store<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(&Store, S::Value) -> Result<(), TestCaseError>,
) {
    let (_dir, store) = temp_store();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    if let Err(e) = runner.run(&strategy, |value| test(&store, value)) {
        panic!("{e}");
    }
}

#[test]
fn ingest_refuses_junk_without_touching_the_store() {
    let junk = (vec(any::<u8>(), 0..2048), prop::option::of("[a-z0-9/#]{0,40}"), any::<u64>());
    with_store(512, junk, |store, (bytes, topic, now)| {
        let admission = Admission::new(Keypair::from_secret_bytes(&[7; 32]).id());
        let out = ingest(store, &admission, &bytes, topic.as_deref(), now).unwrap();
        prop_assert!(matches!(out, Outcome::Invalid(_)), "{out:?}");
        prop_assert_eq!(store.counts().records, 0);
        Ok(())
    });
}

#[test]
fn tampered_records_are_never_accepted() {
    with_store(256, (signed_post(), vec(mutation(), 1..4)), |store, (rec, mutations)| {
        let bad = mutated(rec.bytes(), &mutations);
        prop_assume!(bad != rec.bytes());
        prop_assert!(VerifiedRecord::from_bytes(&bad).is_err());
        prop_assert!(VerifiedRecord::from_bytes_with_id(&bad, &rec.id()).is_err());
        let now = rec.record().timestamp;
        let topic = Topic::Author(rec.record().author).to_string();
        let before = store.counts().records;
        // The node of the post's author: the untouched record is its own, kept.
        let admission = Admission::new(rec.record().author);
        let out = ingest(store, &admission, &bad, Some(&topic), now).unwrap();
        prop_assert!(matches!(out, Outcome::Invalid(_)), "{out:?}");
        prop_assert_eq!(store.counts().records, before);
        prop_assert!(!store.has(&kith_protocol::RecordId::of_bytes(&bad)).unwrap());
        // The untouched record is still accepted.
        let out = ingest(store, &admission, rec.bytes(), Some(&topic), now).unwrap();
        prop_assert!(matches!(out, Outcome::New(_)), "{out:?}");
        Ok(())
    });
}

proptest! {
    #[test]
    fn tampered_seeds_never_verify_or_open(
        seed in any::<prop::sample::Index>(),
        mutations in vec(mutation(), 1..4),
    ) {
        let s = fuzz::seeds();
        let record = seed.get::<Vec<u8>>(&s.records);
        let bad = mutated(record, &mutations);
        if bad != *record {
            prop_assert!(VerifiedRecord::from_bytes(&bad).is_err());
        }
        // The bodies check that nothing opens or verifies unless it is a seed.
        fuzz::record(&bad);
        for set in [&s.dm_requests, &s.sealed_bytes, &s.dm_replies] {
            fuzz::sealed(&mutated(seed.get::<Vec<u8>>(set), &mutations));
        }
        fuzz::envelope(&mutated(seed.get::<Vec<u8>>(&s.dm2), &mutations));
        fuzz::sync_request(&mutated(seed.get::<Vec<u8>>(&s.sync_requests), &mutations));
        fuzz::sync_response(&mutated(seed.get::<Vec<u8>>(&s.sync_responses), &mutations));
        fuzz::control_request(&mutated(seed.get::<Vec<u8>>(&s.control_requests), &mutations));
    }
}

#[test]
fn seeds_are_accepted() {
    let s = fuzz::seeds();
    for r in &s.records {
        assert!(VerifiedRecord::from_bytes(r).is_ok());
        fuzz::record(r);
    }
    for (bytes, sealed) in s.sealed_bytes.iter().zip(&s.sealed) {
        assert_eq!(&Sealed::from_bytes(bytes).unwrap(), sealed);
        assert!(sealed.open(&fuzz::recipient()).is_ok());
    }
    for r in &s.dm_requests {
        assert!(DmRequest::from_bytes(r).is_ok());
        fuzz::sealed(r);
    }
    for r in &s.dm_replies {
        assert!(DmReply::from_bytes(r).is_ok());
    }
    for r in &s.dm2 {
        let decodes = Envelope::from_bytes(r).is_ok()
            || Dm2Request::from_bytes(r).is_ok()
            || Dm2Reply::from_bytes(r).is_ok();
        assert!(decodes);
        fuzz::envelope(r);
    }
    // The body reaches decryption: each seed envelope opens with a recorded state.
    for envelope in &s.olm.envelopes {
        assert!(fuzz::check_envelope(envelope));
    }
    for r in &s.sync_requests {
        assert!(SyncRequest::from_bytes(r).is_ok());
        fuzz::sync_request(r);
    }
    for r in &s.sync_responses {
        assert!(SyncResponse::from_bytes(r).is_ok());
        fuzz::sync_response(r);
    }
    for r in &s.control_requests {
        assert!(serde_json::from_slice::<Request>(r).is_ok());
        fuzz::control_request(r);
    }
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn mutation(&mut self, pool: &[Vec<u8>]) -> Mutation {
        let at = self.next() as usize;
        match self.below(8) {
            0 => Mutation::Flip { at, bit: self.next() as u8 },
            1 => Mutation::Set { at, byte: self.next() as u8 },
            2 => Mutation::Truncate { len: at },
            3 => {
                let n = 1 + self.below(16);
                Mutation::Extend { bytes: self.bytes(n) }
            }
            4 => {
                let n = 1 + self.below(16);
                Mutation::Insert { at, bytes: self.bytes(n) }
            }
            5 => Mutation::Remove { at, n: 1 + self.below(64) },
            6 => {
                let values = [0, 1, u64::MAX, u64::from(u32::MAX), 1 << 31, self.next()];
                Mutation::Int { at, value: values[self.below(values.len())] }
            }
            // Splice in a piece of another valid encoding.
            _ => {
                let other = &pool[self.below(pool.len())];
                let start = self.below(other.len());
                let end = start + self.below(other.len() - start + 1);
                Mutation::Insert { at, bytes: other[start..end].to_vec() }
            }
        }
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A fuzz target: its name, its body and the valid encodings it starts from.
type Target<'a> = (&'a str, fn(&[u8]), &'a [Vec<u8>]);

#[test]
fn fuzz_bodies_for_a_bounded_time() {
    let secs = env_or("KITH_FUZZ_SECS", 1);
    let seed = env_or(
        "KITH_FUZZ_SEED",
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
    );
    let s = fuzz::seeds();
    let dm: Vec<Vec<u8>> = [&s.dm_requests[..], &s.sealed_bytes[..], &s.dm_replies[..]].concat();
    let text = fuzz::text_seeds();
    let targets: [Target; 7] = [
        ("record", fuzz::record, &s.records),
        ("sealed", fuzz::sealed, &dm),
        ("envelope", fuzz::envelope, &s.dm2),
        ("sync_request", fuzz::sync_request, &s.sync_requests),
        ("sync_response", fuzz::sync_response, &s.sync_responses),
        ("control_request", fuzz::control_request, &s.control_requests),
        ("terminal_text", fuzz::terminal_text, &text),
    ];
    let pool: Vec<Vec<u8>> = targets.iter().flat_map(|t| t.2.iter().cloned()).collect();
    let mut rng = Rng(seed);
    for (name, body, seeds) in targets {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut runs = 0u64;
        while Instant::now() < end {
            let input = if rng.below(10) == 0 {
                let n = rng.below(1024);
                rng.bytes(n)
            } else {
                let mutations: Vec<Mutation> =
                    (0..1 + rng.below(4)).map(|_| rng.mutation(&pool)).collect();
                mutated(&seeds[rng.below(seeds.len())], &mutations)
            };
            if std::panic::catch_unwind(|| body(&input)).is_err() {
                panic!("fuzz {name} (KITH_FUZZ_SEED={seed}) failed on {}", hex::encode(&input));
            }
            runs += 1;
        }
        println!("fuzz {name}: {runs} inputs in {secs} s (KITH_FUZZ_SEED={seed})");
    }
}
