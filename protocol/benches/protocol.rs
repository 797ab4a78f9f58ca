//! Micro-benchmarks of the wire and crypto paths: record encode/decode, sign, verify (one
//! by one and in a batch) and direct-message seal/open. Run with
//! `cargo bench -p kith-protocol`; results are recorded in docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{hint::black_box, time::Duration};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::{Signature, VerifyingKey};
use kith_protocol::{
    codec,
    dm::{MessageId, Plain, Sealed},
    limits::MAX_RECORD_BYTES,
    record::{SignedRecord, RECORD_DOMAIN},
    Keypair, Post, Record, RecordKind, VerifiedRecord,
};

/// Signatures per batch in the batch-verification benchmark (a sync page is 256 records;
/// a gossip burst is smaller).
const BATCH: usize = 64;

/// A typical post: a sentence, two hashtags, a reply.
fn post(author: &Keypair, seq: u64) -> Record {
    Record {
        author: author.id(),
        seq,
        prev: None,
        timestamp: 1_800_000_000_000 + seq,
        kind: RecordKind::Post(Post {
            text: format!("post number {seq}: a sentence of ordinary length about #rust and #p2p"),
            reply_to: None,
            mentions: vec![],
            expires_at: None,
            attachments: vec![],
        }),
    }
}

fn codec_benches(c: &mut Criterion) {
    let me = Keypair::from_secret_bytes(&[7; 32]);
    let signed = post(&me, 1).sign(&me).unwrap();
    let bytes = signed.bytes().to_vec();
    let wire: SignedRecord = codec::decode::<_, MAX_RECORD_BYTES>(&bytes).unwrap();

    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| b.iter(|| codec::encode(black_box(&wire)).unwrap()));
    g.bench_function("decode", |b| {
        b.iter(|| codec::decode::<SignedRecord, MAX_RECORD_BYTES>(black_box(&bytes)).unwrap())
    });
    g.bench_function("sign", |b| {
        b.iter_batched(|| post(&me, 1), |r| r.sign(&me).unwrap(), BatchSize::SmallInput)
    });
    g.bench_function("from_bytes (decode + checks + strict verify)", |b| {
        b.iter(|| VerifiedRecord::from_bytes(black_box(&bytes)).unwrap())
    });
    g.finish();
}

fn signature_benches(c: &mut Criterion) {
    let keys: Vec<Keypair> =
        (0..BATCH).map(|i| Keypair::from_secret_bytes(&[i as u8; 32])).collect();
    let bodies: Vec<Vec<u8>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| codec::encode(&post(k, i as u64 + 1)).unwrap())
        .collect();
    // What is actually signed: the domain prefix, then the body.
    let messages: Vec<Vec<u8>> = bodies.iter().map(|b| [RECORD_DOMAIN, b].concat()).collect();
    let sigs: Vec<[u8; 64]> =
        keys.iter().zip(&bodies).map(|(k, b)| k.sign(RECORD_DOMAIN, b)).collect();
    let ids: Vec<_> = keys.iter().map(Keypair::id).collect();

    let mut g = c.benchmark_group("ed25519");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign", |b| b.iter(|| keys[0].sign(RECORD_DOMAIN, black_box(&bodies[0]))));
    g.bench_function("verify_strict single", |b| {
        b.iter(|| ids[0].verify(RECORD_DOMAIN, black_box(&bodies[0]), &sigs[0]).unwrap())
    });
    // What AuthorId::verify did before (and what it answers like): ed25519-dalek's
    // verify_strict, decoding the key and R each time.
    let message0 = &messages[0];
    g.bench_function("dalek verify_strict single (key decoded each time)", |b| {
        b.iter(|| {
            VerifyingKey::from_bytes(ids[0].as_bytes())
                .unwrap()
                .verify_strict(black_box(message0), &Signature::from_bytes(&sigs[0]))
                .unwrap()
        })
    });

    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(format!("verify_strict x{BATCH} one by one"), |b| {
        b.iter(|| {
            for ((id, body), sig) in ids.iter().zip(&bodies).zip(&sigs) {
                id.verify(RECORD_DOMAIN, black_box(body), sig).unwrap();
            }
        })
    });
    let vks: Vec<VerifyingKey> =
        ids.iter().map(|id| VerifyingKey::from_bytes(id.as_bytes()).unwrap()).collect();
    let signatures: Vec<Signature> = sigs.iter().map(Signature::from_bytes).collect();
    let msg_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    g.bench_function(format!("verify_batch x{BATCH}"), |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&msg_refs), &signatures, &vks).unwrap())
    });
    g.finish();
}

