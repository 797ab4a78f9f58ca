//! The node's part of the settings page: the config values the running node changes at
//! once (a form; `POST /settings/node`), and those that take effect at its next start
//! (shown only).

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    Extension, Form,
};

use super::{
    auth::Session,
    pages::html,
    settings::{page, PageNotes},
    view::clean,
    State as Shared,
};
use crate::{
    api::{FixedSetting, LiveSettings, Request, Response as Reply},
    config::{MAX_BLOB_QUOTA_MB, MAX_CONNECTION_LIMIT, MAX_MAX_BLOB_MB},
};

/// One number of the form.
pub(super) struct NumberField {
    pub(super) key: &'static str,
    pub(super) label: &'static str,
    pub(super) hint: &'static str,
    pub(super) min: u64,
    pub(super) max: u64,
    /// As shown in the box (what the person typed, after a refused change).
    pub(super) value: String,
}

/// The node's settings as the page shows them.
pub(super) struct NodeSection {
    /// Pictures and files.
    pub(super) files: Vec<NumberField>,
    /// Connections.
    pub(super) connections: Vec<NumberField>,
    pub(super) dht_tags: bool,
    pub(super) fixed: Vec<FixedSetting>,
    pub(super) path: String,
}

const CONNECTIONS: u64 = MAX_CONNECTION_LIMIT as u64;

/// How many of [`NUMBERS`] are about pictures and files (the rest: connections).
const FILE_NUMBERS: usize = 4;

/// The numbers: key, label, hint, bounds.
const NUMBERS: [(&str, &str, &str, u64, u64); 8] = [
    ("max_blob_mb", "Largest picture or file", "MiB, sent or fetched", 1, MAX_MAX_BLOB_MB),
    (
        "blob_quota_mb",
        "Disk space for pictures and files",
        "MiB; pictures fetched from others go first, least recently used first",
        1,
        MAX_BLOB_QUOTA_MB,
    ),
    (
        "thumbnail_budget_mb",
        "Of that, for thumbnails",
        "MiB, of followed people's pictures, fetched as their posts arrive",
        1,
        MAX_BLOB_QUOTA_MB,
    ),
    (
        "blob_upload_kib_s",
        "Upload limit",
        "KiB a second for pictures and files; 0: none",
        0,
        MAX_BLOB_QUOTA_MB,
    ),
    (
        "max_inbound",
        "Connections from strangers",
        "inbound, of people you do not follow (people you follow always get in)",
        0,
        CONNECTIONS,
    ),
    (
        "max_outbound",
        "Connections to strangers",
        "outbound, to people you do not follow",
        0,
        CONNECTIONS,
    ),
    (
        "max_conns_per_ip",
        "Per address",
        "inbound connections from one address; 0: no cap",
        0,
        CONNECTIONS,
    ),
    (
        "max_conns_per_subnet",
        "Per subnet",
        "inbound connections from one IPv4 /24 or IPv6 /48; 0: no cap",
        0,
        CONNECTIONS,
    ),
];

fn get(live: &LiveSettings, key: &str) -> Option<u64> {
    match key {
        "max_blob_mb" => live.max_blob_mb,
        "blob_quota_mb" => live.blob_quota_mb,
        "thumbnail_budget_mb" => live.thumbnail_budget_mb,
        "blob_upload_kib_s" => live.blob_upload_kib_s,
        "max_inbound" => live.max_inbound,
        "max_outbound" => live.max_outbound,
        "max_conns_per_ip" => live.max_conns_per_ip,
        "max_conns_per_subnet" => live.max_conns_per_subnet,
        _ => None,
    }
}

fn slot<'a>(live: &'a mut LiveSettings, key: &str) -> Option<&'a mut Option<u64>> {
    match key {
        "max_blob_mb" => Some(&mut live.max_blob_mb),
        "blob_quota_mb" => Some(&mut live.blob_quota_mb),
        "thumbnail_budget_mb" => Some(&mut live.thumbnail_budget_mb),
        "blob_upload_kib_s" => Some(&mut live.blob_upload_kib_s),
        "max_inbound" => Some(&mut live.max_inbound),
        "max_outbound" => Some(&mut live.max_outbound),
        "max_conns_per_ip" => Some(&mut live.max_conns_per_ip),
        "max_conns_per_subnet" => Some(&mut live.max_conns_per_subnet),
        _ => None,
    }
}

