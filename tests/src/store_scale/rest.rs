//! The store's size at rest: a living node's store spends most of its life with a
//! daemon running on it and writing now and then, not right after a build at full speed
//! (which sled's segment cleaner and the record heap's compaction catch up with only
//! afterwards). The real `kith daemon` runs on the home, posting now and then as a person
//! does, and the store's blocks are read at intervals until they settle.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use kith_node::home::Home;

use super::{
    measure::{disk_bytes, start_daemon, terminate},
    Options, Report,
};

/// Samples over which the store must change less than [`SETTLED_PERCENT`] to be settled
/// (with `settle_every` of 15 s: a minute).
const WINDOW: u32 = 4;

/// Settled: the store's blocks changed by less than this (per cent) over [`WINDOW`]
/// samples.
const SETTLED_PERCENT: f64 = 1.0;

/// Not settled before this many samples (two minutes at 15 s): the daemon's record heap
/// compaction looks every minute, and a first minute without change is not rest yet.
const MIN_SAMPLES: u32 = 2 * WINDOW;

/// Runs the daemon on `home` until the store's blocks settle (they changed by less than
/// 1 % over the last [`WINDOW`] samples, `opts.settle_every` apart, and at least
/// [`MIN_SAMPLES`] were taken) or `opts.settle_max` passed; a post at the start and then
/// once per window. Fills the `*_at_rest` figures: the store's blocks per record then (the
/// posts counted as records), how long it took, the daemon's CPU meanwhile.
///
/// # Panics
/// When the daemon does not start or a post fails.
pub fn settle(home: &Home, opts: &Options, report: &mut Report) {
    let store = home.store_path();
    let (mut child, _) = start_daemon(home, opts);
    let pid = child.id();
    let cpu_start = cpu_of(pid);
    let t = Instant::now();
    let mut samples = vec![disk_bytes(&store)];
    let mut posts = 0u64;
    let mut settled = false;
    loop {
        if samples.len() as u32 % WINDOW == 1 {
            post(home, opts, posts);
            posts += 1;
        }
        let next = opts.settle_every * samples.len() as u32;
        if next > opts.settle_max {
            break;
        }
        std::thread::sleep(next.saturating_sub(t.elapsed()));
        samples.push(disk_bytes(&store));
        let n = samples.len();
        if n as u32 > MIN_SAMPLES {
            let (then, now) = (samples[n - 1 - WINDOW as usize], samples[n - 1]);
            if now.abs_diff(then) as f64 * 100.0 < SETTLED_PERCENT * then as f64 {
                settled = true;
                break;
            }
        }
    }
    report.at_rest_s = t.elapsed().as_secs_f64();
    report.at_rest_cpu_s = cpu_of(pid).saturating_sub(cpu_start).as_secs_f64();
    report.at_rest_settled = settled;
    report.disk_bytes_at_rest = *samples.last().unwrap_or(&0);
    report.heap_bytes_at_rest = disk_bytes(&store.join("heap"));
    report.disk_bytes_per_record_at_rest =
        report.disk_bytes_at_rest as f64 / (report.records + posts).max(1) as f64;
    report.at_rest_samples = samples;
    report.at_rest_posts = posts;
    terminate(&mut child);
}

/// One post through `kith post`, as a person makes it.
fn post(home: &Home, opts: &Options, i: u64) {
    let status = Command::new(&opts.kith)
        .arg("--home")
        .arg(home.dir())
        .args(["post", &format!("at rest, post number {i} #bench")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("kith post runs");
    assert!(status.success(), "kith post failed ({status})");
}

/// CPU time process `pid` has used (user and system), from `/proc/<pid>/stat`; zero if
/// unknown (Linux counts it in ticks of 1/100 s).
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
        .unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}
