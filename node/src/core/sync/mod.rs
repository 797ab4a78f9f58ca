//! Sync: asking a peer for what this node misses (followed authors' logs by position,
//! subscribed tags by time buckets, a profile), page by page; filling a gap in a
//! followed author's log once per author at a time; answering peers' questions; and
//! offering our recent records to a peer that subscribed to a topic they went to.
//!
//! A pull is one session with one peer ([`Input::Pull`](super::Input::Pull)): the core
//! asks one question at a time ([`Effect::Query`]), the driver sends it and reports the
//! answer or the failure ([`Input::PullAnswer`](super::Input::PullAnswer)), the core
//! stores what came and asks the next page or question, and answers
//! [`Answer::Pulled`] at the end. While the core checks and stores an author's page,
//! the driver may already ask the page after it ([`next_page_guess`]); it uses that
//! answer only if the core then asks exactly that question. A peer that leaves a
//! question unanswered ([`QueryFailure::silent`]) is asked nothing more in that pull. Deadlines are the
//! driver's: it times out a question, and stops a pull that took too long with
//! [`Input::PullStop`](super::Input::PullStop).

mod missed;
mod offer;
mod probe;
mod rounds;
mod serve;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use kith_protocol::{
    codec,
    limits::MAX_RECORD_BYTES,
    record::SignedRecord,
    sync::{
        Bucket, DigestResponse, Query, SyncRequest, SyncResponse, TagCursor, MAX_DIGEST_AUTHORS,
        MAX_DIGEST_TAGS,
    },
    AuthorId, RecordKind, Tag, Topic, VerifiedRecord,
};
use libp2p::PeerId;

use missed::Missed;
pub use missed::{MAX_REGOSSIP, MISSED_WINDOW_MS};
pub use offer::{is_friend, OFFER_WINDOW_MS};
pub(crate) use probe::Probes;
pub use probe::{probe_requests, ProbeEntry, PROBE_PEERS, PROBE_SINCE_MS};
pub use rounds::Pace;
pub(crate) use rounds::Rounds;
pub use serve::{
    answer, empty, serve, Page, DIGEST_TAG_COST, STRANGER_PAGE_BYTES, STRANGER_PAGE_RECORDS,
};

use super::{Answer, AnswerId, Context, Effect};
use crate::{
    ingest::{self, Outcome},
    keep::Came,
};

/// Pages asked per tag in one pull. An author's log has no such bound: its pages go on
/// while each one brings records of the author that pass the checks past the cursor, so
/// a peer can keep a pull going only with the author's real log (a page bound there made
/// a catch-up from a stranger, whose pages are small, stop at 6,400 records and wait for
/// the next round; the pull's deadline is the driver's).
pub const MAX_PAGES: usize = 200;
/// How far back tag sync looks, ms (30 days).
pub const TAG_HORIZON_MS: u64 = 30 * 24 * 3_600_000;

/// What a pull asks a peer for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pull {
    /// Every followed author's log, then every subscribed tag.
    Everything,
    /// One author's log, from the end of this node's contiguous prefix on.
    Author(AuthorId),
    /// As [`Pull::Author`], for a gap a record of a followed author showed: one such
    /// pull per author at a time (another answers at once, with nothing fetched).
    Gap(AuthorId),
    /// Posts with a tag of the last [`TAG_HORIZON_MS`] this node misses.
    Tag(Tag),
    /// The author's current profile.
    Profile(AuthorId),
    /// What [`Pull::Everything`] asks, after one [`Query::Digest`]: only the authors and
    /// tags for which the peer would send something are asked (every one when the peer
    /// does not understand digests). Authors with a gap in their log are asked
    /// directly, as before (a digest says nothing about records inside a gap).
    Changed,
}

/// Why a question got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryFailure {
    /// What went wrong.
    pub reason: String,
    /// No answer in time (rather than a refusal or a bad answer): the peer is asked
    /// nothing more in this pull.
    pub silent: bool,
}

/// What a pull got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pulled {
    /// New records stored.
    pub fetched: u64,
    /// Whether the peer left a question unanswered (then the pull ended early).
    pub failed: bool,
}

/// What a sync answer was asked for. A record outside it is refused: a peer can make
/// this node verify records, never store ones it did not ask for.
#[derive(Debug, Clone)]
enum Asked {
    /// Records of this author (an author query, or an offer by its author).
    Author(AuthorId),
    /// Posts carrying this tag (a tag query).
    Tag(Tag),
    /// This author's profile (a profile query).
    Profile(AuthorId),
}

