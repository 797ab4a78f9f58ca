//! A lane's messages in one `/kith/dm/2` request (throughput, issue #17).
//!
//! The messages queued in a lane are sealed together ([`super::send2`], one flush for
//! all of them); they then leave together too, as one [`Dm2Request::Batch`] of at most
//! [`MAX_BATCH`] envelopes in lane order that fits in one request. The recipient takes
//! them in order exactly as it takes single messages (admission once, then each one
//! opened, stored with its digest and session), flushes once, and answers
//! [`Dm2Reply::Receipts`]: one receipt per envelope taken, in order, up to and including
//! the first refusal. The sender records them, and when the recipient stopped early (an
//! envelope it could not open now, or one no session opened) it sends the envelope where
//! it stopped on its own ([`Dm2Request::Deliver`]), whose answer says why, as before.
//!
//! Crash safety is unchanged: every envelope of a batch was sealed and flushed before
//! (its session's state durable before it leaves), and the recipient's receipts go only
//! after its flush. A batch sent again after a lost answer is answered from the digests.

use kith_protocol::{
    dm::DmReply,
    limits::MAX_DM_REQUEST_BYTES,
    olm::{
        device::DeviceId,
        envelope::{Dm2Reply, Dm2Request, Envelope, ENVELOPE_OVERHEAD, MAX_BATCH},
    },
    AuthorId,
};
use libp2p::PeerId;

use super::{
    receive::{admit, Received},
    receive2::{respond2, Unopened},
    send2::Flight,
    Dm, Held,
};
use crate::{
    core::{Context, Effect, ReplyId},
    store::DmStatus,
};

/// Bytes of a batch request that are not its envelopes: the variant (4), the list's
/// length (8), and the follow proof's option (1) and length (8).
const BATCH_OVERHEAD: usize = 4 + 8 + 1 + 8;

/// The envelope and follow proof of a sealed `Deliver` request this node made.
fn unpack(bytes: &[u8]) -> Option<(Envelope, Option<Vec<u8>>)> {
    match Dm2Request::from_bytes(bytes) {
        Ok(Dm2Request::Deliver { envelope, follow_proof }) => Some((envelope, follow_proof)),
        _ => None,
    }
}

impl Dm {
    /// What a lane sends for its message `first` (its sealed request's bytes) with the
    /// sealed requests queued behind it (`behind`, in lane order): one batch of as many as
    /// fit, or `first` alone when it is alone, when nothing else fits, or when the last
    /// batch to `peer` stopped at it (its own answer says why).
    pub(super) fn batch_of(
        &mut self,
        peer: &[u8; 32],
        device: DeviceId,
        first: ([u8; 16], Vec<u8>),
        behind: Vec<([u8; 16], Vec<u8>)>,
    ) -> (Flight, Vec<u8>) {
        let alone = (Flight::Sealed(device), first.1.clone());
        if self.single.remove(peer) || behind.is_empty() {
            return alone;
        }
        let Some((_, follow_proof)) = unpack(&first.1) else { return alone };
        let mut size = BATCH_OVERHEAD + follow_proof.as_ref().map_or(0, Vec::len);
        let mut ids = Vec::new();
        let mut envelopes = Vec::new();
        for (id, bytes) in std::iter::once(first).chain(behind) {
            let Some((envelope, _)) = unpack(&bytes) else { break };
            let len = ENVELOPE_OVERHEAD + envelope.olm.len();
            if envelopes.len() >= MAX_BATCH || size + len > MAX_DM_REQUEST_BYTES {
                break;
            }
            size += len;
            ids.push(id);
            envelopes.push(envelope);
        }
        if envelopes.len() < 2 {
            return alone;
        }
        match (Dm2Request::Batch { envelopes, follow_proof }).to_bytes() {
            Ok(bytes) => (Flight::Batch(device, ids), bytes),
            Err(_) => alone,
        }
    }

