//! End to end: private groups between real `kith` daemons, driven only through the
//! command line with `--json` (issue #19). Daemons are killed when a test ends, pass or
//! fail; every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kith_tests::cli::{befriend, eventually, home_holds, Daemon, OLD_KEY_SHARE_LOG};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(40);

/// The group's messages as `d` shows them: (from, text), in thread order.
fn thread(d: &Daemon, group: &str) -> Vec<(String, String)> {
    d.lines(&["group", "thread", group, "--limit", "200"])
        .iter()
        .map(|m| (m["from"].as_str().unwrap().to_owned(), m["text"].as_str().unwrap().to_owned()))
        .collect()
}

fn texts(d: &Daemon, group: &str) -> Vec<String> {
    thread(d, group).into_iter().map(|(_, t)| t).collect()
}

/// Waits until `d`'s thread of `group` holds every one of `wanted`.
fn wait_for_texts(d: &Daemon, group: &str, wanted: &[&str]) {
    eventually(DEADLINE, &format!("{} to read {wanted:?}", d.name), || {
        let have = texts(d, group);
        wanted.iter().all(|w| have.iter().any(|h| h == w)).then_some(())
    });
}

fn send(d: &Daemon, group: &str, text: &str) -> String {
    let reply = d.json(&["group", "send", group, text]);
    let id = reply["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{reply}");
    id
}

fn groups(d: &Daemon) -> Vec<Value> {
    d.lines(&["groups"])
}

