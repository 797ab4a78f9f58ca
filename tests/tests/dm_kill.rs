//! `kill -9` during direct messages on Olm sessions (issue #17, crash safety).
//!
//! Daemons A and B are mutual connections whose devices are announced, so their
//! messages go on `/kith/dm/2`. Two worker threads send messages through the real `kith`
//! command line, A to B and B to A, while the main thread sends SIGKILL to A or to B
//! (chosen at random) after a random delay, then restarts it with `--bootstrap` at the
//! one that stayed up (a restarted daemon listens on a new OS-chosen port). A send cut
//! by the kill is looked up in its sender's thread after the restart: stored, it counts
//! as sent; not stored, it is sent again. At the end every message is in both threads
//! exactly once, delivered, no outbox holds anything, no node asked for a new session
//! (a kill never made a session lose its place), and the stores show the messages went
//! on Olm sessions.
//!
//! `KITH_DM_KILL_MESSAGES` sets the messages each way (default 500); `KITH_DM_KILL_SEED`
//! replays the kill choices and delays of an earlier run (its seed is printed);
//! `KITH_DM_KILL_LOGS=DIR` keeps the daemons' last logs there when an outbox does not
//! empty. Timing
//! still varies, so a seed reproduces the choices, not the exact moment each kill lands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use kith_node::store::Store;
use kith_tests::{
    cli::{befriend, env_or, kith_bin, seed_from_env, Daemon},
    sim::Rng,
};

const DEADLINE: Duration = Duration::from_secs(30);
/// Default number of messages each way.
const DEFAULT_MESSAGES: usize = 500;
/// Each round kills a daemon after a delay drawn from `MIN_KILL_DELAY_MS..MAX_KILL_DELAY_MS`.
const MIN_KILL_DELAY_MS: usize = 50;
const MAX_KILL_DELAY_MS: usize = 600;
/// The whole run must end within this (kills, restarts and the final delivery).
const RUN_DEADLINE: Duration = Duration::from_secs(600);
/// How long both outboxes may take to empty once every message was sent (the longest
/// retry delay is 60 s, and a lane goes at once when its peer connects).
const OUTBOX_DEADLINE: Duration = Duration::from_secs(120);
/// Lines of a daemon's log shown when its outbox does not empty.
const REPORT_LINES: usize = 60;
/// `--limit` of the final listings (the node's maximum).
const LIST_LIMIT: &str = "10000";
/// Lines of a daemon's log that mean a session lost its place: a peer could not open a
/// message and asked for a new session.
const SESSION_LOST: [&str; 2] = ["asks for a new session", "no session opens a message"];

/// The text of message `i` from `who`.
fn text(who: &str, i: usize) -> String {
    format!("{who} {i}")
}

/// What one worker's round did: the messages acknowledged (index, id) and the one cut
/// short, if any (its index and why).
#[derive(Default)]
struct Sent {
    acked: Vec<(usize, String)>,
    cut: Option<(usize, String, Instant)>,
}

/// Sends `who`'s messages `from..total` to `peer` until told to stop or a send fails.
fn worker(
    home: std::path::PathBuf,
    who: &'static str,
    peer: String,
    (from, total): (usize, usize),
    stop: Arc<AtomicBool>,
) -> Sent {
    let mut sent = Sent::default();
    for i in from..total {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let out = Command::new(kith_bin())
            .arg("--home")
            .arg(&home)
            .args(["--json", "msg", "send", &peer, &text(who, i)])
            .output()
            .unwrap();
        let id = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        match id {
            Some(id) if out.status.success() => sent.acked.push((i, id)),
            _ => {
                let why =
                    format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
                sent.cut = Some((i, why, Instant::now()));
                break;
            }
        }
    }
    sent
}

/// One side of the conversation.
struct Side {
    who: &'static str,
    daemon: Daemon,
    id: String,
    /// The next message to send.
    next: usize,
    /// Its log lines that say a session was lost, over every run.
    lost_sessions: Vec<String>,
}

