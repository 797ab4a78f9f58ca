//! Live updates: one server-sent event stream per open page (`/events?...`), carrying
//! rendered HTML that htmx puts in place. Streams end when the browser leaves, when the
//! web interface stops, or when the node does.

use std::{collections::HashMap, convert::Infallible, sync::Arc, time::Duration};

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
    messages::{chat_messages, Bubbles},
    pages::{Card, Chrome},
    view::{Names, PostView},
    State as Shared,
};
use crate::node::{now_ms, LiveFeed, LiveNotifications};

/// How often an idle stream sends a comment, so that proxies and browsers keep it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub(super) struct LiveQuery {
    /// `home`, `tag` or `author`.
    feed: Option<String>,
    /// A conversation: the other person's id.
    chat: Option<String>,
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
    if let Some(peer) = query.chat {
        let Ok(slot) = state.live_slots.clone().try_acquire_owned() else {
            return (StatusCode::SERVICE_UNAVAILABLE, "too many live pages open").into_response();
        };
        let chat = Chat {
            notes: state.node.live_notifications(),
            stop: state.stop.subscribe(),
            shown: HashMap::new(),
            state,
            peer,
            _slot: slot,
        };
        return Sse::new(chat_updates(chat))
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
            .into_response();
    }
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
        let chrome =
            Chrome { csrf: live.csrf.clone(), me, active: "", live: None, live_into: "feed" };
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

/// How often an open conversation looks for changes of delivery status (a message turns
/// `delivered` without an event of its own).
const CHAT_CHECK: Duration = Duration::from_secs(1);

/// What a conversation's stream holds while it runs.
struct Chat {
    state: Arc<Shared>,
    peer: String,
    notes: LiveNotifications,
    stop: watch::Receiver<bool>,
    /// Status of each message the page was sent, to send only what changed.
    shown: HashMap<String, String>,
    _slot: OwnedSemaphorePermit,
}

/// New messages and changed delivery states of one conversation, as bubbles.
fn chat_updates(chat: Chat) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(chat, |mut chat| async move {
        loop {
            if *chat.stop.borrow() {
                return None;
            }
            tokio::select! {
                note = chat.notes.next() => { note?; }
                _ = tokio::time::sleep(CHAT_CHECK) => {}
                _ = chat.stop.changed() => return None,
            }
            let Ok(all) = chat_messages(&chat.state, &chat.peer).await else { continue };
            let changed: Vec<_> =
                all.into_iter().filter(|m| chat.shown.get(&m.id) != Some(&m.status)).collect();
            if changed.is_empty() {
                continue;
            }
            for m in &changed {
                chat.shown.insert(m.id.clone(), m.status.clone());
            }
            let event = match askama::Template::render(&Bubbles { messages: changed, error: None })
            {
                Ok(html) => Event::default().data(html),
                Err(error) => {
                    tracing::error!(%error, "cannot render live messages");
                    continue;
                }
            };
            return Some((Ok(event), chat));
        }
    })
}
