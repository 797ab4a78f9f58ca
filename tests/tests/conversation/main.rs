//! Conversations and moderation between in-process nodes on 127.0.0.1. Most tests use
//! [`trio`]: A, B and C all follow each other and are connected A–B and B–C, so whatever
//! A and C say to each other goes through B. Replies, reactions, reposts, mentions,
//! deletion, expiry, notifications, blocking and muting, each observed on the other nodes
//! and (where it makes sense) across a restart. Every wait has a deadline; no assertion
//! depends on the order in which records arrive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod moderation;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use kith_node::{
    api::{FeedItem, ModerationEntry, NotificationEntry, Request, Response, ThreadEntry},
    ingest::Outcome,
};
use kith_protocol::{RecordId, Topic};
use kith_tests::{eventually, TestNode, DEADLINE};

/// How long an expiring post may take to disappear after its expiry: the sweep runs every
/// 2 s, so this leaves a wide margin.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(10);

/// Starts A, B and C; connects A–B and B–C; makes all three mutual connections; waits
/// until each node's direct neighbours are known on every author topic.
async fn trio() -> (TestNode, TestNode, TestNode) {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    let c = TestNode::start("c").await;
    b.dial(&a).await;
    c.dial(&b).await;
    a.befriend(&b).await;
    b.befriend(&c).await;
    a.befriend(&c).await;
    let topics = [a.id(), b.id(), c.id()].map(Topic::Author);
    for (x, y) in [(&a, &b), (&b, &a), (&b, &c), (&c, &b)] {
        for topic in &topics {
            x.wait_subscriber(y, topic).await;
        }
    }
    (a, b, c)
}

fn rid(id: &str) -> RecordId {
    id.parse().unwrap()
}

fn has(node: &TestNode, id: &str) -> bool {
    node.node.store().has(&rid(id)).unwrap()
}

/// Waits until every node in `nodes` stores `id`.
async fn wait_everywhere(nodes: &[&TestNode], id: &str) {
    for n in nodes {
        n.wait_record(id).await;
    }
}

fn record_of(response: Response) -> String {
    match response {
        Response::Record { id } => id,
        r => panic!("expected a record id, got {r:?}"),
    }
}

async fn reply(node: &TestNode, parent: &str, text: &str) -> String {
    let request = Request::Post {
        text: text.into(),
        reply_to: Some(parent.into()),
        expires_in_ms: None,
        attach: vec![],
    };
    record_of(node.ok(request).await)
}

async fn react(node: &TestNode, id: &str, emoji: &str) -> String {
    record_of(node.ok(Request::React { id: id.into(), emoji: emoji.into() }).await)
}

/// `Request::Thread`, or the error message.
async fn thread(node: &TestNode, id: &str) -> Result<Vec<ThreadEntry>, String> {
    match node.call(Request::Thread { id: id.into() }).await {
        Response::Conversation { entries, .. } => Ok(entries),
        Response::Error { message, .. } => Err(message),
        r => panic!("unexpected reply {r:?}"),
    }
}

/// The notifications (marks them read).
async fn notes(node: &TestNode) -> Vec<NotificationEntry> {
    match node.ok(Request::Notifications { live: false, unread: false, limit: None }).await {
        Response::Notifications { entries } => entries,
        r => panic!("unexpected reply {r:?}"),
    }
}

async fn blocked(node: &TestNode) -> Vec<ModerationEntry> {
    match node.ok(Request::Blocked).await {
        Response::Moderation { entries } => entries,
        r => panic!("unexpected reply {r:?}"),
    }
}

/// The item for `id` in `node`'s timeline, if shown.
async fn timeline_item(node: &TestNode, id: &str) -> Option<FeedItem> {
    node.feed(None, None).await.into_iter().find(|i| i.id == id)
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(e, n)| ((*e).to_owned(), *n)).collect()
}

