//! Probing the meshes of this node's own records (issue 21): a mesh can stand in parts
//! that never join (`net/mend.rs`), and a subscriber in a part without the author gets
//! the author's post only by sync, minutes late. Only the author can tell at once that
//! a post went out; so a while after its own records went to a topic
//! ([`crate::net::GossipTuning::probe_after`]), a node sends a digest of them
//! ([`Query::Digest`]: its own last seq on its author topic, its summary of the tag's
//! newest bucket on a tag topic) to [`PROBE_PEERS`] peers that take the topic and are
//! outside its mesh of it, picked at random by the network layer ([`Effect::Probe`]).
//! A peer picked for several topics gets one digest of them all ([`probe_requests`]), and
//! the network layer picks peers already picked for another topic first. On a topic the
//! node has no mesh of (a tag it does not take), gossipsub sent the record to D of the
//! subscribers it is connected to, which it does not show: that topic is probed only
//! when more than D are connected.
//!
//! A peer of another part finds the digest ahead of what it holds (a followed author's
//! seq past its own, or a tag it takes with posts it lacks, [`tags_ahead`]) and pulls
//! from the author at once, as from any peer whose digest is ahead
//! ([`super::Rounds::peer_ahead`]). What it fetches came by sync and not gossip: the
//! network layer passes it on to its own part of the mesh and mends the mesh
//! (`net/mend.rs`). A peer in the author's part holds the post and does nothing but
//! answer the digest.
//!
//! The cost is per post, not per delivery: one probe of each topic per
//! `probe_after` however many records went there meanwhile (a burst of posts is one
//! probe), each a small request and answer, about 1.9 kB and 19 packets on loopback
//! with its stream's opening and closing (docs/benchmarks.md, session 32). A part that
//! the author is not connected to is not reached this way; the periodic rounds still
//! are.

use std::collections::BTreeMap;

use kith_protocol::{
    sync::{Bucket, Query, SyncRequest, BUCKET_MS, MAX_DIGEST_TAGS},
    AuthorId, Tag, Topic,
};
use libp2p::PeerId;

use crate::core::{Context, Effect, Timer};

/// Peers outside the mesh that one topic's probe goes to, at most. A mesh in two parts
/// of 6 and 5 (seen in 100-node sims) leaves an author of the larger part 7 peers of the
/// topic outside its mesh, 5 of them in the other part: two probes miss it 1 time in 21,
/// and the next post probes again.
pub const PROBE_PEERS: usize = 2;

/// A digest whose tag summaries start at most this long before now is taken as a probe:
/// the node that gets it compares its own summaries of the tags it takes
/// ([`tags_ahead`]). Older ones (a periodic round's, 30 days) are only answered.
pub const PROBE_SINCE_MS: u64 = 2 * BUCKET_MS;

/// How long before its record went out a probe's tag summary starts, ms.
const SINCE_SLACK_MS: u64 = 60_000;

/// Tags of one probe compared, at most.
const MAX_PROBE_TAGS: usize = 8;

/// Topics this node's own records went to since the last probe.
#[derive(Debug, Default)]
pub(crate) struct Probes {
    /// How long after a record went out its topics are probed, ms; `None`: never.
    after: Option<u64>,
    /// Topic -> when the first record of it went out since the last probe, ms.
    pending: BTreeMap<String, u64>,
    /// A [`Timer::Probe`] is scheduled.
    scheduled: bool,
}

impl Probes {
    /// Probes come `after` ms after a record goes out (`None`: never).
    pub(crate) fn set_after(&mut self, after: Option<u64>) {
        self.after = after;
        if after.is_none() {
            self.pending.clear();
        }
    }

