//! Drives real `kith` processes through the command line only.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use serde_json::Value;
use tempfile::TempDir;

/// Path of the `kith` binary: `$KITH_BIN`, or next to this test executable's folder
/// (`target/<profile>/kith`).
pub fn kith_bin() -> PathBuf {
    if let Ok(path) = std::env::var("KITH_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/kith
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("kith");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p kith) or set KITH_BIN",
        bin.display()
    );
    bin
}

/// What a daemon logs when it takes a group or circle key share sealed with `/kith/dm/1`
/// (not forward secret): nodes no longer send any (issue #19, `docs/protocol.md` 20.6).
pub const OLD_KEY_SHARE_LOG: &str = "took a key share sealed with /kith/dm/1";

/// One home with (optionally) its daemon, killed on drop whatever happens.
pub struct Daemon {
    /// Name for messages.
    pub name: String,
    home: PathBuf,
    child: Option<Child>,
    /// A command the daemon runs under (e.g. `ip netns exec NS`), empty for none.
    wrapper: Vec<String>,
    daemon_args: Vec<String>,
    _dir: TempDir,
}

impl Daemon {
    /// Makes a home (`kith init`) and starts `kith daemon` on 127.0.0.1 with mDNS off;
    /// waits until it answers `kith status`.
    pub fn start(name: &str) -> Self {
        let args = ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
        Self::start_with(name, &[], &args)
    }

    /// Makes a home and starts `WRAPPER... kith daemon ARGS...`: the daemon runs under
    /// `wrapper` (say `ip netns exec NS`) with `args`; the CLI commands run as usual (the
    /// control socket is a file in the home).
    pub fn start_with(name: &str, wrapper: &[&str], args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join(name);
        let mut d = Self {
            name: name.into(),
            home,
            child: None,
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
            daemon_args: args.iter().map(|s| s.to_string()).collect(),
            _dir: dir,
        };
        d.json(&["init", "--name", name]);
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        self.spawn_with(&[]);
    }

