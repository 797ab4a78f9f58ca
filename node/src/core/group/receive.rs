//! What comes in on `/kith/group/1`: control messages (memberships, key shares, leave
//! notices), messages, history questions, and history answers. Admission is by the
//! creator-signed membership: a message from whoever was a member in the epoch it was
//! sent in, written before their membership ended (`admission.rs`); questions from
//! current members.

use kith_protocol::{
    group::{
        megolm::{GroupMessage, Inbound, SessionShare},
        membership::{Group, Leave, Membership, VerifiedMembership},
        wire::{self, Control, GroupReply, GroupRequest, Opened, MAX_HISTORY_MESSAGES},
        GroupError,
    },
    mailbox::{sealed, Held as HeldEnvelope, HeldId},
    AuthorId,
};
use libp2p::PeerId;

use super::{
    admission::{admit, Admission},
    load, save, Groups, Loaded,
};
use crate::{
    api::ApiError,
    core::{Context, Effect, ReplyId},
    store::GroupLine,
};

/// Least time between two collects a `Later` answer asks for, ms.
const COLLECT_EVERY_MS: u64 = 10_000;

/// Why something was not taken: for good, or not now.
enum NotTaken {
    Refused(String),
    Later,
    /// An Olm key share no session opens: sealed again by the sender (issue #19).
    NewSession(Option<kith_protocol::olm::prekey::Announcement>),
}

impl From<ApiError> for NotTaken {
    fn from(error: ApiError) -> Self {
        tracing::error!(%error, "group state");
        Self::Later
    }
}

impl From<crate::store::StoreError> for NotTaken {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!(%error, "group store");
        Self::Later
    }
}

impl From<GroupError> for NotTaken {
    fn from(error: GroupError) -> Self {
        Self::Refused(error.to_string())
    }
}

/// A key share came sealed with `/kith/dm/1` (not forward secret): taken as before
/// issue #19, from a node that predates key shares on Olm or a queue it wrote then.
/// Nodes now never send one (`held.rs`); the tests look for this line.
fn old_share(sender: &AuthorId) {
    tracing::info!(peer = %sender, "took a key share sealed with /kith/dm/1");
}

/// The effect that answers group request `reply` with `answer`.
fn respond(reply: ReplyId, answer: &GroupReply) -> Effect {
    crate::core::respond_encoded(reply, answer.to_bytes())
}

/// What taking something changed: whether to flush before answering, and whose queues
/// to start after.
#[derive(Default)]
struct Taken {
    changed: bool,
    start: Vec<[u8; 32]>,
    /// A notification of a new message from another member, given once flushed.
    note: Option<crate::store::Notification>,
}

impl Groups {
    /// An inbound `/kith/group/1` request from `from`; the key shares held for whoever
    /// it made a device known of go (`held.rs`).
    pub(crate) fn handle_request(
        &mut self,
        cx: &mut Context,
        from: PeerId,
        bytes: &[u8],
        reply: ReplyId,
        now: u64,
    ) -> Vec<Effect> {
        let Ok(sender) = AuthorId::from_peer_id(&from) else {
            return vec![respond(reply, &GroupReply::Refused("no ed25519 identity".into()))];
        };
        let request = match GroupRequest::from_bytes(bytes) {
            Ok(request) => request,
            Err(error) => return vec![respond(reply, &GroupReply::Refused(error.to_string()))],
        };
        let taken = match request {
            GroupRequest::History { group } => {
                return vec![respond(reply, &self.history(cx, &sender, group.as_bytes()))];
            }
            request => self.take(cx, &sender, request, now),
        };
        let released = self.release_fresh(cx, now);
        let mut effects = match taken {
            Ok(Taken { changed: false, start, .. }) => {
                let mut effects = vec![respond(reply, &GroupReply::Accepted)];
                for peer in start {
                    effects.extend(self.start_lane(cx, peer, now));
                }
                effects
            }
            Ok(Taken { changed: true, start, note }) => {
                let mut ok = vec![respond(reply, &GroupReply::Accepted)];
                ok.extend(note.map(Effect::Notified));
                let failed = vec![respond(reply, &GroupReply::Later)];
                self.after_flush(cx, ok, failed, start)
            }
            Err(NotTaken::Later) => {
                let mut effects = vec![respond(reply, &GroupReply::Later)];
                // What this waits for may be with this node's mailboxes (deposited while
                // it was away): collect now, at most once per COLLECT_EVERY_MS.
                if now >= self.collected_at.saturating_add(COLLECT_EVERY_MS) {
                    self.collected_at = now;
                    effects.push(Effect::CollectMailboxes);
                }
                effects
            }
            Err(NotTaken::NewSession(devices)) => {
                vec![respond(reply, &GroupReply::NewSession(devices))]
            }
            Err(NotTaken::Refused(reason)) => {
                tracing::info!(peer = %sender, %reason, "group request refused");
                let mut reason = reason;
                reason.truncate(reason.char_indices().nth(190).map_or(reason.len(), |(i, _)| i));
                vec![respond(reply, &GroupReply::Refused(reason))]
            }
        };
        effects.extend(released);
        effects
    }

