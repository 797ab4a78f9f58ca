//! Circles (posts for chosen friends, issue #19; `docs/protocol.md` 20.5): the author's
//! side and the member's side.
//!
//! A circle is a named audience among its author's mutual connections, kept by the
//! author only (`store::CircleState`); its id and members are never published. Posting
//! to it encrypts the post with the author's Megolm outbound session for the circle (as
//! for a group only the author sends to) and publishes the ciphertext as an ordinary
//! record of the author's log ([`kith_protocol::RecordKind::Private`]). The session's key
//! goes to each member in an Olm message on `/kith/group/1` ([`OlmShare`], `olm.rs`;
//! sealed with `/kith/dm/1` only while the member's device is unknown), through
//! the group outbox (queued per member, retried, sent when they connect). A member added
//! later gets the session as it is then (reads from then on); a removal starts a new
//! epoch, so the next post makes a new session whose key the removed member never gets.
//!
//! The author keeps an inbound copy of each of their own sessions, so their node reads
//! its own circle posts the way members' nodes do (`node::circle`).

use std::collections::BTreeSet;

use kith_protocol::{
    dm::{MessageId, Plain},
    group::{
        megolm::{Inbound, SessionShare, SessionTag},
        wire::OlmShare,
        GroupId, Outbound, MAX_GROUP_MEMBERS,
    },
    limits::MAX_NAME_BYTES,
    AuthorId, RecordKind, VerifiedRecord,
};

use super::{
    ops::{check_addable, check_text},
    Groups,
};
use crate::{
    api::ApiError,
    core::{Context, Effect},
    store::CircleState,
};

/// What a circle change or post did: whose group queues to start once flushed.
pub(crate) type Start = Vec<[u8; 32]>;

impl Groups {
    /// A new circle of this node's person's mutual connections.
    pub(crate) fn circle_create(
        &mut self,
        cx: &Context,
        name: &str,
        members: &[AuthorId],
    ) -> Result<Start, ApiError> {
        check_name(name)?;
        if cx.store.circle(name)?.is_some() {
            return Err(ApiError::invalid(format!("you have a circle called {name:?} already")));
        }
        for member in members {
            check_addable(cx, member)?;
        }
        let members: BTreeSet<[u8; 32]> = members.iter().map(|m| *m.as_bytes()).collect();
        if members.len() + 1 > MAX_GROUP_MEMBERS {
            return Err(ApiError::invalid(format!(
                "a circle has at most {} members",
                MAX_GROUP_MEMBERS - 1
            )));
        }
        let id = GroupId::generate().map_err(|e| ApiError::internal(format!("random: {e}")))?;
        let state =
            CircleState { id: *id.as_bytes(), epoch: 1, members: members.into_iter().collect() };
        cx.store.set_circle(name, &state)?;
        Ok(Vec::new())
    }

    /// Adds a mutual connection to a circle: they get the circle's current session (if
    /// there is one) from its current point, so they read from now on.
    pub(crate) fn circle_add(
        &mut self,
        cx: &Context,
        name: &str,
        member: &AuthorId,
        now: u64,
    ) -> Result<Start, ApiError> {
        let mut state = mine(cx, name)?;
        check_addable(cx, member)?;
        if state.members.contains(member.as_bytes()) {
            return Err(ApiError::invalid(format!("{member} is in the circle already")));
        }
        if state.members.len() + 1 >= MAX_GROUP_MEMBERS {
            return Err(ApiError::invalid(format!(
                "a circle has at most {} members",
                MAX_GROUP_MEMBERS - 1
            )));
        }
        state.members.push(*member.as_bytes());
        state.members.sort_unstable();
        cx.store.set_circle(name, &state)?;
        if let Some(out) = self.outbound(cx, &state.id, state.epoch, now)? {
            let share = OlmShare { circle: true, share: out.share(&cx.me) };
            self.queue_share(cx, member, share, now)?;
            return Ok(vec![*member.as_bytes()]);
        }
        Ok(Vec::new())
    }

    /// Removes a member: a new epoch, so the next post starts a session they never get.
    pub(crate) fn circle_remove(
        &mut self,
        cx: &Context,
        name: &str,
        member: &AuthorId,
    ) -> Result<Start, ApiError> {
        let mut state = mine(cx, name)?;
        if !state.members.contains(member.as_bytes()) {
            return Err(ApiError::not_found(format!("{member} is not in the circle")));
        }
        state.members.retain(|m| m != member.as_bytes());
        state.epoch += 1;
        cx.store.set_circle(name, &state)?;
        cx.store.set_group_outbound(&state.id, None)?;
        Ok(Vec::new())
    }

    /// A post to a circle: encrypted with the circle's session (made, with its key
    /// queued for every member and an inbound copy kept here, when there is none for the
    /// epoch or it must rotate). Returns the record kind to publish; not flushed.
    pub(crate) fn circle_post(
        &mut self,
        cx: &Context,
        name: &str,
        text: String,
        now: u64,
    ) -> Result<(RecordKind, Start), ApiError> {
        check_text(&text, "post")?;
        let state = mine(cx, name)?;
        let internal = |e: kith_protocol::group::GroupError| ApiError::internal(e.to_string());
        let mut start = Vec::new();
        let mut out = match self.outbound(cx, &state.id, state.epoch, now)? {
            Some(out) => out,
            None => {
                let out = Outbound::new(GroupId::from_bytes(state.id), state.epoch, now);
                let share = out.share(&cx.me);
                self.keep_own(cx, &share)?;
                for member in &state.members {
                    let Ok(peer) = AuthorId::from_bytes(*member) else { continue };
                    let olm = OlmShare { circle: true, share: share.clone() };
                    self.queue_share(cx, &peer, olm, now)?;
                    start.push(*member);
                }
                out
            }
        };
        let id = MessageId::generate().map_err(|e| ApiError::internal(format!("random: {e}")))?;
        let plain = Plain { id, timestamp: now, text, attachments: Vec::new() };
        let message = out.encrypt(&cx.me, &plain).map_err(internal)?;
        let pickle = out.pickle(self.pickle_key(cx)?).map_err(internal)?;
        cx.store.set_group_outbound(&state.id, Some(&pickle))?;
        Ok((RecordKind::Private(message), start))
    }

