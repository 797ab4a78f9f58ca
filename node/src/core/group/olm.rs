//! Key shares on Olm sessions between member devices (issue #19; `docs/protocol.md`
//! 20.2 and 20.6).
//!
//! A member's Megolm session key goes to each other member's device inside an Olm
//! message ([`Inner::GroupShare`]) on the session this node keeps with that device, the
//! same sessions as direct messages (`core/dm`), so it is forward secret. The request
//! ([`GroupRequest::Olm`]) carries the sender's own device announcement: a member who is
//! not a mutual connection of the sender checks the sender's device with it.
//!
//! - **Whose device.** A share for `peer` is sealed for the newest certified device of
//!   the freshest announcement known here: `peer`'s `Devices` record (mutual connections
//!   replicate it), or one kept from a fellow member (the creator passes on each
//!   member's latest `Devices` record, [`Control::Devices`], with each epoch and when a
//!   member connects; a sender's own announcement comes with its shares and with a
//!   [`GroupReply::NewSession`]). While none is known (the peer's announcement has not
//!   arrived yet, or this node has no device), the share is held until it is
//!   (`held.rs`): it is never sealed with `/kith/dm/1`.
//! - **Crash safety** as for direct messages: the sessions' new state is written before
//!   the queue entry, and both are flushed before the entry is sent or deposited: until
//!   that flush is done, whatever starts the member's lane (a connection, the timer, the
//!   answer to the request before it, a deposit pass) stops at it, and the flush starts
//!   the lane again (`Groups::waits_for_flush`).
//! - **Repair.** The share is also kept sealed with the pickle key (`u` || peer || n):
//!   a recipient that cannot open the envelope (lost session, rotated and forgotten
//!   prekey, another device, a spent key whose share it did not keep) answers
//!   `NewSession` with its current announcement; this node drops its sessions with that
//!   device, seals the share again on a new session and sends it again (at most
//!   [`MAX_RENEWALS`] in a row, then the lane backs off). Deposited with a mailbox and
//!   not opened there, it is acknowledged and dropped: the request stays queued here
//!   and is tried directly again (the deposit is an extra path, 20.7).
//! - **Receiving** exactly once: an envelope whose digest was taken before is
//!   `Accepted` without opening; the sessions (and the device, for a first message) are
//!   stored with the digest, flushed before the answer; a share that cannot be taken
//!   yet (`Later`) leaves the sessions as they were, so the retry opens again.

use std::collections::{BTreeMap, BTreeSet};

use kith_protocol::{
    group::{
        membership::Group,
        wire::{Control, GroupRequest, OlmShare},
    },
    olm::{
        account::PeerSessions,
        device::DeviceId,
        envelope::Envelope,
        inner::Inner,
        prekey::{Announcement, VerifiedEntry},
        OlmError,
    },
    AuthorId, RecordKind, VerifiedRecord,
};

use super::{load, Groups};
use crate::{
    api::ApiError,
    core::{
        dm::{device::Local, is_mutual},
        Context, Effect,
    },
};

/// Most session renewals (`NewSession` answers) in a row for one member before its lane
/// backs off.
const MAX_RENEWALS: u32 = 3;

/// The Olm side of the group concern.
#[derive(Default)]
pub(crate) struct Shares {
    /// This node's device, lent by the dm concern for one input.
    device: Option<Local>,
    /// The device's account changed while lent (a session started from its keys).
    changed: bool,
    /// Session renewals in a row, by member.
    renewals: BTreeMap<[u8; 32], u32>,
    /// Whose `Devices` record (by its seq) was passed on to whom: (to, whose).
    relayed: BTreeMap<([u8; 32], [u8; 32]), u64>,
    /// People whose announcement became known since the last look: their held key
    /// shares can be sealed now (`held.rs`).
    pub(super) fresh: BTreeSet<[u8; 32]>,
}

/// A share opened from an Olm envelope, and what to store once it is taken (or
/// refused for good).
pub(super) struct OpenedShare {
    pub(super) share: OlmShare,
    device: DeviceId,
    sessions: Vec<u8>,
    own: Option<Vec<u8>>,
    digest: [u8; 32],
}