    /// A control message or a message from `sender` (the connected peer, or the sealed
    /// sender of a deposit).
    fn take(
        &mut self,
        cx: &Context,
        sender: &AuthorId,
        request: GroupRequest,
        now: u64,
    ) -> Result<Taken, NotTaken> {
        match request {
            GroupRequest::Control(sealed) => self.take_control(cx, sender, &sealed, now),
            GroupRequest::Message(message) => self.take_message(cx, Some(sender), &message, now),
            GroupRequest::History { .. } => Err(NotTaken::Refused("not a deposit".into())),
            GroupRequest::Olm { envelope, devices } => {
                self.take_olm(cx, sender, &envelope, &devices, now)
            }
        }
    }

    /// Envelopes collected from `mailbox`, oldest first: the group requests deposited
    /// among them are taken here, in order, and acknowledged to the mailbox once what
    /// they changed is flushed (one that cannot be taken yet is tried again after the
    /// others, which may carry the epoch or key it waits for, and else stays with the
    /// mailbox for the next collect). The others (direct messages, or envelopes that do
    /// not open) are returned as opened here, so that nothing is opened twice.
    pub(crate) fn take_collected(
        &mut self,
        cx: &mut Context,
        mailbox: PeerId,
        items: Vec<HeldEnvelope>,
        now: u64,
    ) -> (Vec<Effect>, Vec<(HeldId, Option<sealed::Opened>)>) {
        let (mut rest, mut later, mut done) = (Vec::new(), Vec::new(), Vec::new());
        for item in items {
            let Ok(opened) = sealed::open(&cx.keys, &item.envelope) else {
                rest.push((item.id(), None));
                continue;
            };
            let Some(request) = wire::deposited(&opened.request) else {
                rest.push((item.id(), Some(opened)));
                continue;
            };
            match GroupRequest::from_bytes(request) {
                Ok(request) => later.push((item.id(), opened.sender, request)),
                Err(error) => {
                    // Garbage is acknowledged: it would never be taken.
                    let sender = opened.sender;
                    tracing::info!(%sender, %error, "a deposited group request is malformed");
                    done.push(item.id());
                }
            }
        }
        let (mut changed, mut start, mut notes) = (false, Vec::new(), Vec::new());
        // Two passes: what waited for something carried later in the batch goes again.
        for _ in 0..2 {
            let mut waiting = Vec::new();
            for (id, sender, request) in later {
                match self.take(cx, &sender, request.clone(), now) {
                    Ok(taken) => {
                        changed |= taken.changed;
                        start.extend(taken.start);
                        notes.extend(taken.note.map(Effect::Notified));
                        done.push(id);
                    }
                    Err(NotTaken::Refused(reason)) => {
                        tracing::info!(peer = %sender, %reason, "deposited group request refused");
                        done.push(id);
                    }
                    Err(NotTaken::Later) => waiting.push((id, sender, request)),
                    Err(NotTaken::NewSession(_)) => {
                        // Not opened here: the sender's lane keeps it and sends it
                        // directly, where it is sealed again.
                        tracing::info!(peer = %sender, "a deposited key share does not open");
                        done.push(id);
                    }
                }
            }
            later = waiting;
        }
        let released = self.release_fresh(cx, now);
        let Ok(mailbox) = AuthorId::from_peer_id(&mailbox) else { return (released, rest) };
        if done.is_empty() {
            return (released, rest);
        }
        let mut ok = vec![Effect::MailboxAck { mailbox, ids: done }];
        ok.extend(notes);
        let mut effects = released;
        if !changed {
            // Nothing new to make durable (repeats, refusals).
            effects.extend(ok);
            for peer in start {
                effects.extend(self.start_lane(cx, peer, now));
            }
            return (effects, rest);
        }
        effects.extend(self.after_flush(cx, ok, Vec::new(), start));
        (effects, rest)
    }

