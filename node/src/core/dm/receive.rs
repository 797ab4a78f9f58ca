//! Receiving a direct message: who sent it, admission before anything is opened, the
//! follow proof, replay drop, store, and a receipt only once the message is durable.

use kith_protocol::{
    dm::{DmReply, DmRequest, MessageId, Plain},
    limits::MAX_FUTURE_SKEW_MS,
    olm::envelope::Dm2Reply,
    AuthorId, VerifiedRecord,
};
use libp2p::PeerId;

use super::{Dm, Held};
use crate::{
    core::{Context, Effect, ReplyId},
    ingest,
    store::{DmRecord, DmStatus, StoreError},
};

/// The one refusal for a message from someone this node does not take messages from (not
/// a mutual connection, blocked, a follow proof that does not count): the sender learns
/// nothing more.
pub(crate) const NOT_ACCEPTED: &str = "not a mutual connection";
/// The refusal when this node's store fails.
pub(crate) const STORE_FAILED: &str = "the recipient's store failed";

/// A refusal of message `id` (when it was opened) for `reason`.
pub(crate) fn refusal(id: Option<MessageId>, reason: &str) -> DmReply {
    DmReply::Refused { id, reason: reason.to_owned() }
}

/// The effect that answers request `reply` with `answer`.
pub(crate) fn respond(reply: ReplyId, answer: &DmReply) -> Effect {
    crate::core::respond_encoded(reply, answer.to_bytes())
}

/// What becomes of a received message.
pub(super) enum Received {
    /// Refused now.
    Refused(DmReply),
    /// Kept (now or before): the receipt waits for a flush.
    Kept(MessageId),
}

impl Dm {
    /// An inbound `/kith/dm/1` request from `from`.
    pub(crate) fn handle_request(
        &mut self,
        cx: &mut Context,
        from: PeerId,
        bytes: &[u8],
        reply: ReplyId,
        now: u64,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let received = self.receive(cx, from, bytes, now, &mut effects);
        self.answer(cx, from, received, reply, false, &mut effects);
        effects
    }

    /// Answers request `reply` about a received message: a refusal now, or a receipt
    /// once the message is durable (`v2`: wrapped in a `/kith/dm/2` reply).
    pub(super) fn answer(
        &mut self,
        cx: &mut Context,
        from: PeerId,
        received: Received,
        reply: ReplyId,
        v2: bool,
        effects: &mut Vec<Effect>,
    ) {
        match received {
            Received::Refused(answer) => {
                if let DmReply::Refused { reason, .. } = &answer {
                    tracing::info!(peer = %from, %reason, "refused a direct message");
                }
                effects.push(if v2 {
                    super::receive2::respond2(reply, &Dm2Reply::Receipt(answer))
                } else {
                    respond(reply, &answer)
                });
            }
            Received::Kept(id) => {
                let flush = cx.flush_id();
                self.held.insert(flush, Held::Receipt { reply, id, v2 });
                effects.push(Effect::Flush(flush));
            }
        }
    }