    /// This node's records went out on `topics` at `now`: the timer for the next probe,
    /// unless one is scheduled already (it probes these too).
    pub(crate) fn published<'a>(
        &mut self,
        topics: impl IntoIterator<Item = &'a str>,
        now: u64,
    ) -> Vec<Effect> {
        let Some(after) = self.after else { return Vec::new() };
        for topic in topics {
            if Topic::parse(topic).is_some() {
                self.pending.entry(topic.to_owned()).or_insert(now);
            }
        }
        if self.pending.is_empty() || self.scheduled {
            return Vec::new();
        }
        self.scheduled = true;
        vec![Effect::Schedule { at: now.saturating_add(after), timer: Timer::Probe }]
    }

    /// The timer fired: one [`Effect::Probe`] of every topic pending, its tag summaries
    /// from a little before the first record went out (a record is dated before it goes
    /// out, and may fall in the bucket before).
    pub(crate) fn fire(&mut self, cx: &Context) -> Vec<Effect> {
        self.scheduled = false;
        let pending = std::mem::take(&mut self.pending);
        let Some(first) = pending.values().min() else { return Vec::new() };
        let since = first.saturating_sub(SINCE_SLACK_MS);
        let mut topics = Vec::new();
        for topic in pending.into_keys() {
            let entry = match Topic::parse(&topic) {
                Some(Topic::Author(author)) if author == cx.me => {
                    let Ok(Some((latest, _))) = cx.store.latest(&cx.me) else { continue };
                    ProbeEntry::Author(author, latest)
                }
                Some(Topic::Tag(tag)) => {
                    let Ok(buckets) = cx.store.tag_buckets(&tag, since) else { continue };
                    ProbeEntry::Tag(tag.to_string(), Bucket::summary(&buckets))
                }
                _ => continue,
            };
            topics.push((topic, entry));
        }
        if topics.is_empty() {
            return Vec::new();
        }
        vec![Effect::Probe { since, topics }]
    }
}

/// One topic's entry in a probe ([`Effect::Probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEntry {
    /// This node's author topic: its own last seq.
    Author(AuthorId, u64),
    /// A tag topic: the tag, and this node's summary of its posts from the probe's
    /// `since`.
    Tag(String, Bucket),
}

/// The requests of a probe: `topics[i]`'s entry goes to each peer of `peers[i]` (those
/// the network picked outside the topic's mesh), one digest per peer holding all of its
/// entries, encoded.
pub fn probe_requests(
    since: u64,
    topics: &[(String, ProbeEntry)],
    peers: &[Vec<PeerId>],
) -> Vec<(PeerId, Vec<u8>)> {
    type Entries = (Vec<(AuthorId, u64)>, Vec<(String, Bucket)>);
    let mut by_peer: BTreeMap<PeerId, Entries> = BTreeMap::new();
    for ((_, entry), peers) in topics.iter().zip(peers) {
        for peer in peers {
            let (authors, tags) = by_peer.entry(*peer).or_default();
            match entry {
                ProbeEntry::Author(author, seq) => authors.push((*author, *seq)),
                ProbeEntry::Tag(tag, sum) => tags.push((tag.clone(), *sum)),
            }
        }
    }
    by_peer
        .into_iter()
        .filter_map(|(peer, (authors, mut tags))| {
            tags.truncate(MAX_DIGEST_TAGS);
            let query = Query::Digest { authors, since, tags };
            match (SyncRequest { query }).to_bytes() {
                Ok(bytes) => Some((peer, bytes)),
                Err(error) => {
                    tracing::debug!(%error, "cannot encode a probe");
                    None
                }
            }
        })
        .collect()
}

/// Whether the tag summaries of a digest (from `since`) show its sender holding posts
/// this node lacks with a tag it takes: a summary that differs from this node's and
/// counts as many posts or more. Only a probe's are looked at (`since` at most
/// [`PROBE_SINCE_MS`] ago), and only its first [`MAX_PROBE_TAGS`] tags that this node
/// takes.
pub(super) fn tags_ahead(cx: &Context, since: u64, tags: &[(String, Bucket)], now: u64) -> bool {
    if tags.is_empty() || since < now.saturating_sub(PROBE_SINCE_MS) {
        return false;
    }
    tags.iter()
        .filter_map(|(tag, theirs)| {
            let tag = Tag::parse(tag).ok()?;
            cx.store.is_subscribed(&tag).ok()?.then_some((tag, theirs))
        })
        .take(MAX_PROBE_TAGS)
        .any(|(tag, theirs)| {
            let Ok(ours) = cx.store.tag_buckets(&tag, since) else { return false };
            let ours = Bucket::summary(&ours);
            theirs.count >= ours.count && *theirs != ours
        })
}
