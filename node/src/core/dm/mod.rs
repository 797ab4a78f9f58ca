//! Direct messages: sending (admission: not to oneself, not to someone blocked, only
//! between mutual connections; seal, store, queue), delivery through the outbox's
//! per-peer lanes with a retry schedule ([`super::outbox`]), receipts, and receiving
//! ([`receive`]: follow proof, replay drop, the refusal reasons).
//!
//! `msg send` is answered once its message was tried (delivered, refused) or its lane
//! stopped before it (queued), or after [`SEND_WAIT_MS`] (queued), and in every case
//! only once the message and its outbox entry are durable: after a flush, or at once
//! for a message that went on `/kith/dm/2` (it was flushed with its session before it
//! left). Its new status is then not flushed for the answer: a status lost in a crash
//! only sends the same sealed bytes again, which the recipient answers from their
//! digest without storing the message twice.

mod admission;
mod batch;
mod collect;
mod deposit;
pub(crate) mod device;
pub(crate) mod keys;
mod receive;
mod receive2;
mod repair;
mod send2;

pub use admission::{check_send, follow_proof, is_mutual};

use std::collections::BTreeMap;

use kith_protocol::{
    attachment::SealedAttachment,
    dm::{DmReply, DmRequest, MessageId, Plain},
    AuthorId, RecordKind,
};

use super::{outbox::Lanes, Answer, AnswerId, Context, Effect, FlushId, ReplyId, Timer};
use crate::{
    api::ApiError,
    store::{DmRecord, DmStatus, OutboxEntry, StoreError},
};

/// How long `msg send` waits for its message's first delivery attempt (ms) before
/// answering "queued".
pub const SEND_WAIT_MS: u64 = 3_000;
/// How long the digest of an accepted `/kith/dm/2` envelope is kept (ms): a repeat
/// within it is answered with its receipt; later, it no longer opens (its message key is
/// spent, its fallback key forgotten) and the message is stored once by its id anyway.
pub const RECEIVED_KEEP_MS: u64 = 30 * 24 * 3_600_000;
/// Most digests forgotten in one look (hourly, with the device's keys).
const MAX_PRUNED: usize = 100_000;
/// Longest reason kept from a refusal.
const MAX_REASON: usize = 200;

/// A message to send, its attachments already sealed for it.
#[derive(Debug)]
pub struct Outgoing {
    /// The recipient.
    pub peer: AuthorId,
    /// Its id (chosen by the driver: the attachments are sealed for it).
    pub id: MessageId,
    /// The text.
    pub text: String,
    /// Sealed attachments.
    pub attachments: Vec<SealedAttachment>,
}

/// What waits for a flush.
#[derive(Debug)]
enum Held {
    /// A `msg send` answer.
    Sent { answer: AnswerId, id: MessageId, status: DmStatus, reason: Option<String> },
    /// A receipt: sent once the message it promises is durable (`v2`: on
    /// `/kith/dm/2`, wrapped in its reply).
    Receipt { reply: ReplyId, id: MessageId, v2: bool },
    /// A `/kith/dm/2` message sealed on a session whose new state must be durable
    /// before it leaves.
    Deliver { peer: AuthorId, message: [u8; 16], bytes: Vec<u8>, lookup: bool },
    /// Envelopes collected from `mailbox`: acknowledged, and receipts for the messages
    /// among them sent, once they are durable.
    Collected {
        mailbox: AuthorId,
        ids: Vec<kith_protocol::mailbox::HeldId>,
        receipts: Vec<collect::OutgoingReceipt>,
    },
    /// A claimed one-time key, given once the device that holds its secret is durable.
    Claimed { reply: ReplyId, prekey: Option<kith_protocol::olm::prekey::SignedPrekey> },
    /// The receipts of a `/kith/dm/2` batch, sent once its messages are durable.
    Receipts { reply: ReplyId, receipts: Vec<DmReply> },
}

