//! Who may use the web interface, and how a page proves it.
//!
//! - `kith web` asks the daemon (over the control socket, whose peer is checked) for a
//!   one-time login token; the login address exchanges it for a session cookie:
//!   `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends it).
//! - Tokens, sessions and CSRF tokens are 256 random bits, compared in constant time.
//! - Every request must name this server in `Host` (a rebinding attacker's page names
//!   its own domain); every state change must come with this server's `Origin` (or a
//!   same-origin `Referer` when a browser sends no `Origin`) and the session's CSRF token,
//!   in the `X-Kith-Csrf` header (htmx) or the form's `csrf` field (plain forms).
//! - Sessions live in memory: a restarted daemon asks for a new `kith web`.

use std::{
    collections::VecDeque,
    io,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::{
    body::{to_bytes, Body},
    extract::{Query, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
    Extension,
};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{pages, MAX_BODY_BYTES};

/// How long a login address from `kith web` can be used.
const LOGIN_TTL: Duration = Duration::from_secs(60 * 60);
/// Login tokens waiting to be used, at most (the oldest is dropped).
const MAX_LOGINS: usize = 16;
/// How long a signed-in browser stays signed in.
const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Sessions at once, at most (the oldest is signed out).
const MAX_SESSIONS: usize = 32;
/// Header carrying the CSRF token on htmx requests.
pub(super) const CSRF_HEADER: &str = "x-kith-csrf";

/// 256 random bits.
#[derive(Clone)]
struct Token([u8; 32]);

impl Token {
    fn random() -> io::Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Self(bytes))
    }

    fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `text` is this token's hex form, in time independent of where they differ.
    fn matches(&self, text: &str) -> bool {
        let mut given = [0u8; 32];
        if text.len() != 64 || hex::decode_to_slice(text, &mut given).is_err() {
            return false;
        }
        bool::from(self.0.ct_eq(&given))
    }
}

struct Login {
    token: Token,
    expires: Instant,
}

/// A signed-in browser.
#[derive(Clone)]
pub(super) struct Session {
    id: Token,
    csrf: Token,
    expires: Instant,
}

impl Session {
    /// The CSRF token pages put in their forms and htmx headers.
    pub(super) fn csrf(&self) -> String {
        self.csrf.to_hex()
    }
}

#[derive(Default)]
struct Tables {
    logins: VecDeque<Login>,
    sessions: VecDeque<Session>,
}

/// Login tokens and sessions of one web interface.
pub(super) struct Auth {
    tables: Mutex<Tables>,
    /// `kith_PORT`: browsers share cookies between ports of one host, so each node's
    /// interface on this machine has its own cookie.
    cookie: String,
}

impl Auth {
    pub(super) fn new(port: u16) -> Self {
        Self { tables: Mutex::default(), cookie: format!("kith_{port}") }
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // The tables stay consistent whatever panicked while holding the lock.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new one-time login token (hex).
    pub(super) fn mint_login(&self) -> io::Result<String> {
        let token = Token::random()?;
        let hex = token.to_hex();
        let mut t = self.tables();
        if t.logins.len() >= MAX_LOGINS {
            t.logins.pop_front();
        }
        t.logins.push_back(Login { token, expires: Instant::now() + LOGIN_TTL });
        Ok(hex)
    }

    /// Uses up a login token and opens a session; `None` for an unknown, used or expired
    /// token. Every waiting token is compared, so the time taken says nothing about them.
    fn redeem(&self, given: &str) -> io::Result<Option<Session>> {
        let now = Instant::now();
        let mut t = self.tables();
        t.logins.retain(|l| l.expires > now);
        let mut found = None;
        for (i, login) in t.logins.iter().enumerate() {
            if login.token.matches(given) {
                found = Some(i);
            }
        }
        let Some(i) = found else { return Ok(None) };
        t.logins.remove(i);
        let session =
            Session { id: Token::random()?, csrf: Token::random()?, expires: now + SESSION_TTL };
        t.sessions.retain(|s| s.expires > now);
        if t.sessions.len() >= MAX_SESSIONS {
            t.sessions.pop_front();
        }
        t.sessions.push_back(session.clone());
        Ok(Some(session))
    }

    /// The session whose id is `given`, if it is open.
    fn session(&self, given: &str) -> Option<Session> {
        let now = Instant::now();
        let mut t = self.tables();
        t.sessions.retain(|s| s.expires > now);
        let mut found = None;
        for session in &t.sessions {
            if session.id.matches(given) {
                found = Some(session.clone());
            }
        }
        found
    }

    fn end(&self, session: &Session) {
        self.tables().sessions.retain(|s| !bool::from(s.id.0.ct_eq(&session.id.0)));
    }

    /// This interface's session id from the request's cookies.
    fn cookie_in<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find_map(|(name, value)| (name == self.cookie).then_some(value))
    }

    fn set_cookie(&self, session: &Session) -> String {
        format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            self.cookie,
            session.id.to_hex(),
            SESSION_TTL.as_secs()
        )
    }

    fn clear_cookie(&self) -> String {
        format!("{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0", self.cookie)
    }
}

type Shared = Arc<super::State>;

