//! Ingest: the one path by which a record from outside (gossip now, sync and import
//! later) enters the store. Pure logic over the store; tests drive it without a network.

use std::collections::HashMap;

use kith_protocol::{AuthorId, Record, RecordId, RecordKind, Topic, VerifiedRecord};

use crate::{
    keep::{self, Came, Counts, Decision, Facts, Quotas},
    store::{InsertRun, Inserted, Store, StoreError},
};

/// The validation verdict for a gossip message: what the network does with it and with
/// the peer that forwarded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it.
    Accept,
    /// Valid, new, and by this node's person or an author it follows: forward it, and
    /// credit the peer that brought it first (the only first-delivery credit a peer
    /// earns; see `credit.rs`).
    Credit,
    /// Invalid: drop it and penalise the peer.
    Reject,
    /// Drop without penalty (e.g. we are overloaded).
    Ignore,
}

/// What ingest did with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new record, now stored.
    New(Box<VerifiedRecord>),
    /// Already stored; nothing changed.
    Duplicate,
    /// A second record at an author/seq already taken: kept as evidence, author flagged.
    Fork,
    /// Deleted by its author earlier (tombstone kept), past its expiry, or by someone this
    /// node's person blocked: not stored.
    Gone,
    /// Valid, but not something this node keeps (a repost of something that is not a
    /// post): not stored. `forward` says whether gossip still carries it on, because the
    /// owner of the topic it came on needs it.
    Unwanted {
        /// Whether to forward it on its gossip topic.
        forward: bool,
    },
    /// Not acceptable; the reason.
    Invalid(String),
}

impl Outcome {
    /// The gossip verdict: valid records (new or not) may be forwarded, since a record
    /// already known may still be new to the peers of this topic.
    pub fn verdict(&self) -> Verdict {
        match self {
            Self::New(_) | Self::Duplicate | Self::Fork => Verdict::Accept,
            Self::Invalid(_) => Verdict::Reject,
            // Valid but unwanted: neither forwarded nor held against the peer, who may
            // not have seen the delete yet.
            Self::Gone | Self::Unwanted { forward: false } => Verdict::Ignore,
            Self::Unwanted { forward: true } => Verdict::Accept,
        }
    }
}

/// Who this node is and what it keeps: what every ingest decides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// This node's person.
    pub me: AuthorId,
    /// What the node keeps at most.
    pub quotas: Quotas,
}

impl Admission {
    /// The node of `me`, with the default quotas.
    pub fn new(me: AuthorId) -> Self {
        Self { me, quotas: Quotas::default() }
    }
}

/// How a record on `topic` came (`None`: not by gossip).
fn came_on(topic: Option<&str>) -> Came {
    match topic.and_then(Topic::parse) {
        Some(Topic::Author(owner)) => Came::AuthorTopic(owner),
        Some(Topic::Tag(_)) => Came::TagTopic,
        None => Came::Direct,
    }
}

/// Checks `bytes` (size, encoding, fields, signature, clock, topic) and stores the record
/// if it is new and this node keeps it ([`crate::keep`]). `topic` is the gossip topic it
/// came on, if any.
///
/// # Errors
/// Only disk errors: bad input is an [`Outcome::Invalid`], never an error.
pub fn ingest(
    store: &Store,
    admission: &Admission,
    bytes: &[u8],
    topic: Option<&str>,
    now_ms: u64,
) -> Result<Outcome, StoreError> {
    match check(bytes, topic, now_ms) {
        Ok(record) => admit(store, admission, record, came_on(topic), now_ms),
        Err(reason) => Ok(Outcome::Invalid(reason)),
    }
}

/// Checks `bytes` and stores the record whoever wrote it, as if its person had chosen to
/// keep it (no keep decision; blocked authors, expiry and tombstones still apply): for
/// tools and tests that plant records.
///
/// # Errors
/// Only disk errors.
pub fn import(store: &Store, bytes: &[u8], now_ms: u64) -> Result<Outcome, StoreError> {
    let record = match check(bytes, None, now_ms) {
        Ok(record) => record,
        Err(reason) => return Ok(Outcome::Invalid(reason)),
    };
    if let Some(out) = refused(store, &record, now_ms, false)? {
        return Ok(out);
    }
    Ok(outcome(store.insert(&record)?, record))
}

