//! Sending on `/kith/dm/2` (issue #17): a message goes to the recipient's announced
//! device on the Olm session this node keeps with it, sealed when its lane reaches it.
//!
//! Crash safety: the session's new state and the sealed request are stored and flushed
//! *before* the request leaves ([`Held::Deliver`]): a retry, after a crash too, sends the
//! same bytes again (the recipient knows them by their digest), and no message key is
//! ever used for two different envelopes that left the node. When a lane seals, it seals
//! the messages queued behind too (up to [`SEAL_BATCH`], in lane order) with one flush,
//! and they leave together in one request ([`super::batch`]). A recipient that cannot
//! open a message answers `NewSession`: the sessions with that device are dropped, a
//! one-time key is claimed (`Claim`; none: the announced fallback key) and the message
//! is sealed again on a new session. At most [`MAX_RENEWALS`] renewals in a row per
//! peer; then the lane backs off like any failed delivery.

use std::collections::BTreeMap;

use kith_protocol::{
    dm::{MessageId, Plain},
    olm::{
        account::PeerSessions,
        device::{DeviceId, VerifiedDevice},
        envelope::{Dm2Reply, Dm2Request},
        prekey::{SignedPrekey, VerifiedEntry},
        OlmError,
    },
    AuthorId, RecordId, RecordKind,
};

use super::{device::DeviceError, follow_proof, Dm, Held};
use crate::{
    core::{Context, DmProto, Effect, Timer},
    store::OutboxEntry,
};

/// Most session renewals (`NewSession` answers) in a row for one peer before its lane
/// backs off.
pub(crate) const MAX_RENEWALS: u32 = 3;

/// How soon a lane is tried again after the recipient answered "not now" (ms): it has
/// not seen this node's announcement yet and is fetching this node's log.
pub(crate) const LATER_RETRY_MS: u64 = 100;
/// Most such quick retries in a row for one peer (until a receipt comes back); then
/// the lane backs off like after any failed delivery.
pub(crate) const MAX_LATERS: u32 = 10;

/// What is in flight on a lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flight {
    /// A `/kith/dm/1` request.
    V1,
    /// A sealed `/kith/dm/2` message for this device.
    Sealed(DeviceId),
    /// A claim of a one-time key of this device.
    Claim(DeviceId),
    /// Sealed `/kith/dm/2` messages for this device, in one batch, in lane order.
    Batch(DeviceId, Vec<[u8; 16]>),
}

/// Most messages of one lane sealed together, with one flush for them all.
pub(crate) const SEAL_BATCH: usize = 32;

/// How the lane's message goes.
enum Plan {
    /// On `/kith/dm/1` (the peer announced no device, or this node's device is not
    /// announced yet).
    V1,
    /// These `/kith/dm/2` bytes, now (sealed and flushed before, or a claim).
    Now(Flight, Vec<u8>),
    /// These `/kith/dm/2` bytes, once the flush of the session they were sealed on is
    /// done.
    AfterFlush(Flight, Vec<u8>),
}

/// Most people whose verified announced device is kept in memory.
pub(crate) const MAX_KNOWN_DEVICES: usize = 256;

/// The device each recent peer announced last, verified, with the id of the record that
/// announced it: while that record stands, a message sealed or opened does not verify
/// its certificate and fallback key again (three signatures). At most
/// [`MAX_KNOWN_DEVICES`] people.
#[derive(Default)]
pub(crate) struct KnownDevices(BTreeMap<AuthorId, (RecordId, VerifiedEntry)>);

impl KnownDevices {
    /// The device `author` announced last (the newest certificate of their latest
    /// announcement), verified.
    pub(crate) fn newest(
        &mut self,
        cx: &Context,
        author: &AuthorId,
    ) -> Result<Option<VerifiedEntry>, DeviceError> {
        let Some(record) = cx.store.devices(author)? else { return Ok(None) };
        if let Some((id, entry)) = self.0.get(author) {
            if *id == record.id {
                return Ok(Some(entry.clone()));
            }
        }
        let RecordKind::Devices(announcement) = record.record.kind else { return Ok(None) };
        let entries = announcement.verify(author)?;
        let Some(newest) = entries.into_iter().max_by_key(|e| e.device.created()) else {
            return Ok(None);
        };
        if self.0.len() >= MAX_KNOWN_DEVICES && !self.0.contains_key(author) {
            let first = self.0.keys().next().copied();
            if let Some(first) = first {
                self.0.remove(&first);
            }
        }
        self.0.insert(*author, (record.id, newest.clone()));
        Ok(Some(newest))
    }
}

