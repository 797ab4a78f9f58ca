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

use std::{collections::HashMap, hash::Hash, time::Duration, time::Instant};

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

/// Each peer's credit and lot: its application score is their sum. Holds credit only for
/// peers that brought something worth credit and have not decayed to nothing since, and
/// a lot for each connected peer.
#[derive(Debug)]
pub(crate) struct Credit<K> {
    peers: HashMap<K, Held>,
    lots: HashMap<K, f64>,
}

impl<K: Eq + Hash + Copy> Credit<K> {
    pub(crate) fn new() -> Self {
        Self { peers: HashMap::new(), lots: HashMap::new() }
    }

    fn lot(&self, peer: &K) -> f64 {
        self.lots.get(peer).copied().unwrap_or(0.0)
    }

    /// `peer` connected and drew `lot` (in [0, the tuning's `mesh_lot`)): its application
    /// score now.
    pub(crate) fn meet(&mut self, peer: K, lot: f64, now: Instant) -> f64 {
        self.lots.insert(peer, lot);
        self.peers.get(&peer).map_or(0.0, |h| h.at(now)) + lot
    }

    /// `peer` brought a new record of a known author first: its application score now,
    /// with its credit one more than before (decayed to `now`), at most [`CREDIT_CAP`].
    pub(crate) fn add(&mut self, peer: K, now: Instant) -> f64 {
        let before = self.peers.get(&peer).map_or(0.0, |h| h.at(now));
        let value = (before + 1.0).min(CREDIT_CAP);
        self.peers.insert(peer, Held { value, at: now });
        value + self.lot(&peer)
    }

    /// Every peer's application score, to be handed to gossipsub: each connected peer's lot
    /// drawn again by `draw`, plus its credit decayed to `now`. A peer whose credit fell
    /// under [`FORGET_BELOW`] has it forgotten; a peer gone but still holding credit is
    /// reported too.
    pub(crate) fn scores(&mut self, now: Instant, mut draw: impl FnMut() -> f64) -> Vec<(K, f64)> {
        let mut out = Vec::with_capacity(self.lots.len());
        for (peer, lot) in self.lots.iter_mut() {
            *lot = draw();
            let credit = self.peers.get(peer).map_or(0.0, |h| h.at(now));
            out.push((*peer, credit + *lot));
        }
        let lots = &self.lots;
        self.peers.retain(|peer, held| {
            let value = held.at(now);
            *held = Held { value, at: now };
            if !lots.contains_key(peer) {
                out.push((*peer, if value >= FORGET_BELOW { value } else { 0.0 }));
            }
            value >= FORGET_BELOW
        });
        out
    }

    /// Forgets `peer` (gone, and no longer scored by gossipsub).
    pub(crate) fn forget(&mut self, peer: &K) {
        self.peers.remove(peer);
        self.lots.remove(peer);
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
}
