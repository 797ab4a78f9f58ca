//! What this node's person does to a group: create, add, remove, leave (the creator's
//! changes are new signed epochs), and send.

use kith_protocol::{
    group::{
        membership::{Group, Leave, Membership},
        wire::Control,
        GroupId, MAX_GROUP_MEMBERS,
    },
    limits::MAX_DM_TEXT_BYTES,
    AuthorId,
};

use super::{load, save, Groups, Loaded};
use crate::{
    api::ApiError,
    core::{dm::is_mutual, Answer, AnswerId, Context, Effect},
};

/// A control request about groups.
#[derive(Debug, Clone)]
pub enum GroupOp {
    /// A new group of this node's person and `members` (their mutual connections).
    Create {
        /// Its name.
        name: String,
        /// The other members.
        members: Vec<AuthorId>,
    },
    /// The creator adds a mutual connection.
    Add {
        /// The group.
        group: GroupId,
        /// Who.
        member: AuthorId,
        /// Give them the earlier messages too.
        history: bool,
    },
    /// The creator removes a member.
    Remove {
        /// The group.
        group: GroupId,
        /// Who.
        member: AuthorId,
    },
    /// This node's person leaves (the creator deletes the group).
    Leave {
        /// The group.
        group: GroupId,
    },
    /// A message to every current member.
    Send {
        /// The group.
        group: GroupId,
        /// The text.
        text: String,
    },
    /// A new circle of this node's person's mutual connections.
    CircleCreate {
        /// Its name (unique among this person's circles).
        name: String,
        /// The members.
        members: Vec<AuthorId>,
    },
    /// Add a mutual connection to a circle.
    CircleAdd {
        /// The circle's name.
        name: String,
        /// Who.
        member: AuthorId,
    },
    /// Remove a member from a circle: they read nothing posted after.
    CircleRemove {
        /// The circle's name.
        name: String,
        /// Who.
        member: AuthorId,
    },
    /// A post only the circle's current members read (answered as a publish is, with
    /// the record).
    CirclePost {
        /// The circle's name.
        name: String,
        /// The text.
        text: String,
    },
}

/// What a group request is answered with.
#[derive(Debug, Clone)]
pub enum GroupAnswer {
    /// A group was made.
    Created(GroupId),
    /// A message was stored and queued for every member.
    Sent(kith_protocol::dm::MessageId),
    /// Done.
    Done,
}

impl Groups {
    /// Carries out `op`; answered once what it changed is flushed.
    pub(crate) fn handle_op(
        &mut self,
        cx: &mut Context,
        op: GroupOp,
        answer: AnswerId,
        now: u64,
    ) -> Vec<Effect> {
        let result = match op {
            GroupOp::Create { name, members } => self.create(cx, &name, &members, now),
            GroupOp::Add { group, member, history } => {
                self.change(cx, group, Some((member, history)), None, now)
            }
            GroupOp::Remove { group, member } => self.change(cx, group, None, Some(member), now),
            GroupOp::Leave { group } => self.leave(cx, group, now),
            GroupOp::Send { group, text } => self.send(cx, group, text, now),
            GroupOp::CircleCreate { name, members } => {
                self.circle_create(cx, &name, &members).map(|s| (GroupAnswer::Done, s))
            }
            GroupOp::CircleAdd { name, member } => {
                self.circle_add(cx, &name, &member, now).map(|s| (GroupAnswer::Done, s))
            }
            GroupOp::CircleRemove { name, member } => {
                self.circle_remove(cx, &name, &member).map(|s| (GroupAnswer::Done, s))
            }
            GroupOp::CirclePost { .. } => {
                Err(ApiError::internal("a circle post is published by the core, not here"))
            }
        };
        match result {
            Ok((done, start)) => {
                let ok = vec![Effect::Answer { answer, result: Ok(Answer::Group(done)) }];
                let failed = vec![Effect::Answer {
                    answer,
                    result: Err(ApiError::internal("cannot flush the store")),
                }];
                self.after_flush(cx, ok, failed, start)
            }
            Err(error) => vec![Effect::Answer { answer, result: Err(error) }],
        }
    }

