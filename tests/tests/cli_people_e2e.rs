//! End to end: people and records by what a person types (id tails, petnames, profile
//! names, record id prefixes, ambiguity), and failures as `{"error": ...}` with `--json`,
//! between real `kith` daemons driven only through the command line. Daemons are killed
//! when a test ends, pass or fail; every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kith_tests::cli::{eventually, Daemon};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `kith --json ARGS` that must fail with exit 1: stdout empty, stderr exactly one
/// JSON object `{"error": MESSAGE}`; returns MESSAGE.
fn json_error(d: &Daemon, args: &[&str]) -> String {
    let stderr = d.fail(args);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "kith {args:?}: one line on stderr: {stderr}");
    let v: Value = serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("kith {args:?}: stderr is not JSON ({e}): {stderr}"));
    v["error"].as_str().unwrap_or_else(|| panic!("no error field: {v}")).to_owned()
}

/// The last `n` characters of an id.
fn tail(id: &str, n: usize) -> &str {
    &id[id.len() - n..]
}

#[test]
fn tails_petnames_names_prefixes_and_ambiguity() {
    let a = Daemon::start("alice");
    let b = Daemon::start("bob");
    let c = Daemon::start("Bob");
    let (b_id, c_id) = (b.id(), c.id());
    for other in [&b, &c] {
        assert_eq!(a.json(&["dial", &other.addr()])["ok"], true);
    }
    // Full ids work as before; then both profiles (both called bob) reach alice.
    assert_eq!(a.json(&["follow", &b_id]), json!({"ok": true}));
    assert_eq!(a.json(&["follow", &c_id]), json!({"ok": true}));
    for id in [&b_id, &c_id] {
        eventually(DEADLINE, "alice to know both profiles", || {
            a.json(&["profile", "show", id])["name"].as_str().map(|_| ())
        });
    }

    // A name two known people have is ambiguous: the message lists both ids.
    let err = json_error(&a, &["profile", "show", "bob"]);
    assert!(err.contains(&b_id) && err.contains(&c_id), "{err}");
    // A unique tail of at least 6 characters names one person.
    assert_eq!(a.json(&["profile", "show", tail(&b_id, 6)])["id"], b_id.as_str());
    assert_eq!(a.json(&["profile", "show", &format!("…{}", tail(&c_id, 8))])["id"], c_id);
    let err = json_error(&a, &["profile", "show", tail(&b_id, 5)]);
    assert!(err.contains("at least 6"), "{err}");
    let err = json_error(&a, &["follow", "nobody"]);
    assert!(err.contains("no known person") && err.contains("nobody"), "{err}");

    // A petname, then usable everywhere an id is, in any case.
    assert_eq!(a.json(&["name", tail(&b_id, 6), "bobby"]), json!({"ok": true}));
    assert_eq!(a.lines(&["names"]), vec![json!({"id": b_id, "petname": "bobby", "name": "bob"})]);
    assert_eq!(a.json(&["profile", "show", "Bobby"])["id"], b_id.as_str());
    assert_eq!(a.json(&["mute", "bobby"]), json!({"ok": true}));
    assert_eq!(a.lines(&["blocked"]), vec![json!({"id": b_id, "blocked": false, "muted": true})]);
    assert_eq!(a.json(&["unmute", "@bobby"]), json!({"ok": true}));
    // One petname names one person; bad petnames are refused with the reason.
    let err = json_error(&a, &["name", &c_id, "BOBBY"]);
    assert!(err.contains("already your petname"), "{err}");
    let err = json_error(&a, &["name", &c_id, "two words"]);
    assert!(err.contains("one word"), "{err}");
    assert_eq!(a.json(&["name", &c_id, "other-bob"]), json!({"ok": true}));
    // With petnames, profile names stay ambiguous; petnames are not.
    assert_eq!(a.json(&["profile", "show", "other-bob"])["id"], c_id.as_str());
    assert_eq!(a.json(&["name", "other-bob", "--remove"]), json!({"ok": true}));
    assert_eq!(a.lines(&["names"]).len(), 1);
    let err = json_error(&a, &["profile", "show", "other-bob"]);
    assert!(err.contains("no known person"), "{err}");

    // Record ids by a unique prefix of at least 8 hex digits.
    let p = b.json(&["post", "a post to react to"])["id"].as_str().unwrap().to_owned();
    eventually(DEADLINE, "alice to have bob's post", || {
        a.lines(&["feed", "--author", "bobby"]).iter().any(|i| i["id"] == p.as_str()).then_some(())
    });
    let reaction = a.json(&["react", &p[..8], "👍"]);
    assert_eq!(reaction["id"].as_str().unwrap().len(), 64);
    let thread = a.lines(&["thread", &p[..12].to_uppercase()]);
    assert_eq!(thread[0]["id"], p.as_str());
    let err = json_error(&a, &["react", &p[..7], "👍"]);
    assert!(err.contains("at least 8"), "{err}");
    let err = json_error(&a, &["thread", "0000000000"]);
    assert!(err.contains("unknown record"), "{err}");
    let err = json_error(&a, &["thread", "not-hex"]);
    assert!(err.contains("not-hex"), "{err}");

    // Every failure with --json is one JSON object on stderr, usage errors included
    // (exit status 2 for those, as before).
    let out = a.run(&["--json", "feed", "--limit", "many"]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(v["error"].as_str().unwrap().contains("many"), "{v}");
    // Without --json: one line starting with "kith: ".
    let out = a.run(&["follow", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("kith: ") && stderr.trim().lines().count() == 1, "{stderr}");

    // Each failure the daemon answers carries its kind next to the message.
    let a_id = a.id();
    for (args, kind) in [
        (vec!["profile", "show", "bob"], "ambiguous"),
        (vec!["follow", "nobody"], "not_found"),
        (vec!["thread", "0000000000"], "not_found"),
        (vec!["react", &p[..7], "👍"], "invalid"),
        (vec!["name", &c_id, "BOBBY"], "refused"),
        (vec!["follow", &a_id], "refused"),
    ] {
        let stderr = a.fail(&args);
        let v: Value = serde_json::from_str(stderr.trim()).unwrap();
        assert_eq!(v["kind"], kind, "kith {args:?}: {stderr}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{stderr}");
    }

    // `@petname` and `@<id tail>` in a post become mentions: the record carries the ids,
    // people see names (the look-alike with its tail); unknown words stay as typed.
    let text = format!("thanks @bobby, @{} and @nobody. mail@bobby", tail(&c_id, 8));
    let m = a.json(&["post", &text])["id"].as_str().unwrap().to_owned();
    let item = a.lines(&["feed", "-n", "1"]).remove(0);
    assert_eq!(item["id"], m.as_str());
    assert_eq!(item["text"], format!("thanks @{b_id}, @{c_id} and @nobody. mail@bobby"));
    let human = String::from_utf8_lossy(&a.run(&["feed", "-n", "1"]).stdout).into_owned();
    let shown = format!("thanks @bobby, @Bob [look-alike name] (…{}) and @nobody.", tail(&c_id, 8));
    assert!(human.contains(&shown), "{human}");
    eventually(DEADLINE, "bob to be notified of the mention", || {
        let notes = b.lines(&["notifications"]);
        notes.iter().any(|n| n["kind"] == "mention" && n["record"] == m.as_str()).then_some(())
    });
}

/// `link` with one base58 character in the middle changed.
fn tampered(link: &str) -> String {
    let mut chars: Vec<char> = link.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'x' { 'y' } else { 'x' };
    chars.into_iter().collect()
}

#[test]
fn invite_add_and_dial_by_id() {
    let a = Daemon::start("alice");
    let b = Daemon::start("bob");
    let a_id = a.id();

    let invite = a.json(&["invite"]);
    let link = invite["link"].as_str().unwrap().to_owned();
    assert!(link.starts_with("kith://invite/") && link.len() < 400, "{link}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let expires = invite["expires"].as_u64().unwrap();
    let week = 7 * 24 * 3_600_000;
    assert!(expires.abs_diff(now.as_millis() as u64 + week) < 600_000, "{invite}");

    // Tampered, cut, foreign and own links: clear refusals, nothing added.
    let err = json_error(&b, &["add", &tampered(&link)]);
    assert!(err.contains("changed") || err.contains("damaged"), "{err}");
    let err = json_error(&b, &["add", &link[..link.len() - 9]]);
    assert!(err.contains("damaged"), "{err}");
    let err = json_error(&b, &["add", "https://example.org/not-an-invite"]);
    assert!(err.contains("not a kith invite link"), "{err}");
    let err = json_error(&a, &["add", &link]);
    assert!(err.contains("your own invite"), "{err}");
    assert!(b.lines(&["following"]).is_empty());

    // Adding verifies, connects, follows and remembers the petname.
    let added = b.json(&["add", &link, "--as", "al"]);
    assert_eq!(added, json!({"id": a_id, "name": "alice", "connected": true}));
    assert!(b.lines(&["names"]).iter().any(|n| n["id"] == a_id.as_str() && n["petname"] == "al"));
    assert!(b.lines(&["following"]).iter().any(|f| f["id"] == a_id.as_str()));
    let p = a.json(&["post", "hello from alice"])["id"].as_str().unwrap().to_owned();
    eventually(DEADLINE, "bob to get alice's post", || {
        b.lines(&["feed", "--author", "al"]).iter().any(|i| i["id"] == p.as_str()).then_some(())
    });
    eventually(DEADLINE, "alice to see bob follow her", || {
        a.lines(&["followers"]).iter().any(|f| f["id"] == b.id().as_str()).then_some(())
    });

    // An expired invite says so.
    let short = a.json(&["invite", "--expires", "1s"])["link"].as_str().unwrap().to_owned();
    let err = eventually(DEADLINE, "the short invite to expire", || {
        let out = b.run(&["--json", "add", &short]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert!(err.contains("expired"), "{err}");

    // `dial ID`: a person found by id through the DHT, via a bootstrap node.
    let r = Daemon::start("relay");
    let r_addr = r.addr();
    let args = ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--bootstrap", r_addr.as_str()];
    let x = Daemon::start_with("xena", &[], &args);
    let y = Daemon::start_with("yann", &[], &args);
    let x_id = x.id();
    eventually(DEADLINE, "yann to find xena by id", || {
        y.run(&["--json", "dial", &x_id]).status.success().then_some(())
    });
    assert!(y.lines(&["peers"]).iter().any(|p| p["id"] == x_id.as_str()));
    // Nobody bob knows can lead to the relay node: a clear refusal, not "invalid multiaddr".
    let err = json_error(&b, &["dial", &r.id()]);
    assert!(err.contains("cannot reach"), "{err}");
}

#[test]
fn conventions_paging_stop_and_completions() {
    let mut a = Daemon::start("alice");
    // `post -` reads standard input.
    let mut child = std::process::Command::new(kith_tests::cli::kith_bin())
        .arg("--home")
        .arg(a.home())
        .args(["--json", "post", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"from stdin #piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<String> = (1..=5)
        .map(|i| a.json(&["post", &format!("post {i}")])["id"].as_str().unwrap().to_owned())
        .collect();
    // Pages of exactly N, each after the cursor of the one before; -n is --limit.
    let page = |a: &Daemon, args: &[&str]| -> Vec<String> {
        let mut full = vec!["feed"];
        full.extend_from_slice(args);
        a.lines(&full).iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
    };
    let one = page(&a, &["-n", "2"]);
    assert_eq!(one, [ids[4].clone(), ids[3].clone()]);
    let two = page(&a, &["-n", "2", "--before", &one[1][..8]]);
    assert_eq!(two, [ids[2].clone(), ids[1].clone()]);
    let three = page(&a, &["-n", "2", "--before", &two[1]]);
    assert_eq!(three, [ids[0].clone(), first["id"].as_str().unwrap().to_owned()]);
    let stdin_post = a.lines(&["feed", "-n", "1", "--before", &three[0]]);
    assert_eq!(stdin_post[0]["text"], "from stdin #piped");

    // Completions for three shells, and a man page.
    for shell in ["bash", "zsh", "fish"] {
        let out = a.run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("invite") && script.contains("kith"), "{shell}: {script}");
    }
    let man = a.run(&["man"]);
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH kith 1"));

    // `kith stop`: the daemon flushes and exits; it starts again on the same home.
    assert_eq!(a.json(&["stop"]), json!({"ok": true}));
    let err = json_error(&a, &["status"]);
    assert!(err.contains("no kith daemon"), "{err}");
    a.restart();
    assert_eq!(page(&a, &["-n", "1"]), [ids[4].clone()]);
}

#[test]
fn notifications_with_targets_unread_limit_and_live() {
    let a = Daemon::start("alice");
    let b = Daemon::start("bob");
    kith_tests::cli::befriend(&a, &b, DEADLINE);
    let (a_id, b_id) = (a.id(), b.id());
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let p = id(a.json(&["post", "who is coming on saturday?"]));
    eventually(DEADLINE, "bob to have alice's post", || {
        b.lines(&["feed", "--author", &a_id]).iter().any(|i| i["id"] == p.as_str()).then_some(())
    });
    let reply = id(b.json(&["post", "me!", "--reply-to", &p]));
    let reaction = id(b.json(&["react", &p, "🎉"]));
    let repost = id(b.json(&["repost", &p]));
    let mention = id(b.json(&["post", &format!("ask @{a_id} about it")]));
    let message = id(b.json(&["msg", "send", &a_id, "see you at 8"]));
    // Waiting without listing (listing marks read): the unread count in status.
    eventually(DEADLINE, "alice to be notified of all five", || {
        let unread = a.json(&["status"])["unread_notifications"].as_u64().unwrap();
        (unread >= 7).then_some(())
    });

    // --unread -n 2: the two newest unread, which become read; the rest stay unread.
    let first = a.lines(&["notifications", "--unread", "-n", "2"]);
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().all(|n| n["read"] == false));
    let rest = a.lines(&["notifications", "--unread"]);
    assert!(rest.iter().all(|n| n["read"] == false && !first.contains(n)), "{rest:?}");
    assert!(a.lines(&["notifications", "--unread"]).is_empty());
    let all = a.lines(&["notifications", "-n", "200"]);
    assert!(all.iter().all(|n| n["read"] == true));
    assert_eq!(all.len(), first.len() + rest.len());
    assert_eq!(a.lines(&["notifications", "-n", "3"]).len(), 3);

    // Each carries what it is about and an id to act on.
    let about = |record: &str| all.iter().find(|n| n["record"] == record).unwrap().clone();
    let n = about(&reply);
    assert_eq!(
        (&n["kind"], &n["from"], &n["name"]),
        (&json!("reply"), &json!(b_id), &json!("bob"))
    );
    assert_eq!((&n["target"], &n["text"]), (&json!(p), &json!("me!")));
    let n = about(&reaction);
    assert_eq!(
        (&n["kind"], &n["emoji"], &n["target"]),
        (&json!("reaction"), &json!("🎉"), &json!(p))
    );
    assert_eq!(n["text"], "who is coming on saturday?");
    let n = about(&repost);
    assert_eq!((&n["kind"], &n["target"]), (&json!("repost"), &json!(p)));
    assert_eq!(n["text"], "who is coming on saturday?");
    let n = about(&mention);
    assert_eq!((&n["kind"], &n["target"]), (&json!("mention"), &Value::Null));
    assert_eq!(n["text"], format!("ask @{a_id} about it"));
    let n = about(&message);
    assert_eq!((&n["kind"], &n["text"]), (&json!("message"), &json!("see you at 8")));
    // The reply's id is enough to answer it.
    assert!(a.json(&["post", "great", "--reply-to", &reply[..8]])["id"].is_string());
    // People read the same, with the emoji and the snippet.
    let human =
        String::from_utf8_lossy(&a.run(&["notifications", "-n", "200"]).stdout).into_owned();
    assert!(human.contains("reacted 🎉 to your post") && human.contains("“me!”"), "{human}");
    let ids = format!("id {}  on your post {}", &reaction[..12], &p[..12]);
    assert!(human.contains(&ids), "{human}");

    // --live prints new ones as they come and marks them read. The stream may start after
    // a reply arrives; each try is a new reply, until one comes through the stream.
    let live = a.stream(&["notifications", "--live"]);
    let got = eventually(DEADLINE, "a live notification", || {
        let r = id(b.json(&["post", "live one", "--reply-to", &p]));
        live.try_next(Duration::from_secs(3)).map(|n| (r, n))
    });
    let (_, n) = got;
    assert_eq!(
        (&n["kind"], &n["read"], &n["text"]),
        (&json!("reply"), &json!(false), &json!("live one"))
    );
    let record = n["record"].as_str().unwrap().to_owned();
    eventually(DEADLINE, "the live one to be marked read", || {
        let list = a.lines(&["notifications", "--unread"]);
        (!list.iter().any(|n| n["record"] == record.as_str())).then_some(())
    });
    assert!(a.lines(&["notifications"]).iter().any(|n| n["record"] == record.as_str()));
}

#[test]
fn one_repost_per_person_unrepost_and_muted_replies() {
    let a = Daemon::start("alice");
    let b = Daemon::start("bob");
    kith_tests::cli::befriend(&a, &b, DEADLINE);
    let (a_id, b_id) = (a.id(), b.id());
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let older = id(a.json(&["post", "an older one"]));
    let p = id(a.json(&["post", "share this"]));
    eventually(DEADLINE, "bob to have alice's posts", || {
        let feed = b.lines(&["feed", "--author", &a_id]);
        [&older, &p].iter().all(|x| feed.iter().any(|i| i["id"] == x.as_str())).then_some(())
    });
    // One repost per person per post; a second is refused and makes nothing.
    let repost = id(b.json(&["repost", &p[..8]]));
    let err = json_error(&b, &["repost", &p]);
    assert!(err.contains("already reposted"), "{err}");
    let reposted_by = |d: &Daemon| {
        d.lines(&["feed", "-n", "50"])
            .into_iter()
            .find(|i| i["id"] == p.as_str())
            .map(|i| i["reposted_by"].clone())
    };
    eventually(DEADLINE, "alice to see bob's repost", || {
        (reposted_by(&a)? == json!(b_id)).then_some(())
    });
    let human = String::from_utf8_lossy(&a.run(&["feed", "-n", "50"]).stdout).into_owned();
    assert!(human.contains(&format!("↻ reposted by bob (…{})", tail(&b_id, 8))), "{human}");
    // -n N gives N, the post and its repost counted once.
    let two = b.lines(&["feed", "-n", "2"]);
    let ids: Vec<&Value> = two.iter().map(|i| &i["id"]).collect();
    assert_eq!(ids, [&json!(p), &json!(older)], "{two:?}");

    // Unrepost: a tombstone for the repost; the post stays, shown without the repost.
    assert_eq!(b.json(&["unrepost", &p]), json!({"ok": true}));
    let err = json_error(&b, &["unrepost", &p]);
    assert!(err.contains("not reposted"), "{err}");
    eventually(DEADLINE, "alice to see the repost withdrawn", || {
        (reposted_by(&a)? == Value::Null).then_some(())
    });
    assert!(json_error(&b, &["thread", &repost]).contains("unknown record"));
    // Reposting again is allowed, once.
    assert_ne!(id(b.json(&["repost", &p])), repost);
    assert!(json_error(&b, &["repost", &p]).contains("already reposted"));

    // A muted person's replies leave threads (with a count for people) and their posts
    // leave their author feed.
    let r = id(b.json(&["post", "a reply from bob", "--reply-to", &p]));
    eventually(DEADLINE, "alice to have bob's reply", || {
        a.lines(&["thread", &p]).iter().any(|e| e["id"] == r.as_str()).then_some(())
    });
    assert_eq!(a.json(&["mute", &b_id]), json!({"ok": true}));
    let thread = a.lines(&["thread", &p]);
    assert_eq!(thread.len(), 1, "{thread:?}");
    assert_eq!(thread[0]["id"], p.as_str());
    let human = String::from_utf8_lossy(&a.run(&["thread", &p]).stdout).into_owned();
    assert!(human.contains("1 reply from a muted person hidden"), "{human}");
    assert!(!human.contains("a reply from bob"), "{human}");
    assert!(a.lines(&["feed", "--author", &b_id]).is_empty());
    assert_eq!(a.json(&["unmute", &b_id]), json!({"ok": true}));
    assert_eq!(a.lines(&["thread", &p]).len(), 2);
}

#[test]
fn lookalike_names_are_marked_and_told_apart() {
    let c = Daemon::start("carol");
    // The real Alice; one with a Cyrillic А; one with a zero-width space and a bidi
    // override (the name reads "Alice" on many screens).
    let x = Daemon::start("Alice");
    let y = Daemon::start("\u{410}lice");
    let z = Daemon::start("Ali\u{200B}ce\u{202E}");
    let ids: Vec<String> = [&x, &y, &z].iter().map(|d| d.id()).collect();
    for d in [&x, &y, &z] {
        assert_eq!(c.json(&["dial", &d.addr()])["ok"], true);
        assert_eq!(c.json(&["follow", &d.id()]), json!({"ok": true}));
    }
    let posts: Vec<String> = [&x, &y, &z]
        .iter()
        .map(|d| d.json(&["post", "hi, it's alice"])["id"].as_str().unwrap().to_owned())
        .collect();
    eventually(DEADLINE, "carol to have three posts and three profiles", || {
        let feed = c.lines(&["feed", "-n", "50"]);
        let named = ids.iter().all(|id| c.json(&["profile", "show", id])["name"].is_string());
        (named && posts.iter().all(|p| feed.iter().any(|i| i["id"] == p.as_str()))).then_some(())
    });

    // Every one of them is marked, with their own id tail; invisible characters show.
    let feed = String::from_utf8_lossy(&c.run(&["feed", "-n", "50"]).stdout).into_owned();
    let shown = [
        "Alice [look-alike name]".to_owned(),
        "\u{410}lice [look-alike name]".to_owned(),
        "Ali<U+200B>ce<U+202E> [look-alike name]".to_owned(),
    ];
    for (name, id) in shown.iter().zip(&ids) {
        assert!(feed.contains(&format!("{name} (…{})", tail(id, 8))), "{name}: {feed}");
    }
    assert!(!feed.contains(['\u{200B}', '\u{202E}']), "{feed:?}");
    let following = String::from_utf8_lossy(&c.run(&["following"]).stdout).into_owned();
    for (name, id) in shown.iter().zip(&ids) {
        assert!(following.contains(&format!("{id}  {name}")), "{following}");
    }
    let profile =
        String::from_utf8_lossy(&c.run(&["profile", "show", &ids[1]]).stdout).into_owned();
    assert!(profile.contains("looks like this one"), "{profile}");
    // In a thread too: the look-alike replies to the real one.
    let r = y.json(&["post", "me too", "--reply-to", &posts[0]])["id"].as_str().unwrap().to_owned();
    eventually(DEADLINE, "carol to have the reply", || {
        c.lines(&["thread", &posts[0]]).iter().any(|e| e["id"] == r.as_str()).then_some(())
    });
    let thread = String::from_utf8_lossy(&c.run(&["thread", &posts[0]]).stdout).into_owned();
    assert!(thread.contains(&format!("{} (…{})", shown[0], tail(&ids[0], 8))), "{thread}");
    assert!(thread.contains(&format!("{} (…{})", shown[1], tail(&ids[1], 8))), "{thread}");

    // Typing the name finds only the one whose name is exactly that.
    assert_eq!(c.json(&["profile", "show", "alice"])["id"], ids[0].as_str());
    // A petname replaces the name, unmarked; the others stay marked (they look like it).
    assert_eq!(c.json(&["name", &ids[0], "alice-real"]), json!({"ok": true}));
    let feed = String::from_utf8_lossy(&c.run(&["feed", "-n", "50"]).stdout).into_owned();
    assert!(feed.contains(&format!("alice-real (…{})", tail(&ids[0], 8))), "{feed}");
    assert!(feed.contains(&format!("{} (…{})", shown[1], tail(&ids[1], 8))), "{feed}");
    // JSON keeps the contract's fields and the names as sent.
    let names = c.lines(&["names"]);
    assert_eq!(names, vec![json!({"id": ids[0], "petname": "alice-real", "name": "Alice"})]);
    let item = c.lines(&["feed", "--author", &ids[2]]).remove(0);
    assert!(item.get("naming").is_none(), "{item}");
    assert_eq!(c.json(&["profile", "show", &ids[2]])["name"], "Ali\u{200B}ce\u{202E}");
}

/// An invite's name becomes a petname only when it looks like no one else's: a petname is
/// shown unmarked, so a link from someone calling themselves "Аlice" (Cyrillic А) must
/// not become the petname "аlice" beside a friend's "alice".
#[test]
fn an_invite_name_like_a_friends_is_not_made_a_petname() {
    let c = Daemon::start("carol");
    let x = Daemon::start("Alice");
    let y = Daemon::start("\u{410}lice");
    let link = |d: &Daemon| d.json(&["invite"])["link"].as_str().unwrap().to_owned();
    assert_eq!(c.json(&["add", &link(&x)])["connected"], true);
    let names = vec![json!({"id": x.id(), "petname": "alice", "name": "Alice"})];
    assert_eq!(c.lines(&["names"]), names);
    assert_eq!(c.json(&["add", &link(&y)])["connected"], true);
    assert_eq!(c.lines(&["names"]), names, "the look-alike got no petname");
    // The look-alike is followed and shown with its own name, marked.
    let p = y.json(&["post", "it's me, alice"])["id"].as_str().unwrap().to_owned();
    eventually(DEADLINE, "carol to get the look-alike's post", || {
        c.lines(&["feed"]).iter().any(|i| i["id"] == p.as_str()).then_some(())
    });
    let feed = String::from_utf8_lossy(&c.run(&["feed"]).stdout).into_owned();
    let shown = format!("\u{410}lice [look-alike name] (…{})", tail(&y.id(), 8));
    assert!(feed.contains(&shown), "{feed}");
}

#[test]
fn warnings_when_alone_and_a_daemon_log_for_people() {
    let a = Daemon::start("alice");
    let stranger = kith_protocol::Keypair::from_secret_bytes(&[42; 32]).id().to_string();
    // Connected to no one: follow, post and feed succeed (stdout as ever) and warn on
    // stderr: one JSON object with --json, a plain line without, no colour off a terminal.
    for args in [vec!["follow", stranger.as_str()], vec!["post", "anyone?"], vec!["feed"]] {
        let mut full = vec!["--json"];
        full.extend_from_slice(&args);
        let out = a.run(&full);
        assert!(out.status.success(), "{args:?}");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            serde_json::from_str::<Value>(line).unwrap();
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        let v: Value = serde_json::from_str(lines[0]).unwrap();
        assert!(v["warning"].as_str().unwrap().contains("no peer is connected"), "{v}");
        let out = a.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(stderr.starts_with("kith: warning: no peer is connected"), "{args:?}: {stderr}");
        assert!(!stderr.contains('\u{1b}') && stderr.lines().count() == 1, "{stderr:?}");
    }
    // A failure stays one line: no warning after it.
    assert!(json_error(&a, &["follow", "nobody"]).contains("no known person"));

    // Connected: no warning. The log names who came and went, and that a message came
    // (never what it said).
    let mut b = Daemon::start("bob");
    kith_tests::cli::befriend(&a, &b, DEADLINE);
    let out = a.run(&["--json", "post", "now with bob"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    let b_id = b.id();
    let peers = String::from_utf8_lossy(&a.run(&["peers"]).stdout).into_owned();
    let line = peers.lines().find(|l| l.starts_with(&b_id)).unwrap_or_default();
    assert!(line.ends_with("  bob"), "{peers}");
    b.json(&["msg", "send", &a.id(), "the secret word is swordfish"]);
    eventually(DEADLINE, "alice's log to tell of the message", || {
        a.log().contains("direct message received").then_some(())
    });
    b.terminate();
    eventually(DEADLINE, "alice's log to tell bob left", || {
        a.log().contains("peer left").then_some(())
    });
    // Known by now: bob's name comes with his id when he comes back.
    b.restart();
    let named = format!("bob ({b_id})");
    eventually(DEADLINE, "alice's log to tell bob is back", || {
        a.log().lines().any(|l| l.contains("peer connected") && l.contains(&named)).then_some(())
    });
    let log = a.log();
    let left = log.lines().find(|l| l.contains("peer left")).unwrap_or_default();
    assert!(left.contains(&named), "{log}");
    let dm = log.lines().find(|l| l.contains("direct message received")).unwrap();
    assert!(dm.contains(&b_id), "{dm}");
    assert!(!log.contains("swordfish"), "{log}");
    // Not the noise: Kademlia's "no known peers" at start.
    assert!(!log.contains("Failed to trigger bootstrap"), "{log}");

    // A bootstrap peer that cannot be reached is a warning.
    let dead = format!("/ip4/127.0.0.1/tcp/9/p2p/{stranger}");
    let args = ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--bootstrap", dead.as_str()];
    let c = Daemon::start_with("carol", &[], &args);
    eventually(DEADLINE, "carol's log to tell the bootstrap failed", || {
        c.log().contains("cannot reach bootstrap peer").then_some(())
    });
}

#[test]
fn names_of_people_not_followed_are_fetched() {
    let a = Daemon::start("alice");
    let c = Daemon::start("carol");
    let c_id = c.id();
    // Carol posts with a hashtag alice subscribes to; alice follows nobody.
    let p = c.json(&["post", "hello #kithnames"])["id"].as_str().unwrap().to_owned();
    assert_eq!(a.json(&["subscribe", "kithnames"]), json!({"ok": true}));
    assert_eq!(a.json(&["dial", &c.addr()])["ok"], true);
    eventually(DEADLINE, "alice to get carol's tag post", || {
        let feed = a.lines(&["feed", "--tag", "kithnames"]);
        feed.iter().any(|i| i["id"] == p.as_str()).then_some(())
    });
    // Showing the post fetched carol's profile: her name shows, with her id tail.
    let shown = format!("carol (…{})", tail(&c_id, 8));
    let human = eventually(DEADLINE, "carol's name in alice's feed", || {
        let out = a.run(&["feed", "--tag", "kithnames"]);
        let human = String::from_utf8_lossy(&out.stdout).into_owned();
        human.contains(&shown).then_some(human)
    });
    assert!(human.contains("hello #kithnames"), "{human}");
    assert_eq!(a.json(&["profile", "show", &c_id])["name"], "carol");
    assert!(a.lines(&["following"]).is_empty());
}