impl Asked {
    /// The checks for one record of an answer: [`ingest::check`], after refusing a
    /// record outside what was asked.
    fn check(&self, bytes: &[u8], now: u64) -> Result<VerifiedRecord, String> {
        match self {
            Self::Author(author) | Self::Profile(author) => {
                // Look at the author before the full check; a record that does not decode
                // is left for `check` to refuse with its own reason.
                let decoded = codec::decode::<SignedRecord, MAX_RECORD_BYTES>(bytes);
                if let Ok(signed) = decoded {
                    if signed.record.author != *author {
                        let found = signed.record.author;
                        return Err(format!("a record of {found} in an answer about {author}"));
                    }
                    let profile = matches!(signed.record.kind, RecordKind::Profile { .. });
                    if matches!(self, Self::Profile(_)) && !profile {
                        return Err(format!("a record other than a profile for {author}"));
                    }
                }
                ingest::check(bytes, None, now)
            }
            Self::Tag(tag) => {
                // As on the tag's gossip topic: a record without the tag is refused.
                ingest::check(bytes, Some(&Topic::Tag(tag.clone()).to_string()), now)
            }
        }
    }
}

/// A question of a pull not asked yet.
#[derive(Debug, Clone)]
enum Question {
    Author(AuthorId),
    Tag(Tag),
    Profile(AuthorId),
}

/// The question being asked, with its cursor and the pages asked so far.
#[derive(Debug, Clone)]
enum Asking {
    Author {
        author: AuthorId,
        after: u64,
    },
    Tag {
        tag: Tag,
        since: u64,
        after: Option<TagCursor>,
        pages: usize,
    },
    Profile(AuthorId),
    /// A digest: the authors (with the last seq held without gaps) and tags (with the
    /// summary since `since`) it names, in that order.
    Digest {
        authors: Vec<(AuthorId, u64)>,
        since: u64,
        tags: Vec<(Tag, Bucket)>,
    },
}

/// The authors and tags of a digest, in its order.
type DigestAsked = (Vec<(AuthorId, u64)>, Vec<(Tag, Bucket)>);

/// One pull with one peer.
#[derive(Debug)]
struct Session {
    peer: PeerId,
    questions: VecDeque<Question>,
    asking: Option<Asking>,
    fetched: u64,
    /// The author whose gap this pull fills.
    gap: Option<AuthorId>,
}

/// The sync concern's state.
#[derive(Debug, Default)]
pub(crate) struct Sync {
    sessions: BTreeMap<AnswerId, Session>,
    /// Authors with a gap being filled (so one gap causes one pull).
    gaps: BTreeSet<AuthorId>,
    /// Records stored from sync answers and offers.
    fetched: u64,
    /// Records in sync answers and offers refused as invalid.
    rejected: u64,
    /// When the periodic rounds come.
    pub(crate) rounds: Rounds,
    /// The topics of this node's own records to probe.
    pub(crate) probes: Probes,
    /// Sync saw something new since [`Sync::take_news`] last looked: records stored, a
    /// gap (the periodic rounds come at their short pace again).
    news: bool,
}

impl Sync {
    /// (records fetched, records rejected) so far.
    pub(crate) fn counters(&self) -> (u64, u64) {
        (self.fetched, self.rejected)
    }

    /// Whether sync saw something new since the last call.
    pub(crate) fn take_news(&mut self) -> bool {
        std::mem::take(&mut self.news)
    }

