//! What must hold at the end of a simulation, over every node's store.
//!
//! An invariant is a function from the [`World`] to the violations it finds, registered
//! in [`INVARIANTS`] with a name (printed with the seed on failure). It reads stores
//! through their typed API only. Invariants of concerns the core does not handle yet are
//! listed in [`PENDING`] and added when their concern lands (see docs/architecture.md).

use std::fmt;

use kith_protocol::RecordId;

use super::World;

mod dm;
mod group;

/// One violation: which invariant, and what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name.
    pub invariant: &'static str,
    /// What failed, for a person.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

/// An invariant: the violations it finds in a world.
pub type Invariant = fn(&World) -> Vec<String>;

/// Every invariant checked, by name.
pub const INVARIANTS: &[(&str, Invariant)] = &[
    ("followers hold followed logs without gaps or deleted records", followed_logs),
    (
        "every direct message between mutuals is stored once by its recipient, in the \
         order its sender sent it",
        dm::delivered_once_in_order,
    ),
    ("no notification twice", dm::no_notification_twice),
    ("nobody stores a direct message they were not party to", dm::only_parties_hold_messages),
    (
        "every group member reads every message sent while they were a member, once, in \
         (timestamp, id) order",
        group::members_read_once_in_order,
    ),
    (
        "no removed member or outsider holds a group message sent while it was not a member",
        group::no_outsider_holds_group_plaintext,
    ),
    (
        "circle posts are read by their circle's members and nobody else",
        group::circle_posts_read_by_members_only,
    ),
];

/// Invariants whose concern the core does not handle yet (none now: later issues list
/// theirs here until their concern lands).
pub const PENDING: &[&str] = &[];

/// Checks every invariant; the violations in invariant then node order.
pub fn check(world: &World) -> Vec<Violation> {
    INVARIANTS
        .iter()
        .flat_map(|(invariant, check)| {
            check(world).into_iter().map(|detail| Violation { invariant, detail })
        })
        .collect()
}

/// Every node that follows an author holds exactly the author's log as the author holds
/// it: no record missing (a gap), none the author deleted, none the author does not
/// have (a fork).
fn followed_logs(world: &World) -> Vec<String> {
    let mut out = Vec::new();
    let by_author: std::collections::BTreeMap<_, _> =
        world.nodes.iter().enumerate().map(|(i, n)| (n.me, i)).collect();
    for (f, node) in world.nodes.iter().enumerate() {
        let Some(store) = node.store() else {
            out.push(format!("node {f} is not running at the end"));
            continue;
        };
        for author in store.following(&node.me).unwrap_or_default() {
            let Some(theirs) = by_author.get(&author).and_then(|a| world.nodes[*a].store()) else {
                continue;
            };
            let log = |s: &kith_node::store::Store| -> Vec<(u64, RecordId)> {
                let records = s.author_log(&author, 0, usize::MAX).unwrap_or_default();
                records.into_iter().map(|r| (r.record.seq, r.id)).collect()
            };
            let (held, truth) = (log(store), log(theirs));
            if held != truth {
                let missing = truth.iter().filter(|r| !held.contains(r)).count();
                let extra: Vec<&(u64, RecordId)> =
                    held.iter().filter(|r| !truth.contains(r)).collect();
                let deleted = extra
                    .iter()
                    .filter(|(_, id)| theirs.tombstone_of(id).ok().flatten().is_some())
                    .count();
                out.push(format!(
                    "node {f} follows node {}: {missing} of {} records missing, {} extra \
                     ({deleted} deleted by their author)",
                    by_author[&author],
                    truth.len(),
                    extra.len()
                ));
            }
        }
    }
    out
}
