//! Printing responses: JSON per the CLI contract with `--json`, text for people without.

//!
//! Text from the network never reaches the terminal raw: human output passes it through
//! [`kith_node::text`] (escape sequences and controls removed, names with invisible
//! characters shown), and JSON output escapes, besides what JSON must, the C1 controls,
//! DEL, line separators and bidi controls as `\uXXXX` (same value, nothing a terminal
//! acts on).

use kith_node::{
    api::{
        AttachmentEntry, ErrorKind, FeedItem, FollowEntry, InboxEntry, MailboxStatus, Mention,
        MessageEntry, NameEntry, Naming, NotificationEntry, PeerEntry, Profile, Response, Status,
        ThreadEntry,
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

mod people;
mod records;

use people::*;
use records::*;
pub(crate) use records::{feed_item, human_size};

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
        Response::Mailbox(status) => mailbox(status, json),
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
        Response::Groups { groups } => records::groups(groups, json),
        Response::Circles { circles } => records::circles(circles, json),
        Response::GroupThread { messages } => records::group_thread(messages, json),
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
mod tests;
