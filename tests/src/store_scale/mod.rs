//! The store at scale (`scripts/bench-store-scale`): a kith home whose store holds N
//! records of a realistic mix ([`gen`]), built through the node's real ingest path; then
//! the queries a person makes, timed through the node's request handler in this process
//! ([`measure`]), and the real `kith daemon` started on that home: time until it answers
//! `kith status`, and its resident memory once idle, before and after it served queries.
//! The home's store on disk is compared with the signed bytes of the records it holds,
//! right after the build and at rest ([`rest`]: after a daemon ran on it until its size
//! settled).

pub mod gen;
pub mod measure;
pub mod rest;

use std::{path::PathBuf, time::Duration};

use kith_node::{home::Home, ingest::Admission, store::Store};

/// What to build and measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Records the store should hold.
    pub records: u64,
    /// Queries of each kind timed.
    pub queries: usize,
    /// Daemon starts timed.
    pub starts: usize,
    /// How long the daemon idles before its memory is read.
    pub idle: Duration,
    /// The `kith` binary.
    pub kith: PathBuf,
    /// The generator's seed.
    pub seed: u64,
    /// Where to build the home (kept); a temporary folder when `None`.
    pub keep_home: Option<PathBuf>,
    /// sled's segment size for the new store (the store's default, or an older one to
    /// compare).
    pub segment_bytes: usize,
    /// The store's cache, MiB, for the queries and the daemon (`store_cache_mb`).
    pub cache_mb: u64,
    /// Measure the home in `keep_home` again when a run before built it (its query
    /// targets saved beside it) rather than building it anew.
    pub reuse: bool,
    /// At rest ([`rest::settle`]): how often the store's blocks are read while a daemon
    /// runs on it (settled: they changed by less than 1 % over four of these, and at
    /// least eight were read).
    pub settle_every: Duration,
    /// At rest: how long the daemon runs at most when the store does not settle.
    pub settle_max: Duration,
    /// Stop after the build (and `disk_bytes_before_queries`): a kept home to study as
    /// the build left it.
    pub build_only: bool,
    /// Where to write every query's time (`kind index ms`, one a line, in the order
    /// timed), to see where the slow ones fall.
    pub latencies: Option<std::path::PathBuf>,
}

/// The file in a kept home where the query targets are saved.
const SAMPLES_FILE: &str = "bench-samples.txt";

/// The p50 and p99 of one kind of query, ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Items returned on average.
    pub mean_items: f64,
}

/// The figures.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Records the store holds.
    pub records: u64,
    /// Records offered to ingest (some are not kept).
    pub offered: u64,
    /// Records stored as new (some were deleted or evicted since).
    pub stored_new: u64,
    /// Records offered but not kept.
    pub unwanted: u64,
    /// Records offered per second of ingest (checks, keep decision, store, notifications,
    /// a flush per chunk of 4,096).
    pub ingest_per_s: f64,
    /// Seconds of ingest.
    pub ingest_s: f64,
    /// Seconds signing (not part of ingest).
    pub signing_s: f64,
    /// Home timeline, 50 items, random pages.
    pub timeline: Latency,
    /// A hashtag's posts, 50 items, random pages.
    pub tag: Latency,
    /// An author's posts, 50 items, random pages.
    pub author: Latency,
    /// A conversation.
    pub thread: Latency,
    /// The latest 50 notifications.
    pub notifications: Latency,
    /// Index pages read from sled's log during the timed queries (cache misses, and the
    /// pages sled's cleaner read to move them meanwhile).
    pub query_log_page_reads: u64,
    /// Reads of an index page during the timed queries that waited for the page's
    /// bytes to reach sled's log file (pages its cleaner had just moved).
    pub query_log_read_waits: u64,
    /// Their wait in all, ms.
    pub query_log_read_wait_ms: f64,
    /// Median time from starting `kith daemon` until it answers `kith status`, ms.
    pub restart_ms: f64,
    /// The slowest start, ms.
    pub restart_max_ms: f64,
    /// A start after the daemon was killed with SIGKILL, ms.
    pub restart_after_kill_ms: f64,
    /// The store's files, bytes allocated on disk.
    pub disk_bytes: u64,
    /// `disk_bytes` per stored record.
    pub disk_bytes_per_record: f64,
    /// The store's files, bytes allocated on disk, right after the build, before the
    /// queries (`disk_bytes` is read after them: a node ran on the home meanwhile).
    pub disk_bytes_before_queries: u64,
    /// `disk_bytes_before_queries` per stored record.
    pub disk_bytes_per_record_before_queries: f64,
    /// Signed bytes of the stored records, per record.
    pub raw_bytes_per_record: f64,
    /// Resident memory of the idle daemon, MiB.
    pub rss_mb: f64,
    /// Resident memory of the same daemon idle again (as long as before) after it served
    /// `queries` queries of each kind through its control socket, MiB.
    pub rss_after_use_mb: f64,
    /// Threads ingest and signing ran on.
    pub threads: usize,
    /// sled's segment size in the store.
    pub segment_bytes: usize,
    /// Per tree with entries: name, entries, bytes of keys and values (and the record
    /// heap's live frames, as `heap live`).
    pub trees: Vec<(String, u64, u64)>,
    /// The record heap's files, bytes (dead frames included; part of `disk_bytes`).
    pub heap_file_bytes: u64,
    /// The store's files, bytes allocated on disk, at rest: after a daemon ran on the
    /// home (posting now and then) until they settled ([`rest::settle`]).
    pub disk_bytes_at_rest: u64,
    /// `disk_bytes_at_rest` per record (the daemon's posts counted).
    pub disk_bytes_per_record_at_rest: f64,
    /// The record heap's files at rest, bytes allocated on disk (part of
    /// `disk_bytes_at_rest`).
    pub heap_bytes_at_rest: u64,
    /// Seconds the daemon ran until the store settled (or `settle_max`).
    pub at_rest_s: f64,
    /// CPU seconds the daemon used meanwhile (after it answered `kith status`).
    pub at_rest_cpu_s: f64,
    /// Whether the store settled within `settle_max`.
    pub at_rest_settled: bool,
    /// Posts the daemon made meanwhile (`kith post`; stored, so counted as records).
    pub at_rest_posts: u64,
    /// The store's blocks read meanwhile, `settle_every` apart, bytes.
    pub at_rest_samples: Vec<u64>,
}

