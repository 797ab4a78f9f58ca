//! The local web interface: the node in a browser, served by the daemon on a loopback
//! address.
//!
//! Pages are rendered on the server (askama templates, checked at compile time) and made
//! live with htmx and server-sent events; htmx and every other asset are embedded in the
//! binary. The pages talk to the node only through the control API, in process
//! ([`Node::handle`] and the live streams), as the command line does over its socket.
//!
//! Security (see `auth.rs`): a one-time login token from `kith web` is exchanged for an
//! HttpOnly, SameSite=Strict session cookie; a request whose `Host` is not this server's
//! loopback address is refused (DNS rebinding); a state-changing request needs this
//! server's `Origin` and the session's CSRF token; every response carries a strict
//! Content-Security-Policy (no inline script); there are no CORS headers; request bodies
//! are bounded. Text from the network is escaped by the templates and stripped of
//! control characters first (`view.rs`).
//!
//! ```no_run
//! # async fn demo(node: kith_node::Node) -> Result<(), kith_node::web::WebError> {
//! use kith_node::{config::WebSetting, web};
//! let Some(listener) = web::bind(WebSetting::Default).await? else { return Ok(()) };
//! let web = web::Web::new(node, listener.local_addr().map_err(web::WebError::Io)?);
//! println!("{}", web.login_url().map_err(web::WebError::Io)?);
//! web.serve(listener, std::future::pending()).await;
//! # Ok(()) }
//! ```

mod actions;
mod assets;
mod auth;
mod files;
mod groups;
mod live;
mod messages;
mod node_page;
mod node_settings;
mod notes;
mod pages;
mod people;
mod settings;
mod view;

use std::{future::Future, io, net::SocketAddr, sync::Arc};

use axum::{
    extract::DefaultBodyLimit,
    http::{header, HeaderValue},
    routing::{get, post},
    Router,
};
use thiserror::Error;
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
};
use tower_http::set_header::SetResponseHeaderLayer;

use kith_protocol::limits::MAX_ATTACHMENTS;

use crate::{
    config::{WebSetting, DEFAULT_WEB_PORT},
    node::Node,
};

/// Largest request body accepted (bytes): a post or message is at most 4 KiB of text. A
/// post with files (multipart) may be as large as its files allow.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Live streams (server-sent events) open at once; one per open page.
const MAX_LIVE_STREAMS: usize = 32;

/// The Content-Security-Policy of every response: scripts, styles and everything else
/// only from this server's own files; no inline script or style, no eval, no frames, no
/// plugins; forms post only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Errors starting the web interface.
#[derive(Debug, Error)]
pub enum WebError {
    /// The address is not a loopback address.
    #[error("the web interface listens on loopback addresses only, not {0}")]
    NotLoopback(SocketAddr),
    /// The address cannot be bound.
    #[error("web interface: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// Another I/O error (the random source, the listener).
    #[error("web interface: {0}")]
    Io(io::Error),
}

/// Binds the web interface's listener for `setting`: the default port on 127.0.0.1, or
/// a free port when it is taken; or exactly the configured loopback address; `None` when
/// the setting is [`WebSetting::Off`].
///
/// # Errors
/// [`WebError::Bind`] when a configured address cannot be bound (a taken default port
/// is not an error), [`WebError::NotLoopback`].
pub async fn bind(setting: WebSetting) -> Result<Option<TcpListener>, WebError> {
    let addr = match setting {
        WebSetting::Off => return Ok(None),
        WebSetting::At(addr) => addr,
        WebSetting::Default => {
            let preferred = SocketAddr::from(([127, 0, 0, 1], DEFAULT_WEB_PORT));
            match TcpListener::bind(preferred).await {
                Ok(listener) => return Ok(Some(listener)),
                Err(error) => {
                    tracing::info!(%preferred, %error, "default web port unavailable; using a free one");
                    SocketAddr::from(([127, 0, 0, 1], 0))
                }
            }
        }
    };
    if !addr.ip().is_loopback() {
        return Err(WebError::NotLoopback(addr));
    }
    TcpListener::bind(addr).await.map(Some).map_err(|source| WebError::Bind { addr, source })
}

/// The web interface of one node. Cheap to clone.
#[derive(Clone)]
pub struct Web {
    state: Arc<State>,
}

/// What every handler shares.
struct State {
    node: Node,
    auth: auth::Auth,
    /// `http://127.0.0.1:PORT`: the one origin state changes may come from.
    origin: String,
    /// `Host` values accepted: the address itself, and `localhost:PORT` on loopback.
    hosts: Vec<String>,
    /// Live streams open now.
    live_slots: Arc<Semaphore>,
    /// Set when the interface stops: live streams end, so that shutdown need not wait.
    stop: watch::Sender<bool>,
}

