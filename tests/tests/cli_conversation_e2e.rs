//! End to end: replies, threads, reactions, reposts, deletion, notifications and
//! moderation between two real `kith` daemons, driven only through the command line with
//! `--json`; and refused inputs, each a one-line reason with a non-zero exit. Daemons are
//! killed when a test ends, pass or fail; every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, time::Duration};

use kith_tests::cli::{eventually, Daemon};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);

/// `b` dials `a`, each follows the other; waits until both see the follow both ways.
fn befriend(a: &Daemon, b: &Daemon) -> (String, String) {
    let (a_id, b_id) = (a.id(), b.id());
    assert_eq!(b.json(&["dial", &a.addr()])["ok"], true);
    assert_eq!(a.json(&["follow", &b_id])["ok"], true);
    assert_eq!(b.json(&["follow", &a_id])["ok"], true);
    for (x, y) in [(a, &b_id), (b, &a_id)] {
        eventually(DEADLINE, &format!("{} to see the other as mutual", x.name), || {
            x.lines(&["following"])
                .iter()
                .any(|f| f["id"] == y.as_str() && f["mutual"] == true)
                .then_some(())
        });
    }
    (a_id, b_id)
}

fn id_of(v: &Value) -> String {
    let id = v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned();
    assert_eq!(v.as_object().unwrap().len(), 1, "only the id: {v}");
    id
}

/// The item for `id` in `d`'s timeline, if shown.
fn timeline_item(d: &Daemon, id: &str) -> Option<Value> {
    d.lines(&["feed", "--limit", "100"]).into_iter().find(|i| i["id"] == id)
}

