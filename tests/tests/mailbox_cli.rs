//! Later delivery through mailboxes with real daemons, through the command line (issue
//! #18): A and B are mutual connections who are never online at the same time; C is a
//! mutual connection of both and listed by both as their mailbox. Messages and their
//! end-to-end receipts travel through C, each stored exactly once, and C never holds a
//! word of them in the clear (its home and logs are searched for the texts). A mailbox
//! killed while holding hands everything over after its restart; a held message that no
//! session of its recipient opens any more (sessions lost while away) is repaired through
//! the mailbox and arrives once, with no error shown (issue #17); and messages between
//! people online in turns survive seven `kill -9`s of sender, recipient and mailbox
//! (500 messages each way by default, the 1,000 in all, about 50 s;
//! `KITH_MAILBOX_KILL_MESSAGES` sets another count).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kith_node::store::Store;
use kith_protocol::{AuthorId, RecordKind};
use kith_tests::cli::{befriend, eventually, home_holds, list_mailbox, Daemon};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

fn author(id: &str) -> AuthorId {
    AuthorId::from_peer_id(&id.parse::<libp2p::PeerId>().unwrap()).unwrap()
}

/// The messages of `d`'s thread with `peer` whose text is `text`.
fn found(d: &Daemon, peer: &str, text: &str) -> Vec<Value> {
    let thread = d.lines(&["msg", "thread", peer, "--limit", "1000"]);
    thread.into_iter().filter(|m| m["text"] == text).collect()
}

/// Waits until `d`'s thread with `peer` holds `text` once with `status`.
fn wait_for(d: &Daemon, peer: &str, text: &str, status: &str) {
    eventually(DEADLINE, &format!("{}: {text:?} {status}", d.name), || {
        let found = found(d, peer, text);
        (found.len() == 1 && found[0]["status"] == status).then_some(())
    });
}

/// A message from `from` to `to`, both online, delivered directly.
fn talk(from: &Daemon, to: &Daemon, text: &str) {
    let sent = from.json(&["msg", "send", &to.id(), text]);
    assert!(sent["id"].is_string(), "{sent}");
    wait_for(from, &to.id(), text, "delivered");
}

/// A, B and C online: all mutual connections, A and B list C as their mailbox, and A
/// and B have exchanged messages (so their devices are announced and each has the
/// other's, and the other's mailbox record). Then every daemon is stopped and the
/// stores are checked for exactly that.
fn world() -> (Daemon, Daemon, Daemon) {
    let (a, b, c) = (Daemon::start("a"), Daemon::start("b"), Daemon::start("c"));
    befriend(&c, &a, DEADLINE);
    befriend(&c, &b, DEADLINE);
    befriend(&a, &b, DEADLINE);
    list_mailbox(&c, &[&a, &b], DEADLINE);
    for round in 0..2 {
        talk(&a, &b, &format!("hello b {round}"));
        talk(&b, &a, &format!("hello a {round}"));
    }
    (a, b, c)
}

/// Stops `d` and checks in its store that it has `peer`'s device and mailbox record
/// naming `mailbox`.
fn stop_knowing(d: &mut Daemon, peer: &str, mailbox: &str) {
    assert!(d.terminate(), "{} did not stop cleanly", d.name);
    let store = Store::open(&d.home().join("store")).unwrap();
    let peer = author(peer);
    assert!(store.devices(&peer).unwrap().is_some(), "{} has no device of its peer", d.name);
    assert_eq!(store.mailboxes_of(&peer).unwrap(), vec![author(mailbox)], "{}", d.name);
}

