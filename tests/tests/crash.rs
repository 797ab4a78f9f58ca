//! Crash safety: a write the daemon acknowledged survives `kill -9`.
//!
//! Daemon A and daemon B are mutual connections. In each iteration a worker thread posts
//! and sends direct messages to B through the real `kith` command line, recording every
//! operation that was acknowledged (exit 0 and an id printed), while the main thread
//! sends SIGKILL to A after a random delay. A is restarted on the same home and must
//! start cleanly and list every acknowledged post (`kith feed --author A`) and message
//! (`kith msg thread B`).
//!
//! `KITH_CRASH_ITERATIONS` sets the number of kill/restart rounds (default 50);
//! `KITH_CRASH_SEED` replays the delays of an earlier run (its seed is printed).
//! Timing still varies from run to run, so a seed reproduces the delays, not the exact
//! moment each kill lands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use kith_tests::cli::{env_or, eventually, kith_bin, seed_from_env, Daemon};

const DEADLINE: Duration = Duration::from_secs(30);
/// Default number of kill/restart rounds.
const DEFAULT_ITERATIONS: usize = 50;
/// Each round kills A after a delay drawn uniformly from `0..MAX_KILL_DELAY_MS`.
const MAX_KILL_DELAY_MS: u64 = 150;
/// A worker stops after this many operations in one round (a few posts per round).
const MAX_OPS_PER_ROUND: usize = 16;
/// `--limit` of the final listings (the node's maximum).
const LIST_LIMIT: &str = "10000";

/// splitmix64: a tiny deterministic PRNG, enough to choose delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Post,
    Msg,
}

/// One operation the worker ran.
struct Done {
    op: Op,
    /// The id printed, when the command exited 0.
    id: Option<String>,
    /// Exit status and stderr, when it failed.
    error: Option<String>,
    ended: Instant,
}

/// Posts and messages B until told to stop or until `MAX_OPS_PER_ROUND`.
fn worker(home: PathBuf, peer: String, round: usize, stop: Arc<AtomicBool>) -> Vec<Done> {
    let mut done = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) && done.len() < MAX_OPS_PER_ROUND {
        n += 1;
        let op = if n % 2 == 1 { Op::Post } else { Op::Msg };
        let text = format!("round {round} op {n}");
        let mut cmd = Command::new(kith_bin());
        cmd.arg("--home").arg(&home).arg("--json");
        match op {
            Op::Post => cmd.args(["post", &text]),
            Op::Msg => cmd.args(["msg", "send", &peer, &text]),
        };
        let out = cmd.output().unwrap();
        let ended = Instant::now();
        let (id, error) = if out.status.success() {
            let id = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned))
                .filter(|id| !id.is_empty());
            let error = id
                .is_none()
                .then(|| format!("exit 0 without an id: {}", String::from_utf8_lossy(&out.stdout)));
            (id, error)
        } else {
            (None, Some(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())))
        };
        done.push(Done { op, id, error, ended });
    }
    // Ran out of operations: wait for the kill, so every round ends the same way.
    while !stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(5));
    }
    done
}

fn ids(values: &[serde_json::Value]) -> std::collections::HashSet<String> {
    values.iter().filter_map(|v| v["id"].as_str().map(str::to_owned)).collect()
}

