//! Direct messages: sending (mutual check, seal, store, queue, deliver), receiving
//! (authenticate, open, check, dedupe, store, receipt) and the outbox retry loop.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use kith_protocol::{
    dm::{DmError, DmReply, DmRequest, MessageId, PairKeys, Plain, Sealed},
    limits::MAX_DM_TEXT_BYTES,
    AuthorId, RecordId, RecordKind,
};
use libp2p::{Multiaddr, PeerId};

use super::{now_ms, Node};
use crate::{
    api::{InboxEntry, MessageEntry, Response},
    ingest,
    net::Responder,
    store::{DmRecord, DmStatus, OutboxEntry, StoreError},
};

/// How long `msg send` waits for a receipt before answering "queued".
const SEND_WAIT: Duration = Duration::from_secs(3);
/// First retry delay of a queued message; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often the outbox is looked at.
const OUTBOX_TICK: Duration = Duration::from_millis(500);
/// Most deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 64;
/// Longest reason kept from a refusal.
const MAX_REASON: usize = 200;
/// Most peers whose message keys are kept in memory.
const MAX_PAIR_KEYS: usize = 256;

/// Direct-message state kept in memory: the retry schedule of queued messages (after a
/// restart every queued message is tried at once, then backs off again), the deliveries
/// in flight, and the message keys of recent peers.
#[derive(Default)]
pub(super) struct Retries {
    next: HashMap<[u8; 16], (Instant, Duration)>,
    in_flight: std::collections::HashSet<[u8; 16]>,
    keys: PairKeyCache,
}

/// The [`PairKeys`] of the peers this node wrote to or heard from last, at most
/// [`MAX_PAIR_KEYS`]: they save an X25519 agreement and a key conversion per message at
/// each end. Keys for a peer are kept only after a message was sealed for them or opened
/// from them.
#[derive(Default)]
struct PairKeyCache {
    keys: HashMap<AuthorId, (Arc<PairKeys>, u64)>,
    /// Counts uses; the least recently used entry goes when the cache is full.
    clock: u64,
}

impl PairKeyCache {
    fn get(&mut self, peer: &AuthorId) -> Option<Arc<PairKeys>> {
        self.clock += 1;
        let clock = self.clock;
        self.keys.get_mut(peer).map(|(keys, used)| {
            *used = clock;
            keys.clone()
        })
    }

    fn put(&mut self, keys: Arc<PairKeys>) {
        if self.keys.len() >= MAX_PAIR_KEYS && !self.keys.contains_key(keys.peer()) {
            let oldest = self.keys.iter().min_by_key(|(_, (_, used))| *used).map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                self.keys.remove(&oldest);
            }
        }
        self.clock += 1;
        self.keys.insert(*keys.peer(), (keys, self.clock));
    }
}

type Reply = Result<Response, String>;

fn store_err(e: StoreError) -> String {
    format!("store: {e}")
}

