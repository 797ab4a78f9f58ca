//! Mailboxes in the simulation (issue #18): deposits, collects, acknowledgements and
//! end-to-end receipts travel the simulated network as the driver sends them
//! (`node/src/node/collect.rs`), and each mailbox's holding core answers them
//! (`core/hold.rs`: quotas, TTL, flushed before `Accepted`). What a mailbox holds, who
//! may deposit and what is collected are the cores' decisions; the world only carries
//! the bytes, loses them with the node that crashed or went offline, and connects nodes
//! when they come back (then each collects from its mailboxes, as the driver does on a
//! connection, at once and twice more a little later).

use std::collections::BTreeMap;

use kith_node::core::{dm::is_mutual, mailbox::choose, Input, ReplyId};
use kith_protocol::{
    mailbox::{HeldId, MailboxReply, MailboxRequest},
    olm::envelope::Dm2Reply,
    AuthorId,
};

use super::{Event, World};

/// When a node asks a mailbox it connected to again (as the driver does).
const COLLECT_AGAIN_MS: [u64; 3] = [0, 3_000, 20_000];
/// How long an asker waits for an answer that does not come.
const ASK_TIMEOUT_MS: u64 = 5_000;

/// Which exchange a request travels on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Proto {
    /// `/kith/mailbox/1`.
    Mailbox,
    /// `/kith/dm/2` (a receipt sent directly).
    Dm2,
    /// `/kith/group/1`.
    Group,
}

/// What the asker does with the answer.
#[derive(Debug, Clone)]
pub(super) enum Purpose {
    /// One of the deposits of deposit `op`.
    Deposit(u64),
    /// A collect from `mailbox`.
    Collect { mailbox: usize },
    /// An acknowledgement: the answer does not matter.
    Ack,
    /// A receipt sent directly: when not taken, it is deposited with `mailboxes`.
    Receipt { peer: AuthorId, deposit: Vec<u8>, mailboxes: Vec<AuthorId>, key: [u8; 32] },
    /// Queued group request `n` to member `peer`.
    GroupDeliver { peer: AuthorId, n: u64 },
    /// A question to member `peer` about what it holds of `group`.
    GroupAsk { peer: AuthorId, group: [u8; 16] },
}

/// A request a node's core has not answered yet.
#[derive(Debug)]
struct Waiting {
    asker: usize,
    epoch: u64,
    purpose: Purpose,
}

/// What a set of deposits of one envelope is for.
#[derive(Debug, Clone, Copy)]
enum Then {
    /// A message: report [`Input::Deposited`].
    Message { peer: AuthorId, message: [u8; 16] },
    /// A receipt: report [`Input::ReceiptSent`] if one accepted.
    Receipt { key: [u8; 32] },
    /// Queued group request `n` for member `peer`: report [`Input::GroupDeposited`].
    Group { peer: AuthorId, n: u64 },
}

/// Deposits of one envelope with several mailboxes, answered or not yet.
#[derive(Debug)]
struct DepositOp {
    sender: usize,
    epoch: u64,
    left: usize,
    accepted: usize,
    then: Then,
}

/// The mailbox traffic in flight, and counts.
#[derive(Debug, Default)]
pub(crate) struct MailboxTraffic {
    waiting: BTreeMap<(usize, u64), Waiting>,
    ops: BTreeMap<u64, DepositOp>,
    next_op: u64,
    /// Whether the input being handled is a collect (messages stored now came through a
    /// mailbox).
    pub(super) collecting: bool,
    /// Deposits accepted by a mailbox.
    pub(crate) accepted: u64,
    /// Messages recipients stored from what they collected.
    pub(crate) delivered: u64,
}

impl World {
    /// Node `i` asks node `to` over `proto`: the request arrives after a latency if `to`
    /// can be reached and it is not lost; else the asker hears nothing until its timeout.
    pub(super) fn ask(
        &mut self,
        i: usize,
        to: usize,
        proto: Proto,
        bytes: Vec<u8>,
        purpose: Purpose,
    ) {
        let epoch = self.nodes[i].epoch;
        if to != i && self.reachable(i, to) && !self.rng.chance(self.config.loss_per_mille) {
            let delay = self.rng.latency_ms();
            self.at(delay, Event::Ask { to, from: i, epoch, proto, bytes, purpose });
        } else {
            self.at(ASK_TIMEOUT_MS, Event::Answer { to: i, epoch, purpose, result: None });
        }
    }

