//! Pages (GET): each asks the node through the control API and renders a template.

use std::sync::Arc;

use askama::Template;
use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    Extension,
};

use super::{
    auth::Session,
    view::{self, Names, PostView, Seg, Who},
    State as Shared,
};
use crate::{
    api::{Request, Response as Reply},
    node::now_ms,
};

/// Posts on a feed page.
pub(super) const PAGE_POSTS: usize = 50;

type St = State<Arc<Shared>>;

/// What every signed-in page has around its content.
pub(super) struct Chrome {
    pub(super) csrf: String,
    /// This node's person.
    pub(super) me: String,
    /// Which part of the navigation is current.
    pub(super) active: &'static str,
    /// The live stream this page listens to, if any.
    pub(super) live: Option<LiveSpec>,
}

/// A page's live stream: where its updates go and in which order.
pub(super) struct LiveSpec {
    /// `/events?...`.
    pub(super) url: String,
    /// The id of the element updates go into.
    pub(super) into: &'static str,
    /// `desc` (newest first) or `asc` (oldest first), by the items' `data-key`.
    pub(super) sort: &'static str,
}

impl Chrome {
    pub(super) fn new(state: &Shared, session: &Session, active: &'static str) -> Self {
        Self { csrf: session.csrf(), me: state.node.id().to_string(), active, live: None }
    }

    /// Listens to the posts of `url`, newest first into `#feed`.
    pub(super) fn live(self, url: String) -> Self {
        self.live_into(url, "feed")
    }

    /// Listens to `url`, newest first into the element `into`.
    pub(super) fn live_into(mut self, url: impl Into<String>, into: &'static str) -> Self {
        self.live = Some(LiveSpec { url: url.into(), into, sort: "desc" });
        self
    }

    /// Listens to the messages of `url`, oldest first into `#chat`.
    pub(super) fn live_chat(mut self, url: String) -> Self {
        self.live = Some(LiveSpec { url, into: "chat", sort: "asc" });
        self
    }
}

/// Renders a template, or a plain 500 when it cannot (a bug: templates are checked at
/// compile time, so only a formatting error of a value can fail).
pub(super) fn html<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render this page").into_response()
        }
    }
}

/// A card on its own: as htmx swaps it in place of the old one, or as a live post.
#[derive(Template)]
#[template(path = "card.html")]
pub(super) struct Card {
    pub(super) chrome: Chrome,
    pub(super) p: PostView,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOut;

/// The page for a browser without a session: how to get one.
pub(super) fn signed_out(status: StatusCode) -> Response {
    html(status, &SignedOut)
}

#[derive(Template)]
#[template(path = "problem.html")]
struct Problem {
    chrome: Chrome,
    title: String,
    message: String,
}

/// A page that says what went wrong, inside the usual navigation.
pub(super) fn problem(chrome: Chrome, status: StatusCode, title: &str, message: &str) -> Response {
    html(status, &Problem { chrome, title: title.to_owned(), message: view::clean(message) })
}

/// Any other address.
pub(super) async fn not_found(State(state): St, session: Option<Extension<Session>>) -> Response {
    match session {
        Some(Extension(session)) => {
            let chrome = Chrome::new(&state, &session, "");
            problem(chrome, StatusCode::NOT_FOUND, "Not found", "There is no page at this address.")
        }
        None => (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain")], "not found")
            .into_response(),
    }
}

/// Feed items as cards.
pub(super) async fn cards(state: &Shared, request: Request) -> Result<Vec<PostView>, String> {
    let items = match state.node.handle(request).await {
        Reply::Feed { items, .. } => items,
        Reply::Error { message, .. } => return Err(message),
        other => return Err(format!("unexpected reply {other:?}")),
    };
    let me = state.node.id().to_string();
    let now = now_ms();
    let mut names = Names::new(&state.node);
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        out.push(PostView::of_feed(item, &me, now, &mut names).await);
    }
    Ok(out)
}

pub(super) fn feed(tag: Option<String>, author: Option<String>) -> Request {
    Request::Feed { tag, author, limit: Some(PAGE_POSTS), live: false, before: None }
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    chrome: Chrome,
    posts: Vec<PostView>,
    /// The person's circles (names, cleaned): the compose box may post to one.
    circles: Vec<String>,
}

/// The names of the person's circles.
pub(super) async fn circle_names(state: &Shared) -> Vec<String> {
    match state.node.handle(Request::Circles).await {
        Reply::Circles { circles } => circles.into_iter().map(|c| c.name).collect(),
        _ => Vec::new(),
    }
}

/// `/`: the timeline with a compose box; new posts arrive live.
pub(super) async fn home(State(state): St, Extension(session): Extension<Session>) -> Response {
    let chrome = Chrome::new(&state, &session, "home").live("/events?feed=home".into());
    match cards(&state, feed(None, None)).await {
        Ok(posts) => {
            let circles = circle_names(&state).await;
            html(StatusCode::OK, &Home { chrome, posts, circles })
        }
        Err(e) => {
            problem(chrome, StatusCode::INTERNAL_SERVER_ERROR, "Cannot read the timeline", &e)
        }
    }
}

/// The top of a hashtag page, with the subscribe button.
pub(super) struct TagHead {
    pub(super) tag: String,
    pub(super) subscribed: bool,
    pub(super) error: Option<String>,
}

impl TagHead {
    pub(super) async fn load(state: &Shared, tag: String) -> Self {
        let subscribed = match state.node.handle(Request::Tags).await {
            Reply::Tags { tags } => tags.contains(&tag),
            _ => false,
        };
        Self { tag, subscribed, error: None }
    }
}

/// The head alone, as htmx swaps it after (un)subscribing.
#[derive(Template)]
#[template(path = "tag_head_frag.html")]
pub(super) struct TagHeadFrag {
    pub(super) chrome: Chrome,
    pub(super) head: TagHead,
}

#[derive(Template)]
#[template(path = "tag.html")]
struct TagPage {
    chrome: Chrome,
    head: TagHead,
    posts: Vec<PostView>,
}

/// `/tag/{tag}`: posts with a hashtag, and subscribing to it.
pub(super) async fn tag(
    State(state): St,
    Extension(session): Extension<Session>,
    Path(tag): Path<String>,
) -> Response {
    let chrome = Chrome::new(&state, &session, "");
    let tag = match kith_protocol::Tag::parse(tag.trim_start_matches('#')) {
        Ok(t) => t.to_string(),
        Err(e) => return problem(chrome, StatusCode::NOT_FOUND, "Not a hashtag", &e.to_string()),
    };
    let chrome = chrome.live(format!("/events?feed=tag&tag={tag}"));
    match cards(&state, feed(Some(tag.clone()), None)).await {
        Ok(posts) => {
            let head = TagHead::load(&state, tag).await;
            html(StatusCode::OK, &TagPage { chrome, head, posts })
        }
        Err(e) => problem(chrome, StatusCode::BAD_REQUEST, "Cannot read this hashtag", &e),
    }
}

/// The top of a person's page: who they are and what you can do.
pub(super) struct PersonHead {
    pub(super) who: Who,
    pub(super) bio: String,
    pub(super) me: bool,
    pub(super) following: bool,
    pub(super) follows_me: bool,
    pub(super) forked: bool,
    pub(super) error: Option<String>,
}

impl PersonHead {
    /// `Err` when `id` is not an id the node accepts.
    pub(super) async fn load(state: &Shared, id: &str) -> Result<Self, String> {
        let profile =
            match state.node.handle(Request::ProfileShow { id: Some(id.to_owned()) }).await {
                Reply::Profile(p) => p,
                Reply::Error { message, .. } => return Err(message),
                other => return Err(format!("unexpected reply {other:?}")),
            };
        let listed = |r: Reply| match r {
            Reply::Follows { entries } => entries.into_iter().find(|e| e.id == profile.id),
            _ => None,
        };
        let following = listed(state.node.handle(Request::Following).await);
        let follows_me = listed(state.node.handle(Request::Followers).await).is_some();
        Ok(Self {
            me: profile.id == state.node.id().to_string(),
            who: Names::new(&state.node).named(&profile.id, profile.name.as_deref()).await,
            bio: view::clean(profile.bio.as_deref().unwrap_or_default()),
            following: following.is_some(),
            follows_me,
            forked: profile.forked,
            error: None,
        })
    }