impl Report {
    /// One line of JSON, every figure under its name.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::json!({
            "records": self.records,
            "offered": self.offered,
            "stored_new": self.stored_new,
            "unwanted": self.unwanted,
            "ingest_per_s": round(self.ingest_per_s, 0),
            "ingest_s": round(self.ingest_s, 3),
            "signing_s": round(self.signing_s, 3),
            "query_log_page_reads": self.query_log_page_reads,
            "query_log_read_waits": self.query_log_read_waits,
            "query_log_read_wait_ms": round(self.query_log_read_wait_ms, 2),
            "restart_ms": round(self.restart_ms, 1),
            "restart_max_ms": round(self.restart_max_ms, 1),
            "restart_after_kill_ms": round(self.restart_after_kill_ms, 1),
            "disk_bytes": self.disk_bytes,
            "disk_bytes_per_record": round(self.disk_bytes_per_record, 1),
            "disk_bytes_before_queries": self.disk_bytes_before_queries,
            "disk_bytes_per_record_before_queries":
                round(self.disk_bytes_per_record_before_queries, 1),
            "raw_bytes_per_record": round(self.raw_bytes_per_record, 1),
            "rss_mb": round(self.rss_mb, 1),
            "rss_after_use_mb": round(self.rss_after_use_mb, 1),
            "threads": self.threads,
            "segment_bytes": self.segment_bytes,
            "heap_file_bytes": self.heap_file_bytes,
            "disk_bytes_at_rest": self.disk_bytes_at_rest,
            "disk_bytes_per_record_at_rest": round(self.disk_bytes_per_record_at_rest, 1),
            "heap_bytes_at_rest": self.heap_bytes_at_rest,
            "at_rest_s": round(self.at_rest_s, 1),
            "at_rest_cpu_s": round(self.at_rest_cpu_s, 2),
            "at_rest_settled": self.at_rest_settled,
            "at_rest_posts": self.at_rest_posts,
            "at_rest_samples": self.at_rest_samples,
            "trees": self.trees.iter().map(|(name, entries, bytes)| {
                serde_json::json!({"name": name, "entries": entries, "bytes": bytes})
            }).collect::<Vec<_>>(),
        });
        for (name, l) in self.latencies() {
            v[format!("{name}_p99_ms")] = round(l.p99_ms, 3).into();
            v[format!("{name}_p50_ms")] = round(l.p50_ms, 3).into();
            v[format!("{name}_items")] = round(l.mean_items, 1).into();
        }
        v.to_string()
    }

    fn latencies(&self) -> [(&'static str, Latency); 5] {
        [
            ("timeline", self.timeline),
            ("tag", self.tag),
            ("author", self.author),
            ("thread", self.thread),
            ("notifications", self.notifications),
        ]
    }

    /// The figures for a person to read.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "records            {} in the store ({} offered to ingest, {} new, {} not kept)\n\
             ingest             {:.0} records/s ({:.1} s on {} threads; signing took {:.1} s more)\n",
            self.records,
            self.offered,
            self.stored_new,
            self.unwanted,
            self.ingest_per_s,
            self.ingest_s,
            self.threads,
            self.signing_s
        );
        for (name, l) in self.latencies() {
            out.push_str(&format!(
                "{:<18} p50 {:.2} ms, p99 {:.2} ms ({:.1} items on average)\n",
                name, l.p50_ms, l.p99_ms, l.mean_items
            ));
        }
        out.push_str(&format!(
            "restart            {:.0} ms median, {:.0} ms slowest (kith daemon until kith status answers); \
             {:.0} ms after kill -9\n\
             disk               {:.0} bytes/record ({} bytes) vs {:.0} bytes/record of signed records ({:.2}x), after the queries\n\
             disk               {:.0} bytes/record ({} bytes) right after the build, before the queries\n\
             disk at rest       {:.0} bytes/record ({} bytes, record heap {}; {:.2}x) after a daemon ran {:.0} s ({}), {:.1} s of CPU\n\
             idle daemon RSS    {:.1} MiB; {:.1} MiB idle after serving the queries again\n",
            self.restart_ms,
            self.restart_max_ms,
            self.restart_after_kill_ms,
            self.disk_bytes_per_record,
            self.disk_bytes,
            self.raw_bytes_per_record,
            self.disk_bytes_per_record / self.raw_bytes_per_record.max(1.0),
            self.disk_bytes_per_record_before_queries,
            self.disk_bytes_before_queries,
            self.disk_bytes_per_record_at_rest,
            self.disk_bytes_at_rest,
            self.heap_bytes_at_rest,
            self.disk_bytes_per_record_at_rest / self.raw_bytes_per_record.max(1.0),
            self.at_rest_s,
            if self.at_rest_settled { "settled" } else { "NOT settled" },
            self.at_rest_cpu_s,
            self.rss_mb,
            self.rss_after_use_mb
        ));
        let live: u64 = self.trees.iter().map(|t| t.2).sum();
        out.push_str(&format!(
            "sled segments      {} bytes; record heap files {} bytes; keys and values \
             {:.0} bytes/record, of which:\n",
            self.segment_bytes,
            self.heap_file_bytes,
            live as f64 / self.records.max(1) as f64
        ));
        for (name, entries, bytes) in &self.trees {
            out.push_str(&format!(
                "  {:<16} {:>10} entries {:>7.1} bytes/record\n",
                name,
                entries,
                *bytes as f64 / self.records.max(1) as f64
            ));
        }
        out
    }
}

