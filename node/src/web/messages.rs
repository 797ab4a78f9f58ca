//! Direct messages: the inbox, one conversation, sending; delivery status kept live by
//! the conversation's event stream (`live.rs`).

use std::sync::Arc;

use askama::Template;
use axum::{
    extract::{FromRequest, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
    Extension, Form,
};
use serde::Deserialize;

use super::{
    auth::Session,
    files::{self, Upload},
    pages::{html, problem, Chrome},
    view::{clean, Names, When, Who},
    State as Shared,
};
use crate::{
    api::{ErrorKind, MessageEntry, Request, Response as Reply},
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
    pub(super) attachments: Vec<super::view::AttachmentView>,
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
            attachments: super::view::attachment_views(&m.attachments),
        }
    }
}

/// The latest messages with `peer`, oldest first (reading marks them read).
pub(super) async fn chat_messages(state: &Shared, peer: &str) -> Result<Vec<MsgView>, String> {
    let request = Request::MsgThread { peer: peer.to_owned(), limit: Some(CHAT_MESSAGES) };
    let messages = match state.node.handle(request).await {
        Reply::Thread { messages } => messages,
        Reply::Error { message, .. } => return Err(message),
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
        Reply::Error { message, .. } => {
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
    let mut names = Names::new(&state.node);
    let mut rows = Vec::with_capacity(conversations.len());
    for c in &conversations {
        rows.push(InboxRow {
            who: names.named(&c.peer, c.name.as_deref()).await,
            // A message of files only has no text to show.
            last: if c.last_text.trim().is_empty() {
                "📎 files".to_owned()
            } else {
                clean(&c.last_text)
            },
            when: When::at(c.timestamp, now),
            unread: c.unread,
        });
    }
    let mut others = Vec::new();
    if let Reply::Follows { entries } = state.node.handle(Request::Following).await {
        for e in entries.iter().filter(|e| e.mutual && !rows.iter().any(|r| r.who.id == e.id)) {
            others.push(names.named(&e.id, e.name.as_deref()).await);
        }
    }
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
        Reply::Error { message, .. } => {
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
            let who = Names::new(&state.node).named(&profile.id, profile.name.as_deref()).await;
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

/// The text and files of a message from the chat box: an urlencoded form, or (from the
/// box's script, when files are chosen) a multipart one.
async fn read_send(
    state: &Shared,
    headers: &HeaderMap,
    request: axum::extract::Request,
) -> Result<(String, Upload), String> {
    if !files::is_multipart(headers) {
        let Form(form) = Form::<SendForm>::from_request(request, &())
            .await
            .map_err(|rejection| rejection.body_text())?;
        return Ok((form.text, Upload::default()));
    }
    let (mut fields, upload) = files::read_form(state, request, &["text"]).await?;
    Ok((fields.remove("text").unwrap_or_default(), upload))
}

/// `POST /messages/{id}`: encrypts and sends (or queues) a message, with the files
/// chosen in the chat box.
pub(super) async fn send(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    let htmx = headers.get("hx-request").is_some_and(|v| v.as_bytes() == b"true");
    // The uploaded copies go when `upload` is dropped, after the message took them in.
    let reply = match read_send(&state, &headers, request).await {
        Ok((text, upload)) => {
            let request = Request::MsgSend { to: id.clone(), text, attach: upload.paths() };
            state.node.handle(request).await
        }
        Err(message) => Reply::Error { message, kind: ErrorKind::Invalid },
    };
    if !htmx {
        return match reply {
            Reply::Error { message, .. } => {
                let chrome = Chrome::new(&state, &session, "messages");
                problem(chrome, StatusCode::UNPROCESSABLE_ENTITY, "Not sent", &message)
            }
            _ => Redirect::to(&format!("/messages/{id}")).into_response(),
        };
    }
    match reply {
        Reply::MsgSent { id: sent, .. } => {
            // The bubble shows the message as stored, its files included.
            let messages = chat_messages(&state, &id).await.unwrap_or_default();
            let messages: Vec<MsgView> = messages.into_iter().filter(|m| m.id == sent).collect();
            let mut response = html(StatusCode::OK, &Bubbles { messages, error: None });
            response.headers_mut().insert("hx-trigger", HeaderValue::from_static("kith:posted"));
            response
        }
        Reply::Error { message, .. } => {
            html(StatusCode::OK, &Bubbles { messages: Vec::new(), error: Some(clean(&message)) })
        }
        other => (StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected reply {other:?}"))
            .into_response(),
    }
}
