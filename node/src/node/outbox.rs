//! Delivering queued direct messages: one lane per peer, in the order the messages were
//! written (receivers order threads by arrival), with a retry schedule per peer.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use kith_protocol::{dm::DmReply, AuthorId};
use libp2p::Multiaddr;

use super::Node;
use crate::store::{DmStatus, OutboxEntry};

/// First retry delay of a peer's queue; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often the outbox is looked at.
const OUTBOX_TICK: Duration = Duration::from_millis(500);
/// Most peers whose queues are delivered at once.
const MAX_IN_FLIGHT: usize = 64;
/// Most delivery lanes remembered (idle ones are forgotten beyond it).
const MAX_LANES: usize = 256;
/// Longest reason kept from a refusal.
const MAX_REASON: usize = 200;

impl Node {
    /// The delivery lane of `peer`.
    async fn lane(&self, peer: [u8; 32]) -> Arc<tokio::sync::Mutex<()>> {
        let mut retries = self.inner.retries.lock().await;
        if retries.lanes.len() >= MAX_LANES && !retries.lanes.contains_key(&peer) {
            retries.lanes.retain(|_, lane| Arc::strong_count(lane) > 1);
        }
        retries.lanes.entry(peer).or_default().clone()
    }

    /// Delivers `peer`'s queued messages one at a time, oldest first, stopping at the
    /// first that cannot be delivered now (so none overtakes it). Returns the status of
    /// each message tried.
    pub(super) async fn deliver_queue(&self, peer: [u8; 32]) -> HashMap<[u8; 16], DmStatus> {
        let lane = self.lane(peer).await;
        let _in_order = lane.lock().await;
        let mut statuses = HashMap::new();
        let queue = match self.inner.store.dm_outbox() {
            Ok(all) => all.into_iter().filter(|e| e.peer == peer),
            Err(error) => {
                tracing::error!(%error, "cannot read the outbox");
                return statuses;
            }
        };
        let mut delivered_all = true;
        for entry in queue {
            let status = self.deliver_once(&entry).await;
            statuses.insert(entry.id, status);
            if status == DmStatus::Queued {
                delivered_all = false;
                break;
            }
        }
        let mut retries = self.inner.retries.lock().await;
        if delivered_all {
            retries.next.remove(&peer);
        } else {
            let backoff = retries.next.get(&peer).map_or(RETRY_MIN, |(_, b)| *b);
            retries.next.insert(peer, (Instant::now() + backoff, (backoff * 2).min(RETRY_MAX)));
        }
        statuses
    }

    async fn deliver_once(&self, entry: &OutboxEntry) -> DmStatus {
        let store = &self.inner.store;
        let me = self.inner.me;
        let Ok(peer) = AuthorId::from_bytes(entry.peer) else { return DmStatus::Queued };
        let Ok(peer_id) = peer.to_peer_id() else { return DmStatus::Queued };
        let mut addrs: Vec<Multiaddr> = store
            .known_peers_of(&peer_id.to_string())
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        if !self.inner.net.is_connected(peer_id).await && entry.attempts > 0 {
            // The remembered addresses did not work before: ask the DHT.
            addrs.extend(self.inner.net.find_peer(peer_id).await);
        }
        let _ = store.dm_outbox_attempted(&entry.id);
        let reply = match self.inner.net.send_dm(peer_id, addrs, entry.request.clone()).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::debug!(%peer, %error, "message not delivered yet");
                return DmStatus::Queued;
            }
        };
        let (status, reason) = match DmReply::from_bytes(&reply) {
            Ok(DmReply::Delivered { id }) if id.as_bytes() == &entry.id => {
                (DmStatus::Delivered, None)
            }
            Ok(DmReply::Refused { reason, .. }) => {
                let mut reason = reason;
                let mut end = MAX_REASON.min(reason.len());
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                reason.truncate(end);
                (DmStatus::Refused, Some(reason))
            }
            Ok(DmReply::Delivered { .. }) | Err(_) => {
                tracing::info!(%peer, "unexpected reply to a direct message");
                return DmStatus::Queued;
            }
        };
        // Not flushed here: `msg send` flushes before it reports the status, and a
        // status lost in a crash only sends the message again, which the recipient
        // answers without storing it twice.
        match store.dm_set_status(&me, &entry.id, status, reason) {
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%error, "cannot record delivery");
                return DmStatus::Queued;
            }
        }
        status
    }

    /// Tries queued messages whose retry time has come.
    pub(super) async fn run_outbox(self) {
        let mut tick = tokio::time::interval(OUTBOX_TICK);
        while self.tick(&mut tick).await {
            self.retry_due(None).await;
        }
    }

    /// Starts delivery of the queues whose retry time has come (`peer`'s at once when
    /// given). A queue being delivered is left alone.
    pub(super) async fn retry_due(&self, peer: Option<&AuthorId>) {
        let entries = match self.inner.store.dm_outbox() {
            Ok(e) => e,
            Err(error) => {
                tracing::error!(%error, "cannot read the outbox");
                return;
            }
        };
        let now = Instant::now();
        let mut due: Vec<[u8; 32]> = Vec::new();
        {
            let retries = self.inner.retries.lock().await;
            let busy = |p: &[u8; 32]| retries.lanes.get(p).is_some_and(|l| l.try_lock().is_err());
            for entry in entries {
                if due.len() >= MAX_IN_FLIGHT {
                    break;
                }
                let for_peer = peer.is_some_and(|p| p.as_bytes() == &entry.peer);
                let time_due = retries.next.get(&entry.peer).is_none_or(|(at, _)| *at <= now);
                if (for_peer || time_due) && !due.contains(&entry.peer) && !busy(&entry.peer) {
                    due.push(entry.peer);
                }
            }
        }
        for peer in due {
            let node = self.clone();
            self.spawn(async move {
                node.deliver_queue(peer).await;
            });
        }
    }
}
