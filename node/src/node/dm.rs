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
    AuthorId, RecordKind,
};
use libp2p::PeerId;

use super::{errors::Reply, now_ms, Node};
use crate::{
    api::{ApiError, InboxEntry, MessageEntry, Response},
    ingest,
    net::Responder,
    store::{DmRecord, DmStatus, OutboxEntry, StoreError},
};

/// How long `msg send` waits for a receipt before answering "queued".
const SEND_WAIT: Duration = Duration::from_secs(3);
/// The one refusal for a message from someone this node does not take messages from (not
/// a mutual connection, blocked, a follow proof that does not count): the sender learns
/// nothing more.
const NOT_ACCEPTED: &str = "not a mutual connection";
/// The refusal when this node's store fails.
const STORE_FAILED: &str = "the recipient's store failed";
/// Most peers whose message keys are kept in memory.
const MAX_PAIR_KEYS: usize = 256;

/// Direct-message state kept in memory: the retry schedule of each peer's queue (after a
/// restart every queue is tried at once, then backs off again), one delivery lane per
/// peer, and the message keys of recent peers.
#[derive(Default)]
pub(super) struct Retries {
    /// When each peer's queue is tried next, and the delay after that.
    pub(super) next: HashMap<[u8; 32], (Instant, Duration)>,
    /// One delivery at a time per peer, so messages arrive in the order they were
    /// written (threads are ordered by arrival).
    pub(super) lanes: HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>,
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
    pub(super) fn follow_proof(&self, peer: &AuthorId) -> Option<Vec<u8>> {
        let store = &self.inner.store;
        let state = store.follow_state(&self.inner.me, peer).ok()??;
        let rec = store.author_log(&self.inner.me, state.seq - 1, 1).ok()?.into_iter().next()?;
        if !matches!(rec.record.kind, RecordKind::Follow { target } if target == *peer) {
            return None;
        }
        store.get_bytes(&rec.id).ok()?
    }

