//! Private groups (issue #19): membership as the creator signs it, each member's Megolm
//! session, and delivery to every member on `/kith/group/1` (`docs/protocol.md` 20.6).
//!
//! - The creator makes the group and every change to it ([`GroupOp`]): each is a new
//!   signed epoch, sent to every member (and to a removed one, who then stops).
//! - A member sends with its own Megolm outbound session ([`send`]); its key goes to every
//!   other member first, sealed for each. Any change of membership makes every member
//!   start a new session at its next message, so a removed member reads nothing sent
//!   after, and a new one reads from when it joined.
//! - Requests to members wait in a durable queue per member, in order, tried again with
//!   back-off and at once when the member connects ([`send`]); a member that connects
//!   is also asked for the newest ciphertexts of every group both are in ([`receive`]).
//! - What comes in is admitted by group membership, not by who follows whom: a message
//!   from whoever was a member in the epoch it was sent in, written before their
//!   membership ended ([`admission`]); a history question from any current member.
//!
//! Every answer that claims something is stored comes after a flush, and no key share
//! sealed on an Olm session leaves before the session's new state is flushed.

mod admission;
mod circle;
mod held;
mod history;
mod olm;
mod ops;
mod receive;
mod send;

use std::collections::BTreeMap;

use kith_protocol::{
    group::{
        membership::{Group, SignedMembership},
        Outbound,
    },
    olm::pickle::PickleKey,
    AuthorId,
};

pub use circle::read_post;
#[cfg(test)]
pub(crate) use held::MAX_HELD_SHARES;
pub(crate) use olm::needs_device;
pub use ops::{GroupAnswer, GroupOp};

use super::{dm::keys::PairKeyCache, outbox::Lanes, Context, Effect, FlushId};
use crate::{api::ApiError, store::GroupState};

/// What waits for a flush: effects to carry out once it is done, others if it failed,
/// member queues to start, and the queued requests sealed on Olm sessions whose state
/// it makes durable.
struct Held {
    ok: Vec<Effect>,
    failed: Vec<Effect>,
    start: Vec<[u8; 32]>,
    sealed: Vec<([u8; 32], u64)>,
}

/// The group concern's state (memory only; everything that matters is in the store).
#[derive(Default)]
pub(crate) struct Groups {
    lanes: Lanes,
    held: BTreeMap<FlushId, Held>,
    pairs: PairKeyCache,
    pickle_key: Option<PickleKey>,
    /// Members found unreachable in their lane's current pass, with the mailboxes the
    /// rest of their queue goes to in that pass.
    depositing: BTreeMap<[u8; 32], Vec<AuthorId>>,
    /// Queued requests (member, number) deposited already, with the mailboxes that took
    /// them: not deposited again with the same ones (memory only: after a restart, once
    /// more). They stay queued until the member answers directly.
    deposited: BTreeMap<([u8; 32], u64), Vec<AuthorId>>,
    /// When a `Later` answer last asked for a collect from this node's mailboxes.
    collected_at: u64,
    /// Live posts of circle posts that a key taken since the last flush opens (given
    /// once it is flushed, with whatever else waits for that flush).
    opened: Vec<Effect>,
    /// Key shares on Olm sessions (issue #19).
    shares: olm::Shares,
    /// Queued requests (member, number) sealed on an Olm session whose new state is
    /// not durable yet, with how many seals of each wait for their flush: none is sent
    /// or deposited, whatever starts its lane, until that flush is done (issue 17 item
    /// 4: a crash must not make a message key be used twice).
    unflushed: BTreeMap<([u8; 32], u64), u32>,
    /// Those sealed since the last flush asked for (the next one covers them).
    sealing: Vec<([u8; 32], u64)>,
}

/// A group as stored, opened.
pub(crate) struct Loaded {
    pub(crate) group: Group,
    pub(crate) state: GroupState,
}

/// The group `id` as this node keeps it, if it knows it.
///
/// # Errors
/// The store's, or a stored membership that no longer verifies (damage).
pub(crate) fn load(cx: &Context, id: &[u8; 16]) -> Result<Option<Loaded>, ApiError> {
    let Some(state) = cx.store.group(id)? else { return Ok(None) };
    let verified = SignedMembership::from_bytes(&state.membership)
        .map_err(|e| ApiError::internal(format!("stored membership: {e}")))?;
    Ok(Some(Loaded { group: Group::new(verified), state }))
}