/// Waits until `id` shows `want` as its reaction counts in the timeline and the thread of
/// every node in `nodes`.
async fn wait_reactions(nodes: &[&TestNode], id: &str, want: &BTreeMap<String, u64>) {
    for n in nodes {
        let what = format!("{} to show reactions {want:?} on {id}", n.name);
        eventually(DEADLINE, &what, || async {
            let in_feed = timeline_item(n, id).await?.reactions;
            let in_thread = thread(n, id).await.ok()?.into_iter().find(|e| e.id == id)?.reactions;
            (in_feed == *want && in_thread == *want).then_some(())
        })
        .await;
    }
}

/// (kind, from, record) of each notification about one of `records`, sorted.
fn about(list: &[NotificationEntry], records: &[&str]) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = list
        .iter()
        .filter(|n| records.contains(&n.record.as_str()))
        .map(|n| (n.kind.clone(), n.from.clone(), n.record.clone()))
        .collect();
    out.sort();
    out
}

fn note(kind: &str, from: &TestNode, record: &str) -> (String, String, String) {
    (kind.to_owned(), from.id().to_string(), record.to_owned())
}

/// (kind, from) of the follow and mutual notifications, sorted.
fn social(list: &[NotificationEntry]) -> Vec<(String, String)> {
    let mut out: Vec<_> = list
        .iter()
        .filter(|n| n.kind == "follow" || n.kind == "mutual")
        .map(|n| (n.kind.clone(), n.from.clone()))
        .collect();
    out.sort();
    out
}

/// One sync round on every node.
async fn sync_all(nodes: &[&TestNode]) {
    for n in nodes {
        n.sync().await;
    }
}