    fn create(
        &mut self,
        cx: &Context,
        name: &str,
        members: &[AuthorId],
        now: u64,
    ) -> Result<(GroupAnswer, Vec<[u8; 32]>), ApiError> {
        for member in members {
            check_addable(cx, member)?;
        }
        if members.len() + 1 > MAX_GROUP_MEMBERS {
            return Err(ApiError::invalid(format!(
                "a group has at most {MAX_GROUP_MEMBERS} members"
            )));
        }
        let id = GroupId::generate().map_err(|e| ApiError::internal(format!("random: {e}")))?;
        let membership = Membership::new(id, 1, &cx.me, name, members, now)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let group = Group::new(sign(cx, &membership)?);
        save(cx, &group)?;
        let start = self.announce(cx, &group, &[])?;
        Ok((GroupAnswer::Created(id), start))
    }

    /// The creator's next epoch: `add` joins, `remove` goes. Every member (and the removed
    /// one) is told; this node starts a new session at its next message.
    fn change(
        &mut self,
        cx: &Context,
        id: GroupId,
        add: Option<(AuthorId, bool)>,
        remove: Option<AuthorId>,
        now: u64,
    ) -> Result<(GroupAnswer, Vec<[u8; 32]>), ApiError> {
        let Loaded { mut group, .. } = mine(cx, &id)?;
        if group.creator() != cx.me {
            return Err(ApiError::refused("only the group's creator changes who is in it"));
        }
        let mut others: Vec<AuthorId> = Self::others(cx, &group);
        if let Some((member, _)) = add {
            check_addable(cx, &member)?;
            if others.contains(&member) {
                return Err(ApiError::invalid(format!("{member} is in the group already")));
            }
            others.push(member);
        }
        if let Some(member) = remove {
            if member == cx.me {
                return Err(ApiError::invalid("the creator leaves by deleting the group"));
            }
            if !others.contains(&member) {
                return Err(ApiError::not_found(format!("{member} is not in the group")));
            }
            others.retain(|m| *m != member);
        }
        let mut next = Membership::new(id, group.epoch() + 1, &cx.me, group.name(), &others, now)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let history = add.filter(|(_, history)| *history).map(|(member, _)| member);
        next.history = history.is_some();
        group.apply(sign(cx, &next)?).map_err(|e| ApiError::internal(e.to_string()))?;
        save(cx, &group)?;
        cx.store.set_group_outbound(id.as_bytes(), None)?;
        let removed: Vec<AuthorId> = remove.into_iter().collect();
        let start = self.announce(cx, &group, &removed)?;
        if let Some(member) = history {
            // After the epoch that adds them, in their queue.
            self.give_history(cx, &group, &member, now)?;
        }
        Ok((GroupAnswer::Done, start))
    }

    /// Leaving: a member tells the creator (who makes the next epoch without them) and
    /// stops; the creator deletes the group for everyone.
    fn leave(
        &mut self,
        cx: &Context,
        id: GroupId,
        now: u64,
    ) -> Result<(GroupAnswer, Vec<[u8; 32]>), ApiError> {
        let Loaded { mut group, .. } = mine(cx, &id)?;
        let start = if group.creator() == cx.me {
            let told: Vec<AuthorId> = Self::others(cx, &group);
            let deletion = group.current().membership().deletion(now);
            group.apply(sign(cx, &deletion)?).map_err(|e| ApiError::internal(e.to_string()))?;
            save(cx, &group)?;
            self.announce(cx, &group, &told)?
        } else {
            let leave = Leave::sign(&cx.keys, id, group.epoch(), now)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            // What is sent to this node after now is not for it (admission.rs).
            cx.store.group_keep_leave(id.as_bytes(), cx.me.as_bytes(), group.epoch(), now)?;
            let creator = group.creator();
            let mut state =
                cx.store.group(id.as_bytes())?.ok_or_else(|| ApiError::internal("gone"))?;
            state.active = false;
            cx.store.set_group(id.as_bytes(), &state)?;
            self.queue_control(cx, &creator, &Control::Leave(leave))?;
            vec![*creator.as_bytes()]
        };
        cx.store.set_group_outbound(id.as_bytes(), None)?;
        Ok((GroupAnswer::Done, start))
    }

