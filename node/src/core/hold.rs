//! Holding sealed envelopes for others (issue #18, item 2): this node as a mailbox.
//!
//! A deposit is held only for a person whose latest `Mailboxes` record names this node
//! and who is this node's mutual connection; everyone else is refused
//! ([`Refusal::NotHolding`]). Within quotas per recipient (envelopes and bytes), per
//! depositing node and in total ([`MailboxConfig`]), it is stored and flushed before it
//! is answered `Accepted`. A collect is about the asker's own envelopes, in the order
//! they were deposited; an acknowledgement deletes them. Envelopes older than the TTL are
//! never handed out and are deleted by the sweep every [`SWEEP_EVERY_MS`].

use std::collections::BTreeMap;

use kith_protocol::{
    mailbox::{
        HeldId, MailboxReply, MailboxRequest, Refusal, MAX_COLLECT_ITEMS, MAX_MAILBOX_REPLY_BYTES,
    },
    AuthorId,
};
use libp2p::PeerId;

use super::{dm::is_mutual, Context, Effect, FlushId, ReplyId, Timer};
use crate::{
    config::MailboxConfig,
    store::{HeldTally, Released, StoreError},
};

/// How often envelopes past their TTL are deleted, ms.
pub const SWEEP_EVERY_MS: u64 = 60 * 60 * 1000;
/// Room in a collect answer for everything but the envelopes.
const REPLY_SLACK: usize = 4096;
const MIB: u64 = 1024 * 1024;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The holding concern's state.
#[derive(Default)]
pub(crate) struct Hold {
    limits: MailboxConfig,
    /// What is held, counted once from the store and kept up to date.
    tally: Option<HeldTally>,
    /// `Accepted` answers waiting for their flush.
    waiting: BTreeMap<FlushId, (ReplyId, HeldId)>,
}

/// Which quota an envelope of `size` bytes for `recipient` from `depositor` would
/// exceed, if any.
fn over_quota(
    limits: &MailboxConfig,
    tally: &HeldTally,
    (recipient, depositor): (&AuthorId, &AuthorId),
    size: u64,
) -> Option<Refusal> {
    let mine = tally.recipients.get(recipient).copied().unwrap_or_default();
    let theirs = tally.depositors.get(depositor).copied().unwrap_or_default();
    if mine.count >= limits.per_recipient_messages
        || mine.bytes + size > limits.per_recipient_mb.saturating_mul(MIB)
    {
        Some(Refusal::RecipientFull)
    } else if theirs.bytes + size > limits.per_depositor_mb.saturating_mul(MIB) {
        Some(Refusal::DepositorFull)
    } else if tally.total.bytes + size > limits.total_mb.saturating_mul(MIB) {
        Some(Refusal::Full)
    } else {
        None
    }
}

/// The effect that answers mailbox request `reply` with `answer`.
fn respond(reply: ReplyId, answer: &MailboxReply) -> Effect {
    super::respond_encoded(reply, answer.to_bytes())
}

impl Hold {
    /// Uses `limits` from now on.
    pub(crate) fn set_limits(&mut self, limits: MailboxConfig) {
        self.limits = limits;
    }

    fn ttl_ms(&self) -> u64 {
        self.limits.ttl_days.saturating_mul(DAY_MS)
    }

    fn tally(&mut self, cx: &Context) -> Result<&mut HeldTally, StoreError> {
        if self.tally.is_none() {
            self.tally = Some(cx.store.held_tally()?);
        }
        self.tally.as_mut().ok_or_else(|| StoreError::Corrupt("held tally".into()))
    }

    fn released(&mut self, released: &[Released]) {
        if let Some(tally) = self.tally.as_mut() {
            for r in released {
                tally.count(r.recipient, r.depositor, r.bytes, false);
            }
        }
    }

