//! The node: who is connected (with a small picture), whether it can be reached from
//! outside, relays, and what it stores.

use std::{f64::consts::TAU, sync::Arc};

use askama::Template;
use axum::{extract::State, http::StatusCode, response::Response, Extension};

use super::{
    auth::Session,
    pages::{html, problem, Chrome},
    view::{clean, Names, Who},
    State as Shared,
};
use crate::api::{PeerEntry, Request, Response as Reply, Status};

/// Peers drawn in the picture at most (the list shows every one).
const DRAWN: usize = 24;
/// Distance of the peers from this node in the picture (which is 200 units wide).
const RADIUS: f64 = 70.0;
/// Characters of a name written under its dot.
const SHORT_NAME: usize = 10;

/// A connected peer as a row and as a dot.
pub(super) struct PeerRow {
    pub(super) who: Who,
    pub(super) addr: String,
    pub(super) relayed: bool,
    pub(super) score: Option<String>,
}

/// A dot in the picture: where, and who.
pub(super) struct Dot {
    pub(super) x: String,
    pub(super) y: String,
    /// Where its name is written (under it).
    pub(super) label_y: String,
    pub(super) relayed: bool,
    /// The name, cut to fit under the dot.
    pub(super) short: String,
    pub(super) label: String,
    pub(super) id: String,
}

#[derive(Template)]
#[template(path = "node.html")]
struct NodePage {
    chrome: Chrome,
    s: Status,
    store: String,
    blobs: String,
    blob_quota: String,
    uptime: String,
    peers: Vec<PeerRow>,
    dots: Vec<Dot>,
    /// Peers connected but not drawn.
    more: usize,
    /// Who holds this person's messages while they are offline (`None`: unknown).
    mailboxes: Option<Mailboxes>,
}

/// The node's mailboxes, as the page shows them.
struct Mailboxes {
    /// Chosen by hand rather than automatically.
    manual: bool,
    holders: Vec<Who>,
    /// Whether the published list is this one.
    published: bool,
    /// People whose list names this node, with what it holds for them.
    holding: Vec<(Who, String)>,
}

/// `1.4 MB`: a size for people (powers of 1000).
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `3 d 4 h`, `5 h 2 min`, `12 min`, `40 s`.
fn uptime(s: u64) -> String {
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `label` cut to [`SHORT_NAME`] characters (with `…` when cut).
fn short(label: &str) -> String {
    if label.chars().count() <= SHORT_NAME {
        return label.to_owned();
    }
    let mut cut: String = label.chars().take(SHORT_NAME - 1).collect();
    cut.push('…');
    cut
}

/// The peers on a circle around this node (at the centre of a 200 × 200 picture).
fn dots(peers: &[PeerRow]) -> Vec<Dot> {
    let drawn = peers.len().min(DRAWN);
    peers
        .iter()
        .take(drawn)
        .enumerate()
        .map(|(i, p)| {
            let angle = TAU * i as f64 / drawn as f64 - TAU / 4.0;
            Dot {
                x: format!("{:.1}", 100.0 + RADIUS * angle.cos()),
                y: format!("{:.1}", 100.0 + RADIUS * angle.sin()),
                label_y: format!("{:.1}", 100.0 + RADIUS * angle.sin() + 21.0),
                relayed: p.relayed,
                short: short(&p.who.label()),
                label: p.who.label(),
                id: p.who.id.clone(),
            }
        })
        .collect()
}

/// `/node`: peers, reachability, relays, store.
pub(super) async fn show(
    State(state): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
) -> Response {
    let chrome = Chrome::new(&state, &session, "node");
    let s = match state.node.handle(Request::Status).await {
        Reply::Status(s) => *s,
        Reply::Error { message, .. } => {
            let status = StatusCode::INTERNAL_SERVER_ERROR;
            return problem(chrome, status, "Cannot read the node's state", &message);
        }
        other => {
            let message = format!("unexpected reply {other:?}");
            return problem(chrome, StatusCode::INTERNAL_SERVER_ERROR, "Cannot read", &message);
        }
    };
    let entries: Vec<PeerEntry> = match state.node.handle(Request::Peers).await {
        Reply::Peers { peers } => peers,
        _ => Vec::new(),
    };
    let mut names = Names::new(&state.node);
    let mut peers = Vec::with_capacity(entries.len());
    for p in &entries {
        peers.push(PeerRow {
            who: names.who(&p.id).await,
            addr: clean(&p.addr),
            relayed: p.connection == "relayed",
            score: p.score.map(|s| format!("{s:.1}")),
        });
    }
    peers.sort_by_key(|p| (p.who.name.is_none(), p.who.label().to_lowercase()));
    let mailboxes = match state.node.handle(Request::Mailbox).await {
        Reply::Mailbox(m) => {
            let mut holders = Vec::with_capacity(m.holders.len());
            for h in &m.holders {
                holders.push(names.who(&h.id).await);
            }
            let mut holding = Vec::with_capacity(m.holding.len());
            for h in &m.holding {
                let what = format!(
                    "{} message{}, {}",
                    h.messages,
                    if h.messages == 1 { "" } else { "s" },
                    bytes(h.bytes)
                );
                holding.push((names.who(&h.id).await, what));
            }
            Some(Mailboxes { manual: m.mode == "manual", holders, published: m.published, holding })
        }
        _ => None,
    };
    let store = bytes(state.node.store().size_on_disk());
    let page = NodePage {
        dots: dots(&peers),
        more: peers.len().saturating_sub(DRAWN),
        store,
        blobs: bytes(s.blobs.bytes),
        blob_quota: bytes(s.blobs.quota),
        uptime: uptime(s.uptime_s),
        chrome,
        s,
        peers,
        mailboxes,
    };
    html(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_for_people() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_400_000), "1.4 MB");
        assert_eq!(bytes(3_000_000_000_000_000), "3000.0 TB");
        assert_eq!(uptime(42), "42 s");
        assert_eq!(uptime(3 * 86_400 + 4 * 3600 + 5), "3 d 4 h");
    }

    #[test]
    fn peers_sit_on_a_circle() {
        let row = |i: usize| PeerRow {
            who: Who::new(&format!("peer{i}"), None),
            addr: String::new(),
            relayed: i == 1,
            score: None,
        };
        let peers: Vec<PeerRow> = (0..30).map(row).collect();
        let d = dots(&peers);
        assert_eq!(d.len(), DRAWN);
        // The first one is at the top.
        assert_eq!((d[0].x.as_str(), d[0].y.as_str()), ("100.0", "30.0"));
        assert_eq!(short("Bartholomew the Third"), "Bartholom…");
        assert_eq!(short("Bob"), "Bob");
        assert!(d[1].relayed && !d[0].relayed);
        assert!(dots(&[]).is_empty());
    }
}