    /// Queues the group's current signed membership for every other member and for
    /// `also` (removed members), and returns whose queues to start.
    pub(super) fn announce(
        &mut self,
        cx: &Context,
        group: &Group,
        also: &[AuthorId],
    ) -> Result<Vec<[u8; 32]>, ApiError> {
        let control = Control::Membership(group.current().signed().clone());
        let mut start = Vec::new();
        for peer in Self::others(cx, group).iter().chain(also) {
            self.queue_control(cx, peer, &control)?;
            if group.is_member(peer) {
                // The creator passes on the members' device announcements (issue #19).
                let _ = self.relay_devices(cx, group, peer)?;
            }
            start.push(*peer.as_bytes());
        }
        Ok(start)
    }

    /// Seals `control` for `peer` and queues it.
    pub(super) fn queue_control(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        control: &Control,
    ) -> Result<(), ApiError> {
        let sealed = self
            .pairs
            .with(&cx.keys, peer, |keys| {
                control.seal(&cx.keys, keys).map_err(|e| {
                    tracing::error!(error = %e, "cannot seal a group control message");
                    kith_protocol::dm::DmError::WrongKeys
                })
            })
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let bytes = kith_protocol::group::wire::GroupRequest::Control(sealed)
            .to_bytes()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        cx.store.group_queue(peer.as_bytes(), &bytes)?;
        Ok(())
    }

    /// A message to the group: this node's session for the epoch (a new one, whose key
    /// is queued for every other member first, when there is none), the message stored
    /// here and queued for every other member.
    fn send(
        &mut self,
        cx: &Context,
        id: GroupId,
        text: String,
        now: u64,
    ) -> Result<(GroupAnswer, Vec<[u8; 32]>), ApiError> {
        check_text(&text, "message")?;
        let Loaded { group, .. } = mine(cx, &id)?;
        let message = self.encrypt_and_queue(cx, &group, text, now)?;
        let start = Self::others(cx, &group).iter().map(|m| *m.as_bytes()).collect();
        Ok((GroupAnswer::Sent(message), start))
    }
}

/// The group `id`, which this node's person is in.
fn mine(cx: &Context, id: &GroupId) -> Result<Loaded, ApiError> {
    match load(cx, id.as_bytes())? {
        Some(loaded) if loaded.state.active => Ok(loaded),
        _ => Err(ApiError::not_found(format!("you are not in group {id}"))),
    }
}

/// Signs a membership with this node's person's key and checks it as a member would.
fn sign(
    cx: &Context,
    membership: &Membership,
) -> Result<kith_protocol::group::membership::VerifiedMembership, ApiError> {
    membership
        .sign(&cx.keys)
        .and_then(|s| s.verify())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Whether `member` may be put in a group by this node's person: a mutual connection,
/// not themselves.
pub(super) fn check_addable(cx: &Context, member: &AuthorId) -> Result<(), ApiError> {
    if *member == cx.me {
        return Err(ApiError::invalid("you are in your groups already"));
    }
    if !is_mutual(&cx.store, &cx.me, member)? {
        return Err(ApiError::not_mutual(format!(
            "not a mutual connection: you and {member} must follow each other"
        )));
    }
    Ok(())
}

/// Refuses an empty `text` or one over the limit of an encrypted message (`what` names
/// it in the error).
pub(super) fn check_text(text: &str, what: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::invalid(format!("{what} text is empty")));
    }
    if text.len() > MAX_DM_TEXT_BYTES {
        return Err(ApiError::invalid(format!(
            "{what} is {} bytes; the limit is {MAX_DM_TEXT_BYTES}",
            text.len()
        )));
    }
    Ok(())
}