/// Sets the daemon's `store_cache_mb` in the home's configuration (the only setting there).
fn set_cache(home: &Home, cache_mb: u64) {
    std::fs::write(home.config_path(), format!("store_cache_mb = {cache_mb}\n"))
        .expect("the configuration is written");
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// Builds the home and measures it; progress goes to stderr.
///
/// # Panics
/// On any failure (a benchmark has no one to report an error to but its user).
pub fn run(opts: &Options) -> Report {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = opts.keep_home.clone().unwrap_or_else(|| tmp.path().join("home"));
    let home = Home::new(&dir);
    let samples = dir.join(SAMPLES_FILE);
    let reuse = opts.reuse && samples.exists() && home.has_identity();
    home.ensure_dir().expect("the home folder");
    let me = if reuse {
        home.load_identity().expect("the kept home's identity")
    } else {
        home.create_identity().expect("an identity")
    };
    let mut report = Report {
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        ..Report::default()
    };

    let store =
        Store::open_with_segments(&home.store_path(), opts.segment_bytes).expect("the store opens");
    report.segment_bytes = opts.segment_bytes;
    let admission = Admission::new(me.id());
    // Dated up to a minute ago: the daemon started later must not find them in its future.
    let end = crate::now_ms().saturating_sub(60_000);
    let mut stream = gen::Stream::new(me.clone(), opts.seed, opts.records, end);
    let mut tally = gen::Ingested::default();
    if reuse {
        eprintln!("bench-store-scale: measuring the kept home {} again", dir.display());
        stream.load_samples(&samples);
    } else {
        stream.set_up(&store, &admission, &mut tally);
        let every = (opts.records / 10).max(1);
        let mut next = every;
        stream.fill(&store, &admission, opts.records, &mut tally, |stored| {
            if stored >= next {
                eprintln!("bench-store-scale: {stored} records stored");
                next = stored + every;
            }
        });
        stream.forget_erased(&store);
        if opts.keep_home.is_some() {
            stream.save_samples(&samples);
        }
    }
    set_cache(&home, opts.cache_mb);
    let (records, raw) = store.record_bytes().expect("the records read back");
    let trees = store.tree_sizes().expect("the trees read back");
    report.trees = trees.into_iter().filter(|t| t.1 > 0).collect();
    report.heap_file_bytes = store.heap_file_bytes().map_or(0, |(_, bytes)| bytes);
    drop(store);
    report.records = records;
    report.offered = tally.offered;
    report.stored_new = tally.new;
    report.unwanted = tally.unwanted;
    report.ingest_s = tally.seconds;
    report.signing_s = tally.signing_seconds;
    report.ingest_per_s = tally.offered as f64 / tally.seconds.max(1e-9);
    report.raw_bytes_per_record = raw as f64 / records.max(1) as f64;
    report.disk_bytes_before_queries = measure::disk_bytes(&home.store_path());
    report.disk_bytes_per_record_before_queries =
        report.disk_bytes_before_queries as f64 / records.max(1) as f64;
    if opts.build_only {
        return report;
    }

    measure::queries(&home, &me, &stream, opts, &mut report);
    report.disk_bytes = measure::disk_bytes(&home.store_path());
    report.disk_bytes_per_record = report.disk_bytes as f64 / records.max(1) as f64;
    measure::daemon(&home, &stream, opts, &mut report);
    rest::settle(&home, opts, &mut report);
    report
}
