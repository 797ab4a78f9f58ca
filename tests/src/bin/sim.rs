//! Many-node simulation (issue 7): N in-process nodes on loopback, M authors posting K
//! posts with hashtags; prints delivery, gossip latency, duplicates and memory per node.
//! Run with `scripts/sim [--nodes N] [--authors M] [--posts K] [--json] [--seed S]`;
//! `--latency-ms MIN-MAX` adds a delay to each link (see `kith_tests::sim::latency`).

/// mimalloc rather than glibc's malloc: see the workspace Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{process::ExitCode, time::Duration};

use kith_node::net::{GossipTuning, IdleTuning};
use kith_tests::sim::{run, Config, LinkLatency};

const USAGE: &str = "usage: sim [--nodes N] [--authors M] [--posts K] [--seed S] [--json]
           [--degree D] [--interval-ms MS] [--aligned] [--deadline-s S]
           [--latency-ms MIN-MAX] [--store-cache-mb MB] [--settle-s S] [--idle-wait-s S] [--after-s S] [--tail-s S]
           [--gossip kith|before|lean|no-ihave|lean-flood] [--gossip-set KEY=VALUE,...]
           [--idle kith|before] [--idle-set KEY=VALUE,...] [--versus-before PAIRS]
           [--versus-idle-set KEY=VALUE,...] [--gossip-metrics on|off]
           [--versus-also kith|before|lean|no-ihave|lean-flood[:KEY=VALUE,...]]... [--no-sync-align]";

/// The command line, parsed but not yet checked as a whole.
struct Args {
    config: Config,
    json: bool,
    /// Pairs of runs to make, each `--gossip before` and the chosen set, alternating which
    /// goes first (0: one run of the chosen set).
    versus_before: usize,
    /// With `versus_before`: the other run of each pair is the chosen config with these
    /// idle settings (and `gossip_metrics`) changed, not `--gossip before`.
    versus_idle: Option<String>,
    /// Further sets run in each round of `versus_before`, by their spelling on the command
    /// line (`--versus-also`).
    also: Vec<(String, GossipTuning)>,
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value.parse().map_err(|_| format!("{flag}: {value:?} is not a number"))
}

/// `MIN-MAX` or one number, milliseconds.
fn latency(flag: &str, value: Option<String>) -> Result<LinkLatency, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    let (min, max) = value.split_once('-').unwrap_or((&value, &value));
    let ms = |v: &str| -> Result<Duration, String> {
        v.trim()
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| format!("{flag}: {value:?} is not MIN-MAX in milliseconds"))
    };
    Ok(LinkLatency { min: ms(min)?, max: ms(max)? })
}

/// `kith` (what nodes run), `before` (what they ran before issue 21), `lean` (the set
/// measured to cost least per delivery in session 12), `no-ihave` (`kith` of sessions
/// 16–21: the same with a 700 ms heartbeat) or `lean-flood` (the default of sessions 12–15).
fn gossip(value: Option<String>) -> Result<GossipTuning, String> {
    match value.as_deref() {
        Some("kith") => Ok(GossipTuning::KITH),
        Some("before") => Ok(GossipTuning::BEFORE_ISSUE_21),
        Some("lean") => Ok(GossipTuning::LEAN),
        Some("no-ihave") => Ok(GossipTuning::NO_IHAVE),
        Some("lean-flood") => Ok(GossipTuning::LEAN_FLOOD),
        other => {
            Err(format!("--gossip: {other:?} is not kith, before, lean, no-ihave or lean-flood"))
        }
    }
}

/// `KEY=VALUE,...` over `tuning`: a parameter set under trial.
fn gossip_set(tuning: &mut GossipTuning, value: Option<String>) -> Result<(), String> {
    let value = value.ok_or("--gossip-set needs KEY=VALUE,...")?;
    for pair in value.split(',') {
        let (key, v) = pair.split_once('=').ok_or_else(|| format!("--gossip-set: {pair:?}"))?;
        let flag = format!("--gossip-set {key}");
        let v = Some(v.to_owned());
        match key {
            "mesh_n" => tuning.mesh_n = number(&flag, v)?,
            "mesh_n_low" => tuning.mesh_n_low = number(&flag, v)?,
            "mesh_n_high" => tuning.mesh_n_high = number(&flag, v)?,
            "mesh_outbound_min" => tuning.mesh_outbound_min = number(&flag, v)?,
            "gossip_lazy" => tuning.gossip_lazy = number(&flag, v)?,
            "gossip_factor" => tuning.gossip_factor = number(&flag, v)?,
            "heartbeat_ms" => tuning.heartbeat = Duration::from_millis(number(&flag, v)?),
            "history_length" => tuning.history_length = number(&flag, v)?,
            "history_gossip" => tuning.history_gossip = number(&flag, v)?,
            "flood_publish" => tuning.flood_publish = number(&flag, v)?,
            "idontwant_threshold" => tuning.idontwant_threshold = number(&flag, v)?,
            "forward_queue_ms" => tuning.forward_queue = Duration::from_millis(number(&flag, v)?),
            "mesh_time_weight" => tuning.mesh_time_weight = number(&flag, v)?,
            "mesh_lot" => tuning.mesh_lot = number(&flag, v)?,
            "mixing_ticks" => tuning.mixing_ticks = number(&flag, v)?,
            "mixing_peers" => tuning.mixing_peers = number(&flag, v)?,
            "mend_grace_ms" if v.as_deref() == Some("off") => tuning.mend_grace = None,
            "mend_grace_ms" => {
                tuning.mend_grace = Some(Duration::from_millis(number(&flag, v)?));
            }
            "probe_after_ms" if v.as_deref() == Some("off") => tuning.probe_after = None,
            "probe_after_ms" => {
                tuning.probe_after = Some(Duration::from_millis(number(&flag, v)?));
            }
            other => return Err(format!("--gossip-set: unknown parameter {other:?}")),
        }
    }
    Ok(())
}

