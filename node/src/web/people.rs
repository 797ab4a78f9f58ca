//! People: whom you follow and who follows you, adding someone by their invite link, and
//! your own invite link with its QR code (SVG to show, PNG to save).

use std::sync::Arc;

use askama::Template;
use axum::{
    extract::{Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Redirect, Response},
    Extension, Form,
};
use qrcode::{render::svg, EcLevel, QrCode};
use serde::Deserialize;

use super::{
    auth::Session,
    pages::{html, Chrome},
    view::{clean, Names, When, Who},
    State as Shared,
};
use crate::{
    api::{FollowEntry, Request, Response as Reply},
    node::now_ms,
};

/// Longest text a QR code is made of (an invite link is about 230 characters).
const MAX_QR_TEXT: usize = 1024;
/// Pixels per module of the PNG, and modules of quiet zone around the code (both
/// renderers draw the standard four).
const PNG_MODULE_PX: u32 = 8;

/// One person in a list.
pub(super) struct Row {
    pub(super) who: Who,
    pub(super) mutual: bool,
}

/// Your invite, ready to hand over.
pub(super) struct InviteView {
    pub(super) link: String,
    /// Where its QR code is (`/qr.svg?text=...`), and the PNG to save.
    pub(super) svg: String,
    pub(super) png: String,
    pub(super) expires: When,
}

#[derive(Template)]
#[template(path = "people.html")]
struct People {
    chrome: Chrome,
    following: Vec<Row>,
    followers: Vec<Row>,
    invite: Result<InviteView, String>,
    /// The link typed into "Add", kept when adding failed.
    link: String,
    petname: String,
    add_error: Option<String>,
}

async fn rows(state: &Shared, names: &mut Names<'_>, request: Request) -> Vec<Row> {
    let entries: Vec<FollowEntry> = match state.node.handle(request).await {
        Reply::Follows { entries } => entries,
        _ => Vec::new(),
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in &entries {
        out.push(Row { who: names.named(&e.id, e.name.as_deref()).await, mutual: e.mutual });
    }
    out.sort_by_key(|r| (r.who.name.is_none(), r.who.label().to_lowercase()));
    out
}

/// A fresh invite link of this node (valid for the default time).
async fn invite(state: &Shared) -> Result<InviteView, String> {
    match state.node.handle(Request::Invite { expires_in_ms: None }).await {
        Reply::Invite { link, expires, .. } => {
            let query = serde_urlencoded::to_string([("text", link.as_str())])
                .map_err(|e| e.to_string())?;
            Ok(InviteView {
                svg: format!("/qr.svg?{query}"),
                png: format!("/qr.png?{query}"),
                expires: When::at(expires, now_ms()),
                link,
            })
        }
        Reply::Error { message, .. } => Err(clean(&message)),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

async fn page(state: &Shared, session: &Session, add: AddForm, error: Option<String>) -> People {
    let mut names = Names::new(&state.node);
    People {
        chrome: Chrome::new(state, session, "people"),
        following: rows(state, &mut names, Request::Following).await,
        followers: rows(state, &mut names, Request::Followers).await,
        invite: invite(state).await,
        link: add.link,
        petname: add.petname.unwrap_or_default(),
        add_error: error.as_deref().map(clean),
    }
}

/// `/people`: following, followers, adding by invite, your own invite.
pub(super) async fn list(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
) -> Response {
    let add = AddForm { link: String::new(), petname: None };
    html(StatusCode::OK, &page(&state, &session, add, None).await)
}

#[derive(Deserialize)]
pub(super) struct AddForm {
    link: String,
    petname: Option<String>,
}

/// `POST /add`: adds the person behind an invite link (connects, follows, gives the
/// petname) and opens their page; a refused link comes back with the reason.
pub(super) async fn add(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Form(form): Form<AddForm>,
) -> Response {
    let link = form.link.trim().to_owned();
    let petname = form.petname.as_deref().map(str::trim).filter(|p| !p.is_empty());
    let request = Request::Add { link, petname: petname.map(str::to_owned) };
    match state.node.handle(request).await {
        Reply::Added { id, .. } => Redirect::to(&format!("/person/{id}")).into_response(),
        Reply::Error { message, .. } => {
            let page = page(&state, &session, form, Some(message)).await;
            html(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        other => {
            let message = format!("unexpected reply {other:?}");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                &page(&state, &session, form, Some(message)).await,
            )
        }
    }
}

#[derive(Deserialize)]
pub(super) struct QrQuery {
    text: String,
}

/// The QR code of `text`, or why there is none (a 400 answer).
fn qr(text: &str) -> Result<QrCode, String> {
    if text.is_empty() || text.len() > MAX_QR_TEXT {
        return Err(format!("no text, or over {MAX_QR_TEXT} bytes: too long for a QR code"));
    }
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|e| e.to_string())
}

/// `/qr.svg?text=...`: a QR code of `text` as SVG (black on white, whatever the theme,
/// so that phones read it).
pub(super) async fn qr_svg(Query(q): Query<QrQuery>) -> Response {
    match qr(&q.text) {
        Ok(code) => {
            let image = code
                .render()
                .min_dimensions(200, 200)
                .dark_color(svg::Color("#000000"))
                .light_color(svg::Color("#ffffff"))
                .build();
            ([(header::CONTENT_TYPE, "image/svg+xml")], image).into_response()
        }
        Err(why) => (StatusCode::BAD_REQUEST, why).into_response(),
    }
}

/// `/qr.png?text=...`: the same as a PNG file to save or print.
pub(super) async fn qr_png(Query(q): Query<QrQuery>) -> Response {
    let code = match qr(&q.text) {
        Ok(code) => code,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let image =
        code.render::<image::Luma<u8>>().module_dimensions(PNG_MODULE_PX, PNG_MODULE_PX).build();
    let mut png = Vec::new();
    let encoded = image::DynamicImage::ImageLuma8(image)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png);
    match encoded {
        Ok(()) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"kith-invite.png\""),
            ],
            png,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
