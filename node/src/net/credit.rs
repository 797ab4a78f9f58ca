//! First-delivery credit: the positive part of a peer's gossip score, earned only by
//! bringing the node records it wants from authors it knows (issue #13, item 13).
//!
//! Gossipsub's own first-delivery credit (P₂) rewards any valid message a peer brings
//! first, so a peer that floods valid records of fresh keys (posts on a hashtag, replies
//! to a followed author on their topic) earned the topic's whole credit: enough to stay
//! in meshes ahead of honest peers and to absorb the penalty of invalid records sent
//! between the valid ones. Kith sets P₂'s weight to zero on every topic and gives credit
//! itself, as gossipsub's application-specific score (P₅): one point for each new record
//! by this node's person or an author it follows that a peer brought first, capped at
//! [`CREDIT_CAP`], halving every [`CREDIT_HALF_LIFE`]. Strangers' records are still
//! checked, kept and forwarded as before; they just earn nothing.
//!
//! The application score may also hold each peer's lot (issue 21; off unless the gossip
//! set's [`super::tuning::GossipTuning::mesh_lot`] is above 0): a small random number
//! this node draws for each peer it meets and draws again every few seconds, so that
//! peers of equal credit are not of equal score and gossipsub's opportunistic grafting
//! keeps mixing the meshes.
//!
//! And it may hold a boost: a high score given to one peer for a few minutes when a
//! record of a topic this node takes came by sync after gossip missed it (`mend.rs`), so
//! that gossipsub's opportunistic grafting grafts that peer into the topic's mesh and
//! the heartbeat keeps it there.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    time::{Duration, Instant},
};

/// Most credit a peer holds.
pub const CREDIT_CAP: f64 = 50.0;
/// Credit halves this often while a peer brings nothing new.
pub const CREDIT_HALF_LIFE: Duration = Duration::from_secs(300);
/// Credit under this is forgotten (set to zero).
const FORGET_BELOW: f64 = 0.01;

#[derive(Debug, Clone, Copy)]
struct Held {
    value: f64,
    at: Instant,
}

impl Held {
    fn at(self, now: Instant) -> f64 {
        let halvings =
            now.saturating_duration_since(self.at).as_secs_f64() / CREDIT_HALF_LIFE.as_secs_f64();
        self.value * 0.5f64.powf(halvings)
    }
}

/// A boost's score: gossipsub's default opportunistic graft threshold. Opportunistic
/// grafting runs only while the median score of a topic's mesh is under it, and grafts
/// only peers scoring above that median; a boosted peer does whenever a round runs.
pub(crate) const BOOST: f64 = 20.0;

/// Each peer's credit, lot and boost: its application score is their sum. Holds credit
/// only for peers that brought something worth credit and have not decayed to nothing
/// since, a lot for each connected peer, and a boost until it ends.
#[derive(Debug)]
pub(crate) struct Credit<K> {
    peers: HashMap<K, Held>,
    lots: HashMap<K, f64>,
    /// Boosted peers, and when each boost ends.
    boosts: HashMap<K, Instant>,
}

impl<K: Eq + Hash + Copy> Credit<K> {
    pub(crate) fn new() -> Self {
        Self { peers: HashMap::new(), lots: HashMap::new(), boosts: HashMap::new() }
    }

    /// `peer`'s application score at `now`: credit decayed to then, lot and boost.
    fn score(&self, peer: &K, now: Instant) -> f64 {
        let credit = self.peers.get(peer).map_or(0.0, |h| h.at(now));
        let lot = self.lots.get(peer).copied().unwrap_or(0.0);
        let boost = match self.boosts.get(peer) {
            Some(until) if *until > now => BOOST,
            _ => 0.0,
        };
        credit + lot + boost
    }

    /// `peer` connected and drew `lot` (in [0, the tuning's `mesh_lot`)): its application
    /// score now.
    pub(crate) fn meet(&mut self, peer: K, lot: f64, now: Instant) -> f64 {
        self.lots.insert(peer, lot);
        self.score(&peer, now)
    }

    /// `peer` brought a new record of a known author first: its application score now,
    /// with its credit one more than before (decayed to `now`), at most [`CREDIT_CAP`].
    pub(crate) fn add(&mut self, peer: K, now: Instant) -> f64 {
        let before = self.peers.get(&peer).map_or(0.0, |h| h.at(now));
        let value = (before + 1.0).min(CREDIT_CAP);
        self.peers.insert(peer, Held { value, at: now });
        self.score(&peer, now)
    }

    /// Boosts `peer` by [`BOOST`] until `until`: its application score now.
    pub(crate) fn boost(&mut self, peer: K, until: Instant, now: Instant) -> f64 {
        self.boosts.insert(peer, until);
        self.score(&peer, now)
    }

    /// Peers boosted at `now`.
    pub(crate) fn boosted(&self, now: Instant) -> impl Iterator<Item = &K> {
        self.boosts.iter().filter(move |(_, until)| **until > now).map(|(peer, _)| peer)
    }

