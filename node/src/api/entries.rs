//! What replies carry: the entries of lists (feed items, thread entries, messages,
//! notifications, people, peers) and the node's status, with how each person is named.

use serde::{Deserialize, Serialize};

/// A file attached to a post or message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentEntry {
    /// BLAKE3 hash of the file (what `kith blob get` takes).
    pub hash: String,
    /// The file's name.
    pub name: String,
    /// Its MIME type.
    pub mime: String,
    /// Its size in bytes.
    pub size: u64,
    /// Width and height in pixels, for a picture.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dimensions: Option<(u32, u32)>,
    /// The thumbnail's hash, for a picture that has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub thumbnail: Option<String>,
    /// Whether this node holds the whole file now.
    #[serde(default)]
    pub local: bool,
}

/// The blob store, for `kith status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStatus {
    /// Pictures and files held.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Downloads in progress (or interrupted, to resume).
    pub partial: u64,
    /// The most bytes the store may hold.
    pub quota: u64,
    /// Chunks fetched (and checked) since the node started.
    #[serde(default)]
    pub chunks_fetched: u64,
}

/// How human output names a person besides their id and profile name: your petname for
/// them, and whether their name looks like another's (see [`crate::names`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Naming {
    /// Your petname for them.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub petname: Option<String>,
    /// Their profile name looks like another known person's name, or like a petname
    /// you gave someone else (after folding case, invisible characters and confusable
    /// letters): show their id next to it.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub lookalike: bool,
}

impl Naming {
    fn is_plain(&self) -> bool {
        self == &Self::default()
    }
}

/// A person a post mentions (`@<id>` in its text), so that human output can show the
/// mention as `@Name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    /// Their id, as written after `@`.
    pub id: String,
    /// Their display name, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Your petname for them, and whether their name looks like another's.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
}

/// One conversation in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// The other person.
    pub peer: String,
    /// Text of the latest message.
    pub last_text: String,
    /// Its timestamp, ms.
    pub timestamp: u64,
    /// Received messages not yet read.
    pub unread: u64,
    /// The other person's display name, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Petname and look-alike mark of the other person.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
}

/// One direct message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEntry {
    /// Message id.
    pub id: String,
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Text.
    pub text: String,
    /// Sender's timestamp, ms.
    pub timestamp: u64,
    /// `queued`, `delivered`, `refused` (sent) or `received`.
    pub status: String,
    /// The sender's display name, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from_name: Option<String>,
    /// Petname and look-alike mark of the sender.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Attached files.
    #[serde(default)]
    pub attachments: Vec<AttachmentEntry>,
}

/// A post as shown in feeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedItem {
    /// Record id.
    pub id: String,
    /// Author id.
    pub author: String,
    /// Position in the author's log.
    pub seq: u64,
    /// ms since the Unix epoch.
    pub timestamp: u64,
    /// The text.
    pub text: String,
    /// Normalised hashtags.
    pub tags: Vec<String>,
    /// The post replied to.
    pub reply_to: Option<String>,
    /// The author's display name, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub author_name: Option<String>,
    /// Petname and look-alike mark of the author.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
    /// The people the text mentions.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mentions: Vec<Mention>,
    /// Who reposted it into this feed, when it came as a repost.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reposted_by: Option<String>,
    /// The reposter's name, petname and look-alike mark, when it came as a repost.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reposter: Option<Box<Mention>>,
    /// Reaction counts per emoji.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty", default)]
    pub reactions: std::collections::BTreeMap<String, u64>,
    /// The person's own reaction, when they have reacted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub my_reaction: Option<String>,
    /// Attached files.
    #[serde(default)]
    pub attachments: Vec<AttachmentEntry>,
    /// A circle post (read with a key its author gave this node's person).
    #[serde(default)]
    pub private: bool,
}

/// One record of a conversation tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadEntry {
    /// Record id.
    pub id: String,
    /// Author id.
    pub author: String,
    /// The text.
    pub text: String,
    /// The record replied to (`None` for the root).
    pub parent: Option<String>,
    /// ms since the epoch.
    pub timestamp: u64,
    /// Depth in the tree (0 for the root).
    pub depth: usize,
    /// Reaction counts per emoji.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty", default)]
    pub reactions: std::collections::BTreeMap<String, u64>,
    /// The person's own reaction, when they have reacted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub my_reaction: Option<String>,
    /// The author's display name, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub author_name: Option<String>,
    /// Petname and look-alike mark of the author.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
    /// The people the text mentions.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mentions: Vec<Mention>,
    /// Attached files.
    #[serde(default)]
    pub attachments: Vec<AttachmentEntry>,
}