#[test]
fn messages_and_receipts_travel_through_a_mailbox_between_people_never_online_together() {
    let (mut a, mut b, c) = world();
    let (a_id, b_id, c_id, c_addr) = (a.id(), b.id(), c.id(), c.addr());
    stop_knowing(&mut b, &a_id, &c_id);
    stop_knowing(&mut a, &b_id, &c_id);

    // A alone with C: A's message to B is held by C.
    let secret = "the owl flies at midnight 7f3a";
    a.restart_with(&["--bootstrap", &c_addr]);
    let sent = a.json(&["msg", "send", &b_id, secret]);
    assert!(["held", "queued"].contains(&sent["status"].as_str().unwrap()), "{sent}");
    wait_for(&a, &b_id, secret, "held");
    assert!(a.terminate());

    // B alone with C: collects it once, replies; the reply is held by C.
    let reply = "the owl is fed 9c2e";
    b.restart_with(&["--bootstrap", &c_addr]);
    wait_for(&b, &a_id, secret, "received");
    let sent = b.json(&["msg", "send", &a_id, reply]);
    assert!(sent["id"].is_string(), "{sent}");
    wait_for(&b, &a_id, reply, "held");
    assert!(b.terminate());

    // A again: B's receipt turns A's message delivered; B's reply arrives once.
    a.restart_with(&["--bootstrap", &c_addr]);
    wait_for(&a, &b_id, secret, "delivered");
    wait_for(&a, &b_id, reply, "received");
    assert!(a.terminate());

    // B again: A's receipt turns the reply delivered; still one copy of each.
    b.restart_with(&["--bootstrap", &c_addr]);
    wait_for(&b, &a_id, reply, "delivered");
    wait_for(&b, &a_id, secret, "received");
    eventually(DEADLINE, "c to hold nothing more", || {
        let status = c.json(&["mailbox"]);
        let holding = status["holding"].as_array().cloned().unwrap_or_default();
        holding.iter().all(|h| h["messages"] == 0).then_some(())
    });
    assert!(b.terminate());
    a.restart_with(&["--bootstrap", &c_addr]);
    assert_eq!(found(&a, &b_id, secret).len(), 1);
    assert_eq!(found(&a, &b_id, reply).len(), 1);
    assert_eq!(a.json(&["status"])["outbox"], 0);

    // C never saw the words: not in its store, not in its log.
    let mut c = c;
    assert!(c.terminate());
    for text in [secret, reply] {
        assert!(!home_holds(c.home(), text.as_bytes()), "c's home holds {text:?}");
        assert!(!c.log().contains(text));
    }
    assert!(home_holds(a.home(), secret.as_bytes()), "the search finds what is there");
}

#[test]
fn a_mailbox_killed_while_holding_hands_everything_over_after_its_restart() {
    let (mut a, mut b, mut c) = world();
    let (a_id, b_id, c_id) = (a.id(), b.id(), c.id());
    stop_knowing(&mut b, &a_id, &c_id);
    let texts: Vec<String> = (0..5).map(|i| format!("held through a crash {i}")).collect();
    for text in &texts {
        a.json(&["msg", "send", &b_id, text]);
    }
    for text in &texts {
        wait_for(&a, &b_id, text, "held");
    }
    assert!(a.terminate());

    // kill -9: what C accepted was flushed before it said so.
    c.kill();
    c.restart_with(&[]);
    let c_addr = c.addr();
    b.restart_with(&["--bootstrap", &c_addr]);
    for text in &texts {
        wait_for(&b, &a_id, text, "received");
    }
    let thread = b.lines(&["msg", "thread", &a_id, "--limit", "1000"]);
    let order: Vec<&str> = thread
        .iter()
        .filter_map(|m| m["text"].as_str())
        .filter(|t| t.starts_with("held through"))
        .collect();
    assert_eq!(order, texts.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(b.terminate());
    a.restart_with(&["--bootstrap", &c_addr]);
    for text in &texts {
        wait_for(&a, &b_id, text, "delivered");
    }
}

/// How many envelopes mailbox `c` holds for `who`.
fn held_for(c: &Daemon, who: &str) -> u64 {
    let status = c.json(&["mailbox"]);
    let holding = status["holding"].as_array().cloned().unwrap_or_default();
    holding.iter().find(|h| h["id"] == who).and_then(|h| h["messages"].as_u64()).unwrap_or(0)
}

/// Overwrites, in the stopped `d`'s store, the pickle of its sessions with each device
/// `peer` announced: a disk that lost them (they no longer open). Returns how many.
fn lose_sessions(d: &Daemon, peer: &str) -> usize {
    let store = Store::open(&d.home().join("store")).unwrap();
    let record = store.devices(&author(peer)).unwrap().expect("no device of the peer");
    let RecordKind::Devices(announcement) = record.record.kind else { panic!("not devices") };
    let mut lost = 0;
    for entry in &announcement.devices {
        let device = entry.certificate.certificate.device;
        if store.olm_sessions(&device).unwrap().is_some() {
            store.set_olm_sessions(&device, b"lost with a disk").unwrap();
            lost += 1;
        }
    }
    store.flush_blocking().unwrap();
    lost
}

/// The statuses of `d`'s own messages to `peer`; none may say the person failed.
fn no_failure_shown(d: &Daemon, peer: &str) {
    for m in d.lines(&["msg", "thread", peer, "--limit", "1000"]) {
        let status = m["status"].as_str().unwrap_or_default();
        assert!(
            ["delivered", "held", "queued", "received"].contains(&status) && m["reason"].is_null(),
            "{} shows {m}",
            d.name
        );
    }
}

/// The collect-path repair with real daemons (issue #17 with #18): B's sessions are lost
/// while it is away and A's message waits for it with their mailbox C, sealed on a
/// session B can no longer open. B collects it (acknowledged, not stored, no error
/// shown) and asks A, through C, to repair; A, online later, seals it again on a new
/// session and deposits it again; B reads it exactly once and A sees it delivered. A
/// and B are never online together.
#[test]
fn a_held_message_that_no_session_opens_is_repaired_through_the_mailbox_and_arrives_once() {
    let (mut a, mut b, c) = world();
    let (a_id, b_id, c_id, c_addr) = (a.id(), b.id(), c.id(), c.addr());
    stop_knowing(&mut b, &a_id, &c_id);
    stop_knowing(&mut a, &b_id, &c_id);
    assert!(lose_sessions(&b, &a_id) > 0, "b had no session with a to lose");

    // A alone with C: its message to B (on the session B lost) is held by C.
    let secret = "the heron waits by the sluice 41d8";
    a.restart_with(&["--bootstrap", &c_addr]);
    a.json(&["msg", "send", &b_id, secret]);
    wait_for(&a, &b_id, secret, "held");
    assert!(a.terminate());
    assert_eq!(held_for(&c, &b_id), 1);

    // B alone with C: collects it, cannot open it, acknowledges it and leaves a repair
    // request for A with C. Nothing stored, nothing shown as failed.
    b.restart_with(&["--bootstrap", &c_addr]);
    eventually(DEADLINE, "b to collect and ask a for a repair through c", || {
        (held_for(&c, &b_id) == 0 && held_for(&c, &a_id) == 1).then_some(())
    });
    assert!(found(&b, &a_id, secret).is_empty(), "b opened a message on a lost session");
    no_failure_shown(&b, &a_id);
    assert!(b.terminate());

    // A again: takes the repair request, seals the message on a new session and
    // deposits it again (B is away).
    a.restart_with(&["--bootstrap", &c_addr]);
    eventually(DEADLINE, "a to deposit the message again", || {
        (held_for(&c, &a_id) == 0 && held_for(&c, &b_id) == 1).then_some(())
    });
    wait_for(&a, &b_id, secret, "held");
    no_failure_shown(&a, &b_id);
    assert!(a.terminate());

    // B again: reads it once; its receipt waits for A with C.
    b.restart_with(&["--bootstrap", &c_addr]);
    wait_for(&b, &a_id, secret, "received");
    eventually(DEADLINE, "b's receipt to be held for a", || {
        (held_for(&c, &b_id) == 0 && held_for(&c, &a_id) >= 1).then_some(())
    });
    no_failure_shown(&b, &a_id);
    assert!(b.terminate());

    // A again: delivered, nothing left to send; B still holds one copy.
    a.restart_with(&["--bootstrap", &c_addr]);
    wait_for(&a, &b_id, secret, "delivered");
    assert_eq!(a.json(&["status"])["outbox"], 0);
    no_failure_shown(&a, &b_id);
    assert!(a.terminate());
    b.restart_with(&["--bootstrap", &c_addr]);
    assert_eq!(found(&b, &a_id, secret).len(), 1);
    for d in [&a, &b] {
        assert!(!d.log().contains("panicked"), "{} panicked", d.name);
    }
}

/// What can be killed in a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// The node online in this turn, while it sends.
    Sender,
    /// The node online in this turn, while it collects (just after it started).
    Recipient,
    /// The mailbox, while the node online sends.
    Mailbox,
}