impl Side {
    /// Reads this run's log for lost sessions and panics.
    fn check_log(&mut self, seed: u64) {
        let log = self.daemon.log();
        assert!(!log.contains("panicked"), "seed {seed}: {} panicked:\n{log}", self.who);
        self.lost_sessions.extend(
            log.lines().filter(|l| SESSION_LOST.iter().any(|s| l.contains(s))).map(str::to_owned),
        );
    }

    /// What to show when its outbox does not empty: status, and the end of its log.
    fn report(&self) -> String {
        let status = self.daemon.json(&["status"]);
        let log = self.daemon.log();
        if let Ok(dir) = std::env::var("KITH_DM_KILL_LOGS") {
            let _ = std::fs::write(std::path::Path::new(&dir).join(self.who), &log);
        }
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(REPORT_LINES)..].join("\n");
        format!("--- {}: status {status}\n--- the end of its log:\n{tail}", self.who)
    }

    /// This side's thread with `peer`, oldest first.
    fn thread(&self, peer: &str) -> Vec<serde_json::Value> {
        self.daemon.lines(&["msg", "thread", peer, "--limit", LIST_LIMIT])
    }
}

#[test]
fn messages_on_olm_sessions_are_delivered_exactly_once_through_kill_9() {
    let total: usize = env_or("KITH_DM_KILL_MESSAGES", DEFAULT_MESSAGES);
    let seed = seed_from_env("KITH_DM_KILL_SEED");
    println!("dm kill loop: {total} messages each way, KITH_DM_KILL_SEED={seed}");
    let mut rng = Rng::new(seed);
    let started = Instant::now();

    let (a, b) = (Daemon::start("a"), Daemon::start("b"));
    befriend(&a, &b, DEADLINE);
    let (a_id, b_id) = (a.id(), b.id());
    let mut sides = [
        Side { who: "a", daemon: a, id: a_id, next: 0, lost_sessions: Vec::new() },
        Side { who: "b", daemon: b, id: b_id, next: 0, lost_sessions: Vec::new() },
    ];
    let mut kills = [0usize; 2];
    while sides.iter().any(|s| s.next < total) {
        assert!(started.elapsed() < RUN_DEADLINE, "seed {seed}: the run took too long");
        let delay = MIN_KILL_DELAY_MS + rng.below(MAX_KILL_DELAY_MS - MIN_KILL_DELAY_MS);
        let victim = rng.below(2);
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = sides
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let home = s.daemon.home().to_owned();
                let (who, peer, stop) = (s.who, sides[1 - k].id.clone(), stop.clone());
                let range = (s.next, total);
                thread::spawn(move || worker(home, who, peer, range, stop))
            })
            .collect();
        thread::sleep(Duration::from_millis(delay as u64));
        let killed_at = Instant::now();
        sides[victim].daemon.kill();
        kills[victim] += 1;
        stop.store(true, Ordering::SeqCst);
        let rounds: Vec<Sent> = workers.into_iter().map(|w| w.join().unwrap()).collect();

        sides[victim].check_log(seed);
        let survivor = sides[1 - victim].daemon.addr();
        sides[victim].daemon.restart_with(&["--bootstrap", &survivor]);
        for (k, sent) in rounds.into_iter().enumerate() {
            let side = &mut sides[k];
            if let Some(&(last, _)) = sent.acked.last() {
                side.next = last + 1;
            }
            let Some((i, why, ended)) = sent.cut else { continue };
            assert!(
                k == victim && ended >= killed_at,
                "seed {seed}: {} failed to send message {i} while up: {why}",
                side.who
            );
            // Cut by the kill: stored before it (then it goes out from the outbox), or
            // not, and sent again.
            let peer = sides[1 - k].id.clone();
            let side = &mut sides[k];
            let mine = text(side.who, i);
            let stored = side.thread(&peer).iter().any(|m| m["text"] == mine.as_str());
            side.next = if stored { i + 1 } else { i };
        }
    }

    // Everything is sent: both outboxes empty out (a lane waits at most
    // `RETRY_MAX_MS` between tries, and goes at once when its peer connects).
    let sent_all = Instant::now();
    for side in &sides {
        while side.daemon.json(&["status"])["outbox"] != 0 {
            assert!(
                sent_all.elapsed() < OUTBOX_DEADLINE,
                "seed {seed}: {}'s outbox is not empty {OUTBOX_DEADLINE:?} after the last \
                 message was sent\n{}",
                side.who,
                sides.iter().map(Side::report).collect::<Vec<_>>().join("\n")
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
    let threads: Vec<Vec<serde_json::Value>> =
        sides.iter().enumerate().map(|(k, s)| s.thread(&sides[1 - k].id)).collect();
    for (k, side) in sides.iter().enumerate() {
        let thread = &threads[k];
        // text -> ids, for each sender.
        let mut seen: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for m in thread {
            let key =
                (m["from"].as_str().unwrap().to_owned(), m["text"].as_str().unwrap().to_owned());
            seen.entry(key).or_default().push(m["id"].as_str().unwrap().to_owned());
            if m["from"] == side.id.as_str() {
                assert_eq!(m["status"], "delivered", "seed {seed}: {} holds {m}", side.who);
            }
        }
        for (j, (from, who)) in
            [(&sides[0].id, sides[0].who), (&sides[1].id, sides[1].who)].into_iter().enumerate()
        {
            for i in 0..total {
                let ids = seen.get(&(from.clone(), text(who, i))).cloned().unwrap_or_default();
                if ids.len() != 1 {
                    // What the sender holds of it, and both logs (kept with
                    // KITH_DM_KILL_LOGS), for the next one to look at.
                    let mine: Vec<_> =
                        threads[j].iter().filter(|m| m["text"] == text(who, i).as_str()).collect();
                    let reports: Vec<String> = sides.iter().map(Side::report).collect();
                    panic!(
                        "seed {seed}: {}'s thread holds message {i} of {who} {} times; \
                         {who}'s thread holds {mine:?}\n{}",
                        side.who,
                        ids.len(),
                        reports.join("\n")
                    );
                }
            }
        }
        assert_eq!(thread.len(), 2 * total, "seed {seed}: {}'s thread", side.who);
    }
    // Both threads hold the same messages, by id.
    let ids = |t: &[serde_json::Value]| {
        let mut v: Vec<String> = t.iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&threads[0]), ids(&threads[1]), "seed {seed}");

    // The messages went on Olm sessions, and no session ever lost its place.
    for side in &mut sides {
        side.check_log(seed);
        assert!(side.daemon.terminate(), "seed {seed}: {} did not stop cleanly", side.who);
    }
    for (k, side) in sides.iter().enumerate() {
        assert!(
            side.lost_sessions.is_empty(),
            "seed {seed}: {} lost a session:\n{}",
            side.who,
            side.lost_sessions.join("\n")
        );
        let store = Store::open(&side.daemon.home().join("store")).unwrap();
        let on_olm = store.olm_received_count().unwrap();
        assert!(
            on_olm >= total / 2,
            "seed {seed}: {} accepted only {on_olm} of {total} messages on /kith/dm/2",
            side.who
        );
        let peer = kith_protocol::AuthorId::from_peer_id(
            &sides[1 - k].id.parse::<libp2p::PeerId>().unwrap(),
        )
        .unwrap();
        assert!(store.devices(&peer).unwrap().is_some(), "seed {seed}: {}", side.who);
    }
    println!(
        "dm kill loop done: {total} messages each way, {} kills of a and {} of b, every \
         message once on both sides, {:.1} s (seed {seed})",
        kills[0],
        kills[1],
        started.elapsed().as_secs_f64()
    );
}
