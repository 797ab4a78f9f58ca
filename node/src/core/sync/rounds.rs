//! When the periodic sync rounds come (issue 21 item 3), after Trickle (RFC 6206): a
//! round that finds nothing new doubles the time to the next one, from
//! [`Pace::min_ms`] up to [`Pace::max_ms`]; anything new that sync brings (records
//! stored from an answer or an offer), a gap in a followed author's log, or a peer whose
//! digest shows it holds more of a followed author than this node does, brings the next
//! round back to [`Pace::min_ms`] from now. Each wait is drawn from its nominal value ×
//! (1 ± [`Pace::jitter`]), so nodes started together do not sync together.
//!
//! The bound: while nothing new is seen, the wait between two rounds is at most
//! `max_ms × (1 + jitter)` (5 minutes with [`crate::net::IdleTuning::KITH`]); a record
//! that gossip did not bring and that a peer of the next round holds is fetched by then.
//! A new connection, a gap and `kith sync` still sync at once, as before.
//!
//! A peer whose digest shows it ahead is also pulled from at once, at most once per
//! [`Pace::min_ms`] per peer ([`Rounds::peer_ahead`]): that is how a node of a healed
//! partition learns of the other side without waiting for its own backed-off round
//! (the node that met the other side fetched, came back to the short pace, and its
//! round's digest tells its neighbours).
//!
//! The driver runs the rounds ([`Effect::SyncRound`], then [`super::super::Input::SyncRoundDone`]);
//! the timer is [`Timer::SyncRound`] with a generation, so that a timer replaced by an
//! earlier one does nothing when it fires.

use std::collections::BTreeMap;

use libp2p::PeerId;
use rand_core::Rng;

use crate::core::{Effect, Timer};

/// Peers remembered as pulled from for being ahead (older entries are dropped first).
const MAX_AHEAD_PEERS: usize = 256;

/// The pace of the periodic sync rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Wait between rounds while they find something new, ms.
    pub min_ms: u64,
    /// Longest wait, after rounds that find nothing, ms.
    pub max_ms: u64,
    /// Each wait is its nominal value × (1 ± up to this), drawn at random.
    pub jitter: f64,
}

impl Pace {
    /// A round every 30 s, as before issue 21 (no backoff, no jitter).
    pub const FIXED_30_S: Self = Self { min_ms: 30_000, max_ms: 30_000, jitter: 0.0 };

    /// The longest wait between two rounds, ms.
    pub fn bound_ms(&self) -> u64 {
        let jitter = self.jitter.clamp(0.0, 1.0);
        (self.max_ms.max(self.min_ms) as f64 * (1.0 + jitter)).ceil() as u64
    }
}

impl Default for Pace {
    fn default() -> Self {
        Self::FIXED_30_S
    }
}

/// The state of the periodic rounds.
#[derive(Debug)]
pub(crate) struct Rounds {
    pace: Pace,
    /// The nominal wait to the next round, ms.
    interval: u64,
    /// The generation of the timer that counts; 0 is the driver's start.
    generation: u64,
    /// When the next round is due (none before the start).
    due: Option<u64>,
    /// A round is running.
    running: bool,
    /// Something new was seen while a round ran.
    news: bool,
    /// When a peer that was ahead was last pulled from.
    ahead: BTreeMap<PeerId, u64>,
}

impl Default for Rounds {
    fn default() -> Self {
        Self::new(Pace::default())
    }
}

impl Rounds {
    pub(crate) fn new(pace: Pace) -> Self {
        let pace = Pace { max_ms: pace.max_ms.max(pace.min_ms), ..pace };
        Self {
            pace,
            interval: pace.min_ms,
            generation: 0,
            due: None,
            running: false,
            news: false,
            ahead: BTreeMap::new(),
        }
    }

    /// The nominal wait to the next round, ms.
    #[cfg(test)]
    pub(crate) fn interval(&self) -> u64 {
        self.interval
    }

    /// The timer of `generation` fired: the start (generation 0) schedules the first
    /// round; the current timer starts a round; an older one does nothing.
    pub(crate) fn timer(&mut self, generation: u64, now: u64, rng: &mut dyn Rng) -> Vec<Effect> {
        if generation != self.generation || self.running {
            return Vec::new();
        }
        if self.due.is_none() {
            return self.schedule(now, rng);
        }
        self.running = true;
        vec![Effect::SyncRound]
    }

