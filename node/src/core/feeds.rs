//! Feeds: this node's own log (next seq, prev, timestamp, sign, store, the topics a
//! record goes to, published once flushed) and the records gossip brings (checked and
//! kept through [`crate::ingest`] and [`crate::keep`], a verdict for each, a gap in a
//! followed author's log handed to sync, new posts to live feeds).

use std::collections::{BTreeMap, BTreeSet};

use kith_protocol::{Record, RecordKind, Topic, VerifiedRecord};

use super::{Answer, AnswerId, Context, Effect, FlushId, GossipMessage};
use crate::{
    api::{ApiError, RecordCounters},
    ingest::{self, Outcome},
    net::Verdict,
    store::{Store, StoreError},
};

/// How often posts past their expiry time are looked for and dropped.
pub const EXPIRY_EVERY_MS: u64 = 2_000;

/// A record of our own, stored, waiting for its flush before it is published.
#[derive(Debug)]
struct Unpublished {
    /// Who waits for the answer (none: a record the node publishes by itself).
    answer: Option<AnswerId>,
    record: VerifiedRecord,
    topics: Vec<String>,
}

/// The feeds concern's state.
#[derive(Debug, Default)]
pub(crate) struct Feeds {
    counters: RecordCounters,
    /// Own records waiting for their flush, by the flush.
    unpublished: BTreeMap<FlushId, Unpublished>,
}

impl Feeds {
    /// Drops the posts whose expiry time has come, and asks for the next look.
    pub(crate) fn handle_expiry(cx: &Context, now: u64) -> Vec<Effect> {
        match cx.store.expire(now) {
            Ok(0) => {}
            Ok(n) => tracing::info!(dropped = n, "expired posts dropped"),
            Err(error) => tracing::error!(%error, "expiry sweep failed"),
        }
        let at = now.saturating_add(EXPIRY_EVERY_MS);
        vec![Effect::Schedule { at, timer: super::Timer::Expiry }]
    }

    pub(crate) fn counters(&self) -> RecordCounters {
        self.counters.clone()
    }

    pub(crate) fn count_lost(&mut self, n: u64) {
        self.counters.received += n;
        self.counters.ignored += n;
    }

    /// Appends a record of `kind` to our log: the next seq after the latest, its id as
    /// prev, dated `now` but never before the previous record (peers refuse that, and
    /// the clock may have been set back). Stored now, published and answered once
    /// flushed.
    pub(crate) fn handle_publish(
        &mut self,
        cx: &mut Context,
        kind: RecordKind,
        answer: AnswerId,
        now: u64,
    ) -> Vec<Effect> {
        self.publish(cx, kind, Some(answer), now)
    }

    /// As [`Feeds::handle_publish`] for a record the node publishes by itself (its
    /// device announcement): nobody is answered; a failure is logged.
    pub(crate) fn publish_unasked(
        &mut self,
        cx: &mut Context,
        kind: RecordKind,
        now: u64,
    ) -> Vec<Effect> {
        self.publish(cx, kind, None, now)
    }

    fn publish(
        &mut self,
        cx: &mut Context,
        kind: RecordKind,
        answer: Option<AnswerId>,
        now: u64,
    ) -> Vec<Effect> {
        match append(cx, kind, now) {
            Ok((record, topics)) => {
                let flush = cx.flush_id();
                self.unpublished.insert(flush, Unpublished { answer, record, topics });
                vec![Effect::Flush(flush)]
            }
            Err(error) => match answer {
                Some(answer) => vec![Effect::Answer { answer, result: Err(error) }],
                None => {
                    tracing::warn!(%error, "cannot publish a record of this node");
                    Vec::new()
                }
            },
        }
    }

    /// A flush is done: our record waiting for it goes out (each topic, then live feeds)
    /// and its request is answered; or the request learns the flush failed.
    pub(crate) fn handle_flushed(
        &mut self,
        flush: FlushId,
        result: Result<(), StoreError>,
    ) -> Vec<Effect> {
        let Some(Unpublished { answer, record, topics }) = self.unpublished.remove(&flush) else {
            return Vec::new();
        };
        if let Err(error) = result {
            tracing::warn!(%error, "cannot flush a record of this node");
            return answer
                .map(|answer| Effect::Answer { answer, result: Err(error.into()) })
                .into_iter()
                .collect();
        }
        let mut effects: Vec<Effect> = topics
            .into_iter()
            .map(|topic| Effect::Publish { topic, bytes: record.bytes().to_vec() })
            .collect();
        effects.extend(announce(&record));
        if let Some(answer) = answer {
            let result = Ok(Answer::Published(Box::new(record)));
            effects.push(Effect::Answer { answer, result });
        }
        effects
    }

    /// Ingests gossip messages in order; each gets a verdict.
    pub(crate) fn handle_gossip(
        &mut self,
        cx: &mut Context,
        batch: Vec<GossipMessage>,
        now: u64,
    ) -> Vec<Effect> {
        self.counters.received += batch.len() as u64;
        let mut effects = Vec::new();
        for GossipMessage { from, id, topic, bytes } in batch {
            let verdict = match ingest::ingest(&cx.store, &cx.admission, &bytes, Some(&topic), now)
            {
                Ok(outcome) => self.after_ingest(cx, (from, &topic), outcome, now, &mut effects),
                Err(error) => {
                    tracing::error!(%error, "store failed during ingest");
                    self.counters.ignored += 1;
                    Verdict::Ignore
                }
            };
            effects.push(Effect::Verdict { id, from, verdict });
        }
        effects
    }

