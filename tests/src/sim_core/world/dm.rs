//! Direct messages in the simulation: people write to their mutual connections, the
//! requests travel the simulated network (lost, delayed, refused by partitions and
//! offline or crashed recipients), the recipient's core answers with a receipt once it
//! flushed, and the sender's outbox retries on the timers its core schedules. The world
//! keeps the ground truth the dm invariants check: every message asked for, whether its
//! sender was told it was sent, and what each node stored and was notified of.

use std::collections::{BTreeMap, BTreeSet};

use kith_node::{
    core::{dm::Outgoing, AnswerId, DmProto, Input, ReplyId, Timer},
    store::{DmStatus, Notification},
};
use kith_protocol::{dm::MessageId, AuthorId};

use super::{Event, World};

/// How long a sender waits for a receipt before its delivery fails (no answer).
const DM_TIMEOUT_MS: u64 = 5_000;
/// Actions that are direct messages, per thousand (when the person has a mutual).
pub(super) const DM_PER_MILLE: u64 = 250;

/// A message a person asked to send.
#[derive(Debug, Clone)]
pub(crate) struct SentDm {
    /// The sender's node.
    pub(crate) from: usize,
    /// The recipient's node.
    pub(crate) to: usize,
    /// Its place among the sender's messages (0, 1, ...).
    pub(crate) index: u64,
    /// The status `msg send` answered (after its flush), if it was answered.
    pub(crate) answered: Option<DmStatus>,
}

/// An inbound request a node's core has not answered yet.
#[derive(Debug)]
struct Waiting {
    sender: usize,
    epoch: u64,
    recipient: AuthorId,
    message: [u8; 16],
}

/// The ground truth of direct messages, and what happened that must not.
#[derive(Debug, Default)]
pub(crate) struct DmTruth {
    /// Every message asked for, by id.
    pub(crate) sent: BTreeMap<[u8; 16], SentDm>,
    /// Messages asked for per sender so far.
    asked: BTreeMap<usize, u64>,
    /// Messages each node has stored as received since it last started.
    received: BTreeMap<usize, BTreeSet<[u8; 16]>>,
    /// Notifications each node was given since it last started: (kind, from, record).
    notified: BTreeMap<usize, BTreeSet<(String, String, String)>>,
    /// A message stored twice by one node ("node N stored message M twice").
    pub(crate) stored_twice: Vec<String>,
    /// Messages their recipient stored from what it collected from a mailbox.
    pub(crate) via_mailbox: BTreeSet<[u8; 16]>,
    /// A notification given twice by one node.
    pub(crate) notified_twice: Vec<String>,
    waiting: BTreeMap<(usize, u64), Waiting>,
    next_reply: u64,
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl World {
    /// Person `i` writes to one of their mutual connections (as their node's store knows
    /// them), if they have any; false if not.
    pub(super) fn send_dm(&mut self, i: usize) -> bool {
        let Some(store) = self.nodes[i].store() else { return false };
        let me = self.nodes[i].me;
        let mutuals: Vec<AuthorId> = store
            .following(&me)
            .unwrap_or_default()
            .into_iter()
            .filter(|them| store.is_following(them, &me).unwrap_or(false))
            .collect();
        if mutuals.is_empty() {
            return false;
        }
        let peer = mutuals[self.rng.index(mutuals.len())];
        self.send_dm_to(i, peer).is_some()
    }

    /// Person `i` writes to `peer`; the message's id if their node took it.
    pub(super) fn send_dm_to(&mut self, i: usize, peer: AuthorId) -> Option<[u8; 16]> {
        let to = *self.by_author.get(&peer)?;
        let text = format!("dm {}", self.rng.below(1_000_000));
        let allowed =
            self.nodes[i].core.as_ref().is_some_and(|c| c.check_send(&peer, &text, false).is_ok());
        if !allowed {
            return None;
        }
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.rng.below(u64::MAX).to_le_bytes());
        id[8..].copy_from_slice(&self.rng.below(u64::MAX).to_le_bytes());
        let asked = self.dms.asked.entry(i).or_default();
        let index = *asked;
        *asked += 1;
        self.dms.sent.insert(id, SentDm { from: i, to, index, answered: None });
        let message =
            Outgoing { peer, id: MessageId::from_bytes(id), text, attachments: Vec::new() };
        let node = &mut self.nodes[i];
        node.next_answer += 1;
        let answer = AnswerId(node.next_answer);
        self.input(i, Input::MsgSend { message, answer });
        Some(id)
    }