    fn receive(
        &mut self,
        cx: &mut Context,
        from: PeerId,
        bytes: &[u8],
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Received {
        let refuse = |id, reason: &str| Received::Refused(refusal(id, reason));
        let request = match DmRequest::from_bytes(bytes) {
            Ok(r) => r,
            Err(e) => return refuse(None, &format!("malformed message: {e}")),
        };
        let Ok(sender) = AuthorId::from_peer_id(&from) else {
            return refuse(None, "the connected peer has no ed25519 identity");
        };
        let sealed = &request.sealed;
        if sealed.sender != sender {
            return refuse(None, "the sealed sender is not the connected peer");
        }
        if sealed.recipient != cx.me {
            return refuse(None, "not addressed to this node");
        }
        // Admission before anything else: nothing is opened, cached or stored for someone
        // who is not a mutual connection, and every such refusal reads the same.
        let proof = match admit(cx, &sender, request.follow_proof.as_deref(), now) {
            Ok(proof) => proof,
            Err(refused) => return refused,
        };
        let opened = self.keys.with(&cx.keys, &sender, |keys| sealed.open_with(&cx.keys, keys));
        let plain = match opened {
            Ok(p) => p,
            Err(e) => return refuse(None, &format!("cannot open the message: {e}")),
        };
        self.accept(cx, &sender, plain, proof, now, effects)
    }

    /// A message opened from `sender` (on either exchange): refused if dated in the
    /// future or written while blocked; otherwise the follow proof that admitted it is
    /// stored, and the message unless it was stored before (a replay or a retry).
    pub(super) fn accept(
        &mut self,
        cx: &mut Context,
        sender: &AuthorId,
        plain: Plain,
        proof: Option<VerifiedRecord>,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Received {
        let sender = *sender;
        let refuse = |id, reason: &str| Received::Refused(refusal(id, reason));
        if plain.timestamp > now.saturating_add(MAX_FUTURE_SKEW_MS) {
            return refuse(Some(plain.id), "the message is dated in the future (check your clock)");
        }
        let store = &cx.store;
        if store.was_blocked_at(&sender, plain.timestamp).unwrap_or(false) {
            return refuse(Some(plain.id), NOT_ACCEPTED);
        }
        // The sender's follow of us, now that it made them a mutual connection: stored
        // like any record that concerns this node's person.
        if let Some(proof) = proof {
            match ingest::admit(store, &cx.admission, proof, crate::keep::Came::Direct, now) {
                Ok(ingest::Outcome::New(rec)) => {
                    let notes = crate::core::notify::for_record(store, &cx.me, &rec, now);
                    effects.extend(notes.into_iter().map(Effect::Notified));
                    effects.push(Effect::Stored(rec.clone()));
                    effects.push(Effect::LivePost(rec));
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot store a follow proof"),
            }
        }
        match store.dm_seen(&sender, plain.id.as_bytes()) {
            // Seen: the receipt still waits until that copy is durable (it may be a
            // retry racing the first attempt's flush).
            Ok(true) => return Received::Kept(plain.id),
            Ok(false) => {}
            Err(_) => return refuse(Some(plain.id), STORE_FAILED),
        }
        let mut record = DmRecord {
            id: plain.id.to_string(),
            from: sender.to_string(),
            to: cx.me.to_string(),
            text: plain.text,
            // Threads are ordered by when messages arrived: a sender's clock may lie.
            // Several arriving in one millisecond (a batch collected from a mailbox)
            // keep the order they came in.
            timestamp: self.arrival(now),
            sent_at: Some(plain.timestamp),
            status: DmStatus::Received,
            reason: None,
            read: false,
            attachments: Vec::new(),
        };
        if record.set_attachments(&plain.attachments).is_err() {
            return refuse(Some(plain.id), STORE_FAILED);
        }
        match store.dm_insert(&sender, &sender, plain.id.as_bytes(), &record, None) {
            Ok(true) => {
                self.device_wanted |= !self.announced;
                let hidden = store.is_hidden(&sender);
                let message = *plain.id.as_bytes();
                if !hidden {
                    let (from, id) = (sender.to_string(), plain.id.to_string());
                    // New by its id (just inserted): no notification of it can exist.
                    let note =
                        crate::core::notify::notify_new(store, &cx.me, "message", (from, id), now);
                    effects.extend(note.map(Effect::Notified));
                }
                effects.push(Effect::Received {
                    sender,
                    record: Box::new(record),
                    message,
                    hidden,
                });
            }
            Ok(false) => {}
            Err(_) => return refuse(Some(plain.id), STORE_FAILED),
        }
        Received::Kept(plain.id)
    }
}

/// Admission of `sender` with its follow `proof` (see [`admit_sender`]): the proof to
/// store when it was needed, or the refusal.
pub(super) fn admit(
    cx: &Context,
    sender: &AuthorId,
    proof: Option<&[u8]>,
    now: u64,
) -> Result<Option<VerifiedRecord>, Received> {
    match admit_sender(cx, sender, proof, now) {
        Ok(proof) => Ok(proof),
        Err(Some(error)) => {
            tracing::warn!(%error, "cannot check a message's sender");
            Err(Received::Refused(refusal(None, STORE_FAILED)))
        }
        Err(None) => Err(Received::Refused(refusal(None, NOT_ACCEPTED))),
    }
}

/// Whether `sender` may send this node messages: not blocked, followed by this node's
/// person, and following them (as the store knows, or as `proof` shows: the sender's own
/// follow of this node's person, newer than any follow state stored). Returns the proof
/// to store when it was needed. `Err(None)`: refused; `Err(Some(_))`: the store failed.
/// No message is opened before this.
fn admit_sender(
    cx: &Context,
    sender: &AuthorId,
    proof: Option<&[u8]>,
    now: u64,
) -> Result<Option<VerifiedRecord>, Option<StoreError>> {
    let (store, me) = (&cx.store, &cx.me);
    if store.moderation(sender).map_err(Some)?.blocked
        || !store.is_following(me, sender).map_err(Some)?
    {
        return Err(None);
    }
    if store.is_following(sender, me).map_err(Some)? {
        return Ok(None);
    }
    let proof = proof.and_then(|bytes| ingest::check(bytes, None, now).ok()).ok_or(None)?;
    let stored = store.follow_state(sender, me).map_err(Some)?.map(|s| s.seq);
    if crate::keep::follow_proof_counts(proof.record(), sender, me, stored) {
        Ok(Some(proof))
    } else {
        Err(None)
    }
}
