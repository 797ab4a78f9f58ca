//! kith (`KITH-PATCHES.md`, change 21): cleaning a store at rest.
//!
//! sled's cleaner drains a segment only once it is at most
//! `SEGMENT_CLEANUP_THRESHOLD` (50) percent live, so a store left alone sits
//! anywhere between its live bytes and about twice them. When nothing but
//! the cleaner itself has written to the log since the flusher's last round,
//! the flusher hands the cleaner one more segment, the least live one that
//! is at most `IDLE_CLEANUP_THRESHOLD` percent live (when such segments
//! would give back `IDLE_MIN_GAIN_SEGMENTS` in all), and moves its pages in
//! its usual cleaning time (at most half of each round). Writes pause it; it
//! stops by itself once every segment is fuller than that: the pages it
//! moves go, consolidated, into new segments that are full.
//!
//! A store opened and never written had its recovered segments "active"
//! until the first write reached the log (sled stabilizes them on its write
//! path), so it cleaned nothing; the first quiet round stabilizes them as
//! that first write would, after an fsync of the file.

use super::*;

/// A segment at most this percent live is drained while the store is idle.
pub(crate) const IDLE_CLEANUP_THRESHOLD: usize = 85;

/// ... if the segments that live would give back at least this many segments
/// in all (`SegmentAccountant::drain_when_idle`): a drain that cannot free a
/// whole segment holds more blocks than it gives back while the store rests
/// (its source stays until the segment its pages moved to is no longer
/// active, which takes later writes).
pub(crate) const IDLE_MIN_GAIN_SEGMENTS: usize = 1;

/// The flusher's view of the log between two of its rounds.
#[derive(Debug, Default)]
pub(crate) struct IdleCleaner {
    /// The log's highest reserved lsn when the flusher's last round ended.
    mark: Option<Lsn>,
    /// Whether the segments recovered at start were stabilized here.
    stabilized: bool,
}

impl IdleCleaner {
    /// Whether nothing was written to the log since [`IdleCleaner::mark`].
    pub(crate) fn was_quiet(&self, pagecache: &PageCache) -> bool {
        self.mark == Some(pagecache.log.iobufs.max_reserved_lsn.load(Acquire))
    }

    /// Remembers where the log is now, at the end of a flusher round.
    pub(crate) fn mark(&mut self, pagecache: &PageCache) {
        self.mark = Some(pagecache.log.iobufs.max_reserved_lsn.load(Acquire));
    }

    /// Called by the flusher after a quiet round: hands the cleaner one
    /// segment if it has nothing left to move. Returns whether it did.
    pub(crate) fn clean(&mut self, pagecache: &PageCache) -> Result<bool> {
        if !self.stabilized {
            pagecache.stabilize_recovered()?;
            self.stabilized = true;
        }
        pagecache.log.iobufs.with_sa(|sa| {
            sa.drain_when_idle(IDLE_CLEANUP_THRESHOLD, IDLE_MIN_GAIN_SEGMENTS)
        })
    }
}

/// kith (change 46): flusher rounds at rest in a row after which the flusher
/// rests.
pub(crate) const REST_AFTER_ROUNDS: u32 = 4;

/// kith (change 46): how many times `flush_every_ms` a resting flusher sleeps.
pub(crate) const REST_STRETCH: u32 = 4;

/// kith (change 46): whether the flusher rests, a store left alone.
///
/// A round is at rest when nothing was reserved in the log during the sleep
/// before it, it wrote no IO buffer and the cleaner moved no page. After
/// [`REST_AFTER_ROUNDS`] such rounds in a row the flusher rests: it sleeps
/// [`REST_STRETCH`] times as long between rounds, asks the cleaner only when
/// the cleaner has a page queued (`attempt_gc` otherwise pins and flushes the
/// epoch, which walks every thread that ever pinned), and fsyncs the file only
/// if a log write completed since its last fsync. The first round that is not
/// at rest ends it.
#[derive(Debug, Default)]
pub(crate) struct Rest {
    /// Rounds at rest in a row.
    rounds: u32,
    /// The log's stable lsn before the last fsync that succeeded.
    synced: Option<Lsn>,
}

impl Rest {
    /// Whether the flusher rests this round.
    pub(crate) fn resting(&self) -> bool {
        self.rounds >= REST_AFTER_ROUNDS
    }

    /// Notes whether the round that ends was at rest; returns the sleep
    /// before the next.
    pub(crate) fn note(
        &mut self,
        at_rest: bool,
        flush_every: std::time::Duration,
    ) -> std::time::Duration {
        self.rounds = if at_rest { self.rounds.saturating_add(1) } else { 0 };
        if self.resting() { flush_every * REST_STRETCH } else { flush_every }
    }

    /// fsyncs the file unless the flusher rests and no log write completed
    /// since the last fsync.
    pub(crate) fn sync(
        &mut self,
        pagecache: &PageCache,
        at_rest: bool,
    ) -> std::io::Result<()> {
        let stable = pagecache.log.iobufs.stable_lsn.load(Acquire);
        if at_rest && self.resting() && self.synced == Some(stable) {
            return Ok(());
        }
        self.synced = None;
        pagecache.config.file.sync_all()?;
        pagecache.flusher_syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.synced = Some(stable);
        Ok(())
    }
}

impl PageCache {
    /// kith (change 46): `attempt_gc` for a resting flusher: nothing, not
    /// even an epoch pin and flush, when the cleaner has no page queued.
    pub(crate) fn attempt_gc_at_rest(&self) -> Result<bool> {
        if self.log.iobufs.segment_cleaner.is_empty() {
            return Ok(false);
        }
        self.attempt_gc()
    }

    /// kith (change 30): `attempt_gc` until the cleaner's queue is empty,
    /// the flusher's loop without its time limit (`Db::clean_segments`).
    pub(crate) fn clean_segments(&self) -> Result<usize> {
        let mut taken = 0;
        while self.attempt_gc()? {
            taken += 1;
        }
        Ok(taken)
    }

    /// What sled does at the first write after a start
    /// (`IoBufs::write_to_log`): the segments recovered below the log's tip
    /// become inactive, and the cleaner drains the emptier ones. Everything
    /// recovered is fsynced first, so that no segment is freed while the
    /// pages it held might still be only in the file system's cache.
    fn stabilize_recovered(&self) -> Result<()> {
        self.config.file.sync_all()?;
        let guard = pin();
        let stable = self.log.iobufs.max_header_stable_lsn.load(Acquire);
        self.log.iobufs.sa_stabilize(stable, &guard)
    }
}