/// The checks that need no store: size, canonical encoding, fields, strict signature,
/// clock and topic. The costly part of ingest, safe to run on many threads at once.
///
/// # Errors
/// Why the record is invalid, as one line.
pub fn check(bytes: &[u8], topic: Option<&str>, now_ms: u64) -> Result<VerifiedRecord, String> {
    let record = VerifiedRecord::from_bytes(bytes).map_err(|e| e.to_string())?;
    record.record().check_time(now_ms).map_err(|e| e.to_string())?;
    record.record().check_mentions().map_err(|e| e.to_string())?;
    if let Some(name) = topic {
        match Topic::parse(name) {
            Some(Topic::Tag(tag)) => {
                if !record.record().tags().contains(&tag) {
                    return Err(format!("record does not carry #{tag}"));
                }
            }
            Some(Topic::Author(_)) => {}
            None => return Err(format!("not a kith topic: {name}")),
        }
    }
    Ok(record)
}

/// Stores a checked record unless it is unwanted (blocked author, expired, deleted, not
/// kept by [`keep::decide`]) or already known.
///
/// # Errors
/// Disk errors.
pub fn admit(
    store: &Store,
    admission: &Admission,
    record: VerifiedRecord,
    came: Came,
    now_ms: u64,
) -> Result<Outcome, StoreError> {
    admit_in(store, admission, record, came, now_ms, None, None)
}

/// The newest record of each author that a batch stored so far, and what the store held
/// of that author before. The next record of that author naming it as `prev`, and not
/// dated before it, fits the stored log without reading the store: the store would
/// answer the same (a log entry is never rewritten to another id; eviction removes it
/// and a delete removes the record, after which any record fits). Any other record is
/// checked against the store. In a catch-up of one author's log that is three store
/// reads fewer per record.
type Chain = HashMap<AuthorId, Link>;

/// See [`Chain`].
#[derive(Debug, Clone, Copy)]
struct Link {
    /// The newest record the batch stored: seq, id, time.
    seq: u64,
    id: RecordId,
    at: u64,
    /// The highest seq the store held of the author when last read; the batch stored
    /// only seqs up to `seq` since, one after the other. So a record past both is not
    /// stored.
    held: u64,
    /// Whether this node's person follows the author, as read for the keep decision
    /// (`None`: not read). Only a record of theirs changes it: one in the batch forgets
    /// it for every author.
    followed: Option<bool>,
}

/// The link of `chain` that `r` follows (see [`Chain`]).
fn fits_chain(chain: &Chain, r: &Record) -> Option<Link> {
    let link = *chain.get(&r.author)?;
    let follows = link.seq.checked_add(1) == Some(r.seq) && r.timestamp >= link.at;
    (follows && r.prev == Some(link.id)).then_some(link)
}

/// Whether a record may be checked and decided while `group` holds posts not yet
/// written (see `store/grouped.rs`): a post known to follow a record of the batch in its
/// author's log (so no read of its author's log, of its id or of a fork can find a
/// waiting record) that does not reply to a waiting post (whose author its keep decision
/// reads). Every other record's checks need the group written first.
fn may_wait(
    link: Result<Option<Link>, ()>,
    record: &VerifiedRecord,
    group: &InsertRun<'_>,
) -> bool {
    matches!(link, Ok(Some(_)))
        && match &record.record().kind {
            RecordKind::Post(post) => post.reply_to.is_none_or(|to| !group.holds(&to)),
            _ => false,
        }
}

/// [`admit`], with the records stored so far in this batch (`chain`, updated here), and
/// the group of posts its new posts wait in to be written together (`group`).
fn admit_in(
    store: &Store,
    admission: &Admission,
    record: VerifiedRecord,
    came: Came,
    now_ms: u64,
    chain: Option<&mut Chain>,
    mut group: Option<&mut InsertRun<'_>>,
) -> Result<Outcome, StoreError> {
    let link = match &chain {
        Some(chain) => Ok(fits_chain(chain, record.record())),
        None => Err(()),
    };
    if let Some(group) = group.as_deref_mut() {
        if !group.is_empty() && !may_wait(link, &record, group) {
            group.write()?;
        }
    }
    let (out, held, followed) = admit_checked(store, admission, record, came, now_ms, link, group)?;
    if let (Some(chain), Outcome::New(new)) = (chain, &out) {
        let r = new.record();
        if r.author == admission.me
            && matches!(r.kind, RecordKind::Follow { .. } | RecordKind::Unfollow { .. })
        {
            chain.values_mut().for_each(|link| link.followed = None);
        }
        let link = Link { seq: r.seq, id: new.id(), at: r.timestamp, held, followed };
        chain.insert(r.author, link);
    }
    Ok(out)
}