    /// Starts the daemon with `extra` arguments after its own (this run only).
    fn spawn_with(&mut self, extra: &[&str]) {
        // The last run's log goes after the earlier ones (`all_logs`).
        let last = std::fs::read(self.home.join("daemon.log")).unwrap_or_default();
        if !last.is_empty() {
            use std::io::Write;
            let earlier = self.home.join("daemon-earlier.log");
            let file = std::fs::OpenOptions::new().create(true).append(true).open(earlier);
            file.unwrap().write_all(&last).unwrap();
        }
        let log = std::fs::File::create(self.home.join("daemon.log")).unwrap();
        let mut command = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(kith_bin());
                c
            }
            None => Command::new(kith_bin()),
        };
        let child = command
            .arg("--home")
            .arg(&self.home)
            .arg("daemon")
            .args(&self.daemon_args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            // `kith id` answers without a daemon too; `status` needs the daemon.
            if self.run(&["--json", "status"]).status.success() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("{} daemon exited early ({status}): {}", self.name, self.log());
                }
            }
            assert!(std::time::Instant::now() < deadline, "{} daemon not ready", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default()
    }

    /// The logs of every run of the daemon so far, oldest first.
    pub fn all_logs(&self) -> String {
        let earlier = std::fs::read_to_string(self.home.join("daemon-earlier.log"));
        earlier.unwrap_or_default() + &self.log()
    }

    /// Runs `kith --home H ARGS...`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(kith_bin()).arg("--home").arg(&self.home).args(args).output().unwrap()
    }

    /// Runs `kith --home H --json ARGS...`, requires success, parses the one JSON object.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.run(&full);
        assert!(
            out.status.success(),
            "{}: kith {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: kith {args:?}: not JSON ({e}): {}",
                self.name,
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Runs a listing command with `--json`; one object per line.
    pub fn lines(&self, args: &[&str]) -> Vec<Value> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.run(&full);
        assert!(
            out.status.success(),
            "{}: kith {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Runs `kith --home H --json ARGS...`, requires exit status 1 (a refused request),
    /// returns stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.run(&full);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: kith {args:?} should fail with exit 1; stdout {} stderr {stderr}",
            self.name,
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    /// Whether this node lists `other` in `kith following` as a mutual connection.
    pub fn is_mutual_with(&self, other: &str) -> bool {
        self.lines(&["following"]).iter().any(|f| f["id"] == other && f["mutual"] == true)
    }

    /// Own id.
    pub fn id(&self) -> String {
        self.json(&["id"])["id"].as_str().unwrap().to_owned()
    }

    /// The first listen address.
    pub fn addr(&self) -> String {
        self.json(&["id"])["addrs"][0].as_str().unwrap().to_owned()
    }

    /// Sends SIGKILL to the daemon and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (up to 10 s) for a clean exit; returns whether it was clean.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the daemon again on the same home.
    pub fn restart(&mut self) {
        self.terminate();
        self.spawn();
    }

    /// Starts the daemon again on the same home with `extra` arguments for this run
    /// (say `--bootstrap ADDR`: a restarted daemon listens on a new OS-chosen port, so it
    /// dials the peer that stayed up).
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.terminate();
        self.spawn_with(extra);
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The home folder.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Starts `kith --home H --json ARGS...` that keeps printing JSON lines (`--live`).
    pub fn stream(&self, args: &[&str]) -> Stream {
        let mut child = Command::new(kith_bin())
            .arg("--home")
            .arg(&self.home)
            .arg("--json")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Stream { child, rx }
    }
}

/// A running `kith ... --live`, killed on drop.
pub struct Stream {
    child: Child,
    rx: std::sync::mpsc::Receiver<String>,
}

impl Stream {
    /// The next JSON line, waiting at most `deadline` (panics then, with `what`).
    pub fn next(&self, deadline: Duration, what: &str) -> Value {
        let line = self
            .rx
            .recv_timeout(deadline)
            .unwrap_or_else(|e| panic!("no line for {what} within {deadline:?}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}"))
    }

    /// Whether the command's output ends (it exits or closes it) within `deadline`,
    /// skipping any lines still to come.
    pub fn ends_within(&self, deadline: Duration) -> bool {
        let until = std::time::Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return true,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
    }

    /// The next JSON line if one comes within `wait`.
    pub fn try_next(&self, wait: Duration) -> Option<Value> {
        let line = self.rx.recv_timeout(wait).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Makes `a` and `b` mutual connections, as people would: `b` dials `a`, each follows
/// the other; then waits until both nodes see the follow going both ways.
pub fn befriend(a: &Daemon, b: &Daemon, deadline: Duration) {
    let (a_id, b_id) = (a.id(), b.id());
    assert_eq!(b.json(&["dial", &a.addr()])["ok"], true);
    assert_eq!(a.json(&["follow", &b_id])["ok"], true);
    assert_eq!(b.json(&["follow", &a_id])["ok"], true);
    eventually(deadline, &format!("{} to see {} as mutual", a.name, b.name), || {
        a.is_mutual_with(&b_id).then_some(())
    });
    eventually(deadline, &format!("{} to see {} as mutual", b.name, a.name), || {
        b.is_mutual_with(&a_id).then_some(())
    });
}

/// Each of `people` lists `holder` (a mutual connection of each) as their mailbox, and
/// `holder` says it holds for each of them.
pub fn list_mailbox(holder: &Daemon, people: &[&Daemon], deadline: Duration) {
    for d in people {
        assert_eq!(d.json(&["mailbox", "add", &holder.id()])["ok"], true);
    }
    let ids: Vec<String> = people.iter().map(|d| d.id()).collect();
    eventually(deadline, &format!("{} to hold for {ids:?}", holder.name), || {
        let status = holder.json(&["mailbox"]);
        let holding = status["holding"].as_array().cloned().unwrap_or_default();
        let held: Vec<&str> = holding.iter().filter_map(|h| h["id"].as_str()).collect();
        ids.iter().all(|id| held.contains(&id.as_str())).then_some(())
    });
}

/// Polls `check` until it returns `Some` or the deadline passes (then panics with `what`).
pub fn eventually<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let end = std::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(std::time::Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of environment variable `name`, or `default` when it is not set (panics on
/// a value that does not parse).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// A seed for a randomised test: environment variable `name` (to replay a run), or the
/// clock.
pub fn seed_from_env(name: &str) -> u64 {
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    env_or(name, clock.map_or(1, |d| d.as_nanos() as u64))
}

/// Whether any file under `dir` contains `needle`.
pub fn home_holds(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            home_holds(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}