    /// The answer to a batch of `ids` sent to `peer`: each receipt recorded in order
    /// (delivered or refused), then the lane goes on; from the envelope where the
    /// recipient stopped, alone. An answer that is not a list of receipts (a recipient
    /// that does not take batches) sends the first message alone.
    pub(super) fn batch_answered(
        &mut self,
        cx: &mut Context,
        peer: &AuthorId,
        ids: &[[u8; 16]],
        reply: Dm2Reply,
        now: u64,
    ) -> Vec<Effect> {
        let key = *peer.as_bytes();
        let Dm2Reply::Receipts(receipts) = reply else {
            tracing::debug!(%peer, "a batch was not answered with receipts: sending alone");
            self.single.insert(key);
            return self.next_in_lane(cx, key, now);
        };
        let mut settled = Vec::new();
        for (id, receipt) in ids.iter().zip(receipts) {
            let (status, reason) = match receipt {
                DmReply::Delivered { id: got } if got.as_bytes() == id => {
                    (DmStatus::Delivered, None)
                }
                DmReply::Refused { reason, .. } => (DmStatus::Refused, Some(super::cut(reason))),
                DmReply::Delivered { .. } => break,
            };
            // Done with, either way (not flushed: a status lost in a crash only sends the
            // message again, answered from the recipient's store).
            let _ = cx.store.set_olm_sealed(id, None);
            if let Err(error) = cx.store.dm_set_status(&cx.me, id, status, reason.clone()) {
                tracing::error!(%error, "cannot record delivery");
                break;
            }
            self.deposits.forget(id);
            settled.push((*id, status, reason));
        }
        tracing::debug!(%peer, sent = ids.len(), answered = settled.len(), "a batch was answered");
        if !settled.is_empty() {
            self.renewals.remove(&key);
            self.laters.remove(&key);
            self.lanes.reached(&key);
        }
        if settled.len() < ids.len() {
            self.single.insert(key);
        }
        let mut effects = self.settle_all(settled);
        effects.extend(self.next_in_lane(cx, key, now));
        effects
    }

    /// An inbound batch from `sender`: admitted once, then each envelope taken in order
    /// until one is refused or not taken; one flush, then the receipts.
    pub(super) fn take_batch(
        &mut self,
        cx: &mut Context,
        (from, sender): (PeerId, &AuthorId),
        (envelopes, follow_proof): (Vec<Envelope>, Option<Vec<u8>>),
        reply: ReplyId,
        now: u64,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut proof = match admit(cx, sender, follow_proof.as_deref(), now) {
            Ok(proof) => proof,
            Err(Received::Refused(refusal)) => {
                tracing::info!(peer = %from, "refused a batch of direct messages");
                return vec![respond2(reply, &Dm2Reply::Receipts(vec![refusal]))];
            }
            Err(Received::Kept(_)) => None,
        };
        let mut receipts = Vec::new();
        for envelope in &envelopes {
            match self.open2(cx, (from, sender), envelope, proof.take(), now, &mut effects) {
                Unopened::Received(Received::Kept(id)) => {
                    receipts.push(DmReply::Delivered { id });
                }
                Unopened::Received(Received::Refused(refusal)) => {
                    if let DmReply::Refused { reason, .. } = &refusal {
                        tracing::info!(peer = %from, %reason, "refused a direct message");
                    }
                    receipts.push(refusal);
                    break;
                }
                Unopened::NewSession | Unopened::Later => break,
            }
        }
        tracing::debug!(peer = %from, got = envelopes.len(), taken = receipts.len(), "took a batch");
        if receipts.iter().any(|r| matches!(r, DmReply::Delivered { .. })) {
            let flush = cx.flush_id();
            self.held.insert(flush, Held::Receipts { reply, receipts });
            effects.push(Effect::Flush(flush));
        } else {
            effects.push(respond2(reply, &Dm2Reply::Receipts(receipts)));
        }
        effects
    }

    /// The statuses of `settled` messages are known: the `msg send` requests waiting for
    /// them are answered now (every message of a batch was sealed on a session and
    /// flushed with its outbox entry before it left; see [`Dm::settle_flushed`]).
    fn settle_all(&mut self, settled: Vec<([u8; 16], DmStatus, Option<String>)>) -> Vec<Effect> {
        settled
            .into_iter()
            .filter_map(|(message, status, reason)| self.settle_flushed(message, status, reason))
            .collect()
    }
}

/// The answer to a batch once its messages are durable (none taken if the flush failed:
/// the sender sends them again, and they are answered from the digests).
pub(super) fn receipts_flushed(reply: ReplyId, receipts: Vec<DmReply>, flushed: bool) -> Effect {
    let receipts = if flushed { receipts } else { Vec::new() };
    respond2(reply, &Dm2Reply::Receipts(receipts))
}
