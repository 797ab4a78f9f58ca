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
pub mod mailbox;
pub mod notify;
pub mod outbox;
pub mod sync;

use std::collections::BTreeSet;

use kith_protocol::{sync::Query, AuthorId, Keypair, RecordKind, VerifiedRecord};
use libp2p::{gossipsub::MessageId, Multiaddr, PeerId};
use rand_core::Rng;

use crate::{
    api::{ApiError, RecordCounters},
    ingest::Admission,
    net::Verdict,
    store::{DmRecord, DmStatus, Notification, Store, StoreError},
};

/// Names a control request waiting for its answer (chosen by the driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnswerId(pub u64);

/// Names a flush the core asked for (chosen by the core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlushId(pub u64);

/// Names an inbound request waiting for its response (chosen by the driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplyId(pub u64);

/// What a timer the core scheduled is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Look at the outbox: start the lanes whose retry time has come. The driver also
    /// gives this once at start (after a restart every queue is tried at once).
    Outbox,
    /// `msg send` has waited long enough for its first delivery attempt.
    SendWait(AnswerId),
    /// Look at this node's device keys: rotate the fallback key when due and publish the
    /// new announcement. The driver gives this once at start; the core asks for the next
    /// one every hour.
    Devices,
    /// Look at the group outbox: start the members' queues whose retry time has come.
    GroupOutbox,
    /// Count peers' time online and look at the choice of this node's mailboxes. The
    /// driver gives this once at start; the core asks for the next one every
    /// [`mailbox::LOOK_EVERY_MS`].
    Mailboxes,
    /// Delete the envelopes held for others past their TTL. The driver gives this once
    /// at start; the core asks for the next one every [`hold::SWEEP_EVERY_MS`].
    HoldSweep,
    /// Drop posts past their expiry time. The driver gives this once at start; the core
    /// asks for the next one every [`feeds::EXPIRY_EVERY_MS`].
    Expiry,
    /// Look at bootstrap peer number `.0` (see [`discovery`]).
    Bootstrap(usize),
    /// Look up subscribed tags and followed people, a moment after start.
    Lookups,
    /// Look at the sets of followed peers and mutual connections.
    Friends,
}

/// One gossip message as it came from the network.
#[derive(Debug, Clone)]
pub struct GossipMessage {
    /// The peer that forwarded it (who gets the verdict).
    pub from: PeerId,
    /// Gossipsub's id of the message (to report the verdict on).
    pub id: MessageId,
    /// The topic it came on.
    pub topic: String,
    /// The encoded record.
    pub bytes: Vec<u8>,
}

