//! The store at scale: a home with N records of a realistic mix built through the real
//! ingest path, then query latencies, restart time, disk and idle memory (see
//! `kith_tests::store_scale`). Run with `scripts/bench-store-scale`.

/// The allocator exactly as `kith` sets it up (mimalloc, freed memory returned at once),
/// so that the queries and the ingest timed here run as in the daemon.
#[path = "../../../cli/src/alloc.rs"]
#[allow(dead_code)] // the runtimes' idle hook is the daemon's (the daemon measured is `kith`)
mod alloc;

use std::{path::PathBuf, time::Duration};

use kith_tests::{
    bench::arg,
    store_scale::{run, Options},
};

fn main() {
    alloc::purge_freed_memory_at_once();
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let kith = arg("--kith", String::new());
    let opts = Options {
        records: arg("--records", 100_000),
        queries: arg("--queries", 1_000),
        starts: arg("--starts", 3),
        idle: Duration::from_secs_f64(arg("--idle", 5.0)),
        kith: if kith.is_empty() { kith_tests::cli::kith_bin() } else { PathBuf::from(kith) },
        seed: arg("--seed", 1),
        keep_home: Some(arg("--keep-home", String::new()))
            .filter(|h| !h.is_empty())
            .map(PathBuf::from),
        segment_bytes: arg("--segment-bytes", kith_node::store::SEGMENT_BYTES),
        cache_mb: arg("--cache-mb", kith_node::config::DEFAULT_STORE_CACHE_MB),
        reuse: args.iter().any(|a| a == "--reuse"),
        settle_every: Duration::from_secs_f64(arg("--settle-every", 15.0)),
        settle_max: Duration::from_secs_f64(arg("--settle-max", 360.0)),
        build_only: args.iter().any(|a| a == "--build-only"),
        latencies: Some(arg("--latencies", String::new()))
            .filter(|f| !f.is_empty())
            .map(PathBuf::from),
    };
    let report = run(&opts);
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
}
