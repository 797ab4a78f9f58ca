//! Groups and circles in the simulation (issue #19): people make groups of their mutual
//! connections, add and remove members (new epochs), and write to them; authors make a
//! circle, post to it and remove members. The requests go through each core as `kith
//! group` and `kith circle` do (`Input::Group`); the core's group requests travel the
//! simulated network on `/kith/group/1` (`Effect::GroupDeliver`, `Effect::GroupAsk`),
//! answered by the member's core. The world keeps the ground truth the group invariants
//! check: for every message and circle post, who its sender's node counted as members
//! when it was sent.

use std::collections::{BTreeMap, BTreeSet};

use kith_node::{
    core::{
        group::{GroupAnswer, GroupOp},
        AnswerId, Effect, Input,
    },
    store::Store,
};
use kith_protocol::{
    group::{membership::SignedMembership, GroupId},
    AuthorId, RecordId,
};

use super::{
    mailbox::{Proto, Purpose},
    World,
};

/// Actions that are about groups or circles, per thousand (when the person can).
pub(super) const GROUP_PER_MILLE: u64 = 400;
/// The one circle each author keeps.
const CIRCLE: &str = "close";

/// A group message or circle post: who sent it, and to whom (its sender's view then).
#[derive(Debug, Clone)]
pub(crate) struct Audience {
    /// The sender's node.
    pub(crate) from: usize,
    /// The members the sender's node counted (the sender included).
    pub(crate) members: BTreeSet<usize>,
}

/// A request waiting for its answer: what to record then.
#[derive(Debug)]
enum Pending {
    Create,
    Send { group: [u8; 16], members: BTreeSet<usize> },
    CirclePost { members: BTreeSet<usize> },
}

/// The ground truth of groups and circles.
#[derive(Debug, Default)]
pub(crate) struct GroupTruth {
    /// Every group made, in order: (id, creator).
    pub(crate) groups: Vec<([u8; 16], usize)>,
    /// Every group message sent, by (group, id).
    pub(crate) messages: BTreeMap<([u8; 16], [u8; 16]), Audience>,
    /// Every circle post, by record id.
    pub(crate) posts: BTreeMap<RecordId, Audience>,
    pending: BTreeMap<(usize, AnswerId), Pending>,
}

/// The members of group `id` as `store` keeps it: (members, active, creator).
pub(crate) fn members_of(store: &Store, id: &[u8; 16]) -> Option<(Vec<AuthorId>, bool, AuthorId)> {
    let state = store.group(id).ok()??;
    let verified = SignedMembership::from_bytes(&state.membership).ok()?;
    let m = verified.membership();
    let members = if m.deleted { Vec::new() } else { m.members.clone() };
    Some((members, state.active, m.creator))
}

impl World {
    fn nodes_of(&self, people: &[AuthorId]) -> BTreeSet<usize> {
        people.iter().filter_map(|p| self.by_author.get(p).copied()).collect()
    }

    fn mutuals(&self, i: usize) -> Vec<AuthorId> {
        let Some(store) = self.nodes[i].store() else { return Vec::new() };
        let me = self.nodes[i].me;
        store
            .following(&me)
            .unwrap_or_default()
            .into_iter()
            .filter(|them| store.is_following(them, &me).unwrap_or(false))
            .collect()
    }

    fn group_op(&mut self, i: usize, op: GroupOp, pending: Option<Pending>) {
        let node = &mut self.nodes[i];
        node.next_answer += 1;
        let answer = AnswerId(node.next_answer);
        if let Some(pending) = pending {
            self.groups.pending.insert((i, answer), pending);
        }
        self.input(i, Input::Group { op, answer });
    }