/// `NAME[:KEY=VALUE,...]`: a named set (see [`gossip`]) with single parameters changed.
fn named_set(value: Option<String>) -> Result<(String, GossipTuning), String> {
    let value = value.ok_or("--versus-also needs NAME[:KEY=VALUE,...]")?;
    let (name, changes) = value.split_once(':').unwrap_or((&value, ""));
    let mut tuning = gossip(Some(name.to_owned()))?;
    if !changes.is_empty() {
        gossip_set(&mut tuning, Some(changes.to_owned()))?;
    }
    Ok((value, tuning))
}

/// `kith` (what nodes run) or `before` (what they ran before issue 21 item 3).
fn idle(value: Option<String>) -> Result<IdleTuning, String> {
    match value.as_deref() {
        Some("kith") => Ok(IdleTuning::KITH),
        Some("before") => Ok(IdleTuning::BEFORE_ISSUE_21),
        other => Err(format!("--idle: {other:?} is not kith or before")),
    }
}

/// `KEY=VALUE,...` over `tuning` (durations in seconds; `kad_bootstrap_s=0` turns the
/// periodic bootstrap off).
fn idle_set(tuning: &mut IdleTuning, value: Option<String>) -> Result<(), String> {
    let value = value.ok_or("--idle-set needs KEY=VALUE,...")?;
    for pair in value.split(',') {
        let (key, v) = pair.split_once('=').ok_or_else(|| format!("--idle-set: {pair:?}"))?;
        let flag = format!("--idle-set {key}");
        let secs = |v: &str| number::<u64>(&flag, Some(v.to_owned())).map(Duration::from_secs);
        match key {
            "ping_s" => tuning.ping_interval = secs(v)?,
            "listener_ping_s" => {
                tuning.listener_ping_interval = Some(secs(v)?).filter(|d| !d.is_zero());
            }
            "identify_s" => tuning.identify_interval = secs(v)?,
            "identify_jitter" => tuning.identify_jitter = number(&flag, Some(v.to_owned()))?,
            "kad_bootstrap_s" => {
                tuning.kad_bootstrap = Some(secs(v)?).filter(|d| !d.is_zero());
            }
            "kad_jitter" => tuning.kad_bootstrap_jitter = number(&flag, Some(v.to_owned()))?,
            "autonat_retry_s" => tuning.autonat_retry = secs(v)?,
            "autonat_refresh_s" => tuning.autonat_refresh = secs(v)?,
            "autonat_jitter" => tuning.autonat_jitter = number(&flag, Some(v.to_owned()))?,
            "idle_timeout_s" => tuning.idle_connection_timeout = secs(v)?,
            "sync_s" => tuning.sync_interval = secs(v)?,
            "sync_max_s" => tuning.sync_interval_max = secs(v)?,
            "sync_jitter" => tuning.sync_jitter = number(&flag, Some(v.to_owned()))?,
            "ping_jitter" => tuning.ping_jitter = number(&flag, Some(v.to_owned()))?,
            "sync_every_connection" => {
                tuning.sync_every_connection = number(&flag, Some(v.to_owned()))?;
            }
            "sync_digest" => tuning.sync_digest = number(&flag, Some(v.to_owned()))?,
            "lazy_streams" => tuning.lazy_streams = number(&flag, Some(v.to_owned()))?,
            "coalesce_flushes" => tuning.coalesce_flushes = number(&flag, Some(v.to_owned()))?,
            "close_unused_s" => {
                tuning.unused_connection_grace = Some(secs(v)?).filter(|d| !d.is_zero());
            }
            other => return Err(format!("--idle-set: unknown parameter {other:?}")),
        }
    }
    Ok(())
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let seed = kith_tests::now_ms();
    let mut config = Config { seed, progress: true, after_sync_round: true, ..Config::default() };
    let mut json = false;
    let mut versus_before = 0;
    let mut versus_idle = None;
    let mut also = Vec::new();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--nodes" => config.nodes = number(&flag, args.next())?,
            "--authors" => config.authors = number(&flag, args.next())?,
            "--posts" => config.posts = number(&flag, args.next())?,
            "--seed" => config.seed = number(&flag, args.next())?,
            "--degree" => config.degree = number(&flag, args.next())?,
            "--interval-ms" => config.interval = Duration::from_millis(number(&flag, args.next())?),
            "--deadline-s" => {
                config.delivery_deadline = Duration::from_secs(number(&flag, args.next())?);
            }
            "--latency-ms" => config.latency = Some(latency(&flag, args.next())?),
            "--aligned" => config.aligned = true,
            "--store-cache-mb" => config.store_cache_mb = number(&flag, args.next())?,
            "--tail-s" => config.tail = Duration::from_secs(number(&flag, args.next())?),
            "--settle-s" => config.settle = Duration::from_secs(number(&flag, args.next())?),
            "--after-s" => {
                config.after = Some(Duration::from_secs(number(&flag, args.next())?));
            }
            "--idle-wait-s" => {
                config.idle_wait = Duration::from_secs(number(&flag, args.next())?);
            }
            "--gossip" => config.gossip = gossip(args.next())?,
            "--gossip-set" => gossip_set(&mut config.gossip, args.next())?,
            "--idle" => config.idle = idle(args.next())?,
            "--idle-set" => idle_set(&mut config.idle, args.next())?,
            "--json" => json = true,
            "--versus-before" => versus_before = number(&flag, args.next())?,
            "--versus-idle-set" => versus_idle = Some(args.next().ok_or("--versus-idle-set")?),
            "--gossip-metrics" => config.gossip_metrics = on_off(&flag, args.next())?,
            "--versus-also" => also.push(named_set(args.next())?),
            "--no-sync-align" => config.after_sync_round = false,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    config.validate()?;
    if let Some(set) = &versus_idle {
        versus_config(&config, set)?;
    }
    Ok(Args { config, json, versus_before, versus_idle, also })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let c = &args.config;
    eprintln!(
        "sim: {} nodes, {} authors x {} posts, seed {} (repeat with --seed {})",
        c.nodes, c.authors, c.posts, c.seed, c.seed
    );
    if args.versus_before > 0 {
        let other = match &args.versus_idle {
            Some(set) => match versus_config(c, set) {
                Ok(other) => ("versus", other),
                Err(message) => {
                    eprintln!("{message}");
                    return ExitCode::from(2);
                }
            },
            None => ("before", Config { gossip: GossipTuning::BEFORE_ISSUE_21, ..c.clone() }),
        };
        return versus_before(c, other, &args.also, args.versus_before, args.json).await;
    }
    match run(c).await {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("sim: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The load average over the last minute, as `/proc/loadavg` gives it.
fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().unwrap_or("?").to_owned()
}

/// `on` or `off`.
fn on_off(flag: &str, value: Option<String>) -> Result<bool, String> {
    match value.as_deref() {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        other => Err(format!("{flag}: {other:?} is not on or off")),
    }
}

/// `config` with the settings of `set` changed (`--idle-set`'s keys, `--gossip-set`'s, and
/// `gossip_metrics=on|off`): the other run of each `--versus-before` pair under
/// `--versus-idle-set`.
fn versus_config(config: &Config, set: &str) -> Result<Config, String> {
    let mut other = config.clone();
    for pair in set.split(',') {
        match pair.split_once('=') {
            Some(("gossip_metrics", v)) => {
                other.gossip_metrics = on_off("gossip_metrics", Some(v.to_owned()))?;
            }
            // An idle key, or else a gossip key (`--gossip-set`'s).
            _ => idle_set(&mut other.idle, Some(pair.to_owned()))
                .or_else(|_| gossip_set(&mut other.gossip, Some(pair.to_owned())))?,
        }
    }
    Ok(other)
}

/// `pairs` rounds of runs in this process, `other` (`--gossip before`, or the chosen config
/// with `--versus-idle-set`'s changes), the chosen config and any `also` set
/// (`--versus-also`), the order rotating (the other first in the first round); one line per run (a JSON object with the set's name
/// and the load average before and after it, or the table under a heading).
async fn versus_before(
    config: &Config,
    other: (&'static str, Config),
    also: &[(String, GossipTuning)],
    pairs: usize,
    json: bool,
) -> ExitCode {
    let mut sets = vec![(other.0, other.1), ("chosen", config.clone())];
    sets.extend(
        also.iter()
            .map(|(name, gossip)| (name.as_str(), Config { gossip: *gossip, ..config.clone() })),
    );
    for pair in 0..pairs {
        for k in 0..sets.len() {
            let (name, c) = &sets[(pair + k) % sets.len()];
            let load_before = load();
            let report = match run(c).await {
                Ok(report) => report,
                Err(message) => {
                    eprintln!("sim: {name}: {message}");
                    return ExitCode::FAILURE;
                }
            };
            let load = format!("{load_before}-{}", load());
            if json {
                let mut out = report.to_json();
                if let Some(o) = out.as_object_mut() {
                    o.insert("set".into(), (*name).into());
                    o.insert("pair".into(), pair.into());
                    o.insert("load".into(), load.into());
                }
                println!("{out}");
            } else {
                println!("== pair {pair}, {name} (load average {load})");
                print!("{}", report.to_table());
            }
        }
    }
    ExitCode::SUCCESS
}