    /// A request from node `from` arrives at node `to`: its core answers it.
    pub(super) fn asked(
        &mut self,
        to: usize,
        from: usize,
        (epoch, proto): (u64, Proto),
        bytes: Vec<u8>,
        purpose: Purpose,
    ) {
        if !(self.nodes[to].online && self.nodes[to].core.is_some()) {
            self.at(ASK_TIMEOUT_MS, Event::Answer { to: from, epoch, purpose, result: None });
            return;
        }
        let reply = self.reply_id();
        self.mailboxes.waiting.insert((to, reply), Waiting { asker: from, epoch, purpose });
        let (peer, reply) = (self.nodes[from].peer, ReplyId(reply));
        self.input(
            to,
            match proto {
                Proto::Mailbox => Input::MailboxRequest { from: peer, bytes, reply },
                Proto::Dm2 => Input::Dm2Request { from: peer, bytes, reply },
                Proto::Group => Input::GroupRequest { from: peer, bytes, reply },
            },
        );
    }

    /// Whether inbound request `reply` of node `i` is one of these.
    pub(super) fn is_mailbox_reply(&self, i: usize, reply: ReplyId) -> bool {
        self.mailboxes.waiting.contains_key(&(i, reply.0))
    }

    /// Node `i` answers request `reply`: back to the asker if it can be reached.
    pub(super) fn mailbox_respond(&mut self, i: usize, reply: ReplyId, bytes: Vec<u8>) {
        let Some(w) = self.mailboxes.waiting.remove(&(i, reply.0)) else { return };
        let (to, epoch, purpose) = (w.asker, w.epoch, w.purpose);
        if self.reachable(i, to) {
            let delay = self.rng.latency_ms();
            self.at(delay, Event::Answer { to, epoch, purpose, result: Some(bytes) });
        } else {
            self.at(ASK_TIMEOUT_MS, Event::Answer { to, epoch, purpose, result: None });
        }
    }

    /// Node `i` crashed: requests it had not answered go unanswered.
    pub(super) fn mailbox_crashed(&mut self, i: usize) {
        let lost: Vec<u64> =
            self.mailboxes.waiting.range((i, 0)..=(i, u64::MAX)).map(|(k, _)| k.1).collect();
        for reply in lost {
            if let Some(w) = self.mailboxes.waiting.remove(&(i, reply)) {
                let (to, epoch, purpose) = (w.asker, w.epoch, w.purpose);
                self.at(ASK_TIMEOUT_MS, Event::Answer { to, epoch, purpose, result: None });
            }
        }
    }

    /// The asker hears how its request went (`None`: no answer), unless it crashed
    /// meanwhile (its new run knows nothing of it).
    pub(super) fn answered(
        &mut self,
        i: usize,
        epoch: u64,
        purpose: Purpose,
        result: Option<Vec<u8>>,
    ) {
        if self.nodes[i].epoch != epoch || self.nodes[i].core.is_none() {
            return;
        }
        match purpose {
            Purpose::Deposit(op) => {
                let reply = result.and_then(|b| MailboxReply::from_bytes(&b).ok());
                self.deposit_answered(op, matches!(reply, Some(MailboxReply::Accepted { .. })));
            }
            Purpose::Collect { mailbox } => {
                let reply = result.and_then(|b| MailboxReply::from_bytes(&b).ok());
                let Some(MailboxReply::Held { items, more }) = reply else { return };
                let Some(last) = items.last().map(|h| h.position) else { return };
                let peer = self.nodes[mailbox].peer;
                self.mailboxes.collecting = true;
                self.input(i, Input::Collected { mailbox: peer, items });
                self.mailboxes.collecting = false;
                if more {
                    self.collect(i, mailbox, last);
                }
            }
            Purpose::Ack => {}
            Purpose::GroupDeliver { peer, n } => {
                let result = result.ok_or_else(|| "no answer".to_owned());
                self.input(i, Input::GroupDelivered { peer, n, result });
            }
            Purpose::GroupAsk { peer, group } => {
                let result = result.ok_or_else(|| "no answer".to_owned());
                self.input(i, Input::GroupHistory { peer, group, result });
            }
            Purpose::Receipt { peer, deposit, mailboxes, key } => {
                let taken = result
                    .is_some_and(|b| matches!(Dm2Reply::from_bytes(&b), Ok(Dm2Reply::Receipt(_))));
                if taken {
                    self.input(i, Input::ReceiptSent { key });
                } else {
                    self.deposit(i, peer, deposit, &mailboxes, Then::Receipt { key });
                }
            }
        }
    }

