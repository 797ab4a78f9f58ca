//! A hostile gossip peer against honest kith nodes.
//!
//! Three honest in-process nodes on 127.0.0.1: A posts, B and C subscribe to #rust, and all
//! three are connected. Each hostile peer is a bare rust-libp2p swarm speaking kith's
//! gossipsub dialect ([`kith_tests::hostile`]), not a kith node, connected to B and C. It
//! publishes forged, tampered, oversized and future-dated records, replays, and floods.
//! Every threat gets a fresh hostile identity, so one threat's penalty does not hide the
//! next.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use kith_node::{
    api::RecordCounters,
    net::{GOSSIP_BURST, GOSSIP_RATE},
};
use kith_protocol::{
    codec,
    limits::MAX_FUTURE_SKEW_MS,
    record::{SignedRecord, RECORD_DOMAIN},
    AuthorId, Keypair, Post, Record, RecordId, RecordKind, Tag, Topic,
};
use kith_tests::{eventually, hostile::HostilePeer, now_ms, TestNode, DEADLINE};
use libp2p::PeerId;

/// Messages in each flood.
const FLOOD: usize = 10_000;

/// Times each replayed record is sent.
const REPLAYS: usize = 1_000;

/// The default gossipsub graylist threshold kith uses.
const GRAYLIST: f64 = -80.0;

fn rust() -> String {
    Topic::Tag(Tag::parse("rust").unwrap()).to_string()
}

fn post(author: AuthorId, ts: u64, text: &str, expires_at: Option<u64>) -> Record {
    Record {
        author,
        seq: 1,
        prev: None,
        timestamp: ts,
        kind: RecordKind::Post(Post {
            text: text.into(),
            reply_to: None,
            mentions: vec![],
            expires_at,
            attachments: vec![],
        }),
    }
}

/// `record` encoded and signed by `key`, which need not be the author's, without the
/// checks of `Record::sign` (so that it can be forged or oversized).
fn sign_as(record: Record, key: &Keypair) -> Vec<u8> {
    let body = codec::encode(&record).unwrap();
    let signature = key.sign(RECORD_DOMAIN, &body);
    codec::encode(&SignedRecord { record, signature }).unwrap()
}

async fn counters(node: &TestNode) -> RecordCounters {
    node.status().await.record_counters
}

/// Waits until `node` scores `peer` below the graylist threshold and says so in its status.
async fn wait_graylisted(node: &TestNode, peer: &PeerId) {
    let what = format!("{} to graylist {peer}", node.name);
    eventually(DEADLINE, &what, || async {
        let s = node.score_of(peer).await?;
        (s < GRAYLIST && node.status().await.peers_graylisted >= 1).then_some(())
    })
    .await;
}

/// Resident and peak memory of this process (all nodes and hostile peers), in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Net {
    a: TestNode,
    b: TestNode,
    c: TestNode,
}

impl Net {
    async fn start() -> Self {
        let (a, b, c) =
            (TestNode::start("a").await, TestNode::start("b").await, TestNode::start("c").await);
        b.dial(&a).await;
        c.dial(&a).await;
        c.dial(&b).await;
        b.subscribe("rust").await;
        c.subscribe("rust").await;
        let rust = Topic::Tag(Tag::parse("rust").unwrap());
        for n in [&b, &c] {
            a.wait_subscriber(n, &rust).await;
        }
        b.wait_subscriber(&c, &rust).await;
        c.wait_subscriber(&b, &rust).await;
        Self { a, b, c }
    }

    fn victims(&self) -> [&TestNode; 2] {
        [&self.b, &self.c]
    }

    /// A fresh hostile peer (and its key) connected to B and C, once it knows they are on
    /// #rust (gossipsub publishes only to peers known to be subscribed).
    async fn hostile(&self) -> (HostilePeer, Keypair) {
        let key = Keypair::generate().unwrap();
        let h = HostilePeer::start(key.to_libp2p().unwrap());
        for n in self.victims() {
            h.dial(&n.addr()).await;
            let peer = n.id().to_peer_id().unwrap();
            let what = format!("the hostile peer to see {} on #rust", n.name);
            eventually(DEADLINE, &what, || async {
                h.sees_subscribed(peer, &rust()).await.then_some(())
            })
            .await;
        }
        (h, key)
    }

    /// A posts `text`; waits until B and C store it.
    async fn honest_post(&self, text: &str) -> RecordId {
        let id = self.a.post(text).await;
        for n in self.victims() {
            n.wait_record(&id).await;
        }
        id.parse().unwrap()
    }