/// The node's settings now; `None` when the node does not answer.
pub(super) async fn section(state: &Shared) -> Option<NodeSection> {
    let Reply::Settings(settings) = state.node.handle(Request::Settings).await else {
        return None;
    };
    let mut files: Vec<NumberField> = NUMBERS
        .iter()
        .map(|&(key, label, hint, min, max)| NumberField {
            key,
            label,
            hint,
            min,
            max,
            value: get(&settings.live, key).map(|n| n.to_string()).unwrap_or_default(),
        })
        .collect();
    let connections = files.split_off(FILE_NUMBERS);
    Some(NodeSection {
        files,
        connections,
        dht_tags: settings.live.dht_tags.unwrap_or(true),
        fixed: settings.restart.iter().map(|f| fixed(state, f)).collect(),
        path: clean(&settings.path),
    })
}

/// A restart-only value as shown; the web interface's own with the address it has now,
/// when that is not the configured one (a free port instead of a taken one, or port 0).
fn fixed(state: &Shared, f: &FixedSetting) -> FixedSetting {
    let mut value = clean(&f.value);
    let now = state.origin.trim_start_matches("http://");
    if f.key == "web" && !value.contains(&format!("\"{now}\"")) {
        value = format!("{value}, now \"{now}\"");
    }
    FixedSetting { key: f.key.clone(), value }
}

/// The form as sent: every number as typed, the checkbox present when ticked.
type NodeForm = HashMap<String, String>;

/// The change the form asks for, or what is wrong with it (for the person).
fn parse(form: &NodeForm) -> Result<LiveSettings, String> {
    let mut set = LiveSettings {
        dht_tags: Some(form.get("dht_tags").is_some_and(|v| v == "on")),
        ..LiveSettings::default()
    };
    for &(key, label, _, min, max) in &NUMBERS {
        let typed = form.get(key).map(|v| v.trim()).unwrap_or_default();
        let n: u64 = typed.parse().map_err(|_| {
            if typed.is_empty() {
                format!("{label}: a number is needed.")
            } else {
                format!("{label}: {typed:?} is not a whole number.")
            }
        })?;
        if !(min..=max).contains(&n) {
            return Err(format!("{label}: {n} is out of range ({min} to {max})."));
        }
        if let Some(slot) = slot(&mut set, key) {
            *slot = Some(n);
        }
    }
    Ok(set)
}

/// `POST /settings/node`: applies and saves the node's settings; a refused change shows
/// the page again with what was typed and why.
pub(super) async fn save(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Form(form): Form<NodeForm>,
) -> Response {
    let error = match parse(&form) {
        Ok(set) => match state.node.handle(Request::SettingsSet { set }).await {
            Reply::Error { message, .. } => message,
            _ => return Redirect::to("/settings?node_saved=1#node-title").into_response(),
        },
        Err(error) => error,
    };
    let notes = PageNotes { node_error: Some(clean(&error)), ..PageNotes::default() };
    let mut page = page(&state, &session, notes).await;
    if let Some(node) = &mut page.node {
        for field in node.files.iter_mut().chain(node.connections.iter_mut()) {
            field.value = form.get(field.key).map(|v| clean(v.trim())).unwrap_or_default();
        }
        node.dht_tags = form.get("dht_tags").is_some_and(|v| v == "on");
    }
    html(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> NodeForm {
        let mut fields: NodeForm =
            NUMBERS.iter().map(|n| (n.0.to_owned(), n.3.to_string())).collect();
        for (k, v) in pairs {
            fields.insert((*k).to_owned(), (*v).to_owned());
        }
        fields
    }

    #[test]
    fn numbers_are_checked_with_a_reason() {
        let set = parse(&form(&[("blob_quota_mb", " 100 "), ("dht_tags", "on")])).unwrap();
        assert_eq!(
            (set.blob_quota_mb, set.dht_tags, set.max_inbound),
            (Some(100), Some(true), Some(0))
        );
        assert_eq!(parse(&form(&[])).unwrap().dht_tags, Some(false));
        for (typed, says) in [
            ("", "a number is needed"),
            ("ten", "not a whole number"),
            ("-1", "not a whole number"),
            ("0", "out of range"),
            ("99999999999999999999", "not a whole number"),
        ] {
            let e = parse(&form(&[("max_blob_mb", typed)])).unwrap_err();
            assert!(e.starts_with("Largest picture or file: ") && e.contains(says), "{typed}: {e}");
        }
    }
}
