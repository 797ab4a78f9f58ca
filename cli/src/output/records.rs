//! How records and messages are shown: feed items with their attachments and reactions,
//! conversations, direct messages, notifications and the node's status.

use super::*;
pub(crate) use kith_node::node::human_size;

/// Attachments as JSON: the contract's hash, name, mime and size, then what else is known.
pub(super) fn attachments_json(list: &[AttachmentEntry]) -> serde_json::Value {
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
pub(super) fn attachments_text(list: &[AttachmentEntry], pad: &str) -> String {
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

/// Reaction counts, and which one is the person's own.
pub(super) fn reactions_text(
    r: &std::collections::BTreeMap<String, u64>,
    mine: Option<&str>,
) -> String {
    if r.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = r.iter().map(|(e, n)| format!("{} {n}", text::line(e))).collect();
    let yours = mine.map(|e| format!("  (yours: {})", text::line(e))).unwrap_or_default();
    format!("\n    {}{yours}", parts.join("  "))
}

/// The reaction fields of a feed or thread line in JSON, when there are any.
fn reactions_json(
    map: &mut serde_json::Map<String, serde_json::Value>,
    reactions: &std::collections::BTreeMap<String, u64>,
    mine: Option<&String>,
) {
    if !reactions.is_empty() {
        map.insert("reactions".into(), json!(reactions));
    }
    if let Some(mine) = mine {
        map.insert("my_reaction".into(), json!(mine));
    }
}

pub(crate) fn feed_item(item: &FeedItem, json: bool) {
    if json {
        let mut v = json!({
            "id": item.id, "author": item.author, "seq": item.seq, "timestamp": item.timestamp,
            "text": item.text, "tags": item.tags, "reply_to": item.reply_to,
            "private": item.private,
        });
        if let Some(map) = v.as_object_mut() {
            if let Some(by) = &item.reposted_by {
                map.insert("reposted_by".into(), json!(by));
            }
            reactions_json(map, &item.reactions, item.my_reaction.as_ref());
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
        let reply = match (item.reply_to.is_some(), item.private) {
            (true, _) => " ↩",
            (false, true) => " 🔒 circle",
            (false, false) => "",
        };
        out!(
            "{}  {}{reply}\n    {}{}{}\n    id {}",
            time::ago(item.timestamp),
            who(&item.author, item.author_name.as_deref(), &item.naming),
            indented(&mentioned(&item.text, &item.mentions), "    "),
            attachments_text(&item.attachments, "    "),
            reactions_text(&item.reactions, item.my_reaction.as_deref()),
            item.id
        );
    }
}

pub(super) fn status(s: &Status, json: bool) {
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
    out!("groups     {} ({} requests waiting for members)", s.groups, s.group_outbox);
    out!("circles    {}", s.circles);
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
    out!(
        "limits     {} connections refused, {} evicted; {} requests refused, {} rate-limited",
        s.connections_refused,
        s.connections_evicted,
        s.requests_refused,
        c.rate_limited
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

pub(super) fn inbox(list: &[InboxEntry], json: bool) {
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

pub(super) fn thread(list: &[MessageEntry], json: bool) {
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

pub(super) fn conversation(list: &[ThreadEntry], hidden: u64, json: bool) {
    match hidden {
        _ if json => {}
        0 => {}
        1 => out!("(1 reply from a muted person hidden)"),
        n => out!("({n} replies from muted people hidden)"),
    }
    for e in list {
        if json {
            let mut v = json!({
                "id": e.id, "author": e.author, "text": e.text, "parent": e.parent,
                "timestamp": e.timestamp, "attachments": attachments_json(&e.attachments),
            });
            if let Some(map) = v.as_object_mut() {
                reactions_json(map, &e.reactions, e.my_reaction.as_ref());
            }
            line(&v);
        } else {
            let pad = "  ".repeat(e.depth.min(20));
            out!(
                "{pad}{}  {}\n{pad}  {}{}{}\n{pad}  id {}",
                time::ago(e.timestamp),
                who(&e.author, e.author_name.as_deref(), &e.naming),
                indented(&mentioned(&e.text, &e.mentions), &format!("{pad}  ")),
                attachments_text(&e.attachments, &format!("{pad}  ")),
                reactions_text(&e.reactions, e.my_reaction.as_deref())
                    .replace("\n    ", &format!("\n{pad}  ")),
                e.id
            );
        }
    }
}

pub(super) fn notifications(list: &[NotificationEntry], json: bool) {
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
pub(super) fn notification_text(n: &NotificationEntry) {
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
        "group" => "wrote in a group you are in (kith groups)".to_owned(),
        other => text::line(other).into_owned(),
    };
    out!("{new}{}  {} {what}", time::ago(n.timestamp), who(&n.from, n.name.as_deref(), &n.naming));
    if let Some(t) = &n.text {
        out!("    “{}”", text::line(&mentioned(t, &n.mentions)));
    }
    // Twelve hex digits: a record id prefix every command takes, unique in practice.
    let short = |id: &str| id.get(..12).unwrap_or(id).to_owned();
    let ids = match (n.kind.as_str(), &n.target) {
        ("follow" | "mutual" | "group", _) => None,
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

/// `kith groups`.
pub(super) fn groups(list: &[kith_node::api::GroupEntry], json: bool) {
    if !json && list.is_empty() {
        out!("you are in no group (kith group create NAME --member ID makes one)");
    }
    for g in list {
        if json {
            line(&json!({"id": g.id, "name": g.name, "members": g.members, "unread": g.unread}));
        } else {
            let unread =
                if g.unread > 0 { format!(", {} unread", g.unread) } else { String::new() };
            out!("{}  {}  ({} members{unread})", text::line(&g.name), g.id, g.members.len());
        }
    }
}

/// `kith circles`.
pub(super) fn circles(list: &[kith_node::api::CircleEntry], json: bool) {
    if !json && list.is_empty() {
        out!("you have no circle (kith circle create NAME --member ID makes one)");
    }
    for c in list {
        if json {
            line(&json!({"name": c.name, "members": c.members}));
        } else {
            out!("{}  ({} members)", text::line(&c.name), c.members.len());
        }
    }
}

/// `kith group thread`.
pub(super) fn group_thread(list: &[kith_node::api::GroupMessageEntry], json: bool) {
    if !json && list.is_empty() {
        out!("no messages yet");
    }
    for m in list {
        if json {
            line(&json!({"id": m.id, "from": m.from, "text": m.text, "timestamp": m.timestamp}));
        } else {
            let from = who(&m.from, m.from_name.as_deref(), &m.naming);
            out!("{}  {from}\n    {}", time::ago(m.timestamp), indented(&m.text, "    "));
        }
    }
}
