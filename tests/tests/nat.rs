//! NAT traversal with real `kith` daemons in Linux network namespaces (set up by
//! `scripts/netns-nat`): relay R in a "public" namespace, A and B each in a home behind
//! its own masquerading router that lets no connection in. A and B know only R. They
//! find out they are unreachable (AutoNAT), reserve a slot on R (R relays for friends
//! only: B is refused until R follows it back), become mutual with each other and
//! exchange direct messages
//! over the relayed connection; the test reports whether hole punching (DCUtR) then
//! upgraded it to a direct one.
//!
//! Needs root, iproute2 and iptables (`.ci/run` installs them and sets
//! `KITH_REQUIRE_NETNS=1`, which turns "cannot build namespaces" into a failure). Elsewhere
//! the test prints SKIPPED with the reason and returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, process::Command, time::Duration};

use kith_tests::cli::{eventually, Daemon};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(90);

/// The namespaces of one run; removed on drop, whatever happens.
struct Namespaces {
    prefix: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns-nat")
}

impl Namespaces {
    /// Builds the namespaces, or says why not (`Err`) when this machine cannot.
    fn up() -> Result<Self, String> {
        let prefix = format!("kn{}", std::process::id());
        let out = Command::new("bash").arg(script()).args(["up", &prefix]).output().unwrap();
        match out.status.code() {
            Some(0) => Ok(Self { prefix }),
            Some(77) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            _ => panic!(
                "scripts/netns-nat up failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    fn exec(&self, ns: &str) -> Vec<String> {
        ["ip", "netns", "exec"].iter().map(|s| s.to_string()).chain([self.ns(ns)]).collect()
    }

    fn ns(&self, ns: &str) -> String {
        format!("{}-{ns}", self.prefix)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args(["down", &self.prefix]).status();
    }
}

/// Prints the end of each daemon's log when the test fails, so CI shows why (or always,
/// all of it, with `KITH_TEST_LOGS=1`).
struct LogsOnFailure<'a>(Vec<&'a Daemon>);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        let all = std::env::var_os("KITH_TEST_LOGS").is_some();
        if !std::thread::panicking() && !all {
            return;
        }
        let keep = if all { usize::MAX } else { 60 };
        for d in &self.0 {
            let log = d.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("---- {} daemon log (last {} lines) ----", d.name, keep.min(lines.len()));
            for line in &lines[lines.len().saturating_sub(keep)..] {
                eprintln!("{line}");
            }
        }
    }
}

fn start(nets: &Namespaces, name: &str, ns: &str, args: &[&str]) -> Daemon {
    let wrapper = nets.exec(ns);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut all = vec!["--listen", "/ip4/0.0.0.0/tcp/0", "--no-mdns"];
    all.extend_from_slice(args);
    Daemon::start_with(name, &wrapper, &all)
}

fn nat(d: &Daemon) -> Value {
    d.json(&["status"])["nat"].clone()
}

fn peer_connection(d: &Daemon, other: &str) -> Option<String> {
    d.lines(&["peers"])
        .into_iter()
        .find(|p| p["id"] == other)
        .and_then(|p| p["connection"].as_str().map(str::to_owned))
}

fn delivered(d: &Daemon, to: &str, text: &str) -> bool {
    d.lines(&["msg", "thread", to]).iter().any(|m| m["text"] == text && m["status"] == "delivered")
}

fn received(d: &Daemon, from: &str, text: &str) -> bool {
    d.lines(&["msg", "thread", from]).iter().any(|m| m["text"] == text && m["from"] == from)
}