/// Sends `who`'s messages `from..to` to `peer`; the next index to send (a send cut by a
/// kill counts as sent when its sender stored it).
fn send_range(d: &Daemon, peer: &str, who: &str, (from, to): (usize, usize)) -> usize {
    for i in from..to {
        let text = format!("{who} {i}");
        let out = d.run(&["--json", "msg", "send", peer, &text]);
        if !out.status.success() {
            return if found(d, peer, &text).is_empty() { i } else { i + 1 };
        }
    }
    to
}

/// The number of `d`'s own messages to `peer` still `queued` (not deposited yet).
fn queued(d: &Daemon, peer: &str) -> usize {
    let thread = d.lines(&["msg", "thread", peer, "--limit", "10000"]);
    thread.iter().filter(|m| m["status"] == "queued").count()
}

/// Each of `who`'s messages `0..total` is in `d`'s thread with `peer` exactly once.
fn holds_each_once(d: &Daemon, peer: &str, who: &str, total: usize) -> Result<(), String> {
    let thread = d.lines(&["msg", "thread", peer, "--limit", "10000"]);
    let mut counts = vec![0usize; total];
    for m in &thread {
        let Some(rest) = m["text"].as_str().and_then(|t| t.strip_prefix(&format!("{who} "))) else {
            continue;
        };
        if let Some(c) = rest.parse::<usize>().ok().and_then(|i| counts.get_mut(i)) {
            *c += 1;
        }
    }
    match counts.iter().position(|c| *c != 1) {
        Some(i) => Err(format!("{}: {who} {i} held {} times", d.name, counts[i])),
        None => Ok(()),
    }
}