/// The dm concern's state.
#[derive(Default)]
pub(crate) struct Dm {
    keys: keys::PairKeyCache,
    /// Recent peers' announced devices, verified.
    known: send2::KnownDevices,
    lanes: Lanes,
    /// `msg send` requests waiting for their message's status, by message.
    waiting: BTreeMap<[u8; 16], (AnswerId, [u8; 32])>,
    held: BTreeMap<FlushId, Held>,
    /// This node's device, once loaded or made.
    device: Option<device::Local>,
    /// Whether the announcement of the device was checked in this run.
    announced: bool,
    /// A message was sent or accepted before it was: the device is needed.
    device_wanted: bool,
    /// What each busy lane has in flight (by peer).
    flights: BTreeMap<[u8; 32], send2::Flight>,
    /// Session renewals in a row, by peer.
    renewals: BTreeMap<[u8; 32], u32>,
    /// "Not now" answers in a row, by peer (see [`send2::MAX_LATERS`]).
    laters: BTreeMap<[u8; 32], u32>,
    /// Devices whose sessions were dropped: a one-time key is claimed before the next
    /// seal.
    renewing: std::collections::BTreeSet<kith_protocol::olm::device::DeviceId>,
    /// One-time keys claimed and not used yet, by device.
    claimed:
        BTreeMap<kith_protocol::olm::device::DeviceId, kith_protocol::olm::prekey::SignedPrekey>,
    /// One-time keys handed out, by peer: (hour, count) for the limit.
    claims: BTreeMap<AuthorId, (u64, u32)>,
    /// Messages deposited with mailboxes, and the lanes' passes.
    deposits: deposit::Deposits,
    /// When the last received message arrived (ms; kept strictly rising in a run).
    last_arrival: u64,
    /// Whether the receipts kept from an earlier run were sent again.
    receipts_resent: bool,
    /// Peers whose last batch stopped early: the next message goes alone.
    single: std::collections::BTreeSet<[u8; 32]>,
}

impl Dm {
    /// Whether a message was sent or accepted while the device's announcement was not
    /// checked yet in this run (asked once per input; see [`Dm::check_device`]).
    pub(crate) fn take_device_wanted(&mut self) -> bool {
        std::mem::take(&mut self.device_wanted)
    }

    /// The arrival time of a message received at `now`: `now`, or just after the last
    /// one when that was as late (threads are ordered by arrival).
    fn arrival(&mut self, now: u64) -> u64 {
        self.last_arrival = now.max(self.last_arrival.saturating_add(1));
        self.last_arrival
    }

    /// Looks at this node's device: loads it (or, when `create`, makes it if there is
    /// none), applies the rotation rules when `maintain`, and stores it. Returns the
    /// announcement to publish when this node's latest one is not the device's current
    /// one. Failures are logged: messages keep going as they can.
    pub(crate) fn check_device(
        &mut self,
        cx: &Context,
        create: bool,
        maintain: bool,
        now: u64,
    ) -> Option<RecordKind> {
        match self.try_check_device(cx, create, maintain, now) {
            Ok(kind) => kind,
            Err(error) => {
                tracing::warn!(%error, "cannot keep this node's device");
                None
            }
        }
    }

    fn try_check_device(
        &mut self,
        cx: &Context,
        create: bool,
        maintain: bool,
        now: u64,
    ) -> Result<Option<RecordKind>, device::DeviceError> {
        if self.device.is_none() {
            self.device = device::Local::load(cx, create, now)?;
        }
        let Some(local) = self.device.as_mut() else { return Ok(None) };
        if maintain {
            if let Some(prekey) = local.device.maintain(now)? {
                tracing::info!(created = prekey.prekey.created, "rotated the fallback key");
            }
            let before = now.saturating_sub(RECEIVED_KEEP_MS);
            let pruned = cx.store.prune_olm_received(before, MAX_PRUNED)?;
            if pruned > 0 {
                tracing::debug!(pruned, "forgot the digests of old accepted envelopes");
            }
        }
        let wanted = local.announcement(now)?;
        local.save(cx)?;
        self.announced = true;
        if device::published(cx, &cx.me, &wanted)? {
            return Ok(None);
        }
        Ok(Some(RecordKind::Devices(wanted)))
    }