    /// Every peer's application score, to be handed to gossipsub: each connected peer's lot
    /// drawn again by `draw`, plus its credit decayed to `now`, plus its boost. A peer
    /// whose credit fell under [`FORGET_BELOW`] has it forgotten, and a boost that ended
    /// is dropped; such a peer is reported once more, and so is a peer gone but still
    /// holding credit.
    pub(crate) fn scores(&mut self, now: Instant, mut draw: impl FnMut() -> f64) -> Vec<(K, f64)> {
        for lot in self.lots.values_mut() {
            *lot = draw();
        }
        let mut report: Vec<K> = self.lots.keys().copied().collect();
        let mut seen: HashSet<K> = report.iter().copied().collect();
        self.peers.retain(|peer, held| {
            let value = held.at(now);
            *held = Held { value, at: now };
            if seen.insert(*peer) {
                report.push(*peer);
            }
            value >= FORGET_BELOW
        });
        self.boosts.retain(|peer, until| {
            if seen.insert(*peer) {
                report.push(*peer);
            }
            *until > now
        });
        report.into_iter().map(|peer| (peer, self.score(&peer, now))).collect()
    }

    /// Forgets `peer` (gone, and no longer scored by gossipsub).
    pub(crate) fn forget(&mut self, peer: &K) {
        self.peers.remove(peer);
        self.lots.remove(peer);
        self.boosts.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_grows_by_one_up_to_the_cap() {
        let (mut c, now) = (Credit::new(), Instant::now());
        assert_eq!(c.add(1, now), 1.0);
        assert_eq!(c.add(1, now), 2.0);
        for _ in 0..100 {
            c.add(1, now);
        }
        assert_eq!(c.add(1, now), CREDIT_CAP);
        assert_eq!(c.add(2, now), 1.0, "peers are credited apart");
    }

    #[test]
    fn credit_halves_every_half_life_and_is_then_forgotten() {
        let (mut c, start) = (Credit::new(), Instant::now());
        for _ in 0..8 {
            c.add(7, start);
        }
        let later = start + CREDIT_HALF_LIFE;
        let never = || panic!("no lot to draw");
        assert_eq!(c.scores(later, never), vec![(7, 4.0)]);
        assert_eq!(c.add(7, later + CREDIT_HALF_LIFE), 3.0);
        // Long after: reported at zero once, then gone.
        let much_later = later + CREDIT_HALF_LIFE * 20;
        assert_eq!(c.scores(much_later, never), vec![(7, 0.0)]);
        assert!(c.scores(much_later, never).is_empty());
        c.add(7, much_later);
        c.forget(&7);
        assert!(c.scores(much_later, never).is_empty());
    }

    #[test]
    fn a_lot_adds_to_credit_and_is_drawn_again_each_time() {
        let (mut c, start) = (Credit::new(), Instant::now());
        assert_eq!(c.meet(1, 0.05, start), 0.05);
        assert_eq!(c.meet(2, 0.07, start), 0.07);
        assert_eq!(c.add(1, start), 1.05, "credit and lot add up");
        // Both lots drawn again; peer 1's credit has halved.
        let mut draws = vec![0.02, 0.03].into_iter();
        let mut got = c.scores(start + CREDIT_HALF_LIFE, || draws.next().unwrap());
        got.sort_by_key(|(p, _)| *p);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1].0, 2);
        let lots = [got[0].1 - 0.5, got[1].1];
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(
            close(lots[0], 0.02) && close(lots[1], 0.03)
                || close(lots[0], 0.03) && close(lots[1], 0.02),
            "{got:?}"
        );
        assert!(draws.next().is_none(), "one draw per connected peer");
        // Gone: neither credit nor lot is kept.
        c.forget(&1);
        c.forget(&2);
        assert!(c.scores(start + CREDIT_HALF_LIFE * 3, || panic!("nobody to draw for")).is_empty());
    }

    #[test]
    fn a_boost_adds_to_the_score_until_it_ends() {
        let (mut c, start) = (Credit::new(), Instant::now());
        let end = start + Duration::from_secs(10);
        assert_eq!(c.boost(3, end, start), BOOST);
        assert_eq!(c.add(3, start), BOOST + 1.0, "credit and boost add up");
        assert_eq!(c.boosted(start).copied().collect::<Vec<_>>(), vec![3]);
        let never = || panic!("no lot to draw");
        // Still boosted: reported with it; credit not halved yet in a second.
        let got = c.scores(start + Duration::from_secs(1), never);
        assert_eq!(got.len(), 1);
        assert!((got[0].1 - BOOST - 1.0).abs() < 0.01, "{got:?}");
        // Ended: reported without it, and no longer boosted.
        let after = end + Duration::from_secs(1);
        let got = c.scores(after, never);
        assert!(got.len() == 1 && got[0].1 < 1.0, "{got:?}");
        assert_eq!(c.boosted(after).count(), 0);
        // A boosted peer with neither credit nor lot: reported at 0 once its boost ends.
        c.boost(4, end, start);
        let mut got = c.scores(after, never);
        got.sort_by_key(|(p, _)| *p);
        assert_eq!(got.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(got[1].1, 0.0);
        assert!(c.scores(after, never).iter().all(|(p, _)| *p == 3));
        c.forget(&3);
        c.boost(5, end, start);
        c.forget(&5);
        assert!(c.scores(start, never).is_empty(), "forgotten peers keep no boost");
    }
}
