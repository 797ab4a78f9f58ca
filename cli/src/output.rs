//! Printing responses: JSON per the CLI contract with `--json`, text for people without.

//!
//! Text from the network never reaches the terminal raw: human output passes it through
//! [`kith_node::text`] (escape sequences and controls removed, names with invisible
//! characters shown), and JSON output escapes, besides what JSON must, the C1 controls,
//! DEL, line separators and bidi controls as `\uXXXX` (same value, nothing a terminal
//! acts on).

use kith_node::{
    api::{
        AttachmentEntry, ErrorKind, FeedItem, FollowEntry, InboxEntry, Mention, MessageEntry,
        NameEntry, Naming, NotificationEntry, PeerEntry, Profile, Response, Status, ThreadEntry,
    },
    text,
};
use serde::Serialize;
use serde_json::json;

use crate::time;

/// Writes one line to stdout. A closed pipe (`kith feed | head`) ends the program
/// quietly instead of panicking; any other write error ends it with a message.
pub(crate) fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("kith: cannot write output: {e}");
        std::process::exit(1);
    }
}

/// Writes bytes to stdout as they are (a script, a man page); a closed pipe ends the
/// program quietly, as in [`emit`].
pub(crate) fn raw(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("kith: cannot write output: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`emit`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::emit(format_args!($($arg)*)) };
}
pub(crate) use out;

/// A serde_json formatter that also escapes what a terminal could act on: DEL, the C1
/// controls, U+2028/U+2029 and bidi controls (JSON itself escapes only C0 controls).
struct TerminalSafe;

fn json_escaped(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{9f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if json_escaped(c) {
                writer.write_all(fragment.get(start..i).unwrap_or_default().as_bytes())?;
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(fragment.get(start..).unwrap_or_default().as_bytes())
    }
}

/// One JSON value on one line, safe to print on a terminal.
pub(crate) fn json_line(value: &impl Serialize) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, TerminalSafe);
    match value.serialize(&mut ser) {
        // The formatter writes only valid UTF-8 (whole fragments and ASCII escapes).
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        Err(e) => json!({ "error": format!("cannot encode the reply: {e}") }).to_string(),
    }
}

/// Reports a failure on stderr: `kith: MESSAGE` for people, or with `--json` one object
/// `{"error": MESSAGE}` (the control API's error kinds join it as further fields). Either
/// is one line, safe on a terminal (daemon errors can quote a peer's refusal reason).
pub(crate) fn failure(json: bool, message: &str, kind: Option<ErrorKind>) {
    if json {
        let value = match kind {
            Some(kind) => json!({ "error": message, "kind": kind.as_str() }),
            None => json!({ "error": message }),
        };
        eprintln!("{}", json_line(&value));
    } else {
        eprintln!("kith: {}", text::line(message));
    }
}

/// Whether to colour what goes to `stream`: only on a terminal, and never when
/// `NO_COLOR` is set to anything but the empty string (<https://no-color.org>).
pub(crate) fn colour_for(stream: &impl std::io::IsTerminal) -> bool {
    wants_colour(stream.is_terminal(), std::env::var_os("NO_COLOR"))
}