/// Checks that `d`'s thread has each message once, ordered by (timestamp, id).
fn assert_once_in_order(d: &Daemon, group: &str) {
    let lines = d.lines(&["group", "thread", group, "--limit", "200"]);
    let keys: Vec<(u64, String)> = lines
        .iter()
        .map(|m| (m["timestamp"].as_u64().unwrap(), m["id"].as_str().unwrap().to_owned()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted, "{}'s thread is not once each, oldest first", d.name);
    for field in ["id", "from", "text", "timestamp"] {
        assert!(lines.iter().all(|m| m.get(field).is_some()), "a message lacks {field}");
    }
}

#[test]
fn a_group_reads_all_removal_holds_offline_members_catch_up_and_outsiders_see_nothing() {
    let (mut a, mut b, mut c, mut d) =
        (Daemon::start("a"), Daemon::start("b"), Daemon::start("c"), Daemon::start("d"));
    let (a_id, b_id, c_id) = (a.id(), b.id(), c.id());
    // A knows B and C; B and C do not follow each other (C only dials B). D, the
    // outsider, is everyone's mutual connection.
    befriend(&a, &b, DEADLINE);
    befriend(&a, &c, DEADLINE);
    for other in [&a, &b, &c] {
        befriend(other, &d, DEADLINE);
    }
    assert_eq!(c.json(&["dial", &b.addr()])["ok"], true);
    assert!(!b.is_mutual_with(&c_id));

    // Only mutual connections can be put in a group.
    let e = Daemon::start("e");
    let refused = a.fail(&["group", "create", "nope", "--member", &e.id()]);
    assert!(refused.contains("mutual"), "{refused}");

    let created = a.json(&["group", "create", "friends", "--member", &b_id, "--member", &c_id]);
    let group = created["id"].as_str().unwrap().to_owned();
    assert_eq!(group.len(), 32, "{created}");
    for member in [&b, &c] {
        eventually(DEADLINE, &format!("{} to be in the group", member.name), || {
            let list = groups(member);
            (list.len() == 1 && list[0]["members"].as_array().unwrap().len() == 3).then_some(())
        });
        let list = groups(member);
        assert_eq!(list[0]["id"], group.as_str());
        assert_eq!(list[0]["name"], "friends");
    }
    // By name too.
    send(&a, "friends", "hello from A");
    send(&b, &group, "hello from B");
    send(&c, &group, "hello from C");
    let all = ["hello from A", "hello from B", "hello from C"];
    for member in [&a, &b, &c] {
        wait_for_texts(member, &group, &all);
        assert_once_in_order(member, &group);
        assert_eq!(texts(member, &group).len(), 3);
    }
    let from_c = thread(&b, &group).into_iter().find(|(_, t)| t == "hello from C").unwrap();
    assert_eq!(from_c.0, c_id, "B reads C's message as C's");
    // Read by a person: senders by name with the id's tail, also C, whom B does not
    // follow (C's name is asked for when the thread is shown).
    let tail = |id: &str| format!("(…{})", &id[id.len() - 8..]);
    let (a_shown, c_shown) = (format!("a {}", tail(&a_id)), format!("c {}", tail(&c_id)));
    eventually(DEADLINE, "B's thread to name A and C", || {
        let out = String::from_utf8_lossy(&b.run(&["group", "thread", &group]).stdout).into_owned();
        (out.contains(&a_shown) && out.contains(&c_shown)).then_some(())
    });

    // C is removed: it learns so, and reads nothing sent after.
    assert_eq!(a.json(&["group", "remove", &group, &c_id])["ok"], true);
    eventually(DEADLINE, "C to learn it was removed", || groups(&c).is_empty().then_some(()));
    eventually(DEADLINE, "B to see two members", || {
        let list = groups(&b);
        (list[0]["members"].as_array().unwrap().len() == 2).then_some(())
    });
    send(&b, &group, "after removal from B");
    send(&a, &group, "after removal from A");
    let after = ["after removal from B", "after removal from A"];
    wait_for_texts(&a, &group, &after);
    wait_for_texts(&b, &group, &after);

    // B is offline while A writes; it catches up when it comes back.
    assert!(b.terminate());
    send(&a, &group, "while B was away");
    // (A keeps it queued for B, or hands it, sealed, to a mailbox B chose among its
    // mutual connections: C or D.)
    assert_eq!(a.json(&["status"])["groups"], 1);
    b.restart();
    wait_for_texts(&b, &group, &["while B was away"]);
    assert_once_in_order(&b, &group);

    // A new member reads from when they joined, not before.
    befriend(&a, &e, DEADLINE);
    assert_eq!(a.json(&["group", "add", &group, &e.id()])["ok"], true);
    eventually(DEADLINE, "E to be in the group", || (groups(&e).len() == 1).then_some(()));
    send(&a, &group, "welcome E");
    wait_for_texts(&e, &group, &["welcome E"]);
    wait_for_texts(&b, &group, &["welcome E"]);
    send(&e, &group, "thanks from E");
    wait_for_texts(&b, &group, &["thanks from E"]);
    wait_for_texts(&a, &group, &["thanks from E"]);
    eventually(DEADLINE, "A's group requests to be delivered", || {
        (a.json(&["status"])["group_outbox"] == 0).then_some(())
    });
    let e_reads = texts(&e, &group);
    assert!(!e_reads.iter().any(|t| t.starts_with("hello")), "E reads history: {e_reads:?}");

    // Added with the history (`--history`), F reads the earlier messages too, once each.
    let mut f = Daemon::start("f");
    befriend(&a, &f, DEADLINE);
    assert_eq!(a.json(&["group", "add", &group, &f.id(), "--history"])["ok"], true);
    // (`group thread` fails until F knows the group.)
    eventually(DEADLINE, "F to be in the group", || (groups(&f).len() == 1).then_some(()));
    wait_for_texts(&f, &group, &["while B was away", "welcome E", "thanks from E"]);
    assert_once_in_order(&f, &group);
    assert!(f.terminate());

    let c_reads = texts(&c, &group);
    for text in after.iter().chain(&["while B was away", "welcome E"]) {
        assert!(!c_reads.iter().any(|t| t == text), "C reads {text:?} after removal");
    }
    for daemon in [&mut a, &mut b, &mut c, &mut d] {
        assert!(daemon.terminate(), "{} stops cleanly", daemon.name);
    }
    for text in all.iter().chain(&after) {
        assert!(!home_holds(d.home(), text.as_bytes()), "the outsider holds {text:?}");
        assert!(home_holds(a.home(), text.as_bytes()), "A does not hold {text:?}");
    }
    for text in after.iter().chain(&["while B was away", "welcome E"]) {
        assert!(!home_holds(c.home(), text.as_bytes()), "the removed member holds {text:?}");
    }
    // The members hold the messages in their stores, never in a log.
    let later = ["while B was away", "welcome E", "thanks from E"];
    for text in all.iter().chain(&after).chain(&later) {
        for daemon in [&a, &b, &c, &d, &e, &f] {
            let logs = daemon.all_logs();
            assert!(!logs.contains(text), "{}'s log shows {text:?}", daemon.name);
        }
    }
    // Every key share went on Olm (forward secret): none sealed with `/kith/dm/1`.
    for daemon in [&a, &b, &c, &d, &e, &f] {
        assert!(!daemon.all_logs().contains(OLD_KEY_SHARE_LOG), "{} took one", daemon.name);
    }
    assert!(!a_id.is_empty());
}
