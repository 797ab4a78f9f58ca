//! What a node keeps, and what it forwards without keeping: one plain decision over facts
//! (no I/O, no clock), made for every valid record from outside, whatever way it came
//! (gossip, history sync, an offer, a direct message's follow proof).
//!
//! A node keeps:
//! - its own records;
//! - records of the authors its person follows (up to [`Quotas::per_followed`] each);
//! - and, from everyone else (strangers, up to [`Quotas::per_stranger`] each and
//!   [`Quotas::strangers`] in all, the oldest evicted first):
//!   - records that concern its person: a reply, reaction or repost of one of their
//!     records, a post that mentions them, a follow or unfollow of them, and a delete of
//!     one of those by its author;
//!   - the post a repost by its person or a followed author shares;
//!   - posts carrying a subscribed hashtag, dated within [`Quotas::tag_window_ms`];
//!   - the profile of an author some of whose records it keeps already, or one it asked
//!     for because it shows that person (so that the people it shows have names).
//!
//! Nothing else is stored. What is not kept may still be forwarded on the gossip topic it
//! came on when that topic's owner needs it: on `kith/1/author/O`, records by O and records
//! that concern O (by the same rules, with O in place of this node's person) and any
//! delete (its target may concern O without this node knowing it); on a tag topic, posts
//! within the tag window. [`Quotas::total`] bounds everything but own
//! records: over it, strangers' records are evicted first, then new ones are refused.
//!
//! ```
//! use kith_node::keep::{decide, Came, Counts, Decision, Facts, Keep, Quotas};
//! use kith_protocol::{Keypair, Record, RecordKind};
//! let (me, them) = (Keypair::from_secret_bytes(&[1; 32]), Keypair::from_secret_bytes(&[2; 32]));
//! let follow = Record {
//!     author: them.id(), seq: 1, prev: None, timestamp: 1_800_000_000_000,
//!     kind: RecordKind::Follow { target: me.id() },
//! };
//! let facts = Facts::new(me.id(), &follow, 1_800_000_000_000);
//! assert_eq!(decide(&facts, &Quotas::default()), Decision::Keep(Keep::Stranger));
//! let on_their_topic = Facts { came: Came::AuthorTopic(them.id()), ..Facts::new(me.id(), &follow, 0) };
//! // Over the stranger's own quota: not kept, but their followers on that topic need it.
//! let quotas = Quotas::default();
//! let counts = Counts { author: quotas.per_stranger, ..Counts::default() };
//! assert_eq!(decide(&Facts { counts, ..on_their_topic }, &quotas), Decision::Forward);
//! ```

use kith_protocol::{AuthorId, Record, RecordKind};

/// How long a post is wanted for its hashtag alone (30 days, as far back as tag sync
/// looks).
pub const TAG_WINDOW_MS: u64 = 30 * 24 * 3_600_000;

/// Limits on what a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Most records kept of one followed author; beyond it, new ones are not kept.
    pub per_followed: u64,
    /// Most records kept of one stranger; beyond it, new ones are not kept.
    pub per_stranger: u64,
    /// Most strangers' records kept in all; a new one evicts the oldest.
    pub strangers: u64,
    /// Most records kept in all (own records are always kept): strangers' records are
    /// evicted first; when none are left, new records are not kept.
    pub total: u64,
    /// How long a post is wanted for carrying a subscribed hashtag, ms.
    pub tag_window_ms: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            per_followed: 100_000,
            per_stranger: 500,
            strangers: 10_000,
            total: 2_000_000,
            tag_window_ms: TAG_WINDOW_MS,
        }
    }
}

/// How a record came to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Came {
    /// On the gossip topic of this author.
    AuthorTopic(AuthorId),
    /// On a hashtag's gossip topic (whose tag it carries: checked before).
    TagTopic,
    /// Any other way (history sync, an offer, a follow proof): nothing to forward.
    Direct,
    /// In the answer to a question for this author's profile, asked because the node
    /// shows them (a group member, the author of a post shown): kept if it is their
    /// profile, even when nothing else of theirs is; nothing to forward.
    AskedProfile,
}

/// Records already kept, as the quotas count them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Of the record's author.
    pub author: u64,
    /// Of strangers, in all.
    pub strangers: u64,
    /// In all.
    pub total: u64,
}

/// What the decision looks at: the record, and what the store knows about it.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// This node's person.
    pub me: AuthorId,
    /// The record (valid: checked before).
    pub record: &'a Record,
    /// The author of the stored record it replies to, reacts to, reposts or deletes, if
    /// that record is stored.
    pub target_author: Option<AuthorId>,
    /// This node's person follows the record's author.
    pub followed: bool,
    /// A stored repost by this node's person or by an author they follow shares this post.
    pub shared_by_followed: bool,
    /// A post carrying a hashtag this node subscribes to.
    pub subscribed_tag: bool,
    /// How it came.
    pub came: Came,
    /// Now, ms since the epoch.
    pub now_ms: u64,
    /// What is kept already.
    pub counts: Counts,
}

