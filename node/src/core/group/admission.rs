//! Admission of a group message by the epoch it was sent in (`docs/protocol.md` 20.7).
//!
//! A message's session was made for one epoch, and its share binds the sender to it.
//! The message is taken when its sender was a member in that epoch and, if that
//! membership has ended since (a later epoch of the creator leaves them out, or they
//! signed a leave notice), only when the message's own time is no later than the end
//! plus [`MAX_FUTURE_SKEW_MS`]: what a member wrote before it was removed (or left)
//! still reaches everyone, however late it arrives; a removed member cannot go on
//! writing with its old session. The same holds for this node's own person: a node
//! removed from a group still reads what was sent in its epochs before its removal,
//! and nothing later. An epoch after the latest one known here is not judged yet
//! (`Later`: the creator's epoch is on its way).

use kith_protocol::{
    group::membership::{Group, Membership, SignedMembership},
    limits::MAX_FUTURE_SKEW_MS,
    AuthorId,
};

use crate::{api::ApiError, core::Context};

/// Whether a message may be taken.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// Yes.
    Taken,
    /// Never: why.
    Refused(String),
    /// Not yet: its epoch is not known here.
    Later,
}

/// The memberships of a group from one epoch on, as this node knows them.
struct History<'a> {
    /// The epoch the message names.
    epoch: u64,
    /// Every membership known here from `epoch` on, oldest first (the current one last).
    kept: Vec<Membership>,
    group: &'a Group,
}

impl History<'_> {
    /// The membership of the message's epoch, if this node kept it.
    fn of_epoch(&self) -> Option<&Membership> {
        self.kept.first().filter(|m| m.epoch == self.epoch)
    }

    /// When `who`'s membership that the message's epoch counts ended, as far as this
    /// node knows: the first later epoch that leaves them out, or their leave notice,
    /// whichever came first. `None` while they are in.
    fn ended(&self, cx: &Context, who: &AuthorId) -> Result<Option<u64>, ApiError> {
        let removed = self
            .kept
            .iter()
            .filter(|m| m.epoch > self.epoch)
            .find(|m| m.members.binary_search(who).is_err())
            .map(|m| m.timestamp);
        let gid = self.group.id();
        let left = cx.store.group_left_since(gid.as_bytes(), who.as_bytes(), self.epoch)?;
        Ok(match (removed, left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Whether `who` wrote (or was written to) as a member of the message's epoch, at
    /// `timestamp`: `Err` says why not.
    fn check(
        &self,
        cx: &Context,
        who: &AuthorId,
        whose: &str,
        timestamp: u64,
    ) -> Result<Result<(), String>, ApiError> {
        match self.of_epoch() {
            Some(m) if m.members.binary_search(who).is_err() => {
                return Ok(Err(format!("{whose} not a member in epoch {}", self.epoch)));
            }
            Some(_) => {}
            None => {
                // An epoch not kept here (from before this node knew the group, as a
                // member given the history, or from before this rule): the sender must
                // be in the next epoch kept here, or have written before it began.
                let next = self.kept.iter().find(|m| m.epoch > self.epoch);
                let next = next.unwrap_or_else(|| self.group.current().membership());
                let late = timestamp > next.timestamp.saturating_add(MAX_FUTURE_SKEW_MS);
                if late && next.members.binary_search(who).is_err() {
                    return Ok(Err(format!("{whose} not a member in epoch {}", self.epoch)));
                }
            }
        }
        if let Some(end) = self.ended(cx, who)? {
            if timestamp > end.saturating_add(MAX_FUTURE_SKEW_MS) {
                return Ok(Err(format!(
                    "written at {timestamp}, after {whose} membership ended (at {end})"
                )));
            }
        }
        Ok(Ok(()))
    }
}

/// Whether a message of `group` sent by `sender` at `timestamp` (its own clock) with a
/// session of `epoch` may be taken by this node.
///
/// # Errors
/// The store's, or a kept membership that no longer verifies (damage).
pub(super) fn admit(
    cx: &Context,
    group: &Group,
    epoch: u64,
    sender: &AuthorId,
    timestamp: u64,
) -> Result<Admission, ApiError> {
    let current = group.epoch();
    if epoch > current {
        return Ok(Admission::Later);
    }
    let gid = group.id();
    let mut kept = Vec::new();
    if epoch < current {
        for (e, bytes) in cx.store.group_epochs_from(gid.as_bytes(), epoch)? {
            if e >= current {
                break;
            }
            let verified = SignedMembership::from_bytes(&bytes)
                .map_err(|e| ApiError::internal(format!("kept membership: {e}")))?;
            kept.push(verified.membership().clone());
        }
    }
    kept.push(group.current().membership().clone());
    let history = History { epoch, kept, group };
    if let Err(why) = history.check(cx, sender, "its sender was", timestamp)? {
        return Ok(Admission::Refused(why));
    }
    if let Err(why) = history.check(cx, &cx.me, "you were", timestamp)? {
        return Ok(Admission::Refused(why));
    }
    Ok(Admission::Taken)
}