async fn wait_remembered(node: &TestNode, other: &TestNode) {
    let peer = other.id().to_peer_id().unwrap().to_string();
    let what = format!("{} to remember {}", node.name, other.name);
    eventually(DEADLINE, &what, || async {
        (!node.node.store().known_peers_of(&peer).unwrap().is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reactions_reposts_and_mentions_reach_everyone_and_notify_once() {
    let (a, b, c) = trio().await;
    let all = [&a, &b, &c];

    // A thread two replies deep: B replies to A, C replies to B.
    let p = a.post("what do you all think?").await;
    wait_everywhere(&all, &p).await;
    let r = reply(&b, &p, "B: I agree").await;
    wait_everywhere(&all, &r).await;
    let r2 = reply(&c, &r, "C: so do I").await;
    wait_everywhere(&all, &r2).await;
    let want: BTreeSet<(String, Option<String>, usize)> =
        [(p.clone(), None, 0), (r.clone(), Some(p.clone()), 1), (r2.clone(), Some(r.clone()), 2)]
            .into_iter()
            .collect();
    // Asked by any record of the conversation, every node shows the same tree.
    for (n, asked) in [(&a, &r2), (&b, &p), (&c, &r)] {
        let entries = thread(n, asked).await.unwrap();
        assert_eq!(entries[0].id, p, "{}: the root comes first", n.name);
        assert_eq!(entries[0].author, a.id().to_string());
        assert_eq!(entries[1].id, r, "{}: depth first", n.name);
        let got: BTreeSet<_> =
            entries.iter().map(|e| (e.id.clone(), e.parent.clone(), e.depth)).collect();
        assert_eq!(got, want, "{}'s thread", n.name);
        assert_eq!(entries.len(), 3, "{}: each record once", n.name);
        assert_eq!(entries[2].text, "C: so do I");
    }

    // Reactions: one per person per record, the latest one counts.
    let x1 = react(&c, &p, "👍").await;
    wait_reactions(&all, &p, &counts(&[("👍", 1)])).await;
    let x2 = react(&b, &p, "👍").await;
    wait_reactions(&all, &p, &counts(&[("👍", 2)])).await;
    let x3 = react(&c, &p, "🎉").await;
    wait_reactions(&all, &p, &counts(&[("👍", 1), ("🎉", 1)])).await;
    let x4 = record_of(c.ok(Request::Unreact { id: p.clone() }).await);
    wait_reactions(&all, &p, &counts(&[("👍", 1)])).await;
    // A reaction to a reply counts on that reply only.
    let x5 = react(&a, &r, "❤").await;
    wait_reactions(&all, &r, &counts(&[("❤", 1)])).await;
    wait_reactions(&all, &p, &counts(&[("👍", 1)])).await;

    // B reposts A's post: in the timelines of B's followers it shows once, as reposted.
    let y = record_of(b.ok(Request::Repost { id: p.clone() }).await);
    wait_everywhere(&all, &y).await;
    for n in all {
        let feed = n.feed(None, None).await;
        let shown: Vec<&FeedItem> = feed.iter().filter(|i| i.id == p).collect();
        assert_eq!(shown.len(), 1, "{}: the post and its repost show once", n.name);
        assert_eq!(shown[0].reposted_by.as_deref(), Some(b.id().to_string().as_str()));
        assert_eq!(shown[0].author, a.id().to_string());
        assert_eq!(shown[0].reactions, counts(&[("👍", 1)]));
    }

    // Asked by a reaction or a repost: the conversation of the post it is about.
    for asked in [&x5, &y] {
        let entries = thread(&a, asked).await.unwrap();
        let got: BTreeSet<_> =
            entries.iter().map(|e| (e.id.clone(), e.parent.clone(), e.depth)).collect();
        assert_eq!(got, want, "the thread of {asked}");
    }

    // C mentions A (the post reaches A through B).
    let m = c.post(&format!("have you met @{}?", a.id())).await;
    wait_everywhere(&all, &m).await;

    // A direct message from B to A.
    let (dm, status) = b.msg(&a, "psst").await;
    assert_eq!(status, "delivered");

    let records = [&p, &r, &r2, &x1, &x2, &x3, &x4, &x5, &y, &m, &dm].map(String::as_str);
    let mut for_a = vec![
        note("reply", &b, &r),
        note("reaction", &c, &x1),
        note("reaction", &b, &x2),
        note("reaction", &c, &x3),
        note("repost", &b, &y),
        note("mention", &c, &m),
        note("message", &b, &dm),
    ];
    for_a.sort();
    let mut for_b = vec![note("reply", &c, &r2), note("reaction", &a, &x5)];
    for_b.sort();
    let got_a = eventually(DEADLINE, "A's notifications", || async {
        let list = notes(&a).await;
        (about(&list, &records).len() >= for_a.len()).then_some(list)
    })
    .await;
    assert_eq!(about(&got_a, &records), for_a, "A's notifications");
    eventually(DEADLINE, "B's notifications", || async {
        (about(&notes(&b).await, &records).len() >= for_b.len()).then_some(())
    })
    .await;
    // Listed again: the same ones, once each, now read; nothing for anyone else.
    let again = notes(&a).await;
    assert_eq!(about(&again, &records), for_a, "A's notifications, listed again");
    assert!(again.iter().all(|n| n.read), "listing marks them read: {again:?}");
    assert_eq!(about(&notes(&b).await, &records), for_b, "B's notifications");
    assert_eq!(about(&notes(&c).await, &records), vec![], "C's notifications");
    // Each node was followed by both others and is mutual with both, once each.
    for n in all {
        let others: Vec<&TestNode> = all.into_iter().filter(|o| o.name != n.name).collect();
        let mut expected: Vec<(String, String)> = others
            .iter()
            .flat_map(|o| ["follow", "mutual"].map(|k| (k.to_owned(), o.id().to_string())))
            .collect();
        expected.sort();
        assert_eq!(social(&notes(n).await), expected, "{}'s follow notifications", n.name);
    }

    // B restarts: the tree, the counts, the repost and B's notifications are still there,
    // and catching up with its peers again notifies nobody twice.
    let b = b.restart().await;
    b.wait_connected(&a).await;
    b.wait_connected(&c).await;
    sync_all(&[&a, &b, &c]).await;
    let entries = thread(&b, &r2).await.unwrap();
    let got: BTreeSet<_> =
        entries.iter().map(|e| (e.id.clone(), e.parent.clone(), e.depth)).collect();
    assert_eq!(got, want);
    let item = timeline_item(&b, &p).await.unwrap();
    assert_eq!(item.reactions, counts(&[("👍", 1)]));
    assert_eq!(item.reposted_by, Some(b.id().to_string()));
    assert_eq!(timeline_item(&b, &r).await.unwrap().reactions, counts(&[("❤", 1)]));
    let b_notes = notes(&b).await;
    assert_eq!(about(&b_notes, &records), for_b, "B's notifications after a restart");
    assert!(b_notes.iter().all(|n| n.read));
    assert_eq!(about(&notes(&a).await, &records), for_a, "A's notifications after B's restart");
    assert_eq!(about(&notes(&c).await, &records), vec![]);

    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reactions_and_mentions_reach_an_author_who_follows_nobody() {
    // A follows nobody; B follows A; C follows only B. Connected A–B, B–C.
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    let c = TestNode::start("c").await;
    b.dial(&a).await;
    c.dial(&b).await;
    b.follow(&a).await;
    c.follow(&b).await;
    let (ta, tb) = (Topic::Author(a.id()), Topic::Author(b.id()));
    a.wait_subscriber(&b, &ta).await;
    b.wait_subscriber(&c, &tb).await;
    b.wait_subscriber(&c, &Topic::Author(c.id())).await;

    let p = a.post("anyone out there?").await;
    b.wait_record(&p).await;
    // B reposts it: C, who follows only B, gets the original with the repost.
    let y = record_of(b.ok(Request::Repost { id: p.clone() }).await);
    c.wait_record(&y).await;
    let item =
        eventually(DEADLINE, "C to show the repost", || async { timeline_item(&c, &p).await })
            .await;
    assert_eq!(item.reposted_by, Some(b.id().to_string()));
    assert_eq!(item.author, a.id().to_string());

    // C answers A, reacts and mentions A: each reaches A on A's own topic.
    let r = reply(&c, &p, "C: here!").await;
    let x = react(&c, &p, "👋").await;
    let m = c.post(&format!("say hi to @{}", a.id())).await;
    for id in [&r, &x, &m, &y] {
        a.wait_record(id).await;
    }
    let entries = thread(&a, &p).await.unwrap();
    let got: Vec<(&str, Option<&str>)> =
        entries.iter().map(|e| (e.id.as_str(), e.parent.as_deref())).collect();
    assert_eq!(got, vec![(p.as_str(), None), (r.as_str(), Some(p.as_str()))]);
    // B carries C's reaction to A on A's topic but does not keep it: it is a stranger's
    // record that does not concern B (issue #13: what a node keeps).
    wait_reactions(&[&a, &c], &p, &counts(&[("👋", 1)])).await;
    assert!(!has(&b, &x), "B kept a stranger's reaction to someone else's post");
    // Not in A's timeline (A follows nobody), but A is told.
    assert!(timeline_item(&a, &r).await.is_none());
    assert!(timeline_item(&a, &m).await.is_none());
    let mut want = vec![
        note("repost", &b, &y),
        note("reply", &c, &r),
        note("reaction", &c, &x),
        note("mention", &c, &m),
    ];
    want.sort();
    let records = [&p, &r, &x, &m, &y].map(String::as_str);
    let got = eventually(DEADLINE, "A's notifications", || async {
        let list = about(&notes(&a).await, &records);
        (list.len() >= want.len()).then_some(list)
    })
    .await;
    assert_eq!(got, want);
    assert_eq!(about(&notes(&b).await, &records), vec![]);
    assert_eq!(about(&notes(&c).await, &records), vec![]);

    // Deleting a reaction or a repost withdraws it.
    assert_eq!(c.ok(Request::Delete { id: x.clone() }).await, Response::Ok);
    wait_reactions(&[&a, &b, &c], &p, &counts(&[])).await;
    assert_eq!(b.ok(Request::Delete { id: y.clone() }).await, Response::Ok);
    eventually(DEADLINE, "the repost to leave C's timeline", || async {
        timeline_item(&c, &p).await.is_none().then_some(())
    })
    .await;
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_post_does_not_come_back_from_a_peer_that_was_offline() {
    let (a, b, c) = trio().await;
    // B also gets the post by its tag, so a tag sync with C could offer it back.
    b.subscribe("gone").await;
    let q = a.post("soon gone #gone").await;
    wait_everywhere(&[&b, &c], &q).await;
    let bytes = a.node.store().get_bytes(&rid(&q)).unwrap().unwrap();
    // C reposts it and B replies to it, before C goes offline.
    let y = record_of(c.ok(Request::Repost { id: q.clone() }).await);
    let r = reply(&b, &q, "B: nice").await;
    wait_everywhere(&[&a, &b, &c], &y).await;
    wait_everywhere(&[&a, &b, &c], &r).await;
    wait_remembered(&c, &b).await;
    let c = c.pause().await;

    assert_eq!(a.ok(Request::Delete { id: q.clone() }).await, Response::Ok);
    assert!(!has(&a, &q), "A still stores its deleted post");
    eventually(DEADLINE, "B to erase the deleted post", || async { (!has(&b, &q)).then_some(()) })
        .await;
    assert!(b.node.store().tombstone_of(&rid(&q)).unwrap().is_some());

    // C comes back holding the post; it redials B and both sync.
    let c = c.resume().await;
    assert!(has(&c, &q), "C lost the post while offline");
    c.wait_connected(&b).await;
    let nodes = [&a, &b, &c];
    eventually(DEADLINE, "sync to settle with the post gone everywhere", || async {
        sync_all(&nodes).await;
        nodes.iter().all(|n| !has(n, &q)).then_some(())
    })
    .await;
    // Settled: more rounds bring nothing back, and the post is shown nowhere.
    sync_all(&nodes).await;
    sync_all(&nodes).await;
    for n in nodes {
        assert!(!has(n, &q), "{} has the deleted post again", n.name);
        assert!(n.node.store().tombstone_of(&rid(&q)).unwrap().is_some(), "{}", n.name);
        assert!(thread(n, &q).await.is_err(), "{} shows a thread for it", n.name);
        for feed in [n.feed(None, None).await, n.feed(Some("gone"), None).await] {
            assert!(feed.iter().all(|i| i.id != q), "{} shows the deleted post", n.name);
        }
        // Offered again by anyone, it is refused.
        assert_eq!(n.ingest(&bytes), Outcome::Gone, "{} would take it again", n.name);
    }
    // The reply stays; it no longer has a root to hang from.
    assert!(has(&a, &r) && has(&b, &r) && has(&c, &r));

    // The tombstone survives a restart.
    let b = b.restart().await;
    assert_eq!(b.ingest(&bytes), Outcome::Gone);
    assert!(!has(&b, &q));
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_post_is_dropped_everywhere() {
    let (a, b, c) = trio().await;
    let keep = a.post("this one stays").await;
    let request = Request::Post {
        text: "gone soon".into(),
        reply_to: None,
        expires_in_ms: Some(1500),
        attach: vec![],
    };
    let e = record_of(a.ok(request).await);
    let bytes = a.node.store().get_bytes(&rid(&e)).unwrap().unwrap();
    b.wait_record(&e).await;
    wait_everywhere(&[&b, &c], &keep).await;
    // The expiry is kept across a restart.
    let b = b.restart().await;
    let nodes = [&a, &b, &c];
    eventually(EXPIRY_DEADLINE, "the expired post to be dropped everywhere", || async {
        nodes.iter().all(|n| !has(n, &e)).then_some(())
    })
    .await;
    b.wait_connected(&a).await;
    sync_all(&nodes).await;
    for n in nodes {
        assert!(!has(n, &e), "{} has the expired post again", n.name);
        assert!(timeline_item(n, &e).await.is_none());
        assert!(timeline_item(n, &keep).await.is_some(), "{} lost the other post", n.name);
        assert_eq!(n.ingest(&bytes), Outcome::Gone, "{} would take it again", n.name);
    }
    for n in [a, b, c] {
        n.stop().await;
    }
}
