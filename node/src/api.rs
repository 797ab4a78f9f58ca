//! The control API: one request enum and one response enum, used in-process by tests and
//! over the control socket by the CLI. Ids travel as strings and are resolved by the node
//! (full ids, petnames, names, id tails, record prefixes: [`crate::resolve`]). A failed
//! request answers [`Response::Error`] with an [`ErrorKind`].

mod entries;
mod error;
mod settings;

use entries::is_zero;
pub use entries::*;
pub use error::{ApiError, ErrorKind};
pub use settings::{FixedSetting, LiveSettings, NodeSettings};

use serde::{Deserialize, Serialize};

/// A request to the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Own id and listen addresses.
    Id,
    /// Shut the daemon down cleanly (answers first).
    Stop,
    /// Counters and state.
    Status,
    /// Connected peers.
    Peers,
    /// Connect to a peer now.
    Dial {
        /// A multiaddr, with or without `/p2p/<id>`; or a person (id, petname, name or
        /// id tail), found through remembered addresses and the DHT.
        addr: String,
    },
    /// Make an invite link.
    Invite {
        /// Valid for this long, ms (default 7 days).
        #[serde(default)]
        expires_in_ms: Option<u64>,
    },
    /// Add the person behind an invite link: connect, follow, give a petname.
    Add {
        /// The link.
        link: String,
        /// The petname to give them.
        #[serde(default)]
        petname: Option<String>,
    },
    /// Sign and publish a post.
    Post {
        /// The text.
        text: String,
        /// Record id of the post replied to.
        reply_to: Option<String>,
        /// Every node drops the post this many ms after it is written.
        #[serde(default)]
        expires_in_ms: Option<u64>,
        /// Files to attach: absolute paths the daemon reads.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attach: Vec<String>,
    },
    /// The conversation a record belongs to: root and every known reply, as a tree.
    Thread {
        /// Any record of the conversation.
        id: String,
    },
    /// React to a record (replaces an earlier reaction of ours).
    React {
        /// The record.
        id: String,
        /// The reaction (an emoji).
        emoji: String,
    },
    /// Withdraw our reaction to a record.
    Unreact {
        /// The record.
        id: String,
    },
    /// Share someone's post with our followers.
    Repost {
        /// The post.
        id: String,
    },
    /// Withdraw our repost of a post.
    Unrepost {
        /// The post (or our repost of it).
        id: String,
    },
    /// Publish a signed tombstone for one of our records.
    Delete {
        /// The record.
        id: String,
    },
    /// Drop everything from a person; refuse their messages and connections.
    Block {
        /// Their id.
        id: String,
    },
    /// Undo [`Request::Block`].
    Unblock {
        /// Their id.
        id: String,
    },
    /// Keep syncing a person but hide them from feeds and notifications.
    Mute {
        /// Their id.
        id: String,
    },
    /// Undo [`Request::Mute`].
    Unmute {
        /// Their id.
        id: String,
    },
    /// Everyone blocked or muted.
    Blocked,
    /// Replies, mentions, reactions, reposts, follows and messages for us.
    Notifications {
        /// Stream new ones instead (each marked read once sent).
        #[serde(default)]
        live: bool,
        /// Only those not listed before.
        #[serde(default)]
        unread: bool,
        /// At most this many (default and cap 200).
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Posts, newest first; with `live`, a stream of new posts instead.
    Feed {
        /// Only posts with this hashtag.
        tag: Option<String>,
        /// Only posts by this author.
        author: Option<String>,
        /// At most this many.
        limit: Option<usize>,
        /// Stream new posts until the client goes away.
        #[serde(default)]
        live: bool,
        /// Only posts older than this one (a record id or prefix): the next page.
        #[serde(default)]
        before: Option<String>,
    },
    /// Follow a person.
    Follow {
        /// Their id.
        id: String,
    },
    /// Stop following a person.
    Unfollow {
        /// Their id.
        id: String,
    },
    /// Whom this node's person follows.
    Following,
    /// Who follows this node's person.
    Followers,
    /// Subscribe to a hashtag.
    Subscribe {
        /// The tag, with or without `#`.
        tag: String,
    },
    /// Unsubscribe from a hashtag.
    Unsubscribe {
        /// The tag, with or without `#`.
        tag: String,
    },
    /// Subscribed hashtags.
    Tags,
    /// Publish a new profile (unset fields keep their current value).
    ProfileSet {
        /// Display name.
        name: Option<String>,
        /// Biography.
        bio: Option<String>,
    },
    /// Show a profile (own when `id` is `None`).
    ProfileShow {
        /// Whose.
        id: Option<String>,
    },
    /// Send a direct message to a mutual connection.
    MsgSend {
        /// The recipient's id.
        to: String,
        /// The text.
        text: String,
        /// Files to attach: absolute paths the daemon reads.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attach: Vec<String>,
    },
    /// Conversations, newest first.
    MsgInbox,
    /// One history-sync round with every connected peer now.
    Sync,
    /// Give a person a petname (or take it away).
    Name {
        /// The person.
        id: String,
        /// The petname; `None` removes theirs.
        petname: Option<String>,
    },
    /// Every petname.
    Names,
    /// Fetch a blob (a picture or file) from whoever has it, check its hash, and save it;
    /// progress is streamed before the answer.
    BlobGet {
        /// The blob's hash (64 hex digits), as attachments list it.
        hash: String,
        /// Where to save it (an absolute path); the store's copy when not given.
        #[serde(default)]
        out: Option<String>,
    },
    /// Messages with one person, oldest first; marks them read.
    MsgThread {
        /// The other person's id.
        peer: String,
        /// At most this many (the latest).
        limit: Option<usize>,
    },
    /// A fresh one-time sign-in address of the daemon's local web interface.
    Web,
    /// Who holds messages for this node's person while they are offline, and for whom
    /// this node holds.
    Mailbox,
    /// Choose a mailbox by hand (from then on the list is the hand-chosen one).
    MailboxAdd {
        /// The holder: a mutual connection.
        id: String,
    },
    /// Stop using someone as a mailbox (a hand-chosen one is taken off the list; one
    /// chosen automatically is never chosen again).
    MailboxRemove {
        /// The holder.
        id: String,
    },
    /// A private group of this node's person and some of their mutual connections.
    GroupCreate {
        /// Its name.
        name: String,
        /// The other members (ids, petnames, names).
        #[serde(default)]
        members: Vec<String>,
    },
    /// The creator adds a mutual connection to a group.
    GroupAdd {
        /// The group (id, or a name unique among this node's groups).
        group: String,
        /// Who.
        id: String,
        /// Give them the messages sent before they joined (the session keys and
        /// ciphertexts this node holds).
        #[serde(default)]
        history: bool,
    },
    /// The creator removes a member: they read nothing sent after.
    GroupRemove {
        /// The group.
        group: String,
        /// Who.
        id: String,
    },
    /// Leave a group (its creator deletes it).
    GroupLeave {
        /// The group.
        group: String,
    },
    /// The groups this node's person is in.
    Groups,
    /// A message to every current member of a group.
    GroupSend {
        /// The group.
        group: String,
        /// The text.
        text: String,
    },
    /// A group's messages, oldest first.
    GroupThread {
        /// The group.
        group: String,
        /// At most this many (the latest).
        #[serde(default)]
        limit: Option<usize>,
    },
    /// The node's configuration: the values it changes at once, and the others.
    Settings,
    /// Change config values of the running node: applied at once and saved to
    /// `config.toml` (its comments and other lines kept). Answers the new settings.
    SettingsSet {
        /// The values to change.
        set: LiveSettings,
    },
    /// A new circle (a named audience among our mutual connections).
    CircleCreate {
        /// Its name.
        name: String,
        /// The members.
        #[serde(default)]
        members: Vec<String>,
    },
    /// Add a mutual connection to a circle.
    CircleAdd {
        /// The circle's name.
        name: String,
        /// Who.
        member: String,
    },
    /// Remove a member from a circle: they read nothing posted after.
    CircleRemove {
        /// The circle's name.
        name: String,
        /// Who.
        member: String,
    },
    /// Our circles.
    Circles,
    /// A post only the current members of one of our circles read (answers
    /// [`Response::Record`]).
    CirclePost {
        /// The circle's name.
        name: String,
        /// The text.
        text: String,
    },
}

