//! The direct message and notification invariants.

use std::collections::{BTreeMap, BTreeSet};

use kith_node::store::{DmRecord, DmStatus, Store};
use kith_protocol::AuthorId;

use crate::sim_core::world::{parse_id, World};

/// Every message stored by a node, with the peer of its conversation.
fn stored(store: &Store) -> Vec<(AuthorId, DmRecord)> {
    let mut out = Vec::new();
    for conversation in store.dm_conversations().unwrap_or_default() {
        let thread = store.dm_thread(&conversation.peer, usize::MAX).unwrap_or_default();
        out.extend(thread.into_iter().map(|r| (conversation.peer, r)));
    }
    out
}

/// Every message whose sender was told it was sent is stored once by its recipient
/// (received) and marked delivered by its sender (after the run, everyone was
/// reachable again, so nothing stays queued); no node stored one message twice while
/// it ran; each recipient holds each sender's messages in the order they were sent.
pub(super) fn delivered_once_in_order(world: &World) -> Vec<String> {
    let mut out = world.dms.stored_twice.clone();
    let truth = &world.dms.sent;
    for (id, sent) in truth {
        let Some(status) = sent.answered else { continue };
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let (from, to) = (&world.nodes[sent.from], &world.nodes[sent.to]);
        let (Some(theirs), Some(mine)) = (to.store(), from.store()) else { continue };
        if status == DmStatus::Refused {
            out.push(format!("node {} refused message {hex} of node {}", sent.to, sent.from));
            continue;
        }
        let held = theirs.dm_get(&from.me, id).ok().flatten();
        if held.as_ref().is_none_or(|r| r.status != DmStatus::Received) {
            out.push(format!("node {} never stored message {hex} of node {}", sent.to, sent.from));
        }
        let own = mine.dm_get(&from.me, id).ok().flatten();
        if own.as_ref().is_none_or(|r| r.status != DmStatus::Delivered) {
            let status = own.map(|r| r.status);
            out.push(format!(
                "node {} holds its message {hex} to node {} as {status:?}",
                sent.from, sent.to
            ));
        }
    }
    // Per sender, the order received is the order sent, for the messages that came
    // directly: a held message does not hold up the ones behind it (docs/protocol.md 19),
    // so one collected from a mailbox may be stored after later ones.
    for (r, node) in world.nodes.iter().enumerate() {
        let Some(store) = node.store() else { continue };
        let mut last: BTreeMap<AuthorId, u64> = BTreeMap::new();
        for (peer, record) in stored(store) {
            if record.status != DmStatus::Received {
                continue;
            }
            let Some(id) = parse_id(&record.id) else { continue };
            if world.dms.via_mailbox.contains(&id) {
                continue;
            }
            let Some(sent) = truth.get(&id) else { continue };
            if let Some(previous) = last.insert(peer, sent.index) {
                if previous > sent.index {
                    out.push(format!(
                        "node {r} holds message {} of node {} after a later one",
                        record.id, sent.from
                    ));
                }
            }
        }
    }
    out
}

/// No node was given one notification twice while it ran, and none holds two alike.
pub(super) fn no_notification_twice(world: &World) -> Vec<String> {
    let mut out = world.dms.notified_twice.clone();
    for (i, node) in world.nodes.iter().enumerate() {
        let Some(store) = node.store() else { continue };
        let mut seen = BTreeSet::new();
        for n in store.notifications(usize::MAX, false, false).unwrap_or_default() {
            if !seen.insert((n.kind.clone(), n.from.clone(), n.record.clone())) {
                out.push(format!("node {i} holds notification {} {} twice", n.kind, n.record));
            }
        }
    }
    out
}

/// Every message a node holds is one it sent or one sent to it.
pub(super) fn only_parties_hold_messages(world: &World) -> Vec<String> {
    let mut out = Vec::new();
    for (k, node) in world.nodes.iter().enumerate() {
        let Some(store) = node.store() else { continue };
        for (_, record) in stored(store) {
            let sent = parse_id(&record.id).and_then(|id| world.dms.sent.get(&id));
            let Some(sent) = sent else {
                out.push(format!("node {k} holds message {} nobody sent", record.id));
                continue;
            };
            let (from, to) = (world.nodes[sent.from].me, world.nodes[sent.to].me);
            let party = k == sent.from || k == sent.to;
            let named = record.from == from.to_string() && record.to == to.to_string();
            if !party || !named {
                out.push(format!(
                    "node {k} holds message {} of node {} to node {}",
                    record.id, sent.from, sent.to
                ));
            }
        }
    }
    out
}
