//! Ingest benchmark: N pre-signed records from many authors pushed through the node's
//! full ingest path (size check, decode, field checks, strict signature verification,
//! the keep decision for authors the reader follows, store and index), as fast as it takes them; beside it, the ed25519 verification rate
//! measured in the same run (the ceiling). Run with `scripts/bench-ingest`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// mimalloc rather than glibc's malloc: see the workspace Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use kith_node::{ingest, store::Store};
use kith_protocol::VerifiedRecord;
use kith_tests::bench::arg;

fn main() {
    let n: usize = arg("--records", 20_000);
    let json = std::env::args().any(|a| a == "--json");
    let now = 1_800_000_000_000u64;
    let records = kith_tests::bench::signed_posts(n, 100, now);

    // The ceiling: decode + strict verify only, one core.
    let t = Instant::now();
    for r in &records {
        VerifiedRecord::from_bytes(r).unwrap();
    }
    let verify_per_s = n as f64 / t.elapsed().as_secs_f64();

    // The same on every core at once: the ceiling the batched path is held against.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let t = Instant::now();
    std::thread::scope(|s| {
        for part in records.chunks(n.div_ceil(threads).max(1)) {
            s.spawn(move || {
                for r in part {
                    VerifiedRecord::from_bytes(r).unwrap();
                }
            });
        }
    });
    let verify_all_per_s = n as f64 / t.elapsed().as_secs_f64();

    // The full path, into a fresh store, then one flush (what "acknowledged" costs).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let admission = kith_tests::bench::following_authors(&store, 100);
    let t = Instant::now();
    let mut stored = 0;
    for r in &records {
        if let ingest::Outcome::New(_) = ingest::ingest(&store, &admission, r, None, now).unwrap() {
            stored += 1;
        }
    }
    store.flush_blocking().unwrap();
    let secs_one = t.elapsed().as_secs_f64();
    assert_eq!(stored, n, "every record must be stored once");
    let one_by_one_per_s = n as f64 / secs_one;

    // Batched: the checks on every core, the writes in order, one flush per batch.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let admission = kith_tests::bench::following_authors(&store, 100);
    let t = Instant::now();
    let mut stored = 0;
    let mut flushing = std::time::Duration::ZERO;
    for batch in records.chunks(256) {
        for outcome in ingest::ingest_batch(&store, &admission, batch, None, now, threads) {
            if let ingest::Outcome::New(_) = outcome.unwrap() {
                stored += 1;
            }
        }
        let f = Instant::now();
        store.flush_blocking().unwrap();
        flushing += f.elapsed();
    }
    let secs = t.elapsed().as_secs_f64();
    let flush_secs = flushing.as_secs_f64();
    assert_eq!(stored, n, "every record must be stored once");
    let records_per_s = n as f64 / secs;
    let ratio = records_per_s / verify_per_s;
    let ratio_all = records_per_s / verify_all_per_s;
    if json {
        println!(
            "{{\"records\":{n},\"records_per_s\":{records_per_s:.0},\"verify_per_s\":{verify_per_s:.0},\"ratio\":{ratio:.3},\"verify_all_cores_per_s\":{verify_all_per_s:.0},\"ratio_all_cores\":{ratio_all:.3},\"flush_s\":{flush_secs:.3},\"one_by_one_per_s\":{one_by_one_per_s:.0},\"threads\":{threads}}}"
        );
    } else {
        println!("records            {n} (100 authors, a quarter with two hashtags)");
        println!(
            "verify ceiling     {verify_per_s:.0} records/s (decode + strict verify, one core)"
        );
        println!(
            "verify, all cores  {verify_all_per_s:.0} records/s (the same on {threads} threads)"
        );
        println!(
            "ingest one by one  {one_by_one_per_s:.0} records/s ({secs_one:.2} s, one flush at the end)"
        );
        println!(
            "ingest in batches  {records_per_s:.0} records/s ({secs:.2} s; 256 per batch, checks on {threads} threads, a flush per batch, {flush_secs:.2} s of it flushing)"
        );
        println!("ratio              {ratio:.2} of the one-core verify ceiling, {ratio_all:.2} of the all-core one");
    }
}