/// A reply from the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// Own id and addresses.
    Id {
        /// Own id.
        id: String,
        /// Listen addresses, each ending in `/p2p/<id>`.
        addrs: Vec<String>,
    },
    /// Status.
    Status(Box<Status>),
    /// Connected peers.
    Peers {
        /// One per peer.
        peers: Vec<PeerEntry>,
    },
    /// Done.
    Ok,
    /// A record was published.
    Record {
        /// Its id.
        id: String,
    },
    /// Posts.
    Feed {
        /// Newest first.
        items: Vec<FeedItem>,
        /// Posts left out because their author is muted.
        #[serde(default, skip_serializing_if = "is_zero")]
        hidden: u64,
    },
    /// One new post in a live feed.
    FeedItem(Box<FeedItem>),
    /// A following or followers list.
    Follows {
        /// The people.
        entries: Vec<FollowEntry>,
    },
    /// Subscribed tags.
    Tags {
        /// Tags without `#`.
        tags: Vec<String>,
    },
    /// A profile.
    Profile(Profile),
    /// A direct message was accepted for sending.
    MsgSent {
        /// Message id.
        id: String,
        /// `delivered` or `queued`.
        status: String,
    },
    /// Conversations.
    Inbox {
        /// Newest first.
        conversations: Vec<InboxEntry>,
    },
    /// A conversation's messages.
    Thread {
        /// Oldest first.
        messages: Vec<MessageEntry>,
    },
    /// An invite link.
    Invite {
        /// The link.
        link: String,
        /// When it expires, ms since the epoch.
        expires: u64,
        /// The addresses it carries.
        addrs: Vec<String>,
    },
    /// The person behind an invite was added.
    Added {
        /// Their id.
        id: String,
        /// The name in the invite.
        name: String,
        /// Whether a connection to them is up.
        connected: bool,
        /// The petname they got, if any.
        petname: Option<String>,
    },
    /// Petnames.
    Names {
        /// Ordered by petname.
        entries: Vec<NameEntry>,
    },
    /// Blocked and muted people.
    Moderation {
        /// One per person.
        entries: Vec<ModerationEntry>,
    },
    /// A public conversation (`kith thread`).
    Conversation {
        /// Root first, then replies depth-first.
        entries: Vec<ThreadEntry>,
        /// Replies left out because their author is muted (with the replies to them).
        #[serde(default, skip_serializing_if = "is_zero")]
        hidden: u64,
    },
    /// Notifications (or one, when live).
    Notifications {
        /// Newest first.
        entries: Vec<NotificationEntry>,
    },
    /// Progress of a sync round (streamed before [`Response::Synced`]).
    SyncProgress {
        /// Peers done.
        peers_done: usize,
        /// Peers in the round.
        peers_total: usize,
        /// Records fetched so far.
        fetched: u64,
    },
    /// Progress of `blob get` (streamed before [`Response::Blob`]).
    BlobProgress {
        /// Chunks fetched.
        done: u32,
        /// Chunks in all.
        total: u32,
    },
    /// A blob was fetched and saved.
    Blob {
        /// Its hash.
        hash: String,
        /// Its size in bytes.
        size: u64,
        /// Where it is.
        path: String,
    },
    /// A sync round finished.
    Synced {
        /// New records fetched.
        fetched: u64,
        /// Peers synced with.
        peers: usize,
    },
    /// Mailboxes (`kith mailbox`).
    Mailbox(Box<MailboxStatus>),
    /// The groups this node's person is in (`kith groups`).
    Groups {
        /// By name.
        groups: Vec<GroupEntry>,
    },
    /// A group's messages (`kith group thread`).
    GroupThread {
        /// Oldest first by (timestamp, id).
        messages: Vec<GroupMessageEntry>,
    },
    /// The web interface's sign-in address (`kith web`).
    WebUrl {
        /// `http://127.0.0.1:PORT/login?token=...`, good once, for an hour.
        url: String,
    },
    /// The node's configuration.
    Settings(Box<NodeSettings>),
    /// Our circles (`kith circles`), by name.
    Circles {
        /// By name.
        circles: Vec<CircleEntry>,
    },
    /// The request failed.
    Error {
        /// One line saying why.
        message: String,
        /// What kind of failure (older daemons sent none: `refused`).
        #[serde(default)]
        kind: ErrorKind,
    },
}
