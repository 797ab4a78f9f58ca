//! Notifications (replies, mentions, reactions, reposts, follows, messages), new ones
//! arriving live; and the unread counts beside "Messages" and "Notifications".

use std::sync::Arc;

use askama::Template;
use axum::{extract::State, http::StatusCode, response::Response, Extension};

use super::{
    auth::Session,
    pages::{html, problem, Chrome},
    view::{clean, Names, When, Who},
    State as Shared,
};
use crate::{
    api::{NotificationEntry, Request, Response as Reply},
    node::now_ms,
    text,
};

/// One notification as a line of the list.
#[derive(Debug, Clone)]
pub(super) struct NoteView {
    /// Element id: one per notification.
    pub(super) dom: String,
    /// Sort key for live insertion (timestamp, zero-padded).
    pub(super) key: String,
    pub(super) who: Who,
    /// What they did ("replied to your post").
    pub(super) what: String,
    /// Where it is.
    pub(super) href: String,
    /// What it is about: the reply or mentioning post, the post reacted to or reposted,
    /// the message (sanitised, on one line).
    pub(super) snippet: Option<String>,
    pub(super) when: When,
    /// New since the list was last seen.
    pub(super) unread: bool,
}

impl NoteView {
    pub(super) async fn of(n: &NotificationEntry, now: u64, names: &mut Names<'_>) -> Self {
        names.note(&n.from, n.name.as_deref());
        let who = names.who(&n.from).await;
        let post = format!("/post/{}#p-{}", n.record, n.record);
        // A reaction or repost opens the conversation of the post it is about.
        let target = match &n.target {
            Some(t) => format!("/post/{t}#p-{t}"),
            None => format!("/post/{}", n.record),
        };
        let (what, href) = match n.kind.as_str() {
            "reply" => ("replied to your post".to_owned(), post),
            "mention" => ("mentioned you".to_owned(), post),
            "reaction" => match n.emoji.as_deref().map(emoji).filter(|e| !e.is_empty()) {
                Some(e) => (format!("reacted {e} to your post"), target),
                None => ("reacted to your post".to_owned(), target),
            },
            "repost" => ("reposted your post".to_owned(), target),
            "follow" => ("follows you".to_owned(), format!("/person/{}", n.from)),
            "mutual" => ("and you now follow each other".to_owned(), format!("/person/{}", n.from)),
            "message" => ("sent you a message".to_owned(), format!("/messages/{}", n.from)),
            // The groups page shows which group has unread messages.
            "group" => ("wrote in a group you are in".to_owned(), "/groups".to_owned()),
            other => return Self::other(n, who, other, now),
        };
        Self {
            dom: format!("n-{}-{}", n.kind, n.record),
            key: format!("{:016}", n.timestamp),
            who,
            what,
            href,
            snippet: n
                .text
                .as_deref()
                .map(|t| text::line(t).into_owned())
                .filter(|t| !t.is_empty()),
            when: When::at(n.timestamp, now),
            unread: !n.read,
        }
    }

    /// A kind this version does not know (from a newer node's store).
    fn other(n: &NotificationEntry, who: Who, kind: &str, now: u64) -> Self {
        let kind = clean(kind);
        Self {
            dom: format!("n-other-{}", n.record),
            key: format!("{:016}", n.timestamp),
            href: format!("/person/{}", who.id),
            who,
            what: format!("({kind})"),
            snippet: None,
            when: When::at(n.timestamp, now),
            unread: !n.read,
        }
    }
}

/// A reaction's emoji as shown: one line, at most 8 characters (the protocol bounds it;
/// this keeps a hostile one from filling the line).
fn emoji(e: &str) -> String {
    text::line(e).chars().take(8).collect()
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct Notifications {
    chrome: Chrome,
    notes: Vec<NoteView>,
}

/// One line alone: a live update.
#[derive(Template)]
#[template(path = "note.html")]
pub(super) struct NoteFrag {
    pub(super) n: NoteView,
}

/// `/notifications`: newest first; listing them marks them read.
pub(super) async fn list(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
) -> Response {
    let chrome =
        Chrome::new(&state, &session, "notifications").live_into("/events?notes=1", "notes");
    let entries = match state
        .node
        .handle(Request::Notifications { live: false, unread: false, limit: None })
        .await
    {
        Reply::Notifications { entries, .. } => entries,
        Reply::Error { message, .. } => {
            let status = StatusCode::INTERNAL_SERVER_ERROR;
            return problem(chrome, status, "Cannot read notifications", &message);
        }
        _ => Vec::new(),
    };
    let now = now_ms();
    let mut names = Names::new(&state.node);
    let mut notes = Vec::with_capacity(entries.len());
    for n in &entries {
        notes.push(NoteView::of(n, now, &mut names).await);
    }
    html(StatusCode::OK, &Notifications { chrome, notes })
}

#[derive(Template)]
#[template(path = "badges.html")]
struct Badges {
    notes: u64,
    messages: u64,
    groups: u64,
}

/// `/badges`: the unread counts, which htmx puts beside the navigation's links.
pub(super) async fn badges(State(state): State<Arc<Shared>>) -> Response {
    let notes = match state.node.handle(Request::Status).await {
        Reply::Status(s) => s.unread_notifications,
        _ => 0,
    };
    let messages = match state.node.handle(Request::MsgInbox).await {
        Reply::Inbox { conversations, .. } => conversations.iter().map(|c| c.unread).sum(),
        _ => 0,
    };
    let groups = super::groups::unread(&state).await;
    html(StatusCode::OK, &Badges { notes, messages, groups })
}
