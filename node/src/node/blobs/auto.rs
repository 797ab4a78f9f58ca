//! Thumbnails fetched without being asked: when a post of a followed author arrives with
//! pictures, their thumbnails are fetched in the background (one at a time, from a bounded
//! queue), within the node's thumbnail budget; full pictures wait until someone asks.

use kith_protocol::{blob::BlobHash, AuthorId, RecordKind, VerifiedRecord};
use tokio::sync::mpsc;

use super::FetchHint;
use crate::node::Node;

/// Thumbnails waiting to be fetched, at most; more are dropped (they are fetched when
/// asked for).
pub(crate) const THUMB_QUEUE: usize = 256;

/// A thumbnail to fetch.
#[derive(Debug)]
pub(crate) struct ThumbJob {
    hash: BlobHash,
    size: u64,
    author: AuthorId,
}

impl Node {
    /// Queues the thumbnails of a new post of a followed author that this node lacks.
    pub(crate) fn queue_thumbnails(&self, record: &VerifiedRecord) {
        let r = record.record();
        let RecordKind::Post(post) = &r.kind else { return };
        if post.attachments.is_empty() || r.author == self.inner.me {
            return;
        }
        if !self.inner.store.is_following(&self.inner.me, &r.author).unwrap_or(false) {
            return;
        }
        for thumb in post.attachments.iter().filter_map(|a| a.thumbnail()) {
            if self.inner.store.has_blob(&thumb.hash) {
                continue;
            }
            let job = ThumbJob { hash: thumb.hash, size: u64::from(thumb.size), author: r.author };
            if self.inner.thumbs.try_send(job).is_err() {
                tracing::debug!("thumbnail queue full; it is fetched when asked for");
            }
        }
    }

    /// Fetches queued thumbnails one at a time until the node stops.
    pub(in crate::node) async fn run_thumbnails(self, mut jobs: mpsc::Receiver<ThumbJob>) {
        loop {
            let job = tokio::select! {
                job = jobs.recv() => job,
                () = self.closed() => None,
            };
            let Some(job) = job else { return };
            let sources = job.author.to_peer_id().ok().into_iter().collect();
            let hint = FetchHint { size: Some(job.size), sources, auto: true };
            if let Err(error) = self.fetch_blob(job.hash, hint, None).await {
                tracing::debug!(hash = %job.hash, %error, "thumbnail not fetched");
            }
        }
    }
}
