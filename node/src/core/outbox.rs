//! The outbox's delivery lanes: one per peer, so that a peer's messages go one at a time
//! in the order they were written (receivers order threads by arrival), and a retry
//! schedule per peer. Memory only: after a restart every queue is due at once, then
//! backs off again.

use std::collections::BTreeMap;

/// First retry delay of a peer's queue (ms); doubles up to [`RETRY_MAX_MS`].
pub const RETRY_MIN_MS: u64 = 1_000;
/// Longest retry delay (ms).
pub const RETRY_MAX_MS: u64 = 60_000;
/// Most lanes started by one look at the outbox.
pub const MAX_IN_FLIGHT: usize = 64;

/// A peer's lane.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Lane {
    /// The message being delivered now, if any (its reply is awaited).
    current: Option<[u8; 16]>,
    /// When the queue is tried next, and the delay after that; none: whenever asked.
    retry: Option<(u64, u64)>,
    /// The peer connected while a delivery was in flight: if that one fails, the queue
    /// is tried again at once rather than after its delay.
    nudged: bool,
}

/// Every peer's lane, by peer key.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    lanes: BTreeMap<[u8; 32], Lane>,
}

impl Lanes {
    /// Whether `peer`'s lane is delivering a message now.
    pub(crate) fn busy(&self, peer: &[u8; 32]) -> bool {
        self.lanes.get(peer).is_some_and(|l| l.current.is_some())
    }

    /// The message `peer`'s lane is delivering now.
    pub(crate) fn current(&self, peer: &[u8; 32]) -> Option<[u8; 16]> {
        self.lanes.get(peer).and_then(|l| l.current)
    }

    /// The lanes to start now, from `queued` (the peers of the outbox's entries, oldest
    /// entry first, with repeats): those not busy whose retry time has come, or
    /// `forced`; at most [`MAX_IN_FLIGHT`], each once.
    pub(crate) fn due(
        &self,
        queued: impl IntoIterator<Item = [u8; 32]>,
        now: u64,
        forced: Option<&[u8; 32]>,
    ) -> Vec<[u8; 32]> {
        let mut due: Vec<[u8; 32]> = Vec::new();
        for peer in queued {
            if due.len() >= MAX_IN_FLIGHT {
                break;
            }
            let lane = self.lanes.get(&peer);
            let time_due = lane.and_then(|l| l.retry).is_none_or(|(at, _)| at <= now);
            let busy = lane.is_some_and(|l| l.current.is_some());
            if (forced == Some(&peer) || time_due) && !busy && !due.contains(&peer) {
                due.push(peer);
            }
        }
        due
    }

    /// `peer` just connected (or is otherwise known to be reachable) while its lane is
    /// busy: should the delivery in flight fail, the lane does not wait out its delay.
    pub(crate) fn nudge(&mut self, peer: &[u8; 32]) {
        if let Some(lane) = self.lanes.get_mut(peer).filter(|l| l.current.is_some()) {
            lane.nudged = true;
        }
    }

    /// A message of `peer`'s lane reached the peer (delivered or refused): the peer is
    /// reachable, so the next failure starts the back-off from its shortest delay again.
    pub(crate) fn reached(&mut self, peer: &[u8; 32]) {
        if let Some(lane) = self.lanes.get_mut(peer) {
            lane.retry = None;
            lane.nudged = false;
        }
    }

    /// `peer`'s lane now delivers `message`.
    pub(crate) fn claim(&mut self, peer: [u8; 32], message: [u8; 16]) {
        self.lanes.entry(peer).or_default().current = Some(message);
    }

    /// `peer`'s lane stopped and is tried again at `at`, sooner than its delay (the peer
    /// asked for a moment); the delay stays as it was.
    pub(crate) fn retry_at(&mut self, peer: [u8; 32], at: u64) {
        let lane = self.lanes.entry(peer).or_default();
        lane.current = None;
        lane.nudged = false;
        let backoff = lane.retry.map_or(RETRY_MIN_MS, |(_, b)| b);
        lane.retry = Some((at, backoff));
    }

    /// `peer`'s lane stopped. When it delivered everything it is forgotten and returns
    /// `None`; otherwise the queue is tried again after its delay (which then doubles,
    /// up to [`RETRY_MAX_MS`]), and the time of that try is returned.
    pub(crate) fn finish(&mut self, peer: [u8; 32], delivered_all: bool, now: u64) -> Option<u64> {
        if delivered_all {
            self.lanes.remove(&peer);
            return None;
        }
        let lane = self.lanes.entry(peer).or_default();
        lane.current = None;
        if std::mem::take(&mut lane.nudged) {
            // The peer connected while this attempt was under way: try again now, with
            // the delay the lane had.
            let backoff = lane.retry.map_or(RETRY_MIN_MS, |(_, b)| b);
            lane.retry = Some((now, backoff));
            return Some(now);
        }
        let backoff = lane.retry.map_or(RETRY_MIN_MS, |(_, b)| b);
        let at = now.saturating_add(backoff);
        lane.retry = Some((at, backoff.saturating_mul(2).min(RETRY_MAX_MS)));
        Some(at)
    }
}