    /// Node `i` deposits `envelope` for `peer` with each of `mailboxes` at once.
    fn deposit(
        &mut self,
        i: usize,
        peer: AuthorId,
        envelope: Vec<u8>,
        mailboxes: &[AuthorId],
        then: Then,
    ) {
        let to: Vec<usize> =
            mailboxes.iter().filter_map(|m| self.by_author.get(m).copied()).collect();
        self.mailboxes.next_op += 1;
        let op = self.mailboxes.next_op;
        let epoch = self.nodes[i].epoch;
        let left = to.len();
        self.mailboxes.ops.insert(op, DepositOp { sender: i, epoch, left, accepted: 0, then });
        if left == 0 {
            return self.deposit_done(op);
        }
        let Ok(bytes) = (MailboxRequest::Deposit { recipient: peer, envelope }).to_bytes() else {
            return;
        };
        for m in to {
            self.ask(i, m, Proto::Mailbox, bytes.clone(), Purpose::Deposit(op));
        }
    }

    fn deposit_answered(&mut self, op: u64, accepted: bool) {
        let Some(d) = self.mailboxes.ops.get_mut(&op) else { return };
        d.left = d.left.saturating_sub(1);
        if accepted {
            d.accepted += 1;
            self.mailboxes.accepted += 1;
        }
        if d.left == 0 {
            self.deposit_done(op);
        }
    }

    fn deposit_done(&mut self, op: u64) {
        let Some(d) = self.mailboxes.ops.remove(&op) else { return };
        if self.nodes[d.sender].epoch != d.epoch {
            return;
        }
        match d.then {
            Then::Message { peer, message } => {
                let accepted = d.accepted;
                self.input(d.sender, Input::Deposited { peer, message, accepted });
            }
            Then::Receipt { key } if d.accepted > 0 => {
                self.input(d.sender, Input::ReceiptSent { key });
            }
            Then::Receipt { .. } => {}
            Then::Group { peer, n } => {
                let accepted = d.accepted;
                self.input(d.sender, Input::GroupDeposited { peer, n, accepted });
            }
        }
    }

    /// The core of node `i` deposits message `message` for `peer`.
    pub(super) fn deposit_message(
        &mut self,
        i: usize,
        peer: AuthorId,
        message: [u8; 16],
        envelope: Vec<u8>,
        mailboxes: &[AuthorId],
    ) {
        self.deposit(i, peer, envelope, mailboxes, Then::Message { peer, message });
    }

    /// The core of node `i` deposits queued group request `n` for member `peer`.
    pub(super) fn deposit_group(
        &mut self,
        i: usize,
        peer: AuthorId,
        n: u64,
        envelope: Vec<u8>,
        mailboxes: &[AuthorId],
    ) {
        self.deposit(i, peer, envelope, mailboxes, Then::Group { peer, n });
    }

    /// The core of node `i` sends a receipt: directly, else through `peer`'s mailboxes.
    pub(super) fn send_receipt(
        &mut self,
        i: usize,
        peer: AuthorId,
        (request, deposit): (Vec<u8>, Vec<u8>),
        mailboxes: Vec<AuthorId>,
        key: [u8; 32],
    ) {
        let purpose = Purpose::Receipt { peer, deposit, mailboxes, key };
        match self.by_author.get(&peer).copied() {
            Some(to) => self.ask(i, to, Proto::Dm2, request, purpose),
            None => self.answered(i, self.nodes[i].epoch, purpose, None),
        }
    }