impl Web {
    /// The web interface of `node`, to be served on `addr` (the listener's address).
    pub fn new(node: Node, addr: SocketAddr) -> Self {
        let host = addr.to_string();
        let origin = format!("http://{host}");
        let hosts = vec![host, format!("localhost:{}", addr.port())];
        let auth = auth::Auth::new(addr.port());
        Self {
            state: Arc::new(State {
                node,
                auth,
                origin,
                hosts,
                live_slots: Arc::new(Semaphore::new(MAX_LIVE_STREAMS)),
                stop: watch::channel(false).0,
            }),
        }
    }

    /// A fresh one-time login address: `http://127.0.0.1:PORT/login?token=...`.
    ///
    /// # Errors
    /// The system's random source failed.
    pub fn login_url(&self) -> io::Result<String> {
        let token = self.state.auth.mint_login()?;
        Ok(format!("{}/login?token={token}", self.state.origin))
    }

    /// The address pages are served from (`http://127.0.0.1:PORT`).
    pub fn origin(&self) -> &str {
        &self.state.origin
    }

    /// Serves the interface on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let app = router(self.state.clone());
        let state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            state.stop.send_replace(true);
        };
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::warn!(%error, "web interface stopped");
        }
    }
}

/// The largest post a browser may send: its text, and [`MAX_ATTACHMENTS`] files of the
/// protocol's largest blob size (`max_blob_mb` can change while the node runs: each file
/// is held to the node's own limit as it arrives, see `files::read_form`).
fn upload_limit() -> usize {
    let max = kith_protocol::limits::MAX_BLOB_BYTES;
    let files = max.saturating_mul(MAX_ATTACHMENTS as u64);
    usize::try_from(files).unwrap_or(usize::MAX).saturating_add(MAX_BODY_BYTES)
}

fn router(state: Arc<State>) -> Router {
    let headers: [(header::HeaderName, &'static str); 7] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Same-origin requests keep their Referer (a fallback for the Origin check);
        // nothing leaks to other sites.
        (header::REFERRER_POLICY, "same-origin"),
        (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    let mut app = Router::new()
        .route("/", get(pages::home))
        .route("/tag/{tag}", get(pages::tag))
        .route("/person/{id}", get(pages::person))
        .route("/post/{id}", get(pages::thread))
        .route("/messages", get(messages::inbox))
        .route(
            "/messages/{id}",
            get(messages::conversation)
                .post(messages::send)
                .layer(DefaultBodyLimit::max(upload_limit())),
        )
        .route("/groups", get(groups::list).post(groups::create))
        .route("/groups/{id}", get(groups::show).post(groups::send))
        .route("/groups/{id}/add", post(groups::add))
        .route("/groups/{id}/remove", post(groups::remove))
        .route("/groups/{id}/leave", post(groups::leave))
        .route("/circles", post(groups::circle_create))
        .route("/circles/add", post(groups::circle_add))
        .route("/circles/remove", post(groups::circle_remove))
        .route("/notifications", get(notes::list))
        .route("/badges", get(notes::badges))
        .route("/people", get(people::list))
        .route("/add", post(people::add))
        .route("/qr.svg", get(people::qr_svg))
        .route("/qr.png", get(people::qr_png))
        .route("/node", get(node_page::show))
        .route("/settings", get(settings::show))
        .route("/profile", post(settings::profile))
        .route("/name", post(settings::name))
        .route("/settings/node", post(node_settings::save))
        .route("/events", get(live::events))
        .route("/login", get(auth::login))
        .route("/logout", post(auth::logout))
        .route("/post", post(actions::post).layer(DefaultBodyLimit::max(upload_limit())))
        .route("/blob/{hash}", get(files::blob))
        .route("/react", post(actions::react))
        .route("/repost", post(actions::repost))
        .route("/delete", post(actions::delete))
        .route("/follow", post(actions::follow))
        .route("/subscribe", post(actions::subscribe))
        .route("/static/{*file}", get(assets::file))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    for (name, value) in headers {
        // A page may set a stricter cache rule, and a picture its own (sandboxed) policy.
        let layer = if name == header::CACHE_CONTROL || name == header::CONTENT_SECURITY_POLICY {
            SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
        } else {
            SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
        };
        app = app.layer(layer);
    }
    app
}
