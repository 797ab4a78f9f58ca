//! One bound on inbound requests handled at once, across all peers together.
//!
//! Each direct-message, sync or blob request a peer sends is handled in a task of its
//! own. The per-peer rate limit (`REQUEST_RATE` in `mod.rs`) and libp2p's per-connection
//! stream limit bound what one peer costs, but a thousand peers, each within its limits,
//! could still start a task each. So every handler first takes a slot here; with none
//! left the request is dropped at once (the peer sees its stream close and may retry),
//! counted, and nothing is held for it. A share of the slots is kept for friends (people
//! this node's person follows or is followed by), so that strangers filling the rest
//! cannot starve them.

use std::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    Arc,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Inbound requests handled at once, at most, from all peers together. A handler takes
/// milliseconds (a store read or a flush), so this is hundreds of requests a second even
/// when every slot waits on the disk, and at most this many tasks and their buffers
/// (a request is at most a few hundred KiB) are alive at once.
pub const MAX_INBOUND_REQUESTS: usize = 256;
/// Of [`MAX_INBOUND_REQUESTS`], the slots only friends may take.
pub const FRIENDS_RESERVED: usize = 64;

/// How busy the inbound request handlers are (for tests, status and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundStats {
    /// The bound on requests handled at once.
    pub limit: usize,
    /// Requests being handled now.
    pub in_flight: usize,
    /// The most that were handled at once since the node started.
    pub peak: usize,
    /// Requests dropped because every slot (open to the peer) was taken.
    pub refused: u64,
}

/// The slots.
pub(crate) struct Inbound {
    /// Slots anyone may take.
    shared: Arc<Semaphore>,
    /// Slots only friends may take, once the shared ones are gone.
    reserved: Arc<Semaphore>,
    limit: AtomicUsize,
    in_flight: Arc<AtomicUsize>,
    peak: AtomicUsize,
    refused: AtomicU64,
}

/// A request's slot, given back when the handler ends (or is cancelled).
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for Inbound {
    fn default() -> Self {
        Self::new(MAX_INBOUND_REQUESTS, FRIENDS_RESERVED)
    }
}

impl Inbound {
    /// `limit` slots, `reserved` of them for friends (at most `limit`).
    pub(crate) fn new(limit: usize, reserved: usize) -> Self {
        let reserved = reserved.min(limit);
        Self {
            shared: Arc::new(Semaphore::new(limit - reserved)),
            reserved: Arc::new(Semaphore::new(reserved)),
            limit: limit.into(),
            in_flight: Arc::default(),
            peak: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// A slot now, or none (counted as refused). `is_friend` is asked only when the
    /// shared slots are gone, so a stranger's request costs no store read.
    pub(crate) fn take(&self, is_friend: impl FnOnce() -> bool) -> Option<Slot> {
        let permit = match Arc::clone(&self.shared).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) if is_friend() => Arc::clone(&self.reserved).try_acquire_owned().ok(),
            Err(_) => None,
        };
        let Some(permit) = permit else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        Some(Slot { _permit: permit, in_flight: Arc::clone(&self.in_flight) })
    }

    /// Lowers the bound to `limit` slots, `reserved` of them for friends, by retiring
    /// free slots (tests use it to reach the bound with a few peers). Slots in use stay
    /// until their requests end.
    pub(crate) fn narrow(&self, limit: usize, reserved: usize) {
        let reserved = reserved.min(limit);
        let shrink = |s: &Semaphore, to: usize| {
            let free = s.available_permits();
            s.forget_permits(free.saturating_sub(to));
        };
        shrink(&self.shared, limit - reserved);
        shrink(&self.reserved, reserved);
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> InboundStats {
        InboundStats {
            limit: self.limit.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_fill_the_shared_slots_and_friends_still_get_one() {
        let inbound = Inbound::new(4, 1);
        let strangers: Vec<Slot> = (0..3).filter_map(|_| inbound.take(|| false)).collect();
        assert_eq!(strangers.len(), 3);
        assert!(inbound.take(|| false).is_none(), "a fourth stranger is refused");
        let friend = inbound.take(|| true);
        assert!(friend.is_some(), "the reserved slot serves a friend");
        assert!(inbound.take(|| true).is_none(), "and then nobody: the bound holds");
        let stats = inbound.stats();
        assert_eq!(stats, InboundStats { limit: 4, in_flight: 4, peak: 4, refused: 2 });
        drop(strangers);
        drop(friend);
        assert_eq!(inbound.stats().in_flight, 0);
        assert!(inbound.take(|| false).is_some(), "slots come back when requests end");
    }

    #[test]
    fn a_friend_takes_a_shared_slot_first_and_narrowing_lowers_the_bound() {
        let inbound = Inbound::new(8, 2);
        let mut asked = false;
        let slot = inbound.take(|| {
            asked = true;
            true
        });
        assert!(slot.is_some() && !asked, "no friend check while shared slots are free");
        drop(slot);
        inbound.narrow(2, 1);
        let held: Vec<Slot> = (0..5).filter_map(|_| inbound.take(|| true)).collect();
        assert_eq!(held.len(), 2);
        assert_eq!(inbound.stats().limit, 2);
        assert_eq!(inbound.stats().refused, 3);
    }
}