fn wants_colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// `text` in yellow when stdout (`stderr`: stderr) takes colour; as is otherwise (and in
/// unit tests, whatever runs them).
fn yellow(text: &str, stderr: bool) -> String {
    static STDOUT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    static STDERR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let colour = if stderr {
        *STDERR.get_or_init(|| colour_for(&std::io::stderr()))
    } else {
        *STDOUT.get_or_init(|| colour_for(&std::io::stdout()))
    };
    if colour && !cfg!(test) {
        format!("\x1b[33m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// A warning on stderr that leaves stdout alone: `kith: warning: MESSAGE`, or with
/// `--json` one object `{"warning": MESSAGE}`.
pub(crate) fn warning(json: bool, message: &str) {
    if json {
        eprintln!("{}", json_line(&json!({ "warning": message })));
    } else {
        eprintln!("kith: {}: {}", yellow("warning", true), text::line(message));
    }
}

/// Prints one JSON value on one line.
fn line(value: &serde_json::Value) {
    out!("{}", json_line(value));
}

/// Multi-line network text for people, each line after the first indented by `pad`.
fn indented(body: &str, pad: &str) -> String {
    text::body(body).replace('\n', &format!("\n{pad}"))
}

/// A name as a person sees it: invisible characters shown (see [`text::name`]), and
/// quoted when it holds what could pass for the id tail printed after it.
fn shown_name(name: &str) -> Option<String> {
    let n = text::name(name).trim().to_owned();
    match n.as_str() {
        "" => None,
        _ if n.contains(['(', ')', '…', '[', ']', '"', '“', '”']) => Some(format!("“{n}”")),
        _ => Some(n),
    }
}

/// What follows a name that looks like another known person's (or like a petname you
/// gave someone else).
const LOOKALIKE: &str = "[look-alike name]";

/// Your petname for a person, else their profile name (marked when it looks like
/// another's); `None` when neither is known.
fn label(name: Option<&str>, naming: &Naming) -> Option<String> {
    if let Some(p) = naming.petname.as_deref().and_then(shown_name) {
        return Some(p);
    }
    let n = name.and_then(shown_name)?;
    Some(if naming.lookalike { format!("{n} {}", yellow(LOOKALIKE, false)) } else { n })
}

/// A person for people: [`label`], then always the tail of their id
/// (`bob (…4unnRJCp)`, `Alice [look-alike name] (…9xQ2mZ7a)`).
fn who(id: &str, name: Option<&str>, naming: &Naming) -> String {
    let short = id.get(id.len().saturating_sub(8)..).unwrap_or(id);
    match label(name, naming) {
        Some(l) => format!("{l} (…{short})"),
        None => format!("…{short}"),
    }
}

/// Network text with each mention `@<id>` shown as `@Name` (your petname, else their
/// name; with the id tail when the name looks like another's or cannot be shown as it
/// was sent: invisible characters, quoted; `@…tail` when no name is known).
fn mentioned(body: &str, mentions: &[Mention]) -> String {
    let mut out = text::body(body).into_owned();
    for m in mentions {
        let short = m.id.get(m.id.len().saturating_sub(8)..).unwrap_or(&m.id);
        let altered = m.name.as_deref().is_some_and(|n| shown_name(n).as_deref() != Some(n));
        let own = m.naming.petname.is_some();
        let shown = match label(m.name.as_deref(), &m.naming) {
            Some(l) if !own && (m.naming.lookalike || altered) => format!("{l} (…{short})"),
            Some(l) => l,
            None => format!("…{short}"),
        };
        let at = format!("@{}", m.id);
        let mut rebuilt = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(&at) {
            let after = rest.get(i + at.len()..).unwrap_or_default();
            rebuilt.push_str(rest.get(..i).unwrap_or_default());
            // A longer word is not this mention (ids end where the word ends).
            if after.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                rebuilt.push_str(&at);
            } else {
                rebuilt.push('@');
                rebuilt.push_str(&shown);
            }
            rest = after;
        }
        rebuilt.push_str(rest);
        out = rebuilt;
    }
    out
}

/// Attachments as JSON: the contract's hash, name, mime and size, then what else is known.
fn attachments_json(list: &[AttachmentEntry]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = list
        .iter()
        .map(|a| {
            let mut v = json!({"hash": a.hash, "name": a.name, "mime": a.mime, "size": a.size, "local": a.local});
            if let Some(map) = v.as_object_mut() {
                if let Some((w, h)) = a.dimensions {
                    map.insert("width".into(), json!(w));
                    map.insert("height".into(), json!(h));
                }
                if let Some(t) = &a.thumbnail {
                    map.insert("thumbnail".into(), json!(t));
                }
            }
            v
        })
        .collect();
    json!(items)
}

/// Attachments for people, one line each after `pad`: name, type, size, dimensions, and
/// the hash to fetch it with.
fn attachments_text(list: &[AttachmentEntry], pad: &str) -> String {
    list.iter()
        .map(|a| {
            let dims = a.dimensions.map(|(w, h)| format!(", {w}x{h}")).unwrap_or_default();
            let here = if a.local { "" } else { ", not fetched" };
            format!(
                "\n{pad}attached: {} ({}, {}{dims}{here})  {}",
                text::name(&a.name),
                text::line(&a.mime),
                human_size(a.size),
                a.hash
            )
        })
        .collect()
}

/// `512 B`, `12.5 KiB`, `3.2 MiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match UNITS.get(unit) {
        Some(u) if unit > 0 => format!("{value:.1} {u}"),
        _ => format!("{bytes} B"),
    }
}