/// The sessions this node keeps with `device` (none when the pickle is lost or does not
/// open: the next message starts a new session).
pub(crate) fn sessions_with(
    cx: &Context,
    key: &kith_protocol::olm::pickle::PickleKey,
    device: DeviceId,
) -> Result<PeerSessions, DeviceError> {
    let Some(pickle) = cx.store.olm_sessions(&device)? else {
        return Ok(PeerSessions::new(device));
    };
    match PeerSessions::from_pickle(&pickle, key, device) {
        Ok(sessions) => Ok(sessions),
        Err(error) => {
            tracing::warn!(%error, %device, "sessions with a device do not open: starting anew");
            Ok(PeerSessions::new(device))
        }
    }
}

/// The message `id` as it was written (same id, timestamp, text, attachments), if this
/// node still holds it.
fn stored_plain(cx: &Context, id: &[u8; 16]) -> Result<Option<Plain>, DeviceError> {
    let Some(record) = cx.store.dm_get(&cx.me, id)? else { return Ok(None) };
    Ok(Some(Plain {
        id: MessageId::from_bytes(*id),
        timestamp: record.timestamp,
        attachments: record.sealed_attachments(),
        text: record.text,
    }))
}

/// The messages queued behind `entry` in its lane, oldest first, at most
/// [`SEAL_BATCH`] `- 1`.
fn queued_after(cx: &Context, entry: &OutboxEntry) -> Result<Vec<OutboxEntry>, DeviceError> {
    Ok(cx
        .store
        .dm_outbox()?
        .into_iter()
        .filter(|e| e.peer == entry.peer)
        .skip_while(|e| e.id != entry.id)
        .skip(1)
        .take(SEAL_BATCH - 1)
        .collect())
}

impl Dm {
    /// Starts delivering `entry` to `to`: on `/kith/dm/2` when both sides announced a
    /// device, else on `/kith/dm/1`.
    pub(super) fn deliver(
        &mut self,
        cx: &mut Context,
        to: &AuthorId,
        entry: OutboxEntry,
        now: u64,
    ) -> Vec<Effect> {
        let (peer, message, lookup) = (entry.peer, entry.id, entry.attempts > 0);
        let plan = match self.plan(cx, to, &entry, now) {
            Ok(plan) => plan,
            Err(error) => {
                tracing::warn!(%error, peer = %to, "cannot seal on /kith/dm/2: using /kith/dm/1");
                Plan::V1
            }
        };
        let (flight, bytes, proto) = match plan {
            Plan::Now(flight @ (Flight::Sealed(_) | Flight::Batch(..)), _)
                if self.deposits.unreachable(&peer) =>
            {
                // Not dialled again in this pass: deposited.
                self.flights.insert(peer, flight);
                return self.undelivered(cx, to, message, now);
            }
            Plan::V1 if entry.request.is_empty() => {
                // Queued for `/kith/dm/2`, going on `/kith/dm/1` after all: sealed now.
                let sealed = stored_plain(cx, &message)
                    .map_err(|e| e.to_string())
                    .and_then(|plain| plain.ok_or_else(|| "the message is gone".to_owned()))
                    .and_then(|plain| self.request_v1(cx, to, &plain));
                match sealed {
                    Ok(bytes) => (Flight::V1, bytes, DmProto::V1),
                    Err(error) => {
                        tracing::warn!(%error, peer = %to, "cannot seal on /kith/dm/1");
                        return self.stop_lane(cx, peer, now);
                    }
                }
            }
            Plan::V1 => (Flight::V1, entry.request, DmProto::V1),
            Plan::Now(flight, bytes) => (flight, bytes, DmProto::V2),
            Plan::AfterFlush(flight, bytes) => {
                self.flights.insert(peer, flight);
                let flush = cx.flush_id();
                self.held.insert(flush, Held::Deliver { peer: *to, message, bytes, lookup });
                return vec![Effect::Flush(flush)];
            }
        };
        self.flights.insert(peer, flight);
        vec![Effect::Deliver { peer: *to, message, bytes, lookup, proto }]
    }

