//! Sending to a group: encrypting with this node's session, and the durable queue of
//! requests to each member (one lane per member, in order, with back-off).

use kith_protocol::{
    dm::{MessageId, Plain},
    group::{
        membership::Group,
        wire::{self, GroupReply, GroupRequest, OlmShare},
        Outbound,
    },
    mailbox::sealed,
    AuthorId,
};

use super::{held, lane_tag, load, Groups};
use crate::{
    api::ApiError,
    core::{Context, Effect, Timer},
    store::GroupLine,
};

impl Groups {
    /// Encrypts `text` to `group` with this node's session (made, and its key queued
    /// for every other member, when there is none for the epoch), stores it as read
    /// here with its ciphertext, and queues it for every other member. Not flushed.
    pub(super) fn encrypt_and_queue(
        &mut self,
        cx: &Context,
        group: &Group,
        text: String,
        now: u64,
    ) -> Result<MessageId, ApiError> {
        let gid = group.id();
        let others = Self::others(cx, group);
        let mut out = match self.outbound(cx, gid.as_bytes(), group.epoch(), now)? {
            Some(out) => out,
            None => {
                let out = Outbound::new(gid, group.epoch(), now);
                let share = out.share(&cx.me);
                self.keep_own(cx, &share)?;
                for peer in &others {
                    let share = OlmShare { circle: false, share: share.clone() };
                    self.queue_share(cx, peer, share, now)?;
                }
                out
            }
        };
        let id = MessageId::generate().map_err(|e| ApiError::internal(format!("random: {e}")))?;
        let plain = Plain { id, timestamp: now, text, attachments: Vec::new() };
        let internal = |e: kith_protocol::group::GroupError| ApiError::internal(e.to_string());
        let message = out.encrypt(&cx.me, &plain).map_err(internal)?;
        let pickle = out.pickle(self.pickle_key(cx)?).map_err(internal)?;
        cx.store.set_group_outbound(gid.as_bytes(), Some(&pickle))?;
        let bytes = message.to_bytes().map_err(internal)?;
        let digest = wire::digest(&message).map_err(internal)?;
        cx.store.group_hold(gid.as_bytes(), &digest, &bytes)?;
        let line = GroupLine {
            id: *id.as_bytes(),
            from: *cx.me.as_bytes(),
            text: plain.text,
            timestamp: now,
        };
        cx.store.group_add_line(gid.as_bytes(), &line)?;
        let request = GroupRequest::Message(message).to_bytes().map_err(internal)?;
        for peer in &others {
            cx.store.group_queue(peer.as_bytes(), &request)?;
        }
        Ok(id)
    }

    /// Starts `peer`'s lane at its oldest queued request, unless it is busy.
    pub(super) fn start_lane(&mut self, cx: &mut Context, peer: [u8; 32], now: u64) -> Vec<Effect> {
        if self.lanes.busy(&peer) {
            return Vec::new();
        }
        self.next_in_lane(cx, peer, now)
    }

