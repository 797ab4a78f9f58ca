//! The node's decisions as plain, synchronous code (issue #16; see
//! `docs/architecture.md`, "Core").
//!
//! [`Core::handle`] takes one [`Input`] together with the time and a random number
//! generator from outside, reads and writes the store, and returns the [`Effect`]s for
//! the driver to carry out (the daemon's async code in `node/src/node/`, or a
//! simulation). It never awaits, never reads the clock and never touches the network.
//! Each concern is a module owning its state; this module only routes.
//!
//! An answer that claims durability is held until the driver reports, with
//! [`Input::Flushed`], that the flush the core asked for ([`Effect::Flush`]) is done.
//!
//! ```no_run
//! # fn demo(core: &mut kith_node::core::Core, kind: kith_protocol::RecordKind) {
//! use kith_node::core::{AnswerId, Effect, Input};
//! let mut rng = rand_pcg::Pcg64Mcg::new(7);
//! let effects = core.handle(Input::Publish { kind, answer: AnswerId(1) }, 1_000, &mut rng);
//! // The record is stored; the driver flushes, then tells the core.
//! for effect in effects {
//!     if let Effect::Flush(flush) = effect {
//!         let done = core.handle(Input::Flushed { flush, result: Ok(()) }, 1_001, &mut rng);
//!         // `done` publishes the record on its topics and answers `AnswerId(1)`.
//! #       let _ = done;
//!     }
//! }
//! # }
//! ```

pub mod discovery;
pub mod dm;
pub mod feeds;
pub mod group;
pub mod hold;
mod io;
pub mod mailbox;
pub mod notify;
pub mod outbox;
pub mod sync;

use std::collections::BTreeSet;

use kith_protocol::{AuthorId, Keypair, RecordKind};
use rand_core::Rng;

pub(crate) use self::io::respond_encoded;
pub use self::io::{
    Answer, AnswerId, DmProto, Effect, FlushId, GossipMessage, Input, MissedTopic, MissedTopics,
    ReplyId, Timer,
};
use crate::{
    api::{ApiError, RecordCounters},
    ingest::Admission,
    store::Store,
};

/// What the core's concerns share: who this node is and its store.
pub struct Context {
    /// This node's person.
    pub me: AuthorId,
    /// Their keys (to sign and seal).
    pub keys: Keypair,
    /// What ingest decides with.
    pub admission: Admission,
    /// The store.
    pub store: Store,
    /// Threads that may check a batch of records' signatures at once.
    pub threads: usize,
    next_flush: u64,
    /// Flushes asked for with nobody waiting (a follow of this node's person).
    durable: BTreeSet<FlushId>,
}

impl Context {
    /// A new flush id.
    fn flush_id(&mut self) -> FlushId {
        self.next_flush += 1;
        FlushId(self.next_flush)
    }

    /// A new flush id for a flush nobody waits for.
    fn durable_flush(&mut self) -> FlushId {
        let flush = self.flush_id();
        self.durable.insert(flush);
        flush
    }
}

/// The node's decisions: one per concern, composed.
pub struct Core {
    cx: Context,
    feeds: feeds::Feeds,
    dm: dm::Dm,
    sync: sync::Sync,
    mailboxes: mailbox::Mailboxes,
    hold: hold::Hold,
    groups: group::Groups,
    discovery: discovery::Discovery,
}

impl Core {
    /// The core of the node of `keys`, over `store`.
    pub fn new(keys: Keypair, store: Store) -> Self {
        let me = keys.id();
        let admission = Admission::new(me);
        let durable = BTreeSet::new();
        let cx = Context { me, keys, admission, store, threads: 1, next_flush: 0, durable };
        let (feeds, dm, sync, mailboxes, hold, groups, discovery) = Default::default();
        Self { cx, feeds, dm, sync, mailboxes, hold, groups, discovery }
    }

    /// What this node holds for others as their mailbox, from now on (the defaults at
    /// first).
    pub fn set_mailbox_limits(&mut self, limits: crate::config::MailboxConfig) {
        self.hold.set_limits(limits);
    }