    /// The round ended, having stored `fetched` new records.
    pub(crate) fn done(&mut self, fetched: u64, now: u64, rng: &mut dyn Rng) -> Vec<Effect> {
        if !self.running {
            return Vec::new();
        }
        self.running = false;
        self.interval = if fetched > 0 || std::mem::take(&mut self.news) {
            self.pace.min_ms
        } else {
            self.interval.saturating_mul(2).min(self.pace.max_ms)
        };
        self.schedule(now, rng)
    }

    /// Sync saw something new: the next round comes at the short pace (after the running
    /// one, if any).
    pub(crate) fn news(&mut self, now: u64, rng: &mut dyn Rng) -> Vec<Effect> {
        if self.running {
            self.news = true;
            return Vec::new();
        }
        let Some(due) = self.due else { return Vec::new() };
        let soon = now.saturating_add(self.short_bound());
        if self.interval == self.pace.min_ms && due <= soon {
            return Vec::new();
        }
        self.interval = self.pace.min_ms;
        self.schedule(now, rng)
    }

    /// `peer`'s digest shows it holds records this node lacks: whether to pull from it
    /// now (not if it was pulled from for this within [`Pace::min_ms`]).
    pub(crate) fn peer_ahead(&mut self, peer: PeerId, now: u64) -> bool {
        if let Some(&at) = self.ahead.get(&peer) {
            if now < at.saturating_add(self.pace.min_ms) {
                return false;
            }
        }
        if self.ahead.len() >= MAX_AHEAD_PEERS && !self.ahead.contains_key(&peer) {
            let oldest = self.ahead.iter().min_by_key(|(_, at)| **at).map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                self.ahead.remove(&oldest);
            }
        }
        self.ahead.insert(peer, now);
        true
    }

    /// The longest wait at the short pace, ms.
    fn short_bound(&self) -> u64 {
        let jitter = self.pace.jitter.clamp(0.0, 1.0);
        (self.pace.min_ms as f64 * (1.0 + jitter)).ceil() as u64
    }

    /// A new timer for the next round, `interval` × (1 ± jitter) from `now`.
    fn schedule(&mut self, now: u64, rng: &mut dyn Rng) -> Vec<Effect> {
        let jitter = self.pace.jitter.clamp(0.0, 1.0);
        // A uniform draw in [-1, 1).
        let draw = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        let wait = (self.interval as f64 * (1.0 + jitter * draw)).max(0.0) as u64;
        let at = now.saturating_add(wait);
        self.generation += 1;
        self.due = Some(at);
        vec![Effect::Schedule { at, timer: Timer::SyncRound(self.generation) }]
    }
}

#[cfg(test)]
mod tests {
    use rand_core::SeedableRng;

    use super::*;

    const PACE: Pace = Pace { min_ms: 30_000, max_ms: 240_000, jitter: 0.25 };

    fn rng() -> rand_pcg::Pcg64Mcg {
        rand_pcg::Pcg64Mcg::seed_from_u64(7)
    }

    /// The one timer scheduled in `effects`: (when, generation).
    fn scheduled(effects: &[Effect]) -> (u64, u64) {
        match effects {
            [Effect::Schedule { at, timer: Timer::SyncRound(g) }] => (*at, *g),
            other => panic!("expected one sync timer, got {other:?}"),
        }
    }

    /// Starts `rounds` at time 0 and runs rounds that fetch nothing until the wait is at
    /// its longest; returns (now, the current generation).
    fn back_off(rounds: &mut Rounds, rng: &mut rand_pcg::Pcg64Mcg) -> (u64, u64) {
        let (mut at, mut g) = scheduled(&rounds.timer(0, 0, rng));
        for _ in 0..5 {
            assert!(matches!(rounds.timer(g, at, rng)[..], [Effect::SyncRound]));
            (at, g) = scheduled(&rounds.done(0, at, rng));
        }
        assert_eq!(rounds.interval(), PACE.max_ms);
        (at, g)
    }

