//! Static files, embedded in the binary: the style sheet, the page script, and htmx with
//! its extensions and licence (vendored from its npm package; see `assets/vendor/htmx`).

use axum::{
    extract::Path,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};

/// One embedded file.
struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $mime:expr) => {
        Asset { path: $path, mime: $mime, body: include_bytes!(concat!("../../assets/", $path)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("icon.svg", "image/svg+xml"),
    asset!("vendor/htmx/htmx.min.js", JS),
    asset!("vendor/htmx/hx-sse.min.js", JS),
    asset!("vendor/htmx/hx-upsert.min.js", JS),
    asset!("vendor/htmx/LICENSE", "text/plain; charset=utf-8"),
];

/// `GET /static/{file}`.
pub(super) async fn file(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        // The files change with the binary: the browser asks again each time (loopback).
        Some(a) => ([(header::CONTENT_TYPE, a.mime), (header::CACHE_CONTROL, "no-cache")], a.body)
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
