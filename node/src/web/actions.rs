//! State changes (POST). The guard has checked the session, the Origin and the CSRF
//! token before any of these runs. Each answers an htmx request with the piece of page
//! that changed, and a plain form post with a redirect back to where it came from.

use std::sync::Arc;

use askama::Template;
use axum::{
    extract::{FromRequest, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
    Extension, Form,
};
use serde::Deserialize;

use super::{
    auth::Session,
    pages::{self, html, Card, Chrome, PersonHead, PersonHeadFrag, TagHead, TagHeadFrag},
    view::{PostView, Seg},
    State as Shared,
};
use crate::api::{Request, Response as Reply};

type St = State<Arc<Shared>>;

/// Whether htmx sent the request (it wants a fragment, not a page).
fn is_htmx(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v.as_bytes() == b"true")
}

/// Where a plain form post goes back to: a path on this server, else the home page.
pub(super) fn back(to: Option<&str>) -> Redirect {
    match to {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            Redirect::to(path)
        }
        _ => Redirect::to("/"),
    }
}

/// Asks the node; `Err` carries the one-line reason of an error reply.
async fn ask(state: &Shared, request: Request) -> Result<Reply, String> {
    match state.node.handle(request).await {
        Reply::Error { message, .. } => Err(message),
        reply => Ok(reply),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct PostForm {
    pub(super) text: String,
    pub(super) reply_to: Option<String>,
    pub(super) back: Option<String>,
    /// A circle's name: the post is for its members only.
    #[serde(default)]
    pub(super) circle: Option<String>,
}

/// The new post card and a note, as htmx partials for the home page.
#[derive(Template)]
#[template(path = "posted.html")]
struct Posted {
    chrome: Chrome,
    card: Option<PostView>,
    error: Option<String>,
}

/// `POST /post`: publishes a post or a reply; a form with files (multipart, from the
/// compose box's script) attaches them.
pub(super) async fn post(
    State(state): St,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    if !super::files::is_multipart(&headers) {
        return match Form::<PostForm>::from_request(request, &()).await {
            Ok(Form(form)) => publish(state, session, headers, form, Vec::new()).await,
            Err(rejection) => rejection.into_response(),
        };
    }
    match super::files::read_post(&state, request).await {
        // The uploaded copies go when `upload` is dropped, after the post took them in.
        Ok((form, upload)) => publish(state, session, headers, form, upload.paths()).await,
        Err(message) => {
            let chrome = Chrome::new(&state, &session, "");
            if is_htmx(&headers) {
                html(StatusCode::OK, &Posted { chrome, card: None, error: Some(message) })
            } else {
                pages::problem(chrome, StatusCode::UNPROCESSABLE_ENTITY, "Not posted", &message)
            }
        }
    }
}

async fn publish(
    state: Arc<Shared>,
    session: Session,
    headers: HeaderMap,
    form: PostForm,
    attach: Vec<String>,
) -> Response {
    let reply_to = form.reply_to.filter(|r| !r.trim().is_empty());
    let circle = form.circle.filter(|c| !c.is_empty());
    let request = match &circle {
        // A circle post is text only (its files would be fetched from the author by
        // anyone who has the hash); replies to it are refused by the node.
        Some(_) if !attach.is_empty() => {
            let error = "A post for a circle cannot carry files yet: post it to everyone, \
                         or without the files.";
            Err(error.to_owned())
        }
        Some(name) => Ok(Request::CirclePost { name: name.clone(), text: form.text }),
        None => Ok(Request::Post {
            text: form.text,
            reply_to: reply_to.clone(),
            expires_in_ms: None,
            attach,
        }),
    };
    let result = match request {
        Ok(request) => ask(&state, request).await,
        Err(error) => Err(error),
    };
    let chrome = Chrome::new(&state, &session, "");
    if !is_htmx(&headers) {
        return match (result, reply_to) {
            (Ok(Reply::Record { id }), Some(parent)) => {
                Redirect::to(&format!("/post/{parent}#p-{id}")).into_response()
            }
            (Ok(_), None) => back(form.back.as_deref()).into_response(),
            (Ok(_), Some(_)) => back(form.back.as_deref()).into_response(),
            (Err(e), _) => {
                pages::problem(chrome, StatusCode::UNPROCESSABLE_ENTITY, "Not posted", &e)
            }
        };
    }
    let page = match result {
        Ok(Reply::Record { id }) if circle.is_some() => {
            // A circle post has no conversation: its card comes from the timeline.
            let cards = pages::cards(&state, pages::feed(None, None)).await.unwrap_or_default();
            Posted { chrome, card: cards.into_iter().find(|c| c.id == id), error: None }
        }
        Ok(Reply::Record { id }) => {
            let card = card(&state, &id, false).await.ok();
            Posted { chrome, card, error: None }
        }
        Ok(_) => Posted { chrome, card: None, error: None },
        Err(e) => Posted { chrome, card: None, error: Some(e) },
    };
    let done = page.error.is_none();
    let mut response = html(StatusCode::OK, &page);
    if done {
        // app.js empties the compose box on this event.
        response.headers_mut().insert("hx-trigger", HeaderValue::from_static("kith:posted"));
    }
    response
}

/// One post's card, fresh from the node (`in_thread`: indented as in its conversation).
async fn card(state: &Shared, id: &str, in_thread: bool) -> Result<PostView, String> {
    let cards = pages::thread_cards(state, id).await?;
    let mut card = cards.into_iter().find(|c| c.id == id).ok_or("the post is gone")?;
    if !in_thread {
        card.depth = 0;
    }
    Ok(card)
}

#[derive(Deserialize)]
pub(super) struct CardForm {
    id: String,
    /// `react`: the emoji; empty withdraws the reaction.
    emoji: Option<String>,
    /// `thread` when the card is shown in a conversation.
    view: Option<String>,
    back: Option<String>,
}

/// Runs `request` about the card's post and answers with the card as it is now.
async fn on_card(
    state: Arc<Shared>,
    session: Session,
    headers: HeaderMap,
    form: CardForm,
    request: Request,
) -> Response {
    let result = ask(&state, request).await;
    let chrome = Chrome::new(&state, &session, "");
    if !is_htmx(&headers) {
        return match result {
            Ok(_) => back(form.back.as_deref()).into_response(),
            Err(e) => pages::problem(chrome, StatusCode::UNPROCESSABLE_ENTITY, "Not done", &e),
        };
    }
    let in_thread = form.view.as_deref() == Some("thread");
    match card(&state, &form.id, in_thread).await {
        Ok(mut p) => {
            p.error = result.err();
            html(StatusCode::OK, &Card { chrome, p })
        }
        // Deleted (or never known): the card goes away.
        Err(_) => StatusCode::OK.into_response(),
    }
}

/// `POST /react`: reacts with `emoji`, or withdraws the reaction when it is empty.
pub(super) async fn react(
    State(state): St,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Form(form): Form<CardForm>,
) -> Response {
    let id = form.id.clone();
    let request = match form.emoji.as_deref().map(str::trim) {
        Some(emoji) if !emoji.is_empty() => Request::React { id, emoji: emoji.to_owned() },
        _ => Request::Unreact { id },
    };
    on_card(state, session, headers, form, request).await
}

/// `POST /repost`.
pub(super) async fn repost(
    State(state): St,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Form(form): Form<CardForm>,
) -> Response {
    let request = Request::Repost { id: form.id.clone() };
    on_card(state, session, headers, form, request).await
}

/// `POST /delete`: a signed tombstone for one of our posts.
pub(super) async fn delete(
    State(state): St,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Form(form): Form<CardForm>,
) -> Response {
    let request = Request::Delete { id: form.id.clone() };
    on_card(state, session, headers, form, request).await
}

#[derive(Deserialize)]
pub(super) struct FollowForm {
    id: String,
    /// `follow` or `unfollow`.
    action: String,
    back: Option<String>,
}

/// `POST /follow`: follows or unfollows; answers with the person's page head.
pub(super) async fn follow(
    State(state): St,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Form(form): Form<FollowForm>,
) -> Response {
    let id = form.id.clone();
    let request = match form.action.as_str() {
        "unfollow" => Request::Unfollow { id },
        _ => Request::Follow { id },
    };
    let result = ask(&state, request).await;
    let chrome = Chrome::new(&state, &session, "");
    if !is_htmx(&headers) {
        return match result {
            Ok(_) => back(form.back.as_deref()).into_response(),
            Err(e) => pages::problem(chrome, StatusCode::UNPROCESSABLE_ENTITY, "Not done", &e),
        };
    }
    match PersonHead::load(&state, &form.id).await {
        Ok(mut head) => {
            head.error = result.err();
            html(StatusCode::OK, &PersonHeadFrag { chrome, head })
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct SubscribeForm {
    tag: String,
    /// `subscribe` or `unsubscribe`.
    action: String,
    back: Option<String>,
}

/// `POST /subscribe`: subscribes to a hashtag or unsubscribes; answers with its head.
pub(super) async fn subscribe(
    State(state): St,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Form(form): Form<SubscribeForm>,
) -> Response {
    let tag = form.tag.clone();
    let request = match form.action.as_str() {
        "unsubscribe" => Request::Unsubscribe { tag },
        _ => Request::Subscribe { tag },
    };
    let result = ask(&state, request).await;
    let chrome = Chrome::new(&state, &session, "");
    if !is_htmx(&headers) {
        return match result {
            Ok(_) => back(form.back.as_deref()).into_response(),
            Err(e) => pages::problem(chrome, StatusCode::UNPROCESSABLE_ENTITY, "Not done", &e),
        };
    }
    let tag = kith_protocol::Tag::parse(form.tag.trim().trim_start_matches('#'))
        .map_or(form.tag, |t| t.to_string());
    let mut head = TagHead::load(&state, tag).await;
    head.error = result.err();
    html(StatusCode::OK, &TagHeadFrag { chrome, head })
}
