//! Direct-message benchmark: two in-process nodes on 127.0.0.1 that follow each other,
//! on Olm sessions (`/kith/dm/2`): each pair first exchanges one message each way (on
//! `/kith/dm/1`: it makes and announces the devices), waits until each node holds the
//! other's announcement, and times its first message on `/kith/dm/2` separately (session
//! set-up: a pre-key message on the recipient's fallback key). Latency: warm `msg send` calls one after another, each timed from the call until its
//! reply (the recipient's receipt, after both stores flushed); prints p50/p99. Throughput:
//! many sends in flight at once, timed until every one was acknowledged and the recipient
//! stores them all. Run with `scripts/bench-dm [--messages N] [--pipelined M]
//! [--window W] [--json]`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use kith_node::api::{Request, Response};
use kith_tests::{bench::arg, TestNode};

/// Messages sent before measuring (connection, caches, first flushes).
const WARM_UP: usize = 20;

/// The `q` quantile of sorted `xs` (nearest rank).
fn quantile(xs: &[Duration], q: f64) -> Duration {
    let i = ((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1;
    xs[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One `msg send`; returns its status (`delivered` or `queued`).
async fn send(a: &kith_node::Node, to: &str, text: String) -> String {
    match a.handle(Request::MsgSend { to: to.to_owned(), text, attach: vec![] }).await {
        Response::MsgSent { status, .. } => status,
        r => panic!("unexpected reply to msg send: {r:?}"),
    }
}

/// Whether `at` holds the device announcement of `of`.
fn knows_device(at: &TestNode, of: &TestNode) -> bool {
    at.node.store().devices(&of.id()).ok().flatten().is_some()
}

/// Two fresh nodes on 127.0.0.1 that follow each other, connected, with their devices
/// announced to each other and warm; and how long the first message on a new Olm session
/// took (send call to receipt).
async fn warm_pair(name: &str) -> (TestNode, TestNode, String, Duration) {
    let a = TestNode::start(&format!("{name}-a")).await;
    let b = TestNode::start(&format!("{name}-b")).await;
    a.dial(&b).await;
    a.wait_connected(&b).await;
    a.befriend(&b).await;
    let to = b.id().to_string();
    // The first message each way makes and announces the devices (on /kith/dm/1).
    assert_eq!(send(&a.node, &to, text(0)).await, "delivered");
    assert_eq!(send(&b.node, &a.id().to_string(), text(0)).await, "delivered");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(knows_device(&a, &b) && knows_device(&b, &a)) {
        assert!(Instant::now() < deadline, "device announcements did not arrive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = Instant::now();
    assert_eq!(send(&a.node, &to, text(1)).await, "delivered", "first message on a session");
    let setup = t.elapsed();
    for i in 0..WARM_UP {
        assert_eq!(send(&a.node, &to, text(i)).await, "delivered", "warm-up message {i}");
    }
    let sessions =
        b.node.store().devices(&b.id()).ok().flatten().and_then(|r| match r.record.kind {
            kith_protocol::RecordKind::Devices(d) => {
                Some(d.devices[0].certificate.certificate.device)
            }
            _ => None,
        });
    let on_olm = sessions.and_then(|d| a.node.store().olm_sessions(&d).ok().flatten()).is_some();
    assert!(on_olm, "the messages did not go on an Olm session");
    (a, b, to, setup)
}

fn text(i: usize) -> String {
    format!("message {i}: see you at the station at six, bring the map")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = arg("--messages", 400);
    let m: usize = arg("--pipelined", 400);
    let window: usize = arg("--window", 64);
    let json = std::env::args().any(|a| a == "--json");

    // Each phase gets its own pair: a node accepts at most REQUEST_BURST requests from one
    // peer at once, then REQUEST_RATE per second (node/src/node/mod.rs), and a request
    // over the limit is dropped and retried by the sender's outbox a second later.
    // Latency: one at a time.
    let (a, b, to, setup_lat) = warm_pair("lat").await;
    let mut lat = Vec::with_capacity(n);
    let mut queued = 0usize;
    let t = Instant::now();
    for i in 0..n {
        let t1 = Instant::now();
        if send(&a.node, &to, text(i)).await != "delivered" {
            queued += 1;
        }
        lat.push(t1.elapsed());
    }
    let serial_secs = t.elapsed().as_secs_f64();
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / n.max(1) as u32;
    a.stop().await;
    b.stop().await;

    // Throughput: `window` sends in flight at once.
    let (a, b, to, setup_tput) = warm_pair("tput").await;
    let before = b.node.store().dm_count();
    let t = Instant::now();
    let statuses: Vec<String> = stream::iter(0..m)
        .map(|i| send(&a.node, &to, text(i)))
        .buffer_unordered(window)
        .collect()
        .await;
    let acked = t.elapsed();
    let pipelined_queued = statuses.iter().filter(|s| *s != "delivered").count();
    // Queued messages are retried by the outbox: wait until the recipient holds them all.
    let deadline = Duration::from_secs(600);
    while b.node.store().dm_count() - before < m as u64 {
        assert!(t.elapsed() < deadline, "recipient did not receive all {m} messages");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let all_in = t.elapsed();
    let per_s = m as f64 / all_in.as_secs_f64();
    a.stop().await;
    b.stop().await;

    let (p50, p90, p99, max) =
        (quantile(&lat, 0.5), quantile(&lat, 0.9), quantile(&lat, 0.99), quantile(&lat, 1.0));
    if json {
        println!(
            "{{\"messages\":{n},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\
             \"mean_ms\":{:.3},\"serial_per_s\":{:.0},\"queued\":{queued},\"pipelined\":{m},\
             \"window\":{window},\"messages_per_s\":{per_s:.0},\"acked_seconds\":{:.3},\
             \"pipelined_queued\":{pipelined_queued},\"setup_ms\":[{:.3},{:.3}]}}",
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max),
            ms(mean),
            n as f64 / serial_secs,
            acked.as_secs_f64(),
            ms(setup_lat),
            ms(setup_tput),
        );
    } else {
        println!(
            "two nodes on 127.0.0.1, mutual, devices announced, on /kith/dm/2, warm \
             ({WARM_UP} messages before measuring)"
        );
        println!(
            "first message on a new Olm session (send call to receipt): {:.2} ms, {:.2} ms \
             (one per pair)",
            ms(setup_lat),
            ms(setup_tput)
        );
        println!(
            "latency, {n} messages one at a time (send call to receipt): p50 {:.2} ms, p90 {:.2} ms, \
             p99 {:.2} ms, max {:.2} ms, mean {:.2} ms ({:.0} msg/s; {queued} answered queued)",
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max),
            ms(mean),
            n as f64 / serial_secs
        );
        println!(
            "throughput, {m} messages, {window} in flight: {per_s:.0} msg/s \
             (all acknowledged after {:.2} s, all stored by the recipient after {:.2} s; \
             {pipelined_queued} answered queued)",
            acked.as_secs_f64(),
            all_in.as_secs_f64()
        );
        if queued + pipelined_queued > 0 {
            println!(
                "note: 'queued' means the first attempt failed and the outbox retried it; \
                 past 500 requests in a burst the recipient's per-peer request limit \
                 (50/s) drops requests"
            );
        }
    }
}