    pub(super) async fn msg_send(&self, to: &str, text: String, attach: Vec<String>) -> Reply {
        let peer = self.person(to)?;
        let me = self.inner.me;
        if peer == me {
            return Err(ApiError::refused("you cannot send a message to yourself"));
        }
        if text.trim().is_empty() && attach.is_empty() {
            return Err(ApiError::invalid("message text is empty"));
        }
        if text.len() > MAX_DM_TEXT_BYTES {
            return Err(ApiError::invalid(format!(
                "message is {} bytes; the limit is {MAX_DM_TEXT_BYTES}",
                text.len()
            )));
        }
        if self.inner.store.moderation(&peer)?.blocked {
            return Err(ApiError::refused(format!("you blocked {peer}; unblock them first")));
        }
        if !self.is_mutual(&peer)? {
            return Err(ApiError::not_mutual(format!(
                "not a mutual connection: you and {peer} must follow each other"
            )));
        }
        let id = MessageId::generate().map_err(|e| ApiError::internal(format!("random: {e}")))?;
        let prepared = self.prepare_attachments(attach).await.map_err(ApiError::invalid)?;
        let attachments = self
            .seal_attachments(peer, *id.as_bytes(), prepared)
            .await
            .map_err(ApiError::internal)?;
        let plain = Plain { id, timestamp: now_ms(), text, attachments };
        let sealed = self
            .with_pair_keys(&peer, |keys| Sealed::seal_with(&self.inner.keypair, keys, &plain))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let request = DmRequest { sealed, follow_proof: self.follow_proof(&peer) }
            .to_bytes()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let entry = OutboxEntry {
            id: *id.as_bytes(),
            peer: *peer.as_bytes(),
            request,
            attempts: 0,
            order: 0,
        };
        let record = DmRecord {
            id: id.to_string(),
            from: me.to_string(),
            to: peer.to_string(),
            text: plain.text,
            timestamp: plain.timestamp,
            sent_at: None,
            status: DmStatus::Queued,
            reason: None,
            read: true,
            attachments: Vec::new(),
        };
        let mut record = record;
        record.set_attachments(&plain.attachments)?;
        let store = &self.inner.store;
        store.dm_insert(&peer, &me, id.as_bytes(), &record, Some(&entry))?;
        // Delivery starts before the message is flushed: until this call answers, no one
        // was told it was sent, and the one flush below, before the answer, covers the
        // message, its outbox entry and the receipt's status alike. Messages to this peer
        // still queued go first, in order.
        let node = self.clone();
        let (done, attempt) = tokio::sync::oneshot::channel();
        self.spawn(async move {
            let _ = done.send(node.deliver_queue(entry.peer).await);
        });
        let status = match tokio::time::timeout(SEND_WAIT, attempt).await {
            Ok(Ok(statuses)) => statuses.get(&entry.id).copied().unwrap_or(DmStatus::Queued),
            _ => DmStatus::Queued,
        };
        store.flush().await?;
        if status == DmStatus::Refused {
            let reason = self
                .inner
                .store
                .dm_thread(&peer, 64)
                .ok()
                .and_then(|t| t.into_iter().find(|m| m.id == record.id))
                .and_then(|m| m.reason)
                .unwrap_or_default();
            return Err(ApiError::refused(format!("refused by the recipient: {reason}")));
        }
        Ok(Response::MsgSent { id: id.to_string(), status: status.as_str().to_owned() })
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
        // Admission before anything else: nothing is opened, cached or stored for someone
        // who is not a mutual connection, and every such refusal reads the same.
        let proof = match self.admit_sender(&sender, request.follow_proof.as_deref()) {
            Ok(proof) => proof,
            Err(Some(error)) => {
                tracing::warn!(%error, "cannot check a message's sender");
                return refuse(None, STORE_FAILED);
            }
            Err(None) => return refuse(None, NOT_ACCEPTED),
        };
        let opened =
            self.with_pair_keys(&sender, |keys| sealed.open_with(&self.inner.keypair, keys)).await;
        let plain = match opened {
            Ok(p) => p,
            Err(e) => return refuse(None, &format!("cannot open the message: {e}")),
        };
        let now = now_ms();
        if plain.timestamp > now.saturating_add(kith_protocol::limits::MAX_FUTURE_SKEW_MS) {
            return refuse(Some(plain.id), "the message is dated in the future (check your clock)");
        }
        let store = &self.inner.store;
        if store.was_blocked_at(&sender, plain.timestamp).unwrap_or(false) {
            return refuse(Some(plain.id), NOT_ACCEPTED);
        }
        // The sender's follow of us, now that it made them a mutual connection: stored
        // like any record that concerns this node's person.
        if let Some(proof) = proof {
            let admission = &self.inner.admission;
            match ingest::admit(store, admission, proof, crate::keep::Came::Direct, now) {
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
                    Err(_) => refuse(Some(plain.id), STORE_FAILED),
                }
            }
            Ok(false) => {}
            Err(_) => return refuse(Some(plain.id), STORE_FAILED),
        }
        let mut record = DmRecord {
            id: plain.id.to_string(),
            from: sender.to_string(),
            to: self.inner.me.to_string(),
            text: plain.text,
            // Threads are ordered by when messages arrived: a sender's clock may lie.
            timestamp: now,
            sent_at: Some(plain.timestamp),
            status: DmStatus::Received,
            reason: None,
            read: false,
            attachments: Vec::new(),
        };
        if record.set_attachments(&plain.attachments).is_err() {
            return refuse(Some(plain.id), "the recipient's store failed");
        }
        let stored = store.dm_insert(&sender, &sender, plain.id.as_bytes(), &record, None);
        if let Ok(true) = stored {
            self.receive_attachments(sender, &record, *plain.id.as_bytes());
        }
        match stored {
            Ok(true) if !store.is_hidden(&sender) => {
                // Who and which message, never what it says.
                let from = sender.to_peer_id().map(|p| self.peer_label(&p));
                let from = from.unwrap_or_else(|_| sender.to_string());
                tracing::info!(%from, id = %plain.id, "direct message received");
                self.notify("message", sender.to_string(), plain.id.to_string())
            }
            Ok(true) => {}
            Ok(false) => {}
            Err(_) => return refuse(Some(plain.id), STORE_FAILED),
        }
        // The receipt promises the message is kept: flush first.
        if store.flush().await.is_err() {
            return refuse(Some(plain.id), STORE_FAILED);
        }
        DmReply::Delivered { id: plain.id }
    }

    /// Whether `sender` may send this node messages: not blocked, followed by this node's
    /// person, and following them (as the store knows, or as `proof` shows: the sender's
    /// own follow of this node's person, newer than any follow state stored). Returns the
    /// proof to store when it was needed. `Err(None)`: refused; `Err(Some(_))`: the store
    /// failed. No message is opened before this.
    fn admit_sender(
        &self,
        sender: &AuthorId,
        proof: Option<&[u8]>,
    ) -> Result<Option<kith_protocol::VerifiedRecord>, Option<StoreError>> {
        let (store, me) = (&self.inner.store, &self.inner.me);
        if store.moderation(sender).map_err(Some)?.blocked
            || !store.is_following(me, sender).map_err(Some)?
        {
            return Err(None);
        }
        if store.is_following(sender, me).map_err(Some)? {
            return Ok(None);
        }
        let proof =
            proof.and_then(|bytes| ingest::check(bytes, None, now_ms()).ok()).ok_or(None)?;
        let stored = store.follow_state(sender, me).map_err(Some)?.map(|s| s.seq);
        if crate::keep::follow_proof_counts(proof.record(), sender, me, stored) {
            Ok(Some(proof))
        } else {
            Err(None)
        }
    }

    pub(super) fn msg_inbox(&self) -> Reply {
        let store = &self.inner.store;
        let convs = store.dm_conversations()?;
        Ok(Response::Inbox {
            conversations: convs
                .into_iter()
                .map(|c| InboxEntry {
                    peer: c.peer.to_string(),
                    last_text: c.last.text,
                    timestamp: c.last.timestamp,
                    unread: c.unread,
                    name: super::view::name_of(store, &c.peer),
                    naming: super::view::naming_of(store, &c.peer),
                })
                .collect(),
        })
    }

    pub(super) async fn msg_thread(&self, with: &str, limit: Option<usize>) -> Reply {
        let peer = self.person(with)?;
        let limit = limit.unwrap_or(super::handlers::DEFAULT_THREAD_LIMIT);
        if limit == 0 || limit > super::MAX_FEED_LIMIT {
            return Err(ApiError::invalid(format!(
                "--limit must be between 1 and {}",
                super::MAX_FEED_LIMIT
            )));
        }
        let store = &self.inner.store;
        let messages = store.dm_thread(&peer, limit)?;
        store.dm_mark_read(&peer)?;
        store.flush().await?;
        let entry = |m: DmRecord| {
            let attachments = m
                .sealed_attachments()
                .iter()
                .map(|a| super::attach::entry_of(store, &a.attachment))
                .collect();
            MessageEntry {
                from_name: m.from.parse().ok().and_then(|a| super::view::name_of(store, &a)),
                naming: super::view::naming_of_text(store, &m.from),
                id: m.id,
                from: m.from,
                to: m.to,
                text: m.text,
                timestamp: m.timestamp,
                status: m.status.as_str().to_owned(),
                attachments,
                reason: m.reason,
            }
        };
        Ok(Response::Thread { messages: messages.into_iter().map(entry).collect() })
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
