//! Blobs on the network: answering `/kith/blob/1` requests within per-peer and total
//! limits and only with blobs the asker may have (`may_serve`), fetching blobs chunk by
//! chunk from whoever has them (`fetch.rs`, decided by `plan.rs`), and collecting blobs
//! nobody needs.

mod auto;
mod fetch;
mod plan;

pub(crate) use auto::{ThumbJob, THUMB_QUEUE};
pub(crate) use fetch::{provider_key, FetchHint};

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kith_protocol::{
    blob::{BlobHash, BlobReply, BlobRequest},
    AuthorId,
};
use libp2p::PeerId;

use super::{now_ms, Node};
use crate::net::Responder;

/// Requests one peer may have answered at once; more get [`BlobReply::Busy`].
pub(crate) const MAX_SERVE_PER_PEER: usize = 8;
/// Requests answered at once in total (chunks read from disk and held in memory).
const MAX_SERVE_TOTAL: usize = 64;
/// A peer that sent a wrong chunk is not asked for blobs for this long.
const BAD_SOURCE_TIME: Duration = Duration::from_secs(600);
/// Most peers remembered as bad sources.
const MAX_BAD_SOURCES: usize = 1024;
/// How often blobs nobody needs are looked for.
const COLLECT_EVERY: Duration = Duration::from_secs(600);
/// A blob nobody needs is kept this long after it was stored or last used (a file
/// fetched with `kith blob get`, an attachment whose post is not written yet).
pub(crate) const COLLECT_GRACE_MS: u64 = 24 * 3_600_000;

/// The node's upload budget for blob chunks (`blob_upload_kib_s`): a token bucket of
/// bytes, refilled at `rate` per second (0: no limit), holding at most a second's worth.
/// A chunk is sent once its bytes are paid for, so chunks wait rather than being refused.
/// The rate can change while the node runs.
#[derive(Default)]
struct Upload {
    /// Rate (bytes a second), tokens, last refill.
    bucket: Mutex<(f64, f64, Option<Instant>)>,
}

impl Upload {
    fn new(rate: u64) -> Self {
        let rate = rate as f64;
        Self { bucket: Mutex::new((rate, rate, None)) }
    }

    fn set_rate(&self, rate: u64) {
        let rate = rate as f64;
        if let Ok(mut bucket) = self.bucket.lock() {
            // A bucket that had no limit starts full.
            bucket.1 = if bucket.0 <= 0.0 { rate } else { bucket.1.min(rate) };
            bucket.0 = rate;
        }
    }

    /// How long to wait before sending `bytes` more.
    fn reserve(&self, bytes: usize) -> Duration {
        let Ok(mut bucket) = self.bucket.lock() else { return Duration::ZERO };
        let (rate, tokens, last) = *bucket;
        if rate <= 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let elapsed = last.map_or(0.0, |last| now.duration_since(last).as_secs_f64());
        let left = (tokens + elapsed * rate).min(rate) - bytes as f64;
        *bucket = (rate, left, Some(now));
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / rate)
        }
    }
}

/// The blob side of the node's state.
#[derive(Default)]
pub(crate) struct BlobState {
    /// The upload budget.
    upload: Upload,
    /// Requests being answered, per peer.
    serving: Mutex<HashMap<PeerId, usize>>,
    /// Peers that sent wrong bytes, and when.
    bad: Mutex<HashMap<PeerId, Instant>>,
    /// Chunks fetched and checked since start.
    pub(crate) chunks_fetched: std::sync::atomic::AtomicU64,
    /// One download per blob at a time: later callers wait for the first.
    fetching: tokio::sync::Mutex<HashMap<BlobHash, Arc<tokio::sync::Mutex<()>>>>,
}

/// A serving slot; given back when dropped.
struct Slot<'a> {
    state: &'a BlobState,
    peer: PeerId,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut serving) = self.state.serving.lock() {
            if let Some(n) = serving.get_mut(&self.peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    serving.remove(&self.peer);
                }
            }
        }
    }
}

impl BlobState {
    /// The state for a node that sends at most `upload_bytes_per_s` of chunks a second (0:
    /// no limit).
    pub(crate) fn new(upload_bytes_per_s: u64) -> Self {
        Self { upload: Upload::new(upload_bytes_per_s), ..Self::default() }
    }

