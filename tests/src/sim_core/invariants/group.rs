//! The group and circle invariants (issue #19).
//!
//! A group message's audience is the membership its sender's node held when it sent it
//! (a removal reaches the other members' nodes as a new epoch; a message sent before a
//! member's node learned of it goes to the old membership, as the core promises no
//! more). After the run everyone is online and the group outboxes drained.

use std::collections::{BTreeMap, BTreeSet};

use kith_node::store::Store;
use kith_protocol::{
    group::membership::SignedMembership, olm::pickle::PickleKey, AuthorId, Record,
};

use crate::sim_core::world::{members_of, World};

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// When the membership of `me` in `group` ended, as its own node knows it at the end:
/// its leave notice, or the creator's epoch that removed it (or deleted the group),
/// whichever came first; `None` while its node counts it in.
fn ended(store: &Store, group: &[u8; 16], me: &AuthorId) -> Option<u64> {
    let (members, active, _) = members_of(store, group)?;
    if active {
        return None;
    }
    let state = store.group(group).ok()??;
    let verified = SignedMembership::from_bytes(&state.membership).ok()?;
    let removed = (!members.contains(me)).then(|| verified.membership().timestamp);
    let left = store.group_left_since(group, me.as_bytes(), 0).ok()?;
    match (removed, left) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When each message of `group` was written (its sender's clock), as the nodes hold it.
fn written_at(world: &World, group: &[u8; 16]) -> BTreeMap<[u8; 16], u64> {
    let mut at = BTreeMap::new();
    for node in &world.nodes {
        let Some(store) = node.store() else { continue };
        for line in store.group_thread(group, usize::MAX).unwrap_or_default() {
            at.insert(line.id, line.timestamp);
        }
    }
    at
}

/// Every member reads every group message sent to them (in their sender's view) while
/// they are still a member at the end, and so does a member removed since (or gone, or
/// whose group was deleted) for the messages written before its membership ended (as
/// its node knows it: `docs/protocol.md` 20.7): stored once, in (timestamp, id) order.
pub(super) fn members_read_once_in_order(world: &World) -> Vec<String> {
    let mut out = Vec::new();
    let truth = &world.groups;
    let written: BTreeMap<[u8; 16], BTreeMap<[u8; 16], u64>> =
        truth.groups.iter().map(|(g, _)| (*g, written_at(world, g))).collect();
    for (k, node) in world.nodes.iter().enumerate() {
        let Some(store) = node.store() else { continue };
        for (group, creator) in &truth.groups {
            let Some(final_members) = world.nodes[*creator]
                .store()
                .and_then(|s| members_of(s, group))
                .map(|(members, _, _)| members)
            else {
                continue;
            };
            let thread = store.group_thread(group, usize::MAX).unwrap_or_default();
            let mut count: BTreeMap<[u8; 16], usize> = BTreeMap::new();
            for line in &thread {
                *count.entry(line.id).or_default() += 1;
            }
            let keys: Vec<(u64, [u8; 16])> = thread.iter().map(|l| (l.timestamp, l.id)).collect();
            if keys.windows(2).any(|w| w[0] > w[1]) {
                out.push(format!("node {k} holds group {} out of order", hex(group)));
            }
            let member = final_members.contains(&node.me);
            let until = if member { None } else { ended(store, group, &node.me) };
            let at = written.get(group);
            for ((g, id), audience) in
                truth.messages.range((*group, [0; 16])..=(*group, [0xff; 16]))
            {
                let _ = g;
                let held = count.get(id).copied().unwrap_or(0);
                if held > 1 {
                    out.push(format!("node {k} holds group message {} {held} times", hex(id)));
                }
                let when = at.and_then(|at| at.get(id)).copied();
                let before_end = until.zip(when).is_some_and(|(end, when)| when <= end);
                if (member || before_end) && audience.members.contains(&k) && held == 0 {
                    let still = if member { "a member" } else { "a former member" };
                    out.push(format!(
                        "node {k}, {still} of group {}, never read message {} of node {}",
                        hex(group),
                        hex(id),
                        audience.from
                    ));
                }
            }
        }
    }
    out
}

/// No node holds the plaintext of a group message it was not sent (a removed member
/// after its removal reached the sender, an outsider): every group line every node
/// stores is a message sent with this node in its audience.
pub(super) fn no_outsider_holds_group_plaintext(world: &World) -> Vec<String> {
    let mut out = Vec::new();
    for (k, node) in world.nodes.iter().enumerate() {
        let Some(store) = node.store() else { continue };
        for (group, _) in &world.groups.groups {
            for line in store.group_thread(group, usize::MAX).unwrap_or_default() {
                match world.groups.messages.get(&(*group, line.id)) {
                    Some(a) if a.members.contains(&k) => {}
                    Some(a) => out.push(format!(
                        "node {k} holds message {} of node {} to group {}, sent while it \
                         was not a member",
                        hex(&line.id),
                        a.from,
                        hex(group)
                    )),
                    // Sent, but its answer never came (the sender crashed first): not
                    // in the ground truth, nothing to check it against.
                    None => {}
                }
            }
        }
    }
    out
}

/// The text of circle post `record`, if `store` (of the person of `key`) can read it:
/// the same reading as the driver's (`node/circle.rs`).
fn circle_text(store: &Store, key: &PickleKey, record: &Record) -> Option<String> {
    kith_node::core::group::read_post(store, key, record)
}

/// Every circle post is read by every member it was posted to (who holds its author's
/// log) and by nobody else, followers who hold the record included.
pub(super) fn circle_posts_read_by_members_only(world: &World) -> Vec<String> {
    let mut out = Vec::new();
    for (k, node) in world.nodes.iter().enumerate() {
        let Some(store) = node.store() else { continue };
        let Ok(key) = PickleKey::derive(&node.keys) else { continue };
        let mut seen = BTreeSet::new();
        for (id, audience) in &world.groups.posts {
            let Some(stored) = store.get(id).ok().flatten() else { continue };
            seen.insert(*id);
            let reads = circle_text(store, &key, &stored.record).is_some();
            let member = audience.members.contains(&k);
            if member && !reads {
                out.push(format!(
                    "node {k} cannot read circle post {id} of node {}",
                    audience.from
                ));
            } else if !member && reads {
                out.push(format!("node {k} reads circle post {id} of node {}", audience.from));
            }
        }
    }
    out
}
