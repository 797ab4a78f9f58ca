//! How people are shown: names with their id tails and look-alike marks, mentions as
//! `@Name`, and the replies about people (peers, follows, profiles, petnames, invites).

use super::*;

/// A name as a person sees it: invisible characters shown (see [`text::name`]), and
/// quoted when it holds what could pass for the id tail printed after it.
pub(super) fn shown_name(name: &str) -> Option<String> {
    let n = text::name(name).trim().to_owned();
    match n.as_str() {
        "" => None,
        _ if n.contains(['(', ')', '…', '[', ']', '"', '“', '”']) => Some(format!("“{n}”")),
        _ => Some(n),
    }
}

/// What follows a name that looks like another known person's (or like a petname you
/// gave someone else).
pub(super) const LOOKALIKE: &str = "[look-alike name]";

/// Your petname for a person, else their profile name (marked when it looks like
/// another's); `None` when neither is known.
pub(super) fn label(name: Option<&str>, naming: &Naming) -> Option<String> {
    if let Some(p) = naming.petname.as_deref().and_then(shown_name) {
        return Some(p);
    }
    let n = name.and_then(shown_name)?;
    Some(if naming.lookalike { format!("{n} {}", yellow(LOOKALIKE, false)) } else { n })
}

/// A person for people: [`label`], then always the tail of their id
/// (`bob (…4unnRJCp)`, `Alice [look-alike name] (…9xQ2mZ7a)`).
pub(super) fn who(id: &str, name: Option<&str>, naming: &Naming) -> String {
    let short = id.get(id.len().saturating_sub(8)..).unwrap_or(id);
    match label(name, naming) {
        Some(l) => format!("{l} (…{short})"),
        None => format!("…{short}"),
    }
}

/// Network text with each mention `@<id>` shown as `@Name` (your petname, else their
/// name; with the id tail when the name looks like another's or cannot be shown as it
/// was sent: invisible characters, quoted; `@…tail` when no name is known).
pub(super) fn mentioned(body: &str, mentions: &[Mention]) -> String {
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

pub(super) fn peers(list: &[PeerEntry], json: bool) {
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

pub(super) fn follows(list: &[FollowEntry], json: bool) {
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

pub(super) fn profile(p: &Profile, json: bool) {
    if json {
        line(&json!({
            "id": p.id, "name": p.name, "bio": p.bio, "forked": p.forked,
            "latest_seq": p.latest_seq, "log_records": p.log_records,
        }));
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

pub(super) fn names(list: &[NameEntry], json: bool) {
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

/// An invite: the link, a QR code of it when stdout is a terminal, and its expiry.
pub(super) fn invite(link: &str, expires: u64, addrs: &[String], json: bool) {
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
pub(super) fn qr_code(text: &str) -> Option<String> {
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
pub(super) fn added(id: &str, name: &str, connected: bool, petname: Option<&str>, json: bool) {
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

/// `kith mailbox`: who holds for the person, and whom this node holds for.
pub(super) fn mailbox(status: &MailboxStatus, json: bool) {
    if json {
        let holders: Vec<_> = status
            .holders
            .iter()
            .map(|h| json!({"id": h.id, "name": h.name, "online_s": h.online_s}))
            .collect();
        let holding: Vec<_> = status
            .holding
            .iter()
            .map(|h| json!({"id": h.id, "name": h.name, "messages": h.messages, "bytes": h.bytes}))
            .collect();
        line(&json!({
            "mode": status.mode,
            "holders": holders,
            "published": status.published,
            "holding": holding,
        }));
        return;
    }
    let how = if status.mode == "manual" {
        "chosen by you"
    } else {
        "chosen among your mutual connections, seen online the longest first"
    };
    if status.holders.is_empty() {
        out!("Nobody holds messages for you yet ({how}; kith mailbox add ID chooses one).");
    } else {
        out!("Your mailboxes ({how}):");
        for h in &status.holders {
            let online = match h.online_s {
                0 => String::new(),
                s => format!("  (seen online {})", human_duration(s)),
            };
            out!("  {}{online}", who(&h.id, h.name.as_deref(), &h.naming));
        }
        if !status.published {
            out!("  (not published yet: your mutual connections learn this list shortly)");
        }
    }
    if status.holding.is_empty() {
        out!("This node holds messages for nobody.");
    } else {
        out!("This node holds messages for:");
        for h in &status.holding {
            let what = format!("{} messages, {}", h.messages, human_size(h.bytes));
            out!("  {}  {what}", who(&h.id, h.name.as_deref(), &h.naming));
        }
    }
}

/// Seconds as a short human duration: 45 s, 12 min, 3 h, 5 days.
fn human_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}