/// Messages each way between A and B, who are online in turns (never together), through
/// their mailbox C, with seven `kill -9`s of the node sending, the node collecting and
/// the mailbox along the way: every message is stored exactly once by its recipient
/// while they take turns; then (both online at last, so that receipts lost with a kill
/// come back) every message turns delivered. `KITH_MAILBOX_KILL_MESSAGES` sets the
/// messages each way (default 500: the 1,000 in all, about 50 s);
/// `KITH_MAILBOX_KILL_SEED` replays the choices of a run (its seed is printed).
#[test]
fn messages_between_people_online_in_turns_arrive_once_through_kill_9s() {
    use kith_tests::{
        cli::{env_or, seed_from_env},
        sim::Rng,
    };
    const KILLS: usize = 7;
    let total: usize = env_or("KITH_MAILBOX_KILL_MESSAGES", 500);
    let seed = seed_from_env("KITH_MAILBOX_KILL_SEED");
    println!("mailbox kill loop: {total} messages each way, KITH_MAILBOX_KILL_SEED={seed}");
    let mut rng = Rng::new(seed);
    let started = std::time::Instant::now();
    let (mut a, mut b, mut c) = world();
    let ids = [a.id(), b.id()];
    let c_id = c.id();
    stop_knowing(&mut a, &ids[1], &c_id);
    stop_knowing(&mut b, &ids[0], &c_id);
    let mut sides = [a, b];
    let names = ["a", "b"];
    let mut next = [0usize; 2];
    // Ten turns each; a kill in seven of the twenty, each of a random kind.
    let turns = 20;
    let per_turn = total.div_ceil(turns / 2);
    let killed: Vec<usize> = rng.pick(turns, KILLS, None);
    let victims = [Victim::Sender, Victim::Recipient, Victim::Mailbox];
    let mut kills = Vec::new();
    for turn in 0..turns {
        assert!(started.elapsed() < Duration::from_secs(600), "seed {seed}: too slow");
        let (k, other) = (turn % 2, 1 - turn % 2);
        let victim = killed.contains(&turn).then(|| victims[rng.below(3)]);
        let c_addr = c.addr();
        let side = &mut sides[k];
        side.restart_with(&["--bootstrap", &c_addr]);
        if victim == Some(Victim::Recipient) {
            std::thread::sleep(Duration::from_millis(rng.below(400) as u64));
            side.kill();
            side.restart_with(&["--bootstrap", &c_addr]);
        }
        let end = (next[k] + per_turn).min(total);
        let half = (next[k] + end) / 2;
        next[k] = send_range(side, &ids[other], names[k], (next[k], half));
        match victim {
            Some(Victim::Sender) => {
                side.kill();
                side.restart_with(&["--bootstrap", &c_addr]);
            }
            Some(Victim::Mailbox) => {
                c.kill();
                c.restart_with(&[]);
                side.json(&["dial", &c.addr()]);
            }
            _ => {}
        }
        if let Some(victim) = victim {
            kills.push((turn, victim));
        }
        next[k] = send_range(side, &ids[other], names[k], (next[k], end));
        // The turn ends once this side has everything the other deposited, and its own
        // messages are all deposited (or delivered).
        let want = next[other];
        let until = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            let mine = queued(side, &ids[other]);
            let theirs = holds_each_once(side, &ids[other], names[other], want);
            if mine == 0 && theirs.is_ok() {
                break;
            }
            if std::time::Instant::now() > until {
                let log = side.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "seed {seed}: turn {turn} ({kills:?}): {} has {mine} queued, {theirs:?}\n{}",
                    names[k],
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!side.log().contains("panicked"), "seed {seed}: {} panicked", names[k]);
        side.terminate();
    }
    for k in 0..2 {
        assert_eq!(next[k], total, "seed {seed}: {} sent only {}", names[k], next[k]);
    }

    // Both online at last: every message delivered, each stored once.
    let c_addr = c.addr();
    for side in &mut sides {
        side.restart_with(&["--bootstrap", &c_addr]);
    }
    let b_addr = sides[1].addr();
    sides[0].json(&["dial", &b_addr]);
    for k in 0..2 {
        let (side, other) = (&sides[k], 1 - k);
        eventually(
            Duration::from_secs(120),
            &format!("seed {seed}: {} delivered", names[k]),
            || {
                let thread = side.lines(&["msg", "thread", &ids[other], "--limit", "10000"]);
                let mine: Vec<&Value> = thread.iter().filter(|m| m["from"] == ids[k]).collect();
                mine.iter().all(|m| m["status"] == "delivered").then_some(())
            },
        );
        holds_each_once(side, &ids[other], names[other], total).unwrap();
        holds_each_once(side, &ids[other], names[k], total).unwrap();
    }
    println!(
        "mailbox kill loop done: {total} messages each way, kills {kills:?}, {:.1} s (seed {seed})",
        started.elapsed().as_secs_f64()
    );
}
