//! Collecting from this node's mailboxes (issue #18, item 4): envelopes held for this
//! node's person while it was offline.
//!
//! Each collected envelope is a sealed deposit ([`sealed`]): opened with the identity key,
//! it gives the sender's id and a `/kith/dm/2` request, which is taken exactly as if the
//! sender's node had sent it (the same admission, the same drop of repeats by envelope
//! digest and by message id, so every path ends in one stored copy). Everything
//! collected is stored and flushed before it is acknowledged to the mailbox
//! ([`Effect::MailboxAck`]); an envelope that cannot be taken now (the sender's device is
//! not known here yet) is left with the mailbox for the next collect. For the messages
//! stored, the sender gets an end-to-end receipt ([`Effect::Receipt`]), sealed on the
//! session with their device and flushed with the messages: the driver sends it directly
//! and, when the sender cannot be reached, deposits it with the sender's mailboxes.
//!
//! A collected envelope that no session opens (a prekey rotated and forgotten, sessions
//! lost) is acknowledged too, and its sender gets a repair request the same way
//! ([`Inner::Repair`], naming the envelope's digest): when it reads it, it seals the
//! message again on a new session and sends or deposits it again
//! ([`super::receive2`]).

use std::collections::BTreeMap;

use kith_protocol::{
    dm::MessageId,
    mailbox::{sealed, HeldId},
    olm::{
        envelope::Dm2Request,
        inner::{Inner, Receipt, Repair, MAX_RECEIPT_IDS, MAX_REPAIR_DIGESTS},
    },
    AuthorId,
};
use libp2p::PeerId;

use super::{
    receive::{admit, Received},
    send2::sessions_with,
    Dm, Held,
};
use crate::core::{Context, Effect};

/// What became of one collected envelope.
enum Taken {
    /// A message from `sender`, stored now or before.
    Message(AuthorId, MessageId),
    /// No session opens the envelope of this digest from `sender`: acknowledged, and the
    /// sender asked to seal its message again.
    Broken(AuthorId, [u8; 32]),
    /// Done with: a receipt taken, a refusal, garbage. Acknowledged, nothing to answer.
    Done,
    /// Not now: left with the mailbox.
    Later,
}

/// The end-to-end receipt for `ids`, ready to leave once flushed.
#[derive(Debug)]
pub(crate) struct OutgoingReceipt {
    /// To whom.
    pub(crate) peer: AuthorId,
    /// The `/kith/dm/2` request carrying it (sent directly).
    pub(crate) request: Vec<u8>,
    /// The same, sealed for a deposit with the peer's mailboxes.
    pub(crate) deposit: Vec<u8>,
    /// The peer's mailboxes.
    pub(crate) mailboxes: Vec<AuthorId>,
    /// Its key in the store, where it stays until it was taken.
    pub(crate) key: [u8; 32],
}

impl OutgoingReceipt {
    /// The stored form: peer (32) || request length (u32 LE) || request || deposit.
    fn to_stored(&self) -> Vec<u8> {
        let len = u32::try_from(self.request.len()).unwrap_or(u32::MAX);
        [self.peer.as_bytes(), &len.to_le_bytes()[..], &self.request, &self.deposit].concat()
    }

    /// A stored receipt (its mailboxes as this node knows them now); none if damaged.
    pub(crate) fn from_stored(cx: &Context, key: [u8; 32], bytes: &[u8]) -> Option<Self> {
        let peer: [u8; 32] = bytes.get(..32)?.try_into().ok()?;
        let peer = AuthorId::from_bytes(peer).ok()?;
        let len = u32::from_le_bytes(bytes.get(32..36)?.try_into().ok()?) as usize;
        let request = bytes.get(36..36usize.checked_add(len)?)?.to_vec();
        let deposit = bytes.get(36 + len..)?.to_vec();
        let mailboxes = cx.store.mailboxes_of(&peer).ok()?;
        Some(Self { peer, request, deposit, mailboxes, key })
    }

    /// The effect that sends it.
    pub(crate) fn effect(self) -> Effect {
        let Self { peer, request, deposit, mailboxes, key } = self;
        Effect::Receipt { peer, request, deposit, mailboxes, key }
    }
}

/// Most stored receipts sent again at once after a start.
const MAX_RESENT: usize = 256;

impl Dm {
    /// The receipts stored and not taken yet, sent again (once per run, at the first look
    /// at the outbox after the start).
    pub(crate) fn resend_receipts(&mut self, cx: &Context) -> Vec<Effect> {
        if std::mem::replace(&mut self.receipts_resent, true) {
            return Vec::new();
        }
        let stored = cx.store.olm_receipts_out(MAX_RESENT).unwrap_or_else(|error| {
            tracing::error!(%error, "cannot read the receipts to send");
            Vec::new()
        });
        stored
            .into_iter()
            .filter_map(|(key, bytes)| OutgoingReceipt::from_stored(cx, key, &bytes))
            .map(OutgoingReceipt::effect)
            .collect()
    }

    /// A receipt was taken (directly or by a mailbox): no longer kept.
    pub(crate) fn handle_receipt_sent(&mut self, cx: &Context, key: &[u8; 32]) -> Vec<Effect> {
        if let Err(error) = cx.store.set_olm_receipt_out(key, None) {
            tracing::warn!(%error, "cannot forget a sent receipt");
        }
        Vec::new()
    }

