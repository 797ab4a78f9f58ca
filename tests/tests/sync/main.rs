//! History sync (`/kith/sync/1`) between in-process nodes on 127.0.0.1: catching up
//! after being offline, from the author or from a third node while the author is away,
//! healing a partition, filling a hash-chain gap, and `kith sync`. Peers that lie, flood
//! or stay silent are in `hostile.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile;

use std::{collections::HashSet, time::Duration};

use kith_node::ingest::Outcome;
use kith_protocol::{Keypair, RecordId, Tag, Topic};
use kith_tests::{eventually, signed_log, TestNode, DEADLINE};

/// How long far nodes of a healed partition may take: without a connection of their own
/// to the other side, they learn of its history at their next periodic sync round (the
/// first comes 30 s ± 25 % after the start), or when a neighbour that fetched it (and so
/// syncs again within 30 s ± 25 %) sends them a digest showing it ahead, and they pull
/// from it at once.
const PERIODIC_DEADLINE: Duration = Duration::from_secs(45);

/// Waits until `node` stores every record in `ids`.
async fn wait_all(node: &TestNode, ids: &[String], deadline: Duration) {
    let ids: Vec<RecordId> = ids.iter().map(|id| id.parse().unwrap()).collect();
    let what = format!("{} to store {} records", node.name, ids.len());
    eventually(deadline, &what, || async {
        let store = node.node.store();
        ids.iter().all(|id| store.has(id).unwrap()).then_some(())
    })
    .await;
}

/// Waits until `node` has remembered `other`'s address (so that it redials on restart).
async fn wait_remembered(node: &TestNode, other: &TestNode) {
    let peer = other.id().to_peer_id().unwrap().to_string();
    let what = format!("{} to remember {}", node.name, other.name);
    eventually(DEADLINE, &what, || async {
        (!node.node.store().known_peers_of(&peer).unwrap().is_empty()).then_some(())
    })
    .await;
}

async fn post_all(node: &TestNode, texts: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for text in texts {
        ids.push(node.post(text).await);
    }
    ids
}

fn assert_unique(items: &[kith_node::api::FeedItem], who: &str) {
    let unique: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(unique.len(), items.len(), "{who}: a post appears twice");
}

