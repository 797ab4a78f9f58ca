//! Direct messages: the inbox, one conversation, sending; delivery status kept live by
//! the conversation's event stream (`live.rs`).

use std::sync::Arc;

use askama::Template;
use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
    Extension, Form,
};
use serde::Deserialize;

use super::{
    auth::Session,
    pages::{html, problem, Chrome},
    view::{clean, When, Who},
    State as Shared,
};
use crate::{
    api::{MessageEntry, Request, Response as Reply},
    node::now_ms,
};

/// Messages shown in a conversation (the latest).
pub(super) const CHAT_MESSAGES: usize = 100;

/// One message as a bubble.
#[derive(Debug, Clone)]
pub(super) struct MsgView {
    pub(super) id: String,
    pub(super) mine: bool,
    pub(super) text: String,
    pub(super) when: When,
    pub(super) key: String,
    /// `queued`, `delivered`, `refused`, `received`.
    pub(super) status: String,
    pub(super) reason: Option<String>,
}

impl MsgView {
    pub(super) fn of(m: &MessageEntry, me: &str, now: u64) -> Self {
        Self {
            id: m.id.clone(),
            mine: m.from == me,
            text: clean(&m.text),
            when: When::at(m.timestamp, now),
            key: format!("{:016}", m.timestamp),
            status: m.status.clone(),
            reason: m.reason.as_deref().map(clean),
        }
    }
}

/// The latest messages with `peer`, oldest first (reading marks them read).
pub(super) async fn chat_messages(state: &Shared, peer: &str) -> Result<Vec<MsgView>, String> {
    let request = Request::MsgThread { peer: peer.to_owned(), limit: Some(CHAT_MESSAGES) };
    let messages = match state.node.handle(request).await {
        Reply::Thread { messages } => messages,
        Reply::Error { message } => return Err(message),
        other => return Err(format!("unexpected reply {other:?}")),
    };
    let me = state.node.id().to_string();
    let now = now_ms();
    Ok(messages.iter().map(|m| MsgView::of(m, &me, now)).collect())
}

struct InboxRow {
    who: Who,
    last: String,
    when: When,
    unread: u64,
}

#[derive(Template)]
#[template(path = "messages.html")]
struct Inbox {
    chrome: Chrome,
    rows: Vec<InboxRow>,
    /// Mutual connections without a conversation yet.
    others: Vec<Who>,
}

/// `/messages`: conversations, newest first, with unread counts.
pub(super) async fn inbox(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
) -> Response {
    let chrome = Chrome::new(&state, &session, "messages");
    let conversations = match state.node.handle(Request::MsgInbox).await {
        Reply::Inbox { conversations } => conversations,
        Reply::Error { message } => {
            return problem(
                chrome,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot read messages",
                &message,
            )
        }
        _ => Vec::new(),
    };
    let now = now_ms();
    let rows: Vec<InboxRow> = conversations
        .iter()
        .map(|c| InboxRow {
            who: Who::new(&c.peer, c.name.as_deref()),
            last: clean(&c.last_text),
            when: When::at(c.timestamp, now),
            unread: c.unread,
        })
        .collect();
    let others = match state.node.handle(Request::Following).await {
        Reply::Follows { entries } => entries
            .iter()
            .filter(|e| e.mutual && !rows.iter().any(|r| r.who.id == e.id))
            .map(|e| Who::new(&e.id, e.name.as_deref()))
            .collect(),
        _ => Vec::new(),
    };
    html(StatusCode::OK, &Inbox { chrome, rows, others })
}

#[derive(Template)]
#[template(path = "chat.html")]
struct Chat {
    chrome: Chrome,
    who: Who,
    messages: Vec<MsgView>,
    mutual: bool,
}

/// `/messages/{id}`: one conversation, oldest first, with a box to write.
pub(super) async fn conversation(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let chrome = Chrome::new(&state, &session, "messages");
    let profile = match state.node.handle(Request::ProfileShow { id: Some(id.clone()) }).await {
        Reply::Profile(p) => p,
        Reply::Error { message } => {
            return problem(chrome, StatusCode::NOT_FOUND, "No such person", &message)
        }
        _ => return problem(chrome, StatusCode::NOT_FOUND, "No such person", ""),
    };
    let mutual = match state.node.handle(Request::Following).await {
        Reply::Follows { entries } => entries.iter().any(|e| e.id == profile.id && e.mutual),
        _ => false,
    };
    let chrome = chrome.live_chat(format!("/events?chat={}", profile.id));
    match chat_messages(&state, &profile.id).await {
        Ok(messages) => {
            let who = Who::new(&profile.id, profile.name.as_deref());
            html(StatusCode::OK, &Chat { chrome, who, messages, mutual })
        }
        Err(e) => problem(chrome, StatusCode::NOT_FOUND, "Cannot open this conversation", &e),
    }
}

/// Bubbles on their own: the answer to a send, and the live stream's updates.
#[derive(Template)]
#[template(path = "bubbles.html")]
pub(super) struct Bubbles {
    pub(super) messages: Vec<MsgView>,
    pub(super) error: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SendForm {
    text: String,
}

/// `POST /messages/{id}`: encrypts and sends (or queues) a message.
pub(super) async fn send(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<SendForm>,
) -> Response {
    let text = form.text.clone();
    let reply = state
        .node
        .handle(Request::MsgSend { to: id.clone(), text: form.text, attach: Vec::new() })
        .await;
    let htmx = headers.get("hx-request").is_some_and(|v| v.as_bytes() == b"true");
    if !htmx {
        return match reply {
            Reply::Error { message } => {
                let chrome = Chrome::new(&state, &session, "messages");
                problem(chrome, StatusCode::UNPROCESSABLE_ENTITY, "Not sent", &message)
            }
            _ => Redirect::to(&format!("/messages/{id}")).into_response(),
        };
    }
    match reply {
        Reply::MsgSent { id, status } => {
            let now = now_ms();
            let me = state.node.id().to_string();
            let entry = MessageEntry {
                id,
                from: me.clone(),
                to: String::new(),
                text,
                timestamp: now,
                status,
                from_name: None,
                reason: None,
                attachments: Vec::new(),
            };
            let bubbles = Bubbles { messages: vec![MsgView::of(&entry, &me, now)], error: None };
            let mut response = html(StatusCode::OK, &bubbles);
            response.headers_mut().insert("hx-trigger", HeaderValue::from_static("kith:posted"));
            response
        }
        Reply::Error { message } => {
            html(StatusCode::OK, &Bubbles { messages: Vec::new(), error: Some(clean(&message)) })
        }
        other => (StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected reply {other:?}"))
            .into_response(),
    }
}
