//! Receiving on `/kith/dm/2` (issue #17): admission as on `/kith/dm/1` before anything
//! is opened; an envelope already accepted (known by its digest) is answered with its
//! receipt again without being opened; otherwise it is opened on the session kept with
//! the sender's announced device, and the session's new state (and the device's, for a
//! first message) is stored with the message and flushed before the receipt. A message
//! no session opens is answered `NewSession` (the sender starts again on a new session);
//! one-time keys are handed out to a peer at most [`MAX_CLAIMS_PER_HOUR`] times an hour.

use kith_protocol::{
    olm::{
        envelope::{Dm2Reply, Dm2Request, Envelope},
        inner::{Inner, Receipt},
        OlmError,
    },
    AuthorId,
};
use libp2p::PeerId;

use super::{
    receive::{admit, refusal, Received, STORE_FAILED},
    send2::sessions_with,
    Dm, Held,
};
use crate::{
    core::{Context, Effect, ReplyId},
    store::{DmStatus, StoreError},
};

/// Most one-time keys handed to one peer in an hour; beyond, a claim is answered with
/// none (the claimer uses the announced fallback key).
pub(crate) const MAX_CLAIMS_PER_HOUR: u32 = 8;

/// The effect that answers request `reply` with `answer`.
pub(crate) fn respond2(reply: ReplyId, answer: &Dm2Reply) -> Effect {
    crate::core::respond_encoded(reply, answer.to_bytes())
}

/// What became of an envelope that could not be taken as a message.
pub(super) enum Unopened {
    /// Answered like a `/kith/dm/1` request (a refusal, or a receipt).
    Received(Received),
    /// No session opens it: the sender should start a new one.
    NewSession,
    /// Not now (the sender's device is not known here yet): an empty reply, which the
    /// sender takes as a failed attempt and tries again later.
    Later,
}

impl Dm {
    /// An inbound `/kith/dm/2` request from `from`.
    pub(crate) fn handle_request2(
        &mut self,
        cx: &mut Context,
        from: PeerId,
        bytes: &[u8],
        reply: ReplyId,
        now: u64,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let refused = |reason: &str| Unopened::Received(Received::Refused(refusal(None, reason)));
        let outcome = match (Dm2Request::from_bytes(bytes), AuthorId::from_peer_id(&from)) {
            (Err(e), _) => refused(&format!("malformed message: {e}")),
            (_, Err(_)) => refused("the connected peer has no ed25519 identity"),
            (Ok(Dm2Request::Claim { device }), Ok(sender)) => {
                return self.claim(cx, (from, &sender), device, reply, now);
            }
            (Ok(Dm2Request::Batch { envelopes, follow_proof }), Ok(sender)) => {
                return self.take_batch(cx, (from, &sender), (envelopes, follow_proof), reply, now);
            }
            (Ok(Dm2Request::Deliver { envelope, follow_proof }), Ok(sender)) => {
                match admit(cx, &sender, follow_proof.as_deref(), now) {
                    Err(refusal) => Unopened::Received(refusal),
                    Ok(proof) => {
                        self.open2(cx, (from, &sender), &envelope, proof, now, &mut effects)
                    }
                }
            }
        };
        match outcome {
            Unopened::Received(received) => {
                self.answer(cx, from, received, reply, true, &mut effects);
            }
            Unopened::NewSession => effects.push(respond2(reply, &Dm2Reply::NewSession)),
            Unopened::Later => effects.push(Effect::Respond { reply, bytes: Vec::new() }),
        }
        effects
    }

