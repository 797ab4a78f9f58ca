//! `kill -9` while the record heap compacts. A child process (this test binary, running
//! the ignored test [`compaction_child`]) writes a store in a loop: each round inserts
//! posts, erases three of every four, compacts the heap (live frames copied out of sparse
//! segments) and flushes (the emptied segments removed), then says how many of the posts
//! it keeps are durable. The parent kills it with SIGKILL at a random moment (inside an
//! insert, an erase, a compaction, a flush or a segment's removal), opens the store
//! again and checks that every post the child called durable reads back whole, that the
//! store still compacts and flushes, and that the heap's live bytes are counted right.
//!
//! `KITH_COMPACTION_CRASH_ITERATIONS` sets the number of kills (default 12).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use kith_protocol::{Keypair, RecordId, VerifiedRecord};

use super::super::{heap::TEST_SEGMENT_BYTES, Store};
use super::post;

/// The store's folder, for the child.
const CHILD_DIR: &str = "KITH_TEST_COMPACTION_CHILD_DIR";
/// Which life of the child this is (its authors differ from every earlier life's).
const CHILD_LIFE: &str = "KITH_TEST_COMPACTION_CHILD_LIFE";
/// Authors per round; each writes `PER_AUTHOR` posts a round.
const AUTHORS: u8 = 6;
const PER_AUTHOR: usize = 4;
/// Heap segments this small fill and seal every few posts, so every round compacts.
const SEGMENT_BYTES: u64 = 2048;
/// Rounds a child runs at most (it is normally killed long before).
const MAX_ROUNDS: usize = 5_000;

/// The posts of one life of the child, round after round: each author's posts chain on
/// from its posts of the round before; every fourth post is kept, the rest erased.
struct Life {
    life: u8,
    round: usize,
    prev: Vec<Option<RecordId>>,
}

impl Life {
    fn new(life: u8) -> Self {
        Self { life, round: 0, prev: vec![None; AUTHORS as usize] }
    }

    /// The next round's posts in insertion order, each with whether it is kept.
    fn next_round(&mut self) -> Vec<(VerifiedRecord, bool)> {
        let mut out = Vec::new();
        for a in 0..AUTHORS {
            let kp = Keypair::from_secret_bytes(&[self.life * AUTHORS + a + 1; 32]);
            for i in 0..PER_AUTHOR {
                let seq = (self.round * PER_AUTHOR + i) as u64 + 1;
                let text = format!("life {} author {a} post {seq}: long enough", self.life);
                let rec = post(&kp, seq, self.prev[a as usize], 1_000 + seq, &text);
                self.prev[a as usize] = Some(rec.id());
                out.push((rec, i % 4 == 0));
            }
        }
        self.round += 1;
        out
    }
}

fn open(dir: &Path) -> Store {
    TEST_SEGMENT_BYTES.with(|s| s.set(Some(SEGMENT_BYTES)));
    let store = Store::open(dir).unwrap();
    TEST_SEGMENT_BYTES.with(|s| s.set(None));
    store
}

/// The child: writes, erases, compacts and flushes until it is killed, printing
/// `durable <round>` after each round's flush (every kept post of rounds `0..=round` is
/// then on disk).
#[test]
#[ignore = "the child process of compaction_survives_kill_9"]
fn compaction_child() {
    let (Some(dir), Some(life)) = (std::env::var_os(CHILD_DIR), std::env::var_os(CHILD_LIFE))
    else {
        return;
    };
    let life: u8 = life.to_str().and_then(|l| l.parse().ok()).expect("child life");
    let store = open(Path::new(&dir));
    let mut posts_of = Life::new(life);
    for round in 0..MAX_ROUNDS {
        let posts = posts_of.next_round();
        for (rec, _) in &posts {
            store.insert(rec).unwrap();
        }
        let _writer = store.writer.lock().unwrap();
        for (rec, kept) in &posts {
            if !kept {
                let stored = store.get(&rec.id()).unwrap().expect("just inserted");
                store.erase(&stored).unwrap();
            }
        }
        drop(_writer);
        store.compact_records().unwrap();
        store.flush_blocking().unwrap();
        println!("durable {round}");
    }
}

/// Runs one life of the child on `dir` and kills it `delay_ms` after its first durable
/// round; returns the last round it called durable.
fn run_child(dir: &Path, life: u8, delay_ms: u64) -> usize {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "--nocapture", "--test-threads=1"])
        .arg("store::tests::compaction_crash::compaction_child")
        .env(CHILD_DIR, dir)
        .env(CHILD_LIFE, life.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(round) = line.strip_prefix("durable ").and_then(|r| r.parse().ok()) {
                if tx.send(round).is_err() {
                    break;
                }
            }
        }
    });
    let first: usize = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("life {life}: no durable round within 120 s"));
    // The moment of the kill: random, so that kills land in every phase of a round.
    std::thread::sleep(Duration::from_millis(delay_ms));
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    rx.try_iter().last().unwrap_or(first).max(first)
}

#[test]
fn compaction_survives_kill_9() {
    let iterations: u8 = std::env::var("KITH_COMPACTION_CRASH_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(12)
        .min(40);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("seed {seed}");
    let mut state = seed;
    let dir = tempfile::tempdir().unwrap();
    let mut durable: Vec<VerifiedRecord> = Vec::new();
    for life in 0..iterations {
        // xorshift: a delay of 0-299 ms.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = state % 300;
        let last = run_child(dir.path(), life, delay);
        println!(
            "life {life}: killed {delay} ms after its first durable round, after round {last}"
        );
        let mut posts_of = Life::new(life);
        for _ in 0..=last {
            durable.extend(posts_of.next_round().into_iter().filter(|p| p.1).map(|p| p.0));
        }
        let store = open(dir.path());
        let check = |store: &Store, when: &str| {
            for rec in &durable {
                let bytes = store.get_bytes(&rec.id()).unwrap();
                let id = rec.id();
                assert!(bytes.as_deref() == Some(rec.bytes()), "life {life}, {when}: lost {id}");
            }
        };
        check(&store, "after the kill");
        store.compact_records().unwrap();
        store.flush_blocking().unwrap();
        check(&store, "after compacting again");
        let (files, live) = store.records.heap_bytes().unwrap();
        let live = live.expect("counted by the compaction");
        let mut counted = 0;
        store.records.for_each_heap_loc(|bytes| counted += bytes).unwrap();
        assert_eq!(live, counted, "life {life}: live bytes counted wrong");
        assert!(files >= live);
        assert!(store.counts().records >= durable.len() as u64);
        drop(store);
    }
}