    /// The core of node `i` acknowledges envelopes to `mailbox`.
    pub(super) fn mailbox_ack(&mut self, i: usize, mailbox: AuthorId, ids: Vec<HeldId>) {
        let Some(&to) = self.by_author.get(&mailbox) else { return };
        if let Ok(bytes) = (MailboxRequest::Ack { ids }).to_bytes() {
            self.ask(i, to, Proto::Mailbox, bytes, Purpose::Ack);
        }
    }

    /// Node `i` collects from node `mailbox` what it holds after position `after`.
    pub(super) fn collect(&mut self, i: usize, mailbox: usize, after: u64) {
        if let Ok(bytes) = (MailboxRequest::Collect { after }).to_bytes() {
            self.ask(i, mailbox, Proto::Mailbox, bytes, Purpose::Collect { mailbox });
        }
    }

    /// Node `i` is reachable again (back online, restarted, a partition healed): it
    /// connects to its mutual connections it can reach; each side's core is told, and
    /// when one is the other's mailbox, the other collects from it.
    pub(super) fn connect(&mut self, i: usize) {
        for j in 0..self.nodes.len() {
            self.connect_pair(i, j);
        }
    }

    /// Every pair of nodes that can reach each other connects (a partition healed, the
    /// scenario is over).
    pub(super) fn connect_all(&mut self) {
        for i in 0..self.nodes.len() {
            for j in i + 1..self.nodes.len() {
                self.connect_pair(i, j);
            }
        }
    }

    /// Nodes `i` and `j` connect if they can reach each other and are mutual
    /// connections (as `i` knows it).
    fn connect_pair(&mut self, i: usize, j: usize) {
        if j == i || !self.reachable(i, j) {
            return;
        }
        let (a, b) = (self.nodes[i].me, self.nodes[j].me);
        let mutual = self.nodes[i].store().is_some_and(|s| is_mutual(s, &a, &b).unwrap_or(false));
        if !mutual {
            return;
        }
        let (pi, pj) = (self.nodes[i].peer, self.nodes[j].peer);
        self.input(i, Input::Connected { peer: pj });
        self.input(j, Input::Connected { peer: pi });
        for (asker, mailbox) in [(i, j), (j, i)] {
            if self.is_mailbox_of(asker, mailbox) {
                let epoch = self.nodes[asker].epoch;
                for delay in COLLECT_AGAIN_MS {
                    self.at(delay, Event::Collect { node: asker, mailbox, epoch });
                }
            }
        }
    }

    /// Whether node `mailbox` is one of node `i`'s mailboxes (chosen now or published).
    fn is_mailbox_of(&self, i: usize, mailbox: usize) -> bool {
        let (me, them) = (self.nodes[i].me, self.nodes[mailbox].me);
        let Some(store) = self.nodes[i].store() else { return false };
        choose(store, &me).unwrap_or_default().contains(&them)
            || store.mailboxes_of(&me).unwrap_or_default().contains(&them)
    }

    /// Node `i` collects now from each of its published mailboxes it can reach.
    pub(super) fn collect_now(&mut self, i: usize) {
        let me = self.nodes[i].me;
        let Some(store) = self.nodes[i].store() else { return };
        let mine = store.mailboxes_of(&me).unwrap_or_default();
        let to: Vec<usize> = mine.iter().filter_map(|m| self.by_author.get(m).copied()).collect();
        for mailbox in to {
            if self.reachable(i, mailbox) {
                self.collect(i, mailbox, 0);
            }
        }
    }

    /// A collect planned by [`World::connect`] is due: only while still connected.
    pub(super) fn collect_due(&mut self, i: usize, mailbox: usize, epoch: u64) {
        if self.nodes[i].epoch == epoch && self.reachable(i, mailbox) {
            self.collect(i, mailbox, 0);
        }
    }
}