    /// Opens an envelope from `sender` (admitted) and takes its message.
    pub(super) fn open2(
        &mut self,
        cx: &mut Context,
        (from, sender): (PeerId, &AuthorId),
        envelope: &Envelope,
        proof: Option<kith_protocol::VerifiedRecord>,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Unopened {
        let store_failed = || Unopened::Received(Received::Refused(refusal(None, STORE_FAILED)));
        let Ok(digest) = envelope.digest() else { return store_failed() };
        match cx.store.olm_received(&digest) {
            // Accepted before (a retry, or the same envelope by another path): the
            // receipt again once that copy is durable; nothing is opened.
            Ok(Some(id)) => {
                return Unopened::Received(Received::Kept(
                    kith_protocol::dm::MessageId::from_bytes(id),
                ))
            }
            Ok(None) => {}
            Err(_) => return store_failed(),
        }
        if self.device.is_none() {
            self.device_wanted = true;
            let _ = self.check_device(cx, true, false, now);
        }
        let Some(local) = self.device.as_mut() else { return store_failed() };
        if envelope.recipient_device != local.cert.id() {
            // Sealed for a device this node no longer has (its announcement is being
            // replaced): the sender seals again for the current one.
            self.device_wanted |= !self.announced;
            return Unopened::NewSession;
        }
        let their = match self.known.newest(cx, sender) {
            Ok(Some(entry)) if entry.device.id() == envelope.sender_device => entry.device,
            Ok(_) | Err(_) => {
                // Its announcement has not reached this node: fetch the sender's log.
                effects.push(Effect::FillGap { peer: from, author: *sender });
                return Unopened::Later;
            }
        };
        let Ok(mut sessions) = sessions_with(cx, &local.key, their.id()) else {
            return store_failed();
        };
        let opened = match local.device.open(&mut sessions, &their, envelope) {
            Ok(opened) => opened,
            Err(error) if error.needs_new_session() => {
                tracing::info!(peer = %sender, "no session opens a message: asking for a new one");
                return Unopened::NewSession;
            }
            // Its message key is spent but its digest is not known: this node lost the
            // message it carried (or forgot the digest, a month on). Opening it again is
            // impossible, so the sender seals it again on a new session (the message is
            // stored once by its id); answering nothing would have the sender send these
            // same bytes forever.
            Err(OlmError::Replay) => {
                tracing::info!(peer = %sender, "no session opens a message (its key is spent): asking for a new one");
                return Unopened::NewSession;
            }
            Err(error) => {
                let reason = format!("cannot open the message: {error}");
                return Unopened::Received(Received::Refused(refusal(None, &reason)));
            }
        };
        // The session moved on (and the device too, for a first message). Written after
        // the message and its digest, so that whatever prefix of these writes a crash
        // keeps, the sender's retry of these same bytes is either opened again (the key
        // is not spent yet) or known by its digest: never a spent key without the
        // message. The sessions and the device go together (one batch). All of it is
        // flushed before the receipt.
        // A repair request naming messages this node holds for the sender: the sessions
        // with their device go (with the request's own), so the messages are sealed again
        // on a new one. One that names none changes nothing.
        let repaired = match &opened.inner {
            Inner::Repair(repair) => super::repair::named(cx, sender, &repair.digests),
            _ => Vec::new(),
        };
        if !repaired.is_empty() {
            sessions.clear();
        }
        let sessions = sessions.pickle(&local.key);
        let own = if opened.new_session {
            match local.device.maintain(now) {
                // A used fallback key is replaced: the new announcement goes out.
                Ok(Some(_)) => self.device_wanted = true,
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot rotate the fallback key"),
            }
            Some(local.device.pickle(&local.key))
        } else {
            None
        };
        let (Ok(sessions), Ok(own)) = (sessions, own.transpose()) else {
            tracing::error!("cannot pickle a session");
            return store_failed();
        };
        let received = match opened.inner {
            Inner::Message(plain) => self.accept(cx, sender, plain, proof, now, effects),
            Inner::Receipt(receipt) => self.take_receipt(cx, sender, &receipt, effects),
            Inner::Repair(repair) => {
                self.take_repair(cx, sender, repair.id, &repaired, now, effects)
            }
            // A group key share belongs on `/kith/group/1` (issue #19).
            Inner::GroupShare(_) => {
                Received::Refused(refusal(None, "a group key share on /kith/dm/2"))
            }
        };
        if let Received::Kept(id) = &received {
            if cx.store.set_olm_received(&digest, id.as_bytes(), now).is_err() {
                return store_failed();
            }
        }
        if let Err(error) = cx.store.set_olm_opened(&their.id(), &sessions, own.as_deref()) {
            tracing::error!(%error, "cannot store a session");
            return store_failed();
        }
        Unopened::Received(received)
    }

    /// An end-to-end receipt from `sender`: this node's messages to them that it names
    /// are delivered (ids of other messages count for nothing). Answered like a message,
    /// with the first id it names, once the new statuses are durable.
    fn take_receipt(
        &mut self,
        cx: &mut Context,
        sender: &AuthorId,
        receipt: &Receipt,
        effects: &mut Vec<Effect>,
    ) -> Received {
        let Some(first) = receipt.ids.first().copied() else {
            return Received::Refused(refusal(None, "empty receipt"));
        };
        for id in &receipt.ids {
            match self.delivered_by_receipt(cx, sender, id.as_bytes()) {
                Ok(true) => {
                    effects.extend(self.settle(cx, *id.as_bytes(), DmStatus::Delivered, None))
                }
                Ok(false) => {}
                Err(_) => return Received::Refused(refusal(None, STORE_FAILED)),
            }
        }
        Received::Kept(first)
    }

    /// Marks this node's message `id` delivered if it was sent to `peer` and is not yet;
    /// whether it changed.
    pub(super) fn delivered_by_receipt(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        id: &[u8; 16],
    ) -> Result<bool, StoreError> {
        let Some(record) = cx.store.dm_get(&cx.me, id)? else { return Ok(false) };
        if record.from != cx.me.to_string()
            || record.to != peer.to_string()
            || matches!(record.status, DmStatus::Delivered | DmStatus::Refused)
        {
            return Ok(false);
        }
        cx.store.dm_set_status(&cx.me, id, DmStatus::Delivered, None)?;
        let _ = cx.store.set_olm_sealed(id, None);
        self.deposits.forget(id);
        Ok(true)
    }

    /// A claim of one of this node's one-time keys by `sender`.
    fn claim(
        &mut self,
        cx: &mut Context,
        (from, sender): (PeerId, &AuthorId),
        device: kith_protocol::olm::device::DeviceId,
        reply: ReplyId,
        now: u64,
    ) -> Vec<Effect> {
        let none = |reply| vec![respond2(reply, &Dm2Reply::Claimed(None))];
        if let Err(refused) = admit(cx, sender, None, now) {
            let mut effects = Vec::new();
            self.answer(cx, from, refused, reply, true, &mut effects);
            return effects;
        }
        if self.device.is_none() && self.check_device(cx, false, false, now).is_some() {
            self.device_wanted = true;
        }
        let hour = now / 3_600_000;
        let count = self.claims.entry(*sender).or_insert((hour, 0));
        if count.0 != hour {
            *count = (hour, 0);
        }
        if count.1 >= MAX_CLAIMS_PER_HOUR {
            return none(reply);
        }
        let Some(local) = self.device.as_mut().filter(|l| l.cert.id() == device) else {
            return none(reply);
        };
        count.1 += 1;
        let prekey = match local.device.claim_one_time_key(now) {
            Ok(prekey) => prekey,
            Err(error) => {
                tracing::warn!(%error, "cannot make a one-time key");
                return none(reply);
            }
        };
        if local.save(cx).is_err() {
            return none(reply);
        }
        // The key's secret must be durable before anyone seals to it.
        let flush = cx.flush_id();
        self.held.insert(flush, Held::Claimed { reply, prekey: Some(prekey) });
        vec![Effect::Flush(flush)]
    }
}