impl<'a> Facts<'a> {
    /// Facts of a record that nothing in the store relates to, arriving directly.
    pub fn new(me: AuthorId, record: &'a Record, now_ms: u64) -> Self {
        Self {
            me,
            record,
            target_author: None,
            followed: false,
            shared_by_followed: false,
            subscribed_tag: false,
            came: Came::Direct,
            now_ms,
            counts: Counts::default(),
        }
    }
}

/// How a kept record is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// This node's person's own: always kept, never evicted.
    Own,
    /// A followed author's: counted against [`Quotas::per_followed`], not evicted.
    Followed,
    /// A stranger's: counted against [`Quotas::strangers`], evicted oldest first.
    Stranger,
}

/// What to do with a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Store it.
    Keep(Keep),
    /// Do not store it; forward it on the gossip topic it came on.
    Forward,
    /// Neither store nor forward it.
    Drop,
}

/// Whether `record` concerns `who`: replies to, reacts to or reposts a record of theirs,
/// mentions them, follows or unfollows them, or deletes (by its author) a record that
/// was kept.
fn concerns(record: &Record, who: &AuthorId, target_author: Option<AuthorId>) -> bool {
    let targets_theirs = target_author.as_ref() == Some(who);
    match &record.kind {
        RecordKind::Post(post) => {
            post.mentions.contains(who) || (post.reply_to.is_some() && targets_theirs)
        }
        RecordKind::Reaction { .. } | RecordKind::Repost { .. } => targets_theirs,
        RecordKind::Follow { target } | RecordKind::Unfollow { target } => target == who,
        // A delete matters wherever its target was kept: the target is stored and is the
        // deleter's own (what `Store::insert` would erase).
        RecordKind::Delete { .. } => target_author == Some(record.author),
        RecordKind::Profile { .. }
        | RecordKind::Devices(_)
        | RecordKind::Mailboxes { .. }
        | RecordKind::Private(_) => false,
    }
}

/// Whether `record` is the profile of an author some of whose records are kept already
/// (`counts.author`): the name of someone this node shows.
fn profile_of_someone_kept(record: &Record, counts: &Counts) -> bool {
    matches!(record.kind, RecordKind::Profile { .. }) && counts.author > 0
}

/// The decision for one valid record. See the [module](self) documentation.
pub fn decide(facts: &Facts<'_>, quotas: &Quotas) -> Decision {
    let record = facts.record;
    if record.author == facts.me {
        return Decision::Keep(Keep::Own);
    }
    let in_window = record.timestamp.saturating_add(quotas.tag_window_ms) >= facts.now_ms;
    let topic_needs = match facts.came {
        // A delete is carried on whatever author topic it came: its target (which may
        // concern the owner) need not be known here.
        Came::AuthorTopic(owner) => {
            record.author == owner
                || concerns(record, &owner, facts.target_author)
                || matches!(record.kind, RecordKind::Delete { .. })
        }
        Came::TagTopic => in_window,
        Came::Direct | Came::AskedProfile => false,
    };
    let pass = if topic_needs { Decision::Forward } else { Decision::Drop };
    let counts = &facts.counts;
    // Over the total, a record is kept only if a stranger's can make room for it.
    let room = counts.total < quotas.total || counts.strangers > 0;
    if facts.followed {
        if counts.author >= quotas.per_followed || !room {
            return pass;
        }
        return Decision::Keep(Keep::Followed);
    }
    let wanted = concerns(record, &facts.me, facts.target_author)
        || facts.shared_by_followed
        || (facts.subscribed_tag && in_window)
        || profile_of_someone_kept(record, counts)
        || (facts.came == Came::AskedProfile && matches!(record.kind, RecordKind::Profile { .. }));
    if !wanted || counts.author >= quotas.per_stranger || !room || quotas.strangers == 0 {
        return pass;
    }
    Decision::Keep(Keep::Stranger)
}

/// Whether `proof`, sent with a direct message by `sender`, shows that `sender` follows
/// `me`: it must be the sender's own follow of `me`, newer than the follow state this
/// node holds for them (`stored_seq`, the seq of the record that set it), so that a
/// replayed old follow cannot undo a later unfollow.
pub fn follow_proof_counts(
    proof: &Record,
    sender: &AuthorId,
    me: &AuthorId,
    stored_seq: Option<u64>,
) -> bool {
    proof.author == *sender
        && proof.kind == RecordKind::Follow { target: *me }
        && stored_seq.is_none_or(|seq| seq < proof.seq)
}

/// Most unread notifications from strangers (people this node's person does not follow)
/// kept at once: beyond it, new ones from strangers are dropped until some are read.
pub const MAX_STRANGER_NOTIFICATIONS: u64 = 100;

/// Whether a new notification is stored: always from people followed, from strangers
/// only while fewer than [`MAX_STRANGER_NOTIFICATIONS`] of theirs are unread.
pub fn notify(from_stranger: bool, stranger_unread: u64) -> bool {
    !from_stranger || stranger_unread < MAX_STRANGER_NOTIFICATIONS
}

#[cfg(test)]
mod tests;
