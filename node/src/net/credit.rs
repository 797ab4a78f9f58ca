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

/// Each peer's credit. Holds only peers that brought something worth credit and have not
/// decayed to nothing since.
#[derive(Debug)]
pub(crate) struct Credit<K> {
    peers: HashMap<K, Held>,
}

impl<K: Eq + Hash + Copy> Credit<K> {
    pub(crate) fn new() -> Self {
        Self { peers: HashMap::new() }
    }

    /// `peer` brought a new record of a known author first: its credit now, one more
    /// than before (decayed to `now`), at most [`CREDIT_CAP`].
    pub(crate) fn add(&mut self, peer: K, now: Instant) -> f64 {
        let before = self.peers.get(&peer).map_or(0.0, |h| h.at(now));
        let value = (before + 1.0).min(CREDIT_CAP);
        self.peers.insert(peer, Held { value, at: now });
        value
    }

    /// Every peer's credit decayed to `now`, to be handed to gossipsub; a peer whose
    /// credit fell under [`FORGET_BELOW`] is reported at zero once and forgotten.
    pub(crate) fn decayed(&mut self, now: Instant) -> Vec<(K, f64)> {
        let mut out = Vec::with_capacity(self.peers.len());
        self.peers.retain(|peer, held| {
            let value = held.at(now);
            *held = Held { value, at: now };
            let keep = value >= FORGET_BELOW;
            out.push((*peer, if keep { value } else { 0.0 }));
            keep
        });
        out
    }

    /// Forgets `peer` (gone, and no longer scored by gossipsub).
    pub(crate) fn forget(&mut self, peer: &K) {
        self.peers.remove(peer);
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
        assert_eq!(c.decayed(later), vec![(7, 4.0)]);
        assert_eq!(c.add(7, later + CREDIT_HALF_LIFE), 3.0);
        // Long after: reported at zero once, then gone.
        let much_later = later + CREDIT_HALF_LIFE * 20;
        assert_eq!(c.decayed(much_later), vec![(7, 0.0)]);
        assert!(c.decayed(much_later).is_empty());
        c.add(7, much_later);
        c.forget(&7);
        assert!(c.decayed(much_later).is_empty());
    }
}