    /// Lends this node's device (loaded; or made, when `create` and there is none) to
    /// the group concern for one input (issue #19: group key shares on Olm sessions); it
    /// comes back with [`Dm::return_device`] before anything else uses it. `None` when
    /// there is none.
    pub(crate) fn lend_device(
        &mut self,
        cx: &Context,
        create: bool,
        now: u64,
    ) -> Option<device::Local> {
        let stored = || cx.store.olm_device().ok().flatten().is_some();
        if self.device.is_none() && (create || stored()) {
            self.device_wanted = true;
            let _ = self.check_device(cx, create, false, now);
        }
        self.device.take()
    }

    /// The device lent by [`Dm::lend_device`] comes back. `wanted`: its account changed
    /// (a session started from its keys: a used fallback key is rotated and announced),
    /// or, when none was lent, the group concern wants one made (this node joined a
    /// group).
    pub(crate) fn return_device(&mut self, local: Option<device::Local>, wanted: bool) {
        let lent = local.is_some();
        if lent {
            self.device = local;
        }
        self.device_wanted |= wanted || (lent && !self.announced);
    }

    /// `msg send`: admission, seal, store with its outbox entry, then its lane starts
    /// (unless busy: it takes the message in its turn). Answered later.
    pub(crate) fn handle_send(
        &mut self,
        cx: &mut Context,
        out: Outgoing,
        answer: AnswerId,
        now: u64,
    ) -> Vec<Effect> {
        match self.queue(cx, out, now) {
            Ok(entry) => {
                self.device_wanted |= !self.announced;
                self.waiting.insert(entry.id, (answer, entry.peer));
                let at = now.saturating_add(SEND_WAIT_MS);
                let mut effects = vec![Effect::Schedule { at, timer: Timer::SendWait(answer) }];
                effects.extend(self.start_lane(cx, entry.peer, now));
                effects
            }
            Err(error) => vec![Effect::Answer { answer, result: Err(error) }],
        }
    }

    /// Seals and stores the message with its outbox entry.
    fn queue(&mut self, cx: &Context, out: Outgoing, now: u64) -> Result<OutboxEntry, ApiError> {
        check_send(cx, &out.peer, &out.text, !out.attachments.is_empty())?;
        let Outgoing { peer, id, text, attachments } = out;
        let plain = Plain { id, timestamp: now, text, attachments };
        // Sealed for `/kith/dm/1` only when it will go there: on `/kith/dm/2` it is
        // sealed when its lane reaches it, and a `/kith/dm/1` request was two X25519
        // ladders for nothing. Left empty, it is sealed if a lane ever needs it
        // ([`Dm::request_v1`]).
        let request = if self.goes_on_v2(cx, &peer) {
            Vec::new()
        } else {
            self.request_v1(cx, &peer, &plain).map_err(ApiError::internal)?
        };
        let entry = OutboxEntry {
            id: *id.as_bytes(),
            peer: *peer.as_bytes(),
            request,
            attempts: 0,
            order: 0,
        };
        let mut record = DmRecord {
            id: id.to_string(),
            from: cx.me.to_string(),
            to: peer.to_string(),
            text: plain.text,
            timestamp: plain.timestamp,
            sent_at: None,
            status: DmStatus::Queued,
            reason: None,
            read: true,
            attachments: Vec::new(),
        };
        record.set_attachments(&plain.attachments)?;
        cx.store.dm_insert(&peer, &cx.me, id.as_bytes(), &record, Some(&entry))?;
        Ok(entry)
    }

