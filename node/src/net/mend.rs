//! Mending a split mesh (issue 21): a record that gossip missed says so.
//!
//! A topic's mesh can stand in parts that never join: four subscribers each grafted to
//! the other three sit at D, so the heartbeat grafts nobody, a GRAFT from outside is
//! taken but nobody outside has a reason to send one, and without IHAVE gossip
//! ([`super::GossipTuning::KITH`]) no post crosses. Each part gets the other's posts only
//! by history sync, minutes late, for as long as the meshes stand.
//!
//! A node cannot see the whole mesh, but it can see a record that gossip should have
//! brought and did not: one of a topic it has taken for a while, that comes by sync
//! (an answer or an offer) at least [`super::GossipTuning::mend_grace`] after it was
//! written. Then the node boosts one peer that takes the topic and is outside its mesh
//! of it, at random, for [`super::GossipTuning::mend_hold`] (`credit.rs`): gossipsub's
//! next round of opportunistic grafting grafts it (its score is above the mesh's
//! median), and when the mesh is then over D the heartbeat prunes one of the others, not
//! it. In a part of four, each of the four that fetches the missed post does this, and
//! each bridge joins the parts.
//!
//! Since session 32 the node also passes the records that gossip missed on to its mesh
//! of the topic (publishes them as if they had just come by gossip): the rest of its
//! part likely missed them too. Then the others of the part have them by gossip and
//! usually only the first to fetch them mends. What brings a missed record soon after
//! it was written is the author's probe (`core/sync/probe.rs`); the periodic sync rounds
//! bring the rest.
//!
//! Nothing is pruned at random beyond what gossipsub does after any graft, and nothing
//! happens while gossip brings everything (session 24's lots churned every mesh all the
//! time, and stranded more subscribers than they freed). A peer that sends records
//! dated a minute ago on purpose makes at most one boost per topic per
//! `mend_hold` (and [`MAX_BOOSTED`] at once), each of a peer picked at random.

use std::{
    collections::HashMap,
    ops::RangeInclusive,
    time::{Duration, Instant},
};

use super::GossipTuning;

/// Most peers boosted at once.
pub const MAX_BOOSTED: usize = 4;

/// When each topic was taken and last mended.
#[derive(Debug)]
pub(crate) struct Mends {
    /// `None`: no mending.
    grace: Option<Duration>,
    hold: Duration,
    /// When this node subscribed to each topic it takes.
    subscribed: HashMap<String, Instant>,
    /// When each topic was last mended.
    mended: HashMap<String, Instant>,
}

impl Mends {
    pub(crate) fn new(tuning: &GossipTuning) -> Self {
        Self {
            grace: tuning.mend_grace,
            hold: tuning.mend_hold(),
            subscribed: HashMap::new(),
            mended: HashMap::new(),
        }
    }

    /// How long a mend's boost lasts.
    pub(crate) fn hold(&self) -> Duration {
        self.hold
    }

    /// This node took `topic` at `now` (again: the earlier time stands).
    pub(crate) fn subscribed(&mut self, topic: &str, now: Instant) {
        self.subscribed.entry(topic.to_owned()).or_insert(now);
    }

    /// This node left `topic`.
    pub(crate) fn unsubscribed(&mut self, topic: &str) {
        self.subscribed.remove(topic);
        self.mended.remove(topic);
    }

    /// Whether gossip missed records of `topic` written `ages` ms ago (the youngest ..=
    /// the oldest) that came by sync at `now`: mending is on, the topic is taken, and
    /// some age lies between the grace (no copy is still on its way) and the time since
    /// the topic was taken less the grace (the mesh had formed when it was written).
    /// Then the records are passed on to the mesh, whose other nodes likely missed them
    /// too.
    pub(crate) fn missed(&self, topic: &str, ages: &RangeInclusive<u64>, now: Instant) -> bool {
        let Some(grace) = self.grace else { return false };
        let Some(since) = self.subscribed.get(topic) else { return false };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let grace = ms(grace);
        let youngest = (*ages.start()).max(grace);
        let newest_allowed = ms(now.saturating_duration_since(*since)).saturating_sub(grace);
        youngest <= *ages.end() && youngest <= newest_allowed
    }

    /// Whether such records call for a mend: gossip [`Mends::missed`] them, and the topic
    /// was not mended within the hold ([`Mends::mended`] notes a mend).
    pub(crate) fn due(&self, topic: &str, ages: &RangeInclusive<u64>, now: Instant) -> bool {
        self.missed(topic, ages, now)
            && self
                .mended
                .get(topic)
                .is_none_or(|at| now.saturating_duration_since(*at) >= self.hold)
    }

    /// `topic` was mended at `now`: a peer was boosted for it. A topic that was due but
    /// had no peer to boost (none outside its mesh, or every one boosted already) is not
    /// noted, so the next record gossip missed may mend it.
    pub(crate) fn mended(&mut self, topic: &str, now: Instant) {
        self.mended.insert(topic.to_owned(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mends() -> Mends {
        Mends::new(&GossipTuning::KITH)
    }

    #[test]
    fn a_record_missed_by_a_mesh_that_had_formed_calls_for_one_mend() {
        let (mut m, start) = (mends(), Instant::now());
        m.subscribed("tag/rust", start);
        let now = start + Duration::from_secs(600);
        assert!(!m.due("tag/other", &(60_000..=60_000), now), "a topic not taken");
        // KITH's grace: 4 s.
        assert!(!m.due("tag/rust", &(1_000..=3_900), now), "within the grace: may be late");
        assert!(!m.due("tag/rust", &(596_500..=599_000), now), "written before the mesh formed");
        assert!(m.due("tag/rust", &(1_000..=60_000), now), "one of them is old enough");
        assert!(m.due("tag/rust", &(60_000..=60_000), now), "due until a mend is noted");
        m.mended("tag/rust", now);
        assert!(!m.due("tag/rust", &(60_000..=60_000), now), "mended within the hold");
        assert!(m.missed("tag/rust", &(60_000..=60_000), now), "but missed all the same");
        assert!(!m.missed("tag/rust", &(1_000..=3_900), now));
        let later = now + m.hold();
        assert!(m.due("tag/rust", &(60_000..=60_000), later), "the hold is over");
        m.mended("tag/rust", later);
        m.unsubscribed("tag/rust");
        assert!(!m.due("tag/rust", &(60_000..=60_000), later + m.hold()), "not taken");
        m.subscribed("tag/rust", later);
        assert!(m.due("tag/rust", &(60_000..=60_000), later + m.hold()), "taken again");
    }

    #[test]
    fn no_mending_without_a_grace() {
        let tuning = GossipTuning { mend_grace: None, ..GossipTuning::KITH };
        let (mut m, start) = (Mends::new(&tuning), Instant::now());
        m.subscribed("tag/rust", start);
        assert!(!m.due("tag/rust", &(60_000..=60_000), start + Duration::from_secs(600)));
    }

    #[test]
    fn the_hold_spans_two_of_the_longest_rounds_of_opportunistic_grafting() {
        // KITH: 60 heartbeats of 2 s, spread by at most 25 %: 150 s at most.
        assert_eq!(mends().hold(), Duration::from_secs(300));
    }
}
