//! Fetching a blob: its manifest from the first peer that has it (or from the store, to
//! resume), then its missing chunks from every source at once, each checked against the
//! manifest before it is written. A peer that sends a wrong byte is dropped for this
//! blob and not asked for blobs for a while; its chunk is fetched elsewhere.

use std::sync::Arc;

use kith_protocol::blob::{BlobHash, BlobReply, BlobRequest, VerifiedManifest};
use libp2p::PeerId;
use thiserror::Error;
use tokio::{sync::watch, task::JoinSet, time::Instant};

use super::plan::{Failure, FetchPlan};
use crate::{
    net::{NetError, Proto},
    node::Node,
    store::BlobStoreError,
};

/// Why a blob could not be fetched.
#[derive(Debug, Error)]
pub(crate) enum FetchError {
    /// No peer asked had it (or would give it).
    #[error("no peer has blob {hash} (asked {asked})")]
    NotFound {
        /// The blob.
        hash: BlobHash,
        /// How many peers were asked.
        asked: usize,
    },
    /// The blob is not the size the record or message says.
    #[error("blob {hash} is {got} bytes, not the {expected} its attachment says")]
    WrongSize {
        /// The blob.
        hash: BlobHash,
        /// The attachment's size.
        expected: u64,
        /// The manifest's size.
        got: u64,
    },
    /// The sources went away (or sent wrong bytes) before every chunk came.
    #[error("blob {hash}: {missing} of {total} chunks could not be fetched from any peer")]
    Incomplete {
        /// The blob.
        hash: BlobHash,
        /// Chunks still missing.
        missing: u32,
        /// All chunks.
        total: u32,
    },
    /// The blob store refused or failed.
    #[error(transparent)]
    Store(#[from] BlobStoreError),
    /// A blocking task failed.
    #[error("blob task failed: {0}")]
    Task(String),
}

/// What is known of a blob before fetching it.
#[derive(Debug, Clone, Default)]
pub(crate) struct FetchHint {
    /// Its size, when an attachment says.
    pub(crate) size: Option<u64>,
    /// Peers to ask first (the author, the peer that gave us the record).
    pub(crate) sources: Vec<PeerId>,
    /// Fetched on the node's own initiative: within the thumbnail budget.
    pub(crate) auto: bool,
}

/// The DHT key under which nodes that hold a public blob announce it.
pub(crate) fn provider_key(hash: &BlobHash) -> Vec<u8> {
    let mut key = b"kith/blob/".to_vec();
    key.extend_from_slice(hash.as_bytes());
    key
}

/// A chunk request's outcome: who, which chunk, and the answer.
type ChunkAnswer = (PeerId, u32, Result<BlobReply, NetError>);

impl Node {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(crate::store::Blobs) -> Result<T, BlobStoreError> + Send + 'static,
    ) -> Result<T, FetchError> {
        let blobs = self.inner.blobs.clone();
        tokio::task::spawn_blocking(move || f(blobs))
            .await
            .map_err(|e| FetchError::Task(e.to_string()))?
            .map_err(FetchError::from)
    }

    async fn ask_blob(&self, peer: PeerId, request: BlobRequest) -> Result<BlobReply, NetError> {
        let bytes = request.to_bytes().map_err(|e| NetError::Request(e.to_string()))?;
        let reply = self.inner.net.request(Proto::Blob, peer, Vec::new(), bytes).await?;
        BlobReply::from_bytes(&reply).map_err(|e| NetError::Request(format!("bad reply: {e}")))
    }