    /// Person `i` does something with groups or circles, if they can; false if not.
    pub(super) fn act_group(&mut self, i: usize) -> bool {
        let mutuals = self.mutuals(i);
        let me = self.nodes[i].me;
        let Some(store) = self.nodes[i].store() else { return false };
        // Groups this person is in, in the order they were made (not the store's order
        // of random ids: the run stays deterministic).
        let mine: Vec<([u8; 16], Vec<AuthorId>, AuthorId)> = self
            .groups
            .groups
            .iter()
            .filter_map(|(id, _)| members_of(store, id).map(|m| (*id, m)))
            .filter(|(_, (_, active, _))| *active)
            .map(|(id, (members, _, creator))| (id, members, creator))
            .collect();
        let circle = store.circle(CIRCLE).ok().flatten();
        match self.rng.below(10) {
            0 if mutuals.len() >= 2 && mine.iter().all(|(_, _, c)| *c != me) => {
                let k = 2 + self.rng.index(mutuals.len().min(4) - 1);
                let members = self.pick(&mutuals, k);
                let name = format!("group of {i}");
                self.group_op(i, GroupOp::Create { name, members }, Some(Pending::Create));
            }
            1 | 2 => {
                let Some((group, members, creator)) = self.pick_one(&mine) else { return false };
                let outsiders: Vec<AuthorId> =
                    mutuals.iter().filter(|m| !members.contains(m)).copied().collect();
                let others: Vec<AuthorId> = members.iter().filter(|m| **m != me).copied().collect();
                let id = GroupId::from_bytes(group);
                if creator != me {
                    return false;
                } else if self.rng.chance(500) && !outsiders.is_empty() {
                    let member = outsiders[self.rng.index(outsiders.len())];
                    let op = GroupOp::Add { group: id, member, history: false };
                    self.group_op(i, op, None);
                } else if others.len() > 1 {
                    let member = others[self.rng.index(others.len())];
                    self.group_op(i, GroupOp::Remove { group: id, member }, None);
                } else {
                    return false;
                }
            }
            3..=6 => {
                let Some((group, members, _)) = self.pick_one(&mine) else { return false };
                let members = self.nodes_of(&members);
                let text = format!("group message {}", self.rng.below(1_000_000));
                let op = GroupOp::Send { group: GroupId::from_bytes(group), text };
                self.group_op(i, op, Some(Pending::Send { group, members }));
            }
            7 if circle.is_none() && mutuals.len() >= 2 => {
                let k = 2 + self.rng.index(2);
                let members = self.pick(&mutuals, k);
                self.group_op(i, GroupOp::CircleCreate { name: CIRCLE.into(), members }, None);
            }
            7 if circle.as_ref().is_some_and(|c| c.members.len() > 1) => {
                let members = circle.map(|c| c.members).unwrap_or_default();
                let member = members[self.rng.index(members.len())];
                let Ok(member) = AuthorId::from_bytes(member) else { return false };
                self.group_op(i, GroupOp::CircleRemove { name: CIRCLE.into(), member }, None);
            }
            8 | 9 if circle.is_some() => {
                let members: Vec<AuthorId> = circle
                    .map(|c| c.members)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|m| AuthorId::from_bytes(m).ok())
                    .collect();
                let mut members = self.nodes_of(&members);
                members.insert(i);
                let text = format!("circle post {}", self.rng.below(1_000_000));
                let op = GroupOp::CirclePost { name: CIRCLE.into(), text };
                self.group_op(i, op, Some(Pending::CirclePost { members }));
            }
            _ => return false,
        }
        self.stats.group_actions += 1;
        true
    }

    /// `k` of `people`, at random, in their order.
    fn pick(&mut self, people: &[AuthorId], k: usize) -> Vec<AuthorId> {
        let mut left = people.to_vec();
        let mut out = Vec::new();
        while out.len() < k && !left.is_empty() {
            out.push(left.swap_remove(self.rng.index(left.len())));
        }
        out.sort();
        out
    }

    fn pick_one<T: Clone>(&mut self, of: &[T]) -> Option<T> {
        (!of.is_empty()).then(|| of[self.rng.index(of.len())].clone())
    }

    /// Node `i`'s core answered group request `answer` with `result`.
    pub(super) fn group_answered(
        &mut self,
        i: usize,
        answer: AnswerId,
        result: Option<GroupAnswer>,
    ) {
        let Some(pending) = self.groups.pending.remove(&(i, answer)) else { return };
        match (pending, result) {
            (Pending::Create, Some(GroupAnswer::Created(id))) => {
                self.groups.groups.push((*id.as_bytes(), i));
            }
            (Pending::Send { group, members }, Some(GroupAnswer::Sent(id))) => {
                self.stats.group_messages += 1;
                let audience = Audience { from: i, members };
                self.groups.messages.insert((group, *id.as_bytes()), audience);
            }
            _ => {}
        }
    }

    /// Node `i` published a circle post in answer to `answer`.
    pub(super) fn circle_posted(&mut self, i: usize, answer: AnswerId, id: RecordId) {
        if let Some(Pending::CirclePost { members }) = self.groups.pending.remove(&(i, answer)) {
            self.stats.circle_posts += 1;
            self.groups.posts.insert(id, Audience { from: i, members });
        }
    }

    /// Puts the group questions among `effects` in the order their groups were made.
    /// The core asks in its store's order of group ids, which are drawn from the OS's
    /// random source; the world draws latencies and losses for each question in turn,
    /// so without this a run would depend on those ids.
    pub(super) fn order_group_asks(&self, effects: &mut [Effect]) {
        let at: Vec<usize> =
            (0..effects.len()).filter(|k| matches!(effects[*k], Effect::GroupAsk { .. })).collect();
        if at.len() < 2 {
            return;
        }
        let made = |e: &Effect| match e {
            Effect::GroupAsk { peer, group, .. } => {
                let index = self.groups.groups.iter().position(|(id, _)| id == group);
                (index.unwrap_or(usize::MAX), *peer)
            }
            _ => (usize::MAX, self.nodes[0].me),
        };
        let mut keys: Vec<((usize, AuthorId), usize)> =
            at.iter().map(|k| (made(&effects[*k]), *k)).collect();
        keys.sort();
        // Apply the permutation: the k-th ask slot takes the k-th ask in order.
        let mut taken: Vec<Option<Effect>> = effects
            .iter_mut()
            .map(|e| Some(std::mem::replace(e, Effect::Flush(kith_node::core::FlushId(0)))))
            .collect();
        for (slot, (_, from)) in at.iter().zip(&keys) {
            if let Some(e) = taken[*from].take() {
                effects[*slot] = e;
            }
        }
        for (k, e) in taken.into_iter().enumerate() {
            if let Some(e) = e {
                if !at.contains(&k) {
                    effects[k] = e;
                }
            }
        }
    }

    /// The core of node `i` sends queued group request `n` to member `peer`.
    pub(super) fn group_deliver(&mut self, i: usize, peer: AuthorId, n: u64, bytes: Vec<u8>) {
        let purpose = Purpose::GroupDeliver { peer, n };
        match self.by_author.get(&peer).copied() {
            Some(to) => self.ask(i, to, Proto::Group, bytes, purpose),
            None => self.answered(i, self.nodes[i].epoch, purpose, None),
        }
    }

    /// The core of node `i` asks member `peer` for what it missed of `group` (only if
    /// connected, as the driver does).
    pub(super) fn group_ask(&mut self, i: usize, peer: AuthorId, group: [u8; 16], bytes: Vec<u8>) {
        let purpose = Purpose::GroupAsk { peer, group };
        match self.by_author.get(&peer).copied() {
            Some(to) if self.reachable(i, to) => self.ask(i, to, Proto::Group, bytes, purpose),
            _ => self.answered(i, self.nodes[i].epoch, purpose, None),
        }
    }
}