    /// Starts pulling `what` from `peer`; [`Answer::Pulled`] to `answer` at the end.
    pub(crate) fn handle_pull(
        &mut self,
        cx: &mut Context,
        peer: PeerId,
        what: Pull,
        answer: AnswerId,
        now: u64,
    ) -> Vec<Effect> {
        let mut gap = None;
        let questions: VecDeque<Question> = match what {
            Pull::Everything => {
                let authors = cx.store.following(&cx.me).unwrap_or_default();
                let tags = cx.store.subscriptions().unwrap_or_default();
                let authors = authors.into_iter().map(Question::Author);
                authors.chain(tags.into_iter().map(Question::Tag)).collect()
            }
            Pull::Author(author) => VecDeque::from([Question::Author(author)]),
            Pull::Gap(author) => {
                if !self.gaps.insert(author) {
                    return vec![pulled(answer, Pulled::default())];
                }
                // Gossip missed a record: others may be missing too.
                self.news = true;
                gap = Some(author);
                VecDeque::from([Question::Author(author)])
            }
            Pull::Tag(tag) => VecDeque::from([Question::Tag(tag)]),
            Pull::Profile(author) => VecDeque::from([Question::Profile(author)]),
            Pull::Changed => {
                let (digest, questions) = digest(cx, now);
                let session = Session { peer, questions, asking: None, fetched: 0, gap };
                self.sessions.insert(answer, session);
                let mut effects = Vec::new();
                if !(digest.is_some_and(|d| self.ask(cx, answer, d, &mut effects))) {
                    self.next_question(cx, answer, now, &mut effects);
                }
                return effects;
            }
        };
        let session = Session { peer, questions, asking: None, fetched: 0, gap };
        self.sessions.insert(answer, session);
        let mut effects = Vec::new();
        self.next_question(cx, answer, now, &mut effects);
        effects
    }

    /// The peer's answer to a digest: its entries that differ become the pull's next
    /// questions; when the peer did not understand it (a node from before digests
    /// answers with an empty sync response), every entry does.
    fn handle_digest(
        &mut self,
        cx: &mut Context,
        answer: AnswerId,
        result: Result<Vec<u8>, QueryFailure>,
        asked: DigestAsked,
        now: u64,
        effects: &mut Vec<Effect>,
    ) {
        let (authors, tags) = asked;
        let differ = match result {
            Err(failure) if failure.silent => return self.finish(answer, true, effects),
            Err(_) => None,
            Ok(bytes) => DigestResponse::from_bytes(&bytes).ok().map(|d| d.differ),
        };
        let wanted = |i: usize| differ.as_ref().is_none_or(|d| d.contains(&(i as u32)));
        let asked = authors.len();
        let Some(session) = self.sessions.get_mut(&answer) else { return };
        let authors = authors.into_iter().enumerate().filter(|(i, _)| wanted(*i));
        session.questions.extend(authors.map(|(_, (author, _))| Question::Author(author)));
        let tags = tags.into_iter().enumerate().filter(|(i, _)| wanted(asked + i));
        session.questions.extend(tags.map(|(_, (tag, _))| Question::Tag(tag)));
        self.next_question(cx, answer, now, effects);
    }

    /// The driver gave up on the pull of `answer` (it took too long): nothing more is
    /// asked, and nothing answered.
    pub(crate) fn handle_stop(&mut self, answer: AnswerId) -> Vec<Effect> {
        if let Some(session) = self.sessions.remove(&answer) {
            if let Some(author) = session.gap {
                self.gaps.remove(&author);
            }
        }
        Vec::new()
    }

    /// The answer to the question of the pull of `answer`, or why there was none.
    pub(crate) fn handle_answer(
        &mut self,
        cx: &mut Context,
        answer: AnswerId,
        result: Result<Vec<u8>, QueryFailure>,
        now: u64,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let Some(session) = self.sessions.get_mut(&answer) else { return effects };
        let (peer, asking) = (session.peer, session.asking.take());
        if let Some(Asking::Digest { authors, tags, .. }) = asking {
            self.handle_digest(cx, answer, result, (authors, tags), now, &mut effects);
            return effects;
        }
        let response = result.and_then(|bytes| {
            SyncResponse::from_bytes(&bytes)
                .map_err(|e| QueryFailure { reason: e.to_string(), silent: false })
        });
        let (response, asking) = match (response, asking) {
            (Err(failure), _) => {
                tracing::debug!(%peer, reason = %failure.reason, "sync question failed");
                if failure.silent {
                    self.finish(answer, true, &mut effects);
                } else {
                    self.next_question(cx, answer, now, &mut effects);
                }
                return effects;
            }
            (Ok(_), None) => return effects,
            (Ok(response), Some(asking)) => (response, asking),
        };
        let next = match asking {
            Asking::Author { author, after } => {
                let more = response.more;
                if response.records.is_empty() {
                    None
                } else {
                    let asked = Asked::Author(author);
                    let checked =
                        self.ingest(cx, answer, response.records, asked, now, &mut effects);
                    // The cursor moves past the records that passed the checks (a peer
                    // that lacks some seqs serves the ones after them), never on a
                    // record's word alone.
                    let contiguous = cx.store.contiguous_seq(&author).unwrap_or(after);
                    let next = contiguous.max(checked.unwrap_or(0));
                    // Stop when the peer has no more, or serves nothing past where we were.
                    (more && next > after).then_some(Asking::Author { author, after: next })
                }
            }
            Asking::Tag { tag, since, after, pages } => {
                let next = response.next;
                self.ingest(
                    cx,
                    answer,
                    response.records,
                    Asked::Tag(tag.clone()),
                    now,
                    &mut effects,
                );
                match next {
                    Some(next) if Some(next) != after && pages < MAX_PAGES => {
                        Some(Asking::Tag { tag, since, after: Some(next), pages: pages + 1 })
                    }
                    _ => None,
                }
            }
            Asking::Profile(author) => {
                if !response.records.is_empty() {
                    let asked = Asked::Profile(author);
                    self.ingest(cx, answer, response.records, asked, now, &mut effects);
                }
                None
            }
            Asking::Digest { .. } => None,
        };
        let asked = next.is_some_and(|asking| self.ask(cx, answer, asking, &mut effects));
        if !asked {
            self.next_question(cx, answer, now, &mut effects);
        }
        effects
    }