fn reactions_text(r: &std::collections::BTreeMap<String, u64>) -> String {
    if r.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = r.iter().map(|(e, n)| format!("{} {n}", text::line(e))).collect();
    format!("\n    {}", parts.join("  "))
}

pub(crate) fn feed_item(item: &FeedItem, json: bool) {
    if json {
        let mut v = json!({
            "id": item.id, "author": item.author, "seq": item.seq, "timestamp": item.timestamp,
            "text": item.text, "tags": item.tags, "reply_to": item.reply_to,
        });
        if let Some(map) = v.as_object_mut() {
            if let Some(by) = &item.reposted_by {
                map.insert("reposted_by".into(), json!(by));
            }
            if !item.reactions.is_empty() {
                map.insert("reactions".into(), json!(item.reactions));
            }
            map.insert("attachments".into(), attachments_json(&item.attachments));
        }
        line(&v);
    } else {
        if let Some(by) = &item.reposted_by {
            let (name, naming) = match &item.reposter {
                Some(r) => (r.name.as_deref(), r.naming.clone()),
                None => (None, Naming::default()),
            };
            out!("↻ reposted by {}", who(by, name, &naming));
        }
        let reply = if item.reply_to.is_some() { " ↩" } else { "" };
        out!(
            "{}  {}{reply}\n    {}{}{}\n    id {}",
            time::ago(item.timestamp),
            who(&item.author, item.author_name.as_deref(), &item.naming),
            indented(&mentioned(&item.text, &item.mentions), "    "),
            attachments_text(&item.attachments, "    "),
            reactions_text(&item.reactions),
            item.id
        );
    }
}

fn status(s: &Status, json: bool) {
    if json {
        match serde_json::to_value(s) {
            Ok(v) => line(&v),
            Err(e) => eprintln!("kith: {e}"),
        }
        return;
    }
    out!("id         {}", s.id);
    out!(
        "peers      {} ({} in gossip meshes, {} penalised, {} graylisted)",
        s.peers,
        s.mesh_peers,
        s.peers_penalised,
        s.peers_graylisted
    );
    out!("records    {} ({} posts)", s.records, s.posts);
    out!("messages   {} ({} waiting in the outbox)", s.messages, s.outbox);
    out!("notices    {} unread", s.unread_notifications);
    let b = &s.blobs;
    out!(
        "files      {} ({} of {} quota), {} downloads unfinished",
        b.blobs,
        human_size(b.bytes),
        human_size(b.quota),
        b.partial
    );
    out!("following  {}   followers {}", s.following, s.followers);
    out!("uptime     {} s", s.uptime_s);
    let n = &s.nat;
    let public =
        n.public_addr.as_deref().map(|a| format!(" at {}", text::line(a))).unwrap_or_default();
    out!("reachable  {}{public}", n.reachability);
    if n.relay_reservations.is_empty() {
        out!("relayed    no relay reservations");
    } else {
        for r in &n.relay_reservations {
            out!("relayed    via {}", text::line(r));
        }
    }
    out!(
        "relaying   {} ({} peers hold a reservation, {} refused); hole punches {} ok, {} failed",
        n.relay,
        n.relaying_for,
        n.relay_refused,
        n.holepunch_ok,
        n.holepunch_failed
    );
    let y = &s.sync;
    out!(
        "sync       {} peers syncing, {} records fetched, {} rejected, {} rounds",
        y.peers_syncing,
        y.records_fetched,
        y.records_rejected,
        y.rounds
    );
    let c = &s.record_counters;
    out!(
        "gossip     received {} accepted {} duplicate {} rejected {} ignored {} forks {}",
        c.received,
        c.accepted,
        c.duplicate,
        c.rejected,
        c.ignored,
        c.forks
    );
    out!("topics:");
    for t in &s.topics {
        out!("  {}", text::line(t));
    }
    out!("listening on:");
    for a in &s.addrs {
        out!("  {}", text::line(a));
    }
}

