//! `scripts/bench-mailbox`: later delivery through a mailbox, with real daemons on
//! 127.0.0.1 (`kith` processes, driven through the command line).
//!
//! A and B are mutual connections; C is a mutual connection of both and their mailbox.
//! B goes offline; A sends N messages (each deposited with C, `held`); A goes offline.
//! Then B starts again and connects to C: the time from B's start (process spawn, an
//! upper bound of the time from its connection to C) until B has stored all N is
//! measured, and the time from B's `kith dial C` too. C's disk (its store folder) and
//! memory (VmRSS) are read before and after it holds the N envelopes: the differences,
//! per message, are C's cost of holding one.
//! Usage: scripts/bench-mailbox [--messages N] [--json]   (default N = 1000)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use kith_tests::{
    bench::{arg, rss_kib_of},
    cli::{befriend, eventually, Daemon},
};

const DEADLINE: Duration = Duration::from_secs(120);

/// Bytes of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        disk_bytes(&path)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// How many of `d`'s messages with `peer` have `status`.
fn count(d: &Daemon, peer: &str, status: &str, limit: usize) -> usize {
    let limit = limit.to_string();
    let thread = d.lines(&["msg", "thread", peer, "--limit", &limit]);
    thread.iter().filter(|m| m["status"] == status).count()
}

/// What C says it holds for `who`: (messages, bytes).
fn holding(c: &Daemon, who: &str) -> (u64, u64) {
    let status = c.json(&["mailbox"]);
    let holding = status["holding"].as_array().cloned().unwrap_or_default();
    holding
        .iter()
        .find(|h| h["id"] == who)
        .map(|h| (h["messages"].as_u64().unwrap_or(0), h["bytes"].as_u64().unwrap_or(0)))
        .unwrap_or((0, 0))
}

fn main() {
    let n: usize = arg("--messages", 1000);
    let json = std::env::args().any(|a| a == "--json");
    let (mut a, mut b, mut c) = (Daemon::start("a"), Daemon::start("b"), Daemon::start("c"));
    // Room for N envelopes and a few more (a deposit whose answer is lost is made again).
    let config = c.home().join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[mailbox]\nper_recipient_messages = {}\n", 2 * n + 100));
    std::fs::write(&config, text).unwrap();
    c.restart();
    befriend(&c, &a, DEADLINE);
    befriend(&c, &b, DEADLINE);
    befriend(&a, &b, DEADLINE);
    let (a_id, b_id, c_addr) = (a.id(), b.id(), c.addr());
    for d in [&a, &b] {
        d.json(&["mailbox", "add", &c.id()]);
    }
    eventually(DEADLINE, "c to hold for b", || {
        let status = c.json(&["mailbox"]);
        let holding = status["holding"].as_array().cloned().unwrap_or_default();
        holding.iter().any(|h| h["id"] == b_id.as_str()).then_some(())
    });
    // The first messages each way make and announce the devices.
    for round in 0..2 {
        for (from, to) in [(&a, &b_id), (&b, &a_id)] {
            from.json(&["msg", "send", to, &format!("warm-up {round}")]);
        }
    }
    eventually(DEADLINE, "the warm-up to be delivered", || {
        (count(&a, &b_id, "delivered", 10) == 2 && count(&b, &a_id, "delivered", 10) == 2)
            .then_some(())
    });
    assert!(b.terminate());

    let c_pid = c.pid().unwrap();
    let (disk_before, rss_before) = (disk_bytes(&c.home().join("store")), rss_kib_of(c_pid));
    let sending = Instant::now();
    for i in 0..n {
        a.json(&["msg", "send", &b_id, &format!("message {i} of the mailbox benchmark")]);
    }
    eventually(DEADLINE, "every message to be held", || {
        (count(&a, &b_id, "held", n + 10) == n).then_some(())
    });
    let send_s = sending.elapsed().as_secs_f64();
    let (held, held_bytes) = holding(&c, &b_id);
    // More than N when a deposit whose answer was lost was made again.
    assert!(held as usize >= n, "c holds {held}");
    // What C wrote is on disk (it flushed before it accepted).
    let (disk_after, rss_after) = (disk_bytes(&c.home().join("store")), rss_kib_of(c_pid));
    assert!(a.terminate());

    let started = Instant::now();
    b.restart_with(&[]);
    let dialled = Instant::now();
    b.json(&["dial", &c_addr]);
    eventually(DEADLINE, "b to store every message", || {
        (count(&b, &a_id, "received", n + 10) == n + 2).then_some(())
    });
    let (from_start, from_dial) = (started.elapsed(), dialled.elapsed());
    let per_disk = disk_after.saturating_sub(disk_before) as f64 / held as f64;
    let per_rss = rss_after.saturating_sub(rss_before) as f64 * 1024.0 / held as f64;
    let per_envelope = held_bytes as f64 / held as f64;
    if json {
        println!(
            "{{\"messages\":{n},\"collect_from_start_s\":{:.3},\"collect_from_dial_s\":{:.3},\
             \"deposit_all_s\":{send_s:.1},\"envelope_bytes\":{per_envelope:.0},\
             \"disk_bytes_per_message\":{per_disk:.0},\"rss_bytes_per_message\":{per_rss:.0}}}",
            from_start.as_secs_f64(),
            from_dial.as_secs_f64()
        );
    } else {
        println!(
            "{n} held messages: stored by the recipient {:.3} s after its daemon started \
             ({:.3} s after `kith dial` of the mailbox); depositing them took {send_s:.1} s \
             through the CLI\nmailbox: {per_envelope:.0} bytes of sealed envelope, \
             {per_disk:.0} bytes of disk and {per_rss:.0} bytes of memory (VmRSS) per held \
             message",
            from_start.as_secs_f64(),
            from_dial.as_secs_f64()
        );
    }
}