/// Why an Olm request was not opened.
pub(super) enum NotOpened {
    /// Taken before (its digest is known): `Accepted`, nothing opened.
    Known,
    /// Not now.
    Later,
    /// For good.
    Refused(String),
    /// No session opens it: the sender seals it again, for this device and key.
    NewSession(Option<Announcement>),
}

/// How fresh an announcement is: its newest fallback key's time.
fn freshness(announcement: &Announcement) -> u64 {
    announcement.devices.iter().map(|d| d.fallback.prekey.created).max().unwrap_or(0)
}

/// The label of queued request `n` of `peer`'s kept share.
fn unsealed_label(peer: &[u8; 32], n: u64) -> Vec<u8> {
    [b"group-share:".as_slice(), peer, &n.to_be_bytes()].concat()
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(error.to_string())
}

/// The sessions this node keeps with `device` (none when lost or unreadable).
fn sessions_with(cx: &Context, local: &Local, device: DeviceId) -> PeerSessions {
    let stored = cx.store.olm_sessions(&device).ok().flatten();
    stored
        .and_then(|pickle| PeerSessions::from_pickle(&pickle, &local.key, device).ok())
        .unwrap_or_else(|| PeerSessions::new(device))
}

/// The freshest announcement of `person` known here (their record, or one kept from a
/// fellow member), unverified.
fn announcement_of(cx: &Context, person: &AuthorId) -> Result<Option<Announcement>, ApiError> {
    let record = match cx.store.devices(person)? {
        Some(stored) => match stored.record.kind {
            RecordKind::Devices(a) => Some(a),
            _ => None,
        },
        None => None,
    };
    let kept = cx
        .store
        .group_peer_devices(person.as_bytes())?
        .and_then(|bytes| Announcement::from_bytes(&bytes).ok());
    Ok(match (record, kept) {
        (Some(a), Some(b)) if freshness(&b) > freshness(&a) => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    })
}

/// The device a share for `person` is sealed for: the newest certified device of their
/// freshest announcement, verified.
fn peer_device(cx: &Context, person: &AuthorId) -> Result<Option<VerifiedEntry>, ApiError> {
    let Some(announcement) = announcement_of(cx, person)? else { return Ok(None) };
    let entries = announcement.verify(person).map_err(internal)?;
    Ok(entries.into_iter().max_by_key(|e| e.device.created()))
}

/// Whether this node should make its device now (issue #19): it has none, and it has a
/// mutual connection, that is someone who may put it in a group or a circle. Key shares
/// for it wait until its device is known (`held.rs`), and a circle member cannot know it
/// is in one, so it makes its device without having done anything.
pub(crate) fn needs_device(cx: &Context) -> bool {
    if !matches!(cx.store.olm_device(), Ok(None)) {
        return false;
    }
    let following = cx.store.following(&cx.me).unwrap_or_default();
    following.iter().any(|p| *p != cx.me && is_mutual(&cx.store, &cx.me, p).unwrap_or(false))
}

impl Groups {
    /// The device lent by the dm concern for this input (if it has one).
    pub(crate) fn lend(&mut self, device: Option<Local>) {
        self.shares.device = device;
        self.shares.changed = false;
    }

    /// This node joined a group: its device is made (at the end of this input) if there
    /// is none, so that fellow members can seal key shares for it.
    pub(super) fn want_device(&mut self) {
        if self.shares.device.is_none() {
            self.shares.changed = true;
        }
    }

    /// The lent device goes back, with whether its account changed (or, none lent,
    /// whether one is wanted).
    pub(crate) fn give_back(&mut self) -> (Option<Local>, bool) {
        (self.shares.device.take(), std::mem::take(&mut self.shares.changed))
    }

    /// Keeps `announcement` as `person`'s when it is theirs and fresher than what is
    /// known here (not flushed). Returns whether it was kept.
    pub(super) fn keep_devices(
        &mut self,
        cx: &Context,
        person: &AuthorId,
        announcement: &Announcement,
    ) -> Result<bool, ApiError> {
        if *person == cx.me || announcement.verify(person).is_err() {
            return Ok(false);
        }
        let known = announcement_of(cx, person)?;
        if known.is_some_and(|k| freshness(&k) >= freshness(announcement)) {
            return Ok(false);
        }
        cx.store.set_group_peer_devices(
            person.as_bytes(),
            &announcement.to_bytes().map_err(internal)?,
        )?;
        self.shares.fresh.insert(*person.as_bytes());
        Ok(true)
    }

