//! Who may write to whom: the checks made before a message is prepared, and the follow
//! record sent along with one as proof.

use kith_protocol::{limits::MAX_DM_TEXT_BYTES, AuthorId, RecordKind};

use super::super::Context;
use crate::{
    api::ApiError,
    store::{Store, StoreError},
};

/// Whether `me` and `other` follow each other.
///
/// # Errors
/// The store's.
pub fn is_mutual(store: &Store, me: &AuthorId, other: &AuthorId) -> Result<bool, StoreError> {
    Ok(store.is_following(me, other)? && store.is_following(other, me)?)
}

/// The bytes of `me`'s latest follow record for `peer`, if any: sent along with a
/// message so the recipient knows we follow them even if it missed the gossip.
pub fn follow_proof(store: &Store, me: &AuthorId, peer: &AuthorId) -> Option<Vec<u8>> {
    let state = store.follow_state(me, peer).ok()??;
    let rec = store.author_log(me, state.seq - 1, 1).ok()?.into_iter().next()?;
    if !matches!(rec.record.kind, RecordKind::Follow { target } if target == *peer) {
        return None;
    }
    store.get_bytes(&rec.id).ok()?
}

/// Whether this node's person may send `peer` a message of `text` (with attachments
/// when `attaching`): not to themselves, not empty, not too long, not to someone they
/// blocked, only to a mutual connection. Checked before anything is prepared.
///
/// # Errors
/// The refusal, with its kind.
pub fn check_send(
    cx: &Context,
    peer: &AuthorId,
    text: &str,
    attaching: bool,
) -> Result<(), ApiError> {
    if *peer == cx.me {
        return Err(ApiError::refused("you cannot send a message to yourself"));
    }
    if text.trim().is_empty() && !attaching {
        return Err(ApiError::invalid("message text is empty"));
    }
    if text.len() > MAX_DM_TEXT_BYTES {
        return Err(ApiError::invalid(format!(
            "message is {} bytes; the limit is {MAX_DM_TEXT_BYTES}",
            text.len()
        )));
    }
    if cx.store.moderation(peer)?.blocked {
        return Err(ApiError::refused(format!("you blocked {peer}; unblock them first")));
    }
    if !is_mutual(&cx.store, &cx.me, peer)? {
        return Err(ApiError::not_mutual(format!(
            "not a mutual connection: you and {peer} must follow each other"
        )));
    }
    Ok(())
}