    /// An inbound `/kith/mailbox/1` request from `from`.
    pub(crate) fn handle_request(
        &mut self,
        cx: &mut Context,
        from: PeerId,
        bytes: &[u8],
        reply: ReplyId,
        now: u64,
    ) -> Vec<Effect> {
        let refused = |refusal| vec![respond(reply, &MailboxReply::Refused(refusal))];
        let (Ok(request), Ok(asker)) =
            (MailboxRequest::from_bytes(bytes), AuthorId::from_peer_id(&from))
        else {
            tracing::debug!(peer = %from, "malformed mailbox request");
            return refused(Refusal::Invalid);
        };
        let result = match request {
            MailboxRequest::Deposit { recipient, envelope } => {
                self.deposit(cx, (&recipient, &asker), &envelope, reply, now)
            }
            MailboxRequest::Collect { after } => {
                let not_before = now.saturating_sub(self.ttl_ms());
                let limits = (MAX_COLLECT_ITEMS, MAX_MAILBOX_REPLY_BYTES - REPLY_SLACK);
                cx.store
                    .held_after(&asker, after, not_before, limits)
                    .map(|(items, more)| vec![respond(reply, &MailboxReply::Held { items, more })])
            }
            MailboxRequest::Ack { ids } => self
                .ack(cx, &asker, &ids)
                .map(|removed| vec![respond(reply, &MailboxReply::Acked { removed })]),
        };
        result.unwrap_or_else(|error| {
            tracing::error!(%error, "mailbox store failed");
            refused(Refusal::Unavailable)
        })
    }

    /// Holds `envelope` for `recipient` from `depositor`, or refuses it.
    fn deposit(
        &mut self,
        cx: &mut Context,
        (recipient, depositor): (&AuthorId, &AuthorId),
        envelope: &[u8],
        reply: ReplyId,
        now: u64,
    ) -> Result<Vec<Effect>, StoreError> {
        let refused = |refusal| Ok(vec![respond(reply, &MailboxReply::Refused(refusal))]);
        let listed = cx.store.mailboxes_of(recipient)?.contains(&cx.me);
        if !listed || !is_mutual(&cx.store, &cx.me, recipient)? {
            return refused(Refusal::NotHolding);
        }
        let size = envelope.len() as u64;
        let limits = self.limits;
        // Held already (a retry): no quota applies to it again.
        let again = cx.store.held_has(recipient, &HeldId::of(envelope))?;
        let tally = self.tally(cx)?;
        if let Some(refusal) = over_quota(&limits, tally, (recipient, depositor), size) {
            if !again {
                return refused(refusal);
            }
        }
        let (id, new) = cx.store.held_put(recipient, depositor, now, envelope)?;
        if new {
            tally.count(*recipient, *depositor, size, true);
        }
        // Held again or new: `Accepted` only once it is durable.
        let flush = cx.flush_id();
        self.waiting.insert(flush, (reply, id));
        Ok(vec![Effect::Flush(flush)])
    }

    /// Deletes the asker's envelopes named in `ids`; how many were held.
    fn ack(&mut self, cx: &Context, asker: &AuthorId, ids: &[HeldId]) -> Result<u32, StoreError> {
        let mut released = Vec::new();
        for id in ids {
            released.extend(cx.store.held_remove(asker, id)?);
        }
        self.released(&released);
        Ok(u32::try_from(released.len()).unwrap_or(u32::MAX))
    }

    /// The sweep: envelopes past their TTL are deleted; the next sweep is scheduled.
    pub(crate) fn handle_sweep(&mut self, cx: &Context, now: u64) -> Vec<Effect> {
        match cx.store.held_expire(now.saturating_sub(self.ttl_ms())) {
            Ok(released) => {
                if !released.is_empty() {
                    tracing::info!(count = released.len(), "dropped expired mailbox envelopes");
                }
                self.released(&released);
            }
            Err(error) => tracing::error!(%error, "cannot sweep the mailbox"),
        }
        let at = now.saturating_add(SWEEP_EVERY_MS);
        vec![Effect::Schedule { at, timer: Timer::HoldSweep }]
    }

    /// A flush is done: the deposits waiting for it are answered.
    pub(crate) fn handle_flushed(
        &mut self,
        flush: FlushId,
        result: &Result<(), StoreError>,
    ) -> Vec<Effect> {
        let Some((reply, id)) = self.waiting.remove(&flush) else { return Vec::new() };
        let answer = match result {
            Ok(()) => MailboxReply::Accepted { id },
            Err(error) => {
                tracing::error!(%error, "cannot flush a held envelope");
                MailboxReply::Refused(Refusal::Unavailable)
            }
        };
        vec![respond(reply, &answer)]
    }
}