/// Makes `a` and `b` mutual connections: `b` dials `a`, each follows the other.
fn befriend(a: &Daemon, b: &Daemon) {
    let (a_id, b_id) = (a.id(), b.id());
    assert_eq!(b.json(&["dial", &a.addr()])["ok"], true);
    assert_eq!(a.json(&["follow", &b_id])["ok"], true);
    assert_eq!(b.json(&["follow", &a_id])["ok"], true);
    for (d, other) in [(a, &b_id), (b, &a_id)] {
        eventually(DEADLINE, &format!("{} to see a mutual follow", d.name), || {
            d.lines(&["following"])
                .iter()
                .any(|f| f["id"] == other.as_str() && f["mutual"] == true)
                .then_some(())
        });
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let iterations: usize = env_or("KITH_CRASH_ITERATIONS", DEFAULT_ITERATIONS);
    let seed = seed_from_env("KITH_CRASH_SEED");
    println!("crash loop: {iterations} iterations, KITH_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();

    let mut a = Daemon::start("a");
    let b = Daemon::start("b");
    befriend(&a, &b);
    let (a_id, b_id) = (a.id(), b.id());

    let mut acked_posts = Vec::new();
    let mut acked_msgs = Vec::new();
    let (mut attempted, mut cut_short) = (0usize, 0usize);
    let mut unexpected = Vec::new();
    for round in 0..iterations {
        let delay = Duration::from_millis(rng.below(MAX_KILL_DELAY_MS));
        let stop = Arc::new(AtomicBool::new(false));
        let work = {
            let (home, peer, stop) = (a.home().to_owned(), b_id.clone(), stop.clone());
            thread::spawn(move || worker(home, peer, round, stop))
        };
        thread::sleep(delay);
        let killed_at = Instant::now();
        a.kill();
        stop.store(true, Ordering::SeqCst);
        let done = work.join().unwrap();

        attempted += done.len();
        for d in done {
            match (d.id, d.error) {
                (Some(id), _) => match d.op {
                    Op::Post => acked_posts.push(id),
                    Op::Msg => acked_msgs.push(id),
                },
                // Failed after the kill: expected, the daemon is gone.
                (None, Some(_)) if d.ended >= killed_at => cut_short += 1,
                (None, error) => unexpected.push(format!(
                    "round {round}: {:?} failed before the kill: {}",
                    d.op,
                    error.unwrap_or_default()
                )),
            }
        }

        let before_log = a.log();
        a.restart();
        let log = a.log();
        assert!(
            !log.contains("panicked") && !log.contains("ERROR"),
            "seed {seed} round {round}: restart was not clean:\n{log}\n--- log before the \
             kill:\n{before_log}"
        );
        assert_eq!(a.json(&["status"])["id"], a_id.as_str(), "seed {seed} round {round}");

        let feed = ids(&a.lines(&["feed", "--author", &a_id, "--limit", LIST_LIMIT]));
        let lost: Vec<_> = acked_posts.iter().filter(|id| !feed.contains(*id)).collect();
        assert!(
            lost.is_empty(),
            "seed {seed} round {round} (kill after {delay:?}): acknowledged posts lost: \
             {lost:?}\n--- log before the kill:\n{before_log}"
        );
        let thread = ids(&a.lines(&["msg", "thread", &b_id, "--limit", LIST_LIMIT]));
        let lost: Vec<_> = acked_msgs.iter().filter(|id| !thread.contains(*id)).collect();
        assert!(
            lost.is_empty(),
            "seed {seed} round {round} (kill after {delay:?}): acknowledged messages lost: \
             {lost:?}\n--- log before the kill:\n{before_log}"
        );
    }
    assert!(
        unexpected.is_empty(),
        "seed {seed}: operations failed while A was up: {unexpected:#?}"
    );

    // A's own log has no fork: a crash never made it reuse a seq.
    assert_eq!(a.json(&["profile", "show", &a_id])["forked"], false, "seed {seed}");
    let seqs: Vec<u64> = a
        .lines(&["feed", "--author", &a_id, "--limit", LIST_LIMIT])
        .iter()
        .filter_map(|p| p["seq"].as_u64())
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seqs.len(), "seed {seed}: two posts share a seq");
    let gaps = sorted.windows(2).filter(|w| w[1] != w[0] + 1).count();

    println!(
        "crash loop done: {iterations} kills, {attempted} operations attempted, {} posts and \
         {} messages acknowledged (none lost), {cut_short} failed once A was killed, {gaps} gaps \
         in A's post seqs, {:.1} s (seed {seed})",
        acked_posts.len(),
        acked_msgs.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A download cut by `kill -9` resumes after a restart from the chunks already on disk.
/// The source sends at most 1 MiB/s (`blob_upload_kib_s`), so the 4 MiB download is
/// caught in the middle.
#[test]
fn a_download_killed_with_sigkill_resumes() {
    let mut a = Daemon::start("a");
    let config = a.home().join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("blob_upload_kib_s = 1024\n");
    std::fs::write(&config, text).unwrap();
    a.restart();
    let mut b = Daemon::start("b");
    assert_eq!(b.json(&["dial", &a.addr()])["ok"], true);
    assert_eq!(b.json(&["follow", &a.id()])["ok"], true);

    let mut rng = Rng(7);
    let file: Vec<u8> = (0..4usize << 20).map(|_| rng.next() as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("data.bin");
    std::fs::write(&source, &file).unwrap();
    let id = a.json(&["post", "data", "--attach", source.to_str().unwrap()])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a_id = a.id();
    let hash = eventually(DEADLINE, "b to see the post", || {
        let feed = b.lines(&["feed", "--author", &a_id]);
        let post = feed.into_iter().find(|p| p["id"] == id.as_str())?;
        Some(post["attachments"][0]["hash"].as_str()?.to_owned())
    });

    let out = dir.path().join("got.bin");
    let mut getter = Command::new(kith_bin())
        .arg("--home")
        .arg(b.home())
        .args(["--json", "blob", "get", &hash, "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = b.home().join("blobs").join("partial").join(&hash);
    let chunk = 256 * 1024;
    eventually(DEADLINE, "the first chunk on b's disk", || {
        let on_disk = std::fs::read(&partial).ok()?;
        (on_disk.get(..chunk) == Some(&file[..chunk])).then_some(())
    });
    b.kill();
    let _ = getter.wait();
    assert!(!out.exists());

    b.restart();
    let got = b.json(&["blob", "get", &hash, "--out", out.to_str().unwrap()]);
    assert_eq!(got["size"], file.len());
    assert_eq!(std::fs::read(&out).unwrap(), file);
    // Only what was missing came after the restart.
    let fetched = b.json(&["status"])["blobs"]["chunks_fetched"].as_u64().unwrap();
    assert!(fetched < (file.len() / chunk) as u64, "{fetched} chunks fetched after the restart");
}
