//! Answers as a stream: the one way every caller runs a request whose answer comes in
//! parts, so that a live feed, live notifications, a sync round with its progress and a
//! blob fetch with its progress behave the same in process (tests, the web interface)
//! and over the control socket, which only writes out what this gives.

use std::pin::Pin;

use futures::stream::{self, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::{LiveFeed, LiveNotifications, Node, Stranger};
use crate::api::{ApiError, NotificationEntry, Request, Response};

/// The answers to one request, in order.
pub type Responses = Pin<Box<dyn Stream<Item = Response> + Send>>;

/// Whether `request`'s answer comes in parts (progress, or a live stream).
pub fn streams(request: &Request) -> bool {
    matches!(
        request,
        Request::Sync
            | Request::BlobGet { .. }
            | Request::Notifications { live: true, .. }
            | Request::Feed { live: true, .. }
    )
}

/// Whether `request` asks for a live stream, which ends only when the node stops (or the
/// caller drops it).
pub fn is_live(request: &Request) -> bool {
    matches!(request, Request::Notifications { live: true, .. } | Request::Feed { live: true, .. })
}

impl Node {
    /// Runs `request` and gives its answers:
    /// - `sync`: [`Response::SyncProgress`] after each peer, then [`Response::Synced`];
    /// - `blob get`: [`Response::BlobProgress`] as pieces arrive, then the answer;
    /// - a live feed: with a limit, the most recent matching posts oldest first, then
    ///   each new one, as [`Response::FeedItem`], until the node stops;
    /// - live notifications: each new one as [`Response::Notifications`] with one entry,
    ///   marked read once the caller asks for the next (one the caller never took in
    ///   stays unread);
    /// - anything else: the one answer of [`Node::handle`].
    ///
    /// Work that was started goes on if the stream is dropped (a sync round, a fetch):
    /// it is one of the node's tasks, and shutdown waits for it.
    pub fn stream(&self, request: Request) -> Responses {
        match request {
            Request::Sync => self.sync_stream(),
            Request::BlobGet { hash, out } => self.blob_stream(hash, out),
            Request::Notifications { live: true, .. } => self.notification_stream(),
            Request::Feed { tag, author, live: true, limit, .. } => {
                self.feed_stream(tag, author, limit)
            }
            other => {
                let node = self.clone();
                Box::pin(stream::once(async move { node.handle(other).await }))
            }
        }
    }

    /// Ends `responses` when the node stops.
    fn until_closed(&self, responses: impl Stream<Item = Response> + Send + 'static) -> Responses {
        let node = self.clone();
        Box::pin(responses.take_until(Box::pin(async move { node.closed().await })))
    }

    fn sync_stream(&self) -> Responses {
        let (tx, rx) = mpsc::channel(16);
        let (done, round) = oneshot::channel();
        let worker = self.clone();
        self.spawn(async move {
            let _ = done.send(worker.sync_round(usize::MAX, Some(tx), Stranger::Wait).await);
        });
        let progress = stream::unfold(rx, |mut rx| async move {
            let (peers_done, peers_total, fetched) = rx.recv().await?;
            Some((Response::SyncProgress { peers_done, peers_total, fetched }, rx))
        });
        // The progress channel closes when the round ends; its result follows.
        let end = stream::once(async move {
            match round.await {
                Ok((fetched, peers)) => Response::Synced { fetched, peers },
                Err(_) => stopping(),
            }
        });
        Box::pin(progress.chain(end))
    }

    fn blob_stream(&self, hash: String, out: Option<String>) -> Responses {
        let (tx, rx) = watch::channel((0, 0));
        let (done, fetch) = oneshot::channel();
        let worker = self.clone();
        self.spawn(async move {
            let _ = done.send(worker.blob_get(&hash, out, Some(tx)).await);
        });
        enum State {
            Running(watch::Receiver<(u32, u32)>, oneshot::Receiver<Result<Response, ApiError>>),
            Done,
        }
        Box::pin(stream::unfold(State::Running(rx, fetch), |state| async move {
            let State::Running(mut rx, mut fetch) = state else { return None };
            tokio::select! {
                done = &mut fetch => {
                    let response = match done {
                        Ok(Ok(response)) => response,
                        Ok(Err(e)) => e.into(),
                        Err(_) => stopping(),
                    };
                    Some((response, State::Done))
                }
                changed = rx.changed(), if rx.has_changed().is_ok() => {
                    let response = match changed {
                        Ok(()) => {
                            let (done, total) = *rx.borrow_and_update();
                            Response::BlobProgress { done, total }
                        }
                        // The fetch dropped its progress: only its answer is left.
                        Err(_) => match fetch.await {
                            Ok(Ok(response)) => return Some((response, State::Done)),
                            Ok(Err(e)) => return Some((e.into(), State::Done)),
                            Err(_) => return Some((stopping(), State::Done)),
                        },
                    };
                    Some((response, State::Running(rx, fetch)))
                }
            }
        }))
    }

    fn notification_stream(&self) -> Responses {
        struct State {
            node: Node,
            live: LiveNotifications,
            /// Given out last: read once the caller comes back for more.
            given: Option<NotificationEntry>,
        }
        let state = State { node: self.clone(), live: self.live_notifications(), given: None };
        self.until_closed(stream::unfold(state, |mut s| async move {
            if let Some(n) = s.given.take() {
                s.node.notification_shown(&n);
            }
            let n = s.live.next().await?;
            s.given = Some(n.clone());
            Some((Response::Notifications { entries: vec![n] }, s))
        }))
    }

    fn feed_stream(
        &self,
        tag: Option<String>,
        author: Option<String>,
        limit: Option<usize>,
    ) -> Responses {
        // Subscribed before the backlog is read, so that nothing falls between the two.
        let feed = match self.live_feed(tag.as_deref(), author.as_deref()) {
            Ok(feed) => feed,
            Err(e) => return Box::pin(stream::once(async move { Response::from(e) })),
        };
        let node = self.clone();
        // With an explicit limit, first the most recent posts (oldest first), then new ones.
        let backlog = stream::once(async move {
            let Some(limit) = limit else { return Vec::new() };
            let request =
                Request::Feed { tag, author, limit: Some(limit), live: false, before: None };
            match node.handle(request).await {
                Response::Feed { items, .. } => {
                    items.into_iter().rev().map(|item| Response::FeedItem(Box::new(item))).collect()
                }
                _ => Vec::new(),
            }
        })
        .flat_map(stream::iter);
        let new = stream::unfold(feed, |mut feed: LiveFeed| async move {
            let item = feed.next().await?;
            Some((Response::FeedItem(Box::new(item)), feed))
        });
        self.until_closed(backlog.chain(new))
    }
}

fn stopping() -> Response {
    ApiError::unavailable("the daemon is stopping").into()
}
