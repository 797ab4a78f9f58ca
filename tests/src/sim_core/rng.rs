//! The simulation's one source of randomness: a PCG (rand_pcg, which the node's core
//! already uses) seeded from the run's seed, with the few draws the simulation needs.

use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// A seeded generator.
#[derive(Debug, Clone)]
pub struct SimRng(Pcg64Mcg);

impl SimRng {
    /// The generator of `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Pcg64Mcg::seed_from_u64(seed))
    }

    /// The PCG itself (what the core draws from).
    pub fn pcg(&mut self) -> &mut Pcg64Mcg {
        &mut self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.0.next_u64() % n
    }

    /// An index into a slice of `len` items.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// An exponentially distributed wait with mean `mean` (integer units, at least 1).
    pub fn exp(&mut self, mean: u64) -> u64 {
        // Inverse transform on a uniform in (0, 1].
        let u = (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let wait = -(1.0 - u).max(f64::MIN_POSITIVE).ln() * mean as f64;
        (wait as u64).max(1)
    }

    /// A one-way network latency in ms: 10 ms plus an exponential tail of mean 40 ms,
    /// capped at 2 s.
    pub fn latency_ms(&mut self) -> u64 {
        (10 + self.exp(40)).min(2_000)
    }
}