    /// Whether a message to `peer` queued now will go on `/kith/dm/2`: this node's device
    /// is announced and the peer's is known.
    fn goes_on_v2(&mut self, cx: &Context, peer: &AuthorId) -> bool {
        self.announced
            && self.device.is_some()
            && self.known.newest(cx, peer).is_ok_and(|d| d.is_some())
    }

    /// The `/kith/dm/1` request carrying `plain` to `peer` (sealed anew each time: the
    /// recipient stores a message once by its id).
    pub(super) fn request_v1(
        &mut self,
        cx: &Context,
        peer: &AuthorId,
        plain: &Plain,
    ) -> Result<Vec<u8>, String> {
        let sealed = self
            .keys
            .with(&cx.keys, peer, |keys| {
                kith_protocol::dm::Sealed::seal_with(&cx.keys, keys, plain)
            })
            .map_err(|e| e.to_string())?;
        DmRequest { sealed, follow_proof: follow_proof(&cx.store, &cx.me, peer) }
            .to_bytes()
            .map_err(|e| e.to_string())
    }

    /// A look at the outbox (a timer, or `forced`'s peer connected): starts the lanes
    /// whose time has come.
    pub(crate) fn handle_due(
        &mut self,
        cx: &mut Context,
        forced: Option<&AuthorId>,
        now: u64,
    ) -> Vec<Effect> {
        let entries = match cx.store.dm_outbox() {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(%error, "cannot read the outbox");
                return Vec::new();
            }
        };
        let forced = forced.map(|a| *a.as_bytes());
        if let Some(peer) = &forced {
            self.lanes.nudge(peer);
        }
        let due = self.lanes.due(entries.iter().map(|e| e.peer), now, forced.as_ref());
        let mut effects = self.resend_receipts(cx);
        effects.extend(due.into_iter().flat_map(|peer| self.start_lane(cx, peer, now)));
        effects
    }

    /// Starts `peer`'s lane at its oldest queued message, unless it is busy.
    fn start_lane(&mut self, cx: &mut Context, peer: [u8; 32], now: u64) -> Vec<Effect> {
        if self.lanes.busy(&peer) {
            return Vec::new();
        }
        self.deposits.start_pass(peer);
        self.next_in_lane(cx, peer, now)
    }

    /// Delivers `peer`'s oldest queued message, or ends the lane when none is left.
    fn next_in_lane(&mut self, cx: &mut Context, peer: [u8; 32], now: u64) -> Vec<Effect> {
        let next = match cx.store.dm_outbox() {
            Ok(all) => {
                all.into_iter().find(|e| e.peer == peer && self.deposits.takes(cx, &peer, &e.id))
            }
            Err(error) => {
                tracing::error!(%error, "cannot read the outbox");
                return self.stop_lane(cx, peer, now);
            }
        };
        let Some(entry) = next else {
            if self.deposits.end_pass(&peer) {
                // Held messages stay: the lane is tried again later.
                return self.stop_lane(cx, peer, now);
            }
            self.lanes.finish(peer, true, now);
            return Vec::new();
        };
        let Ok(to) = AuthorId::from_bytes(entry.peer) else { return self.stop_lane(cx, peer, now) };
        self.lanes.claim(peer, entry.id);
        let _ = cx.store.dm_outbox_attempted(&entry.id);
        self.deliver(cx, &to, entry, now)
    }

    /// `peer`'s lane stops at a message that could not be delivered now: its retry is
    /// scheduled, and every `msg send` waiting on this peer learns "queued".
    fn stop_lane(&mut self, cx: &mut Context, peer: [u8; 32], now: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.flights.remove(&peer);
        self.deposits.end_pass(&peer);
        if let Some(at) = self.lanes.finish(peer, false, now) {
            effects.push(Effect::Schedule { at, timer: Timer::Outbox });
        }
        let waiting: Vec<[u8; 16]> =
            self.waiting.iter().filter(|(_, (_, p))| *p == peer).map(|(m, _)| *m).collect();
        for message in waiting {
            effects.extend(self.settle(cx, message, DmStatus::Queued, None));
        }
        effects
    }

    /// The outcome of delivering `message` to `peer`: the peer's reply, or why there was
    /// none. A reply for a message the lane is not delivering is ignored.
    pub(crate) fn handle_reply(
        &mut self,
        cx: &mut Context,
        peer: &AuthorId,
        message: [u8; 16],
        result: Result<Vec<u8>, String>,
        now: u64,
    ) -> Vec<Effect> {
        let key = *peer.as_bytes();
        if self.lanes.current(&key) != Some(message) {
            return Vec::new();
        }
        let mut effects = Vec::new();
        let flight = self.flights.remove(&key);
        // A message sealed on a session was flushed (with its outbox entry) before it
        // left: its answer needs no flush of its own.
        let flushed = matches!(flight, Some(send2::Flight::Sealed(_)));
        let result = match flight {
            None | Some(send2::Flight::V1) => result,
            Some(flight) => {
                match self.reply2(cx, peer, (message, flight), result, now, &mut effects) {
                    Some(result) => result,
                    None => return effects,
                }
            }
        };
        let (status, reason) = outcome(peer, &message, result);
        if status == DmStatus::Queued {
            effects.extend(self.undelivered(cx, peer, message, now));
            return effects;
        }
        // Not flushed here: a `msg send` answer flushes first, and a status lost in a
        // crash only sends the message again, which the recipient answers without
        // storing it twice.
        if let Err(error) = cx.store.dm_set_status(&cx.me, &message, status, reason.clone()) {
            tracing::error!(%error, "cannot record delivery");
            effects.extend(self.stop_lane(cx, key, now));
            return effects;
        }
        self.deposits.forget(&message);
        self.lanes.reached(&key);
        if flushed {
            effects.extend(self.settle_flushed(message, status, reason));
        } else {
            effects.extend(self.settle(cx, message, status, reason));
        }
        effects.extend(self.next_in_lane(cx, key, now));
        effects
    }

    /// `msg send`'s wait is over: "queued" unless its message was settled before.
    pub(crate) fn handle_send_wait(&mut self, cx: &mut Context, answer: AnswerId) -> Vec<Effect> {
        let message = self.waiting.iter().find(|(_, (a, _))| *a == answer).map(|(m, _)| *m);
        message.map(|m| self.settle(cx, m, DmStatus::Queued, None)).unwrap_or_default()
    }

    /// The status of `message` is known: a `msg send` waiting for it is answered after
    /// a flush.
    fn settle(
        &mut self,
        cx: &mut Context,
        message: [u8; 16],
        status: DmStatus,
        reason: Option<String>,
    ) -> Vec<Effect> {
        let Some((answer, _)) = self.waiting.remove(&message) else { return Vec::new() };
        let flush = cx.flush_id();
        let id = MessageId::from_bytes(message);
        self.held.insert(flush, Held::Sent { answer, id, status, reason });
        vec![Effect::Flush(flush)]
    }

    /// [`Dm::settle`] for a message known durable (sealed on a session and flushed before
    /// it left) that was delivered or refused: the answer goes now, without a flush.
    fn settle_flushed(
        &mut self,
        message: [u8; 16],
        status: DmStatus,
        reason: Option<String>,
    ) -> Option<Effect> {
        let (answer, _) = self.waiting.remove(&message)?;
        let id = MessageId::from_bytes(message);
        Some(sent_answer(answer, id, status, reason, &Ok(())))
    }

    /// A flush is done: answers and receipts held for it go out.
    pub(crate) fn handle_flushed(
        &mut self,
        cx: &mut Context,
        flush: FlushId,
        result: &Result<(), StoreError>,
        now: u64,
    ) -> Vec<Effect> {
        let Some(held) = self.held.remove(&flush) else { return Vec::new() };
        self.release(cx, held, result, now)
    }

    /// What waited for a flush goes out (or learns the flush failed).
    fn release(
        &mut self,
        cx: &mut Context,
        held: Held,
        result: &Result<(), StoreError>,
        now: u64,
    ) -> Vec<Effect> {
        vec![match held {
            Held::Receipts { reply, receipts } => {
                batch::receipts_flushed(reply, receipts, result.is_ok())
            }
            Held::Collected { mailbox, ids, receipts } => {
                if let Err(error) = result {
                    // Not acknowledged: collected again next time.
                    tracing::error!(%error, "cannot flush collected messages");
                    return Vec::new();
                }
                let mut effects: Vec<Effect> =
                    receipts.into_iter().map(collect::OutgoingReceipt::effect).collect();
                if !ids.is_empty() {
                    effects.insert(0, Effect::MailboxAck { mailbox, ids });
                }
                return effects;
            }
            Held::Deliver { peer, message, bytes, lookup } => {
                if let Err(error) = result {
                    tracing::error!(%error, "cannot flush a session: the message waits");
                    return self.stop_lane(cx, *peer.as_bytes(), now);
                }
                if self.deposits.unreachable(peer.as_bytes()) {
                    // Not dialled again in this pass: deposited.
                    return self.undelivered(cx, &peer, message, now);
                }
                Effect::Deliver { peer, message, bytes, lookup, proto: super::DmProto::V2 }
            }
            Held::Claimed { reply, prekey } => {
                let prekey = if result.is_ok() { prekey } else { None };
                receive2::respond2(reply, &kith_protocol::olm::envelope::Dm2Reply::Claimed(prekey))
            }
            Held::Sent { answer, id, status, reason } => {
                sent_answer(answer, id, status, reason, result)
            }
            Held::Receipt { reply, id, v2 } => {
                let receipt = match result {
                    Ok(()) => DmReply::Delivered { id },
                    Err(_) => receive::refusal(Some(id), receive::STORE_FAILED),
                };
                if v2 {
                    receive2::respond2(
                        reply,
                        &kith_protocol::olm::envelope::Dm2Reply::Receipt(receipt),
                    )
                } else {
                    receive::respond(reply, &receipt)
                }
            }
        }]
    }
}