    /// How `entry` goes now (see [`Plan`]).
    fn plan(
        &mut self,
        cx: &mut Context,
        to: &AuthorId,
        entry: &OutboxEntry,
        now: u64,
    ) -> Result<Plan, DeviceError> {
        if !self.announced {
            // This node's device must be announced (and so made) before it seals: the
            // recipient checks the sender's certificate.
            if self.check_device(cx, false, false, now).is_some() || self.device.is_none() {
                self.device_wanted = true;
                return Ok(Plan::V1);
            }
        }
        let Some(their) = self.known.newest(cx, to)? else { return Ok(Plan::V1) };
        let id = their.device.id();
        if let Some(bytes) = cx.store.olm_sealed(&entry.id)? {
            // Sealed before (and flushed): with those sealed behind it, as one batch.
            let mut behind = Vec::new();
            for next in queued_after(cx, entry)? {
                let Some(bytes) = cx.store.olm_sealed(&next.id)? else { break };
                behind.push((next.id, bytes));
            }
            let (flight, bytes) = self.batch_of(&entry.peer, id, (entry.id, bytes), behind);
            return Ok(Plan::Now(flight, bytes));
        }
        if self.renewing.remove(&id) {
            let bytes = Dm2Request::Claim { device: id }.to_bytes()?;
            return Ok(Plan::Now(Flight::Claim(id), bytes));
        }
        let Some(plain) = stored_plain(cx, &entry.id)? else { return Ok(Plan::V1) };
        let Some(local) = self.device.as_ref() else { return Ok(Plan::V1) };
        let mut sessions = sessions_with(cx, &local.key, id)?;
        let prekey = self.claimed.remove(&id).unwrap_or(their.fallback);
        let follow_proof = follow_proof(&cx.store, &cx.me, to);
        let mut seal = |plain: &Plain| -> Result<Vec<u8>, DeviceError> {
            let device = &their.device;
            let envelope =
                local.device.seal(&cx.keys, &mut sessions, device, Some(&prekey), plain)?;
            Ok(Dm2Request::Deliver { envelope, follow_proof: follow_proof.clone() }.to_bytes()?)
        };
        // Group commit: the messages queued behind this one in its lane are sealed now
        // too, in lane order, so that one flush covers them all (and one request carries
        // them).
        let bytes = seal(&plain)?;
        let mut sealed = Vec::new();
        for next in queued_after(cx, entry)? {
            let Some(plain) = stored_plain(cx, &next.id)? else { break };
            if cx.store.olm_sealed(&next.id)?.is_some() {
                break;
            }
            sealed.push((next.id, seal(&plain)?));
        }
        // The sessions first: a crash that keeps them but not every sealed request only
        // skips message keys (those requests never left), never uses one twice.
        cx.store.set_olm_sessions(&id, &sessions.pickle(&local.key)?)?;
        cx.store.set_olm_sealed(&entry.id, Some(&bytes))?;
        for (message, request) in &sealed {
            cx.store.set_olm_sealed(message, Some(request))?;
        }
        // They leave together, as one batch, after the flush.
        let (flight, bytes) = self.batch_of(&entry.peer, id, (entry.id, bytes), sealed);
        Ok(Plan::AfterFlush(flight, bytes))
    }

