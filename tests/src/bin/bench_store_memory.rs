//! Store memory benchmark: signed posts from 100 authors ingested one by one into a fresh
//! store with a given cache size, the process's resident memory printed every `--every`
//! records. Shows what a node's memory does as its store grows, for each cache size.
//! Run with `scripts/bench-store-memory`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use kith_node::{ingest, store::Store};
use kith_tests::bench::{arg, rss_kib, signed_posts};

fn main() {
    let n: usize = arg("--records", 100_000);
    let every: usize = arg("--every", 20_000).max(1);
    let cache_mb: u64 = arg("--cache-mb", kith_node::config::DEFAULT_STORE_CACHE_MB);
    let now = 1_800_000_000_000u64;
    let records = signed_posts(n, 100, now);
    let dir = tempfile::tempdir().unwrap();
    let before = rss_kib();
    let store = Store::open_with_cache(dir.path(), cache_mb << 20).unwrap();
    println!("cache {cache_mb} MiB; {n} records (100 authors); RSS with the records in memory, before the store opens: {:.1} MiB", before as f64 / 1024.0);
    println!("{:>9}  {:>9}  {:>9}", "records", "RSS MiB", "added");
    println!("{:>9}  {:>9.1}  {:>9.1}", 0, rss_kib() as f64 / 1024.0, 0.0);
    let admission = kith_tests::bench::following_authors(&store, 100);
    let t = Instant::now();
    for (i, bytes) in records.iter().enumerate() {
        let outcome = ingest::ingest(&store, &admission, bytes, None, now).unwrap();
        assert!(matches!(outcome, ingest::Outcome::New(_)), "record {i}: {outcome:?}");
        if (i + 1) % every == 0 || i + 1 == n {
            store.flush_blocking().unwrap();
            let rss = rss_kib();
            println!(
                "{:>9}  {:>9.1}  {:>9.1}",
                i + 1,
                rss as f64 / 1024.0,
                rss.saturating_sub(before) as f64 / 1024.0
            );
        }
    }
    println!("took {:.1} s", t.elapsed().as_secs_f64());
}