/// The answer to `msg send` of message `id` with `status` (`result`: the flush it
/// waited for, if any).
fn sent_answer(
    answer: AnswerId,
    id: MessageId,
    status: DmStatus,
    reason: Option<String>,
    result: &Result<(), StoreError>,
) -> Effect {
    let result = match (result, status) {
        (Err(error), _) => Err(ApiError::internal(format!("store: {error}"))),
        (Ok(()), DmStatus::Refused) => Err(ApiError::refused(format!(
            "refused by the recipient: {}",
            reason.unwrap_or_default()
        ))),
        (Ok(()), status) => Ok(Answer::MsgSent { id, status }),
    };
    Effect::Answer { answer, result }
}

/// What a delivery attempt's result means: delivered, refused (with the reason, cut to
/// [`MAX_REASON`] bytes) or still queued.
fn outcome(
    peer: &AuthorId,
    message: &[u8; 16],
    result: Result<Vec<u8>, String>,
) -> (DmStatus, Option<String>) {
    let reply = match result {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::debug!(%peer, %error, "message not delivered yet");
            return (DmStatus::Queued, None);
        }
    };
    match DmReply::from_bytes(&reply) {
        Ok(DmReply::Delivered { id }) if id.as_bytes() == message => (DmStatus::Delivered, None),
        Ok(DmReply::Refused { reason, .. }) => (DmStatus::Refused, Some(cut(reason))),
        Ok(DmReply::Delivered { .. }) | Err(_) => {
            tracing::info!(%peer, "unexpected reply to a direct message");
            (DmStatus::Queued, None)
        }
    }
}

/// A refusal's reason as kept: at most [`MAX_REASON`] bytes.
fn cut(mut reason: String) -> String {
    let mut end = MAX_REASON.min(reason.len());
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.truncate(end);
    reason
}