    /// A sealed control message from `sender`.
    fn take_control(
        &mut self,
        cx: &Context,
        sender: &AuthorId,
        sealed: &kith_protocol::dm::Sealed,
        now: u64,
    ) -> Result<Taken, NotTaken> {
        if sealed.sender != *sender {
            return Err(NotTaken::Refused("sealed by someone else than the sender".into()));
        }
        let opened = self
            .pairs
            .with(&cx.keys, sender, |keys| {
                Control::open(sealed, &cx.keys, keys)
                    .map_err(|_| kith_protocol::dm::DmError::Decrypt)
            })
            .map_err(|e| NotTaken::Refused(e.to_string()))?;
        match opened.1 {
            Opened::Membership(membership) => self.take_membership(cx, membership),
            Opened::Share(share) => {
                old_share(sender);
                self.take_share(cx, sender, &share)
            }
            Opened::Leave(leave) => self.take_leave(cx, sender, &leave, now),
            Opened::CircleShare(share) => {
                old_share(sender);
                self.take_any_share(cx, sender, true, &share)
            }
            Opened::Devices(record) => match self.take_devices(cx, sender, &record) {
                Ok(new) => Ok(Taken { changed: new, start: Vec::new(), note: None }),
                Err(why) => Err(NotTaken::Refused(why)),
            },
        }
    }

    /// A group's or a circle's key share from `sender`.
    fn take_any_share(
        &mut self,
        cx: &Context,
        sender: &AuthorId,
        circle: bool,
        share: &SessionShare,
    ) -> Result<Taken, NotTaken> {
        if !circle {
            return self.take_share(cx, sender, share);
        }
        match self.take_circle_share(cx, sender, share) {
            Ok(new) => Ok(Taken { changed: new, start: Vec::new(), note: None }),
            Err(super::circle::CircleRefusal::Refused(why)) => Err(NotTaken::Refused(why)),
            Err(super::circle::CircleRefusal::Later) => Err(NotTaken::Later),
        }
    }

    /// A key share on an Olm session (issue #19, `olm.rs`): opened, taken like one
    /// sealed with `/kith/dm/1`, and the session's new state kept unless it must wait.
    fn take_olm(
        &mut self,
        cx: &Context,
        sender: &AuthorId,
        envelope: &kith_protocol::olm::envelope::Envelope,
        devices: &kith_protocol::olm::prekey::Announcement,
        now: u64,
    ) -> Result<Taken, NotTaken> {
        use super::olm::NotOpened;
        let opened = match self.open_share(cx, sender, envelope, devices, now) {
            Ok(opened) => opened,
            Err(NotOpened::Known) => return Ok(Taken::default()),
            Err(NotOpened::Later) => return Err(NotTaken::Later),
            Err(NotOpened::Refused(why)) => return Err(NotTaken::Refused(why)),
            Err(NotOpened::NewSession(mine)) => return Err(NotTaken::NewSession(mine)),
        };
        let share = opened.share.share.clone();
        let taken = self.take_any_share(cx, sender, opened.share.circle, &share);
        if matches!(taken, Err(NotTaken::Later)) {
            // Opened again when it comes again.
            return taken;
        }
        self.commit_share(cx, &opened, now)?;
        taken.map(|t| Taken { changed: true, ..t })
    }

