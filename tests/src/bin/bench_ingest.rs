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
use kith_tests::{bench::arg, sim::cpu_time};

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

    // The same on every core at once: the ceiling the batched path is held against. It
    // is measured again after the ingest runs, and the two are averaged: one pass of
    // 20,000 records takes a third of a second, and on a shared VM a single pass moved by
    // up to a fifth between runs of the same binary (docs/benchmarks.md, session 31).
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let verify_all = || {
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
        n as f64 / t.elapsed().as_secs_f64()
    };
    let verify_all_before = verify_all();

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

    // Batched: the checks on every core, the writes in order, a flush per batch before
    // its records count (each flush runs while the next batch is checked; nothing of
    // that batch is stored before the flush ends).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let admission = kith_tests::bench::following_authors(&store, 100);
    let (t, cpu) = (Instant::now(), cpu_time());
    let mut stored = 0;
    let flushing = std::sync::Mutex::new(std::time::Duration::ZERO);
    let flush = || {
        let f = Instant::now();
        let result = store.flush_blocking();
        *flushing.lock().unwrap() += f.elapsed();
        result
    };
    let batches: Vec<&[Vec<u8>]> = records.chunks(256).collect();
    let run = ingest::BatchRun {
        store: &store,
        admission: &admission,
        came: kith_node::keep::Came::Direct,
        now_ms: now,
        threads,
        flush: Some(&flush),
    };
    let check = |bytes: &[u8]| ingest::check(bytes, None, now);
    ingest::ingest_batches_with(&run, &batches, check, |_, outcomes, flushed| {
        flushed.unwrap();
        for outcome in outcomes {
            if let ingest::Outcome::New(_) = outcome.unwrap() {
                stored += 1;
            }
        }
    });
    let flushing = *flushing.lock().unwrap();
    let secs = t.elapsed().as_secs_f64();
    // Cores the batched path kept busy on average (the whole process: 2.0 = both cores
    // all the time on this machine).
    let cores_busy = cpu_time().saturating_sub(cpu).as_secs_f64() / secs;
    let flush_secs = flushing.as_secs_f64();
    assert_eq!(stored, n, "every record must be stored once");
    let records_per_s = n as f64 / secs;
    let verify_all_after = verify_all();
    let verify_all_per_s = (verify_all_before + verify_all_after) / 2.0;
    let ratio = records_per_s / verify_per_s;
    let ratio_all = records_per_s / verify_all_per_s;
    if json {
        println!(
            "{{\"records\":{n},\"records_per_s\":{records_per_s:.0},\"verify_per_s\":{verify_per_s:.0},\"ratio\":{ratio:.3},\"verify_all_cores_per_s\":{verify_all_per_s:.0},\"verify_all_cores_before_per_s\":{verify_all_before:.0},\"verify_all_cores_after_per_s\":{verify_all_after:.0},\"ratio_all_cores\":{ratio_all:.3},\"flush_s\":{flush_secs:.3},\"one_by_one_per_s\":{one_by_one_per_s:.0},\"threads\":{threads},\"batched_cores_busy\":{cores_busy:.2}}}"
        );
    } else {
        println!("records            {n} (100 authors, a quarter with two hashtags)");
        println!(
            "verify ceiling     {verify_per_s:.0} records/s (decode + strict verify, one core)"
        );
        println!(
            "verify, all cores  {verify_all_per_s:.0} records/s (the same on {threads} threads; the mean of {verify_all_before:.0} before the ingest runs and {verify_all_after:.0} after)"
        );
        println!(
            "ingest one by one  {one_by_one_per_s:.0} records/s ({secs_one:.2} s, one flush at the end)"
        );
        println!(
            "ingest in batches  {records_per_s:.0} records/s ({secs:.2} s; 256 per batch, checks on {threads} threads, a flush per batch, overlapped with the next batch's checks: {flush_secs:.2} s flushing)"
        );
        println!("cores busy         {cores_busy:.2} on average while batched");
        println!("ratio              {ratio:.2} of the one-core verify ceiling, {ratio_all:.2} of the all-core one");
    }
}
