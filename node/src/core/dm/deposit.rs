//! Later delivery, the sender's side (issue #18, item 3): a message that cannot be
//! delivered directly is deposited with the recipient's mailboxes.
//!
//! Only a `/kith/dm/2` request sealed on an Olm session is deposited: the very bytes
//! that would have gone directly (stored and flushed with the session before they
//! leave), sealed once more for the recipient's person ([`sealed`]) so that a mailbox
//! sees neither the sender nor the sending device. The mailboxes are those of the
//! recipient's latest `Mailboxes` record this node has (this node itself excepted: what
//! it would hold is already in its outbox). Once at least one accepted, the message is
//! `held`: it stays in the outbox until the recipient's end-to-end receipt comes back
//! (directly or through this node's own mailboxes), and the lane goes on with the
//! messages behind it. When none accepted, the lane stops and is tried again with its
//! backoff. A held message is tried directly again in each later pass of its lane
//! (once a pass finds the recipient unreachable, the rest of the pass deposits without
//! dialling), so a recipient that comes back gets it either way: it stores a message
//! once by its envelope's digest and by its id, whichever path brought it first.

use std::collections::{BTreeMap, BTreeSet};

use kith_protocol::{mailbox::sealed, AuthorId};

use super::Dm;
use crate::{
    core::{Context, Effect},
    store::DmStatus,
};

/// One pass of a lane over its peer's outbox.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// The recipient could not be reached in this pass: no more dialling in it.
    unreachable: bool,
    /// Held messages passed over in this pass (they stay in the outbox).
    passed: BTreeSet<[u8; 16]>,
}

/// The sender's side of mailboxes.
#[derive(Debug, Default)]
pub(crate) struct Deposits {
    /// This node's messages held by a mailbox and not yet receipted (loaded from the
    /// store on first use).
    held: Option<BTreeSet<[u8; 16]>>,
    /// Each running lane's pass, by peer.
    passes: BTreeMap<[u8; 32], Pass>,
}

impl Deposits {
    fn held(&mut self, cx: &Context) -> &mut BTreeSet<[u8; 16]> {
        self.held.get_or_insert_with(|| {
            let entries = cx.store.dm_outbox().unwrap_or_else(|error| {
                tracing::error!(%error, "cannot read the outbox");
                Vec::new()
            });
            entries
                .into_iter()
                .filter(|e| {
                    cx.store
                        .dm_get(&cx.me, &e.id)
                        .ok()
                        .flatten()
                        .is_some_and(|r| r.status == DmStatus::Held)
                })
                .map(|e| e.id)
                .collect()
        })
    }

    /// Whether this node's message `id` is held by a mailbox.
    pub(crate) fn is_held(&mut self, cx: &Context, id: &[u8; 16]) -> bool {
        self.held(cx).contains(id)
    }

    /// Message `id` was receipted (or refused): no longer held.
    pub(crate) fn forget(&mut self, id: &[u8; 16]) {
        if let Some(held) = self.held.as_mut() {
            held.remove(id);
        }
    }

    /// `peer`'s lane starts a new pass.
    pub(crate) fn start_pass(&mut self, peer: [u8; 32]) {
        self.passes.insert(peer, Pass::default());
    }

    /// `peer`'s lane stopped: its pass is over. Whether it passed over held messages
    /// (then its lane is tried again later).
    pub(crate) fn end_pass(&mut self, peer: &[u8; 32]) -> bool {
        self.passes.remove(peer).is_some_and(|p| !p.passed.is_empty())
    }

    /// Whether `peer`'s lane takes message `id` in this pass: not when it passed over it
    /// already, nor when it is held and the recipient was found unreachable.
    pub(crate) fn takes(&mut self, cx: &Context, peer: &[u8; 32], id: &[u8; 16]) -> bool {
        let (unreachable, passed) = match self.passes.get(peer) {
            Some(pass) => (pass.unreachable, pass.passed.contains(id)),
            None => (false, false),
        };
        !(passed || unreachable && self.is_held(cx, id))
    }

    /// Whether `peer` was found unreachable in this pass.
    pub(crate) fn unreachable(&self, peer: &[u8; 32]) -> bool {
        self.passes.get(peer).is_some_and(|p| p.unreachable)
    }

    fn pass(&mut self, peer: [u8; 32]) -> &mut Pass {
        self.passes.entry(peer).or_default()
    }
}

impl Dm {
    /// Message `message` could not be delivered to `peer` now. Held already: passed over.
    /// Sealed on `/kith/dm/2` and the recipient lists mailboxes: deposited. Otherwise the
    /// lane stops and backs off.
    pub(super) fn undelivered(
        &mut self,
        cx: &mut Context,
        peer: &AuthorId,
        message: [u8; 16],
        now: u64,
    ) -> Vec<Effect> {
        let key = *peer.as_bytes();
        self.deposits.pass(key).unreachable = true;
        if self.deposits.is_held(cx, &message) {
            self.deposits.pass(key).passed.insert(message);
            return self.next_in_lane(cx, key, now);
        }
        match self.deposit_effect(cx, peer, message) {
            Some(effect) => vec![effect],
            None => self.stop_lane(cx, key, now),
        }
    }

    /// The deposit of `message` (sealed on `/kith/dm/2`, flushed) with `peer`'s
    /// mailboxes, if it can be deposited.
    pub(super) fn deposit_effect(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        message: [u8; 16],
    ) -> Option<Effect> {
        let request = cx.store.olm_sealed(&message).ok()??;
        let mailboxes: Vec<AuthorId> =
            cx.store.mailboxes_of(peer).ok()?.into_iter().filter(|m| *m != cx.me).collect();
        if mailboxes.is_empty() {
            return None;
        }
        match sealed::seal(peer, &cx.me, &request) {
            Ok(envelope) => Some(Effect::Deposit { peer: *peer, message, envelope, mailboxes }),
            Err(error) => {
                tracing::warn!(%error, "cannot seal a deposit");
                None
            }
        }
    }

    /// How the deposit of `message` for `peer` went: `accepted` mailboxes hold it.
    pub(crate) fn handle_deposited(
        &mut self,
        cx: &mut Context,
        peer: &AuthorId,
        message: [u8; 16],
        accepted: usize,
        now: u64,
    ) -> Vec<Effect> {
        let key = *peer.as_bytes();
        if self.lanes.current(&key) != Some(message) {
            return Vec::new();
        }
        if accepted == 0 {
            return self.stop_lane(cx, key, now);
        }
        let still_queued = cx
            .store
            .dm_get(&cx.me, &message)
            .ok()
            .flatten()
            .is_some_and(|r| r.status == DmStatus::Queued);
        let mut effects = Vec::new();
        if still_queued {
            // Not flushed here: a `msg send` answer flushes first, and a status lost in a
            // crash only deposits the message again, which its recipient stores once.
            if let Err(error) = cx.store.dm_set_status(&cx.me, &message, DmStatus::Held, None) {
                tracing::error!(%error, "cannot record a deposit");
                return self.stop_lane(cx, key, now);
            }
            self.deposits.held(cx).insert(message);
            self.deposits.pass(key).passed.insert(message);
            effects.extend(self.settle(cx, message, DmStatus::Held, None));
        }
        effects.extend(self.next_in_lane(cx, key, now));
        effects
    }
}