/// A petname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameEntry {
    /// Whose.
    pub id: String,
    /// The petname.
    pub petname: String,
    /// Their profile name, when known.
    pub name: Option<String>,
    /// Petname and look-alike mark of the person.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
}

/// A blocked or muted person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModerationEntry {
    /// Their id.
    pub id: String,
    /// Blocked.
    pub blocked: bool,
    /// Muted.
    pub muted: bool,
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationEntry {
    /// `reply`, `mention`, `reaction`, `repost`, `follow`, `mutual` or `message`.
    pub kind: String,
    /// Who caused it.
    pub from: String,
    /// The record or message id.
    pub record: String,
    /// When, ms.
    pub timestamp: u64,
    /// Whether it had been listed before.
    pub read: bool,
    /// The display name of `from`, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Petname and look-alike mark of `from`.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
    /// The people the text mentions.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mentions: Vec<Mention>,
    /// The record it is about, when that is not `record` itself: the post replied to,
    /// reacted to or reposted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    /// A snippet: the reply or mentioning post, the post reacted to or reposted, or the
    /// message (when still stored).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub text: Option<String>,
    /// The emoji of a reaction.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub emoji: Option<String>,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// Peer id.
    pub id: String,
    /// Remote address.
    pub addr: String,
    /// Gossipsub score, if scored.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub score: Option<f64>,
    /// How it is connected: `direct`, or `relayed` (through a relay only).
    #[serde(default = "direct")]
    pub connection: String,
    /// The display name of the person whose node it is, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Petname and look-alike mark of that person.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
}

pub(super) fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn direct() -> String {
    "direct".into()
}

/// Reachability from outside and relaying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NatStatus {
    /// `public`, `private` or `unknown` (AutoNAT).
    pub reachability: String,
    /// The address peers confirmed they can dial, when public.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub public_addr: Option<String>,
    /// Relayed addresses held through relay reservations (when private).
    pub relay_reservations: Vec<String>,
    /// Whether this node relays for others: `off`, `friends` or `open`.
    pub relay: String,
    /// Peers holding a reservation on this node.
    pub relaying_for: usize,
    /// Reservations this node refused (not a friend, or over the limits).
    pub relay_refused: u64,
    /// Relayed connections upgraded to direct ones by hole punching.
    pub holepunch_ok: u64,
    /// Hole punches that failed.
    pub holepunch_failed: u64,
}

/// One person in a following/followers list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowEntry {
    /// Their id.
    pub id: String,
    /// Whether the follow goes both ways.
    pub mutual: bool,
    /// Their display name, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Petname and look-alike mark of the person.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
}

/// A profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Whose.
    pub id: String,
    /// Display name (`None` when no profile is known).
    pub name: Option<String>,
    /// Biography.
    pub bio: Option<String>,
    /// Whether this author was seen publishing two records with one seq.
    pub forked: bool,
    /// The highest seq of the author's log held here (0: none).
    #[serde(default)]
    pub latest_seq: u64,
    /// How many records of the author's log are held here: equal to `latest_seq` when
    /// the log held is complete (no gap), whatever records this node can read.
    #[serde(default)]
    pub log_records: u64,
    /// Petname and look-alike mark of the person.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
}

/// Ingest counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCounters {
    /// Gossip messages received.
    pub received: u64,
    /// New records stored.
    pub accepted: u64,
    /// Refused as invalid (the sender is penalised).
    pub rejected: u64,
    /// Dropped without penalty (overload).
    pub ignored: u64,
    /// Already known.
    pub duplicate: u64,
    /// Two records at one author/seq.
    pub forks: u64,
    /// Gossip messages, direct messages and sync requests dropped by rate limits.
    #[serde(default)]
    pub rate_limited: u64,
    /// Valid records this node does not keep (see `docs/protocol.md`, what a node
    /// keeps); forwarded when the topic's owner needs them, else dropped.
    #[serde(default)]
    pub unwanted: u64,
}