impl Node {
    pub(super) fn is_mutual(&self, other: &AuthorId) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        let me = &self.inner.me;
        Ok(store.is_following(me, other)? && store.is_following(other, me)?)
    }

    /// Runs `op` (a seal or an open) with the message keys for `peer`: from the cache, or
    /// computed and then cached only if `op` succeeded with them, so that a message that
    /// cannot be opened leaves nothing behind.
    async fn with_pair_keys<T>(
        &self,
        peer: &AuthorId,
        op: impl FnOnce(&PairKeys) -> Result<T, DmError>,
    ) -> Result<T, DmError> {
        let cached = self.inner.retries.lock().await.keys.get(peer);
        if let Some(keys) = cached {
            return op(&keys);
        }
        let keys = Arc::new(PairKeys::new(&self.inner.keypair, peer)?);
        let out = op(&keys)?;
        self.inner.retries.lock().await.keys.put(keys);
        Ok(out)
    }

    /// The bytes of our latest follow record for `peer`, if any: sent along with a
    /// message so the recipient knows we follow them even if it missed the gossip.
    fn follow_proof(&self, peer: &AuthorId) -> Option<Vec<u8>> {
        let store = &self.inner.store;
        let state = store.follow_state(&self.inner.me, peer).ok()??;
        let rec = store.author_log(&self.inner.me, state.seq - 1, 1).ok()?.into_iter().next()?;
        if !matches!(rec.record.kind, RecordKind::Follow { target } if target == *peer) {
            return None;
        }
        store.get_bytes(&rec.id).ok()?
    }

    pub(super) async fn msg_send(&self, to: &str, text: String) -> Reply {
        let peer = self.person(to)?;
        let me = self.inner.me;
        if peer == me {
            return Err("you cannot send a message to yourself".into());
        }
        if text.trim().is_empty() {
            return Err("message text is empty".into());
        }
        if text.len() > MAX_DM_TEXT_BYTES {
            return Err(format!(
                "message is {} bytes; the limit is {MAX_DM_TEXT_BYTES}",
                text.len()
            ));
        }
        if self.inner.store.moderation(&peer).map_err(store_err)?.blocked {
            return Err(format!("you blocked {peer}; unblock them first"));
        }
        if !self.is_mutual(&peer).map_err(store_err)? {
            return Err(format!("not a mutual connection: you and {peer} must follow each other"));
        }
        let id = MessageId::generate().map_err(|e| format!("random: {e}"))?;
        let plain = Plain { id, timestamp: now_ms(), text, attachments: vec![] };
        let sealed = self
            .with_pair_keys(&peer, |keys| Sealed::seal_with(&self.inner.keypair, keys, &plain))
            .await
            .map_err(|e| e.to_string())?;
        let request = DmRequest { sealed, follow_proof: self.follow_proof(&peer) }
            .to_bytes()
            .map_err(|e| e.to_string())?;
        let entry =
            OutboxEntry { id: *id.as_bytes(), peer: *peer.as_bytes(), request, attempts: 0 };
        let record = DmRecord {
            id: id.to_string(),
            from: me.to_string(),
            to: peer.to_string(),
            text: plain.text,
            timestamp: plain.timestamp,
            status: DmStatus::Queued,
            reason: None,
            read: true,
        };
        // Claimed before it reaches the outbox, so the retry loop does not start a second
        // attempt and make this one answer "queued" while it is being delivered.
        self.inner.retries.lock().await.in_flight.insert(entry.id);
        let store = &self.inner.store;
        if let Err(e) = store.dm_insert(&peer, &me, id.as_bytes(), &record, Some(&entry)) {
            self.inner.retries.lock().await.in_flight.remove(&entry.id);
            return Err(store_err(e));
        }
        // Delivery starts before the message is flushed: until this call answers, no one
        // was told it was sent, and the one flush below, before the answer, covers the
        // message, its outbox entry and the receipt's status alike.
        let node = self.clone();
        let attempt = tokio::spawn(async move { node.deliver_claimed(entry).await });
        let status = match tokio::time::timeout(SEND_WAIT, attempt).await {
            Ok(Ok(status)) => status,
            _ => DmStatus::Queued,
        };
        store.flush().await.map_err(store_err)?;
        if status == DmStatus::Refused {
            let reason = self
                .inner
                .store
                .dm_thread(&peer, 64)
                .ok()
                .and_then(|t| t.into_iter().find(|m| m.id == record.id))
                .and_then(|m| m.reason)
                .unwrap_or_default();
            return Err(format!("refused by the recipient: {reason}"));
        }
        Ok(Response::MsgSent { id: id.to_string(), status: status.as_str().to_owned() })
    }

    /// One delivery attempt of an outbox entry; returns the message's status after it.
    pub(super) async fn deliver(&self, entry: OutboxEntry) -> DmStatus {
        {
            let mut retries = self.inner.retries.lock().await;
            if !retries.in_flight.insert(entry.id) {
                return DmStatus::Queued;
            }
        }
        self.deliver_claimed(entry).await
    }

    /// [`Node::deliver`] for an entry already marked in flight by the caller.
    async fn deliver_claimed(&self, entry: OutboxEntry) -> DmStatus {
        let status = self.deliver_once(&entry).await;
        let mut retries = self.inner.retries.lock().await;
        retries.in_flight.remove(&entry.id);
        if status == DmStatus::Queued {
            let backoff = retries.next.get(&entry.id).map_or(RETRY_MIN, |(_, b)| *b);
            retries.next.insert(entry.id, (Instant::now() + backoff, (backoff * 2).min(RETRY_MAX)));
        } else {
            retries.next.remove(&entry.id);
        }
        status
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

    /// Answers an inbound direct message request.
    pub(super) async fn handle_dm_request(&self, peer: PeerId, bytes: Vec<u8>, channel: Responder) {
        let reply = self.receive_dm(peer, &bytes).await;
        if let DmReply::Refused { reason, .. } = &reply {
            tracing::info!(%peer, %reason, "refused a direct message");
        }
        match reply.to_bytes() {
            Ok(bytes) => self.inner.net.respond(channel, bytes).await,
            Err(error) => tracing::error!(%error, "cannot encode a direct message reply"),
        }
    }

    async fn receive_dm(&self, peer: PeerId, bytes: &[u8]) -> DmReply {
        let refuse = |id: Option<MessageId>, reason: &str| DmReply::Refused {
            id,
            reason: reason.to_owned(),
        };
        let request = match DmRequest::from_bytes(bytes) {
            Ok(r) => r,
            Err(e) => return refuse(None, &format!("malformed message: {e}")),
        };
        let Ok(sender) = AuthorId::from_peer_id(&peer) else {
            return refuse(None, "the connected peer has no ed25519 identity");
        };
        let sealed = &request.sealed;
        if sealed.sender != sender {
            return refuse(None, "the sealed sender is not the connected peer");
        }
        if sealed.recipient != self.inner.me {
            return refuse(None, "not addressed to this node");
        }
        let opened =
            self.with_pair_keys(&sender, |keys| sealed.open_with(&self.inner.keypair, keys)).await;
        let plain = match opened {
            Ok(p) => p,
            Err(e) => return refuse(None, &format!("cannot open the message: {e}")),
        };
        if plain.timestamp > now_ms().saturating_add(kith_protocol::limits::MAX_FUTURE_SKEW_MS) {
            return refuse(Some(plain.id), "the message is dated in the future (check your clock)");
        }
        let store = &self.inner.store;
        // A follow record of the sender's: verified and stored like any record, unless
        // the store holds it already (same bytes, same id: verified when it was stored).
        let proof = request
            .follow_proof
            .as_ref()
            .filter(|proof| !store.has(&RecordId::of_bytes(proof)).unwrap_or(false));
        if let Some(proof) = proof {
            match ingest::ingest(store, proof, None, now_ms()) {
                Ok(ingest::Outcome::New(rec)) => self.announce(&rec),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot store a follow proof"),
            }
        }
        match store.dm_seen(&sender, plain.id.as_bytes()) {
            // Seen: the receipt still waits until that copy is durable (it may be a
            // retry racing the first attempt's flush).
            Ok(true) => {
                return match store.flush().await {
                    Ok(()) => DmReply::Delivered { id: plain.id },
                    Err(_) => refuse(Some(plain.id), "the recipient's store failed"),
                }
            }
            Ok(false) => {}
            Err(_) => return refuse(Some(plain.id), "the recipient's store failed"),
        }
        let blocked_then = store.was_blocked_at(&sender, plain.timestamp).unwrap_or(false);
        if blocked_then || store.moderation(&sender).is_ok_and(|m| m.blocked) {
            return refuse(Some(plain.id), "the recipient does not accept messages from you");
        }
        match self.is_mutual(&sender) {
            Ok(true) => {}
            Ok(false) => return refuse(Some(plain.id), "not a mutual connection"),
            Err(_) => return refuse(Some(plain.id), "the recipient's store failed"),
        }
        let record = DmRecord {
            id: plain.id.to_string(),
            from: sender.to_string(),
            to: self.inner.me.to_string(),
            text: plain.text,
            timestamp: plain.timestamp,
            status: DmStatus::Received,
            reason: None,
            read: false,
        };
        let stored = store.dm_insert(&sender, &sender, plain.id.as_bytes(), &record, None);
        match stored {
            Ok(true) if !store.is_hidden(&sender) => {
                self.notify("message", sender.to_string(), plain.id.to_string())
            }
            Ok(true) => {}
            Ok(false) => {}
            Err(_) => return refuse(Some(plain.id), "the recipient's store failed"),
        }
        // The receipt promises the message is kept: flush first.
        if store.flush().await.is_err() {
            return refuse(Some(plain.id), "the recipient's store failed");
        }
        DmReply::Delivered { id: plain.id }
    }

    /// Tries queued messages whose retry time has come.
    pub(super) async fn run_outbox(self) {
        let mut tick = tokio::time::interval(OUTBOX_TICK);
        loop {
            tick.tick().await;
            self.retry_due(None).await;
        }
    }

    /// Starts delivery of due outbox entries (all entries for `peer` when given).
    pub(super) async fn retry_due(&self, peer: Option<&AuthorId>) {
        let entries = match self.inner.store.dm_outbox() {
            Ok(e) => e,
            Err(error) => {
                tracing::error!(%error, "cannot read the outbox");
                return;
            }
        };
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let retries = self.inner.retries.lock().await;
            for entry in entries {
                if retries.in_flight.len() + due.len() >= MAX_IN_FLIGHT {
                    break;
                }
                let for_peer = peer.is_some_and(|p| p.as_bytes() == &entry.peer);
                let time_due = retries.next.get(&entry.id).is_none_or(|(at, _)| *at <= now);
                if (for_peer || time_due) && !retries.in_flight.contains(&entry.id) {
                    due.push(entry);
                }
            }
        }
        for entry in due {
            let node = self.clone();
            tokio::spawn(async move { node.deliver(entry).await });
        }
    }

    pub(super) fn msg_inbox(&self) -> Reply {
        let store = &self.inner.store;
        let convs = store.dm_conversations().map_err(store_err)?;
        Ok(Response::Inbox {
            conversations: convs
                .into_iter()
                .map(|c| InboxEntry {
                    peer: c.peer.to_string(),
                    last_text: c.last.text,
                    timestamp: c.last.timestamp,
                    unread: c.unread,
                    name: super::view::name_of(store, &c.peer),
                })
                .collect(),
        })
    }

    pub(super) async fn msg_thread(&self, with: &str, limit: Option<usize>) -> Reply {
        let peer = self.person(with)?;
        let limit = limit.unwrap_or(super::handlers::DEFAULT_THREAD_LIMIT);
        if limit == 0 || limit > super::handlers::MAX_FEED_LIMIT {
            return Err(format!(
                "--limit must be between 1 and {}",
                super::handlers::MAX_FEED_LIMIT
            ));
        }
        let store = &self.inner.store;
        let messages = store.dm_thread(&peer, limit).map_err(store_err)?;
        store.dm_mark_read(&peer).map_err(store_err)?;
        store.flush().await.map_err(store_err)?;
        Ok(Response::Thread {
            messages: messages
                .into_iter()
                .map(|m| MessageEntry {
                    from_name: m.from.parse().ok().and_then(|a| super::view::name_of(store, &a)),
                    id: m.id,
                    from: m.from,
                    to: m.to,
                    text: m.text,
                    timestamp: m.timestamp,
                    status: m.status.as_str().to_owned(),
                    reason: m.reason,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use kith_protocol::Keypair;

    use super::*;

    #[test]
    fn pair_key_cache_is_bounded_and_keeps_recent_peers() {
        let me = Keypair::from_secret_bytes(&[1; 32]);
        let peers: Vec<AuthorId> = (0..MAX_PAIR_KEYS + 20)
            .map(|i| {
                let mut secret = [7u8; 32];
                secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
                Keypair::from_secret_bytes(&secret).id()
            })
            .collect();
        let mut cache = PairKeyCache::default();
        let first = peers[0];
        for (i, peer) in peers.iter().enumerate() {
            cache.put(Arc::new(PairKeys::new(&me, peer).unwrap()));
            // The first peer stays in use.
            assert!(cache.get(&first).is_some(), "after {i}");
        }
        assert_eq!(cache.keys.len(), MAX_PAIR_KEYS);
        assert!(cache.get(&peers[1]).is_none());
        assert!(cache.get(peers.last().unwrap()).is_some());
    }
}