/// The sorted keys of a JSON object.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// Runs a command that must be refused: a non-zero exit, no panic, nothing on stdout, and
/// one line on stderr naming the reason (which must contain `reason`).
fn refused(d: &Daemon, args: &[&str], reason: &str) {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let out = d.run(&full);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code();
    assert!(code.is_some_and(|c| c != 0), "kith {args:?} exited {code:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "kith {args:?} panicked: {stderr}");
    assert!(stdout.trim().is_empty(), "kith {args:?} printed {stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    // Argument errors are clap's: the reason, then a hint to try --help.
    let hint = |l: &&str| l.starts_with("For more information");
    let reasons: Vec<&&str> = lines.iter().filter(|l| !hint(l)).collect();
    assert_eq!(reasons.len(), 1, "kith {args:?}: not a one-line reason: {stderr}");
    assert!(reasons[0].contains(reason), "kith {args:?}: {stderr} does not say {reason:?}");
}

#[test]
fn conversation_between_two_daemons() {
    let a = Daemon::start("alice");
    let b = Daemon::start("bob");
    let (a_id, b_id) = befriend(&a, &b);

    // A post and a reply: the thread is a tree on both nodes.
    let p = id_of(&a.json(&["post", "who is coming on saturday?"]));
    eventually(DEADLINE, "bob to have alice's post", || timeline_item(&b, &p));
    let r = id_of(&b.json(&["post", "me!", "--reply-to", &p]));
    eventually(DEADLINE, "alice to have bob's reply", || timeline_item(&a, &r));
    for d in [&a, &b] {
        let entries = d.lines(&["thread", &r]);
        assert_eq!(entries.len(), 2, "{}: {entries:?}", d.name);
        for e in &entries {
            let expected = ["attachments", "author", "id", "parent", "text", "timestamp"];
            assert_eq!(keys(e), expected, "{e}");
            assert_eq!(e["attachments"], serde_json::json!([]));
        }
        assert_eq!(entries[0]["id"], p.as_str());
        assert_eq!(entries[0]["parent"], Value::Null);
        assert_eq!(entries[0]["author"], a_id.as_str());
        assert_eq!(entries[1]["id"], r.as_str());
        assert_eq!(entries[1]["parent"], p.as_str());
        assert_eq!(entries[1]["author"], b_id.as_str());
        assert_eq!(entries[1]["text"], "me!");
    }

    // A reaction shows as counts in both feeds.
    let x = id_of(&b.json(&["react", &p, "👍"]));
    for d in [&a, &b] {
        eventually(DEADLINE, &format!("{} to count bob's reaction", d.name), || {
            (timeline_item(d, &p)?["reactions"] == json!({"👍": 1})).then_some(())
        });
    }
    // A post without reactions has no reactions field.
    assert!(timeline_item(&a, &r).unwrap().get("reactions").is_none());

    // Bob reposts it: alice's timeline shows it once, reposted by bob.
    let y = id_of(&b.json(&["repost", &p]));
    eventually(DEADLINE, "alice to see bob's repost", || {
        (timeline_item(&a, &p)?["reposted_by"] == b_id.as_str()).then_some(())
    });
    let feed = a.lines(&["feed", "--limit", "100"]);
    assert_eq!(feed.iter().filter(|i| i["id"] == p.as_str()).count(), 1, "{feed:?}");

    // Alice's notifications: the contract's fields; the reply, the reaction and the
    // repost once each; all read when listed again.
    let want: BTreeSet<(String, String, String)> =
        [("reply", &r), ("reaction", &x), ("repost", &y)]
            .into_iter()
            .map(|(k, id)| (k.to_owned(), b_id.clone(), id.clone()))
            .collect();
    let about = |list: &[Value]| -> Vec<(String, String, String)> {
        let mut got: Vec<_> = list
            .iter()
            .filter(|n| [&r, &x, &y].iter().any(|id| n["record"] == id.as_str()))
            .map(|n| {
                let s = |f: &str| n[f].as_str().unwrap().to_owned();
                (s("kind"), s("from"), s("record"))
            })
            .collect();
        got.sort();
        got
    };
    let list = eventually(DEADLINE, "alice's notifications", || {
        let list = a.lines(&["notifications"]);
        (about(&list).len() >= want.len()).then_some(list)
    });
    assert_eq!(about(&list), want.iter().cloned().collect::<Vec<_>>());
    for n in &list {
        let expected = ["emoji", "from", "kind", "name", "read", "record", "target", "text"];
        assert_eq!(keys(n), [&expected[..], &["timestamp"]].concat(), "{n}");
        assert!(n["timestamp"].as_u64().unwrap() > 0);
        assert!(n["read"].is_boolean());
    }
    let kinds: BTreeSet<&str> = list.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains("follow") && kinds.contains("mutual"), "{list:?}");
    let again = a.lines(&["notifications"]);
    assert_eq!(about(&again), about(&list));
    assert!(again.iter().all(|n| n["read"] == true), "{again:?}");
    // Bob was not notified of his own doings.
    assert!(about(&b.lines(&["notifications"])).is_empty());

    // Alice deletes a post: it leaves bob's feed.
    let d = id_of(&a.json(&["post", "oops, wrong group"]));
    eventually(DEADLINE, "bob to have the post", || timeline_item(&b, &d));
    assert_eq!(a.json(&["delete", &d]), json!({"ok": true}));
    assert!(timeline_item(&a, &d).is_none());
    eventually(DEADLINE, "the post to leave bob's feed", || {
        timeline_item(&b, &d).is_none().then_some(())
    });
    refused(&b, &["thread", &d], "unknown record");

    // Moderation lists.
    assert_eq!(a.json(&["block", &b_id]), json!({"ok": true}));
    assert_eq!(a.lines(&["blocked"]), vec![json!({"id": b_id, "blocked": true, "muted": false})]);
    assert_eq!(a.json(&["mute", &b_id]), json!({"ok": true}));
    assert_eq!(a.lines(&["blocked"]), vec![json!({"id": b_id, "blocked": true, "muted": true})]);
    assert_eq!(a.json(&["unblock", &b_id]), json!({"ok": true}));
    assert_eq!(a.lines(&["blocked"]), vec![json!({"id": b_id, "blocked": false, "muted": true})]);
    assert_eq!(a.json(&["unmute", &b_id]), json!({"ok": true}));
    assert_eq!(a.lines(&["blocked"]), Vec::<Value>::new());

    // Refused inputs: one line each, nothing printed, no panic; the daemons live on.
    let unknown = "00".repeat(32);
    refused(&a, &["react", &unknown, "👍"], "unknown record");
    refused(&a, &["delete", &r], "only delete your own");
    refused(&a, &["react", &p, "two words"], "one emoji");
    refused(&a, &["post", "x", "--expires", "0m"], "more than 0");
    refused(&a, &["thread", "nonsense"], "nonsense");
    refused(&a, &["unreact", &r], "not reacted");
    refused(&a, &["block", &a_id], "yourself");
    refused(&a, &["post", "x", "--reply-to", "nonsense"], "nonsense");
    assert_eq!(a.json(&["id"])["id"], a_id.as_str());
    assert_eq!(b.json(&["id"])["id"], b_id.as_str());
}
