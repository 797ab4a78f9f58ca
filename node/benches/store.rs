//! Micro-benchmarks of the store: inserting a verified record (with all its indexes), a
//! batch of inserts made durable by one flush, and the timeline queries behind `kith feed`.
//! Run with `cargo bench -p kith-node`; results are recorded in docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    collections::HashSet,
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kith_node::store::Store;
use kith_protocol::{AuthorId, Keypair, Post, Record, RecordId, RecordKind, Tag, VerifiedRecord};

/// Authors writing into the benchmark stores.
const AUTHORS: usize = 100;
/// Posts in the store that the timeline queries read.
const TIMELINE_POSTS: usize = 10_000;
/// Authors the reader follows in the timeline store.
const FOLLOWED: usize = 10;
/// Records per flushed batch (a history-sync page).
const FLUSH_BATCH: usize = 256;
/// Items per timeline page (`kith feed`'s default).
const PAGE: usize = 50;

/// Signs posts for many authors, each author's log in order.
struct Writer {
    authors: Vec<Keypair>,
    seqs: Vec<u64>,
    prevs: Vec<Option<RecordId>>,
    n: u64,
}

impl Writer {
    fn new() -> Self {
        let authors: Vec<Keypair> =
            (0..AUTHORS).map(|i| Keypair::from_secret_bytes(&[i as u8 + 1; 32])).collect();
        Self { seqs: vec![0; AUTHORS], prevs: vec![None; AUTHORS], authors, n: 0 }
    }

    /// The next post; a quarter carry `#rust` and `#p2p`.
    fn next(&mut self) -> VerifiedRecord {
        let a = (self.n % AUTHORS as u64) as usize;
        self.seqs[a] += 1;
        let text = if self.n.is_multiple_of(4) {
            format!("post {} about #rust and #p2p", self.n)
        } else {
            format!("post {} about nothing much", self.n)
        };
        let rec = Record {
            author: self.authors[a].id(),
            seq: self.seqs[a],
            prev: self.prevs[a],
            timestamp: 1_800_000_000_000 + self.n,
            kind: RecordKind::Post(Post {
                text,
                reply_to: None,
                mentions: vec![],
                expires_at: None,
                attachments: vec![],
            }),
        }
        .sign(&self.authors[a])
        .unwrap();
        self.prevs[a] = Some(rec.id());
        self.n += 1;
        rec
    }

    fn take(&mut self, n: usize) -> Vec<VerifiedRecord> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn insert_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut writer = Writer::new();
    // Start from a store that is not empty.
    for r in writer.take(5_000) {
        store.insert(&r).unwrap();
    }

    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    // Signing happens outside the timed part; the store keeps growing across iterations.
    g.bench_function("insert (no flush)", |b| {
        b.iter_custom(|iters| {
            let recs = writer.take(iters as usize);
            let t = Instant::now();
            for r in &recs {
                store.insert(black_box(r)).unwrap();
            }
            t.elapsed()
        })
    });
    g.throughput(Throughput::Elements(FLUSH_BATCH as u64));
    g.bench_function(format!("insert x{FLUSH_BATCH} + flush"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let recs = writer.take(FLUSH_BATCH);
                let t = Instant::now();
                for r in &recs {
                    store.insert(black_box(r)).unwrap();
                }
                store.flush_blocking().unwrap();
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn timeline_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut writer = Writer::new();
    for r in writer.take(TIMELINE_POSTS) {
        store.insert(&r).unwrap();
    }
    // The reader follows a few of the authors (signed follow records, as in a real store)
    // and subscribes one tag.
    let me = Keypair::from_secret_bytes(&[200; 32]);
    let mut prev = None;
    for (i, target) in writer.authors.iter().take(FOLLOWED).enumerate() {
        let follow = Record {
            author: me.id(),
            seq: i as u64 + 1,
            prev,
            timestamp: 1_800_000_000_000,
            kind: RecordKind::Follow { target: target.id() },
        }
        .sign(&me)
        .unwrap();
        prev = Some(follow.id());
        store.insert(&follow).unwrap();
    }
    let rust: Tag = "rust".parse().unwrap();
    store.subscribe(&"p2p".parse().unwrap()).unwrap();
    store.flush_blocking().unwrap();
    let me_id = me.id();
    let one_author = writer.authors[3].id();

    let mut g = c.benchmark_group("timeline");
    g.throughput(Throughput::Elements(PAGE as u64));
    // What `kith feed` with no filter does: followed authors, subscribed tags, and me.
    g.bench_function(format!("home {PAGE} of {TIMELINE_POSTS}"), |b| {
        b.iter(|| {
            let following: HashSet<AuthorId> =
                store.following(&me_id).unwrap().into_iter().collect();
            let subs: HashSet<Tag> = store.subscriptions().unwrap().into_iter().collect();
            let page = store
                .posts_where(PAGE, None, |r| {
                    let author = &r.record.author;
                    (*author == me_id
                        || following.contains(author)
                        || r.record.tags().iter().any(|t| subs.contains(t)))
                        && !store.is_hidden(author)
                })
                .unwrap();
            assert_eq!(page.len(), PAGE);
            page
        })
    });
    g.bench_function(format!("tag {PAGE}"), |b| {
        b.iter(|| store.posts_by_tag(black_box(&rust), PAGE, None, |_| true).unwrap())
    });
    g.bench_function(format!("author {PAGE}"), |b| {
        b.iter(|| store.posts_by_author(black_box(&one_author), PAGE, None, |_| true).unwrap())
    });
    g.finish();
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
    targets = insert_benches, timeline_benches
}
criterion_main!(benches);