/// [`admit`]. `link`: in a batch, the link the record follows if any (then it is known
/// to fit its author's stored log); not in a batch, `Err`. Also returns the highest seq
/// the store held of the author for the batch's [`Link`] (0 when not in a batch), and
/// whether the person follows the author if that was read. A kept record is stored in
/// `group` when there is one.
fn admit_checked(
    store: &Store,
    admission: &Admission,
    record: VerifiedRecord,
    came: Came,
    now_ms: u64,
    link: Result<Option<Link>, ()>,
    group: Option<&mut InsertRun<'_>>,
) -> Result<(Outcome, u64, Option<bool>), StoreError> {
    let fits = matches!(link, Ok(Some(_)));
    if let Some(out) = refused(store, &record, now_ms, fits)? {
        return Ok((out, 0, None));
    }
    let followed = match link {
        Ok(Some(link)) => link.followed,
        _ => None,
    };
    let r = record.record();
    let held = match link {
        // Past what the store held and what the batch stored since: not stored.
        Ok(Some(link)) if r.seq > link.held => link.held,
        // The author's newest seq, for the records of the batch that follow this one.
        Ok(_) => {
            let held = store.latest_seq(&r.author)?;
            if r.seq <= held && store.has(&record.id())? {
                return Ok((Outcome::Duplicate, held, None));
            }
            held
        }
        Err(()) => {
            if store.has(&record.id())? {
                return Ok((Outcome::Duplicate, 0, None));
            }
            0
        }
    };
    let facts = facts(store, admission.me, &record, came, now_ms, followed)?;
    let followed = (r.author != admission.me).then_some(facts.followed);
    let out = match keep::decide(&facts, &admission.quotas) {
        Decision::Keep(keep) => {
            let inserted = match group {
                Some(group) => group.insert_kept(&record, keep, &admission.quotas)?,
                None => store.insert_kept(&record, keep, &admission.quotas)?,
            };
            outcome(inserted, record)
        }
        Decision::Forward => Outcome::Unwanted { forward: true },
        Decision::Drop => Outcome::Unwanted { forward: false },
    };
    Ok((out, held, followed))
}

fn outcome(inserted: Inserted, record: VerifiedRecord) -> Outcome {
    match inserted {
        Inserted::New => Outcome::New(Box::new(record)),
        Inserted::Duplicate => Outcome::Duplicate,
        Inserted::Fork { .. } => Outcome::Fork,
        Inserted::Deleted => Outcome::Gone,
    }
}

/// What the store knows about `record` for [`keep::decide`]; `followed`: whether `me`
/// follows its author, when known.
fn facts<'a>(
    store: &Store,
    me: AuthorId,
    record: &'a VerifiedRecord,
    came: Came,
    now_ms: u64,
    followed: Option<bool>,
) -> Result<Facts<'a>, StoreError> {
    let r = record.record();
    let mut facts = Facts { came, ..Facts::new(me, r, now_ms) };
    if r.author == me {
        return Ok(facts);
    }
    facts.followed = match followed {
        Some(followed) => followed,
        None => store.is_following(&me, &r.author)?,
    };
    // What a followed author's record is kept for is the author: whether a followed
    // person shared it or it carries a subscribed tag is not looked at
    // ([`keep::decide`]), so it is not read.
    let why_kept = !facts.followed;
    let target = match &r.kind {
        RecordKind::Post(post) => post.reply_to,
        RecordKind::Reaction { target, .. }
        | RecordKind::Repost { target }
        | RecordKind::Delete { target } => Some(*target),
        RecordKind::Profile { .. }
        | RecordKind::Follow { .. }
        | RecordKind::Unfollow { .. }
        | RecordKind::Devices(_)
        | RecordKind::Mailboxes { .. }
        | RecordKind::Private(_) => None,
    };
    if let Some(target) = target {
        facts.target_author = store.get(&target)?.map(|t| t.record.author);
    }
    if why_kept && matches!(r.kind, RecordKind::Post(_)) {
        for reposter in store.reposters(&record.id())? {
            if reposter == me || store.is_following(&me, &reposter)? {
                facts.shared_by_followed = true;
                break;
            }
        }
        for tag in r.tags() {
            if store.is_subscribed(&tag)? {
                facts.subscribed_tag = true;
                break;
            }
        }
    }
    facts.counts = Counts {
        author: store.author_count(&r.author)?,
        strangers: store.stranger_count(),
        total: store.total_count(),
    };
    Ok(facts)
}

