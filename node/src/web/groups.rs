//! Groups: the list (with unread counts) and a form to start one; a group's conversation,
//! kept live by its event stream (`live.rs`); sending; the creator's membership changes;
//! leaving (the creator's leaving deletes the group).

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
    view::{clean, Names, When, Who},
    State as Shared,
};
use crate::{
    api::{GroupEntry, GroupMessageEntry, Request, Response as Reply},
    node::now_ms,
};

/// Messages shown in a group's conversation (the latest).
const GROUP_MESSAGES: usize = 100;

/// One group message as a bubble.
#[derive(Debug, Clone)]
pub(super) struct LineView {
    pub(super) id: String,
    pub(super) mine: bool,
    pub(super) from: Who,
    pub(super) text: String,
    pub(super) when: When,
    /// Orders bubbles oldest first: (timestamp, id), as the thread does.
    pub(super) key: String,
}

impl LineView {
    async fn of(m: &GroupMessageEntry, me: &str, now: u64, names: &mut Names<'_>) -> Self {
        Self {
            id: m.id.clone(),
            mine: m.from == me,
            from: names.named(&m.from, m.from_name.as_deref()).await,
            text: clean(&m.text),
            when: When::at(m.timestamp, now),
            key: format!("{:016}-{}", m.timestamp, m.id),
        }
    }
}