    /// A member's `Devices` record passed on by `sender`: kept when `sender` is the
    /// creator of a group here that has its author as a member. Returns whether it was
    /// new.
    ///
    /// # Errors
    /// The refusal.
    pub(super) fn take_devices(
        &mut self,
        cx: &Context,
        sender: &AuthorId,
        record: &VerifiedRecord,
    ) -> Result<bool, String> {
        let author = record.record().author;
        let RecordKind::Devices(announcement) = &record.record().kind else {
            return Err("not a device announcement".into());
        };
        let groups = cx.store.groups().map_err(|e| e.to_string())?;
        let fellow = groups.iter().any(|(id, state)| {
            state.active
                && matches!(load(cx, id), Ok(Some(l)) if l.group.creator() == *sender && l.group.is_member(&author))
        });
        if !fellow {
            return Err("an announcement of someone in none of your groups with its sender".into());
        }
        self.keep_devices(cx, &author, announcement).map_err(|e| e.to_string())
    }

    /// The creator passes on to `to` the latest `Devices` record of every other member
    /// of `group` that it has not passed on to them yet (in this run). Returns whether
    /// it queued any.
    pub(super) fn relay_devices(
        &mut self,
        cx: &Context,
        group: &Group,
        to: &AuthorId,
    ) -> Result<bool, ApiError> {
        let mut queued = false;
        if group.creator() != cx.me {
            return Ok(queued);
        }
        for member in group.members().filter(|m| **m != *to) {
            let Some(stored) = cx.store.devices(member)? else { continue };
            let relayed = (*to.as_bytes(), *member.as_bytes());
            if self.shares.relayed.get(&relayed) == Some(&stored.record.seq) {
                continue;
            }
            let Some(bytes) = cx.store.get_bytes(&stored.id)? else { continue };
            self.queue_control(cx, to, &Control::Devices(bytes))?;
            self.shares.relayed.insert(relayed, stored.record.seq);
            queued = true;
        }
        Ok(queued)
    }