    /// The creator's epoch of a group: a new group this node's person is put in (by
    /// someone they follow), or the next epoch of a known one.
    fn take_membership(
        &mut self,
        cx: &Context,
        membership: VerifiedMembership,
    ) -> Result<Taken, NotTaken> {
        let m: &Membership = membership.membership();
        let id = *m.group.as_bytes();
        let Some(Loaded { mut group, .. }) = load(cx, &id)? else {
            if m.members.binary_search(&cx.me).is_err() {
                return Err(NotTaken::Refused("you are not in this group".into()));
            }
            if !cx.store.is_following(&cx.me, &m.creator)? {
                return Err(NotTaken::Refused("a group from someone you do not follow".into()));
            }
            save(cx, &Group::new(membership))?;
            // Fellow members seal their key shares for this node's device (issue #19).
            self.want_device();
            return Ok(Taken { changed: true, start: Vec::new(), note: None });
        };
        match group.apply(membership) {
            Ok(_) => {
                save(cx, &group)?;
                // Any change: this node's next message starts a new session, whose key
                // goes to the members of the new epoch only.
                cx.store.set_group_outbound(&id, None)?;
                Ok(Taken { changed: true, start: Vec::new(), note: None })
            }
            Err(GroupError::Stale { epoch, current }) if epoch == current => Ok(Taken::default()),
            Err(error) => Err(error.into()),
        }
    }

    /// A member's key share: kept when the sender (who sealed it) is a current member
    /// (and, for what it opens to be refused, an earlier epoch's: see below).
    fn take_share(
        &mut self,
        cx: &Context,
        sender: &AuthorId,
        share: &SessionShare,
    ) -> Result<Taken, NotTaken> {
        let Some(Loaded { group, state }) = load(cx, share.group.as_bytes())? else {
            return Err(NotTaken::Later);
        };
        if !state.active {
            if share.epoch > group.epoch() {
                // Out of the group here, but the share is for a later epoch: perhaps
                // added back in it (the creator's epoch is on its way).
                return Err(NotTaken::Later);
            }
            // Sent while this node was a member of an epoch it has since left (removed,
            // or gone): the key is kept, so that the session's messages are known and
            // refused (they are not stored: see `take_message`). Refusing the key would
            // leave them answered `Later`, and the sender's lane retrying, for ever.
        } else if !group.is_member(sender) && share.epoch >= group.epoch() {
            // Perhaps added in an epoch this node has not seen yet. (A former member's
            // key of an earlier epoch is kept, so that its messages are known and
            // refused as from someone not in the group, `take_message`, rather than
            // answered `Later` for ever.)
            return Err(NotTaken::Later);
        }
        // An exported key (the history, for a member added with it) only from the creator.
        let inbound = if share.exported {
            Inbound::from_forwarded(share, sender, &group.creator())?
        } else {
            Inbound::from_share(share, sender)?
        };
        let tag = *inbound.tag().as_bytes();
        if cx.store.group_inbound(&tag)?.is_some() {
            return Ok(Taken::default());
        }
        let pickle = inbound.pickle(self.pickle_key(cx)?)?;
        cx.store.set_group_inbound(&tag, &pickle)?;
        Ok(Taken { changed: true, start: Vec::new(), note: None })
    }

    /// A member left: the creator makes the next epoch without them.
    fn take_leave(
        &mut self,
        cx: &Context,
        sender: &AuthorId,
        leave: &Leave,
        now: u64,
    ) -> Result<Taken, NotTaken> {
        if leave.member != *sender {
            return Err(NotTaken::Refused("a leave notice for someone else".into()));
        }
        let Some(Loaded { mut group, .. }) = load(cx, leave.group.as_bytes())? else {
            return Err(NotTaken::Refused("an unknown group".into()));
        };
        if group.creator() != cx.me {
            return Ok(Taken::default());
        }
        if !group.leave(leave)? {
            return Ok(Taken::default());
        }
        // Their messages dated after it are refused (the next epoch says so too).
        let (gid, member) = (leave.group.as_bytes(), leave.member.as_bytes());
        cx.store.group_keep_leave(gid, member, leave.epoch, leave.timestamp)?;
        let others: Vec<AuthorId> = Self::others(cx, &group);
        let next =
            Membership::new(group.id(), group.epoch() + 1, &cx.me, group.name(), &others, now)?;
        let signed = next.sign(&cx.keys)?.verify()?;
        group.apply(signed)?;
        save(cx, &group)?;
        cx.store.set_group_outbound(leave.group.as_bytes(), None)?;
        let start = self.announce(cx, &group, &[])?;
        Ok(Taken { changed: true, start, note: None })
    }