/// Stores `group` as this node's current view (`active`: this node's person is in it),
/// and keeps its epoch in the group's membership history.
fn save(cx: &Context, group: &Group) -> Result<(), ApiError> {
    let membership =
        group.current().signed().to_bytes().map_err(|e| ApiError::internal(e.to_string()))?;
    let active = group.is_member(&cx.me) && !group.deleted();
    let id = group.id();
    cx.store.group_keep_epoch(id.as_bytes(), group.epoch(), &membership)?;
    cx.store.set_group(id.as_bytes(), &GroupState { membership, active })?;
    Ok(())
}

/// The 16-byte lane tag of queued request `n`.
fn lane_tag(n: u64) -> [u8; 16] {
    let mut tag = [0u8; 16];
    tag[8..].copy_from_slice(&n.to_be_bytes());
    tag
}

impl Groups {
    /// The key group session pickles are sealed with (derived once from the identity).
    fn pickle_key(&mut self, cx: &Context) -> Result<&PickleKey, ApiError> {
        if self.pickle_key.is_none() {
            let key = PickleKey::derive(&cx.keys).map_err(|e| ApiError::internal(e.to_string()))?;
            self.pickle_key = Some(key);
        }
        self.pickle_key.as_ref().ok_or_else(|| ApiError::internal("no pickle key"))
    }

    /// This node's outbound session for `group`, if it has one for `epoch` that need not
    /// be replaced yet.
    fn outbound(
        &mut self,
        cx: &Context,
        group: &[u8; 16],
        epoch: u64,
        now: u64,
    ) -> Result<Option<Outbound>, ApiError> {
        let Some(pickle) = cx.store.group_outbound(group)? else { return Ok(None) };
        let key = self.pickle_key(cx)?;
        let id = kith_protocol::group::GroupId::from_bytes(*group);
        match Outbound::from_pickle(&pickle, key, id) {
            Ok(out) if out.epoch() == epoch && !out.should_rotate(now) => Ok(Some(out)),
            Ok(_) => Ok(None),
            Err(error) => {
                tracing::warn!(%error, "a group session does not open: starting a new one");
                Ok(None)
            }
        }
    }

    /// Holds `ok` until a flush is done (`failed` instead if it fails), then starts the
    /// queues of `start`.
    fn after_flush(
        &mut self,
        cx: &mut Context,
        ok: Vec<Effect>,
        failed: Vec<Effect>,
        start: Vec<[u8; 32]>,
    ) -> Vec<Effect> {
        let flush = cx.flush_id();
        let mut ok = ok;
        ok.append(&mut self.opened);
        let sealed = std::mem::take(&mut self.sealing);
        self.held.insert(flush, Held { ok, failed, start, sealed });
        vec![Effect::Flush(flush)]
    }

    /// Queued request `n` for `peer` was just sealed on an Olm session (stored, not
    /// flushed): it is not sent until the next flush asked for is done.
    fn sealed_on_olm(&mut self, peer: [u8; 32], n: u64) {
        *self.unflushed.entry((peer, n)).or_default() += 1;
        self.sealing.push((peer, n));
    }

    /// When queued request `n` for `peer` waits for the flush of the session it was
    /// sealed on: what to do instead of sending it (ask for that flush if none was asked
    /// for yet; the lane starts again once it is done).
    fn waits_for_flush(&mut self, cx: &mut Context, peer: [u8; 32], n: u64) -> Option<Vec<Effect>> {
        if !self.unflushed.contains_key(&(peer, n)) {
            return None;
        }
        if self.sealing.contains(&(peer, n)) {
            return Some(self.after_flush(cx, Vec::new(), Vec::new(), vec![peer]));
        }
        Some(Vec::new())
    }

    /// A flush is done: what waited for it goes on.
    pub(crate) fn handle_flushed(
        &mut self,
        cx: &mut Context,
        flush: FlushId,
        result: &Result<(), crate::store::StoreError>,
        now: u64,
    ) -> Vec<Effect> {
        let Some(mut held) = self.held.remove(&flush) else { return Vec::new() };
        if let Err(error) = result {
            tracing::error!(%error, "cannot flush group state");
            // Not durable yet: the next flush covers them.
            self.sealing.append(&mut held.sealed);
            return held.failed;
        }
        let mut start = held.start;
        for sealed in held.sealed {
            let Some(count) = self.unflushed.get_mut(&sealed) else { continue };
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.unflushed.remove(&sealed);
            }
            if !start.contains(&sealed.0) {
                start.push(sealed.0);
            }
        }
        let mut effects = held.ok;
        for peer in start {
            effects.extend(self.start_lane(cx, peer, now));
        }
        effects
    }

    /// The people `group`'s requests go to: every current member but this node's person.
    fn others(cx: &Context, group: &Group) -> Vec<AuthorId> {
        group.members().filter(|m| **m != cx.me).copied().collect()
    }
}
