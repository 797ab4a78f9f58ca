//! End to end: direct messages and history sync between real `kith` daemons, driven only
//! through the command line with `--json`. Daemons are killed when a test ends, pass or
//! fail; every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kith_tests::cli::{befriend, eventually, Daemon};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

/// A message as `kith msg send` reported it.
struct Sent {
    id: String,
    text: String,
    status: String,
}

fn send(from: &Daemon, to: &str, text: &str) -> Sent {
    let reply = from.json(&["msg", "send", to, text]);
    Sent {
        id: reply["id"].as_str().unwrap().to_owned(),
        text: text.to_owned(),
        status: reply["status"].as_str().unwrap().to_owned(),
    }
}

/// Sends `n` numbered messages one after the other.
fn send_many(from: &Daemon, to: &str, prefix: &str, n: usize) -> Vec<Sent> {
    (0..n).map(|i| send(from, to, &format!("{prefix} {i}"))).collect()
}

/// The conversation with `peer` (marks it read).
fn thread(d: &Daemon, peer: &str) -> Vec<Value> {
    d.lines(&["msg", "thread", peer, "--limit", "100"])
}

/// The (id, text) of the messages from `from` in a thread, in thread order.
fn messages_from(thread: &[Value], from: &str) -> Vec<(String, String)> {
    thread
        .iter()
        .filter(|m| m["from"] == from)
        .map(|m| (m["id"].as_str().unwrap().to_owned(), m["text"].as_str().unwrap().to_owned()))
        .collect()
}

fn ids_and_texts(sent: &[Sent]) -> Vec<(String, String)> {
    sent.iter().map(|s| (s.id.clone(), s.text.clone())).collect()
}

/// Unread count of the conversation with `peer` in `d`'s inbox (does not mark read).
fn unread(d: &Daemon, peer: &str) -> Option<u64> {
    d.lines(&["msg", "inbox"]).iter().find(|c| c["peer"] == peer).and_then(|c| c["unread"].as_u64())
}

fn outbox(d: &Daemon) -> u64 {
    d.json(&["status"])["outbox"].as_u64().unwrap()
}

/// Waits until every message of `sent` shows as delivered in the sender's thread.
fn wait_delivered(from: &Daemon, to: &str, sent: &[Sent]) {
    let what = format!("{}'s {} messages to be delivered", from.name, sent.len());
    eventually(DEADLINE, &what, || {
        let thread = thread(from, to);
        sent.iter()
            .all(|s| thread.iter().any(|m| m["id"] == s.id.as_str() && m["status"] == "delivered"))
            .then_some(())
    });
}

/// Checks that `d`'s thread with `from` holds exactly `sent` (ids and texts, in order,
/// each once), all marked received.
fn assert_received_exactly(d: &Daemon, from: &str, sent: &[Sent]) {
    let thread = thread(d, from);
    assert_eq!(messages_from(&thread, from), ids_and_texts(sent), "{}'s thread", d.name);
    for m in thread.iter().filter(|m| m["from"] == from) {
        assert_eq!(m["status"], "received");
        assert_eq!(m["to"], d.id().as_str());
    }
}