    /// Rounds that find nothing wait 30, 60, 120, 240, 240 s (each ±25 %), never longer
    /// than the bound; a round that fetches brings the wait back to 30 s.
    #[test]
    fn empty_rounds_back_off_to_the_longest_wait_and_a_fetch_resets() {
        let (mut rounds, mut rng) = (Rounds::new(PACE), rng());
        let (mut now, mut g) = scheduled(&rounds.timer(0, 0, &mut rng));
        assert!((22_500..=37_500).contains(&now), "first round at {now}");
        for nominal in [60_000u64, 120_000, 240_000, 240_000, 240_000] {
            assert!(matches!(rounds.timer(g, now, &mut rng)[..], [Effect::SyncRound]));
            let (at, next) = scheduled(&rounds.done(0, now, &mut rng));
            let wait = at - now;
            assert!(wait >= nominal * 3 / 4 && wait <= nominal * 5 / 4, "{wait} for {nominal}");
            assert!(wait <= PACE.bound_ms());
            (now, g) = (at, next);
        }
        assert!(matches!(rounds.timer(g, now, &mut rng)[..], [Effect::SyncRound]));
        let (at, _) = scheduled(&rounds.done(3, now, &mut rng));
        assert!(at - now <= 37_500, "after a fetch: {}", at - now);
        assert_eq!(rounds.interval(), PACE.min_ms);
        assert_eq!(PACE.bound_ms(), 300_000);
    }

    /// News between rounds brings the next round to within 30 s ± 25 % and makes the
    /// timer scheduled before a no-op; news while a round runs makes the next wait short.
    #[test]
    fn news_resets_the_wait_and_the_old_timer_does_nothing() {
        let (mut rounds, mut rng) = (Rounds::new(PACE), rng());
        let (now, old) = back_off(&mut rounds, &mut rng);
        let later = now + 10_000;
        let (at, new) = scheduled(&rounds.news(later, &mut rng));
        assert!(at - later <= 37_500 && new != old);
        assert!(rounds.timer(old, now + 240_000, &mut rng).is_empty(), "a replaced timer ran");
        // Already due soon: more news changes nothing.
        assert!(rounds.news(later + 1, &mut rng).is_empty());
        assert!(matches!(rounds.timer(new, at, &mut rng)[..], [Effect::SyncRound]));
        // News during the round: nothing now, the short wait after it.
        assert!(rounds.news(at + 1, &mut rng).is_empty());
        // A timer firing while the round runs does not start another.
        assert!(rounds.timer(new, at + 2, &mut rng).is_empty());
        let (next, _) = scheduled(&rounds.done(0, at + 5, &mut rng));
        assert!(next - (at + 5) <= 37_500);
    }

    /// Without backoff (the pace before issue 21) every wait is 30 s exactly.
    #[test]
    fn a_fixed_pace_waits_30_s() {
        let (mut rounds, mut rng) = (Rounds::new(Pace::FIXED_30_S), rng());
        let (mut now, mut g) = scheduled(&rounds.timer(0, 0, &mut rng));
        assert_eq!(now, 30_000);
        for _ in 0..3 {
            assert!(matches!(rounds.timer(g, now, &mut rng)[..], [Effect::SyncRound]));
            let (at, next) = scheduled(&rounds.done(0, now, &mut rng));
            assert_eq!(at - now, 30_000);
            (now, g) = (at, next);
        }
        assert!(rounds.news(now, &mut rng).is_empty());
    }

    /// A peer ahead is pulled from at most once per short interval.
    #[test]
    fn a_peer_ahead_is_pulled_from_once_per_short_interval() {
        let mut rounds = Rounds::new(PACE);
        let (p, q) = (PeerId::random(), PeerId::random());
        assert!(rounds.peer_ahead(p, 1_000));
        assert!(!rounds.peer_ahead(p, 20_000));
        assert!(rounds.peer_ahead(q, 20_000));
        assert!(rounds.peer_ahead(p, 31_000));
        for _ in 0..2 * MAX_AHEAD_PEERS {
            rounds.peer_ahead(PeerId::random(), 40_000);
        }
        assert!(rounds.ahead.len() <= MAX_AHEAD_PEERS);
    }
}