    /// `msg send` of message `id` was answered with `status`.
    pub(super) fn dm_answered(&mut self, id: [u8; 16], status: DmStatus) {
        if let Some(sent) = self.dms.sent.get_mut(&id) {
            sent.answered = Some(status);
        }
    }

    /// Node `i` sends message request `bytes` to `peer`: it arrives after a latency if
    /// the peer can be reached and it is not lost; else the delivery fails after
    /// [`DM_TIMEOUT_MS`].
    pub(super) fn dm_deliver(
        &mut self,
        i: usize,
        peer: AuthorId,
        message: [u8; 16],
        bytes: Vec<u8>,
        proto: DmProto,
    ) {
        let epoch = self.nodes[i].epoch;
        let to = self.by_author.get(&peer).copied();
        match to {
            Some(to) if self.reachable(i, to) && !self.rng.chance(self.config.loss_per_mille) => {
                let delay = self.rng.latency_ms();
                self.at(delay, Event::DmArrive { to, from: i, epoch, message, bytes, proto });
            }
            _ => self.dm_fail(i, epoch, peer, message),
        }
    }

    /// The delivery of `message` by node `sender` (in its run `epoch`) fails after the
    /// timeout.
    fn dm_fail(&mut self, sender: usize, epoch: u64, peer: AuthorId, message: [u8; 16]) {
        let result = Err("no answer".to_owned());
        self.at(DM_TIMEOUT_MS, Event::DmReply { to: sender, epoch, peer, message, result });
    }

    /// A message request from node `from` arrives at node `to`.
    pub(super) fn dm_arrive(
        &mut self,
        to: usize,
        from: usize,
        epoch: u64,
        message: [u8; 16],
        bytes: Vec<u8>,
        proto: DmProto,
    ) {
        let recipient = self.nodes[to].me;
        if !(self.nodes[to].online && self.nodes[to].core.is_some()) {
            return self.dm_fail(from, epoch, recipient, message);
        }
        let reply = self.reply_id();
        let waiting = Waiting { sender: from, epoch, recipient, message };
        self.dms.waiting.insert((to, reply), waiting);
        let peer = self.nodes[from].peer;
        let reply = ReplyId(reply);
        self.input(
            to,
            match proto {
                DmProto::V1 => Input::DmRequest { from: peer, bytes, reply },
                DmProto::V2 => Input::Dm2Request { from: peer, bytes, reply },
            },
        );
    }

    /// A new id for an inbound request (direct message or sync).
    pub(super) fn reply_id(&mut self) -> u64 {
        self.dms.next_reply += 1;
        self.dms.next_reply
    }

    /// Node `i` answers inbound request `reply`: the receipt goes back to the sender if
    /// it can be reached.
    pub(super) fn dm_respond(&mut self, i: usize, reply: ReplyId, bytes: Vec<u8>) {
        let Some(w) = self.dms.waiting.remove(&(i, reply.0)) else { return };
        if self.reachable(i, w.sender) {
            let delay = self.rng.latency_ms();
            let result = Ok(bytes);
            let (to, epoch, peer, message) = (w.sender, w.epoch, w.recipient, w.message);
            self.at(delay, Event::DmReply { to, epoch, peer, message, result });
        } else {
            self.dm_fail(w.sender, w.epoch, w.recipient, w.message);
        }
    }

    /// The sender learns how its delivery went (unless it crashed meanwhile: its new
    /// run knows nothing of it).
    pub(super) fn dm_reply(
        &mut self,
        to: usize,
        epoch: u64,
        peer: AuthorId,
        message: [u8; 16],
        result: Result<Vec<u8>, String>,
    ) {
        if self.nodes[to].epoch == epoch {
            self.input(to, Input::DmDelivered { peer, message, result });
        }
    }

