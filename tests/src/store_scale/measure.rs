//! The measurements of the scale benchmark: queries through the node's request handler,
//! the store's size on disk, and the real daemon's start time and idle memory.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use kith_node::{
    api::{Request, Response},
    control,
    home::Home,
    Node,
};
use kith_protocol::{Keypair, RecordId};

use super::{
    gen::{Stream, FOLLOWED, TAGS},
    Latency, Options, Report,
};
use crate::sim_core::SimRng;

/// Items per page, as the issue asks.
const PAGE: usize = 50;

/// Times `opts.queries` queries of each kind against a node started in this process on
/// `home` (its store as the daemon opens it, the network on 127.0.0.1 only).
///
/// # Panics
/// When the node does not start or a query fails.
pub fn queries(home: &Home, me: &Keypair, stream: &Stream, opts: &Options, report: &mut Report) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let config = crate::local_config(0, opts.cache_mb);
        let (node, tasks) = start(home, me, &config).await;
        let reads_before = node.store().log_reads();
        let mut rng = SimRng::new(opts.seed ^ 0x9e37);
        let n = opts.queries;
        let mut all = String::new();
        let began = Instant::now();
        let mut timed = |kind: Kind, times: Vec<Timed>, latency: Latency| {
            for (i, (ms, at, pages)) in times.iter().enumerate() {
                let since = at.duration_since(began).as_secs_f64();
                all.push_str(&format!("{kind:?} {i} {ms:.3} {since:.3} {pages}\n"));
            }
            latency
        };
        let (times, latency) =
            time(&node, n, |i| request(Kind::Timeline, stream, &mut rng, i)).await;
        report.timeline = timed(Kind::Timeline, times, latency);
        let (times, latency) = time(&node, n, |i| request(Kind::Tag, stream, &mut rng, i)).await;
        report.tag = timed(Kind::Tag, times, latency);
        let (times, latency) = time(&node, n, |i| request(Kind::Author, stream, &mut rng, i)).await;
        report.author = timed(Kind::Author, times, latency);
        let (times, latency) = time(&node, n, |i| request(Kind::Thread, stream, &mut rng, i)).await;
        report.thread = timed(Kind::Thread, times, latency);
        let (times, latency) =
            time(&node, n, |i| request(Kind::Notifications, stream, &mut rng, i)).await;
        report.notifications = timed(Kind::Notifications, times, latency);
        let reads = node.store().log_reads();
        report.query_log_page_reads = reads.pages - reads_before.pages;
        report.query_log_read_waits = reads.waits - reads_before.waits;
        report.query_log_read_wait_ms = (reads.waited - reads_before.waited).as_secs_f64() * 1e3;
        if let Some(file) = &opts.latencies {
            std::fs::write(file, all).expect("the latencies written");
        }
        node.shutdown().await.expect("the node stops");
        tasks.join().await;
        drop(node);
    });
}

/// The kinds of query, in the order they are timed.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Timeline,
    Tag,
    Author,
    Thread,
    Notifications,
}

/// The `i`th query of `kind`: a page of 50 at a random cursor for the feeds, a thread of
/// the mix (in turn), the latest 50 notifications.
fn request(kind: Kind, stream: &Stream, rng: &mut SimRng, i: usize) -> Request {
    let posts = &stream.posts;
    match kind {
        Kind::Timeline => Request::Feed {
            tag: None,
            author: None,
            limit: Some(PAGE),
            live: false,
            before: cursor(rng, posts.iter().map(|p| p.id)),
        },
        Kind::Tag => {
            let tag = rng.index(TAGS);
            let with_tag = posts.iter().filter(|p| p.tag == Some(tag));
            Request::Feed {
                tag: Some(stream.tag(tag).to_string()),
                author: None,
                limit: Some(PAGE),
                live: false,
                before: cursor(rng, with_tag.map(|p| p.id)),
            }
        }
        Kind::Author => {
            let author = rng.index(FOLLOWED);
            let theirs = posts.iter().filter(|p| p.author == author);
            Request::Feed {
                tag: None,
                author: Some(stream.author_id(author).to_string()),
                limit: Some(PAGE),
                live: false,
                before: cursor(rng, theirs.map(|p| p.id)),
            }
        }
        Kind::Thread => Request::Thread {
            id: stream
                .threads
                .get(i % stream.threads.len().max(1))
                .map_or_else(|| posts[rng.index(posts.len())].id.to_string(), |id| id.to_string()),
        },
        Kind::Notifications => {
            Request::Notifications { live: false, unread: false, limit: Some(PAGE) }
        }
    }
}

/// `None` (the first page) one time in five, else one of `ids` at random (a page deep
/// in the feed).
fn cursor(rng: &mut SimRng, ids: impl Iterator<Item = RecordId>) -> Option<String> {
    if rng.chance(200) {
        return None;
    }
    // Only the chosen id is written out: the ids of 100,000 posts as text for every query
    // took more CPU than the queries timed.
    let ids: Vec<RecordId> = ids.collect();
    (!ids.is_empty()).then(|| ids[rng.index(ids.len())].to_string())
}

async fn start(
    home: &Home,
    me: &Keypair,
    config: &kith_node::config::Config,
) -> (Node, kith_node::NodeTasks) {
    // The store just closed may be held a moment longer by sled's flusher.
    let mut tries = 0;
    loop {
        match Node::start(home, me.clone(), config).await {
            Ok(started) => return started,
            Err(kith_node::NodeError::Store(kith_node::store::StoreError::Locked { .. }))
                if tries < 100 =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the node does not start: {e}"),
        }
    }
}

