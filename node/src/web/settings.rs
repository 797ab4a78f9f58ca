//! Settings: your profile (name and bio, published to your followers) and your petnames
//! (your own names for people, kept on this node only); giving a petname from a
//! person's page.

use std::sync::Arc;

use askama::Template;
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    Extension, Form,
};
use serde::Deserialize;

use super::{
    actions::back,
    auth::Session,
    node_settings::{self, NodeSection},
    pages::{html, problem, Chrome},
    view::{clean, Names, Who},
    State as Shared,
};
use kith_protocol::limits::{MAX_BIO_BYTES, MAX_NAME_BYTES};

use crate::api::{Request, Response as Reply};

pub(super) struct PetnameRow {
    pub(super) who: Who,
    pub(super) petname: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
pub(super) struct Settings {
    chrome: Chrome,
    name: String,
    bio: String,
    notes: PageNotes,
    petnames: Vec<PetnameRow>,
    max_name: usize,
    max_bio: usize,
    /// The node's settings (`None`: the node did not answer).
    pub(super) node: Option<NodeSection>,
}

/// What the page says about the last change.
#[derive(Default)]
pub(super) struct PageNotes {
    /// The profile was saved.
    pub(super) saved: bool,
    /// Why the profile was not saved.
    pub(super) error: Option<String>,
    /// The node's settings were saved.
    pub(super) node_saved: bool,
    /// Why the node's settings were not changed.
    pub(super) node_error: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SettingsQuery {
    saved: Option<String>,
    node_saved: Option<String>,
}

pub(super) async fn page(state: &Shared, session: &Session, notes: PageNotes) -> Settings {
    let (name, bio) = match state.node.handle(Request::ProfileShow { id: None }).await {
        Reply::Profile(p) => (p.name.unwrap_or_default(), p.bio.unwrap_or_default()),
        _ => Default::default(),
    };
    let entries = match state.node.handle(Request::Names).await {
        Reply::Names { entries } => entries,
        _ => Vec::new(),
    };
    let mut names = Names::new(&state.node);
    let mut petnames = Vec::with_capacity(entries.len());
    for e in &entries {
        let who = names.named(&e.id, e.name.as_deref()).await;
        petnames.push(PetnameRow { petname: who.label(), who });
    }
    Settings {
        chrome: Chrome::new(state, session, "settings"),
        name,
        bio,
        notes: PageNotes { error: notes.error.as_deref().map(clean), ..notes },
        petnames,
        max_name: MAX_NAME_BYTES,
        max_bio: MAX_BIO_BYTES,
        node: node_settings::section(state).await,
    }
}

/// `/settings`.
pub(super) async fn show(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Query(q): Query<SettingsQuery>,
) -> Response {
    let notes = PageNotes {
        saved: q.saved.is_some(),
        node_saved: q.node_saved.is_some(),
        ..PageNotes::default()
    };
    html(StatusCode::OK, &page(&state, &session, notes).await)
}

#[derive(Deserialize)]
pub(super) struct ProfileForm {
    name: String,
    bio: String,
}

/// `POST /profile`: publishes the profile when it changed.
pub(super) async fn profile(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Form(form): Form<ProfileForm>,
) -> Response {
    let name = form.name.trim().to_owned();
    let bio = form.bio.trim_end().replace("\r\n", "\n");
    if let Reply::Profile(p) = state.node.handle(Request::ProfileShow { id: None }).await {
        if p.name.unwrap_or_default() == name && p.bio.unwrap_or_default() == bio {
            // Nothing changed: no new record for followers to fetch.
            return Redirect::to("/settings?saved=1").into_response();
        }
    }
    let too_long = if name.len() > MAX_NAME_BYTES {
        Some(format!("The name is too long: at most {MAX_NAME_BYTES} bytes."))
    } else if bio.len() > MAX_BIO_BYTES {
        Some(format!("The bio is too long: at most {MAX_BIO_BYTES} bytes."))
    } else {
        None
    };
    if let Some(error) = too_long {
        let notes = PageNotes { error: Some(error), ..PageNotes::default() };
        let mut page = page(&state, &session, notes).await;
        (page.name, page.bio) = (name, bio);
        return html(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    match state.node.handle(Request::ProfileSet { name: Some(name), bio: Some(bio) }).await {
        Reply::Error { message, .. } => {
            let notes = PageNotes { error: Some(message), ..PageNotes::default() };
            let page = page(&state, &session, notes).await;
            html(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        _ => Redirect::to("/settings?saved=1").into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct NameForm {
    id: String,
    /// Empty (or absent) takes the petname away.
    petname: Option<String>,
    back: Option<String>,
}

/// `POST /name`: gives a person a petname, or takes it away.
pub(super) async fn name(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Form(form): Form<NameForm>,
) -> Response {
    let petname = form.petname.as_deref().map(str::trim).filter(|p| !p.is_empty());
    let request = Request::Name { id: form.id.clone(), petname: petname.map(str::to_owned) };
    match state.node.handle(request).await {
        Reply::Error { message, .. } => {
            let chrome = Chrome::new(&state, &session, "");
            problem(chrome, StatusCode::UNPROCESSABLE_ENTITY, "Petname not changed", &message)
        }
        _ => back(form.back.as_deref()).into_response(),
    }
}
