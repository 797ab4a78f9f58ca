//! The digest of a world: BLAKE3 over every node's state as its store's typed API shows
//! it, in node order. Not over the stores' bytes: sealing a direct message and making
//! an Olm device draw from the OS's random source (keys never come from the
//! simulation's generator), so those bytes differ between two runs of one seed, and a
//! device announcement's id enters its author's hash chain. Records are named by
//! (author's node, seq) instead of their ids, a device announcement by its place only,
//! a queued message by its id only: the same seed gives the same digest, and any
//! difference in what a node holds, says or was told changes it.

use std::collections::BTreeMap;

use kith_node::store::Store;
use kith_protocol::{RecordId, RecordKind};

use super::World;

/// Hashes lengths with their bytes, so no two states hash alike by concatenation.
struct Hasher(blake3::Hasher);

impl Hasher {
    fn bytes(&mut self, b: &[u8]) {
        self.0.update(&(b.len() as u64).to_le_bytes()).update(b);
    }

    fn num(&mut self, n: u64) {
        self.0.update(&n.to_le_bytes());
    }

    fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

/// Each record id held by its author's node, as (author's node, seq).
type Names = BTreeMap<RecordId, (u64, u64)>;

fn names(world: &World) -> Names {
    let mut out = Names::new();
    for (a, node) in world.nodes.iter().enumerate() {
        let Some(store) = node.store() else { continue };
        for rec in store.author_log(&node.me, 0, usize::MAX).unwrap_or_default() {
            out.insert(rec.id, (a as u64, rec.record.seq));
        }
    }
    out
}

/// A record id by its name (or as unknown: a record its author no longer holds).
fn name(h: &mut Hasher, names: &Names, id: Option<&RecordId>) {
    match id.map(|id| names.get(id)) {
        None => h.text("none"),
        Some(None) => h.text("gone"),
        Some(Some((author, seq))) => {
            h.num(*author);
            h.num(*seq);
        }
    }
}

fn kind(h: &mut Hasher, names: &Names, kind: &RecordKind) {
    match kind {
        RecordKind::Post(post) => {
            h.text("post");
            h.text(&post.text);
            name(h, names, post.reply_to.as_ref());
            h.text(&format!("{:?} {:?} {:?}", post.mentions, post.expires_at, post.attachments));
        }
        RecordKind::Reaction { target, emoji } => {
            h.text("reaction");
            name(h, names, Some(target));
            h.text(emoji);
        }
        RecordKind::Repost { target } => {
            h.text("repost");
            name(h, names, Some(target));
        }
        RecordKind::Delete { target } => {
            h.text("delete");
            name(h, names, Some(target));
        }
        RecordKind::Devices(_) => h.text("devices"),
        // Its session (and so its ciphertext) is drawn from the OS's random source.
        RecordKind::Private(_) => h.text("private"),
        other @ (RecordKind::Profile { .. }
        | RecordKind::Follow { .. }
        | RecordKind::Unfollow { .. }
        | RecordKind::Mailboxes { .. }) => h.text(&format!("{other:?}")),
    }
}

fn node_state(h: &mut Hasher, world: &World, names: &Names, store: &Store) {
    for (a, author) in world.nodes.iter().enumerate() {
        let log = store.author_log(&author.me, 0, usize::MAX).unwrap_or_default();
        if log.is_empty() {
            continue;
        }
        h.num(a as u64);
        h.num(log.len() as u64);
        for rec in log {
            h.num(rec.record.seq);
            h.num(rec.record.timestamp);
            kind(h, names, &rec.record.kind);
        }
    }
    for tag in store.subscriptions().unwrap_or_default() {
        h.text(&tag.to_string());
    }
    for conversation in store.dm_conversations().unwrap_or_default() {
        h.bytes(conversation.peer.as_bytes());
        for m in store.dm_thread(&conversation.peer, usize::MAX).unwrap_or_default() {
            h.text(&format!(
                "{} {} {} {:?} {} {:?} {:?} {:?} {}",
                m.id, m.from, m.to, m.text, m.timestamp, m.sent_at, m.status, m.reason, m.read
            ));
        }
    }
    for entry in store.dm_outbox().unwrap_or_default() {
        h.bytes(&entry.id);
        h.bytes(&entry.peer);
    }
    // Groups in the order they were made (their ids are random), each message read as
    // (timestamp, sender, text) in that order (ties between random ids sorted away).
    for (group, _) in &world.groups.groups {
        let mut lines: Vec<(u64, [u8; 32], String)> = store
            .group_thread(group, usize::MAX)
            .unwrap_or_default()
            .into_iter()
            .map(|l| (l.timestamp, l.from, l.text))
            .collect();
        if lines.is_empty() {
            continue;
        }
        lines.sort();
        h.text("group");
        for (timestamp, from, text) in lines {
            h.num(timestamp);
            h.bytes(&from);
            h.text(&text);
        }
    }
    for n in store.notifications(usize::MAX, false, false).unwrap_or_default() {
        h.text(&n.kind);
        h.text(&n.from);
        match n.record.parse::<RecordId>() {
            Ok(id) if n.kind != "message" => name(h, names, Some(&id)),
            // A group message's id is drawn from the OS's random source.
            _ if n.kind == "group" => h.text("group"),
            _ => h.text(&n.record),
        }
        h.text(&format!("{} {} {}", n.timestamp, n.read, n.stranger));
    }
}

/// The digest of `world` (see the module's documentation), hex.
pub(super) fn of(world: &World) -> String {
    let names = names(world);
    let mut h = Hasher(blake3::Hasher::new());
    for (i, node) in world.nodes.iter().enumerate() {
        h.num(i as u64);
        match node.store() {
            Some(store) => node_state(&mut h, world, &names, store),
            None => h.text("down"),
        }
    }
    h.0.finalize().to_hex().to_string()
}
