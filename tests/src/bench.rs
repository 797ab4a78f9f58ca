//! Shared pieces of the benchmark binaries.

use kith_node::{ingest::Admission, store::Store};
use kith_protocol::{Keypair, Post, Record, RecordKind};

/// `n` signed posts (their wire bytes) from `authors` authors taking turns, each author's
/// log in order (seq 1, 2, ... with `prev` links), timestamps up to `now` ms; every
/// fourth post carries two hashtags.
///
/// # Panics
/// Never for `authors` between 1 and 256.
#[allow(clippy::expect_used)]
pub fn signed_posts(n: usize, authors: usize, now: u64) -> Vec<Vec<u8>> {
    let keys: Vec<Keypair> =
        (0..authors).map(|i| Keypair::from_secret_bytes(&[i as u8; 32])).collect();
    let mut prev = vec![None; keys.len()];
    let mut seqs = vec![0u64; keys.len()];
    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        let a = i % keys.len();
        seqs[a] += 1;
        let text = if i % 4 == 0 { format!("post {i} #rust #p2p") } else { format!("post {i}") };
        let rec = Record {
            author: keys[a].id(),
            seq: seqs[a],
            prev: prev[a],
            timestamp: now - (n - i) as u64,
            kind: RecordKind::Post(Post {
                text,
                reply_to: None,
                mentions: vec![],
                expires_at: None,
                attachments: vec![],
            }),
        }
        .sign(&keys[a])
        .expect("a post within limits signs");
        prev[a] = Some(rec.id());
        records.push(rec.bytes().to_vec());
    }
    records
}

/// The admission of a node whose person follows the `authors` authors of
/// [`signed_posts`] (their follow records stored in `store`), so that ingest keeps their
/// posts through the full keep decision.
///
/// # Panics
/// On a store error, or for more than 250 authors.
#[allow(clippy::expect_used)]
pub fn following_authors(store: &Store, authors: usize) -> Admission {
    assert!(authors <= 250, "the reader's key must not be an author's");
    let me = Keypair::from_secret_bytes(&[0xff; 32]);
    let mut prev = None;
    for i in 0..authors {
        let follow = Record {
            author: me.id(),
            seq: i as u64 + 1,
            prev,
            timestamp: 1,
            kind: RecordKind::Follow { target: Keypair::from_secret_bytes(&[i as u8; 32]).id() },
        }
        .sign(&me)
        .expect("a follow signs");
        prev = Some(follow.id());
        store.insert(&follow).expect("the store takes a follow");
    }
    Admission::new(me.id())
}

/// The value after `name` on the command line, parsed, or `default` when it is absent or
/// not a `T`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The process's resident memory (VmRSS), KiB; 0 where /proc is not readable.
pub fn rss_kib() -> u64 {
    vm_rss("/proc/self/status")
}

/// The resident memory (VmRSS) of process `pid`, KiB; 0 where /proc is not readable.
pub fn rss_kib_of(pid: u32) -> u64 {
    vm_rss(&format!("/proc/{pid}/status"))
}

fn vm_rss(status: &str) -> u64 {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
