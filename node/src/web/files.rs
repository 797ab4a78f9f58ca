//! Pictures and files in the browser: the files of a post sent from the compose box
//! (multipart), and `GET /blob/{hash}`, which shows a picture or downloads a file.
//!
//! What a browser uploads is written to a folder of its own under the blob store's
//! scratch folder and attached from there by the control API, exactly as `kith post
//! --attach` does (so the same checks apply: size, pictures without metadata); the folder
//! is removed when the post is done. Files served are the node's blobs: JPEG, PNG and WebP
//! (known by their bytes) are shown, anything else is downloaded, never shown, so that a
//! file from the network cannot become a page of this origin.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use axum::{
    extract::{FromRequest, Multipart, Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use kith_protocol::{attachment::FileName, blob::BlobHash, limits::MAX_ATTACHMENTS};
use tokio::io::AsyncWriteExt;

use super::{actions::PostForm, State as Shared};
use crate::{
    api::{Request, Response as Reply},
    media,
};

/// The Content-Security-Policy of a blob opened on its own.
const BLOB_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox";

/// Whether a request carries a multipart form (a post with files).
pub(super) fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// The files of one upload, in a folder of their own; the folder goes on drop.
#[derive(Default)]
pub(super) struct Upload {
    dir: Option<PathBuf>,
    paths: Vec<String>,
}

impl Upload {
    /// The files' paths, for the control API.
    pub(super) fn paths(&self) -> Vec<String> {
        self.paths.clone()
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Reads a multipart post: its fields and files (see [`read_form`]).
///
/// # Errors
/// Why the form could not be taken, for the person.
pub(super) async fn read_post(
    state: &Shared,
    request: axum::extract::Request,
) -> Result<(PostForm, Upload), String> {
    let (mut fields, upload) =
        read_form(state, request, &["text", "reply_to", "back", "circle"]).await?;
    let form = PostForm {
        text: fields.remove("text").unwrap_or_default(),
        reply_to: fields.remove("reply_to"),
        back: fields.remove("back"),
        circle: fields.remove("circle"),
    };
    Ok((form, upload))
}

/// Reads a multipart form: the text fields named in `names` (others, like the CSRF
/// token checked already, are dropped) and the files of its `attach` fields, each written
/// to disk as it streams in, refused past the node's largest blob size; at most
/// [`MAX_ATTACHMENTS`].
///
/// # Errors
/// Why the form could not be taken, for the person.
pub(super) async fn read_form(
    state: &Shared,
    request: axum::extract::Request,
    names: &[&str],
) -> Result<(HashMap<String, String>, Upload), String> {
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| e.body_text())?;
    let max = state.node.blobs().limits().max_blob;
    let mut fields = HashMap::new();
    let mut upload = Upload::default();
    while let Some(mut field) = multipart.next_field().await.map_err(|e| e.body_text())? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            text if names.contains(&text) => {
                let value = field.text().await.map_err(|e| e.body_text())?;
                fields.insert(name, value);
            }
            "attach" => {
                // A file input with nothing chosen sends an empty, nameless part.
                let Some(given) = field.file_name().filter(|n| !n.is_empty()) else { continue };
                let name = FileName::sanitized(given);
                if upload.paths.len() >= MAX_ATTACHMENTS {
                    return Err(format!("at most {MAX_ATTACHMENTS} files per post"));
                }
                let dir = match &upload.dir {
                    Some(dir) => dir.clone(),
                    None => {
                        let id = kith_protocol::dm::MessageId::generate()
                            .map_err(|e| format!("random: {e}"))?;
                        let dir = state.node.blobs().scratch_dir().join(format!("web-{id}"));
                        upload.dir = Some(dir.clone());
                        dir
                    }
                };
                let dir = dir.join(upload.paths.len().to_string());
                tokio::fs::create_dir_all(&dir).await.map_err(|e| format!("upload: {e}"))?;
                let path = dir.join(name.as_str());
                let mut file =
                    tokio::fs::File::create(&path).await.map_err(|e| format!("upload: {e}"))?;
                let mut written = 0u64;
                while let Some(chunk) = field.chunk().await.map_err(|e| e.body_text())? {
                    written += chunk.len() as u64;
                    if written > max {
                        return Err(format!(
                            "{} is larger than the largest file this node sends ({} MiB)",
                            name.as_str(),
                            max >> 20
                        ));
                    }
                    file.write_all(&chunk).await.map_err(|e| format!("upload: {e}"))?;
                }
                file.flush().await.map_err(|e| format!("upload: {e}"))?;
                upload.paths.push(path.display().to_string());
            }
            // Other fields (the CSRF token, checked already) are read and dropped.
            _ => while field.chunk().await.map_err(|e| e.body_text())?.is_some() {},
        }
    }
    Ok((fields, upload))
}

/// `GET /blob/{hash}`: the picture or file, fetched first if this node does not hold it.
pub(super) async fn blob(State(state): State<Arc<Shared>>, Path(hash): Path<String>) -> Response {
    let not_found = |why: String| (StatusCode::NOT_FOUND, why).into_response();
    let Ok(parsed) = hash.parse::<BlobHash>() else {
        return not_found("not a file address".into());
    };
    if !state.node.store().has_blob(&parsed) {
        if let Reply::Error { message, .. } =
            state.node.handle(Request::BlobGet { hash: hash.clone(), out: None }).await
        {
            return not_found(crate::text::line(&message).into_owned());
        }
    }
    let bytes = match tokio::fs::read(state.node.blobs().path(&parsed)).await {
        Ok(bytes) => bytes,
        Err(_) => return not_found("the file is not here".into()),
    };
    let head = bytes.get(..bytes.len().min(32)).unwrap_or_default();
    let (kind, disposition) = match media::Format::sniff(head) {
        Some(format) => (format.mime(), "inline"),
        None => ("application/octet-stream", "attachment"),
    };
    let headers = [
        (header::CONTENT_TYPE, kind),
        (header::CONTENT_DISPOSITION, disposition),
        // Opened on its own, a picture is a document the browser draws (with inline
        // styles of its own): it may do that, sandboxed, and nothing else.
        (header::CONTENT_SECURITY_POLICY, BLOB_CSP),
        // A blob's bytes never change: its address is their hash.
        (header::CACHE_CONTROL, "private, max-age=31536000, immutable"),
    ];
    (headers, bytes).into_response()
}