    /// A timer node `i`'s core scheduled (in its run `epoch`) is due.
    pub(super) fn dm_timer(&mut self, i: usize, timer: Timer, epoch: u64) {
        if self.nodes[i].epoch == epoch {
            self.input(i, Input::Timer(timer));
        }
    }

    /// Node `i` stored message `id` as received.
    pub(super) fn dm_received(&mut self, i: usize, id: [u8; 16]) {
        if self.mailboxes.collecting {
            self.mailboxes.delivered += 1;
            self.dms.via_mailbox.insert(id);
        }
        if !self.dms.received.entry(i).or_default().insert(id) {
            self.dms.stored_twice.push(format!("node {i} stored message {} twice", hex(&id)));
        }
    }

    /// Node `i` was given notification `n`.
    pub(super) fn notified(&mut self, i: usize, n: &Notification) {
        let key = (n.kind.clone(), n.from.clone(), n.record.clone());
        if !self.dms.notified.entry(i).or_default().contains(&key) {
            self.dms.notified.entry(i).or_default().insert(key);
        } else {
            let (kind, record) = (&n.kind, &n.record);
            self.dms.notified_twice.push(format!("node {i} notified {kind} {record} twice"));
        }
    }

    /// Node `i` crashed: requests it had not answered fail at their senders.
    pub(super) fn dm_crashed(&mut self, i: usize) {
        let lost: Vec<u64> =
            self.dms.waiting.range((i, 0)..=(i, u64::MAX)).map(|(k, _)| k.1).collect();
        for reply in lost {
            if let Some(w) = self.dms.waiting.remove(&(i, reply)) {
                self.dm_fail(w.sender, w.epoch, w.recipient, w.message);
            }
        }
    }

    /// Node `i` restarted: what it received and was notified of is what it kept; its
    /// outbox is tried at once (as the driver does at start).
    pub(super) fn dm_restarted(&mut self, i: usize) {
        let Some(store) = self.nodes[i].store() else { return };
        let mut received = BTreeSet::new();
        for conversation in store.dm_conversations().unwrap_or_default() {
            for record in store.dm_thread(&conversation.peer, usize::MAX).unwrap_or_default() {
                if record.status == DmStatus::Received {
                    if let Some(id) = parse_id(&record.id) {
                        received.insert(id);
                    }
                }
            }
        }
        let notified = store
            .notifications(usize::MAX, false, false)
            .unwrap_or_default()
            .into_iter()
            .map(|n| (n.kind, n.from, n.record))
            .collect();
        self.dms.received.insert(i, received);
        self.dms.notified.insert(i, notified);
        let epoch = self.nodes[i].epoch;
        self.at(0, Event::Timer { node: i, timer: Timer::Outbox, epoch });
    }
}

/// A message id from its hex.
pub(crate) fn parse_id(hex: &str) -> Option<[u8; 16]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
impl World {
    /// Breaks the world's messages by hand (for tests): the first message answered is
    /// copied into the store of a node that is party to it neither way, and a message
    /// nobody sent is recorded as sent from node 0 to node 1.
    pub(in crate::sim_core) fn break_messages(&mut self) {
        let found = self.dms.sent.iter().find(|(_, s)| s.answered.is_some());
        let Some((&id, sent)) = found else { return };
        let (from, to) = (sent.from, sent.to);
        let sender = self.nodes[from].me;
        let third = (0..self.nodes.len()).find(|k| *k != from && *k != to).unwrap_or(0);
        let record = self.nodes[to].store().and_then(|s| s.dm_get(&sender, &id).ok().flatten());
        if let (Some(record), Some(store)) = (record, self.nodes[third].store()) {
            let _ = store.dm_insert(&sender, &sender, &id, &record, None);
        }
        let fake = SentDm { from: 0, to: 1, index: 0, answered: Some(DmStatus::Delivered) };
        self.dms.sent.insert([0xee; 16], fake);
    }
}