    /// Fetches blob `hash` into the store (resuming a download left by a restart), from
    /// the peers of `hint`, then the blob's known sources, then DHT providers. Returns its
    /// manifest; `progress` gets (chunks done, chunks) as they come.
    pub(crate) async fn fetch_blob(
        &self,
        hash: BlobHash,
        hint: FetchHint,
        progress: Option<watch::Sender<(u32, u32)>>,
    ) -> Result<VerifiedManifest, FetchError> {
        let lock = {
            let mut fetching = self.inner.blob.fetching.lock().await;
            fetching.entry(hash).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(()))).clone()
        };
        let result = {
            let _one_at_a_time = lock.lock().await;
            self.fetch_locked(hash, hint, progress).await
        };
        let mut fetching = self.inner.blob.fetching.lock().await;
        if Arc::strong_count(&lock) <= 2 {
            fetching.remove(&hash);
        }
        result
    }

    async fn fetch_locked(
        &self,
        hash: BlobHash,
        hint: FetchHint,
        progress: Option<watch::Sender<(u32, u32)>>,
    ) -> Result<VerifiedManifest, FetchError> {
        if let Some(manifest) = self.blocking(move |b| Ok(b.manifest(&hash)?)).await? {
            let _ = self.blocking(move |b| Ok(b.touch(&hash)?)).await;
            return Ok(manifest);
        }
        let mut candidates = self.blob_sources(&hash, &hint.sources).await;
        let mut asked_dht = false;
        let mut asked = 0;
        let resumed = self.blocking(move |b| Ok(b.partial_manifest(&hash)?)).await?;
        let (manifest, giver) = match resumed {
            Some(m) => (m, None),
            None => loop {
                if let Some(found) = self.find_manifest(&hash, &mut candidates, &mut asked).await {
                    break found;
                }
                if asked_dht {
                    return Err(FetchError::NotFound { hash, asked });
                }
                asked_dht = true;
                candidates = self.dht_sources(&hash).await;
            },
        };
        if let Some(expected) = hint.size {
            if manifest.size() != expected {
                return Err(FetchError::WrongSize { hash, expected, got: manifest.size() });
            }
        }
        let m = manifest.clone();
        let have = self.blocking(move |b| b.begin_partial(&m)).await?;
        let mut plan = FetchPlan::new(&have, giver.into_iter().chain(candidates));
        self.fetch_chunks(&manifest, &mut plan, asked_dht, progress).await?;
        let (m, auto) = (manifest.clone(), hint.auto);
        self.blocking(move |b| b.finish_partial(&m, auto)).await?;
        tracing::debug!(%hash, size = manifest.size(), "blob fetched");
        Ok(manifest)
    }

    /// Asks `candidates` in turn for the manifest (removing each asked); the first that
    /// checks against `hash` is returned with the peer that gave it.
    async fn find_manifest(
        &self,
        hash: &BlobHash,
        candidates: &mut Vec<PeerId>,
        asked: &mut usize,
    ) -> Option<(VerifiedManifest, Option<PeerId>)> {
        while !candidates.is_empty() {
            let peer = candidates.remove(0);
            *asked += 1;
            match self.ask_blob(peer, BlobRequest::Manifest { hash: *hash }).await {
                Ok(BlobReply::Manifest(m)) => match m.verify(hash) {
                    Ok(verified) if self.inner.blobs.check_size(verified.size()).is_ok() => {
                        return Some((verified, Some(peer)));
                    }
                    Ok(verified) => {
                        tracing::info!(%peer, %hash, size = verified.size(), "blob over the size limit");
                    }
                    Err(error) => {
                        tracing::info!(%peer, %hash, %error, "peer sent a wrong blob manifest");
                        self.inner.blob.mark_bad(peer);
                    }
                },
                Ok(other) => tracing::debug!(%peer, %hash, ?other, "no manifest"),
                Err(error) => tracing::debug!(%peer, %hash, %error, "manifest request failed"),
            }
        }
        None
    }

    /// Peers that announced `hash` in the DHT.
    async fn dht_sources(&self, hash: &BlobHash) -> Vec<PeerId> {
        let me = self.inner.net.local_peer();
        let mut found = self.inner.net.find_providers(provider_key(hash)).await;
        found.retain(|p| *p != me && !self.inner.blob.is_bad(p));
        found
    }

    /// Fetches every chunk `plan` still needs.
    async fn fetch_chunks(
        &self,
        manifest: &VerifiedManifest,
        plan: &mut FetchPlan,
        mut asked_dht: bool,
        progress: Option<watch::Sender<(u32, u32)>>,
    ) -> Result<(), FetchError> {
        let hash = manifest.hash();
        let mut requests: JoinSet<ChunkAnswer> = JoinSet::new();
        let report = |plan: &FetchPlan| {
            if let Some(p) = &progress {
                let _ = p.send(plan.progress());
            }
        };
        report(plan);
        while !plan.is_complete() {
            while let Some((peer, index)) = plan.next(Instant::now()) {
                let node = self.clone();
                requests.spawn(async move {
                    (peer, index, node.ask_blob(peer, BlobRequest::Chunk { hash, index }).await)
                });
            }
            if requests.is_empty() {
                if let Some(at) = plan.resume_at() {
                    tokio::time::sleep_until(at).await;
                    continue;
                }
                if !asked_dht {
                    asked_dht = true;
                    for peer in self.dht_sources(&hash).await {
                        plan.add_source(peer);
                    }
                    if plan.has_sources() {
                        continue;
                    }
                }
                let (done, total) = plan.progress();
                return Err(FetchError::Incomplete { hash, missing: total - done, total });
            }
            let Some(joined) = requests.join_next().await else { continue };
            let (peer, index, answer) = joined.map_err(|e| FetchError::Task(e.to_string()))?;
            self.take_chunk(manifest, plan, peer, index, answer).await?;
            report(plan);
        }
        Ok(())
    }

    /// Checks and writes one answered chunk request, and tells the plan.
    async fn take_chunk(
        &self,
        manifest: &VerifiedManifest,
        plan: &mut FetchPlan,
        peer: PeerId,
        index: u32,
        answer: Result<BlobReply, NetError>,
    ) -> Result<(), FetchError> {
        let now = Instant::now();
        let bytes = match answer {
            Ok(BlobReply::Chunk(bytes)) => bytes,
            Ok(BlobReply::Busy) => {
                plan.failed(&peer, index, Failure::Busy, now);
                return Ok(());
            }
            Ok(_) => {
                plan.failed(&peer, index, Failure::Missing, now);
                return Ok(());
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "chunk request failed");
                plan.failed(&peer, index, Failure::Error, now);
                return Ok(());
            }
        };
        if let Err(error) = manifest.check_chunk(index, &bytes) {
            let hash = manifest.hash();
            tracing::warn!(%peer, %hash, index, %error, "peer sent a wrong chunk; asking elsewhere");
            self.inner.blob.mark_bad(peer);
            plan.failed(&peer, index, Failure::BadChunk, now);
            return Ok(());
        }
        let m = manifest.clone();
        self.blocking(move |b| b.write_chunk(&m, index, &bytes)).await?;
        self.inner.blob.chunks_fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        plan.done(&peer, index);
        Ok(())
    }
}