fn dm_benches(c: &mut Criterion) {
    let alice = Keypair::from_secret_bytes(&[1; 32]);
    let bob = Keypair::from_secret_bytes(&[2; 32]);
    let plain = Plain {
        id: MessageId::from_bytes([9; 16]),
        timestamp: 1_800_000_000_000,
        text: "see you at the station at six, bring the map".to_owned(),
        attachments: vec![],
    };
    let sealed = Sealed::seal(&alice, &bob.id(), &plain).unwrap();
    let sealed_bytes = sealed.to_bytes().unwrap();

    let mut g = c.benchmark_group("dm");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal", |b| {
        b.iter(|| Sealed::seal(&alice, &bob.id(), black_box(&plain)).unwrap())
    });
    g.bench_function("open", |b| b.iter(|| black_box(&sealed).open(&bob).unwrap()));
    g.bench_function("from_bytes + open", |b| {
        b.iter(|| Sealed::from_bytes(black_box(&sealed_bytes)).unwrap().open(&bob).unwrap())
    });
    g.finish();
}

/// `/kith/dm/2` (not used by the node yet): a message on an established Olm session
/// (seal and open: a sealed message must be opened, or the receiver falls behind), a
/// first message (outbound and inbound session set-up from a fallback
/// key), and the sessions' pickle the node stores after each message.
fn olm_benches(c: &mut Criterion) {
    use kith_protocol::olm::{
        account::{Device, PeerSessions},
        pickle::PickleKey,
    };
    const T: u64 = 1_800_000_000_000;
    let (alice, bob) = (Keypair::from_secret_bytes(&[1; 32]), Keypair::from_secret_bytes(&[2; 32]));
    let plain = Plain {
        id: MessageId::from_bytes([9; 16]),
        timestamp: T,
        text: "see you at the station at six, bring the map".to_owned(),
        attachments: vec![],
    };
    let (a, mut b) = (Device::new(), Device::new());
    let (a_cert, b_cert) = (a.certify(&alice, T).unwrap(), b.certify(&bob, T).unwrap());
    let prekey = b.fallback_prekey(T).unwrap();
    let (mut with_b, mut with_a) = (PeerSessions::new(b_cert.id()), PeerSessions::new(a_cert.id()));
    let first = a.seal(&alice, &mut with_b, &b_cert, Some(&prekey), &plain).unwrap();
    b.open(&mut with_a, &a_cert, &first).unwrap();
    // A reply, so that Alice's next messages are normal messages.
    let reply = b.seal(&bob, &mut with_a, &a_cert, None, &plain).unwrap();
    let mut a = a;
    a.open(&mut with_b, &b_cert, &reply).unwrap();
    let key = PickleKey::derive(&bob).unwrap();

    let mut g = c.benchmark_group("olm");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal + open (session)", |bench| {
        bench.iter(|| {
            let envelope = a.seal(&alice, &mut with_b, &b_cert, None, &plain).unwrap();
            b.open(&mut with_a, &a_cert, black_box(&envelope)).unwrap()
        })
    });
    g.bench_function("first message: seal + open (new sessions)", |bench| {
        bench.iter(|| {
            let (mut to, mut from) =
                (PeerSessions::new(b_cert.id()), PeerSessions::new(a_cert.id()));
            let envelope = a.seal(&alice, &mut to, &b_cert, Some(&prekey), &plain).unwrap();
            b.open(&mut from, &a_cert, black_box(&envelope)).unwrap()
        })
    });
    let pickle = with_a.pickle(&key).unwrap();
    g.bench_function("sessions pickle + unpickle", |bench| {
        bench.iter(|| {
            let bytes = with_a.pickle(&key).unwrap();
            PeerSessions::from_pickle(black_box(&bytes), &key, a_cert.id()).unwrap()
        })
    });
    g.finish();
    eprintln!("olm: sessions pickle {} bytes", pickle.len());
}

/// Short runs: `cargo bench` should finish in a few minutes on two cores.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = codec_benches, signature_benches, dm_benches, olm_benches
}
criterion_main!(benches);