fn peers(list: &[PeerEntry], json: bool) {
    if !json && list.is_empty() {
        out!("no peers connected");
    }
    for p in list {
        if json {
            line(&json!({"id": p.id, "addr": p.addr, "connection": p.connection}));
        } else {
            let name = label(p.name.as_deref(), &p.naming).map(|l| format!("  {l}"));
            out!("{}  {}  {}{}", p.id, p.connection, text::line(&p.addr), name.unwrap_or_default());
        }
    }
}

fn follows(list: &[FollowEntry], json: bool) {
    if !json && list.is_empty() {
        out!("nobody yet");
    }
    for f in list {
        if json {
            line(&json!({"id": f.id, "mutual": f.mutual}));
        } else {
            let name =
                label(f.name.as_deref(), &f.naming).map(|l| format!("  {l}")).unwrap_or_default();
            let mutual = if f.mutual { "  (mutual)" } else { "" };
            out!("{}{name}{mutual}", f.id);
        }
    }
}

fn profile(p: &Profile, json: bool) {
    if json {
        line(&json!({"id": p.id, "name": p.name, "bio": p.bio, "forked": p.forked}));
        return;
    }
    out!("id    {}", p.id);
    let plain = Naming { petname: None, ..p.naming.clone() };
    match p.name.as_deref() {
        Some(name) => match label(Some(name), &plain) {
            Some(l) => out!("name  {l}"),
            None => out!("name  (empty: {})", text::name(name)),
        },
        None => out!("name  (no profile known)"),
    }
    if p.naming.lookalike {
        out!("      another person you know has a name that looks like this one: tell them apart by id");
    }
    if let Some(petname) = p.naming.petname.as_deref() {
        out!("you call them  {}", text::name(petname));
    }
    if let Some(bio) = p.bio.as_deref().filter(|b| !b.is_empty()) {
        out!("bio   {}", indented(bio, "      "));
    }
    if p.forked {
        out!("WARNING: this author published two different records with one sequence number");
    }
}

fn inbox(list: &[InboxEntry], json: bool) {
    if !json && list.is_empty() {
        out!("no conversations yet");
    }
    for c in list {
        if json {
            line(&json!({
                "peer": c.peer, "last_text": c.last_text, "timestamp": c.timestamp,
                "unread": c.unread,
            }));
        } else {
            let unread =
                if c.unread > 0 { format!("  [{} unread]", c.unread) } else { String::new() };
            out!(
                "{}  {}{unread}\n    {}",
                time::ago(c.timestamp),
                who(&c.peer, c.name.as_deref(), &c.naming),
                indented(&c.last_text, "    ")
            );
        }
    }
}

fn thread(list: &[MessageEntry], json: bool) {
    if !json && list.is_empty() {
        out!("no messages yet");
    }
    for m in list {
        if json {
            line(&json!({
                "id": m.id, "from": m.from, "to": m.to, "text": m.text,
                "timestamp": m.timestamp, "status": m.status,
                "attachments": attachments_json(&m.attachments),
            }));
        } else {
            let reason =
                m.reason.as_deref().map(|r| format!(": {}", text::line(r))).unwrap_or_default();
            out!(
                "{}  {} [{}{reason}]\n    {}{}",
                time::ago(m.timestamp),
                who(&m.from, m.from_name.as_deref(), &m.naming),
                m.status,
                indented(&m.text, "    "),
                attachments_text(&m.attachments, "    ")
            );
        }
    }
}