    fn mutual(&self) -> bool {
        self.following && self.follows_me
    }
}

/// The head alone, as htmx swaps it after (un)following.
#[derive(Template)]
#[template(path = "person_head_frag.html")]
pub(super) struct PersonHeadFrag {
    pub(super) chrome: Chrome,
    pub(super) head: PersonHead,
}

#[derive(Template)]
#[template(path = "person.html")]
struct PersonPage {
    chrome: Chrome,
    head: PersonHead,
    posts: Vec<PostView>,
}

/// `/person/{id}`: a person's profile and posts.
pub(super) async fn person(
    State(state): St,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let active = if id == state.node.id().to_string() { "me" } else { "" };
    let chrome =
        Chrome::new(&state, &session, active).live(format!("/events?feed=author&author={id}"));
    let head = match PersonHead::load(&state, &id).await {
        Ok(head) => head,
        Err(e) => return problem(chrome, StatusCode::NOT_FOUND, "No such person", &e),
    };
    match cards(&state, feed(None, Some(id))).await {
        Ok(posts) => html(StatusCode::OK, &PersonPage { chrome, head, posts }),
        Err(e) => problem(chrome, StatusCode::INTERNAL_SERVER_ERROR, "Cannot read posts", &e),
    }
}

#[derive(Template)]
#[template(path = "thread.html")]
struct ThreadPage {
    chrome: Chrome,
    /// The record the address names (replies go to it).
    focus: String,
    posts: Vec<PostView>,
}

/// The cards of the conversation `id` belongs to, root first.
pub(super) async fn thread_cards(state: &Shared, id: &str) -> Result<Vec<PostView>, String> {
    let entries = match state.node.handle(Request::Thread { id: id.to_owned() }).await {
        Reply::Conversation { entries, .. } => entries,
        Reply::Error { message, .. } => return Err(message),
        other => return Err(format!("unexpected reply {other:?}")),
    };
    let me = state.node.id().to_string();
    let now = now_ms();
    let mut names = Names::new(&state.node);
    let mut out = Vec::with_capacity(entries.len());
    for entry in &entries {
        out.push(PostView::of_thread(entry, &me, now, &mut names).await);
    }
    Ok(out)
}

/// `/post/{id}`: the conversation a post belongs to, with a reply box.
pub(super) async fn thread(
    State(state): St,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let chrome = Chrome::new(&state, &session, "");
    match thread_cards(&state, &id).await {
        Ok(posts) => html(StatusCode::OK, &ThreadPage { chrome, focus: id, posts }),
        Err(e) => problem(chrome, StatusCode::NOT_FOUND, "No such post", &e),
    }
}
