//! The message keys of recent peers.

use std::{collections::BTreeMap, sync::Arc};

use kith_protocol::{
    dm::{DmError, PairKeys},
    AuthorId, Keypair,
};

/// Most peers whose message keys are kept in memory.
pub(crate) const MAX_PAIR_KEYS: usize = 256;

/// The [`PairKeys`] of the peers this node wrote to or heard from last, at most
/// [`MAX_PAIR_KEYS`]: they save an X25519 agreement and a key conversion per message at
/// each end. Keys for a peer are kept only after a message was sealed for them or opened
/// from them.
#[derive(Default)]
pub(crate) struct PairKeyCache {
    keys: BTreeMap<AuthorId, (Arc<PairKeys>, u64)>,
    /// Counts uses; the least recently used entry goes when the cache is full.
    clock: u64,
}

impl PairKeyCache {
    pub(crate) fn get(&mut self, peer: &AuthorId) -> Option<Arc<PairKeys>> {
        self.clock += 1;
        let clock = self.clock;
        self.keys.get_mut(peer).map(|(keys, used)| {
            *used = clock;
            keys.clone()
        })
    }

    pub(crate) fn put(&mut self, keys: Arc<PairKeys>) {
        if self.keys.len() >= MAX_PAIR_KEYS && !self.keys.contains_key(keys.peer()) {
            let oldest = self.keys.iter().min_by_key(|(_, (_, used))| *used).map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                self.keys.remove(&oldest);
            }
        }
        self.clock += 1;
        self.keys.insert(*keys.peer(), (keys, self.clock));
    }

    /// Runs `op` (a seal or an open) with the message keys for `peer`: from the cache, or
    /// computed and then cached only if `op` succeeded with them, so that a message that
    /// cannot be opened leaves nothing behind.
    pub(crate) fn with<T>(
        &mut self,
        me: &Keypair,
        peer: &AuthorId,
        op: impl FnOnce(&PairKeys) -> Result<T, DmError>,
    ) -> Result<T, DmError> {
        if let Some(keys) = self.get(peer) {
            return op(&keys);
        }
        let keys = Arc::new(PairKeys::new(me, peer)?);
        let out = op(&keys)?;
        self.put(keys);
        Ok(out)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}
