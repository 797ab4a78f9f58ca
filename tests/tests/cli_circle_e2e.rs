//! End to end: circles (posts for chosen friends) between real `kith` daemons, driven
//! only through the command line with `--json` (issue #19). Daemons are killed when a
//! test ends, pass or fail; every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kith_tests::cli::{befriend, eventually, home_holds, Daemon, OLD_KEY_SHARE_LOG};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(40);

/// `author`'s posts as `d` shows them.
fn posts_of(d: &Daemon, author: &str) -> Vec<Value> {
    d.lines(&["feed", "--author", author, "--limit", "100"])
}

/// Waits until `d` shows `author`'s post `text`, and returns it.
fn wait_for_post(d: &Daemon, author: &str, text: &str) -> Value {
    eventually(DEADLINE, &format!("{} to show {text:?}", d.name), || {
        posts_of(d, author).into_iter().find(|p| p["text"] == text)
    })
}

/// Waits until `d` holds `author`'s log up to `seq` with no gap, whatever it can read.
fn wait_for_log(d: &Daemon, author: &str, seq: u64) {
    eventually(DEADLINE, &format!("{} to hold {author}'s log up to {seq}", d.name), || {
        let profile = d.json(&["profile", "show", author]);
        let latest = profile["latest_seq"].as_u64().unwrap();
        (latest >= seq && profile["log_records"].as_u64() == Some(latest)).then_some(())
    });
}

fn circle_post(d: &Daemon, circle: &str, text: &str) -> String {
    let reply = d.json(&["post", text, "--circle", circle]);
    let id = reply["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 64, "{reply}");
    id
}

fn seq_of(d: &Daemon, author: &str, id: &str) -> u64 {
    let post = posts_of(d, author).into_iter().find(|p| p["id"] == id).unwrap();
    post["seq"].as_u64().unwrap()
}

#[test]
fn circle_posts_are_read_by_members_only_logs_stay_whole_and_removal_holds() {
    let (mut a, mut b, mut c, mut d) =
        (Daemon::start("a"), Daemon::start("b"), Daemon::start("c"), Daemon::start("d"));
    let a_id = a.id();
    // B, C and D are A's mutual connections; D is a follower outside the circle.
    for other in [&b, &c, &d] {
        befriend(&a, other, DEADLINE);
    }

    // Only mutual connections can be put in a circle.
    let e = Daemon::start("e");
    let refused = a.fail(&["circle", "create", "nope", "--member", &e.id()]);
    assert!(refused.contains("mutual"), "{refused}");
    let made = a.json(&["circle", "create", "close", "--member", &b.id(), "--member", &c.id()]);
    assert_eq!(made["ok"], true, "{made}");
    let circles = a.lines(&["circles"]);
    assert_eq!(circles.len(), 1);
    assert_eq!(circles[0]["name"], "close");
    assert_eq!(circles[0]["members"].as_array().unwrap().len(), 2);
    assert!(a.fail(&["circle", "add", "close", &e.id()]).contains("mutual"));

    let first = a.json(&["post", "public before"])["id"].as_str().unwrap().to_owned();
    let secret = circle_post(&a, "close", "secret for the circle");
    let last = a.json(&["post", "public after"])["id"].as_str().unwrap().to_owned();
    let (first_seq, last_seq) = (seq_of(&a, &a_id, &first), seq_of(&a, &a_id, &last));
    let secret_seq = seq_of(&a, &a_id, &secret);
    assert_eq!((secret_seq, last_seq), (first_seq + 1, first_seq + 2));
    // The author and the members read it, marked private.
    for member in [&a, &b, &c] {
        let post = wait_for_post(member, &a_id, "secret for the circle");
        assert_eq!(post["private"], true, "{post}");
        assert_eq!(post["id"], secret.as_str());
        let timeline = member.lines(&["feed"]);
        assert!(timeline.iter().any(|p| p["id"] == secret.as_str()), "{}'s timeline", member.name);
    }
    // The follower outside the circle holds the whole log but shows only public posts.
    wait_for_post(&d, &a_id, "public after");
    wait_for_log(&d, &a_id, last_seq);
    let shown = posts_of(&d, &a_id);
    assert!(shown.iter().all(|p| p["private"] == false && p["id"] != secret.as_str()), "{shown:?}");
    assert!(d.lines(&["feed"]).iter().all(|p| p["id"] != secret.as_str()));
    // Replies and reactions to a circle post would be public: refused.
    assert!(b.fail(&["react", &secret, "👍"]).contains("circle"));
    assert!(b.fail(&["post", "me too", "--reply-to", &secret]).contains("circle"));
    assert!(b.fail(&["repost", &secret]).contains("post"));

    // C is removed: it reads nothing posted after, though it holds the record.
    assert_eq!(a.json(&["circle", "remove", "close", &c.id()])["ok"], true);
    let after = circle_post(&a, "close", "after C left");
    wait_for_post(&b, &a_id, "after C left");
    let after_seq = seq_of(&a, &a_id, &after);
    wait_for_log(&c, &a_id, after_seq);
    wait_for_log(&d, &a_id, after_seq);
    assert!(posts_of(&c, &a_id).iter().all(|p| p["id"] != after.as_str()));
    assert!(posts_of(&c, &a_id).iter().any(|p| p["id"] == secret.as_str()), "C read before");

    // B is offline while A posts: it gets the record by history sync and the key from
    // A's queue when it comes back.
    assert!(b.terminate());
    circle_post(&a, "close", "while B was away");
    let status = a.json(&["status"]);
    assert_eq!(status["circles"], 1, "{status}");
    b.restart();
    let away = wait_for_post(&b, &a_id, "while B was away");
    assert_eq!(away["private"], true);

    for daemon in [&mut a, &mut b, &mut c, &mut d] {
        assert!(daemon.terminate(), "{} stops cleanly", daemon.name);
    }
    let secrets = ["secret for the circle", "after C left", "while B was away"];
    for text in secrets {
        assert!(!home_holds(d.home(), text.as_bytes()), "the outsider holds {text:?}");
        for daemon in [&a, &b, &c, &d, &e] {
            let logs = daemon.all_logs();
            assert!(!logs.contains(text), "{}'s log shows {text:?}", daemon.name);
        }
    }
    // Every circle key went on Olm (forward secret), also to members who never made a
    // post, message or group: none sealed with `/kith/dm/1`.
    for daemon in [&a, &b, &c, &d, &e] {
        assert!(!daemon.all_logs().contains(OLD_KEY_SHARE_LOG), "{} took one", daemon.name);
    }
    for text in &secrets[1..] {
        assert!(!home_holds(c.home(), text.as_bytes()), "the removed member holds {text:?}");
    }
    // Members do not keep the plaintext either: it is read from the record when shown.
    assert!(!home_holds(b.home(), secrets[0].as_bytes()));
}