/// Checks every request: the Host, then (but for the login page and static files) the
/// session, and for state changes the Origin and the CSRF token.
pub(super) async fn guard(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    if !host.is_some_and(|h| state.hosts.iter().any(|allowed| allowed == h)) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "This server answers only to its own address.",
        );
    }
    let path = request.uri().path();
    if path.starts_with("/static/") || path == "/login" {
        return next.run(request).await;
    }
    let Some(session) = state.auth.cookie_in(request.headers()).and_then(|c| state.auth.session(c))
    else {
        return pages::signed_out(StatusCode::UNAUTHORIZED);
    };
    let mut request = request;
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        if !same_origin(&state.origin, request.headers()) {
            return refuse(
                StatusCode::FORBIDDEN,
                "Refused: this request did not come from this page.",
            );
        }
        if super::files::is_multipart(request.headers()) {
            // A file upload: its body is not buffered here, so the token must come in the
            // header (the compose form's script sends it).
            let token = request.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !token.is_some_and(|t| session.csrf.matches(t)) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "Refused: the form is stale. Reload the page and try again.",
                );
            }
            request.extensions_mut().insert(session);
            return next.run(request).await;
        }
        let (parts, body) = request.into_parts();
        let Ok(bytes) = to_bytes(body, MAX_BODY_BYTES).await else {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "Refused: the request is too large.");
        };
        let token = match parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
            Some(token) => Some(token.to_owned()),
            None => csrf_field(&bytes),
        };
        if !token.is_some_and(|t| session.csrf.matches(&t)) {
            return refuse(
                StatusCode::FORBIDDEN,
                "Refused: the form is stale. Reload the page and try again.",
            );
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// Whether a state change comes from a page of this server: its `Origin`, or, from a
/// browser that sends none, a `Referer` on this server. Neither: refused.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    if let Some(given) = headers.get(header::ORIGIN) {
        return given.as_bytes() == origin.as_bytes();
    }
    headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| r.strip_prefix(origin))
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The `csrf` field of an urlencoded form body.
fn csrf_field(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Field {
        csrf: Option<String>,
    }
    serde_urlencoded::from_bytes::<Field>(body).ok().and_then(|f| f.csrf)
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], why).into_response()
}

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    token: Option<String>,
}

/// `GET /login?token=...`: the address `kith web` prints. A valid token becomes a
/// session cookie and the browser goes on to the home page (the token leaves the
/// address bar); an invalid one is refused unless the browser is signed in already.
pub(super) async fn login(
    State(state): State<Shared>,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let redeemed = match query.token.as_deref().map(|t| state.auth.redeem(t)) {
        Some(Ok(found)) => found,
        Some(Err(error)) => {
            tracing::warn!(%error, "cannot open a web session");
            None
        }
        None => None,
    };
    if let Some(session) = redeemed {
        let mut response = Redirect::to("/").into_response();
        if let Ok(cookie) = HeaderValue::from_str(&state.auth.set_cookie(&session)) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        return response;
    }
    if state.auth.cookie_in(&headers).and_then(|c| state.auth.session(c)).is_some() {
        return Redirect::to("/").into_response();
    }
    pages::signed_out(StatusCode::UNAUTHORIZED)
}

/// `POST /logout`: ends the session and clears the cookie.
pub(super) async fn logout(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
) -> Response {
    state.auth.end(&session);
    let mut response = pages::signed_out(StatusCode::OK);
    if let Ok(cookie) = HeaderValue::from_str(&state.auth.clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_tokens_are_single_use_and_bounded() {
        let auth = Auth::new(1);
        let first = auth.mint_login().unwrap();
        let session = auth.redeem(&first).unwrap().expect("a fresh token opens a session");
        assert!(auth.redeem(&first).unwrap().is_none(), "a token works once");
        assert!(auth.session(&session.id.to_hex()).is_some());
        assert!(auth.redeem(&"0".repeat(64)).unwrap().is_none());
        assert!(auth.redeem("short").unwrap().is_none());
        let oldest = auth.mint_login().unwrap();
        for _ in 0..MAX_LOGINS {
            auth.mint_login().unwrap();
        }
        assert!(auth.redeem(&oldest).unwrap().is_none(), "the oldest waiting token was dropped");
        auth.end(&session);
        assert!(auth.session(&session.id.to_hex()).is_none());
    }

    #[test]
    fn cookies_and_origins() {
        let auth = Auth::new(7780);
        let mut headers = HeaderMap::new();
        headers
            .insert(header::COOKIE, HeaderValue::from_static("a=1; kith_7780=abc; kith_7781=def"));
        assert_eq!(auth.cookie_in(&headers), Some("abc"));
        let origin = "http://127.0.0.1:7780";
        let mut h = HeaderMap::new();
        assert!(!same_origin(origin, &h), "neither Origin nor Referer");
        h.insert(header::REFERER, HeaderValue::from_static("http://127.0.0.1:7780/post/x"));
        assert!(same_origin(origin, &h));
        h.insert(header::REFERER, HeaderValue::from_static("http://127.0.0.1:77801/"));
        assert!(!same_origin(origin, &h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:7780"));
        assert!(same_origin(origin, &h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(origin, &h));
        assert_eq!(csrf_field(b"text=hi&csrf=ab%20c"), Some("ab c".into()));
        assert_eq!(csrf_field(b"text=hi"), None);
    }
}
