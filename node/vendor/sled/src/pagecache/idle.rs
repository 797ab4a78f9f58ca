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

impl PageCache {
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
