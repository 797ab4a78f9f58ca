//! Live updates: one server-sent event stream per open page (`/events?...`), carrying
//! rendered HTML that htmx puts in place. Streams end when the browser leaves, when the
//! web interface stops, or when the node does.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    Extension,
};
use futures::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::{
    auth::Session,
    pages::{Card, Chrome},
    view::{Names, PostView},
    State as Shared,
};
use crate::node::{now_ms, LiveFeed};

/// How often an idle stream sends a comment, so that proxies and browsers keep it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub(super) struct LiveQuery {
    /// `home`, `tag` or `author`.
    feed: Option<String>,
    tag: Option<String>,
    author: Option<String>,
}

/// What one stream holds while it runs.
struct Live {
    state: Arc<Shared>,
    csrf: String,
    feed: LiveFeed,
    stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
}

/// `GET /events?feed=home|tag&tag=T|author&author=ID`: new posts of that feed, each as a
/// rendered card.
pub(super) async fn events(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Query(query): Query<LiveQuery>,
) -> Response {
    let (tag, author) = match query.feed.as_deref() {
        Some("home") => (None, None),
        Some("tag") if query.tag.is_some() => (query.tag.as_deref(), None),
        Some("author") if query.author.is_some() => (None, query.author.as_deref()),
        _ => return (StatusCode::BAD_REQUEST, "unknown live stream").into_response(),
    };
    let Ok(slot) = state.live_slots.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many live pages open").into_response();
    };
    let feed = match state.node.live_feed(tag, author) {
        Ok(feed) => feed,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let live =
        Live { stop: state.stop.subscribe(), csrf: session.csrf(), state, feed, _slot: slot };
    Sse::new(posts(live)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response()
}

fn posts(live: Live) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(live, |mut live| async move {
        if *live.stop.borrow() {
            return None;
        }
        let item = tokio::select! {
            item = live.feed.next() => item?,
            _ = live.stop.changed() => return None,
        };
        let me = live.state.node.id().to_string();
        let mut names = Names::new(&live.state.node);
        let p = PostView::of_feed(&item, &me, now_ms(), &mut names).await;
        let chrome = Chrome { csrf: live.csrf.clone(), me, active: "", live: None };
        let event = match askama::Template::render(&Card { chrome, p }) {
            Ok(html) => Event::default().data(html),
            Err(error) => {
                tracing::error!(%error, "cannot render a live post");
                Event::default().comment("skipped")
            }
        };
        Some((Ok(event), live))
    })
}