    /// Counts an ingested gossip record and says what follows from it. A new record of
    /// this node's person or of a followed author earns the peer that brought it
    /// first-delivery credit; strangers' records earn none (a flood of them is no reason
    /// to trust its sender).
    fn after_ingest(
        &mut self,
        cx: &mut Context,
        (from, topic): (libp2p::PeerId, &str),
        outcome: Outcome,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Verdict {
        let c = &mut self.counters;
        match &outcome {
            Outcome::New(record) => {
                c.accepted += 1;
                effects.extend(new_record(cx, record, now));
                let r = record.record();
                let store = &cx.store;
                let known =
                    r.author == cx.me || store.is_following(&cx.me, &r.author).unwrap_or(false);
                // A gap in the log of someone we follow is fetched; a tag subscriber
                // does not need the rest of a stranger's log.
                if let Some(prev) = r.prev {
                    if known && !store.has(&prev).unwrap_or(true) {
                        effects.push(Effect::FillGap { peer: from, author: r.author });
                    }
                }
                if known {
                    return Verdict::Credit;
                }
            }
            Outcome::Duplicate => c.duplicate += 1,
            Outcome::Fork => c.forks += 1,
            Outcome::Gone => c.ignored += 1,
            Outcome::Unwanted { .. } => c.unwanted += 1,
            Outcome::Invalid(reason) => {
                c.rejected += 1;
                // Topic names come from peers: no controls in the log.
                let (topic, reason) = (crate::text::line(topic), crate::text::line(reason));
                tracing::info!(%topic, %reason, "rejected gossip record");
            }
        }
        outcome.verdict()
    }
}

/// What a newly stored record sets off besides notifications: thumbnails, live feeds.
fn announce(record: &VerifiedRecord) -> [Effect; 2] {
    [Effect::Stored(Box::new(record.clone())), Effect::LivePost(Box::new(record.clone()))]
}

/// What a record new to this node (from gossip or sync) sets off: its notifications,
/// thumbnails, live feeds, and a flush if it follows or unfollows this node's person.
/// That changes who may message them, so it is made durable at once, not at the store's
/// next periodic flush: a crash right after must not forget a mutual connection that no
/// peer may be able to tell the node again soon (a restarted node listens on a new port
/// unless its config fixes one).
pub(crate) fn new_record(cx: &mut Context, record: &VerifiedRecord, now: u64) -> Vec<Effect> {
    let notes = super::notify::for_record(&cx.store, &cx.me, record, now);
    let mut effects: Vec<Effect> = notes.into_iter().map(Effect::Notified).collect();
    effects.extend(announce(record));
    if is_follow_of(record, &cx.me) {
        effects.push(Effect::Flush(cx.durable_flush()));
    }
    effects
}

/// Whether `record` is a follow or unfollow of `me`.
pub fn is_follow_of(record: &VerifiedRecord, me: &kith_protocol::AuthorId) -> bool {
    use RecordKind::{Follow, Unfollow};
    matches!(record.record().kind, Follow { target } | Unfollow { target } if target == *me)
}

/// Makes, signs and stores the next record of our log; returns it and its topics.
fn append(
    cx: &Context,
    kind: RecordKind,
    now: u64,
) -> Result<(VerifiedRecord, Vec<String>), ApiError> {
    let store = &cx.store;
    let latest = store.latest(&cx.me)?;
    let previous = match latest {
        Some((_, id)) => store.get(&id)?,
        None => None,
    };
    let record = Record {
        author: cx.me,
        seq: latest.map_or(1, |(seq, _)| seq + 1),
        prev: latest.map(|(_, id)| id),
        timestamp: now.max(previous.map_or(0, |p| p.record.timestamp)),
        kind,
    };
    // Before storing: a delete erases its target, whose topics it must reach.
    let topics = topics_for(store, &record);
    let signed = record.sign(&cx.keys).map_err(|e| ApiError::invalid(e.to_string()))?;
    store.insert(&signed)?;
    Ok((signed, topics))
}

/// The gossip topics a record of ours goes to, each once, in a fixed order: the
/// author's, then tags, then the authors it concerns.
pub fn topics_for(store: &Store, record: &Record) -> Vec<String> {
    let mut seen = BTreeSet::new();
    topics_of(store, record, true)
        .into_iter()
        .map(|t| t.to_string())
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// [`topics_for`] as topics (with repeats). A delete also goes where its target went,
/// looked up one level only (`follow_delete`): a delete of a delete goes where that
/// delete went, not further down the chain.
fn topics_of(store: &Store, record: &Record, follow_delete: bool) -> Vec<Topic> {
    let mut topics = vec![Topic::Author(record.author)];
    let author_of = |id| store.get(id).ok().flatten().map(|t| t.record);
    match &record.kind {
        RecordKind::Post(post) => {
            topics.extend(record.tags().into_iter().map(Topic::Tag));
            if let Some(parent) = post.reply_to.as_ref().and_then(author_of) {
                topics.push(Topic::Author(parent.author));
            }
            topics.extend(post.mentions.iter().map(|m| Topic::Author(*m)));
        }
        RecordKind::Follow { target } | RecordKind::Unfollow { target } => {
            topics.push(Topic::Author(*target));
        }
        RecordKind::Reaction { target, .. } | RecordKind::Repost { target } => {
            if let Some(t) = author_of(target) {
                topics.push(Topic::Author(t.author));
            }
        }
        RecordKind::Delete { target } if follow_delete => {
            if let Some(t) = author_of(target) {
                topics.append(&mut topics_of(store, &t, false));
            }
        }
        RecordKind::Delete { .. }
        | RecordKind::Profile { .. }
        | RecordKind::Devices(_)
        | RecordKind::Mailboxes { .. }
        | RecordKind::Private(_) => {}
    }
    topics
}