    /// A new upload limit, bytes a second (0: no limit), from now on.
    pub(crate) fn set_upload_rate(&self, upload_bytes_per_s: u64) {
        self.upload.set_rate(upload_bytes_per_s);
    }

    /// A serving slot for `peer`, unless it or the node is at its limit.
    fn slot(&self, peer: PeerId) -> Option<Slot<'_>> {
        let mut serving = self.serving.lock().ok()?;
        let total: usize = serving.values().sum();
        let mine = serving.get(&peer).copied().unwrap_or(0);
        // Checked before the peer is entered: a refused peer leaves nothing behind.
        if mine >= MAX_SERVE_PER_PEER || total >= MAX_SERVE_TOTAL {
            return None;
        }
        serving.insert(peer, mine + 1);
        Some(Slot { state: self, peer })
    }

    /// Remembers that `peer` sent wrong bytes.
    pub(crate) fn mark_bad(&self, peer: PeerId) {
        if let Ok(mut bad) = self.bad.lock() {
            let now = Instant::now();
            if bad.len() >= MAX_BAD_SOURCES {
                bad.retain(|_, at| now.duration_since(*at) < BAD_SOURCE_TIME);
            }
            if bad.len() < MAX_BAD_SOURCES {
                bad.insert(peer, now);
            }
        }
    }

    /// Whether `peer` sent wrong bytes recently.
    pub(crate) fn is_bad(&self, peer: &PeerId) -> bool {
        self.bad
            .lock()
            .is_ok_and(|bad| bad.get(peer).is_some_and(|at| at.elapsed() < BAD_SOURCE_TIME))
    }
}

impl Node {
    /// Answers a `/kith/blob/1` request.
    pub(super) async fn handle_blob_request(
        &self,
        peer: PeerId,
        bytes: Vec<u8>,
        channel: Responder,
    ) {
        let reply = self.answer_blob(peer, &bytes).await;
        match reply.to_bytes() {
            Ok(bytes) => self.inner.net.respond(channel, bytes).await,
            Err(error) => tracing::error!(%error, "cannot encode a blob reply"),
        }
    }