    /// New `Devices` records of `people` were stored here: the key shares held for them
    /// are sealed (`held.rs`), and a creator passes the records on to the other members
    /// of its groups they are in (their queues start once flushed).
    pub(crate) fn devices_announced(
        &mut self,
        cx: &mut Context,
        people: &[AuthorId],
        now: u64,
    ) -> Vec<Effect> {
        self.shares.fresh.extend(people.iter().map(|p| *p.as_bytes()));
        let mut effects = self.release_fresh(cx, now);
        let Ok(groups) = cx.store.groups() else { return effects };
        let mut start = Vec::new();
        for (id, state) in groups {
            if !state.active {
                continue;
            }
            let Ok(Some(loaded)) = load(cx, &id) else { continue };
            let group = loaded.group;
            if group.creator() != cx.me || !people.iter().any(|p| group.is_member(p)) {
                continue;
            }
            for member in group.members().filter(|m| **m != cx.me) {
                match self.relay_devices(cx, &group, member) {
                    Ok(true) => start.push(*member.as_bytes()),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "cannot pass on device announcements"),
                }
            }
        }
        if !start.is_empty() {
            effects.extend(self.after_flush(cx, Vec::new(), Vec::new(), start));
        }
        effects
    }

    /// Queues `share` for `peer`: on an Olm session with their device when this node's
    /// device and theirs are known, else held until they are (`held.rs`). Not flushed
    /// (the lane starts after the flush).
    pub(super) fn queue_share(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        share: OlmShare,
        now: u64,
    ) -> Result<(), ApiError> {
        let Some(bytes) = self.seal_share(cx, peer, &share, now) else {
            tracing::info!(%peer, "no device known for a member yet: its key share waits for it");
            return self.hold_share(cx, peer, &share);
        };
        let n = cx.store.group_queue(peer.as_bytes(), &bytes)?;
        self.sealed_on_olm(*peer.as_bytes(), n);
        self.keep_share(cx, peer, n, &share)
    }

    /// Keeps `share`, queued as request `n` for `peer`, sealed with the pickle key (to
    /// be sealed again, or sealed once their device is known). Not flushed.
    pub(super) fn keep_share(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        n: u64,
        share: &OlmShare,
    ) -> Result<(), ApiError> {
        let key = self.pickle_key(cx)?;
        let encoded = kith_protocol::codec::encode(share).map_err(internal)?;
        let kept =
            key.seal_bytes(&unsealed_label(peer.as_bytes(), n), &encoded).map_err(internal)?;
        cx.store.set_group_unsealed(peer.as_bytes(), n, Some(&kept))?;
        Ok(())
    }

    /// The share kept for queued request `n` of `peer`.
    pub(super) fn kept_share(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        n: u64,
    ) -> Result<OlmShare, ApiError> {
        let key = peer.as_bytes();
        let Some(kept) = cx.store.group_unsealed(key, n)? else {
            return Err(ApiError::internal("no key share kept for this request"));
        };
        let label = unsealed_label(key, n);
        let encoded = self.pickle_key(cx)?.open_bytes(&label, &kept).map_err(internal)?;
        kith_protocol::codec::decode::<_, 4096>(&encoded).map_err(internal)
    }

    /// `share` sealed for `peer`'s device on the session with it (stored, not flushed),
    /// as a request; `None` when it cannot go on Olm yet.
    pub(super) fn seal_share(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        share: &OlmShare,
        now: u64,
    ) -> Option<Vec<u8>> {
        let sealed = self.try_seal_share(cx, peer, share, now);
        sealed.unwrap_or_else(|error| {
            tracing::warn!(%error, %peer, "cannot seal a key share on Olm now: it waits");
            None
        })
    }

    fn try_seal_share(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        share: &OlmShare,
        now: u64,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        let Some(their) = peer_device(cx, peer)? else { return Ok(None) };
        let Some(local) = self.shares.device.as_mut() else { return Ok(None) };
        let devices = local.announcement(now).map_err(internal)?;
        let id = their.device.id();
        let mut sessions = sessions_with(cx, local, id);
        let inner = Inner::GroupShare(share.clone());
        let envelope = local
            .device
            .seal_inner(&cx.keys, &mut sessions, &their.device, Some(&their.fallback), &inner)
            .map_err(internal)?;
        // The sessions first: a crash that keeps them without the request only skips a
        // message key, never uses one twice.
        cx.store.set_olm_sessions(&id, &sessions.pickle(&local.key).map_err(internal)?)?;
        Ok(Some(GroupRequest::Olm { envelope, devices }.to_bytes().map_err(internal)?))
    }

    /// Opens an Olm request from `sender` (checked: the sender's announcement, this
    /// node's device, the sessions with the sender's device). Nothing is stored: what
    /// opened is committed by [`Groups::commit_share`] once taken or refused.
    pub(super) fn open_share(
        &mut self,
        cx: &Context,
        sender: &AuthorId,
        envelope: &Envelope,
        devices: &Announcement,
        now: u64,
    ) -> Result<OpenedShare, NotOpened> {
        let later = |error: &dyn std::fmt::Display| {
            tracing::error!(%error, "cannot open a key share now");
            NotOpened::Later
        };
        let entries = devices.verify(sender).map_err(|e| NotOpened::Refused(e.to_string()))?;
        let Some(their) = entries.into_iter().find(|e| e.device.id() == envelope.sender_device)
        else {
            return Err(NotOpened::Refused(
                "the sender's device is not in its announcement".into(),
            ));
        };
        self.keep_devices(cx, sender, devices).map_err(|e| later(&e))?;
        let digest = envelope.digest().map_err(|e| NotOpened::Refused(e.to_string()))?;
        if cx.store.olm_received(&digest).map_err(|e| later(&e))?.is_some() {
            return Err(NotOpened::Known);
        }
        let Some(local) = self.shares.device.as_mut() else {
            // This node's device is gone (its state does not open): a new one is made,
            // and the sender seals for it once it is announced.
            self.want_device();
            return Err(NotOpened::NewSession(None));
        };
        let mine = local.announcement(now).ok();
        if envelope.recipient_device != local.cert.id() {
            return Err(NotOpened::NewSession(mine));
        }
        let mut sessions = sessions_with(cx, local, their.device.id());
        let opened = match local.device.open(&mut sessions, &their.device, envelope) {
            Ok(opened) => opened,
            Err(error) if error.needs_new_session() || error == OlmError::Replay => {
                tracing::info!(peer = %sender, %error, "a key share does not open: asking for a new session");
                return Err(NotOpened::NewSession(mine));
            }
            Err(error) => return Err(NotOpened::Refused(format!("cannot open: {error}"))),
        };
        let Inner::GroupShare(share) = opened.inner else {
            return Err(NotOpened::Refused("not a key share".into()));
        };
        if opened.sender != *sender {
            return Err(NotOpened::Refused("sealed by someone else than the sender".into()));
        }
        let own = if opened.new_session {
            if let Ok(Some(_)) = local.device.maintain(now) {
                tracing::info!("rotated the fallback key after a first message");
            }
            self.shares.changed = true;
            Some(local.device.pickle(&local.key).map_err(|e| later(&e))?)
        } else {
            None
        };
        let sessions = sessions.pickle(&local.key).map_err(|e| later(&e))?;
        Ok(OpenedShare { share, device: their.device.id(), sessions, own, digest })
    }

    /// Stores what opening `opened` changed: its digest, then the sessions (and the
    /// device) in one batch. Not flushed.
    pub(super) fn commit_share(
        &mut self,
        cx: &Context,
        opened: &OpenedShare,
        now: u64,
    ) -> Result<(), ApiError> {
        let mut id = [0u8; 16];
        id.copy_from_slice(&opened.digest[..16]);
        cx.store.set_olm_received(&opened.digest, &id, now)?;
        cx.store.set_olm_opened(&opened.device, &opened.sessions, opened.own.as_deref())?;
        Ok(())
    }

    /// Queued request `n` for `peer` was delivered or refused: its kept share goes.
    pub(super) fn share_done(&mut self, cx: &Context, peer: &[u8; 32], n: u64) {
        self.shares.renewals.remove(peer);
        if let Err(error) = cx.store.set_group_unsealed(peer, n, None) {
            tracing::error!(%error, "cannot forget a key share");
        }
    }

    /// `peer` opened none of queued request `n` and asks for a new session (`devices`:
    /// its current announcement): the sessions with the device it was sealed for go, and
    /// the share is sealed again on a new one, sent once flushed. After
    /// [`MAX_RENEWALS`] in a row, the lane backs off instead.
    pub(super) fn renew(
        &mut self,
        cx: &mut Context,
        peer: &AuthorId,
        n: u64,
        devices: Option<Announcement>,
        now: u64,
    ) -> Vec<Effect> {
        let key = *peer.as_bytes();
        let renewals = self.shares.renewals.entry(key).or_default();
        *renewals += 1;
        if *renewals > MAX_RENEWALS {
            self.shares.renewals.remove(&key);
            return self.stop_lane(key, now);
        }
        match self.reseal(cx, peer, n, devices, now) {
            Ok(()) => {
                self.lanes.finish(key, true, now);
                self.after_flush(cx, Vec::new(), Vec::new(), vec![key])
            }
            Err(error) => {
                tracing::warn!(%error, %peer, "cannot seal a key share again");
                self.stop_lane(key, now)
            }
        }
    }

    fn reseal(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        n: u64,
        devices: Option<Announcement>,
        now: u64,
    ) -> Result<(), ApiError> {
        if let Some(devices) = devices {
            self.keep_devices(cx, peer, &devices)?;
        }
        let key = peer.as_bytes();
        let Some(queued) = cx.store.group_queue_from(key, n)?.filter(|q| q.n == n) else {
            return Ok(());
        };
        if let Ok(GroupRequest::Olm { envelope, .. }) = GroupRequest::from_bytes(&queued.bytes) {
            if let Some(local) = self.shares.device.as_ref() {
                let mut sessions = sessions_with(cx, local, envelope.recipient_device);
                sessions.clear();
                let pickle = sessions.pickle(&local.key).map_err(internal)?;
                cx.store.set_olm_sessions(&envelope.recipient_device, &pickle)?;
            }
        }
        let share = self.kept_share(cx, peer, n)?;
        let bytes = match self.seal_share(cx, peer, &share, now) {
            Some(bytes) => bytes,
            // No device to seal for any more: held until one is known (`held.rs`).
            None => super::held::HELD.to_vec(),
        };
        cx.store.group_requeue(key, n, &bytes)?;
        if !super::held::is_held(&bytes) {
            self.sealed_on_olm(*key, n);
        }
        Ok(())
    }
}