    /// Envelopes collected from `mailbox`, oldest first, each with its id and its sealed
    /// layer opened (none: it did not open).
    pub(crate) fn handle_collected(
        &mut self,
        cx: &mut Context,
        mailbox: PeerId,
        items: Vec<(HeldId, Option<sealed::Opened>)>,
        now: u64,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut done: Vec<HeldId> = Vec::new();
        let mut stored: BTreeMap<AuthorId, Vec<MessageId>> = BTreeMap::new();
        let mut broken: BTreeMap<AuthorId, Vec<[u8; 32]>> = BTreeMap::new();
        for (id, opened) in items {
            match self.take_collected(cx, mailbox, opened, now, &mut effects) {
                Taken::Message(sender, message) => {
                    stored.entry(sender).or_default().push(message);
                    done.push(id);
                }
                Taken::Broken(sender, digest) => {
                    broken.entry(sender).or_default().push(digest);
                    done.push(id);
                }
                Taken::Done => done.push(id),
                Taken::Later => {}
            }
        }
        let mut receipts = Vec::new();
        for (peer, ids) in stored {
            for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                match self.seal_receipt(cx, &peer, chunk) {
                    Ok(Some(receipt)) => receipts.push(receipt),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%peer, %error, "cannot seal a receipt"),
                }
            }
        }
        for (peer, digests) in broken {
            for chunk in digests.chunks(MAX_REPAIR_DIGESTS) {
                let repair =
                    Inner::Repair(Repair { id: repair_id(chunk), digests: chunk.to_vec() });
                tracing::info!(%peer, envelopes = chunk.len(), "asking a sender to seal again");
                match self.seal_out(cx, &peer, &repair) {
                    Ok(Some(request)) => receipts.push(request),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%peer, %error, "cannot seal a repair request"),
                }
            }
        }
        let Ok(mailbox) = AuthorId::from_peer_id(&mailbox) else { return effects };
        // Acknowledged, and receipts sent, only once what was taken is durable.
        let flush = cx.flush_id();
        self.held.insert(flush, Held::Collected { mailbox, ids: done, receipts });
        effects.push(Effect::Flush(flush));
        effects
    }

    /// Takes one collected envelope (its sealed layer opened, if it opened).
    fn take_collected(
        &mut self,
        cx: &mut Context,
        mailbox: PeerId,
        opened: Option<sealed::Opened>,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Taken {
        let Some(opened) = opened else {
            tracing::info!(%mailbox, "a collected envelope does not open: dropped");
            return Taken::Done;
        };
        let sender = opened.sender;
        let Ok(Dm2Request::Deliver { envelope, follow_proof }) =
            Dm2Request::from_bytes(&opened.request)
        else {
            return Taken::Done;
        };
        let Ok(digest) = envelope.digest() else { return Taken::Done };
        let proof = match admit(cx, &sender, follow_proof.as_deref(), now) {
            Ok(proof) => proof,
            Err(_) => return Taken::Done,
        };
        // A sync of the sender's log, if needed, goes to the mailbox (a friend, online).
        match self.open2(cx, (mailbox, &sender), &envelope, proof, now, effects) {
            super::receive2::Unopened::Received(Received::Kept(id)) => {
                // Only a message from the sender gets a receipt (a repeated receipt's
                // digest names one of this node's own messages).
                match cx.store.dm_seen(&sender, id.as_bytes()) {
                    Ok(true) => Taken::Message(sender, id),
                    _ => Taken::Done,
                }
            }
            super::receive2::Unopened::Later => Taken::Later,
            // Its sender holds the message until it is receipted: asked to seal it again.
            super::receive2::Unopened::NewSession => Taken::Broken(sender, digest),
            super::receive2::Unopened::Received(Received::Refused(_)) => Taken::Done,
        }
    }

    /// Seals a receipt for `ids` to `peer`'s device (stored, not flushed); none when
    /// `peer` has no device this node knows.
    fn seal_receipt(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        ids: &[MessageId],
    ) -> Result<Option<OutgoingReceipt>, super::device::DeviceError> {
        self.seal_out(cx, peer, &Inner::Receipt(Receipt { ids: ids.to_vec() }))
    }

    /// Seals `inner` (a receipt or a repair request) to `peer`'s device, to be sent
    /// directly or deposited (stored, not flushed); none when `peer` has no device this
    /// node knows.
    pub(crate) fn seal_out(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        inner: &Inner,
    ) -> Result<Option<OutgoingReceipt>, super::device::DeviceError> {
        let Some(their) = self.known.newest(cx, peer)? else { return Ok(None) };
        let Some(local) = self.device.as_ref() else { return Ok(None) };
        let id = their.device.id();
        let mut sessions = sessions_with(cx, &local.key, id)?;
        let envelope = local.device.seal_inner(
            &cx.keys,
            &mut sessions,
            &their.device,
            Some(&their.fallback),
            inner,
        )?;
        let request = Dm2Request::Deliver { envelope, follow_proof: None }.to_bytes()?;
        cx.store.set_olm_sessions(&id, &sessions.pickle(&local.key)?)?;
        let deposit = sealed::seal(peer, &cx.me, &request)?;
        let mailboxes = cx.store.mailboxes_of(peer)?;
        let key = *HeldId::of(&request).as_bytes();
        let receipt = OutgoingReceipt { peer: *peer, request, deposit, mailboxes, key };
        // Kept (flushed with the messages) until it was taken: a crash before that
        // sends it again after the restart.
        cx.store.set_olm_receipt_out(&key, Some(&receipt.to_stored()))?;
        Ok(Some(receipt))
    }
}

/// The id of a repair request for `digests`: the first 16 bytes of SHA-256 over
/// `"kith-repair-id/1:"` and the digests (the same envelopes, the same id).
fn repair_id(digests: &[[u8; 32]]) -> MessageId {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"kith-repair-id/1:");
    for digest in digests {
        hash.update(digest);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash.finalize()[..16]);
    MessageId::from_bytes(id)
}
