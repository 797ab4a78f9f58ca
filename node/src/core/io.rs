//! What goes into the core and what comes out: the ids that name waiting work, the
//! [`Input`]s, the [`Effect`]s, and the [`Answer`]s to control requests.

use kith_protocol::{sync::Query, AuthorId, RecordKind, VerifiedRecord};
use libp2p::{gossipsub::MessageId, Multiaddr, PeerId};

use super::{discovery, dm, group, sync};
use crate::{
    api::ApiError,
    ingest::Verdict,
    store::{DmRecord, DmStatus, Notification, StoreError},
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
    /// [`super::mailbox::LOOK_EVERY_MS`].
    Mailboxes,
    /// Delete the envelopes held for others past their TTL. The driver gives this once
    /// at start; the core asks for the next one every [`super::hold::SWEEP_EVERY_MS`].
    HoldSweep,
    /// Drop posts past their expiry time. The driver gives this once at start; the core
    /// asks for the next one every [`super::feeds::EXPIRY_EVERY_MS`].
    Expiry,
    /// Look at bootstrap peer number `.0` (see [`discovery`]).
    Bootstrap(usize),
    /// Look up subscribed tags and followed people, a moment after start.
    Lookups,
    /// Look at the sets of followed peers and mutual connections.
    Friends,
    /// A periodic sync round may be due: the driver gives generation 0 once at start;
    /// the core schedules the rest ([`sync::Pace`]), and a timer it replaced by another
    /// does nothing.
    SyncRound(u64),
    /// Own records went out on gossip a while ago: probe their topics
    /// ([`sync::Probes`]).
    Probe,
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
    /// The periodic sync round the core asked for ([`Effect::SyncRound`]) ended.
    SyncRoundDone {
        /// New records it stored.
        fetched: u64,
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
    /// How an [`Effect::Deposit`] went: how many of the recipient's mailboxes accepted
    /// the message.
    Deposited {
        /// The recipient.
        peer: AuthorId,
        /// The message.
        message: [u8; 16],
        /// Mailboxes that answered `Accepted`.
        accepted: usize,
    },
    /// An [`Effect::Receipt`] was taken directly or by one of the mailboxes.
    ReceiptSent {
        /// Its key.
        key: [u8; 32],
    },
    /// How an [`Effect::GroupDeposit`] went: how many of the member's mailboxes accepted
    /// queued request `n`.
    GroupDeposited {
        /// The member.
        peer: AuthorId,
        /// Which queued request.
        n: u64,
        /// Mailboxes that answered `Accepted`.
        accepted: usize,
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

/// Gossip topics, each with how long ago (ms) the youngest and the oldest of the records
/// of it that came by sync were written ([`Effect::GossipMissed`]).
pub type MissedTopics = Vec<MissedTopic>;

/// Records of one gossip topic that came by sync ([`Effect::GossipMissed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissedTopic {
    /// The topic.
    pub topic: String,
    /// How long ago the youngest ..= the oldest of them were written, ms.
    pub ages: std::ops::RangeInclusive<u64>,
    /// The youngest of them, encoded, at most [`sync::MAX_REGOSSIP`]: what the network
    /// layer passes on to the topic's mesh when gossip missed them there.
    pub records: Vec<Vec<u8>>,
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
    /// Records new to this node, written at most [`crate::core::sync::MISSED_WINDOW_MS`]
    /// ago, came by sync rather than gossip: for each gossip topic they went to, how long
    /// ago the youngest and the oldest of them were written, ms, and the youngest
    /// records. Whether gossip missed them, and what to do then, is the network layer's
    /// (`net/mend.rs`).
    GossipMissed {
        /// The topics.
        topics: MissedTopics,
    },
    /// Probe the meshes of these topics ([`sync::Probes`]): for each, ask the network for
    /// a few peers that take it and are outside this node's mesh of it, then send each
    /// peer one digest of its topics' entries ([`sync::probe_requests`]); the answers do
    /// not matter.
    Probe {
        /// From when the tag summaries count, ms.
        since: u64,
        /// Each gossip topic with its entry.
        topics: Vec<(String, sync::ProbeEntry)>,
    },
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
        /// Names it: once it was taken directly or by a mailbox, report
        /// [`Input::ReceiptSent`] with this (until then it is kept, and sent again after
        /// a restart).
        key: [u8; 32],
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
    /// Run a periodic sync round (with a few connected peers), then report
    /// [`Input::SyncRoundDone`].
    SyncRound,
    /// Sync with `peer` now, as with a new connection: its digest showed it holds
    /// records of a followed author that this node lacks.
    SyncWith(PeerId),
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
    /// Deposit message `message` for `peer` (`envelope`: its `/kith/dm/2` request sealed
    /// for `peer`'s person) with each of `mailboxes` (`/kith/mailbox/1`), then report
    /// [`Input::Deposited`].
    Deposit {
        /// The recipient.
        peer: AuthorId,
        /// The message.
        message: [u8; 16],
        /// The sealed deposit.
        envelope: Vec<u8>,
        /// `peer`'s mailboxes.
        mailboxes: Vec<AuthorId>,
    },
    /// Deposit queued group request `n` for member `peer` (`envelope`: the request,
    /// sealed for `peer`'s person) with each of `mailboxes`, then report
    /// [`Input::GroupDeposited`].
    GroupDeposit {
        /// The member.
        peer: AuthorId,
        /// Which queued request.
        n: u64,
        /// The sealed deposit.
        envelope: Vec<u8>,
        /// `peer`'s mailboxes.
        mailboxes: Vec<AuthorId>,
    },
    /// Collect now from this node's mailboxes (what a member waits for, a key share or
    /// an epoch deposited there, may have overtaken a request sent directly).
    CollectMailboxes,
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