    async fn answer_blob(&self, peer: PeerId, bytes: &[u8]) -> BlobReply {
        let request = match BlobRequest::from_bytes(bytes) {
            Ok(r) => r,
            Err(error) => {
                tracing::debug!(%peer, %error, "malformed blob request");
                return BlobReply::Missing;
            }
        };
        let Ok(asker) = AuthorId::from_peer_id(&peer) else { return BlobReply::Missing };
        let Some(_slot) = self.inner.blob.slot(peer) else { return BlobReply::Busy };
        let blobs = self.inner.blobs.clone();
        let answer = tokio::task::spawn_blocking(move || -> Result<BlobReply, String> {
            let hash = request.hash();
            if !blobs.may_serve(&hash, &asker).map_err(|e| e.to_string())? {
                return Ok(BlobReply::Missing);
            }
            let reply = match request {
                BlobRequest::Manifest { hash } => match blobs.manifest(&hash) {
                    Ok(Some(m)) => BlobReply::Manifest(m.to_manifest()),
                    Ok(None) => BlobReply::Missing,
                    Err(e) => return Err(e.to_string()),
                },
                BlobRequest::Chunk { hash, index } => match blobs.read_chunk(&hash, index) {
                    Ok(Some(bytes)) => BlobReply::Chunk(bytes),
                    Ok(None) => BlobReply::Missing,
                    Err(e) => return Err(e.to_string()),
                },
            };
            let _ = blobs.touch(&hash);
            Ok(reply)
        })
        .await;
        match answer {
            Ok(Ok(reply)) => {
                if let BlobReply::Chunk(bytes) = &reply {
                    let wait = self.inner.blob.upload.reserve(bytes.len());
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
                reply
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read a blob to serve");
                BlobReply::Missing
            }
            Err(error) => {
                tracing::error!(%error, "blob serving task failed");
                BlobReply::Missing
            }
        }
    }

    /// Peers that may have `hash`: authors of the records that carry it, the other person
    /// of the messages that carry it, then connected peers; never this node or a peer that
    /// sent wrong bytes recently.
    pub(crate) async fn blob_sources(&self, hash: &BlobHash, first: &[PeerId]) -> Vec<PeerId> {
        let mut out: Vec<PeerId> = first.to_vec();
        let owners = self.inner.blobs.owners(hash).unwrap_or_default();
        for owner in owners {
            let who = match owner {
                crate::store::BlobOwner::Record(id) => {
                    self.inner.store.get(&id).ok().flatten().map(|r| r.record.author)
                }
                crate::store::BlobOwner::Sealed { peer, .. }
                | crate::store::BlobOwner::Local { peer, .. } => Some(peer),
            };
            if let Some(peer) = who.and_then(|a| a.to_peer_id().ok()) {
                out.push(peer);
            }
        }
        out.extend(self.inner.net.peers().await.unwrap_or_default().into_iter().map(|p| p.peer));
        let me = self.inner.net.local_peer();
        let mut seen = std::collections::HashSet::new();
        out.retain(|p| *p != me && !self.inner.blob.is_bad(p) && seen.insert(*p));
        out
    }

    /// Fetches blob `hash` from `sources` (then its other known sources) into the store;
    /// its size. For tests and tools: people use `kith blob get`.
    ///
    /// # Errors
    /// Why it could not be fetched, as one line.
    pub async fn fetch_blob_from(
        &self,
        hash: &BlobHash,
        sources: Vec<PeerId>,
    ) -> Result<u64, String> {
        let hint = FetchHint { size: None, sources, auto: false };
        self.fetch_blob(*hash, hint, None).await.map(|m| m.size()).map_err(|e| e.to_string())
    }

    /// Collects blobs nobody needs, now and every [`COLLECT_EVERY`].
    pub(super) async fn run_blob_collect(self) {
        loop {
            let blobs = self.inner.blobs.clone();
            let swept =
                tokio::task::spawn_blocking(move || blobs.collect(now_ms(), COLLECT_GRACE_MS))
                    .await;
            match swept {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(collected = n, "blobs nobody needs removed"),
                Ok(Err(error)) => tracing::error!(%error, "blob collection failed"),
                Err(error) => tracing::error!(%error, "blob collection task failed"),
            }
            if !self.pause(COLLECT_EVERY).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn served(state: &BlobState) -> HashMap<PeerId, usize> {
        state.serving.lock().unwrap().clone()
    }

    #[test]
    fn the_upload_limit_changes_while_running() {
        let upload = Upload::new(0);
        assert_eq!(upload.reserve(1 << 20), Duration::ZERO, "no limit");
        upload.set_rate(1000);
        // A bucket that had no limit starts full: a second's worth goes at once.
        assert_eq!(upload.reserve(1000), Duration::ZERO);
        let wait = upload.reserve(2000);
        assert!(wait > Duration::from_secs(1), "2000 bytes at 1000 a second: {wait:?}");
        upload.set_rate(0);
        assert_eq!(upload.reserve(1 << 20), Duration::ZERO, "lifted");
    }

    #[test]
    fn one_peer_cannot_take_every_serving_slot() {
        let state = BlobState::new(0);
        let greedy = PeerId::random();
        let held: Vec<Slot<'_>> =
            std::iter::from_fn(|| state.slot(greedy)).take(MAX_SERVE_PER_PEER + 1).collect();
        assert_eq!(held.len(), MAX_SERVE_PER_PEER, "a peer's requests beyond its share are busy");
        // Others are still answered while the greedy peer waits.
        let other = PeerId::random();
        let answered = state.slot(other).unwrap();
        drop(answered);
        assert_eq!(served(&state), HashMap::from([(greedy, MAX_SERVE_PER_PEER)]));
        drop(held);
        assert!(served(&state).is_empty(), "slots are given back");
        assert!(state.slot(greedy).is_some());
    }

    #[test]
    fn the_node_serves_a_bounded_number_at_once() {
        let state = BlobState::new(0);
        let peers: Vec<PeerId> = (0..MAX_SERVE_TOTAL).map(|_| PeerId::random()).collect();
        let held: Vec<Slot<'_>> = peers.iter().filter_map(|p| state.slot(*p)).collect();
        assert_eq!(held.len(), MAX_SERVE_TOTAL);
        // Refused askers are not remembered: a crowd of peers cannot grow the table.
        for _ in 0..100 {
            assert!(state.slot(PeerId::random()).is_none());
        }
        assert_eq!(served(&state).len(), MAX_SERVE_TOTAL);
        drop(held);
        assert!(served(&state).is_empty());
    }
}