/// What happens to the core.
#[derive(Debug)]
pub enum Input {
    /// Gossip messages, in the order they came (a batch: checking signatures costs, so
    /// the driver hands them over together, off the async threads).
    Gossip(Vec<GossipMessage>),
    /// Append a record of `kind` to this node's own log and publish it.
    Publish {
        /// What the record says.
        kind: RecordKind,
        /// Who waits for the answer.
        answer: AnswerId,
    },
    /// `msg send`: queue a message and try it (admission again, seal, store).
    MsgSend {
        /// The message.
        message: dm::Outgoing,
        /// Who waits for the answer.
        answer: AnswerId,
    },
    /// An inbound `/kith/dm/2` request (a sealed message or a one-time key claim).
    Dm2Request {
        /// The peer it came from.
        from: PeerId,
        /// The request.
        bytes: Vec<u8>,
        /// Where the response goes.
        reply: ReplyId,
    },
    /// An inbound `/kith/mailbox/1` request (a deposit, a collect, an acknowledgement).
    MailboxRequest {
        /// The peer it came from.
        from: PeerId,
        /// The request.
        bytes: Vec<u8>,
        /// Where the response goes.
        reply: ReplyId,
    },
    /// A group request (`kith group ...`).
    Group {
        /// What to do.
        op: group::GroupOp,
        /// Who waits for the answer.
        answer: AnswerId,
    },
    /// An inbound `/kith/group/1` request.
    GroupRequest {
        /// The peer it came from.
        from: PeerId,
        /// The request.
        bytes: Vec<u8>,
        /// Where the response goes.
        reply: ReplyId,
    },
    /// How an [`Effect::GroupDeliver`] went: the member's reply, or why there was none.
    GroupDelivered {
        /// The member.
        peer: AuthorId,
        /// Which queued request.
        n: u64,
        /// The reply's bytes, or the failure.
        result: Result<Vec<u8>, String>,
    },
    /// The answer to an [`Effect::GroupAsk`].
    GroupHistory {
        /// The member asked.
        peer: AuthorId,
        /// The group.
        group: [u8; 16],
        /// The reply's bytes, or the failure.
        result: Result<Vec<u8>, String>,
    },
    /// An inbound direct message request.
    DmRequest {
        /// The peer it came from.
        from: PeerId,
        /// The request.
        bytes: Vec<u8>,
        /// Where the response goes.
        reply: ReplyId,
    },
    /// How an [`Effect::Deliver`] went: the peer's reply, or why there was none.
    DmDelivered {
        /// The recipient.
        peer: AuthorId,
        /// The message.
        message: [u8; 16],
        /// The reply's bytes, or the failure.
        result: Result<Vec<u8>, String>,
    },
    /// Pull `what` from `peer` (see [`sync`]); answered with [`Answer::Pulled`].
    Pull {
        /// The peer asked.
        peer: PeerId,
        /// What is asked for.
        what: sync::Pull,
        /// Who waits for the answer (also names the pull).
        answer: AnswerId,
    },
    /// The answer to the question an [`Effect::Query`] of the pull `answer` asked, or
    /// why there was none.
    PullAnswer {
        /// The pull.
        answer: AnswerId,
        /// The response's bytes, or the failure.
        result: Result<Vec<u8>, sync::QueryFailure>,
    },
    /// The pull `answer` took too long: ask nothing more (it is not answered).
    PullStop {
        /// The pull.
        answer: AnswerId,
    },
    /// An inbound sync request.
    SyncRequest {
        /// The peer it came from.
        from: PeerId,
        /// The request.
        bytes: Vec<u8>,
        /// Where the response goes.
        reply: ReplyId,
    },
    /// `peer` subscribed to gossip `topic` (our recent records there are offered).
    PeerSubscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: String,
    },
    /// A connection to `peer` was made.
    Connected {
        /// The peer.
        peer: PeerId,
    },
    /// The last connection to `peer` closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// Envelopes collected from `mailbox`, one of this node's mailboxes (the answer to a
    /// collect), oldest first.
    Collected {
        /// The mailbox.
        mailbox: PeerId,
        /// What it held for this node.
        items: Vec<kith_protocol::mailbox::Held>,
    },
    /// The person changed how this node's mailboxes are chosen: look at the choice now.
    MailboxesChanged,
    /// The node starts: discovery begins (see [`discovery`]).
    Discover(discovery::Start),
    /// How an [`Effect::Dial`] of a bootstrap peer went: the peer dialled, or why not.
    Dialled {
        /// Which bootstrap peer.
        bootstrap: usize,
        /// The peer reached, or the failure.
        result: Result<PeerId, String>,
    },
    /// This node's person subscribed to a hashtag (`on`) or unsubscribed.
    TagInterest {
        /// The tag.
        tag: kith_protocol::Tag,
        /// Subscribed or not.
        on: bool,
    },
    /// The answer to an [`Effect::FindTagPeers`]: others who announced the tag.
    Providers(Vec<PeerId>),
    /// The `dht_tags` setting changed.
    DhtTags(bool),
    /// A timer the core scheduled is due.
    Timer(Timer),
    /// A flush the core asked for is done (or failed).
    Flushed {
        /// Which one.
        flush: FlushId,
        /// Its outcome.
        result: Result<(), StoreError>,
    },
}

/// What the core answers a control request with.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The record was appended to this node's log, flushed and published.
    Published(Box<VerifiedRecord>),
    /// The message was stored and delivered, or is queued; flushed either way.
    MsgSent {
        /// Its id.
        id: kith_protocol::dm::MessageId,
        /// Delivered or queued.
        status: DmStatus,
    },
    /// A pull ended.
    Pulled(sync::Pulled),
    /// A group request was carried out (and flushed).
    Group(group::GroupAnswer),
}

