//! Later delivery through mailboxes with real daemons, through the command line (issue
//! #18): A and B are mutual connections who are never online at the same time; C is a
//! mutual connection of both and listed by both as their mailbox. Messages and their
//! end-to-end receipts travel through C, each stored exactly once, and C never holds a
//! word of them in the clear (its home and logs are searched for the texts).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kith_node::store::Store;
use kith_protocol::AuthorId;
use kith_tests::cli::{befriend, eventually, home_holds, Daemon};
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
    for d in [&a, &b] {
        assert_eq!(d.json(&["mailbox", "add", &c.id()])["ok"], true);
    }
    let (a_id, b_id) = (a.id(), b.id());
    eventually(DEADLINE, "c to hold for a and b", || {
        let status = c.json(&["mailbox"]);
        let holding = status["holding"].as_array().cloned().unwrap_or_default();
        let ids: Vec<&str> = holding.iter().filter_map(|h| h["id"].as_str()).collect();
        (ids.contains(&a_id.as_str()) && ids.contains(&b_id.as_str())).then_some(())
    });
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