    /// A group message, from `via` (who brought it: a current member, or its sender;
    /// `None` when it came in a history answer from a member already admitted), taken
    /// by the epoch it was sent in (`admission.rs`). Stored once.
    fn take_message(
        &mut self,
        cx: &Context,
        via: Option<&AuthorId>,
        message: &GroupMessage,
        now: u64,
    ) -> Result<Taken, NotTaken> {
        let digest = wire::digest(message)?;
        if cx.store.group_held(&digest)? {
            return Ok(Taken::default());
        }
        let tag = *message.session.as_bytes();
        let Some(pickle) = cx.store.group_inbound(&tag)? else {
            // Its key share has not come yet.
            return Err(NotTaken::Later);
        };
        let key = self.pickle_key(cx)?;
        let mut inbound = Inbound::from_pickle(&pickle, key, message.session)?;
        let Some(Loaded { group, .. }) = load(cx, inbound.group().as_bytes())? else {
            return Err(NotTaken::Refused("an unknown group".into()));
        };
        // Brought by a current member, or by its sender (who may have been removed
        // since: judged by the epoch it was sent in, below).
        if via.is_some_and(|v| !group.is_member(v) && *v != inbound.sender()) {
            return Err(NotTaken::Refused("not a member of this group".into()));
        }
        let received = inbound.decrypt(message)?;
        let timestamp = received.plain.timestamp;
        match admit(cx, &group, received.epoch, &received.sender, timestamp)? {
            Admission::Taken => {}
            Admission::Refused(why) => return Err(NotTaken::Refused(why)),
            Admission::Later => return Err(NotTaken::Later),
        }
        let gid = *received.group.as_bytes();
        let bytes = message.to_bytes()?;
        cx.store.group_hold(&gid, &digest, &bytes)?;
        let line = GroupLine {
            id: *received.plain.id.as_bytes(),
            from: *received.sender.as_bytes(),
            text: received.plain.text,
            timestamp: received.plain.timestamp,
        };
        let new = cx.store.group_add_line(&gid, &line)?;
        let sender = received.sender;
        let note = (new && sender != cx.me && !cx.store.is_hidden(&sender)).then(|| {
            let id = received.plain.id.to_string();
            crate::core::notify::notify(&cx.store, &cx.me, "group", sender.to_string(), id, now)
        });
        Ok(Taken { changed: true, start: Vec::new(), note: note.flatten() })
    }

    /// The answer to a history question from `asker`: the newest ciphertexts of the
    /// group, if both are in it.
    fn history(&mut self, cx: &Context, asker: &AuthorId, group: &[u8; 16]) -> GroupReply {
        let loaded = match load(cx, group) {
            Ok(Some(loaded)) => loaded,
            _ => return GroupReply::Refused("an unknown group".into()),
        };
        if !loaded.state.active || !loaded.group.is_member(asker) {
            return GroupReply::Refused("not a member of this group".into());
        }
        let held = cx.store.group_ciphertexts(group, MAX_HISTORY_MESSAGES).unwrap_or_default();
        let messages =
            held.iter().filter_map(|b| GroupMessage::from_bytes(b).ok()).collect::<Vec<_>>();
        GroupReply::History(messages)
    }

    /// The answer to this node's history question to `peer` about `group`: every
    /// message this node can read and did not have is stored (one flush).
    pub(crate) fn handle_history(
        &mut self,
        cx: &mut Context,
        peer: &AuthorId,
        group: &[u8; 16],
        result: Result<Vec<u8>, String>,
        now: u64,
    ) -> Vec<Effect> {
        let Ok(Ok(GroupReply::History(messages))) =
            result.map(|bytes| GroupReply::from_bytes(&bytes))
        else {
            return Vec::new();
        };
        let member =
            matches!(load(cx, group), Ok(Some(l)) if l.state.active && l.group.is_member(peer));
        if !member {
            return Vec::new();
        }
        let (mut changed, mut notes) = (false, Vec::new());
        for message in &messages {
            if let Ok(taken) = self.take_message(cx, None, message, now) {
                changed |= taken.changed;
                notes.extend(taken.note.map(Effect::Notified));
            }
        }
        if changed {
            self.after_flush(cx, notes, Vec::new(), Vec::new())
        } else {
            Vec::new()
        }
    }
}
