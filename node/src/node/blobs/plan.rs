//! Which chunk to ask of which peer: the decisions of a blob download, as plain code that
//! tests drive without a network. The driver (`fetch.rs`) asks [`FetchPlan::next`] for
//! requests to send and reports each answer.

use std::{collections::HashSet, time::Duration};

use libp2p::PeerId;
use tokio::time::Instant;

/// Chunk requests in flight for one download, at most (4 MiB of chunks).
pub(super) const WINDOW: usize = 16;
/// Chunk requests in flight to one peer, at most: what a peer serves to one asker at once.
pub(super) const PER_SOURCE: usize = super::MAX_SERVE_PER_PEER;
/// How long a peer that answered "busy" is left alone.
pub(super) const BUSY_PAUSE: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Missing,
    InFlight,
    Done,
}

#[derive(Debug)]
struct Source {
    peer: PeerId,
    in_flight: usize,
    paused_until: Option<Instant>,
}

/// How a chunk request went, other than with a good chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The peer sent bytes that do not match the manifest: it is dropped as a source.
    BadChunk,
    /// The peer does not have the blob (or will not give it): dropped as a source.
    Missing,
    /// The peer is busy: left alone for a moment.
    Busy,
    /// The request failed (unreachable, timed out, malformed answer): dropped.
    Error,
}

/// The state of one download: which chunks are still needed, and which peers may have
/// them, in order of preference.
#[derive(Debug)]
pub(super) struct FetchPlan {
    chunks: Vec<Chunk>,
    sources: Vec<Source>,
    dropped: HashSet<PeerId>,
    in_flight: usize,
}

impl FetchPlan {
    /// A plan for a blob of which the chunks marked `true` in `have` are already on disk.
    pub(super) fn new(have: &[bool], sources: impl IntoIterator<Item = PeerId>) -> Self {
        let chunks = have.iter().map(|h| if *h { Chunk::Done } else { Chunk::Missing }).collect();
        let mut plan = Self { chunks, sources: Vec::new(), dropped: HashSet::new(), in_flight: 0 };
        for peer in sources {
            plan.add_source(peer);
        }
        plan
    }

    /// Adds a peer that may have the blob (last in preference), unless it is known or was
    /// dropped.
    pub(super) fn add_source(&mut self, peer: PeerId) {
        if !self.dropped.contains(&peer) && !self.sources.iter().any(|s| s.peer == peer) {
            self.sources.push(Source { peer, in_flight: 0, paused_until: None });
        }
    }

    /// The next request to send: a missing chunk and the most preferred source with room,
    /// if any (and the window has room).
    pub(super) fn next(&mut self, now: Instant) -> Option<(PeerId, u32)> {
        if self.in_flight >= WINDOW {
            return None;
        }
        let index = self.chunks.iter().position(|c| *c == Chunk::Missing)?;
        let source = self.sources.iter_mut().find(|s| {
            s.in_flight < PER_SOURCE && s.paused_until.is_none_or(|until| until <= now)
        })?;
        source.in_flight += 1;
        source.paused_until = None;
        self.in_flight += 1;
        if let Some(chunk) = self.chunks.get_mut(index) {
            *chunk = Chunk::InFlight;
        }
        Some((source.peer, index as u32))
    }

    fn settle(&mut self, peer: &PeerId, index: u32, to: Chunk) {
        if let Some(chunk) = self.chunks.get_mut(index as usize) {
            if *chunk == Chunk::InFlight {
                *chunk = to;
                self.in_flight = self.in_flight.saturating_sub(1);
            }
        }
        if let Some(source) = self.sources.iter_mut().find(|s| s.peer == *peer) {
            source.in_flight = source.in_flight.saturating_sub(1);
        }
    }

    /// Chunk `index` from `peer` checked and written.
    pub(super) fn done(&mut self, peer: &PeerId, index: u32) {
        self.settle(peer, index, Chunk::Done);
    }

    /// Chunk `index` from `peer` did not come: it is needed again, and the peer is
    /// dropped or paused.
    pub(super) fn failed(&mut self, peer: &PeerId, index: u32, failure: Failure, now: Instant) {
        self.settle(peer, index, Chunk::Missing);
        match failure {
            Failure::Busy => {
                if let Some(source) = self.sources.iter_mut().find(|s| s.peer == *peer) {
                    source.paused_until = Some(now + BUSY_PAUSE);
                }
            }
            Failure::BadChunk | Failure::Missing | Failure::Error => {
                self.sources.retain(|s| s.peer != *peer);
                self.dropped.insert(*peer);
            }
        }
    }

    /// Whether every chunk is done.
    pub(super) fn is_complete(&self) -> bool {
        self.chunks.iter().all(|c| *c == Chunk::Done)
    }

    /// When a paused source may be asked again, if no source can be asked now.
    pub(super) fn resume_at(&self) -> Option<Instant> {
        self.sources.iter().filter_map(|s| s.paused_until).min()
    }

    /// Whether no source is left to ask.
    pub(super) fn has_sources(&self) -> bool {
        !self.sources.is_empty()
    }

    /// Chunks done, and the total.
    pub(super) fn progress(&self) -> (u32, u32) {
        let done = self.chunks.iter().filter(|c| **c == Chunk::Done).count();
        (done as u32, self.chunks.len() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn spreads_over_sources_within_the_window() {
        let p = peers(3);
        let mut plan = FetchPlan::new(&[false; 40], p.clone());
        let now = Instant::now();
        let mut sent = Vec::new();
        while let Some(request) = plan.next(now) {
            sent.push(request);
        }
        assert_eq!(sent.len(), WINDOW);
        // The preferred source first, up to its limit, then the next.
        assert!(sent[..PER_SOURCE].iter().all(|(peer, _)| *peer == p[0]));
        assert!(sent[PER_SOURCE..].iter().all(|(peer, _)| *peer == p[1]));
        let indexes: HashSet<u32> = sent.iter().map(|(_, i)| *i).collect();
        assert_eq!(indexes.len(), WINDOW);
    }

    #[test]
    fn a_bad_chunk_drops_the_peer_and_the_chunk_goes_elsewhere() {
        let p = peers(2);
        let mut plan = FetchPlan::new(&[true, false], p.clone());
        let now = Instant::now();
        assert_eq!(plan.next(now), Some((p[0], 1)));
        assert_eq!(plan.next(now), None);
        plan.failed(&p[0], 1, Failure::BadChunk, now);
        // Re-adding a dropped peer does nothing.
        plan.add_source(p[0]);
        assert_eq!(plan.next(now), Some((p[1], 1)));
        plan.done(&p[1], 1);
        assert!(plan.is_complete());
        assert_eq!(plan.progress(), (2, 2));
    }

    #[test]
    fn busy_pauses_and_nothing_left_is_noticed() {
        let p = peers(1);
        let mut plan = FetchPlan::new(&[false], p.clone());
        let now = Instant::now();
        let (peer, index) = plan.next(now).unwrap();
        plan.failed(&peer, index, Failure::Busy, now);
        assert_eq!(plan.next(now), None);
        assert_eq!(plan.resume_at(), Some(now + BUSY_PAUSE));
        assert_eq!(plan.next(now + BUSY_PAUSE), Some((p[0], 0)));
        plan.failed(&p[0], 0, Failure::Missing, now);
        assert!(!plan.has_sources());
        assert!(!plan.is_complete());
    }
}