fn conversation(list: &[ThreadEntry], hidden: u64, json: bool) {
    match hidden {
        _ if json => {}
        0 => {}
        1 => out!("(1 reply from a muted person hidden)"),
        n => out!("({n} replies from muted people hidden)"),
    }
    for e in list {
        if json {
            line(&json!({
                "id": e.id, "author": e.author, "text": e.text, "parent": e.parent,
                "timestamp": e.timestamp, "attachments": attachments_json(&e.attachments),
            }));
        } else {
            let pad = "  ".repeat(e.depth.min(20));
            out!(
                "{pad}{}  {}\n{pad}  {}{}{}\n{pad}  id {}",
                time::ago(e.timestamp),
                who(&e.author, e.author_name.as_deref(), &e.naming),
                indented(&mentioned(&e.text, &e.mentions), &format!("{pad}  ")),
                attachments_text(&e.attachments, &format!("{pad}  ")),
                reactions_text(&e.reactions).replace("\n    ", &format!("\n{pad}  ")),
                e.id
            );
        }
    }
}

fn names(list: &[NameEntry], json: bool) {
    if !json && list.is_empty() {
        out!("no petnames yet (kith name ID PETNAME gives one)");
    }
    for e in list {
        if json {
            line(&json!({"id": e.id, "petname": e.petname, "name": e.name}));
        } else {
            let plain = Naming { petname: None, ..e.naming.clone() };
            let name = label(e.name.as_deref(), &plain)
                .map(|l| format!("  (calls themselves {l})"))
                .unwrap_or_default();
            out!("{}  {}{name}", e.petname, e.id);
        }
    }
}

fn notifications(list: &[NotificationEntry], json: bool) {
    if !json && list.is_empty() {
        out!("no notifications");
    }
    for n in list {
        if json {
            line(&json!({
                "kind": n.kind, "from": n.from, "name": n.name, "record": n.record,
                "target": n.target, "text": n.text, "emoji": n.emoji,
                "timestamp": n.timestamp, "read": n.read,
            }));
        } else {
            notification_text(n);
        }
    }
}

/// One notification for people: who did what, the snippet it is about, and the ids to
/// act on (reply to the reply, open the post reacted to).
fn notification_text(n: &NotificationEntry) {
    let new = if n.read { "" } else { "• " };
    let emoji = n.emoji.as_deref().map(text::line).unwrap_or_default();
    let what = match n.kind.as_str() {
        "reply" => "replied to your post".to_owned(),
        "mention" => "mentioned you".to_owned(),
        "reaction" => format!("reacted {emoji} to your post"),
        "repost" => "reposted your post".to_owned(),
        "follow" => "follows you".to_owned(),
        "mutual" => "is now a mutual connection".to_owned(),
        "message" => "sent you a message".to_owned(),
        other => text::line(other).into_owned(),
    };
    out!("{new}{}  {} {what}", time::ago(n.timestamp), who(&n.from, n.name.as_deref(), &n.naming));
    if let Some(t) = &n.text {
        out!("    “{}”", text::line(&mentioned(t, &n.mentions)));
    }
    // Twelve hex digits: a record id prefix every command takes, unique in practice.
    let short = |id: &str| id.get(..12).unwrap_or(id).to_owned();
    let ids = match (n.kind.as_str(), &n.target) {
        ("follow" | "mutual", _) => None,
        ("message", _) => Some(format!("message {}", n.record)),
        (_, Some(target)) => {
            Some(format!("id {}  on your post {}", short(&n.record), short(target)))
        }
        (_, None) => Some(format!("id {}", short(&n.record))),
    };
    if let Some(ids) = ids {
        out!("    {ids}");
    }
}

/// An invite: the link, a QR code of it when stdout is a terminal, and its expiry.
fn invite(link: &str, expires: u64, addrs: &[String], json: bool) {
    if json {
        line(&json!({"link": link, "expires": expires}));
        return;
    }
    out!("Send this link to a friend; they add you with: kith add LINK\n");
    out!("{link}\n");
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        if let Some(qr) = qr_code(link) {
            out!("{qr}\n");
        }
    }
    let reach = match addrs.len() {
        0 => "no address yet: they will look you up in the DHT".to_owned(),
        1 => "1 address".to_owned(),
        n => format!("{n} addresses"),
    };
    out!("expires {} ({reach})", time::local(expires));
}