    /// Waits until B and C have each rejected `n` more records than in `before`, and the
    /// hostile peer's score in their view is below zero.
    async fn wait_rejected(&self, before: &[RecordCounters; 2], n: u64, hostile: &PeerId) {
        for (node, before) in self.victims().into_iter().zip(before) {
            let what = format!("{} to reject {n} and score the hostile peer below 0", node.name);
            eventually(DEADLINE, &what, || async {
                let rejected = counters(node).await.rejected - before.rejected;
                assert!(rejected <= n, "{}: {rejected} rejected, expected {n}", node.name);
                let s = node.score_of(hostile).await?;
                (rejected == n && s < 0.0).then_some(())
            })
            .await;
        }
    }

    async fn counters(&self) -> [RecordCounters; 2] {
        [counters(&self.b).await, counters(&self.c).await]
    }

    /// Every record B and C store is in the log of an honest author (A, B or C) as that
    /// author's own node has it: nothing hostile, forged, forked or stray.
    async fn assert_only_honest_records(&self) {
        let honest = [&self.a, &self.b, &self.c];
        for n in self.victims() {
            let store = n.node.store();
            let mut in_logs = 0;
            for author in honest {
                let own: Vec<RecordId> = author
                    .node
                    .store()
                    .author_log(&author.id(), 0, usize::MAX)
                    .unwrap()
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
                let held = store.author_log(&author.id(), 0, usize::MAX).unwrap();
                for r in &held {
                    assert!(
                        own.contains(&r.id),
                        "{} holds {} not in {}'s log",
                        n.name,
                        r.id,
                        author.name
                    );
                }
                in_logs += held.len() as u64;
            }
            assert_eq!(
                store.counts().records,
                in_logs,
                "{} stores records outside honest logs",
                n.name
            );
        }
    }