/// History sync state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCounters {
    /// Peers being synced with right now.
    pub peers_syncing: u64,
    /// Records fetched by sync since start.
    pub records_fetched: u64,
    /// Records from sync refused as invalid.
    pub records_rejected: u64,
    /// Sync rounds completed.
    pub rounds: u64,
    /// When the last round ended, ms since the epoch (0: none yet).
    pub last_round_ms: u64,
}

/// Node status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Own id.
    pub id: String,
    /// Connected peers.
    pub peers: usize,
    /// Peers in any gossip mesh.
    pub mesh_peers: usize,
    /// Connected peers whose gossip score fell below the graylist threshold.
    #[serde(default)]
    pub peers_graylisted: usize,
    /// Connected peers with a negative gossip score.
    #[serde(default)]
    pub peers_penalised: usize,
    /// Gossip topics subscribed.
    pub topics: Vec<String>,
    /// Records stored.
    pub records: u64,
    /// Posts stored.
    pub posts: u64,
    /// Direct messages stored.
    pub messages: u64,
    /// Messages waiting in the outbox.
    pub outbox: usize,
    /// Private groups this node's person is in.
    #[serde(default)]
    pub groups: usize,
    /// Group requests (messages, key shares, membership changes) waiting for members.
    #[serde(default)]
    pub group_outbox: usize,
    /// Circles of this node's person.
    #[serde(default)]
    pub circles: usize,
    /// Notifications not yet listed.
    pub unread_notifications: u64,
    /// People followed.
    pub following: usize,
    /// Known followers.
    pub followers: usize,
    /// Listen addresses.
    pub addrs: Vec<String>,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Gossip ingest counters.
    pub record_counters: RecordCounters,
    /// Connections refused by the connection limits since start.
    #[serde(default)]
    pub connections_refused: u64,
    /// Strangers' connections closed to make room for followed peers since start.
    #[serde(default)]
    pub connections_evicted: u64,
    /// Inbound requests (messages, sync, files) refused since start because the node was
    /// already handling as many as it handles at once.
    #[serde(default)]
    pub requests_refused: u64,
    /// History sync.
    pub sync: SyncCounters,
    /// Reachability, relay reservations and hole punching.
    #[serde(default)]
    pub nat: NatStatus,
    /// Pictures and files.
    #[serde(default)]
    pub blobs: BlobStatus,
}

/// Who holds messages for this node's person while they are offline, and for whom this
/// node holds (`kith mailbox`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxStatus {
    /// `auto` (chosen among mutual connections, seen online the longest first) or
    /// `manual` (chosen by hand with `kith mailbox add`).
    pub mode: String,
    /// The holders now, in order of preference.
    pub holders: Vec<MailboxHolder>,
    /// Whether the published mailbox record names exactly these (it is published when
    /// the list changes).
    pub published: bool,
    /// People whose mailbox record names this node, with what it holds for them.
    pub holding: Vec<HeldFor>,
}

/// One of this node's mailboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxHolder {
    /// Their id.
    pub id: String,
    /// Their profile name, when known.
    pub name: Option<String>,
    /// Petname and look-alike mark of the person.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
    /// How long this node has seen them online, seconds.
    pub online_s: u64,
}

/// Someone whose mailbox record names this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldFor {
    /// Their id.
    pub id: String,
    /// Their profile name, when known.
    pub name: Option<String>,
    /// Petname and look-alike mark of the person.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
    /// Sealed messages held for them now.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// One group this node's person is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEntry {
    /// The group's id (32 hex digits).
    pub id: String,
    /// Its name, as the creator chose it.
    pub name: String,
    /// Every current member, the creator included.
    pub members: Vec<String>,
    /// The creator.
    pub creator: String,
    /// Messages from others since the group's thread was last read.
    #[serde(default)]
    pub unread: u64,
}

/// One of our circles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircleEntry {
    /// Its name.
    pub name: String,
    /// Its members.
    pub members: Vec<String>,
}

/// One message of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMessageEntry {
    /// Message id.
    pub id: String,
    /// Who sent it.
    pub from: String,
    /// The text.
    pub text: String,
    /// When it was written (the sender's clock), ms since the Unix epoch.
    pub timestamp: u64,
    /// The sender's display name, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from_name: Option<String>,
    /// Petname and look-alike mark of the sender.
    #[serde(skip_serializing_if = "Naming::is_plain", default)]
    pub naming: Naming,
}