#[test]
fn peers_behind_nat_talk_through_a_friends_relay() {
    let nets = match Namespaces::up() {
        Ok(nets) => nets,
        Err(reason) => {
            if std::env::var_os("KITH_REQUIRE_NETNS").is_some() {
                panic!("KITH_REQUIRE_NETNS is set but namespaces cannot be made: {reason}");
            }
            eprintln!("SKIPPED peers_behind_nat_talk_through_a_friends_relay: {reason}");
            return;
        }
    };

    let r = start(&nets, "r", "pub", &["--relay"]);
    let r_id = r.id();
    let r_addr = r.json(&["id"])["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("/ip4/10.77.0.1/"))
        .expect("R listens on its public address")
        .to_owned();
    let a = start(&nets, "a", "a", &["--bootstrap", &r_addr]);
    let b = start(&nets, "b", "b", &["--bootstrap", &r_addr]);
    let (a_id, b_id) = (a.id(), b.id());
    let _logs = LogsOnFailure(vec![&r, &a, &b]);

    // Friends relay for friends: A and B follow R, but R follows only A at first, so R
    // refuses B's reservation and accepts A's.
    for (x, y) in [(&a, &r_id), (&b, &r_id), (&r, &a_id)] {
        assert_eq!(x.json(&["follow", y])["ok"], true);
    }
    let reserved = |d: &Daemon| {
        let n = nat(d);
        n["reachability"] == "private"
            && n["relay_reservations"].as_array().is_some_and(|r| !r.is_empty())
    };
    eventually(DEADLINE, "A to be unreachable with a relay slot", || reserved(&a).then_some(()));
    eventually(DEADLINE, "R to refuse B, not yet a friend", || {
        (nat(&r)["relay_refused"].as_u64().unwrap() >= 1).then_some(())
    });
    assert!(!reserved(&b), "B got a slot on R without being R's friend: {}", nat(&b));
    assert_eq!(nat(&r)["relaying_for"], 1, "R: {}", nat(&r));
    // R follows B back: now B is a friend, and its next try succeeds.
    assert_eq!(r.json(&["follow", &b_id])["ok"], true);
    for home in [&a, &b] {
        eventually(DEADLINE, &format!("{} to be unreachable with a relay slot", home.name), || {
            let n = nat(home);
            (n["reachability"] == "private"
                && n["relay_reservations"].as_array().is_some_and(|r| !r.is_empty()))
            .then_some(n)
        });
    }
    assert!(
        peer_connection(&a, &b_id).is_none(),
        "A and B must not be connected before they look for each other"
    );

    // A and B follow each other; B's follow looks A up in the DHT (A's signed address
    // record names its relayed address) and connects through R.
    assert_eq!(a.json(&["follow", &b_id])["ok"], true);
    assert_eq!(b.json(&["follow", &a_id])["ok"], true);
    eventually(DEADLINE, "A and B to be mutual", || {
        (a.is_mutual_with(&b_id) && b.is_mutual_with(&a_id)).then_some(())
    });

    let there = "hello from behind NAT A";
    let back = "hello from behind NAT B";
    a.json(&["msg", "send", &b_id, there]);
    eventually(DEADLINE, "A's message to be delivered", || {
        (delivered(&a, &b_id, there) && received(&b, &a_id, there)).then_some(())
    });
    b.json(&["msg", "send", &a_id, back]);
    eventually(DEADLINE, "B's message to be delivered", || {
        (delivered(&b, &a_id, back) && received(&a, &b_id, back)).then_some(())
    });

    // How A and B are connected now: relayed, or direct after a hole punch.
    let how = eventually(DEADLINE, "A to list B as a peer", || peer_connection(&a, &b_id));
    let (na, nb) = (nat(&a), nat(&b));
    eprintln!(
        "NAT test: A-B connection is {how}; hole punches A ok {} failed {}, B ok {} failed {}",
        na["holepunch_ok"], na["holepunch_failed"], nb["holepunch_ok"], nb["holepunch_failed"]
    );
    for d in [&a, &b] {
        for line in d.log().lines().filter(|l| l.contains("hole punch")) {
            eprintln!("  {}: {line}", d.name);
        }
    }
    assert!(how == "relayed" || how == "direct", "unexpected connection kind {how}");
    // R relayed for both (they hold reservations on it).
    eventually(DEADLINE, "R to relay for both A and B", || {
        (nat(&r)["relaying_for"].as_u64() >= Some(2)).then_some(())
    });
    drop(_logs);
    drop((a, b, r));
    drop(nets);
}
