//! Per-peer rate limits (token buckets) with bounded memory, used by the network task
//! (gossip) and the node (direct message and sync requests).

use std::{collections::HashMap, hash::Hash, sync::Mutex, time::Instant};

/// Most peers tracked per limiter; beyond it, peers whose bucket has refilled are forgotten
/// and new peers are refused until there is room (a flood of new peer ids cannot grow
/// memory).
const MAX_TRACKED: usize = 10_000;

/// A token bucket per key: `rate` tokens per second, at most `burst` saved.
pub(crate) struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Eq + Hash> RateLimiter<K> {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`; `false` when the key is over its rate.
    pub(crate) fn allow(&self, key: K) -> bool {
        let Ok(mut buckets) = self.buckets.lock() else { return true };
        let now = Instant::now();
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&key) {
            // Forget only peers whose bucket has refilled (they carry no state); peers
            // being limited stay limited, so fresh identities cannot reset them.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * rate < burst
            });
            if buckets.len() >= MAX_TRACKED {
                return false;
            }
        }
        let (tokens, last) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_is_per_key() {
        let l = RateLimiter::new(0.0, 3.0);
        assert!(l.allow(1) && l.allow(1) && l.allow(1));
        assert!(!l.allow(1));
        assert!(l.allow(2));
    }
}