/// A QR code of `text` in block characters (two rows of modules per line), light modules
/// drawn, as on a dark terminal.
fn qr_code(text: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::L).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// Someone added from an invite.
fn added(id: &str, name: &str, connected: bool, petname: Option<&str>, json: bool) {
    if json {
        line(&json!({"id": id, "name": name, "connected": connected}));
        return;
    }
    let name = (!name.is_empty()).then_some(name);
    let naming = Naming { petname: petname.map(str::to_owned), lookalike: false };
    let shown = who(id, name, &naming);
    let named = petname.map(|p| format!(" as {}", text::name(p))).unwrap_or_default();
    out!("added {shown}{named}: you follow them now");
    if connected {
        out!("connected");
    } else {
        out!("not connected yet: their node did not answer; kith connects when it can");
    }
}

/// Prints a successful response; `what` says what was done, for people.
pub(crate) fn response(response: &Response, json: bool, what: &str) {
    match response {
        Response::Id { id, addrs } => {
            if json {
                line(&json!({"id": id, "addrs": addrs}));
            } else {
                out!("{id}");
                for a in addrs {
                    out!("  {a}");
                }
            }
        }
        Response::Status(s) => status(s, json),
        Response::Peers { peers: list } => peers(list, json),
        Response::Ok => {
            if json {
                line(&json!({"ok": true}));
            } else {
                out!("{what}");
            }
        }
        Response::Record { id } => {
            if json {
                line(&json!({"id": id}));
            } else {
                out!("{what}: {id}");
            }
        }
        Response::Feed { items, hidden } => {
            if !json && items.is_empty() && *hidden == 0 {
                out!("no posts yet");
            }
            for item in items {
                feed_item(item, json);
            }
            match hidden {
                _ if json => {}
                0 => {}
                1 => out!("(1 post by a muted person hidden; kith unmute shows it again)"),
                n => out!("({n} posts by muted people hidden; kith unmute shows them again)"),
            }
        }
        Response::FeedItem(item) => feed_item(item, json),
        Response::Follows { entries } => follows(entries, json),
        Response::Tags { tags } => {
            if !json && tags.is_empty() {
                out!("no subscribed hashtags");
            }
            for t in tags {
                if json {
                    line(&json!({"tag": t}));
                } else {
                    out!("#{}", text::line(t));
                }
            }
        }
        Response::Profile(p) => profile(p, json),
        Response::MsgSent { id, status } => {
            if json {
                line(&json!({"id": id, "status": status}));
            } else {
                out!("{what} {status}: {id}");
            }
        }
        Response::Inbox { conversations } => inbox(conversations, json),
        Response::Conversation { entries, hidden } => conversation(entries, *hidden, json),
        Response::Moderation { entries } => {
            if !json && entries.is_empty() {
                out!("nobody is blocked or muted");
            }
            for e in entries {
                if json {
                    line(&json!({"id": e.id, "blocked": e.blocked, "muted": e.muted}));
                } else {
                    let what = match (e.blocked, e.muted) {
                        (true, true) => "blocked, muted",
                        (true, false) => "blocked",
                        _ => "muted",
                    };
                    out!("{}  {what}", e.id);
                }
            }
        }
        Response::Notifications { entries } => notifications(entries, json),
        Response::Names { entries } => names(entries, json),
        Response::Invite { link, expires, addrs } => invite(link, *expires, addrs, json),
        Response::Added { id, name, connected, petname } => {
            added(id, name, *connected, petname.as_deref(), json);
        }
        Response::Synced { fetched, peers } => {
            if json {
                line(&json!({"fetched": fetched, "peers": peers}));
            } else {
                out!("synced with {peers} peers: {fetched} new records");
            }
        }
        Response::SyncProgress { .. } | Response::BlobProgress { .. } => {}
        Response::Blob { hash, size, path } => {
            if json {
                line(&json!({"hash": hash, "size": size, "path": path}));
            } else {
                out!("{path}  ({}, {hash})", human_size(*size));
            }
        }
        Response::Thread { messages } => thread(messages, json),
        Response::WebUrl { url } => {
            if json {
                line(&json!({"url": url}));
            } else {
                out!("{url}");
            }
        }
        // Errors are handled by the caller.
        // No command asks for the settings yet (the web interface shows them); as JSON.
        Response::Settings(s) => line(&serde_json::to_value(s).unwrap_or_default()),
        Response::Error { message, .. } => eprintln!("kith: {}", text::line(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::{indented, json_line, mentioned, who};
    use kith_node::api::Naming;
    use serde_json::json;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use super::wants_colour;
        assert!(wants_colour(true, None));
        assert!(wants_colour(true, Some("".into())));
        assert!(!wants_colour(true, Some("1".into())));
        assert!(!wants_colour(false, None));
    }

    #[test]
    fn mentions_show_names() {
        use kith_node::api::Mention;
        let bob = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
        let eve = "12D3KooWJ1vQ8mGXYJ5xDWKGs9TxtvEvCjm4fGfmTrN7gDVw1Wbf";
        let mentions = [
            Mention { id: bob.into(), name: Some("Bob".into()), naming: Naming::default() },
            Mention {
                id: eve.into(),
                name: Some("B\u{1b}[1mob".into()),
                naming: Naming { petname: None, lookalike: true },
            },
        ];
        let text = format!("hi @{bob}, @{eve}! @{bob}x \u{1b}[2J");
        assert_eq!(
            mentioned(&text, &mentions),
            format!("hi @Bob, @Bob [look-alike name] (…gDVw1Wbf)! @{bob}x ")
        );
        assert_eq!(mentioned(&format!("@{bob}"), &mentions[..0]), format!("@{bob}"));
        // A name that cannot be shown as sent brings the id tail along.
        let fake = [Mention {
            id: eve.into(),
            name: Some("Al\u{200B}ice (…kSCVe2Xo)".into()),
            naming: Naming::default(),
        }];
        assert_eq!(
            mentioned(&format!("hi @{eve}"), &fake),
            "hi @“Al<U+200B>ice (…kSCVe2Xo)” (…gDVw1Wbf)"
        );
    }

    #[test]
    fn names_show_what_they_hide_and_cannot_fake_a_tail() {
        let id = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
        let plain = Naming::default();
        assert_eq!(who(id, Some("Alice"), &plain), "Alice (…kSCVe2Xo)");
        assert_eq!(who(id, Some("Al\u{200B}ice"), &plain), "Al<U+200B>ice (…kSCVe2Xo)");
        // A name carrying someone else's tail is quoted.
        assert_eq!(who(id, Some("Bob (…abcdefgh)"), &plain), "“Bob (…abcdefgh)” (…kSCVe2Xo)");
        let lookalike = Naming { petname: None, lookalike: true };
        assert_eq!(who(id, Some("Alice"), &lookalike), "Alice [look-alike name] (…kSCVe2Xo)");
        let petname = Naming { petname: Some("al".into()), lookalike: true };
        assert_eq!(who(id, Some("Alice"), &petname), "al (…kSCVe2Xo)");
        assert_eq!(who(id, Some(" \u{1b}[2J "), &plain), "…kSCVe2Xo");
        assert_eq!(who(id, None, &plain), "…kSCVe2Xo");
    }

    #[test]
    fn json_escapes_what_terminals_act_on() {
        let text = "a\x1b[2J\u{9b}31m\u{9d}0;t\u{9c}\u{7f}\u{2028}\u{202e}é👍";
        let out = json_line(&json!({ "text": text }));
        assert_eq!(out, r#"{"text":"a\u001b[2J\u009b31m\u009d0;t\u009c\u007f\u2028\u202eé👍"}"#);
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["text"], text);
    }

    #[test]
    fn bodies_are_cleaned_and_indented() {
        assert_eq!(indented("a\x1b[1A\rb\nc", "  "), "a\n  b\n  c");
    }
}
