//! Repair of held messages (issue #17 with #18): a message deposited with the recipient's
//! mailboxes that no session opened when the recipient collected it (its prekey rotated
//! and forgotten, its sessions lost) was acknowledged and dropped there; the recipient
//! then sent this node a repair request ([`Inner::Repair`], sealed on a session like a
//! receipt, directly or through this node's mailboxes) naming the envelope's digest.
//!
//! This node looks for the digest among its own sealed requests to that recipient, and
//! only there: a request names nothing of anyone else's, and one naming no message held
//! for its sender changes nothing. For the messages it names, the sessions with the
//! recipient's device are dropped (the caller clears them before they are stored), every
//! request sealed on them for that recipient is dropped, the held messages become queued
//! again, and the lane goes again at once: each message is sealed on a new session (on
//! the recipient's announced prekey) and delivered directly or deposited again. The
//! recipient stores a message once by its id, whichever copy arrives.
//!
//! [`Inner::Repair`]: kith_protocol::olm::inner::Inner::Repair

use kith_protocol::{dm::MessageId, olm::envelope::Dm2Request, AuthorId};

use super::{
    receive::{refusal, Received, STORE_FAILED},
    Dm,
};
use crate::{
    core::{Context, Effect, Timer},
    store::{DmStatus, StoreError},
};

/// This node's messages to `peer`, still in the outbox, whose sealed envelope has one of
/// `digests`.
pub(super) fn named(cx: &Context, peer: &AuthorId, digests: &[[u8; 32]]) -> Vec<[u8; 16]> {
    let Ok(entries) = cx.store.dm_outbox() else { return Vec::new() };
    entries
        .into_iter()
        .filter(|e| e.peer == *peer.as_bytes())
        .filter(|e| {
            let Ok(Some(bytes)) = cx.store.olm_sealed(&e.id) else { return false };
            match Dm2Request::from_bytes(&bytes) {
                Ok(Dm2Request::Deliver { envelope, .. }) => {
                    envelope.digest().is_ok_and(|d| digests.contains(&d))
                }
                _ => false,
            }
        })
        .map(|e| e.id)
        .collect()
}

impl Dm {
    /// A repair request `id` from `sender` that names `repaired`, this node's messages to
    /// them ([`named`]; the sessions with their device were cleared by the caller). Taken
    /// like a receipt: its digest is kept and it is answered with a receipt for `id`.
    pub(super) fn take_repair(
        &mut self,
        cx: &Context,
        sender: &AuthorId,
        id: MessageId,
        repaired: &[[u8; 16]],
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Received {
        if repaired.is_empty() {
            return Received::Kept(id);
        }
        tracing::info!(peer = %sender, messages = repaired.len(), "sealing messages again for a recipient that could not open them");
        if let Err(error) = self.unseal_for(cx, sender, repaired) {
            tracing::error!(%error, "cannot drop the sealed requests of a repair");
            return Received::Refused(refusal(None, STORE_FAILED));
        }
        let key = *sender.as_bytes();
        self.lanes.reached(&key);
        effects.push(Effect::Schedule { at: now, timer: Timer::Outbox });
        Received::Kept(id)
    }

    /// Drops every request sealed for `peer` (they were sealed on the sessions that go)
    /// and makes the `repaired` messages that were held queued again.
    fn unseal_for(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        repaired: &[[u8; 16]],
    ) -> Result<(), StoreError> {
        for queued in cx.store.dm_outbox()?.into_iter().filter(|e| e.peer == *peer.as_bytes()) {
            cx.store.set_olm_sealed(&queued.id, None)?;
        }
        for message in repaired {
            let held =
                cx.store.dm_get(&cx.me, message)?.is_some_and(|r| r.status == DmStatus::Held);
            if held {
                cx.store.dm_set_status(&cx.me, message, DmStatus::Queued, None)?;
            }
            self.deposits.forget(message);
        }
        Ok(())
    }
}
