//! The `kith` binary without a daemon: usage errors, init, and the "no daemon" message.
//! (Also makes `cargo test` build the binary that tests/ drives.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn kith(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kith")).arg("--home").arg(home).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn client_commands_without_daemon_say_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["status"],
        vec!["id"],
        vec!["--json", "peers"],
        vec!["post", "hello"],
        vec!["feed", "--limit", "3"],
        vec!["follow", "12D3KooWEtW4gg4oBMVv145QpS46UV7uQMxyNxP2vftiFUfeSH5K"],
    ] {
        let out = kith(dir.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("no kith daemon is running for"), "{args:?}: {err}");
        assert!(err.contains("kith daemon"), "{err}");
        // The hint starts a daemon for this home, not the default one.
        let home = dir.path().display().to_string();
        assert!(err.contains(&format!("kith daemon --home {home}")), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn id_works_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let made: serde_json::Value =
        serde_json::from_slice(&kith(dir.path(), &["--json", "init"]).stdout).unwrap();
    let out = kith(dir.path(), &["--json", "id"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"id": made["id"], "addrs": []}));
    let out = kith(dir.path(), &["id"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(made["id"].as_str().unwrap()), "{text}");
    assert!(text.contains("no daemon running"), "{text}");
}

#[test]
fn json_failures_are_json_objects() {
    let dir = tempfile::tempdir().unwrap();
    for (args, code) in [
        (vec!["--json", "status"], 1),
        (vec!["--json", "nonsense"], 2),
        (vec!["feed", "--json", "-n", "x"], 2),
        (vec!["--json", "post"], 2),
    ] {
        let out = kith(dir.path(), &args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&err).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["error"], "{args:?}: {err}");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
}

#[test]
fn init_creates_once_and_prints_id() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("h");
    let out = kith(&home, &["--json", "init", "--name", "Ann"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("12D3KooW"));
    let again = kith(&home, &["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("refusing to overwrite"), "{}", stderr(&again));
    // The identity did not change.
    let key = std::fs::read(home.join("identity.key")).unwrap();
    assert_eq!(key.len(), 32);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(home.join("identity.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [vec!["nonsense"], vec!["post"], vec!["feed", "--limit", "x"], vec!["--bogus"]] {
        let out = kith(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn daemon_with_bad_config_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = kith(dir.path(), &["daemon", "--listen", "garbage"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--listen"), "{}", stderr(&out));
    std::fs::write(dir.path().join("config.toml"), "mdns = \"yes\"\n").unwrap();
    let out = kith(dir.path(), &["daemon"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("config.toml"), "{}", stderr(&out));
    // A failed start leaves no socket behind.
    assert!(!dir.path().join("kith.sock").exists());
}
