//! Sync through the core's sync concern, as the daemon's driver does it: a follow, a gap,
//! coming back and the final catch-up start a pull ([`Input::Pull`]) of an author's log
//! from the author's node; each question ([`Effect::Query`]) travels the simulated
//! network to the peer's core ([`Input::SyncRequest`]), which serves it from its store
//! ([`Effect::Serve`], with [`sync::serve`] and a friend's or a stranger's page) or
//! answers an offer ([`Effect::Respond`]); the answer comes back as
//! [`Input::PullAnswer`]. A peer out of reach, offline or crashed before answering
//! leaves the question unanswered: after the driver's 5 s the pull hears it failed
//! silently. Questions are not lost otherwise.

use std::collections::BTreeMap;

use kith_node::core::{
    sync::{self, Page, Pull, QueryFailure},
    AnswerId, Input, ReplyId,
};
use kith_protocol::{sync::Query, AuthorId, Topic};

use super::{Event, World};

/// How long the driver waits for a sync answer.
const QUERY_DEADLINE_MS: u64 = 5_000;

/// A sync request a node's core has not answered yet: who asked, in which run, for
/// which pull (none: an offer).
#[derive(Debug)]
pub(crate) struct Asked {
    asker: usize,
    epoch: u64,
    pull: Option<AnswerId>,
}

/// Sync requests waiting for their answers, by (node, reply).
pub(crate) type SyncWaiting = BTreeMap<(usize, u64), Asked>;

impl World {
    /// Node `i` now follows `target`: it subscribes to their topic and pulls their log
    /// from their node (as the driver does on a follow).
    pub(super) fn followed(&mut self, i: usize, target: AuthorId) {
        self.subscribe(i, Topic::Author(target).to_string());
        if let Some(&from) = self.by_author.get(&target) {
            let delay = self.rng.latency_ms();
            self.at(delay, Event::Sync { to: i, from, what: Pull::Author(target) });
        }
    }

    /// Node `i` starts pulling `what` from node `from`.
    pub(super) fn start_pull(&mut self, i: usize, from: usize, what: Pull) {
        let peer = self.nodes[from].peer;
        let node = &mut self.nodes[i];
        node.next_answer += 1;
        let answer = AnswerId(node.next_answer);
        self.input(i, Input::Pull { peer, what, answer });
    }

    /// Node `i` sends sync request `bytes` to the node of `peer`.
    pub(super) fn sync_query(
        &mut self,
        i: usize,
        peer: libp2p::PeerId,
        bytes: Vec<u8>,
        pull: Option<AnswerId>,
    ) {
        let epoch = self.nodes[i].epoch;
        match self.by_peer.get(&peer).copied() {
            Some(to) if self.reachable(i, to) => {
                let delay = self.rng.latency_ms();
                self.at(delay, Event::SyncAsk { to, from: i, epoch, bytes, pull });
            }
            _ => self.sync_unanswered(i, epoch, pull),
        }
    }

    /// The question of `pull` by node `asker` goes unanswered.
    fn sync_unanswered(&mut self, asker: usize, epoch: u64, pull: Option<AnswerId>) {
        let Some(pull) = pull else { return };
        let result = Err(QueryFailure { reason: "no answer".into(), silent: true });
        self.at(QUERY_DEADLINE_MS, Event::SyncReply { to: asker, epoch, pull, result });
    }

    /// A sync request from node `from` arrives at node `to`.
    pub(super) fn sync_ask(
        &mut self,
        to: usize,
        from: usize,
        epoch: u64,
        bytes: Vec<u8>,
        pull: Option<AnswerId>,
    ) {
        if !(self.nodes[to].online && self.nodes[to].core.is_some()) {
            return self.sync_unanswered(from, epoch, pull);
        }
        let reply = self.reply_id();
        self.sync_waiting.insert((to, reply), Asked { asker: from, epoch, pull });
        let peer = self.nodes[from].peer;
        self.input(to, Input::SyncRequest { from: peer, bytes, reply: ReplyId(reply) });
    }

    /// Whether inbound request `reply` of node `i` is a sync request.
    pub(super) fn is_sync_reply(&self, i: usize, reply: ReplyId) -> bool {
        self.sync_waiting.contains_key(&(i, reply.0))
    }

    /// Node `i` serves sync question `query` (as the driver does, with a friend's or a
    /// stranger's page; the simulation has no serving budget to run out of).
    pub(super) fn sync_serve(&mut self, i: usize, reply: ReplyId, query: Query, friend: bool) {
        let page = if friend { Page::FRIEND } else { Page::STRANGER };
        let Some(store) = self.nodes[i].store() else { return };
        match sync::answer(store, query, page) {
            Ok((bytes, _)) => self.sync_respond(i, reply, bytes),
            Err(_) => {
                if let Some(asked) = self.sync_waiting.remove(&(i, reply.0)) {
                    self.sync_unanswered(asked.asker, asked.epoch, asked.pull);
                }
            }
        }
    }

    /// Node `i` answers sync request `reply` with `bytes`: back to the asker if it can
    /// be reached.
    pub(super) fn sync_respond(&mut self, i: usize, reply: ReplyId, bytes: Vec<u8>) {
        let Some(Asked { asker, epoch, pull }) = self.sync_waiting.remove(&(i, reply.0)) else {
            return;
        };
        let Some(pull) = pull else { return };
        if self.reachable(i, asker) {
            let delay = self.rng.latency_ms();
            self.at(delay, Event::SyncReply { to: asker, epoch, pull, result: Ok(bytes) });
        } else {
            self.sync_unanswered(asker, epoch, Some(pull));
        }
    }

    /// The asker hears how its question went (unless it crashed meanwhile).
    pub(super) fn sync_reply(
        &mut self,
        to: usize,
        epoch: u64,
        pull: AnswerId,
        result: Result<Vec<u8>, QueryFailure>,
    ) {
        if self.nodes[to].epoch == epoch {
            self.input(to, Input::PullAnswer { answer: pull, result });
        }
    }

    /// Node `i` crashed: sync requests it had not answered go unanswered.
    pub(super) fn sync_crashed(&mut self, i: usize) {
        let lost: Vec<u64> =
            self.sync_waiting.range((i, 0)..=(i, u64::MAX)).map(|(k, _)| k.1).collect();
        for reply in lost {
            if let Some(asked) = self.sync_waiting.remove(&(i, reply)) {
                self.sync_unanswered(asked.asker, asked.epoch, asked.pull);
            }
        }
    }

    /// Node `i` is reachable again: it catches up with everyone it follows.
    pub(super) fn come_back(&mut self, i: usize) {
        self.nodes[i].online = true;
        self.catch_up(i);
        self.connect(i);
    }

    /// Node `i` pulls each followed author's log from the author's node.
    pub(super) fn catch_up(&mut self, i: usize) {
        let Some(store) = self.nodes[i].store() else { return };
        let me = self.nodes[i].me;
        for author in store.following(&me).unwrap_or_default() {
            if let Some(&from) = self.by_author.get(&author) {
                let delay = self.rng.latency_ms();
                self.at(delay, Event::Sync { to: i, from, what: Pull::Author(author) });
            }
        }
    }
}