    /// The reply to a `/kith/dm/2` delivery of `message` to `peer`: the receipt as a
    /// `/kith/dm/1` reply's bytes for [`super::outcome`], or `None` when the lane goes on
    /// (a new session, a claimed key) and its effects are in `effects`.
    pub(super) fn reply2(
        &mut self,
        cx: &mut Context,
        peer: &AuthorId,
        (message, flight): ([u8; 16], Flight),
        result: Result<Vec<u8>, String>,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Option<Result<Vec<u8>, String>> {
        let key = *peer.as_bytes();
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(error) => return Some(Err(error)),
        };
        let reply = match Dm2Reply::from_bytes(&bytes) {
            Ok(reply) => reply,
            // An empty reply: the recipient cannot open it yet (a first message on a
            // session can overtake the gossip of this node's announcement; the recipient
            // fetches this node's log). Tried again shortly.
            Err(_) if bytes.is_empty() => {
                if let Some(retry) = self.later(key, now) {
                    effects.push(retry);
                    return None;
                }
                return Some(Err("no receipt: the recipient cannot open it yet".into()));
            }
            // An unreadable reply: tried again later.
            Err(error) => return Some(Err(format!("no receipt: {error}"))),
        };
        match (flight, reply) {
            (Flight::Sealed(_), Dm2Reply::Receipt(receipt)) => {
                // Delivered or refused: either way this envelope is done with.
                self.renewals.remove(&key);
                self.laters.remove(&key);
                let _ = cx.store.set_olm_sealed(&message, None);
                Some(receipt.to_bytes().map_err(|e| e.to_string()))
            }
            (Flight::Sealed(device), Dm2Reply::NewSession) => {
                let renewals = self.renewals.entry(key).or_default();
                *renewals += 1;
                if *renewals > MAX_RENEWALS {
                    self.renewals.remove(&key);
                    // The device this node seals for may be one the recipient replaced
                    // (an announcement this node missed): fetch the recipient's log.
                    // The lane backs off and tries again; nothing is left wedged.
                    if let Ok(from) = peer.to_peer_id() {
                        effects.push(Effect::FillGap { peer: from, author: *peer });
                    }
                    return Some(Err("the recipient keeps asking for new sessions".into()));
                }
                tracing::info!(%peer, %device, "the recipient asks for a new session");
                if let Err(error) = self.drop_sessions(cx, device, &key) {
                    return Some(Err(error.to_string()));
                }
                self.renewing.insert(device);
                effects.extend(self.next_in_lane(cx, key, now));
                None
            }
            (Flight::Claim(device), Dm2Reply::Claimed(prekey)) => {
                if let Some(prekey) = prekey {
                    match self.check_claimed(cx, peer, device, &prekey) {
                        Ok(true) => {
                            self.claimed.insert(device, prekey);
                        }
                        Ok(false) | Err(_) => {
                            tracing::info!(%peer, "a claimed key does not verify: using the fallback key");
                        }
                    }
                }
                effects.extend(self.next_in_lane(cx, key, now));
                None
            }
            (Flight::Batch(_, ids), reply) => {
                effects.extend(self.batch_answered(cx, peer, &ids, reply, now));
                None
            }
            _ => Some(Err("unexpected reply on /kith/dm/2".into())),
        }
    }

    /// The recipient answered "not now" to `peer`'s lane: its lane is tried again after
    /// [`LATER_RETRY_MS`] rather than its back-off, and the `msg send` waiting for the
    /// message is not answered "queued" (its own wait still bounds it). `None` after
    /// [`MAX_LATERS`] in a row: then it is a failed delivery.
    fn later(&mut self, peer: [u8; 32], now: u64) -> Option<Effect> {
        let laters = self.laters.entry(peer).or_default();
        if *laters >= MAX_LATERS {
            return None;
        }
        *laters += 1;
        self.deposits.end_pass(&peer);
        let at = now.saturating_add(LATER_RETRY_MS);
        self.lanes.retry_at(peer, at);
        Some(Effect::Schedule { at, timer: Timer::Outbox })
    }

    /// Drops the sessions with `device` and the sealed requests of every message queued
    /// for `peer` (none of them left: the lane sends in order, and `message`, its first,
    /// was not opened). The next seal starts a new session.
    fn drop_sessions(
        &mut self,
        cx: &Context,
        device: DeviceId,
        peer: &[u8; 32],
    ) -> Result<(), DeviceError> {
        let Some(local) = self.device.as_ref() else { return Ok(()) };
        let mut sessions = sessions_with(cx, &local.key, device)?;
        sessions.clear();
        cx.store.set_olm_sessions(&device, &sessions.pickle(&local.key)?)?;
        for queued in cx.store.dm_outbox()?.into_iter().filter(|e| e.peer == *peer) {
            cx.store.set_olm_sealed(&queued.id, None)?;
        }
        Ok(())
    }

    /// Whether `prekey` is a one-time key of `device`, `peer`'s announced device.
    fn check_claimed(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        device: DeviceId,
        prekey: &SignedPrekey,
    ) -> Result<bool, DeviceError> {
        let Some(their) = self.known.newest(cx, peer)? else { return Ok(false) };
        let their: VerifiedDevice = their.device;
        if their.id() != device {
            return Ok(false);
        }
        match prekey.verify(&their) {
            Ok(()) => Ok(true),
            Err(OlmError::Signature(_) | OlmError::DeviceMismatch | OlmError::BadKey) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}