    /// Keeps an inbound copy of this node's own new session (so it reads its own circle
    /// posts; and so a group's creator can forward its sessions to a member added with
    /// the history). Not flushed.
    pub(super) fn keep_own(&mut self, cx: &Context, share: &SessionShare) -> Result<(), ApiError> {
        let internal = |e: kith_protocol::group::GroupError| ApiError::internal(e.to_string());
        let inbound = Inbound::from_share(share, &cx.me).map_err(internal)?;
        let pickle = inbound.pickle(self.pickle_key(cx)?).map_err(internal)?;
        cx.store.set_group_inbound(inbound.tag().as_bytes(), &pickle)?;
        Ok(())
    }

    /// A circle key share from `sender` (who sealed it): kept when it is the sender's
    /// own session and this node's person follows them. Returns whether it was new.
    ///
    /// # Errors
    /// A refusal reason (a share carried by someone else, from someone not followed, or
    /// a key that is not one).
    pub(crate) fn take_circle_share(
        &mut self,
        cx: &Context,
        sender: &AuthorId,
        share: &SessionShare,
    ) -> Result<bool, CircleRefusal> {
        if share.exported {
            return Err(CircleRefusal::Refused("circle keys are never forwarded".into()));
        }
        let inbound = Inbound::from_share(share, sender)
            .map_err(|e| CircleRefusal::Refused(e.to_string()))?;
        if *sender == cx.me
            || !cx.store.is_following(&cx.me, sender).map_err(|_| CircleRefusal::Later)?
        {
            return Err(CircleRefusal::Refused("a circle of someone you do not follow".into()));
        }
        let tag = *inbound.tag().as_bytes();
        if cx.store.group_inbound(&tag).map_err(|_| CircleRefusal::Later)?.is_some() {
            return Ok(false);
        }
        let key = self.pickle_key(cx).map_err(|_| CircleRefusal::Later)?;
        let pickle = inbound.pickle(key).map_err(|_| CircleRefusal::Later)?;
        cx.store.set_group_inbound(&tag, &pickle).map_err(|_| CircleRefusal::Later)?;
        // Posts that came before their key: shown again to live feeds, readable now,
        // once the key is flushed.
        self.opened.extend(opened_posts(cx, sender, inbound.tag()));
        Ok(true)
    }

    /// Starts the group queues of `start` once what was just written is flushed.
    pub(crate) fn start_after_flush(&mut self, cx: &mut Context, start: Start) -> Vec<Effect> {
        if start.is_empty() {
            return Vec::new();
        }
        self.after_flush(cx, Vec::new(), Vec::new(), start)
    }
}

/// Why a circle share was not taken.
pub(crate) enum CircleRefusal {
    /// For good.
    Refused(String),
    /// Not now (the store failed).
    Later,
}

/// How many of an author's latest records are looked through for the circle posts a
/// key that came after them opens (a session carries at most `ROTATE_AFTER_MESSAGES`
/// posts; older ones show when a page is loaded again).
const OPENED_SCAN: usize = 512;

/// The circle posts of `author` among its latest [`OPENED_SCAN`] records that session
/// `tag` (a key just taken) opens, as live posts.
fn opened_posts(cx: &Context, author: &AuthorId, tag: SessionTag) -> Vec<Effect> {
    let Ok(Some((latest, _))) = cx.store.latest(author) else { return Vec::new() };
    let after = latest.saturating_sub(OPENED_SCAN as u64);
    let Ok(records) = cx.store.author_log(author, after, OPENED_SCAN) else { return Vec::new() };
    records
        .into_iter()
        .filter(|r| matches!(&r.record.kind, RecordKind::Private(m) if m.session == tag))
        .filter_map(|r| {
            let bytes = cx.store.get_bytes(&r.id).ok().flatten()?;
            VerifiedRecord::from_bytes_with_id(&bytes, &r.id).ok()
        })
        .map(|record| Effect::LivePost(Box::new(record)))
        .collect()
}

/// The circle `name` of this node's person.
fn mine(cx: &Context, name: &str) -> Result<CircleState, ApiError> {
    cx.store
        .circle(name)?
        .ok_or_else(|| ApiError::not_found(format!("you have no circle {name:?}")))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::invalid("a circle name must have 1 to 64 bytes"));
    }
    Ok(())
}

/// The text of circle post `record`, when `store` (whose pickles `key` opens) holds the
/// inbound session of its key, the session is its author's, and it decrypts: `None` for
/// every other record. Decrypting is repeatable; the plaintext is never stored.
pub fn read_post(
    store: &crate::store::Store,
    key: &kith_protocol::olm::pickle::PickleKey,
    record: &kith_protocol::Record,
) -> Option<String> {
    let kith_protocol::RecordKind::Private(message) = &record.kind else { return None };
    let tag: SessionTag = message.session;
    let pickle = store.group_inbound(tag.as_bytes()).ok()??;
    let mut inbound = Inbound::from_pickle(&pickle, key, tag).ok()?;
    if inbound.sender() != record.author {
        return None;
    }
    let read = inbound.decrypt(message).ok()?;
    (read.sender == record.author).then_some(read.plain.text)
}
