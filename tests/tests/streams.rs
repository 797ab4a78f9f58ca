//! Answers that come in parts, asked in process with `Node::stream` (the control socket
//! writes out exactly what it gives; the CLI tests read the same streams over the socket).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use kith_node::{
    api::{Request, Response},
    node::Responses,
};
use kith_tests::TestNode;

const DEADLINE: Duration = Duration::from_secs(20);

async fn next(responses: &mut Responses) -> Response {
    tokio::time::timeout(DEADLINE, responses.next())
        .await
        .expect("no answer in time")
        .expect("the stream ended early")
}

fn feed_text(response: Response) -> String {
    match response {
        Response::FeedItem(item) => item.text,
        other => panic!("expected a feed item, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_feed_gives_the_backlog_oldest_first_then_new_posts() {
    let a = TestNode::start("a").await;
    for text in ["one", "two", "three"] {
        a.post(text).await;
    }
    // The backlog is the answer to the same request without `live`, oldest first (posts
    // made within one millisecond are ordered by id, so the order is read, not assumed).
    let page = Request::Feed { tag: None, author: None, limit: Some(2), live: false, before: None };
    let Response::Feed { items, .. } = a.ok(page).await else { panic!("no feed") };
    let newest: Vec<String> = items.into_iter().map(|item| item.text).collect();
    assert_eq!(newest.len(), 2);
    let live = Request::Feed { tag: None, author: None, limit: Some(2), live: true, before: None };
    let mut responses = a.node.stream(live);
    assert_eq!(feed_text(next(&mut responses).await), newest[1]);
    assert_eq!(feed_text(next(&mut responses).await), newest[0]);
    a.post("four").await;
    assert_eq!(feed_text(next(&mut responses).await), "four");
    // Without a limit, only new posts.
    let mut only_new = a.node.stream(Request::Feed {
        tag: None,
        author: None,
        limit: None,
        live: true,
        before: None,
    });
    a.post("five").await;
    assert_eq!(feed_text(next(&mut only_new).await), "five");
    assert_eq!(feed_text(next(&mut responses).await), "five");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_live_feed_request_is_one_error_and_the_end() {
    let a = TestNode::start("a").await;
    let mut responses = a.node.stream(Request::Feed {
        tag: Some("not a tag!".into()),
        author: None,
        limit: None,
        live: true,
        before: None,
    });
    assert!(matches!(next(&mut responses).await, Response::Error { .. }));
    assert!(tokio::time::timeout(DEADLINE, responses.next()).await.unwrap().is_none());
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_round_ends_with_its_result_and_ordinary_requests_give_one_answer() {
    let a = TestNode::start("a").await;
    let mut sync = a.node.stream(Request::Sync);
    let mut last = None;
    while let Some(response) = tokio::time::timeout(DEADLINE, sync.next()).await.unwrap() {
        last = Some(response);
    }
    assert!(matches!(last, Some(Response::Synced { fetched: 0, peers: 0 })), "{last:?}");

    let mut id = a.node.stream(Request::Id);
    assert!(matches!(next(&mut id).await, Response::Id { .. }));
    assert!(tokio::time::timeout(DEADLINE, id.next()).await.unwrap().is_none());
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_notifications_are_marked_read_once_the_next_is_asked_for() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    let c = TestNode::start("c").await;
    b.dial(&a).await;
    c.dial(&a).await;
    let mut live = a.node.stream(Request::Notifications { unread: false, limit: None, live: true });
    b.follow(&a).await;
    let first = next(&mut live).await;
    assert!(matches!(&first, Response::Notifications { entries } if entries.len() == 1));
    let unread = || async {
        match a.ok(Request::Notifications { unread: true, limit: None, live: false }).await {
            Response::Notifications { entries } => entries.len(),
            other => panic!("{other:?}"),
        }
    };
    // Given out but not yet taken in: still unread.
    assert_eq!(unread().await, 1);
    c.follow(&a).await;
    let _second = next(&mut live).await;
    assert_eq!(unread().await, 1, "the first is read once the second was asked for");
    drop(live);
    for node in [a, b, c] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circle_post_whose_key_comes_after_it_appears_in_the_live_feed_when_the_key_does() {
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    b.dial(&a).await;
    a.befriend(&b).await;
    let members = vec![b.id().to_string()];
    a.ok(Request::CircleCreate { name: "close".into(), members }).await;
    // B is away when A posts: the key share waits in A's queue for B.
    let b = b.pause().await;
    let post = Request::CirclePost { name: "close".into(), text: "for b only".into() };
    let Response::Record { id } = a.ok(post).await else { panic!("not posted") };
    let id: kith_protocol::RecordId = id.parse().unwrap();
    let bytes = a.node.store().get_bytes(&id).unwrap().unwrap();
    let a = a.pause().await;
    // The post reaches B first (planted here, as another follower's sync would bring
    // it): B cannot read it, and shows nothing of it.
    let b = b.resume().await;
    b.ingest(&bytes);
    let live = Request::Feed { tag: None, author: None, limit: None, live: true, before: None };
    let mut live = b.node.stream(live);
    assert!(b.feed(None, None).await.iter().all(|item| item.text != "for b only"));
    // A comes back and its queue gives B the key: the post appears in B's live feed
    // (the web page's stream is the same feed, its cards replaced by id).
    let a = a.resume().await;
    a.dial(&b).await;
    let item = loop {
        match next(&mut live).await {
            Response::FeedItem(item) if item.text == "for b only" => break item,
            Response::FeedItem(_) => {}
            other => panic!("expected a feed item, got {other:?}"),
        }
    };
    assert!(item.private);
    assert_eq!(item.id, id.to_string());
    drop(live);
    a.stop().await;
    b.stop().await;
}