    /// Asks the next question of the pull of `answer`, or ends the pull.
    fn next_question(
        &mut self,
        cx: &mut Context,
        answer: AnswerId,
        now: u64,
        effects: &mut Vec<Effect>,
    ) {
        loop {
            let Some(session) = self.sessions.get_mut(&answer) else { return };
            let Some(question) = session.questions.pop_front() else {
                self.finish(answer, false, effects);
                return;
            };
            let asking = match question {
                Question::Author(author) => match cx.store.contiguous_seq(&author) {
                    Ok(after) => Asking::Author { author, after },
                    Err(_) => continue,
                },
                Question::Tag(tag) => {
                    let since = now.saturating_sub(TAG_HORIZON_MS);
                    Asking::Tag { tag, since, after: None, pages: 1 }
                }
                Question::Profile(author) => Asking::Profile(author),
            };
            if self.ask(cx, answer, asking, effects) {
                return;
            }
        }
    }

    /// Sends `asking`'s question; false (nothing sent) when it cannot be made (the
    /// question ends there, as when the peer refused it).
    fn ask(
        &mut self,
        cx: &Context,
        answer: AnswerId,
        asking: Asking,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let query = match &asking {
            Asking::Author { author, after, .. } => {
                Query::Author { author: *author, after: *after }
            }
            Asking::Tag { tag, since, after, .. } => match cx.store.tag_buckets(tag, *since) {
                Ok(buckets) => {
                    Query::Tag { tag: tag.to_string(), since: *since, buckets, after: *after }
                }
                Err(_) => return false,
            },
            Asking::Profile(author) => Query::Profile { author: *author },
            Asking::Digest { authors, since, tags } => Query::Digest {
                authors: authors.clone(),
                since: *since,
                tags: tags.iter().map(|(tag, sum)| (tag.to_string(), *sum)).collect(),
            },
        };
        let Some(session) = self.sessions.get_mut(&answer) else { return false };
        match (SyncRequest { query }).to_bytes() {
            Ok(bytes) => {
                effects.push(Effect::Query { peer: session.peer, bytes, pull: Some(answer) });
                session.asking = Some(asking);
                true
            }
            Err(error) => {
                tracing::debug!(%error, "cannot encode a sync question");
                false
            }
        }
    }

    /// Ends the pull of `answer` and answers it.
    fn finish(&mut self, answer: AnswerId, failed: bool, effects: &mut Vec<Effect>) {
        let Some(session) = self.sessions.remove(&answer) else { return };
        if let Some(author) = session.gap {
            self.gaps.remove(&author);
        }
        effects.push(pulled(answer, Pulled { fetched: session.fetched, failed }));
    }