/// One request timed: its time, ms, its start, and the pages sled read from its log for it.
type Timed = (f64, Instant, u64);

/// Times `n` requests made by `request(i)`, one after the other: each one's time, ms,
/// start and pages read, in order, and their quantiles. A request that comes back empty where items are
/// expected is counted as it is (the latency is what was measured), but an error reply
/// stops the benchmark: its figures would mean nothing.
async fn time(
    node: &Node,
    n: usize,
    mut request: impl FnMut(usize) -> Request,
) -> (Vec<Timed>, Latency) {
    let mut in_order = Vec::with_capacity(n);
    let mut items = 0usize;
    for i in 0..n {
        let req = request(i);
        let pages = node.store().log_reads().pages;
        let t = Instant::now();
        let reply = node.handle(req.clone()).await;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        in_order.push((ms, t, node.store().log_reads().pages - pages));
        items += match reply {
            Response::Feed { items, .. } => items.len(),
            Response::Conversation { entries, .. } => entries.len(),
            Response::Notifications { entries } => entries.len(),
            Response::Error { message, .. } => panic!("{req:?} failed: {message}"),
            other => panic!("{req:?}: unexpected reply {other:?}"),
        };
    }
    let mut times: Vec<f64> = in_order.iter().map(|&(ms, ..)| ms).collect();
    let latency = Latency {
        p50_ms: quantile(&mut times, 0.50),
        p99_ms: quantile(&mut times, 0.99),
        mean_items: items as f64 / n.max(1) as f64,
    };
    (in_order, latency)
}

/// The `q` quantile of `xs` (nearest rank); 0 for none.
pub fn quantile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let rank = ((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

/// Bytes allocated on disk by the files under `dir`.
pub fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total += disk_bytes(&entry.path());
        } else {
            total += meta.blocks() * 512;
        }
    }
    total
}

/// Starts the real daemon on `home` `opts.starts` times, timing each start until
/// `kith status` answers; after the last, reads its resident memory once idle, then again
/// once idle after it served a burst of queries ([`serve_burst`]). Then kills it with
/// SIGKILL once started and times the start after that.
///
/// # Panics
/// When the daemon does not answer within a minute, or a query of the burst fails.
pub fn daemon(home: &Home, stream: &Stream, opts: &Options, report: &mut Report) {
    let mut times = Vec::new();
    for i in 0..opts.starts.max(1) {
        let (mut child, took) = start_daemon(home, opts);
        times.push(took.as_secs_f64() * 1e3);
        if i + 1 == opts.starts.max(1) {
            std::thread::sleep(opts.idle);
            report.rss_mb = crate::bench::rss_kib_of(child.id()) as f64 / 1024.0;
            serve_burst(home, stream, opts);
            std::thread::sleep(opts.idle);
            report.rss_after_use_mb = crate::bench::rss_kib_of(child.id()) as f64 / 1024.0;
        }
        terminate(&mut child);
    }
    report.restart_max_ms = times.iter().copied().fold(0.0, f64::max);
    report.restart_ms = quantile(&mut times, 0.5);
    // After kill -9: what a start costs when the store was not closed cleanly.
    let (mut child, _) = start_daemon(home, opts);
    let _ = child.kill();
    let _ = child.wait();
    let (mut child, took) = start_daemon(home, opts);
    report.restart_after_kill_ms = took.as_secs_f64() * 1e3;
    terminate(&mut child);
}

/// Sends the running daemon `opts.queries` queries of each kind, the kinds in turn, each
/// on a connection of its own to the control socket as `kith feed`, `kith thread` and
/// `kith notifications` make them (a different seed from the timed queries'); their
/// replies are read and dropped.
fn serve_burst(home: &Home, stream: &Stream, opts: &Options) {
    let kinds = [Kind::Timeline, Kind::Tag, Kind::Author, Kind::Thread, Kind::Notifications];
    let mut rng = SimRng::new(opts.seed ^ 0x5eed_b057);
    let socket = home.socket_path();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        for i in 0..opts.queries {
            for kind in kinds {
                let req = request(kind, stream, &mut rng, i);
                let mut client =
                    control::Client::connect(&socket).await.expect("the daemon's socket");
                match client.call(&req).await.expect("the daemon answers") {
                    Response::Error { message, .. } => panic!("{req:?} failed: {message}"),
                    _reply => {}
                }
            }
        }
    });
}

pub(super) fn start_daemon(home: &Home, opts: &Options) -> (Child, Duration) {
    let log = std::fs::File::create(home.dir().join("daemon.log")).expect("a log file");
    let t = Instant::now();
    let mut child = Command::new(&opts.kith)
        .arg("--home")
        .arg(home.dir())
        .args(["daemon", "--no-mdns", "--no-web", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("kith daemon starts");
    loop {
        let status = Command::new(&opts.kith)
            .arg("--home")
            .arg(home.dir())
            .arg("status")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("kith status runs");
        if status.success() {
            return (child, t.elapsed());
        }
        if let Ok(Some(exit)) = child.try_wait() {
            let log = std::fs::read_to_string(home.dir().join("daemon.log")).unwrap_or_default();
            panic!("kith daemon exited ({exit}): {log}");
        }
        assert!(t.elapsed() < Duration::from_secs(60), "kith daemon did not answer in a minute");
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub(super) fn terminate(child: &mut Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}
