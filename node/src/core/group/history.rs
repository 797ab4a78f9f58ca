//! The history of a group for a member added with it (`kith group add --history`): the
//! creator forwards every session key of the group it holds, exported from its first
//! known index (its own sessions included), then the ciphertexts it keeps, all in the
//! new member's queue behind the epoch that adds them (`docs/protocol.md` 20.2, 20.7).
//! Only the creator's node forwards exported keys, and a member takes an exported key
//! only from the creator.

use kith_protocol::{
    group::{
        megolm::{GroupMessage, Inbound, SessionTag},
        membership::Group,
        wire::{GroupRequest, OlmShare},
    },
    AuthorId,
};

use super::Groups;
use crate::{api::ApiError, core::Context, store::MAX_KEPT_CIPHERTEXTS};

impl Groups {
    /// Queues for `member` every session key of `group` this node holds, exported, and
    /// the ciphertexts it keeps, oldest first. Not flushed.
    pub(super) fn give_history(
        &mut self,
        cx: &Context,
        group: &Group,
        member: &AuthorId,
        now: u64,
    ) -> Result<(), ApiError> {
        let gid = group.id();
        let mut shares = Vec::new();
        let key = self.pickle_key(cx)?;
        for (tag, pickle) in cx.store.group_inbounds()? {
            match Inbound::from_pickle(&pickle, key, SessionTag::from_raw(tag)) {
                Ok(inbound) if inbound.group() == gid => shares.push(inbound.export()),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "a group session does not open"),
            }
        }
        for share in shares {
            self.queue_share(cx, member, OlmShare { circle: false, share }, now)?;
        }
        let internal = |e: kith_protocol::group::GroupError| ApiError::internal(e.to_string());
        for bytes in cx.store.group_ciphertexts(gid.as_bytes(), MAX_KEPT_CIPHERTEXTS)? {
            let message = GroupMessage::from_bytes(&bytes).map_err(internal)?;
            let request = GroupRequest::Message(message).to_bytes().map_err(internal)?;
            cx.store.group_queue(member.as_bytes(), &request)?;
        }
        Ok(())
    }
}