fn assert_newest_first(items: &[kith_node::api::FeedItem], who: &str) {
    assert!(
        items.windows(2).all(|w| w[0].timestamp >= w[1].timestamp),
        "{who}: feed not newest first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_follower_and_tag_subscriber_catch_up() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    let c = TestNode::start("c").await;
    b.dial(&a).await;
    c.dial(&a).await;
    b.follow(&a).await;
    c.subscribe("rust").await;
    wait_remembered(&b, &a).await;
    wait_remembered(&c, &a).await;
    let (b, c) = (b.pause().await, c.pause().await);

    let mut ids = Vec::new();
    for i in 0..500 {
        let text = if i % 5 == 0 { format!("post {i} #rust") } else { format!("post {i}") };
        ids.push(a.post(&text).await);
    }
    let tagged: HashSet<String> = ids.iter().step_by(5).cloned().collect();
    assert_eq!(tagged.len(), 100);

    // Back online, they redial A from their stores; nobody re-posts anything.
    let (b, c) = (b.resume().await, c.resume().await);
    let by_author = eventually(DEADLINE, "B to catch up with A", || async {
        let items = b.feed_all(None, Some(&a.id())).await;
        (items.len() >= ids.len()).then_some(items)
    })
    .await;
    // A's log, newest (highest seq) first, each post once.
    let seqs: Vec<u64> = by_author.iter().map(|i| i.seq).collect();
    assert_eq!(seqs, (1..=500).rev().collect::<Vec<u64>>());
    let got: Vec<&str> = by_author.iter().map(|i| i.id.as_str()).collect();
    let want: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(got, want);
    let timeline = b.feed_all(None, None).await;
    assert_eq!(timeline.len(), 500);
    assert_unique(&timeline, "B");
    assert_newest_first(&timeline, "B");
    assert!(timeline.iter().all(|i| ids.contains(&i.id)));
    // Every one of them came by sync (nothing was gossiped after B came back), once.
    eventually(DEADLINE, "B's fetched counter", || async {
        (b.status().await.sync.records_fetched >= 500).then_some(())
    })
    .await;
    let status = b.status().await;
    assert_eq!(status.sync.records_fetched, 500);
    assert_eq!(status.sync.records_rejected, 0);
    assert_eq!(b.node.store().contiguous_seq(&a.id()).unwrap(), 500);

    // C gets exactly the tagged posts and nothing else of A's.
    let by_tag = eventually(DEADLINE, "C to catch up with #rust", || async {
        let items = c.feed_all(Some("rust"), None).await;
        (items.len() >= tagged.len()).then_some(items)
    })
    .await;
    assert_eq!(by_tag.len(), 100);
    assert_unique(&by_tag, "C");
    assert_newest_first(&by_tag, "C");
    assert_eq!(by_tag.iter().map(|i| i.id.clone()).collect::<HashSet<_>>(), tagged);
    assert!(by_tag.iter().all(|i| i.tags == ["rust"]));
    assert_eq!(c.node.store().counts().posts, 100);
    assert_eq!(c.feed_all(None, None).await.len(), 100);

    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heals_when_one_link_comes_up() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    let c = TestNode::start("c").await;
    let d = TestNode::start("d").await;
    b.dial(&a).await;
    d.dial(&c).await;
    // Everybody follows everybody, except D: it follows A and C and subscribes to #p2p,
    // so B's #p2p post is in D's feeds and B's other posts are not.
    for (x, ys) in [(&a, [&b, &c, &d]), (&b, [&a, &c, &d]), (&c, [&a, &b, &d])] {
        for y in ys {
            x.follow(y).await;
        }
    }
    d.follow(&a).await;
    d.follow(&c).await;
    d.subscribe("p2p").await;

    let pa = post_all(&a, &["a1", "a2 #p2p"]).await;
    let pb = post_all(&b, &["b1", "b2 #p2p", "b3"]).await;
    let pc = post_all(&c, &["c1 #p2p", "c2"]).await;
    let pd = post_all(&d, &["d1", "d2 #p2p"]).await;
    // Each side has its own side's posts before the link comes up.
    wait_all(&a, &pb, DEADLINE).await;
    wait_all(&b, &pa, DEADLINE).await;
    wait_all(&c, &pd, DEADLINE).await;
    wait_all(&d, &pc, DEADLINE).await;
    for (n, others) in [(&a, [&pc, &pd]), (&b, [&pc, &pd]), (&c, [&pa, &pb]), (&d, [&pa, &pb])] {
        for id in others.iter().flat_map(|p| p.iter()) {
            assert!(!n.node.store().has(&id.parse().unwrap()).unwrap(), "{} too early", n.name);
        }
    }

    b.dial(&c).await;
    let all = |lists: &[&Vec<String>]| lists.iter().flat_map(|l| l.iter().cloned()).collect();
    // The two ends of the new link sync when it comes up.
    let everything: Vec<String> = all(&[&pa, &pb, &pc, &pd]);
    wait_all(&b, &everything, DEADLINE).await;
    wait_all(&c, &everything, DEADLINE).await;
    // The far nodes get it when they find the other side in the DHT and connect, or at
    // the latest at their next periodic round, from the node of their side that has it.
    wait_all(&a, &everything, PERIODIC_DEADLINE).await;
    let for_d: Vec<String> = all(&[&pa, &pc, &pd, &vec![pb[1].clone()]]);
    wait_all(&d, &for_d, PERIODIC_DEADLINE).await;
    // B's untagged posts are not D's business: they are in no feed of D's. (D may hold
    // them: when B subscribes to D's topic, D fetches B's log to learn of the follow.)
    let d_timeline: HashSet<String> =
        d.feed_all(None, None).await.into_iter().map(|i| i.id).collect();
    assert!(!d_timeline.contains(&pb[0]) && !d_timeline.contains(&pb[2]), "D shows B's post");
    let d_tag: HashSet<String> =
        d.feed_all(Some("p2p"), None).await.into_iter().map(|i| i.id).collect();
    let want: HashSet<String> = [&pa[1], &pb[1], &pc[0], &pd[1]].into_iter().cloned().collect();
    assert_eq!(d_tag, want);
    for n in [&a, &b, &c, &d] {
        let timeline = n.feed_all(None, None).await;
        assert_unique(&timeline, &n.name);
        let want = if n.name == "d" { for_d.len() } else { everything.len() };
        assert_eq!(timeline.len(), want, "{}'s timeline", n.name);
    }
    for n in [a, b, c, d] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossiped_record_after_a_gap_fetches_the_gap() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    let x = Keypair::from_secret_bytes(&[0x44; 32]);
    let log = signed_log(&x, 10, |seq| format!("x post {seq}"));
    // Both hold 1..5; B follows X, then connects to A.
    for r in &log[..5] {
        assert!(matches!(a.ingest(r.bytes()), Outcome::New(_)));
        assert!(matches!(b.ingest(r.bytes()), Outcome::New(_)));
    }
    b.follow_id(&x.id()).await;
    b.dial(&a).await;
    a.wait_subscriber(&b, &Topic::Author(x.id())).await;
    // Syncing now brings nothing: A has nothing B lacks.
    assert_eq!(b.sync().await, (0, 1));
    // A learns 6..10 without any gossip (as if from elsewhere), then 7 alone is gossiped.
    for r in &log[5..] {
        assert!(matches!(a.ingest(r.bytes()), Outcome::New(_)));
    }
    let topic = Topic::Author(x.id()).to_string();
    let sent = a.node.net().publish(topic, log[6].bytes().to_vec()).await.unwrap();
    assert!(sent >= 1);

    // 7 arrives with its predecessor missing: B asks A for the gap.
    eventually(DEADLINE, "B to hold X's log 1..10 without gaps", || async {
        (b.node.store().contiguous_seq(&x.id()).unwrap() == 10).then_some(())
    })
    .await;
    let status = eventually(DEADLINE, "B's counters", || async {
        let s = b.status().await;
        (s.sync.records_fetched >= 4).then_some(s)
    })
    .await;
    // 7 by gossip; 6, 8, 9, 10 by sync.
    assert_eq!(status.record_counters.accepted, 1);
    assert_eq!(status.sync.records_fetched, 4);
    assert_eq!(status.sync.records_rejected, 0);
    let feed = b.feed_all(None, Some(&x.id())).await;
    assert_eq!(feed.iter().map(|i| i.seq).collect::<Vec<_>>(), (1..=10).rev().collect::<Vec<_>>());
    let want: Vec<String> = log.iter().rev().map(|r| r.id().to_string()).collect();
    assert_eq!(feed.iter().map(|i| i.id.clone()).collect::<Vec<_>>(), want);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_request_reports_fetched_and_peers() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    let c = TestNode::start("c").await;
    let x = Keypair::from_secret_bytes(&[0x55; 32]);
    let y = Keypair::from_secret_bytes(&[0x66; 32]);
    // B follows X and subscribes to #kith first, then connects to A and C.
    b.follow_id(&x.id()).await;
    b.subscribe("kith").await;
    b.dial(&a).await;
    b.dial(&c).await;
    let kith = Topic::Tag(Tag::parse("kith").unwrap());
    for n in [&a, &c] {
        n.wait_subscriber(&b, &Topic::Author(x.id())).await;
        n.wait_subscriber(&b, &kith).await;
    }
    assert_eq!(b.status().await.peers, 2);
    assert_eq!(b.sync().await, (0, 2));

    // A holds X's 1..6, C holds X's 1..10 and Y's posts, three of them with #kith.
    let xs = signed_log(&x, 10, |seq| format!("x {seq}"));
    let ys = signed_log(&y, 4, |seq| if seq < 4 { format!("y {seq} #kith") } else { "y".into() });
    for r in &xs[..6] {
        a.ingest(r.bytes());
    }
    for r in xs.iter().chain(&ys) {
        c.ingest(r.bytes());
    }
    // Ten of X (whoever serves them first) and Y's three #kith posts.
    assert_eq!(b.sync().await, (13, 2));
    assert_eq!(b.node.store().contiguous_seq(&x.id()).unwrap(), 10);
    for r in &ys[..3] {
        assert!(b.node.store().has(&r.id()).unwrap());
    }
    assert!(!b.node.store().has(&ys[3].id()).unwrap(), "untagged post of an unfollowed author");
    // Nothing new the second time: one digest question to each peer (issue 21 item 3),
    // not one per followed author and subscribed tag.
    let served = |n: &TestNode| {
        let n = n.node.clone();
        async move {
            let events = n.net().stats().await.unwrap().events;
            events.get("sync request in").copied().unwrap_or(0)
        }
    };
    let before = [served(&a).await, served(&c).await];
    assert_eq!(b.sync().await, (0, 2));
    assert_eq!([served(&a).await - before[0], served(&c).await - before[1]], [1, 1]);
    let status = b.status().await;
    assert_eq!(status.sync.records_fetched, 13);
    assert!(status.sync.rounds >= 3);
    for n in [a, b, c] {
        n.stop().await;
    }
}

/// Issue #18 item 6: a follower who comes online while the author is offline gets the
/// author's posts from a third node that has them (any peer answers for any author;
/// records are signed, so whoever serves them cannot change them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_gets_an_offline_authors_posts_from_a_third_node() {
    let a = TestNode::start("a").await;
    let c = TestNode::start("c").await;
    c.dial(&a).await;
    c.follow(&a).await;
    a.wait_subscriber(&c, &Topic::Author(a.id())).await;
    let texts: Vec<String> = (0..30).map(|i| format!("from a, {i}")).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let posts = post_all(&a, &texts).await;
    wait_all(&c, &posts, DEADLINE).await;
    let author = a.id();
    a.stop().await;

    // B has never met A: it follows A by id and knows only C.
    let b = TestNode::start("b").await;
    b.follow_id(&author).await;
    b.dial(&c).await;
    wait_all(&b, &posts, DEADLINE).await;
    let feed = b.feed_all(None, Some(&author)).await;
    // A's whole log (it wrote nothing but the 30 posts), newest first, each once.
    assert_eq!(feed.iter().map(|i| i.seq).collect::<Vec<_>>(), (1..=30).rev().collect::<Vec<_>>());
    assert_unique(&feed, "B");
    assert_eq!(b.node.store().contiguous_seq(&author).unwrap(), 30);
    assert_eq!(b.status().await.sync.records_rejected, 0);
    b.stop().await;
    c.stop().await;
}