/// Which direct message exchange a delivery uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmProto {
    /// `/kith/dm/1`: sealed with keys derived from the identity keys (a peer that has
    /// not announced a device).
    V1,
    /// `/kith/dm/2`: an Olm session between devices.
    V2,
}

/// What the driver does for the core, in the order given.
#[derive(Debug)]
pub enum Effect {
    /// Publish `bytes` on gossip `topic`.
    Publish {
        /// The topic.
        topic: String,
        /// The encoded record.
        bytes: Vec<u8>,
    },
    /// Report the verdict on a gossip message.
    Verdict {
        /// The message.
        id: MessageId,
        /// The peer that forwarded it.
        from: PeerId,
        /// The verdict.
        verdict: Verdict,
    },
    /// A record new to this node was stored: thumbnails of its pictures to fetch.
    Stored(Box<VerifiedRecord>),
    /// A new notification was stored: to live notification streams.
    Notified(Notification),
    /// A new record live feeds may show (the driver turns it into a feed item when
    /// someone watches).
    LivePost(Box<VerifiedRecord>),
    /// The log of `author`, whom this node follows, has a gap: fetch it from `peer`
    /// (sync is the driver's for now).
    FillGap {
        /// Who sent the record after the gap.
        peer: PeerId,
        /// Whose log.
        author: AuthorId,
    },
    /// Send direct message request `bytes` (message `message`) to `peer`, then report
    /// [`Input::DmDelivered`]. `lookup`: the remembered addresses failed before, so ask
    /// the DHT when not connected.
    Deliver {
        /// The recipient.
        peer: AuthorId,
        /// The message.
        message: [u8; 16],
        /// The sealed request.
        bytes: Vec<u8>,
        /// Whether to look the peer up.
        lookup: bool,
        /// Which exchange carries it.
        proto: DmProto,
    },
    /// Send queued group request `n` (`bytes`) to member `peer`, then report
    /// [`Input::GroupDelivered`].
    GroupDeliver {
        /// The member.
        peer: AuthorId,
        /// Which queued request.
        n: u64,
        /// The request.
        bytes: Vec<u8>,
    },
    /// Ask member `peer` for the newest messages of `group` (`bytes`: the request),
    /// then report [`Input::GroupHistory`]; only if connected.
    GroupAsk {
        /// The member.
        peer: AuthorId,
        /// The group.
        group: [u8; 16],
        /// The request.
        bytes: Vec<u8>,
    },
    /// Send sync request `bytes` to `peer`; with `pull`, report its answer (or the
    /// failure, a silent one when it did not come in time) as [`Input::PullAnswer`];
    /// without, the answer does not matter (an offer).
    Query {
        /// The peer asked.
        peer: PeerId,
        /// The encoded request.
        bytes: Vec<u8>,
        /// The pull it belongs to.
        pull: Option<AnswerId>,
    },
    /// Answer sync request `reply` from `peer` with [`sync::serve`] on `query`, within
    /// the serving budget: a `friend`'s with [`sync::Page::FRIEND`], a stranger's with
    /// [`sync::Page::STRANGER`] (and dropped when the budget is spent).
    Serve {
        /// Which request.
        reply: ReplyId,
        /// Who asked.
        peer: PeerId,
        /// The question.
        query: Box<Query>,
        /// Whether the asker is followed by or follows this node's person.
        friend: bool,
    },
    /// Answer inbound request `reply` with `bytes`.
    Respond {
        /// Which request.
        reply: ReplyId,
        /// The response.
        bytes: Vec<u8>,
    },
    /// A direct message was received and stored: its attachments are to be fetched (its
    /// notification, unless its sender is `hidden`, is an [`Effect::Notified`]).
    Received {
        /// Who sent it.
        sender: AuthorId,
        /// The stored message.
        record: Box<DmRecord>,
        /// Its id.
        message: [u8; 16],
        /// Whether its sender is muted or blocked.
        hidden: bool,
    },
    /// Tell `mailbox` that these envelopes it held for this node are stored (it deletes
    /// them); the answer does not matter.
    MailboxAck {
        /// The mailbox.
        mailbox: AuthorId,
        /// The envelopes.
        ids: Vec<kith_protocol::mailbox::HeldId>,
    },
    /// Send an end-to-end receipt to `peer`: `request` on `/kith/dm/2` directly, and
    /// when that fails, `deposit` with each of `mailboxes` (`/kith/mailbox/1`).
    Receipt {
        /// Whose messages it acknowledges.
        peer: AuthorId,
        /// The `/kith/dm/2` request.
        request: Vec<u8>,
        /// The same request sealed for a deposit.
        deposit: Vec<u8>,
        /// `peer`'s mailboxes.
        mailboxes: Vec<AuthorId>,
    },
    /// Report [`Input::Timer`] with `timer` at `at` (ms since the Unix epoch).
    Schedule {
        /// When.
        at: u64,
        /// Which.
        timer: Timer,
    },
    /// Flush the store, then report [`Input::Flushed`] with this id.
    Flush(FlushId),
    /// Dial `addr`; for a bootstrap peer report [`Input::Dialled`].
    Dial {
        /// The address.
        addr: Multiaddr,
        /// Which bootstrap peer it is, if one.
        bootstrap: Option<usize>,
    },
    /// Dial `peer` at whatever addresses the network knows.
    DialPeer(PeerId),
    /// Connect to this person if not connected, finding their addresses in the DHT.
    Reach(AuthorId),
    /// Announce interest in the tag in the DHT and report the others who announced it
    /// with [`Input::Providers`].
    FindTagPeers(kith_protocol::Tag),
    /// Stop renewing the DHT announcement of interest in the tag.
    StopProviding(kith_protocol::Tag),
    /// The network's sets: followed peers (let in beyond the connection limits) and,
    /// with the relay for friends, mutual connections (relayed for).
    Friends {
        /// Peers this node's person follows.
        followed: Vec<PeerId>,
        /// Mutual connections, when the relay serves them.
        mutual: Option<Vec<PeerId>>,
    },
    /// Answer a control request.
    Answer {
        /// Which one.
        answer: AnswerId,
        /// The answer.
        result: Result<Answer, ApiError>,
    },
}

