//! Live updates: one server-sent event stream per open page (`/events?...`), carrying
//! rendered HTML that htmx puts in place. Streams end when the browser leaves, when the
//! web interface stops, or when the node does.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    future::Future,
    sync::Arc,
    time::Duration,
};

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
    groups::{group_lines, Lines},
    messages::{chat_messages, Bubbles},
    notes::{NoteFrag, NoteView},
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
    /// A group's conversation: the group's id.
    group: Option<String>,
    /// Present: new notifications.
    notes: Option<String>,
    tag: Option<String>,
    author: Option<String>,
}

/// What every stream holds while it runs: one of the limited slots, and the signal
/// that the web interface stops.
struct Base {
    state: Arc<Shared>,
    stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
}

impl Base {
    /// A free slot, or `None` when every one is taken.
    fn take(state: Arc<Shared>) -> Option<Self> {
        let slot = state.live_slots.clone().try_acquire_owned().ok()?;
        Some(Self { stop: state.stop.subscribe(), state, _slot: slot })
    }

    /// Waits for a notification (a message arrived) or the next [`CHAT_CHECK`], whichever
    /// comes first; `None` once the web interface or the node stops.
    async fn next_check(&mut self, notes: &mut LiveNotifications) -> Option<()> {
        let tick = async {
            tokio::select! {
                note = notes.next() => note.map(drop),
                () = tokio::time::sleep(CHAT_CHECK) => Some(()),
            }
        };
        self.until_stop(tick).await
    }

    /// What `next` gives, or `None` once the web interface stops.
    async fn until_stop<T>(&mut self, next: impl Future<Output = Option<T>>) -> Option<T> {
        if *self.stop.borrow() {
            return None;
        }
        tokio::select! {
            item = next => item,
            _ = self.stop.changed() => None,
        }
    }
}

/// A stream of rendered HTML as server-sent events, kept alive while idle.
fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response()
}

/// `GET /events?...`: `feed=home`, `feed=tag&tag=T`, `feed=author&author=ID` (new posts,
/// each as a rendered card); `chat=ID` (a conversation's new messages and changed delivery
/// states, as bubbles); `group=ID` (a group's new messages); `notes=1` (new notifications, as lines of the list).
pub(super) async fn events(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Query(query): Query<LiveQuery>,
) -> Response {
    let Some(base) = Base::take(state) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many live pages open").into_response();
    };
    if let Some(peer) = query.chat {
        let notes = base.state.node.live_notifications();
        return sse(chat_updates(Chat { base, peer, notes, shown: HashMap::new() }));
    }
    if let Some(group) = query.group {
        let notes = base.state.node.live_notifications();
        return sse(group_updates(Group { base, group, notes, shown: HashSet::new() }));
    }
    if query.notes.is_some() {
        let notes = base.state.node.live_notifications();
        return sse(new_notes(Notes { base, notes }));
    }
    let (tag, author) = match query.feed.as_deref() {
        Some("home") => (None, None),
        Some("tag") if query.tag.is_some() => (query.tag.as_deref(), None),
        Some("author") if query.author.is_some() => (None, query.author.as_deref()),
        _ => return (StatusCode::BAD_REQUEST, "unknown live stream").into_response(),
    };
    match base.state.node.live_feed(tag, author) {
        Ok(feed) => sse(posts(Live { base, csrf: session.csrf(), feed })),
        Err(error) => (StatusCode::BAD_REQUEST, error.message).into_response(),
    }
}

/// What a feed's stream holds while it runs.
struct Live {
    base: Base,
    csrf: String,
    feed: LiveFeed,
}

fn posts(live: Live) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(live, |mut live| async move {
        let item = live.base.until_stop(live.feed.next()).await?;
        let node = &live.base.state.node;
        let me = node.id().to_string();
        let mut names = Names::new(node);
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

/// How often an open conversation looks for changes of delivery status (a message turns
/// `delivered` without an event of its own).
const CHAT_CHECK: Duration = Duration::from_secs(1);

/// What a conversation's stream holds while it runs.
struct Chat {
    base: Base,
    peer: String,
    notes: LiveNotifications,
    /// Status of each message the page was sent, to send only what changed.
    shown: HashMap<String, String>,
}

/// New messages and changed delivery states of one conversation, as bubbles.
fn chat_updates(chat: Chat) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(chat, |mut chat| async move {
        loop {
            chat.base.next_check(&mut chat.notes).await?;
            let Ok(all) = chat_messages(&chat.base.state, &chat.peer).await else { continue };
            let changed: Vec<_> =
                all.into_iter().filter(|m| chat.shown.get(&m.id) != Some(&m.status)).collect();
            if changed.is_empty() {
                continue;
            }
            for m in &changed {
                chat.shown.insert(m.id.clone(), m.status.clone());
            }
            match askama::Template::render(&Bubbles { messages: changed, error: None }) {
                Ok(html) => return Some((Ok(Event::default().data(html)), chat)),
                Err(error) => tracing::error!(%error, "cannot render live messages"),
            }
        }
    })
}

/// What a group conversation's stream holds while it runs.
struct Group {
    base: Base,
    group: String,
    notes: LiveNotifications,
    /// The messages the page was sent.
    shown: HashSet<String>,
}

/// New messages of one group, as bubbles: looked for when a notification comes (a
/// message arrived) and every [`CHAT_CHECK`] (one from this node's person, sent from
/// another page, makes none).
fn group_updates(group: Group) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(group, |mut group| async move {
        loop {
            group.base.next_check(&mut group.notes).await?;
            let Ok(all) = group_lines(&group.base.state, &group.group).await else { continue };
            let new: Vec<_> = all.into_iter().filter(|l| !group.shown.contains(&l.id)).collect();
            if new.is_empty() {
                continue;
            }
            group.shown.extend(new.iter().map(|l| l.id.clone()));
            match askama::Template::render(&Lines { lines: new, error: None }) {
                Ok(html) => return Some((Ok(Event::default().data(html)), group)),
                Err(error) => tracing::error!(%error, "cannot render live group messages"),
            }
        }
    })
}

/// What a notifications page's stream holds while it runs.
struct Notes {
    base: Base,
    notes: LiveNotifications,
}

/// New notifications, each as a line of the list.
fn new_notes(notes: Notes) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(notes, |mut notes| async move {
        loop {
            let note = notes.base.until_stop(notes.notes.next()).await?;
            let mut names = Names::new(&notes.base.state.node);
            let n = NoteView::of(&note, now_ms(), &mut names).await;
            match askama::Template::render(&NoteFrag { n }) {
                Ok(html) => return Some((Ok(Event::default().data(html)), notes)),
                Err(error) => tracing::error!(%error, "cannot render a notification"),
            }
        }
    })
}
