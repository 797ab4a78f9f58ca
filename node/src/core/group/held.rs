//! Key shares held until the member's device is known (issue #19; `docs/protocol.md`
//! 20.6).
//!
//! A key share for a member whose device announcement is not known here yet (or while
//! this node has no device) is not sealed at all: it waits in its place in the member's
//! queue as an empty entry ([`HELD`]), with the share kept sealed with the pickle key
//! (`u` || member || n, as for every share on Olm), so what is queued behind it (the
//! messages it opens) waits with it. It is never sealed with `/kith/dm/1` instead.
//!
//! - **When it goes.** It is sealed on an Olm session with the member's device, and the
//!   member's lane starts once that is flushed, as soon as an announcement of the member
//!   is known here: their `Devices` record stored (gossip, sync), one passed on by a
//!   group's creator ([`Control::Devices`]), or one that comes with their own key share
//!   or their `NewSession` answer ([`Groups::release_fresh`]). Also whenever the lane
//!   reaches it (after a restart, when the member connects, after its back-off), in case
//!   what it waited for came while this node could not act on it.
//! - **Deposits.** A lane's pass that reaches a held share deposits nothing more: what
//!   follows it needs its key.
//! - **Bounded**: at most [`MAX_HELD_SHARES`] held per member; beyond, the oldest one
//!   goes (the member, whose device has been unknown for that many sessions, does not
//!   read that session's messages).
//!
//! [`Control::Devices`]: kith_protocol::group::wire::Control::Devices

use kith_protocol::{group::wire::OlmShare, AuthorId};

use super::Groups;
use crate::{
    api::ApiError,
    core::{Context, Effect},
};

/// A queue entry that is a key share held until the member's device is known.
pub(super) const HELD: &[u8] = &[];

/// Most key shares held for one member.
pub(crate) const MAX_HELD_SHARES: usize = 256;

/// Whether a queued request is a held key share.
pub(super) fn is_held(bytes: &[u8]) -> bool {
    bytes == HELD
}

/// The numbers of `peer`'s held key shares, oldest first.
fn held_numbers(cx: &Context, peer: &AuthorId) -> Result<Vec<u64>, ApiError> {
    let key = peer.as_bytes();
    let mut held = Vec::new();
    for n in cx.store.group_unsealed_numbers(key)? {
        let queued = cx.store.group_queue_from(key, n)?.filter(|q| q.n == n);
        if queued.is_some_and(|q| is_held(&q.bytes)) {
            held.push(n);
        }
    }
    Ok(held)
}

impl Groups {
    /// Holds `share` for `peer` at the end of their queue (dropping their oldest held
    /// one if [`MAX_HELD_SHARES`] are held). Not flushed.
    pub(super) fn hold_share(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        share: &OlmShare,
    ) -> Result<(), ApiError> {
        let held = held_numbers(cx, peer)?;
        let over = held.len().saturating_add(1).saturating_sub(MAX_HELD_SHARES);
        for n in held.into_iter().take(over) {
            tracing::warn!(%peer, "too many key shares wait for a member's device: the oldest goes");
            cx.store.group_unqueue(peer.as_bytes(), n)?;
            cx.store.set_group_unsealed(peer.as_bytes(), n, None)?;
        }
        let n = cx.store.group_queue(peer.as_bytes(), HELD)?;
        self.keep_share(cx, peer, n, share)
    }

    /// Seals `peer`'s held key shares on an Olm session, if their device (and this
    /// node's) is known now. Not flushed. Returns whether any was.
    pub(super) fn release(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        now: u64,
    ) -> Result<bool, ApiError> {
        let mut released = false;
        for n in held_numbers(cx, peer)? {
            let share = self.kept_share(cx, peer, n)?;
            // All are sealed for the same device: when one cannot be, none can.
            let Some(bytes) = self.seal_share(cx, peer, &share, now) else { break };
            cx.store.group_requeue(peer.as_bytes(), n, &bytes)?;
            self.sealed_on_olm(*peer.as_bytes(), n);
            released = true;
        }
        if released {
            tracing::info!(%peer, "a member's device is known: the key shares held for it go");
        }
        Ok(released)
    }

    /// The people whose announcement became known since the last look: their held key
    /// shares are sealed, and their lanes start once that is flushed.
    pub(super) fn release_fresh(&mut self, cx: &mut Context, now: u64) -> Vec<Effect> {
        let fresh = std::mem::take(&mut self.shares.fresh);
        let mut start = Vec::new();
        for person in fresh {
            let Ok(peer) = AuthorId::from_bytes(person) else { continue };
            match self.release(cx, &peer, now) {
                Ok(true) => start.push(person),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, %peer, "cannot seal held key shares"),
            }
        }
        if start.is_empty() {
            return Vec::new();
        }
        self.after_flush(cx, Vec::new(), Vec::new(), start)
    }

    /// `peer`'s lane reached a held key share: sealed now if it can be (the lane goes on
    /// once that is flushed), else the lane backs off (the member's announcement starts
    /// it again when it comes).
    pub(super) fn reach_held(
        &mut self,
        cx: &mut Context,
        peer: &AuthorId,
        now: u64,
    ) -> Vec<Effect> {
        let key = *peer.as_bytes();
        match self.release(cx, peer, now) {
            Ok(true) => {
                self.lanes.finish(key, true, now);
                self.after_flush(cx, Vec::new(), Vec::new(), vec![key])
            }
            Ok(false) => self.stop_lane(key, now),
            Err(error) => {
                tracing::warn!(%error, %peer, "cannot seal held key shares");
                self.stop_lane(key, now)
            }
        }
    }
}