#[test]
fn mutual_connections_exchange_messages_in_order() {
    let a = Daemon::start("alice");
    let b = Daemon::start("bob");
    let (a_id, b_id) = (a.id(), b.id());
    befriend(&a, &b, DEADLINE);

    // Both directions at once: 20 each.
    let (from_a, from_b) = std::thread::scope(|s| {
        let ta = s.spawn(|| send_many(&a, &b_id, "alice to bob", 20));
        let tb = s.spawn(|| send_many(&b, &a_id, "bob to alice", 20));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    for sent in from_a.iter().chain(&from_b) {
        assert_eq!(sent.id.len(), 32, "message id {}", sent.id);
        assert!(
            sent.status == "delivered" || sent.status == "queued",
            "status of {}: {}",
            sent.text,
            sent.status
        );
    }

    // Before anyone reads: everything arrives unread (the inbox does not mark read).
    eventually(DEADLINE, "bob's inbox to show 20 unread from alice", || {
        (unread(&b, &a_id) == Some(20)).then_some(())
    });
    eventually(DEADLINE, "alice's inbox to show 20 unread from bob", || {
        (unread(&a, &b_id) == Some(20)).then_some(())
    });
    let inbox = b.lines(&["msg", "inbox"]);
    assert_eq!(inbox.len(), 1, "bob's inbox: {inbox:?}");
    for field in ["peer", "last_text", "timestamp", "unread"] {
        assert!(inbox[0].get(field).is_some(), "inbox entry lacks {field}: {}", inbox[0]);
    }

    wait_delivered(&a, &b_id, &from_a);
    wait_delivered(&b, &a_id, &from_b);

    // Each side has the other's messages in order, exactly once; threads are oldest first.
    assert_received_exactly(&b, &a_id, &from_a);
    assert_received_exactly(&a, &b_id, &from_b);
    let both = thread(&b, &a_id);
    assert_eq!(both.len(), 40);
    let times: Vec<u64> = both.iter().map(|m| m["timestamp"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "thread not oldest first: {times:?}");
    for field in ["id", "from", "to", "text", "timestamp", "status"] {
        assert!(both[0].get(field).is_some(), "thread entry lacks {field}: {}", both[0]);
    }
    // `thread` marked them read.
    assert_eq!(unread(&b, &a_id), Some(0));
    assert_eq!(unread(&a, &b_id), Some(0));
    // --limit keeps the latest.
    let last = b.lines(&["msg", "thread", &a_id, "--limit", "3"]);
    assert_eq!(last, both[37..].to_vec());

    let status = a.json(&["status"]);
    assert_eq!(status["outbox"], 0);
    assert_eq!(status["messages"], 40);

    // One sync round with the one peer.
    let synced = a.json(&["sync"]);
    assert_eq!(synced["peers"], 1, "sync: {synced}");
    assert!(synced["fetched"].is_u64(), "sync: {synced}");
    let sync = &a.json(&["status"])["sync"];
    assert!(sync["rounds"].as_u64().unwrap() >= 1, "status sync: {sync}");
    assert!(sync["last_round_ms"].as_u64().unwrap() > 0, "status sync: {sync}");
    for field in ["peers_syncing", "records_fetched", "records_rejected"] {
        assert!(sync[field].is_u64(), "status sync lacks {field}: {sync}");
    }
}

#[test]
fn messages_need_a_mutual_connection() {
    let a = Daemon::start("alice");
    let c = Daemon::start("carol");
    let (a_id, c_id) = (a.id(), c.id());
    assert_eq!(c.json(&["dial", &a.addr()])["ok"], true);
    assert_eq!(c.json(&["follow", &a_id])["ok"], true);
    eventually(DEADLINE, "alice to see carol's follow", || {
        a.lines(&["followers"]).iter().any(|f| f["id"] == c_id.as_str()).then_some(())
    });

    let stderr = c.fail(&["msg", "send", &a_id, "hello?"]);
    // With --json the reason is one JSON object.
    let reason: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
    assert!(reason["error"].is_string(), "stderr: {stderr}");
    assert!(stderr.contains("not a mutual connection"), "stderr: {stderr}");
    assert_eq!(reason["kind"], "not_mutual", "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr}");

    assert!(a.lines(&["msg", "inbox"]).is_empty());
    assert_eq!(a.json(&["status"])["messages"], 0);
    // Nothing is kept or queued on the sender either.
    assert!(c.lines(&["msg", "thread", &a_id]).is_empty());
    assert_eq!(outbox(&c), 0);
}

#[test]
fn queued_messages_reach_a_recipient_that_comes_back() {
    let a = Daemon::start("alice");
    let mut b = Daemon::start("bob");
    let (a_id, b_id) = (a.id(), b.id());
    befriend(&a, &b, DEADLINE);

    assert!(b.terminate(), "bob's daemon did not exit cleanly: {}", b.log());
    let sent = send_many(&a, &b_id, "while you were away", 5);
    for s in &sent {
        assert_eq!(s.status, "queued", "{}", s.text);
    }
    assert_eq!(outbox(&a), 5);
    assert!(thread(&a, &b_id).iter().all(|m| m["status"] == "queued"));

    // Bob comes back on a new port and connects, as a person would.
    b.restart();
    assert_eq!(b.json(&["dial", &a.addr()])["ok"], true);
    wait_delivered(&a, &b_id, &sent);
    assert_received_exactly(&b, &a_id, &sent);
    assert_eq!(outbox(&a), 0);
}

#[test]
fn outbox_survives_a_sender_restart() {
    let mut a = Daemon::start("alice");
    let mut b = Daemon::start("bob");
    let (a_id, b_id) = (a.id(), b.id());
    befriend(&a, &b, DEADLINE);

    assert!(b.terminate(), "bob's daemon did not exit cleanly: {}", b.log());
    let sent = send_many(&a, &b_id, "queued before a restart", 3);
    for s in &sent {
        assert_eq!(s.status, "queued", "{}", s.text);
    }
    assert!(a.terminate(), "alice's daemon did not exit cleanly: {}", a.log());
    a.restart();
    assert_eq!(outbox(&a), 3);

    b.restart();
    assert_eq!(b.json(&["dial", &a.addr()])["ok"], true);
    wait_delivered(&a, &b_id, &sent);
    assert_received_exactly(&b, &a_id, &sent);
    assert_eq!(b.json(&["status"])["messages"], 3);
    assert_eq!(outbox(&a), 0);
}

#[test]
fn queued_message_to_someone_who_unfollowed_meanwhile_is_refused() {
    let mut a = Daemon::start("alice");
    let mut b = Daemon::start("bob");
    let (a_id, b_id) = (a.id(), b.id());
    befriend(&a, &b, DEADLINE);

    // Queued while bob is away (they were mutual when it was sent)...
    assert!(b.terminate(), "bob's daemon did not exit cleanly: {}", b.log());
    let sent = send(&a, &b_id, "are we still friends?");
    assert_eq!(sent.status, "queued");
    // ...then bob unfollows alice while she is away.
    assert!(a.terminate(), "alice's daemon did not exit cleanly: {}", a.log());
    b.restart();
    assert_eq!(b.json(&["unfollow", &a_id])["ok"], true);
    a.restart();
    assert_eq!(a.json(&["dial", &b.addr()])["ok"], true);

    // Bob's node refuses it; alice's marks it refused and stops retrying.
    eventually(DEADLINE, "alice's message to be refused", || {
        thread(&a, &b_id)
            .iter()
            .any(|m| m["id"] == sent.id.as_str() && m["status"] == "refused")
            .then_some(())
    });
    assert_eq!(outbox(&a), 0);
    let human = String::from_utf8_lossy(&a.run(&["msg", "thread", &b_id]).stdout).into_owned();
    assert!(human.contains("refused: not a mutual connection"), "alice's thread: {human}");
    assert!(b.lines(&["msg", "inbox"]).is_empty());
    assert_eq!(b.json(&["status"])["messages"], 0);
}

/// The ids listed under `key` of `kith mailbox --json` on `d`.
fn mailbox_ids(d: &Daemon, key: &str) -> Vec<String> {
    let status = d.json(&["mailbox"]);
    let list = status[key].as_array().unwrap();
    let mut ids: Vec<String> = list.iter().map(|h| h["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

#[test]
fn mailboxes_are_chosen_among_mutuals_automatically_or_by_hand_and_published() {
    let (a, b, c, d) =
        (Daemon::start("a"), Daemon::start("b"), Daemon::start("c"), Daemon::start("d"));
    let (a_id, b_id, c_id, d_id) = (a.id(), b.id(), c.id(), d.id());
    let alone = a.json(&["mailbox"]);
    assert_eq!(
        (alone["mode"].as_str(), alone["holders"].as_array().map(Vec::len)),
        (Some("auto"), Some(0))
    );

    // Automatically: every mutual connection (up to three), published to them.
    befriend(&a, &b, DEADLINE);
    befriend(&a, &c, DEADLINE);
    let mut both = vec![b_id.clone(), c_id.clone()];
    both.sort();
    eventually(DEADLINE, "A to choose and publish B and C", || {
        (mailbox_ids(&a, "holders") == both && a.json(&["mailbox"])["published"] == true)
            .then_some(())
    });
    for holder in [&b, &c] {
        eventually(DEADLINE, "B and C to learn that they hold for A", || {
            (mailbox_ids(holder, "holding") == [a_id.clone()]).then_some(())
        });
    }

    // A non-mutual cannot be chosen; one chosen by hand replaces the automatic list.
    let refused = a.fail(&["mailbox", "add", &d_id]);
    assert!(refused.contains("not a mutual connection"), "{refused}");
    assert_eq!(a.json(&["mailbox", "add", &c_id])["ok"], true);
    let manual = a.json(&["mailbox"]);
    assert_eq!(manual["mode"], "manual");
    assert_eq!(mailbox_ids(&a, "holders"), vec![c_id.clone()]);
    eventually(DEADLINE, "B to learn that it no longer holds for A", || {
        mailbox_ids(&b, "holding").is_empty().then_some(())
    });

    // Removing the last one goes back to the automatic choice, without it.
    assert_eq!(a.json(&["mailbox", "remove", &c_id])["ok"], true);
    assert_eq!(a.json(&["mailbox"])["mode"], "auto");
    assert_eq!(mailbox_ids(&a, "holders"), vec![b_id.clone()]);
    let unknown = a.fail(&["mailbox", "remove", &d_id]);
    assert!(unknown.contains("not one of your mailboxes"), "{unknown}");
    eventually(DEADLINE, "C to learn that it no longer holds for A", || {
        mailbox_ids(&c, "holding").is_empty().then_some(())
    });
    drop(d);
}

/// Whether any file under `dir` contains `needle`.
fn holds(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            holds(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}

#[test]
fn plaintext_exists_only_on_the_two_nodes_it_is_for_and_in_no_log() {
    let (mut a, mut b, mut c) = (Daemon::start("a"), Daemon::start("b"), Daemon::start("c"));
    // C is everyone's friend: it relays their gossip, syncs with them and is a mailbox.
    befriend(&a, &b, DEADLINE);
    befriend(&a, &c, DEADLINE);
    befriend(&b, &c, DEADLINE);
    let secrets: Vec<String> =
        (0..6).map(|i| format!("zq-secret-{i}-{}", std::process::id())).collect();
    for (i, secret) in secrets.iter().enumerate() {
        let (from, to) = if i % 2 == 0 { (&a, b.id()) } else { (&b, a.id()) };
        let sent = send(from, &to, secret);
        eventually(DEADLINE, "the message to be delivered", || {
            let thread = thread(from, &to);
            let sent = thread.iter().find(|m| m["id"] == sent.id.as_str())?;
            (sent["status"] == "delivered").then_some(())
        });
    }
    let logs = [a.log(), b.log(), c.log()];
    for d in [&mut a, &mut b, &mut c] {
        assert!(d.terminate(), "{} did not exit cleanly", d.name);
    }
    for secret in &secrets {
        // The test can see plaintext where it is: on the nodes of the two people.
        assert!(holds(a.home(), secret.as_bytes()) && holds(b.home(), secret.as_bytes()));
        assert!(!holds(c.home(), secret.as_bytes()), "C's home holds {secret}");
        for log in &logs {
            assert!(!log.contains(secret.as_str()), "a log shows {secret}");
        }
    }
}
