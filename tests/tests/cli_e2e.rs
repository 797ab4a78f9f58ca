//! End to end: the real `kith` binary, three homes, three daemons, driven only through
//! the command line with `--json`. Daemons are killed when the test ends, pass or fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kith_tests::cli::{eventually, Daemon};

const DEADLINE: Duration = Duration::from_secs(30);

fn feed_ids(d: &Daemon, args: &[&str]) -> Vec<String> {
    let mut full = vec!["feed"];
    full.extend_from_slice(args);
    d.lines(&full).iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn three_daemons_post_follow_and_subscribe() {
    let a = Daemon::start("alice");
    let b = Daemon::start("bob");
    let c = Daemon::start("carol");
    let (a_id, b_id) = (a.id(), b.id());
    assert_eq!(b.json(&["dial", &a.addr()])["ok"], true);
    assert_eq!(c.json(&["dial", &a.addr()])["ok"], true);
    assert_eq!(b.json(&["follow", &a_id])["ok"], true);
    assert_eq!(c.json(&["subscribe", "#rust"])["ok"], true);
    assert_eq!(c.lines(&["tags"]), vec![serde_json::json!({"tag": "rust"})]);

    // The peers list shows both connections on A.
    eventually(DEADLINE, "alice to have 2 peers", || {
        (a.lines(&["peers"]).len() == 2).then_some(())
    });
    // A learns that B follows A (the follow record goes to A's topic too).
    eventually(DEADLINE, "alice to see bob's follow", || {
        let followers = a.lines(&["followers"]);
        followers.iter().any(|f| f["id"] == b_id.as_str() && f["mutual"] == false).then_some(())
    });
    // Wait until A's gossip mesh knows both subscribers before posting.
    eventually(DEADLINE, "alice's mesh", || {
        (a.json(&["status"])["mesh_peers"].as_u64().unwrap_or(0) >= 1).then_some(())
    });

    let post = a.json(&["post", "hello #rust"]);
    let id = post["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 64);
    eventually(DEADLINE, "bob to have alice's post", || {
        feed_ids(&b, &[]).contains(&id).then_some(())
    });
    eventually(DEADLINE, "carol to have the #rust post", || {
        feed_ids(&c, &["--tag", "rust"]).contains(&id).then_some(())
    });

    // Exactly once, with the contract's fields.
    let items = b.lines(&["feed", "--author", &a_id]);
    assert_eq!(items.iter().filter(|p| p["id"] == id.as_str()).count(), 1);
    let item = &items[0];
    for field in ["id", "author", "seq", "timestamp", "text", "tags", "reply_to"] {
        assert!(item.get(field).is_some(), "feed item lacks {field}: {item}");
    }
    assert_eq!(item["text"], "hello #rust");
    assert_eq!(item["tags"], serde_json::json!(["rust"]));
    assert_eq!(item["author"], a_id.as_str());
    assert_eq!(feed_ids(&c, &[]).iter().filter(|p| **p == id).count(), 1);

    // Mutual follow shows in following/followers.
    assert_eq!(a.json(&["follow", &b_id])["ok"], true);
    let following = a.lines(&["following"]);
    assert_eq!(following.len(), 1);
    assert_eq!(following[0]["id"], b_id.as_str());
    assert_eq!(following[0]["mutual"], true);

    // Profile from `init --name`.
    let profile = a.json(&["profile", "show"]);
    assert_eq!(profile["name"], "alice");
    let set = a.json(&["profile", "set", "--bio", "rustacean"]);
    assert_eq!(set["bio"], "rustacean");
    assert_eq!(set["name"], "alice");

    let status = a.json(&["status"]);
    assert_eq!(status["id"], a_id.as_str());
    assert!(status["peers"].as_u64().unwrap() >= 2);
}

#[test]
fn live_feed_streams_new_posts() {
    let a = Daemon::start("live");
    let mut child = std::process::Command::new(kith_tests::cli::kith_bin())
        .arg("--home")
        .arg(a.home())
        .args(["--json", "feed", "--live"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The live request may reach the daemon after the first post; post until one shows.
    let mut seen = None;
    for i in 0..20 {
        let id = a.json(&["post", &format!("live {i}")])["id"].as_str().unwrap().to_owned();
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            seen = Some((id, line));
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let (_, line) = seen.expect("no live post arrived");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(v["text"].as_str().unwrap().starts_with("live "));
}

/// `kith stop` while live streams are open (issue #16: every task of the node, control
/// connections included, is tracked and told to stop): the stop answers, the daemon
/// ends both streams, and a post acknowledged just before is there after a restart.
#[test]
fn stop_ends_live_streams_and_keeps_what_was_acknowledged() {
    let mut a = Daemon::start("stopping");
    let feed = a.stream(&["feed", "--live"]);
    let notes = a.stream(&["notifications", "--live"]);
    // The live request may reach the daemon after the first post; post until one shows.
    let mut last = String::new();
    for i in 0..20 {
        last =
            a.json(&["post", &format!("before the stop {i}")])["id"].as_str().unwrap().to_owned();
        if feed.try_next(Duration::from_millis(500)).is_some() {
            break;
        }
    }
    assert_eq!(a.json(&["stop"]), serde_json::json!({"ok": true}));
    assert!(feed.ends_within(Duration::from_secs(30)), "the live feed did not end");
    assert!(notes.ends_within(Duration::from_secs(30)), "live notifications did not end");
    a.restart();
    assert!(feed_ids(&a, &[]).contains(&last), "the acknowledged post is gone");
}

#[test]
fn second_daemon_on_one_home_is_refused_and_sigterm_is_clean() {
    let mut a = Daemon::start("solo");
    let out = a.run(&["daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    let id = a.json(&["post", "persisted"])["id"].as_str().unwrap().to_owned();
    assert!(a.terminate(), "daemon did not exit cleanly: {}", a.log());
    let out = a.run(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    a.restart();
    assert!(feed_ids(&a, &[]).contains(&id));
}

/// Bytes a terminal acts on: ESC, the C1 controls (UTF-8 `C2 80..C2 9F`), and CR.
fn terminal_controls(out: &[u8]) -> Vec<usize> {
    let c1 =
        out.windows(2).enumerate().filter(|(_, w)| w[0] == 0xc2 && (0x80..0xa0).contains(&w[1]));
    out.iter()
        .enumerate()
        .filter(|(_, b)| matches!(b, 0x1b | b'\r' | 0x07 | 0x08 | 0x7f))
        .map(|(i, _)| i)
        .chain(c1.map(|(i, _)| i))
        .collect()
}

#[test]
fn hostile_text_reaches_no_terminal_raw() {
    let a = Daemon::start("hostile");
    let text = "hi \x1b]52;c;cm0gLXJmIH4K\x07\x1b[2J\u{9b}31mthere\r2026-01-01 00:00  mallory";
    let name = "ali\u{202e}ec\u{200b}";
    let bio = "line\x1b]0;title\x07\nname  admin";
    let id = a.json(&["post", text])["id"].as_str().unwrap().to_owned();
    a.json(&["profile", "set", "--name", name, "--bio", bio]);

    // Human output: no escape sequences, and the body's own lines indented under it.
    let feed = a.run(&["feed"]);
    assert!(feed.status.success());
    assert_eq!(terminal_controls(&feed.stdout), Vec::<usize>::new(), "{:?}", feed.stdout);
    let feed = String::from_utf8(feed.stdout).unwrap();
    assert!(feed.contains("hi there\n    2026-01-01 00:00  mallory"), "{feed}");
    assert!(feed.contains("ali<U+202E>ec<U+200B> (…"), "{feed}");
    let profile = a.run(&["profile", "show"]);
    assert_eq!(terminal_controls(&profile.stdout), Vec::<usize>::new());
    let profile = String::from_utf8(profile.stdout).unwrap();
    assert!(profile.contains("name  ali<U+202E>ec<U+200B>\n"), "{profile}");
    assert!(profile.contains("bio   line\n      name  admin"), "{profile}");

    // JSON keeps the exact text, escaped so that no terminal acts on it either.
    let raw = a.run(&["--json", "feed"]);
    assert_eq!(terminal_controls(&raw.stdout), Vec::<usize>::new());
    let items = a.lines(&["feed"]);
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["text"], text);
}

/// `scripts/bench-store-scale` at a small N: the store is built through ingest, every
/// query kind answers, the real daemon starts on the home, and the JSON has every figure
/// the issue names with a sane value (no timing thresholds: correctness only).
#[test]
fn store_scale_benchmark_runs_and_reports_every_figure() {
    use kith_tests::store_scale::{run, Options};
    let kept = tempfile::tempdir().unwrap();
    let opts = Options {
        records: 2_000,
        queries: 20,
        starts: 1,
        idle: Duration::from_millis(200),
        kith: kith_tests::cli::kith_bin(),
        seed: 3,
        keep_home: Some(kept.path().join("home")),
        segment_bytes: kith_node::store::SEGMENT_BYTES,
        cache_mb: 8,
        reuse: false,
        settle_every: Duration::from_millis(100),
        settle_max: Duration::from_secs(2),
        build_only: false,
        latencies: None,
    };
    let report: serde_json::Value = serde_json::from_str(&run(&opts).to_json()).unwrap();
    let num = |name: &str| {
        report[name].as_f64().unwrap_or_else(|| panic!("no number {name} in {report}"))
    };
    let records = num("records");
    assert!((2_000.0..2_500.0).contains(&records), "{report}");
    assert!(num("offered") >= records, "{report}");
    for name in [
        "ingest_per_s",
        "timeline_p99_ms",
        "tag_p99_ms",
        "author_p99_ms",
        "thread_p99_ms",
        "notifications_p99_ms",
        "restart_ms",
        "restart_after_kill_ms",
        "rss_mb",
        "rss_after_use_mb",
    ] {
        let v = num(name);
        assert!(v.is_finite() && v > 0.0, "{name} = {v}: {report}");
    }
    // Every kind of query found something (pages deep in a feed may hold fewer than
    // 50 items; the latest notifications are a full page).
    for name in ["timeline_items", "tag_items", "author_items", "thread_items"] {
        assert!(num(name) >= 1.0, "{name}: {report}");
    }
    assert_eq!(num("notifications_items"), 50.0, "{report}");
    // The store holds at least the signed bytes of its records.
    let (disk, raw) = (num("disk_bytes_per_record"), num("raw_bytes_per_record"));
    assert!(raw > 100.0 && raw < 1_000.0, "{report}");
    assert!(disk >= raw, "{report}");
    assert!(num("disk_bytes_per_record_before_queries") >= raw, "{report}");
    // At rest: the store read while a daemon ran on it (settled or not in the short
    // bound here), the daemon's posts stored.
    let rest = num("disk_bytes_per_record_at_rest");
    assert!(rest >= raw && rest.is_finite(), "{report}");
    assert!(num("heap_bytes_at_rest") > 0.0 && num("at_rest_s") > 0.0, "{report}");
    assert!(report["at_rest_settled"].is_boolean(), "{report}");
    assert!(report["at_rest_samples"].as_array().is_some_and(|s| s.len() >= 2), "{report}");
    // Where the bytes go: the record heap's live frames hold the records' signed bytes,
    // and sled's `record_locs` one location per record.
    let trees = report["trees"].as_array().unwrap_or_else(|| panic!("no trees: {report}"));
    let tree = |name: &str| {
        trees.iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no {name}: {report}"))
    };
    let heap = tree("heap live");
    assert!(heap["bytes"].as_f64().unwrap() >= records * raw, "{report}");
    assert_eq!(heap["entries"].as_f64(), Some(records), "{report}");
    assert_eq!(tree("record_locs")["entries"].as_f64(), Some(records), "{report}");
    // The kept home measured again, not built: the same records, every query answered
    // from the saved targets.
    let again = run(&Options { reuse: true, ..opts });
    let again: serde_json::Value = serde_json::from_str(&again.to_json()).unwrap();
    // The same records, the posts the daemon made at rest, and the few it made of its
    // own (its device and mailbox lists).
    let again_records = again["records"].as_f64().unwrap_or(0.0);
    let posts = num("at_rest_posts");
    assert!(posts >= 1.0, "{report}");
    assert!((records + posts..=records + posts + 4.0).contains(&again_records), "{again}");
    assert_eq!(again["offered"].as_f64(), Some(0.0), "{again}");
    for name in ["timeline_items", "tag_items", "author_items", "thread_items"] {
        assert!(again[name].as_f64().is_some_and(|n| n >= 1.0), "{name}: {again}");
    }
}
