//! A private group between people who are never online at the same time, with real
//! daemons through the command line (issue #19, item 1: "through their mailboxes
//! otherwise"): A made a group with B; C is a mutual connection of both and listed by
//! both as their mailbox. What A writes while B is away waits with C, sealed; B, starting
//! while A is away, reads it once, and B's answer reaches A the same way. C's home and
//! log never hold a word of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kith_tests::cli::{befriend, eventually, home_holds, list_mailbox, Daemon, OLD_KEY_SHARE_LOG};

const DEADLINE: Duration = Duration::from_secs(60);

/// The texts of `group` as `d` shows them, in thread order.
fn texts(d: &Daemon, group: &str) -> Vec<String> {
    let lines = d.lines(&["group", "thread", group, "--limit", "200"]);
    lines.iter().filter_map(|l| l["text"].as_str().map(str::to_owned)).collect()
}

/// Waits until `d` reads `text` in `group`, then checks it reads it once.
fn reads_once(d: &Daemon, group: &str, text: &str) {
    eventually(DEADLINE, &format!("{} to read {text:?}", d.name), || {
        texts(d, group).iter().any(|t| t == text).then_some(())
    });
    assert_eq!(texts(d, group).iter().filter(|t| *t == text).count(), 1, "{}", d.name);
}

/// How many envelopes `c` holds for `who`.
fn held_for(c: &Daemon, who: &str) -> u64 {
    let status = c.json(&["mailbox"]);
    let holding = status["holding"].as_array().cloned().unwrap_or_default();
    holding.iter().find(|h| h["id"] == who).and_then(|h| h["messages"].as_u64()).unwrap_or(0)
}

#[test]
fn group_messages_travel_through_a_mailbox_between_members_never_online_together() {
    let (mut a, mut b, c) = (Daemon::start("a"), Daemon::start("b"), Daemon::start("c"));
    befriend(&c, &a, DEADLINE);
    befriend(&c, &b, DEADLINE);
    befriend(&a, &b, DEADLINE);
    list_mailbox(&c, &[&a, &b], DEADLINE);
    let (a_id, b_id, c_addr) = (a.id(), b.id(), c.addr());
    let created = a.json(&["group", "create", "owls", "--member", &b_id]);
    let group = created["id"].as_str().unwrap().to_owned();
    let hello = "all of us here";
    a.json(&["group", "send", &group, hello]);
    reads_once(&b, &group, hello);

    // B away: what A writes waits with C.
    assert!(b.terminate());
    let secret = "the owls meet at the old mill 41b7";
    let sent = a.json(&["group", "send", &group, secret]);
    assert!(sent["id"].is_string(), "{sent}");
    eventually(DEADLINE, "c to hold A's group message for B", || {
        (held_for(&c, &b_id) > 0).then_some(())
    });
    assert!(a.terminate());

    // B alone with C: reads it once, answers; the answer waits with C for A.
    b.restart_with(&["--bootstrap", &c_addr]);
    reads_once(&b, &group, secret);
    eventually(DEADLINE, "b's collected envelopes to be acknowledged", || {
        (held_for(&c, &b_id) == 0).then_some(())
    });
    let answer = "bring the lantern 0d93";
    b.json(&["group", "send", &group, answer]);
    // B's first message in the group: its new session's key share for A, then the
    // message, deposited one after the other; B may stop only once C holds both.
    eventually(DEADLINE, "c to hold B's key share and answer for A", || {
        (held_for(&c, &a_id) >= 2).then_some(())
    });
    assert!(b.terminate());

    // A again, alone with C: reads the answer once; the thread is in order.
    a.restart_with(&["--bootstrap", &c_addr]);
    reads_once(&a, &group, answer);
    assert_eq!(texts(&a, &group), [hello, secret, answer]);
    assert!(a.terminate());
    b.restart_with(&["--bootstrap", &c_addr]);
    assert_eq!(texts(&b, &group), [hello, secret, answer]);

    // C never saw the words: not in its store, not in its log.
    let mut c = c;
    assert!(c.terminate());
    for text in [hello, secret, answer] {
        assert!(!home_holds(c.home(), text.as_bytes()), "c's home holds {text:?}");
        assert!(!c.all_logs().contains(text), "c's log holds {text:?}");
    }
    // Every key share went on Olm (forward secret): none sealed with `/kith/dm/1`.
    for daemon in [&a, &b, &c] {
        assert!(!daemon.all_logs().contains(OLD_KEY_SHARE_LOG), "{} took one", daemon.name);
    }
    assert!(home_holds(b.home(), secret.as_bytes()), "the search finds what is there");
}