#[cfg(test)]
impl World {
    /// Breaks the world's groups and circles by hand (for tests): the first group
    /// message anyone holds is copied into the store of a node it was not sent to, a
    /// message nobody sent is recorded as sent to the first group's final members, and
    /// the first circle post is recorded as posted to its author alone.
    pub(in crate::sim_core) fn break_groups(&mut self) {
        let first = self.groups.messages.iter().find_map(|((group, id), a)| {
            let store = self.nodes[a.from].store()?;
            let line =
                store.group_thread(group, usize::MAX).ok()?.into_iter().find(|l| l.id == *id)?;
            Some((*group, line, a.members.clone()))
        });
        if let Some((group, line, members)) = first {
            let outsider = (0..self.nodes.len()).find(|k| !members.contains(k));
            if let Some(store) = outsider.and_then(|k| self.nodes[k].store()) {
                let _ = store.group_add_line(&group, &line);
            }
        }
        if let Some(&(group, creator)) = self.groups.groups.first() {
            let final_members = self.nodes[creator]
                .store()
                .and_then(|s| members_of(s, &group))
                .map(|(m, _, _)| self.nodes_of(&m))
                .unwrap_or_default();
            let fake = Audience { from: creator, members: final_members };
            self.groups.messages.insert((group, [0xee; 16]), fake);
        }
        if let Some(audience) = self.groups.posts.values_mut().next() {
            audience.members = BTreeSet::from([audience.from]);
        }
    }
}