/// The effect that answers inbound request `reply` with an encoded reply, or, when the
/// reply could not be encoded (it cannot happen for kith's replies), with nothing (the
/// peer takes an empty reply as a failure and tries again later).
pub(crate) fn respond_encoded<E: std::fmt::Display>(
    reply: ReplyId,
    encoded: Result<Vec<u8>, E>,
) -> Effect {
    let bytes = encoded.unwrap_or_else(|error| {
        tracing::error!(%error, "cannot encode a reply");
        Vec::new()
    });
    Effect::Respond { reply, bytes }
}

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

    /// Lets the checks of a batch of records (a sync answer) run on `threads` threads
    /// (1 at first). The outcome is the same; only the time differs.
    pub fn set_check_threads(&mut self, threads: usize) {
        self.cx.threads = threads.max(1);
    }

    /// Handles one input at time `now` (ms since the Unix epoch), drawing randomness
    /// from `rng`, and returns what the driver should do, in order.
    pub fn handle(&mut self, input: Input, now: u64, rng: &mut dyn Rng) -> Vec<Effect> {
        let _ = rng;
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
                self.dm.handle_collected(cx, mailbox, items, now)
            }
            Input::MailboxRequest { from, bytes, reply } => {
                self.hold.handle_request(cx, from, &bytes, reply, now)
            }
            Input::DmDelivered { peer, message, result } => {
                self.dm.handle_reply(cx, &peer, message, result, now)
            }
            Input::Group { op, answer } => self.groups.handle_op(cx, op, answer, now),
            Input::GroupRequest { from, bytes, reply } => {
                self.groups.handle_request(cx, from, &bytes, reply, now)
            }
            Input::GroupDelivered { peer, n, result } => {
                self.groups.handle_delivered(cx, &peer, n, result, now)
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
                if let Some(kind) = self.dm.check_device(cx, false, true, now) {
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
                effects.extend(self.feeds.handle_flushed(flush, result));
                effects
            }
        };
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