/// Why a record does not fit the author's log as stored: its `prev` is not the id of
/// the stored record before it, or it is dated before that record.
fn out_of_chain(store: &Store, record: &VerifiedRecord) -> Result<Option<String>, StoreError> {
    let r = record.record();
    let (Some(prev), Some(before)) = (r.prev, r.seq.checked_sub(1)) else { return Ok(None) };
    let Some(stored) = store.log_at(&r.author, before)? else { return Ok(None) };
    if stored != prev {
        return Ok(Some(format!("prev is not the stored record at seq {before}")));
    }
    match store.get(&stored)? {
        Some(p) if r.timestamp < p.record.timestamp => Ok(Some(format!(
            "dated {} ms before the author's record at seq {before}",
            p.record.timestamp - r.timestamp
        ))),
        _ => Ok(None),
    }
}

/// Why a valid record is not stored whatever the keep decision says: a blocked author,
/// a record that does not fit the author's stored log, an expired post, a repost of
/// something that is not a post. `fits`: the record is known to fit the stored log.
fn refused(
    store: &Store,
    record: &VerifiedRecord,
    now_ms: u64,
    fits: bool,
) -> Result<Option<Outcome>, StoreError> {
    if store.moderation(&record.record().author)?.blocked {
        return Ok(Some(Outcome::Gone));
    }
    if !fits {
        if let Some(reason) = out_of_chain(store, record)? {
            return Ok(Some(Outcome::Invalid(reason)));
        }
    }
    match &record.record().kind {
        RecordKind::Post(post) if post.expires_at.is_some_and(|at| at <= now_ms) => {
            return Ok(Some(Outcome::Gone));
        }
        // A repost shares a post: one of anything else (a chain of reposts) is refused
        // when its target is known. Feeds resolve a repost one level only either way.
        RecordKind::Repost { target }
            if store
                .get(target)?
                .is_some_and(|t| !matches!(t.record.kind, RecordKind::Post(_))) =>
        {
            return Ok(Some(Outcome::Unwanted { forward: false }));
        }
        _ => {}
    }
    Ok(None)
}

/// Records a batch worker checks at a time: small enough that storing starts soon after
/// the batch does, large enough that the hand-over costs nothing next to 8 signatures.
const CHECK_CHUNK: usize = 8;

/// Most threads a batch uses, whatever the caller asks.
pub const MAX_BATCH_THREADS: usize = 16;

/// Ingests a batch on `threads` threads: the checks (the costly part) run on all of them
/// at once, and this thread stores the checked records in batch order as they become
/// ready, checking records itself while it waits. Same outcomes, in the same order, as
/// calling [`ingest`] on each record in turn.
///
/// # Errors
/// Per record, disk errors only.
pub fn ingest_batch(
    store: &Store,
    admission: &Admission,
    batch: &[Vec<u8>],
    topic: Option<&str>,
    now_ms: u64,
    threads: usize,
) -> Vec<Result<Outcome, StoreError>> {
    let came = came_on(topic);
    ingest_batch_with(store, admission, came, batch, now_ms, threads, |bytes| {
        check(bytes, topic, now_ms)
    })
}

/// Like [`ingest_batch`], with the checks given by the caller: `check` must call
/// [`check`] (it may refuse a record before that, e.g. one a sync answer was not asked
/// for). `check` runs on several threads at once.
///
/// # Errors
/// Per record, disk errors only.
pub fn ingest_batch_with<F>(
    store: &Store,
    admission: &Admission,
    came: Came,
    batch: &[Vec<u8>],
    now_ms: u64,
    threads: usize,
    check: F,
) -> Vec<Result<Outcome, StoreError>>
where
    F: Fn(&[u8]) -> Result<VerifiedRecord, String> + Sync,
{
    let run = BatchRun { store, admission, came, now_ms, threads, flush: None };
    let mut out = Vec::new();
    ingest_batches_with(&run, &[batch], check, |_, outcomes, _| out = outcomes);
    out
}

mod batch;

pub use batch::{ingest_batches_with, BatchRun, Outcomes};

#[cfg(test)]
mod tests;