    /// Verifies and stores records from sync through the one ingest path, counting
    /// them for the pull of `answer`. Records outside what was `asked` are refused like
    /// invalid ones. Returns the highest seq among the records that passed the checks
    /// (stored now or before, or valid and not kept).
    fn ingest(
        &mut self,
        cx: &mut Context,
        answer: AnswerId,
        records: Vec<Vec<u8>>,
        asked: Asked,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Option<u64> {
        let (new, checked) = self.ingest_records(cx, &records, &asked, now, effects);
        if let Some(session) = self.sessions.get_mut(&answer) {
            session.fetched += new;
        }
        checked
    }

    /// [`Sync::ingest`] for any caller; returns how many records were new, and the
    /// highest seq that passed the checks.
    fn ingest_records(
        &mut self,
        cx: &mut Context,
        records: &[Vec<u8>],
        asked: &Asked,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> (u64, Option<u64>) {
        let (store, admission) = (&cx.store, &cx.admission);
        let came = match asked {
            Asked::Profile(_) => Came::AskedProfile,
            _ => Came::Direct,
        };
        let outcomes =
            ingest::ingest_batch_with(store, admission, came, records, now, cx.threads, |r| {
                asked.check(r, now)
            });
        let mut new = 0;
        let mut checked = None;
        let mut missed = Missed::default();
        for (outcome, bytes) in outcomes.into_iter().zip(records) {
            match outcome {
                Ok(Outcome::New(record)) => {
                    new += 1;
                    checked = checked.max(Some(record.record().seq));
                    missed.note(cx, &record, now);
                    effects.extend(super::feeds::new_record(cx, &record, now));
                }
                Ok(Outcome::Invalid(reason)) => {
                    self.rejected += 1;
                    let reason = crate::text::line(&reason);
                    tracing::info!(%reason, "rejected a synced record");
                }
                // Passed the checks (a duplicate is bytes this node already verified).
                Ok(_) => checked = checked.max(seq_of(bytes)),
                Err(error) => tracing::error!(%error, "store failed during sync"),
            }
        }
        self.fetched += new;
        self.news |= new > 0;
        effects.extend(missed.effect());
        (new, checked)
    }
}

/// The digest of a [`Pull::Changed`] (none when it would name nothing), and the
/// questions asked whatever its answer: authors with a gap in their log, and what does
/// not fit in one digest.
fn digest(cx: &Context, now: u64) -> (Option<Asking>, VecDeque<Question>) {
    let mut direct = VecDeque::new();
    let mut authors = Vec::new();
    for author in cx.store.following(&cx.me).unwrap_or_default() {
        let Ok(contiguous) = cx.store.contiguous_seq(&author) else { continue };
        let latest = cx.store.latest(&author).ok().flatten().map_or(0, |(seq, _)| seq);
        if latest > contiguous || authors.len() == MAX_DIGEST_AUTHORS {
            direct.push_back(Question::Author(author));
        } else {
            authors.push((author, contiguous));
        }
    }
    let since = now.saturating_sub(TAG_HORIZON_MS);
    let mut tags = Vec::new();
    for tag in cx.store.subscriptions().unwrap_or_default() {
        // Past the digest's limit a tag is asked directly: no summary to read for it.
        let summary = (tags.len() < MAX_DIGEST_TAGS)
            .then(|| cx.store.tag_buckets(&tag, since).ok())
            .flatten();
        match summary {
            Some(buckets) => tags.push((tag, Bucket::summary(&buckets))),
            None => direct.push_back(Question::Tag(tag)),
        }
    }
    let digest = (!authors.is_empty() || !tags.is_empty()).then_some(Asking::Digest {
        authors,
        since,
        tags,
    });
    (digest, direct)
}

fn pulled(answer: AnswerId, pulled: Pulled) -> Effect {
    Effect::Answer { answer, result: Ok(Answer::Pulled(pulled)) }
}

/// The question a pull would ask after `reply` to the author question `request` if every
/// record in it passed the checks: the next page, from the last record's seq. The
/// driver may send it while the core checks and stores this page, and use its answer
/// only if the core then asks exactly that question (the core moves its cursor only by
/// records that passed; this guess, from records not checked yet, never reaches it).
/// None for other questions, or when the peer said no page follows.
pub fn next_page_guess(request: &[u8], reply: &[u8]) -> Option<Vec<u8>> {
    let Query::Author { author, after } = SyncRequest::from_bytes(request).ok()?.query else {
        return None;
    };
    let response = SyncResponse::from_bytes(reply).ok()?;
    let last = seq_of(response.records.last()?)?;
    if !response.more || last <= after {
        return None;
    }
    SyncRequest { query: Query::Author { author, after: last } }.to_bytes().ok()
}

/// The seq of an encoded record (one that passed the checks).
fn seq_of(bytes: &[u8]) -> Option<u64> {
    let signed: SignedRecord = codec::decode::<_, MAX_RECORD_BYTES>(bytes).ok()?;
    Some(signed.record.seq)
}
