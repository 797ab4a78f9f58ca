//! History-sync catch-up benchmark: node A holds N records of one author; node B follows
//! that author, connects to A, and fetches and ingests them all through `/kith/sync/1`.
//! A's person follows B's person, so A serves B as a friend (full pages); with
//! `--stranger` it does not, and B gets a stranger's small pages within A's limits.
//! Prints records per second. Run with
//! `scripts/bench-sync [--records N] [--stranger] [--json]`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// mimalloc rather than glibc's malloc: see the workspace Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use kith_node::{api::Request, ingest};
use kith_protocol::{Keypair, Post, Record, RecordKind};
use kith_tests::{bench::arg, sim::cpu_time, TestNode};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = arg("--records", 10_000);
    let json = std::env::args().any(|a| a == "--json");
    let stranger = std::env::args().any(|a| a == "--stranger");
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;

    // N signed records of one author, in A's store (as if A had received them earlier).
    let author = Keypair::from_secret_bytes(&[7; 32]);
    let mut prev = None;
    let start_ts = 1_700_000_000_000;
    let t0 = Instant::now();
    let mut record_bytes = 0;
    for seq in 1..=n {
        let text = if seq % 5 == 0 { format!("post {seq} #rust") } else { format!("post {seq}") };
        let rec = Record {
            author: author.id(),
            seq,
            prev,
            timestamp: start_ts + seq,
            kind: RecordKind::Post(Post {
                text,
                reply_to: None,
                mentions: vec![],
                expires_at: None,
                attachments: vec![],
            }),
        }
        .sign(&author)
        .unwrap();
        prev = Some(rec.id());
        record_bytes += rec.bytes().len() as u64;
        ingest::import(a.node.store(), rec.bytes(), start_ts + n + 1).unwrap();
    }
    let prepared = t0.elapsed();

    // B follows the author, then connects: sync on connect fetches everything.
    b.ok(Request::Follow { id: author.id().to_string() }).await;
    if !stranger {
        a.follow(&b).await;
    }
    let (t1, cpu1) = (Instant::now(), cpu_time());
    b.dial(&a).await;
    let deadline = Duration::from_secs(600);
    loop {
        if b.node.store().contiguous_seq(&author.id()).unwrap() == n {
            break;
        }
        assert!(t1.elapsed() < deadline, "catch-up did not finish in {deadline:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = t1.elapsed();
    // Both nodes' work (A serving, B checking and storing) and the polling above: on a
    // loaded machine the wall time says more about the load than about kith.
    let cpu = cpu_time().saturating_sub(cpu1).as_secs_f64();
    let rate = n as f64 / took.as_secs_f64();
    if json {
        println!(
            "{{\"records\":{n},\"stranger\":{stranger},\"seconds\":{:.3},\"records_per_s\":{:.0},\"prepare_seconds\":{:.3},\"record_bytes\":{},\"cpu_seconds\":{cpu:.3}}}",
            took.as_secs_f64(),
            rate,
            prepared.as_secs_f64(),
            record_bytes / n.max(1)
        );
    } else {
        println!(
            "prepared {n} signed records ({} bytes each on average) in A's store in {:.2} s",
            record_bytes / n.max(1),
            prepared.as_secs_f64()
        );
        println!(
            "B ({}) caught up on {n} records over loopback in {:.3} s: {rate:.0} records/s",
            if stranger { "a stranger to A" } else { "followed by A's person" },
            took.as_secs_f64()
        );
        println!("the catch-up used {cpu:.2} s of CPU (both nodes)");
    }
    a.stop().await;
    b.stop().await;
}