/// The groups this node's person is in.
async fn my_groups(state: &Shared) -> Result<Vec<GroupEntry>, String> {
    match state.node.handle(Request::Groups).await {
        Reply::Groups { groups } => Ok(groups),
        Reply::Error { message, .. } => Err(message),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// The latest messages of a group, oldest first (reading marks them read).
pub(super) async fn group_lines(state: &Shared, group: &str) -> Result<Vec<LineView>, String> {
    let request = Request::GroupThread { group: group.to_owned(), limit: Some(GROUP_MESSAGES) };
    let messages = match state.node.handle(request).await {
        Reply::GroupThread { messages } => messages,
        Reply::Error { message, .. } => return Err(message),
        other => return Err(format!("unexpected reply {other:?}")),
    };
    let me = state.node.id().to_string();
    let now = now_ms();
    let mut names = Names::new(&state.node);
    let mut out = Vec::with_capacity(messages.len());
    for m in &messages {
        out.push(LineView::of(m, &me, now, &mut names).await);
    }
    Ok(out)
}

/// Unread group messages, for the navigation's badge.
pub(super) async fn unread(state: &Shared) -> u64 {
    my_groups(state).await.map(|g| g.iter().map(|g| g.unread).sum()).unwrap_or(0)
}

/// Mutual connections: the people who can be in a group.
async fn mutuals(state: &Shared, names: &mut Names<'_>) -> Vec<Who> {
    let mut out = Vec::new();
    if let Reply::Follows { entries } = state.node.handle(Request::Following).await {
        for e in entries.iter().filter(|e| e.mutual) {
            out.push(names.named(&e.id, e.name.as_deref()).await);
        }
    }
    out.sort_by_key(|w| (w.name.is_none(), w.label().to_lowercase()));
    out
}

struct Row {
    id: String,
    name: String,
    members: Vec<Who>,
    unread: u64,
}

/// A circle, with the mutual connections not in it (who can be added).
struct CircleRow {
    name: String,
    members: Vec<Who>,
    addable: Vec<Who>,
}

#[derive(Template)]
#[template(path = "groups.html")]
struct List {
    chrome: Chrome,
    rows: Vec<Row>,
    circles: Vec<CircleRow>,
    mutuals: Vec<Who>,
    /// What "Start a group" was given, kept when it failed.
    name: String,
    error: Option<String>,
    /// Why the last change of a circle failed.
    circle_error: Option<String>,
}

/// What the list page shows besides the groups: a failed form's input and reason.
#[derive(Default)]
struct Failed {
    name: String,
    error: Option<String>,
    circle_error: Option<String>,
}

async fn list_page(state: &Shared, chrome: Chrome, failed: Failed) -> Response {
    let groups = match my_groups(state).await {
        Ok(groups) => groups,
        Err(message) => {
            let status = StatusCode::INTERNAL_SERVER_ERROR;
            return problem(chrome, status, "Cannot read groups", &message);
        }
    };
    let me = state.node.id().to_string();
    let mut names = Names::new(&state.node);
    let mut rows = Vec::with_capacity(groups.len());
    for g in &groups {
        let mut members = Vec::new();
        for m in g.members.iter().filter(|m| **m != me) {
            members.push(names.who(m).await);
        }
        rows.push(Row { id: g.id.clone(), name: clean(&g.name), members, unread: g.unread });
    }
    let mutuals = mutuals(state, &mut names).await;
    let mut circles = Vec::new();
    if let Reply::Circles { circles: list } = state.node.handle(Request::Circles).await {
        for c in list {
            let mut members = Vec::with_capacity(c.members.len());
            for m in &c.members {
                members.push(names.who(m).await);
            }
            let addable = mutuals.iter().filter(|w| !c.members.contains(&w.id)).cloned().collect();
            circles.push(CircleRow { name: c.name, members, addable });
        }
    }
    let Failed { name, error, circle_error } = failed;
    let status = if error.is_some() || circle_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let (error, circle_error) = (error.map(|e| clean(&e)), circle_error.map(|e| clean(&e)));
    html(status, &List { chrome, rows, circles, mutuals, name, error, circle_error })
}

/// `/groups`: the groups you are in, newest activity unread first, and "Start a group".
pub(super) async fn list(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
) -> Response {
    let chrome = Chrome::new(&state, &session, "groups");
    list_page(&state, chrome, Failed::default()).await
}

/// The `name` (trimmed) and every `member` of a form that makes a group or a circle.
fn name_and_members(fields: Vec<(String, String)>) -> (String, Vec<String>) {
    let mut name = String::new();
    let mut members = Vec::new();
    for (key, value) in fields {
        match key.as_str() {
            "name" => name = value.trim().to_owned(),
            "member" => members.push(value),
            _ => {}
        }
    }
    (name, members)
}

/// `POST /groups`: starts a group (`name`, and `member` once per member).
pub(super) async fn create(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (name, members) = name_and_members(fields);
    let chrome = Chrome::new(&state, &session, "groups");
    if name.is_empty() {
        let error = Some("A group needs a name.".into());
        return list_page(&state, chrome, Failed { name, error, ..Failed::default() }).await;
    }
    let request = Request::GroupCreate { name: name.clone(), members };
    match state.node.handle(request).await {
        Reply::Record { id } => Redirect::to(&format!("/groups/{id}")).into_response(),
        Reply::Error { message, .. } => {
            let failed = Failed { name, error: Some(message), ..Failed::default() };
            list_page(&state, chrome, failed).await
        }
        other => (StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected reply {other:?}"))
            .into_response(),
    }
}

#[derive(Template)]
#[template(path = "group.html")]
struct Conversation {
    chrome: Chrome,
    id: String,
    name: String,
    members: Vec<Who>,
    creator: Who,
    /// Whether this node's person manages the membership.
    manage: bool,
    /// Mutual connections not in the group (the creator may add them).
    addable: Vec<Who>,
    lines: Vec<LineView>,
}

/// `/groups/{id}`: a group's conversation, its members, and what its creator can change.
pub(super) async fn show(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let chrome = Chrome::new(&state, &session, "groups");
    let groups = my_groups(&state).await.unwrap_or_default();
    let Some(group) = groups.into_iter().find(|g| g.id == id) else {
        let message = "You are not in this group, or it was deleted.";
        return problem(chrome, StatusCode::NOT_FOUND, "No such group", message);
    };
    let lines = match group_lines(&state, &group.id).await {
        Ok(lines) => lines,
        Err(e) => return problem(chrome, StatusCode::NOT_FOUND, "Cannot open this group", &e),
    };
    let me = state.node.id().to_string();
    let mut names = Names::new(&state.node);
    let mut members = Vec::with_capacity(group.members.len());
    for m in &group.members {
        members.push(names.who(m).await);
    }
    let manage = group.creator == me;
    let addable = if manage {
        let all = mutuals(&state, &mut names).await;
        all.into_iter().filter(|w| !group.members.contains(&w.id)).collect()
    } else {
        Vec::new()
    };
    let creator = names.who(&group.creator).await;
    let chrome = chrome.live_chat(format!("/events?group={}", group.id));
    let page = Conversation {
        chrome,
        id: group.id,
        name: clean(&group.name),
        members,
        creator,
        manage,
        addable,
        lines,
    };
    html(StatusCode::OK, &page)
}

/// Bubbles on their own: the answer to a send, and the live stream's updates.
#[derive(Template)]
#[template(path = "group_lines.html")]
pub(super) struct Lines {
    pub(super) lines: Vec<LineView>,
    pub(super) error: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SendForm {
    text: String,
}

/// `POST /groups/{id}`: encrypts a message to every current member (it waits for those
/// offline).
pub(super) async fn send(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<SendForm>,
) -> Response {
    let htmx = headers.get("hx-request").is_some_and(|v| v.as_bytes() == b"true");
    let reply = state.node.handle(Request::GroupSend { group: id.clone(), text: form.text }).await;
    if !htmx {
        return match reply {
            Reply::Error { message, .. } => {
                let chrome = Chrome::new(&state, &session, "groups");
                problem(chrome, StatusCode::UNPROCESSABLE_ENTITY, "Not sent", &message)
            }
            _ => Redirect::to(&format!("/groups/{id}")).into_response(),
        };
    }
    match reply {
        Reply::Record { id: sent } => {
            let lines = group_lines(&state, &id).await.unwrap_or_default();
            let lines = lines.into_iter().filter(|l| l.id == sent).collect();
            let mut response = html(StatusCode::OK, &Lines { lines, error: None });
            response.headers_mut().insert("hx-trigger", HeaderValue::from_static("kith:posted"));
            response
        }
        Reply::Error { message, .. } => {
            html(StatusCode::OK, &Lines { lines: Vec::new(), error: Some(clean(&message)) })
        }
        other => (StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected reply {other:?}"))
            .into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct MemberForm {
    id: String,
}

/// What a membership change answered: back to the group (or to the list, once out of
/// it), or a page that says why not.
fn changed(state: &Shared, session: &Session, reply: Reply, to: String) -> Response {
    match reply {
        Reply::Error { message, .. } => {
            let chrome = Chrome::new(state, session, "groups");
            problem(chrome, StatusCode::UNPROCESSABLE_ENTITY, "Not changed", &message)
        }
        _ => Redirect::to(&to).into_response(),
    }
}

/// `POST /groups/{id}/add`: the creator adds a mutual connection.
pub(super) async fn add(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(group): Path<String>,
    Form(form): Form<MemberForm>,
) -> Response {
    let reply = state
        .node
        .handle(Request::GroupAdd { group: group.clone(), id: form.id, history: false })
        .await;
    changed(&state, &session, reply, format!("/groups/{group}"))
}

/// `POST /groups/{id}/remove`: the creator removes a member.
pub(super) async fn remove(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(group): Path<String>,
    Form(form): Form<MemberForm>,
) -> Response {
    let request = Request::GroupRemove { group: group.clone(), id: form.id };
    let reply = state.node.handle(request).await;
    changed(&state, &session, reply, format!("/groups/{group}"))
}

/// `POST /groups/{id}/leave`: leaves the group (its creator deletes it).
pub(super) async fn leave(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(group): Path<String>,
) -> Response {
    let reply = state.node.handle(Request::GroupLeave { group }).await;
    changed(&state, &session, reply, "/groups".into())
}

/// `POST /circles`: a new circle (`name`, and `member` once per member).
pub(super) async fn circle_create(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (name, members) = name_and_members(fields);
    let request = Request::CircleCreate { name, members };
    circle_changed(&state, &session, request).await
}

#[derive(Deserialize)]
pub(super) struct CircleForm {
    name: String,
    id: String,
}

/// `POST /circles/add`: a mutual connection joins a circle (reads its posts from now on).
pub(super) async fn circle_add(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Form(form): Form<CircleForm>,
) -> Response {
    let request = Request::CircleAdd { name: form.name, member: form.id };
    circle_changed(&state, &session, request).await
}

/// `POST /circles/remove`: a member leaves a circle (reads nothing posted after).
pub(super) async fn circle_remove(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Form(form): Form<CircleForm>,
) -> Response {
    let request = Request::CircleRemove { name: form.name, member: form.id };
    circle_changed(&state, &session, request).await
}

/// Makes a change to a circle: back to the list's circles, or the list with the reason.
async fn circle_changed(state: &Shared, session: &Session, request: Request) -> Response {
    match state.node.handle(request).await {
        Reply::Error { message, .. } => {
            let chrome = Chrome::new(state, session, "groups");
            let failed = Failed { circle_error: Some(message), ..Failed::default() };
            list_page(state, chrome, failed).await
        }
        _ => Redirect::to("/groups#circles").into_response(),
    }
}
