//! Block and mute lists: local settings, never published.

use std::sync::atomic::Ordering;

use kith_protocol::AuthorId;

use super::{
    codec::{self, BlockPeriod},
    corrupt, Store, StoreError,
};

const BLOCKED: u8 = 1;
const MUTED: u8 = 2;

/// Moderation state of one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Moderation {
    /// Everything from them is dropped; their messages and connections refused.
    pub blocked: bool,
    /// Kept and synced, but hidden from feeds and notifications.
    pub muted: bool,
}

impl Store {
    /// The moderation state of `who`.
    ///
    /// # Errors
    /// Disk errors.
    pub fn moderation(&self, who: &AuthorId) -> Result<Moderation, StoreError> {
        if !self.moderation_used.load(Ordering::SeqCst) {
            return Ok(Moderation::default());
        }
        let flags =
            self.moderation.get(who.as_bytes())?.and_then(|v| v.first().copied()).unwrap_or(0);
        Ok(Moderation { blocked: flags & BLOCKED != 0, muted: flags & MUTED != 0 })
    }

    /// Sets the moderation state of `who` (removing the entry when both are off).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_moderation(&self, who: &AuthorId, m: Moderation) -> Result<(), StoreError> {
        let flags = (u8::from(m.blocked) * BLOCKED) | (u8::from(m.muted) * MUTED);
        // Before the write, so that no reader skips an entry that exists.
        self.moderation_used.store(true, Ordering::SeqCst);
        if flags == 0 {
            self.moderation.remove(who.as_bytes())?;
        } else {
            self.moderation.insert(who.as_bytes(), &[flags])?;
        }
        Ok(())
    }

    /// Everyone blocked or muted.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn moderated(&self) -> Result<Vec<(AuthorId, Moderation)>, StoreError> {
        let mut out = Vec::new();
        for item in self.moderation.iter() {
            let (key, value) = item?;
            let bytes: [u8; 32] = key.as_ref().try_into().map_err(|_| corrupt("moderation key"))?;
            let who = AuthorId::from_bytes(bytes).map_err(|_| corrupt("moderation key"))?;
            let flags = value.first().copied().unwrap_or(0);
            out.push((
                who,
                Moderation { blocked: flags & BLOCKED != 0, muted: flags & MUTED != 0 },
            ));
        }
        Ok(out)
    }

    /// Records that `who` was blocked (`blocked`) or unblocked (not) at `now_ms`: the last
    /// block period is kept, so that a message written during it is refused even when it
    /// arrives after the unblock.
    ///
    /// # Errors
    /// Disk errors.
    pub fn mark_block_period(
        &self,
        who: &AuthorId,
        blocked: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let (start, _) = self.block_period(who)?.unwrap_or((now_ms, u64::MAX));
        let (start, end) = if blocked { (now_ms, u64::MAX) } else { (start, now_ms) };
        codec::put(&self.block_periods, who.as_bytes(), &BlockPeriod { start, end })
    }

    fn block_period(&self, who: &AuthorId) -> Result<Option<(u64, u64)>, StoreError> {
        let period = codec::get::<BlockPeriod>(&self.block_periods, who.as_bytes())?;
        Ok(period.map(|p| (p.start, p.end)))
    }

    /// Whether `who` was blocked at time `ms` (during the last block period).
    ///
    /// # Errors
    /// Disk errors.
    pub fn was_blocked_at(&self, who: &AuthorId, ms: u64) -> Result<bool, StoreError> {
        Ok(self.block_period(who)?.is_some_and(|(start, end)| start <= ms && ms <= end))
    }

    /// Whether `who` is blocked or muted (hidden from feeds and notifications).
    pub fn is_hidden(&self, who: &AuthorId) -> bool {
        self.moderation(who).is_ok_and(|m| m.blocked || m.muted)
    }
}