    /// The pace of the periodic sync rounds from now on ([`sync::Pace::FIXED_30_S`] at
    /// first).
    pub fn set_sync_pace(&mut self, pace: sync::Pace) {
        self.sync.rounds = sync::Rounds::new(pace);
    }

    /// Probes the topics of this node's own records `after` ms after they went out
    /// (`None`, as at first: never; [`sync::Probes`]).
    pub fn set_probe_after(&mut self, after: Option<u64>) {
        self.sync.probes.set_after(after);
    }

    /// Lets the checks of a batch of records (a sync answer) run on `threads` threads
    /// (1 at first). The outcome is the same; only the time differs.
    pub fn set_check_threads(&mut self, threads: usize) {
        self.cx.threads = threads.max(1);
    }

    /// Handles one input at time `now` (ms since the Unix epoch), drawing randomness
    /// from `rng`, and returns what the driver should do, in order.
    pub fn handle(&mut self, input: Input, now: u64, rng: &mut dyn Rng) -> Vec<Effect> {
        let cx = &mut self.cx;
        let follow_by_me = matches!(
            &input,
            Input::Publish { kind: RecordKind::Follow { .. } | RecordKind::Unfollow { .. }, .. }
        );
        let mut effects = match input {
            Input::Gossip(batch) => self.feeds.handle_gossip(cx, batch, now),
            Input::Publish { kind, answer } => self.feeds.handle_publish(cx, kind, answer, now),
            Input::MsgSend { message, answer } => self.dm.handle_send(cx, message, answer, now),
            Input::DmRequest { from, bytes, reply } => {
                self.dm.handle_request(cx, from, &bytes, reply, now)
            }
            Input::Dm2Request { from, bytes, reply } => {
                self.dm.handle_request2(cx, from, &bytes, reply, now)
            }
            Input::Collected { mailbox, items } => {
                self.groups.lend(self.dm.lend_device(cx, false, now));
                let (mut effects, rest) = self.groups.take_collected(cx, mailbox, items, now);
                let (device, changed) = self.groups.give_back();
                self.dm.return_device(device, changed);
                if !rest.is_empty() {
                    effects.extend(self.dm.handle_collected(cx, mailbox, rest, now));
                }
                effects
            }
            Input::MailboxRequest { from, bytes, reply } => {
                self.hold.handle_request(cx, from, &bytes, reply, now)
            }
            Input::DmDelivered { peer, message, result } => {
                self.dm.handle_reply(cx, &peer, message, result, now)
            }
            Input::Deposited { peer, message, accepted } => {
                self.dm.handle_deposited(cx, &peer, message, accepted, now)
            }
            Input::ReceiptSent { key } => self.dm.handle_receipt_sent(cx, &key),
            Input::Group { op: group::GroupOp::CirclePost { name, text }, answer } => {
                self.groups.lend(self.dm.lend_device(cx, true, now));
                let posted = self.groups.circle_post(cx, &name, text, now);
                let (device, changed) = self.groups.give_back();
                self.dm.return_device(device, changed);
                match posted {
                    Ok((kind, start)) => {
                        let mut effects = self.feeds.handle_publish(cx, kind, answer, now);
                        effects.extend(self.groups.start_after_flush(cx, start));
                        effects
                    }
                    Err(error) => vec![Effect::Answer { answer, result: Err(error) }],
                }
            }
            // The device is lent to the group concern where key shares are sealed or
            // opened on Olm sessions (issue #19).
            Input::Group { op, answer } => {
                self.groups.lend(self.dm.lend_device(cx, true, now));
                let effects = self.groups.handle_op(cx, op, answer, now);
                let (device, changed) = self.groups.give_back();
                self.dm.return_device(device, changed);
                effects
            }
            Input::GroupRequest { from, bytes, reply } => {
                self.groups.lend(self.dm.lend_device(cx, false, now));
                let effects = self.groups.handle_request(cx, from, &bytes, reply, now);
                let (device, changed) = self.groups.give_back();
                self.dm.return_device(device, changed);
                effects
            }
            Input::GroupDelivered { peer, n, result } => {
                self.groups.lend(self.dm.lend_device(cx, false, now));
                let effects = self.groups.handle_delivered(cx, &peer, n, result, now);
                let (device, changed) = self.groups.give_back();
                self.dm.return_device(device, changed);
                effects
            }
            Input::GroupDeposited { peer, n, accepted } => {
                self.groups.handle_deposited(cx, &peer, n, accepted, now)
            }
            Input::GroupHistory { peer, group, result } => {
                self.groups.handle_history(cx, &peer, &group, result, now)
            }
            Input::Timer(Timer::GroupOutbox) => self.groups.handle_due(cx, now),
            Input::Connected { peer } => {
                self.discovery.connected(peer);
                match AuthorId::from_peer_id(&peer) {
                    Ok(author) => {
                        self.mailboxes.connected(author, now);
                        let mut effects = self.dm.handle_due(cx, Some(&author), now);
                        effects.extend(self.groups.handle_connected(cx, &author, now));
                        effects
                    }
                    Err(_) => self.dm.handle_due(cx, None, now),
                }
            }
            Input::Pull { peer, what, answer } => {
                self.sync.handle_pull(cx, peer, what, answer, now)
            }
            Input::PullAnswer { answer, result } => {
                self.sync.handle_answer(cx, answer, result, now)
            }
            Input::PullStop { answer } => self.sync.handle_stop(answer),
            Input::Timer(Timer::SyncRound(generation)) => {
                self.sync.rounds.timer(generation, now, rng)
            }
            Input::Timer(Timer::Probe) => self.sync.probes.fire(cx),
            Input::SyncRoundDone { fetched } => self.sync.rounds.done(fetched, now, rng),
            Input::SyncRequest { from, bytes, reply } => {
                self.sync.handle_request(cx, from, &bytes, reply, now)
            }
            Input::PeerSubscribed { peer, topic } => {
                self.sync.handle_subscribed(cx, peer, &topic, now)
            }
            Input::Disconnected { peer } => {
                self.discovery.disconnected(&peer);
                if let Ok(author) = AuthorId::from_peer_id(&peer) {
                    self.mailboxes.disconnected(cx, &author, now);
                }
                Vec::new()
            }
            Input::MailboxesChanged => match mailbox::changed(cx) {
                Some(kind) => self.feeds.publish_unasked(cx, kind, now),
                None => Vec::new(),
            },
            Input::Timer(Timer::Mailboxes) => {
                let at = now.saturating_add(mailbox::LOOK_EVERY_MS);
                let mut effects = vec![Effect::Schedule { at, timer: Timer::Mailboxes }];
                if let Some(kind) = self.mailboxes.tick(cx, now) {
                    effects.extend(self.feeds.publish_unasked(cx, kind, now));
                }
                effects
            }
            Input::Timer(Timer::HoldSweep) => self.hold.handle_sweep(cx, now),
            Input::Discover(start) => self.discovery.start(cx, start, now),
            Input::Dialled { bootstrap, result } => {
                self.discovery.bootstrap_dialled(bootstrap, result, now)
            }
            Input::TagInterest { tag, on } => self.discovery.tag_interest(tag, on),
            Input::Providers(peers) => self.discovery.providers(cx, peers),
            Input::DhtTags(on) => self.discovery.set_dht_tags(cx, on),
            Input::Timer(Timer::Bootstrap(index)) => self.discovery.bootstrap_due(index, now),
            Input::Timer(Timer::Lookups) => self.discovery.lookups(cx),
            Input::Timer(Timer::Expiry) => feeds::Feeds::handle_expiry(cx, now),
            Input::Timer(Timer::Friends) => self.discovery.friends(cx, now, true),
            Input::Timer(Timer::Outbox) => {
                let mut effects = self.dm.handle_due(cx, None, now);
                effects.extend(self.groups.handle_due(cx, now));
                effects
            }
            Input::Timer(Timer::SendWait(answer)) => self.dm.handle_send_wait(cx, answer),
            Input::Timer(Timer::Devices) => {
                let at = now.saturating_add(dm::device::MAINTAIN_EVERY_MS);
                let mut effects = vec![Effect::Schedule { at, timer: Timer::Devices }];
                // Made here (at start) when there is a mutual connection (issue #19).
                let create = group::needs_device(cx);
                if let Some(kind) = self.dm.check_device(cx, create, true, now) {
                    effects.extend(self.feeds.publish_unasked(cx, kind, now));
                }
                effects
            }
            Input::Flushed { flush, result } => {
                if cx.durable.remove(&flush) {
                    if let Err(error) = result {
                        tracing::warn!(%error, "cannot flush a follow of this node's person");
                    }
                    return Vec::new();
                }
                let mut effects = self.dm.handle_flushed(cx, flush, &result, now);
                effects.extend(self.hold.handle_flushed(flush, &result));
                effects.extend(self.groups.handle_flushed(cx, flush, &result, now));
                let published = self.feeds.handle_flushed(flush, result);
                let topics = published.iter().filter_map(|e| match e {
                    Effect::Publish { topic, .. } => Some(topic.as_str()),
                    _ => None,
                });
                let probe = self.sync.probes.published(topics, now);
                effects.extend(published);
                effects.extend(probe);
                effects
            }
        };
        // Sync saw something new: the periodic rounds come at their short pace again.
        if self.sync.take_news() {
            effects.extend(self.sync.rounds.news(now, rng));
        }
        // A follow by or of this node's person changes who is mutual, and so who may hold
        // its messages.
        let me = cx.me;
        let follow_of_me = effects
            .iter()
            .any(|e| matches!(e, Effect::Stored(record) if feeds::is_follow_of(record, &me)));
        if follow_by_me {
            // Followed peers get in beyond the connection limits from now on.
            effects.extend(self.discovery.friends(cx, now, false));
        }
        if follow_by_me || follow_of_me {
            if let Some(kind) = mailbox::changed(cx) {
                effects.extend(self.feeds.publish_unasked(cx, kind, now));
            }
            // The first mutual connection: this node's device is made and announced
            // (below), so that key shares for it can go on Olm (issue #19).
            if group::needs_device(cx) {
                self.dm.return_device(None, true);
            }
        }
        // Device announcements of others stored: a group's creator passes them on to the
        // other members (issue #19: key shares on Olm sessions between members who are
        // not mutual connections).
        let announced: Vec<AuthorId> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Stored(record)
                    if record.record().author != me
                        && matches!(record.record().kind, RecordKind::Devices(_)) =>
                {
                    Some(record.record().author)
                }
                _ => None,
            })
            .collect();
        if !announced.is_empty() {
            // Key shares held for them are sealed now (issue #19), with the device lent.
            self.groups.lend(self.dm.lend_device(cx, false, now));
            effects.extend(self.groups.devices_announced(cx, &announced, now));
            let (device, changed) = self.groups.give_back();
            self.dm.return_device(device, changed);
        }
        // The first message sent or accepted in this run: the device is made (once) and
        // announced to mutual connections if its announcement is not the latest.
        if self.dm.take_device_wanted() {
            if let Some(kind) = self.dm.check_device(cx, true, false, now) {
                effects.extend(self.feeds.publish_unasked(cx, kind, now));
            }
        }
        effects
    }

    /// Whether this node's person may send `peer` a message (see [`dm::check_send`]):
    /// asked before the driver prepares attachments.
    ///
    /// # Errors
    /// The refusal.
    pub fn check_send(&self, peer: &AuthorId, text: &str, attaching: bool) -> Result<(), ApiError> {
        dm::check_send(&self.cx, peer, text, attaching)
    }

    /// This node's person.
    pub fn me(&self) -> AuthorId {
        self.cx.me
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.cx.store
    }

    /// Ingest counters so far.
    pub fn counters(&self) -> RecordCounters {
        self.feeds.counters()
    }

    /// Sync counters so far: (records fetched, records rejected).
    pub fn sync_counters(&self) -> (u64, u64) {
        self.sync.counters()
    }

    /// Counts gossip messages the driver could not hand to the core (ignored).
    pub fn count_lost(&mut self, n: u64) {
        self.feeds.count_lost(n);
    }
}

#[cfg(test)]
mod tests;