    /// `peer`'s lane goes on directly with its oldest queued request (or finishes).
    fn next_in_lane(&mut self, cx: &mut Context, peer: [u8; 32], now: u64) -> Vec<Effect> {
        let next = match cx.store.group_queue_next(&peer) {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(%error, "cannot read the group outbox");
                return self.stop_lane(peer, now);
            }
        };
        let Some(queued) = next else {
            self.depositing.remove(&peer);
            self.lanes.finish(peer, true, now);
            return Vec::new();
        };
        let Ok(to) = AuthorId::from_bytes(peer) else {
            let _ = cx.store.group_unqueue(&peer, queued.n);
            return Vec::new();
        };
        if held::is_held(&queued.bytes) {
            // A key share waiting for the member's device (`held.rs`).
            return self.reach_held(cx, &to, now);
        }
        if let Some(effects) = self.waits_for_flush(cx, peer, queued.n) {
            // Sealed on an Olm session not flushed yet: the lane starts again once it is.
            if self.lanes.busy(&peer) {
                self.lanes.finish(peer, true, now);
            }
            return effects;
        }
        self.lanes.claim(peer, lane_tag(queued.n));
        vec![Effect::GroupDeliver { peer: to, n: queued.n, bytes: queued.bytes }]
    }

    /// `peer` was not reached in this pass of its lane: its queued requests from number
    /// `from` on that its mailboxes (as listed now) do not hold yet are deposited with
    /// them, one after the other; they stay queued, tried directly again at the next
    /// pass, until `peer` answers. The pass ends (the lane backs off) after the last
    /// one, or when `peer` lists no mailbox.
    fn deposit_from(
        &mut self,
        cx: &mut Context,
        peer: &AuthorId,
        from: u64,
        now: u64,
    ) -> Vec<Effect> {
        let key = *peer.as_bytes();
        let mailboxes = match self.depositing.get(&key) {
            Some(mailboxes) => mailboxes.clone(),
            None => {
                let listed = match cx.store.mailboxes_of(peer) {
                    Ok(listed) => listed.into_iter().filter(|m| *m != cx.me && m != peer),
                    Err(error) => {
                        tracing::error!(%error, "cannot read a member's mailboxes");
                        return self.stop_lane(key, now);
                    }
                };
                let mut mailboxes: Vec<AuthorId> = listed.collect();
                mailboxes.sort_unstable();
                mailboxes.dedup();
                mailboxes
            }
        };
        if mailboxes.is_empty() {
            return self.stop_lane(key, now);
        }
        let mut from = from;
        loop {
            let queued = match cx.store.group_queue_from(&key, from) {
                Ok(Some(queued)) => queued,
                Ok(None) => return self.stop_lane(key, now),
                Err(error) => {
                    tracing::error!(%error, "cannot read the group outbox");
                    return self.stop_lane(key, now);
                }
            };
            from = queued.n.saturating_add(1);
            if held::is_held(&queued.bytes) {
                // What follows needs this key share, which waits for the member's device.
                return self.stop_lane(key, now);
            }
            if let Some(mut effects) = self.waits_for_flush(cx, key, queued.n) {
                // Sealed on an Olm session not flushed yet: this pass ends there.
                effects.extend(self.stop_lane(key, now));
                return effects;
            }
            if self.deposited.get(&(key, queued.n)) == Some(&mailboxes) {
                continue;
            }
            let payload = wire::deposit_payload(&queued.bytes);
            match sealed::seal(peer, &cx.me, &payload) {
                Ok(envelope) => {
                    self.lanes.claim(key, lane_tag(queued.n));
                    self.depositing.insert(key, mailboxes.clone());
                    let n = queued.n;
                    return vec![Effect::GroupDeposit { peer: *peer, n, envelope, mailboxes }];
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot seal a group request for a mailbox");
                    return self.stop_lane(key, now);
                }
            }
        }
    }

    /// How depositing queued request `n` for `peer` went: taken by a mailbox, it stays
    /// queued (tried directly at the next pass: the member may never collect from that
    /// mailbox) but is not deposited again with the same mailboxes, and the pass goes
    /// on with the next request; refused by all, the lane backs off.
    pub(crate) fn handle_deposited(
        &mut self,
        cx: &mut Context,
        peer: &AuthorId,
        n: u64,
        accepted: usize,
        now: u64,
    ) -> Vec<Effect> {
        let key = *peer.as_bytes();
        if self.lanes.current(&key) != Some(lane_tag(n)) {
            return Vec::new();
        }
        let Some(mailboxes) = self.depositing.get(&key).filter(|_| accepted > 0) else {
            return self.stop_lane(key, now);
        };
        self.deposited.insert((key, n), mailboxes.clone());
        self.deposit_from(cx, peer, n.saturating_add(1), now)
    }

    pub(super) fn stop_lane(&mut self, peer: [u8; 32], now: u64) -> Vec<Effect> {
        self.depositing.remove(&peer);
        match self.lanes.finish(peer, false, now) {
            Some(at) => vec![Effect::Schedule { at, timer: Timer::GroupOutbox }],
            None => Vec::new(),
        }
    }

    /// How delivering queued request `n` to `peer` went.
    pub(crate) fn handle_delivered(
        &mut self,
        cx: &mut Context,
        peer: &AuthorId,
        n: u64,
        result: Result<Vec<u8>, String>,
        now: u64,
    ) -> Vec<Effect> {
        let key = *peer.as_bytes();
        if self.lanes.current(&key) != Some(lane_tag(n)) {
            return Vec::new();
        }
        let reply =
            result.and_then(|bytes| GroupReply::from_bytes(&bytes).map_err(|e| e.to_string()));
        match reply {
            Ok(GroupReply::Accepted) => {}
            Ok(GroupReply::Refused(reason)) => {
                tracing::info!(%peer, reason = %reason.chars().take(200).collect::<String>(), "a member refused a group request");
            }
            Ok(GroupReply::Later | GroupReply::History(_)) => return self.stop_lane(key, now),
            Ok(GroupReply::NewSession(devices)) => {
                // Sealed again; and the other shares held for them go if the answer
                // carried their first known announcement.
                let mut effects = self.renew(cx, peer, n, devices, now);
                effects.extend(self.release_fresh(cx, now));
                return effects;
            }
            Err(error) => {
                // Not reached: what is queued for it goes to its mailboxes too, if any.
                tracing::debug!(%peer, %error, "a member was not reached");
                return self.deposit_from(cx, peer, n, now);
            }
        }
        // Answered (whichever path brought it first): done with.
        self.deposited.remove(&(key, n));
        self.share_done(cx, &key, n);
        if let Err(error) = cx.store.group_unqueue(&key, n) {
            tracing::error!(%error, "cannot update the group outbox");
            return self.stop_lane(key, now);
        }
        self.next_in_lane(cx, key, now)
    }

    /// A look at the group outbox (a timer): starts the lanes whose time has come.
    pub(crate) fn handle_due(&mut self, cx: &mut Context, now: u64) -> Vec<Effect> {
        let peers = match cx.store.group_queue_peers() {
            Ok(peers) => peers,
            Err(error) => {
                tracing::error!(%error, "cannot read the group outbox");
                return Vec::new();
            }
        };
        let due = self.lanes.due(peers, now, None);
        due.into_iter().flat_map(|peer| self.start_lane(cx, peer, now)).collect()
    }

    /// `peer` connected: its queue goes now, and it is asked for the newest messages of
    /// every group both are in (catching up on what this node missed).
    pub(crate) fn handle_connected(
        &mut self,
        cx: &mut Context,
        peer: &AuthorId,
        now: u64,
    ) -> Vec<Effect> {
        let key = *peer.as_bytes();
        let groups = match cx.store.groups() {
            Ok(groups) => groups,
            Err(error) => {
                tracing::error!(%error, "cannot read groups");
                Vec::new()
            }
        };
        let mut asks = Vec::new();
        for (id, state) in groups {
            if !state.active {
                continue;
            }
            let Ok(Some(loaded)) = load(cx, &id) else { continue };
            if !loaded.group.is_member(peer) || *peer == cx.me {
                continue;
            }
            // Members' device announcements that changed since they were passed on (a
            // creator only; sealed with `/kith/dm/1`, nothing to flush first).
            if let Err(error) = self.relay_devices(cx, &loaded.group, peer) {
                tracing::warn!(%error, "cannot pass on device announcements");
            }
            let group = loaded.group.id();
            if let Ok(bytes) = (GroupRequest::History { group }).to_bytes() {
                asks.push(Effect::GroupAsk { peer: *peer, group: id, bytes });
            }
        }
        // Here now: what is queued goes directly again (at once, if a pass is under way).
        self.lanes.nudge(&key);
        let mut effects = match cx.store.group_queue_next(&key) {
            Ok(Some(_)) if !self.lanes.busy(&key) => self.next_in_lane(cx, key, now),
            _ => Vec::new(),
        };
        effects.extend(asks);
        effects
    }
}