    async fn stop(self) {
        for n in [self.a, self.b, self.c] {
            n.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_gossip_peer_is_contained() {
    let net = Net::start().await;
    let bad = bad_records(&net).await;
    replays(&net, &bad[0]).await;
    let (rss_before, _) = memory_kib();
    valid_flood(&net).await;
    junk_flood(&net).await;
    let (rss_after, peak) = memory_kib();
    println!("memory: resident {rss_before} KiB before the floods, {rss_after} KiB after, peak {peak} KiB");

    net.honest_post("after the attack #rust").await;
    for n in net.victims() {
        for bytes in &bad {
            let id = RecordId::of_bytes(bytes);
            assert!(!n.node.store().has(&id).unwrap(), "{} stored a bad record", n.name);
        }
    }
    net.assert_only_honest_records().await;
    assert!(
        rss_after < rss_before + 256 * 1024,
        "memory grew from {rss_before} to {rss_after} KiB"
    );
    net.stop().await;
}

/// The records a hostile peer makes with its key `key` to be refused one by one.
#[derive(Debug, Clone, Copy)]
enum Bad {
    /// A as author, signed by the hostile key.
    Forged,
    /// The hostile peer's own post, one byte of text changed after signing.
    Tampered,
    /// A 20 KiB record: over the 8 KiB record limit, under gossipsub's 64 KiB.
    Oversized,
    /// Dated 700 s ahead (the limit is 600 s).
    FutureDated,
}

impl Bad {
    fn bytes(self, a: AuthorId, key: &Keypair, now: u64) -> Vec<u8> {
        match self {
            Self::Forged => sign_as(post(a, now, "forged #rust", None), key),
            Self::Tampered => {
                let mut bytes = sign_as(post(key.id(), now, "tampered #rust", None), key);
                let at = bytes.windows(8).position(|w| w == b"tampered").unwrap();
                bytes[at] = b'd';
                bytes
            }
            Self::Oversized => {
                let text = format!("{} #rust", "x".repeat(20_000));
                sign_as(post(key.id(), now, &text, None), key)
            }
            Self::FutureDated => {
                let ts = now + MAX_FUTURE_SKEW_MS + 100_000;
                sign_as(post(key.id(), ts, "early #rust", None), key)
            }
        }
    }
}

/// Forged, tampered, oversized and future-dated records, each from its own hostile peer:
/// B and C reject each one (not merely drop it), store none, and the sender's score falls
/// below zero. Then a frame over gossipsub's 64 KiB limit, which never reaches the node.
/// Returns the bad records, the forgery first.
async fn bad_records(net: &Net) -> Vec<Vec<u8>> {
    let now = now_ms();
    let mut bad = Vec::new();
    for kind in [Bad::Forged, Bad::Tampered, Bad::Oversized, Bad::FutureDated] {
        let (h, key) = net.hostile().await;
        let bytes = kind.bytes(net.a.id(), &key, now);
        bad.push(bytes.clone());
        let before = net.counters().await;
        let sent = h.publish(&rust(), vec![bytes]).await;
        assert_eq!(sent.sent, 1, "{kind:?}: {sent:?}");
        net.wait_rejected(&before, 1, &h.peer_id()).await;
        println!("{kind:?}: rejected by B and C");
    }

    // Over gossipsub's max_transmit_size: B's and C's gossipsub decoders refuse the frame
    // before any kith code sees it. Nothing to wait for, so an honest post afterwards shows
    // the nodes still work, and no counter moved.
    let (h, key) = net.hostile().await;
    let huge = sign_as(post(key.id(), now, &format!("{} #rust", "y".repeat(100_000)), None), &key);
    bad.push(huge.clone());
    let before = net.counters().await;
    assert_eq!(h.publish(&rust(), vec![huge]).await.sent, 1);
    net.honest_post("after a 100 KiB frame #rust").await;
    for (n, before) in net.victims().into_iter().zip(&before) {
        let after = counters(n).await;
        assert_eq!(after.rejected, before.rejected, "{} saw the 100 KiB frame", n.name);
    }
    bad
}

/// Replays. One hostile peer replays a fresh honest post of A `REPLAYS` times (well within
/// gossipsub's 60 s seen-cache), then sends a fresh
/// forgery: gossipsub's seen-cache drops the replays before the node, so B and C validate
/// only the forgery, store nothing new, and hold the honest post once. Another replays the
/// forgery B and C rejected earlier (from another peer) `REPLAYS` times: gossipsub counts
/// each copy of a known-invalid message against the replaying peer, which is graylisted
/// without the node checking a single copy.
async fn replays(net: &Net, forged_before: &[u8]) {
    let (h, key) = net.hostile().await;
    let honest = net.honest_post("to be replayed #rust").await;
    let honest_bytes = net.b.node.store().get_bytes(&honest).unwrap().unwrap();
    let fresh = sign_as(post(net.a.id(), now_ms(), "forged again #rust", None), &key);
    let before = net.counters().await;
    let records: Vec<u64> = net.victims().iter().map(|n| n.node.store().counts().records).collect();
    let mut batch = vec![honest_bytes; REPLAYS];
    batch.push(fresh);
    let sent = h.publish(&rust(), batch).await;
    assert_eq!(sent.sent, REPLAYS + 1, "{sent:?}");
    // The forgery went last on the same stream: once it is rejected, every replay before it
    // has been through B's and C's gossipsub.
    net.wait_rejected(&before, 1, &h.peer_id()).await;
    for ((n, before), records) in net.victims().into_iter().zip(&before).zip(records) {
        let after = counters(n).await;
        assert_eq!(after.received, before.received + 1, "{}: replays reached the node", n.name);
        assert_eq!(after.accepted, before.accepted, "{}", n.name);
        assert_eq!(n.node.store().counts().records, records, "{}", n.name);
        let feed = n.feed(Some("rust"), None).await;
        assert_eq!(feed.iter().filter(|p| p.id == honest.to_string()).count(), 1);
    }

    let (h, _) = net.hostile().await;
    let before = net.counters().await;
    let sent = h.publish(&rust(), vec![forged_before.to_vec(); REPLAYS]).await;
    assert_eq!(sent.sent, REPLAYS, "{sent:?}");
    for (n, before) in net.victims().into_iter().zip(&before) {
        wait_graylisted(n, &h.peer_id()).await;
        let after = counters(n).await;
        assert_eq!(after.received, before.received, "{}: a replay reached the node", n.name);
    }
    println!("replays: {REPLAYS} of an honest post and {REPLAYS} of a forgery reached no node");
}

/// `FLOOD` distinct, validly signed posts of the hostile peer's own that expired an hour
/// ago, as fast as it can: each costs a node a full check, none is stored, none is invalid
/// (so scoring cannot help). The per-peer rate limit drops the excess and counts it; an
/// honest post published during the flood still reaches B and C promptly.
async fn valid_flood(net: &Net) {
    let (h, key) = net.hostile().await;
    let old = now_ms() - 3_600_000;
    let flood: Vec<Vec<u8>> = (0..FLOOD)
        .map(|i| sign_as(post(key.id(), old, &format!("spam {i} #rust"), Some(old + 1)), &key))
        .collect();
    let before = net.counters().await;
    let start = Instant::now();
    let topic = rust();
    let publish = h.publish(&topic, flood);
    let during = async {
        let what = "the flood to reach B";
        eventually(DEADLINE, what, || async {
            let c = counters(&net.b).await;
            (c.ignored + c.rate_limited > before[0].ignored + before[0].rate_limited + 500)
                .then_some(())
        })
        .await;
        let c = counters(&net.b).await;
        let counted_then = c.ignored + c.rate_limited - before[0].ignored - before[0].rate_limited;
        let posted = Instant::now();
        net.honest_post("during the flood #rust").await;
        (posted.elapsed(), counted_then)
    };
    let (sent, (honest_took, counted_then)) = tokio::join!(publish, during);
    assert_eq!(sent.sent, FLOOD, "{sent:?}");
    // Every flood message is accounted for: checked and dropped as expired (`ignored`), or
    // over the limit (`rate_limited`).
    for (n, before) in net.victims().into_iter().zip(&before) {
        let what = format!("{} to account for the whole flood", n.name);
        let after = eventually(DEADLINE, &what, || async {
            let c = counters(n).await;
            let seen = c.ignored + c.rate_limited - before.ignored - before.rate_limited;
            assert!(seen <= FLOOD as u64, "{}: {seen} counted", n.name);
            (seen == FLOOD as u64).then_some(c)
        })
        .await;
        let took = start.elapsed();
        let limited = after.rate_limited - before.rate_limited;
        let allowed = GOSSIP_BURST + GOSSIP_RATE * took.as_secs_f64();
        println!(
            "valid flood at {}: {FLOOD} sent in {:?}, {limited} rate-limited, {} checked, all \
             counted after {took:?}; an honest post published when B had counted \
             {counted_then} was stored by B and C in {honest_took:?}",
            n.name,
            sent.elapsed,
            FLOOD as u64 - limited,
        );
        assert!(
            (FLOOD as u64 - limited) as f64 <= allowed + 1.0,
            "{}: too many let through",
            n.name
        );
        assert_eq!(after.accepted, before.accepted + 1, "{}: only the honest post", n.name);
        assert_eq!(after.rejected, before.rejected, "{}", n.name);
    }
}

/// `FLOOD` distinct forgeries as fast as the hostile peer can: the first rejections
/// graylist it, and gossipsub then drops its messages before the node sees them. Honest
/// posts during the flood still get through, and nothing is stored.
async fn junk_flood(net: &Net) {
    let (h, key) = net.hostile().await;
    let now = now_ms();
    let flood: Vec<Vec<u8>> = (0..FLOOD)
        .map(|i| sign_as(post(net.a.id(), now, &format!("junk {i} #rust"), None), &key))
        .collect();
    let before = net.counters().await;
    let records: Vec<u64> = net.victims().iter().map(|n| n.node.store().counts().records).collect();
    let hostile = h.peer_id();
    let topic = rust();
    let publish = h.publish(&topic, flood);
    let during = async {
        // Graylisted while the flood runs, in B's and C's view.
        tokio::join!(wait_graylisted(&net.b, &hostile), wait_graylisted(&net.c, &hostile));
        net.honest_post("during the junk flood #rust").await;
    };
    let (sent, ()) = tokio::join!(publish, during);
    assert_eq!(sent.sent, FLOOD, "{sent:?}");
    net.honest_post("after the junk flood #rust").await;
    for ((n, before), records) in net.victims().into_iter().zip(&before).zip(records) {
        let after = counters(n).await;
        let checked = after.received - before.received;
        let rejected = after.rejected - before.rejected;
        println!(
            "junk flood at {}: {FLOOD} sent in {:?}; {checked} reached the node ({rejected} \
             rejected), the rest dropped by gossipsub as graylisted; score now {:?}",
            n.name,
            sent.elapsed,
            n.score_of(&hostile).await,
        );
        assert!(rejected >= 1 && rejected < FLOOD as u64 / 2, "{}: {rejected}", n.name);
        assert_eq!(after.accepted, before.accepted + 2, "{}: only the honest posts", n.name);
        assert_eq!(n.node.store().counts().records, records + 2, "{}", n.name);
    }
}
