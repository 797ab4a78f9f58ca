//! The driver's side of the core ([`crate::core`]): it hands the core an input with the
//! time and randomness, under a lock held only for [`Core::handle`], and carries out the
//! effects it returns, in order. A flush the core asks for is done here and reported
//! back, so answers that claim durability come only after it.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use kith_protocol::{AuthorId, Keypair, RecordKind, VerifiedRecord};
use libp2p::Multiaddr;
use rand_core::SeedableRng;
use tokio::sync::oneshot;

use super::{now_ms, view, LivePost, Node};
use crate::{
    api::{ApiError, RecordCounters},
    config::MailboxConfig,
    core::{Answer, AnswerId, Core, DmProto, Effect, GossipMessage, Input, ReplyId},
    net::{self, Responder},
    store::Store,
};

/// The core and the randomness it draws from.
pub(super) struct Engine {
    core: Core,
    rng: rand_pcg::Pcg64Mcg,
}

impl Engine {
    pub(super) fn new(keys: Keypair, store: Store, holding: MailboxConfig) -> Self {
        // Not secret: the core's randomness schedules and picks, it does not make keys.
        let seed = getrandom::u64().unwrap_or_else(|_| now_ms());
        let mut core = Core::new(keys, store);
        core.set_check_threads(std::thread::available_parallelism().map_or(1, |n| n.get()));
        core.set_mailbox_limits(holding);
        core.set_sync_pace(super::sync::pace(&net::idle_tuning()));
        let probe_after = net::gossip_tuning().probe_after;
        core.set_probe_after(probe_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
        Self { core, rng: rand_pcg::Pcg64Mcg::seed_from_u64(seed) }
    }
}

/// Who waits for the core: control requests for answers, inbound requests for
/// responses.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) next: AtomicU64,
    pub(super) answers:
        std::sync::Mutex<HashMap<AnswerId, oneshot::Sender<Result<Answer, ApiError>>>>,
    replies: std::sync::Mutex<HashMap<ReplyId, Responder>>,
}

pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Node {
    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        lock(&self.inner.core)
    }

    /// Runs `input` through the core now.
    fn step(&self, input: Input) -> Vec<Effect> {
        let mut engine = self.engine();
        let Engine { core, rng } = &mut *engine;
        core.handle(input, now_ms(), rng)
    }

    /// Ingest counters: the core's, and the requests the driver refused.
    pub(super) fn core_counters(&self) -> RecordCounters {
        let mut counters = self.engine().core.counters();
        counters.rate_limited += self.inner.rate_limited.load(Ordering::Relaxed);
        counters
    }

    /// Sync counters: (records fetched, records rejected).
    pub(super) fn core_sync_counters(&self) -> (u64, u64) {
        self.engine().core.sync_counters()
    }

    /// [`Node::step`] on a blocking thread (for inputs that check signatures).
    pub(super) async fn step_blocking(&self, input: Input) -> Vec<Effect> {
        let node = self.clone();
        match tokio::task::spawn_blocking(move || node.step(input)).await {
            Ok(effects) => effects,
            Err(error) => {
                tracing::error!(%error, "core task failed");
                Vec::new()
            }
        }
    }

    /// Whether the person may send `peer` a message (the core's admission), asked
    /// before attachments are prepared.
    pub(super) fn check_send(
        &self,
        peer: &AuthorId,
        text: &str,
        attaching: bool,
    ) -> Result<(), ApiError> {
        self.engine().core.check_send(peer, text, attaching)
    }

    /// Runs `input` through the core and carries out what follows. (Boxed: carrying
    /// out a delivery drives the core again.)
    pub(super) fn drive(&self, input: Input) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let effects = self.step(input);
        Box::pin(self.carry_out(effects))
    }

    /// [`Node::drive`] as a task of the node.
    fn drive_later(&self, input: Input, delay: Duration) {
        let node = self.clone();
        let task: Task = Box::pin(async move {
            if delay.is_zero() || node.pause(delay).await {
                node.drive(input).await;
            }
        });
        self.spawn(task);
    }

    /// Starts the outbox: every queue with messages is tried now.
    pub(super) fn drive_outbox(&self) {
        self.drive_later(Input::Timer(crate::core::Timer::Outbox), Duration::ZERO);
    }

    /// Starts looking after this node's device keys (rotation; the core schedules the
    /// next look).
    pub(super) fn drive_devices(&self) {
        self.drive_later(Input::Timer(crate::core::Timer::Devices), Duration::ZERO);
    }

    /// Starts the expiry of posts (the core schedules the next look).
    pub(super) fn drive_expiry(&self) {
        self.drive_later(Input::Timer(crate::core::Timer::Expiry), Duration::ZERO);
    }

    /// Starts looking after this node's mailboxes (presence, the choice; the core
    /// schedules the next look).
    pub(super) fn drive_mailboxes(&self) {
        self.drive_later(Input::Timer(crate::core::Timer::Mailboxes), Duration::ZERO);
    }

    /// Starts deleting envelopes held for others past their TTL (the core schedules the
    /// next sweep).
    pub(super) fn drive_hold_sweep(&self) {
        self.drive_later(Input::Timer(crate::core::Timer::HoldSweep), Duration::ZERO);
    }

    /// Starts the periodic sync rounds (the core schedules each one).
    pub(super) fn drive_sync_rounds(&self) {
        self.drive_later(Input::Timer(crate::core::Timer::SyncRound(0)), Duration::ZERO);
    }

    /// Asks the core: `input` made with a fresh answer id; waits for the answer.
    pub(super) async fn ask(
        &self,
        input: impl FnOnce(AnswerId) -> Input,
    ) -> Result<Answer, ApiError> {
        let pending = &self.inner.pending;
        let answer = AnswerId(pending.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        lock(&pending.answers).insert(answer, tx);
        self.drive(input(answer)).await;
        let mut rx = rx;
        let result = tokio::select! {
            biased;
            result = &mut rx => result.ok(),
            // Shutting down: the timers and deliveries an answer may wait for do not
            // run any more. A message is answered now as it stands (queued), once
            // flushed; anything else learns the node is stopping.
            () = self.closed() => {
                self.drive(Input::Timer(crate::core::Timer::SendWait(answer))).await;
                rx.try_recv().ok()
            }
        };
        lock(&pending.answers).remove(&answer);
        result.unwrap_or_else(|| Err(ApiError::unavailable("the node is shutting down")))
    }

    /// Hands an inbound request to the core; its response goes to `channel`.
    pub(super) async fn answer_request(
        &self,
        channel: Responder,
        input: impl FnOnce(ReplyId) -> Input,
    ) {
        let pending = &self.inner.pending;
        let reply = ReplyId(pending.next.fetch_add(1, Ordering::Relaxed));
        lock(&pending.replies).insert(reply, channel);
        self.drive(input(reply)).await;
        // A request the core did not answer (it cannot happen) fails at the peer.
        lock(&pending.replies).remove(&reply);
    }

    /// [`Node::answer_request`] with the core's work on a blocking thread.
    pub(super) async fn answer_request_blocking(
        &self,
        channel: Responder,
        input: impl FnOnce(ReplyId) -> Input,
    ) {
        let pending = &self.inner.pending;
        let reply = ReplyId(pending.next.fetch_add(1, Ordering::Relaxed));
        lock(&pending.replies).insert(reply, channel);
        let effects = self.step_blocking(input(reply)).await;
        self.carry_out(effects).await;
        lock(&pending.replies).remove(&reply);
    }

    /// The responder of inbound request `reply`, taken from those waiting.
    pub(super) fn take_responder(&self, reply: ReplyId) -> Option<Responder> {
        lock(&self.inner.pending.replies).remove(&reply)
    }

    /// Carries out `effects` in order; the effects of a flush's report run before the
    /// ones after the flush.
    async fn carry_out(&self, effects: Vec<Effect>) {
        let mut queue = VecDeque::from(effects);
        // A pull's next page asked before the core asked for it, with its answer.
        let mut prefetched = None;
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Publish { topic, bytes } => self.publish(topic, bytes).await,
                Effect::Verdict { id, from, verdict } => self.inner.net.report(id, from, verdict),
                Effect::Stored(record) => self.queue_thumbnails(&record),
                Effect::Notified(n) => self.announce_notification(n),
                Effect::LivePost(record) => self.send_live(&record),
                Effect::FillGap { peer, author } => self.fill_gap(peer, author),
                Effect::GossipMissed { topics } => self.inner.net.missed(topics),
                Effect::Probe { since, topics } => self.probe(since, topics),
                Effect::Flush(flush) => {
                    let result = self.inner.store.flush().await;
                    let after = self.step(Input::Flushed { flush, result });
                    for effect in after.into_iter().rev() {
                        queue.push_front(effect);
                    }
                }
                Effect::Answer { answer, result } => {
                    if let Some(tx) = lock(&self.inner.pending.answers).remove(&answer) {
                        let _ = tx.send(result);
                    }
                }
                Effect::Respond { reply, bytes } => {
                    let channel = lock(&self.inner.pending.replies).remove(&reply);
                    if let Some(channel) = channel {
                        self.inner.net.respond(channel, bytes).await;
                    }
                }
                Effect::Deliver { peer, message, bytes, lookup, proto } => {
                    let node = self.clone();
                    let task: Task = Box::pin(async move {
                        let proto = match proto {
                            DmProto::V1 => net::Proto::Dm,
                            DmProto::V2 => net::Proto::Dm2,
                        };
                        let result = node.deliver(peer, bytes, lookup, proto).await;
                        node.drive(Input::DmDelivered { peer, message, result }).await;
                    });
                    self.spawn(task);
                }
                Effect::GroupDeliver { peer, n, bytes } => {
                    let node = self.clone();
                    let task: Task = Box::pin(async move {
                        let result = node.deliver(peer, bytes, true, net::Proto::Group).await;
                        node.drive(Input::GroupDelivered { peer, n, result }).await;
                    });
                    self.spawn(task);
                }
                Effect::GroupAsk { peer, group, bytes } => {
                    let node = self.clone();
                    let task: Task = Box::pin(async move {
                        let Ok(peer_id) = peer.to_peer_id() else { return };
                        let net = &node.inner.net;
                        let result = net
                            .request(net::Proto::Group, peer_id, Vec::new(), bytes)
                            .await
                            .map_err(|e| e.to_string());
                        node.drive(Input::GroupHistory { peer, group, result }).await;
                    });
                    self.spawn(task);
                }
                Effect::Received { sender, record, message, hidden } => {
                    self.receive_attachments(sender, &record, message);
                    if !hidden {
                        // Who and which message, never what it says.
                        let from = sender.to_peer_id().map(|p| self.peer_label(&p));
                        let from = from.unwrap_or_else(|_| sender.to_string());
                        tracing::info!(%from, id = %record.id, "direct message received");
                    }
                }
                Effect::Query { peer, bytes, pull: Some(answer) } => {
                    // One question of a pull at a time: its answer's effects (the next
                    // question among them) run in its place. The next page is asked
                    // while the core checks and stores this one (`Node::pull_answer`).
                    let result = match prefetched.take() {
                        // The early checks stop here (dropped), as the core's start.
                        Some(((a, p, asked), reply, _ahead))
                            if (a, p) == (answer, peer) && asked == bytes =>
                        {
                            reply
                        }
                        _ => self.sync_query(peer, bytes.clone()).await,
                    };
                    let (after, next) = self.pull_answer(answer, peer, &bytes, result).await;
                    prefetched = next;
                    for effect in after.into_iter().rev() {
                        queue.push_front(effect);
                    }
                }
                Effect::Query { peer, bytes, pull: None } => {
                    let node = self.clone();
                    let task: Task = Box::pin(async move {
                        if let Err(failure) = node.sync_query(peer, bytes).await {
                            tracing::debug!(%peer, error = %failure.reason, "offer failed");
                        }
                    });
                    self.spawn(task);
                }
                Effect::Serve { reply, peer: _, query, friend } => {
                    self.serve_sync(reply, *query, friend).await;
                }
                Effect::Dial { addr, bootstrap } => self.dial_for_discovery(addr, bootstrap),
                Effect::DialPeer(peer) => self.inner.net.dial_peer(peer).await,
                Effect::SyncRound => self.run_sync_round(),
                Effect::SyncWith(peer) => self.sync_later(peer),
                Effect::Reach(who) => self.reach_later(who),
                Effect::FindTagPeers(tag) => self.find_tag_peers(tag),
                Effect::StopProviding(tag) => {
                    self.inner.net.stop_providing(super::discovery::tag_key(&tag)).await;
                }
                Effect::Friends { followed, mutual } => self.set_friends(followed, mutual),
                Effect::MailboxAck { mailbox, ids } => self.mailbox_ack(mailbox, ids),
                Effect::Deposit { peer, message, envelope, mailboxes } => {
                    let report = move |accepted| Input::Deposited { peer, message, accepted };
                    self.deposit(peer, envelope, mailboxes, report);
                }
                Effect::CollectMailboxes => self.collect_now(),
                Effect::GroupDeposit { peer, n, envelope, mailboxes } => {
                    let report = move |accepted| Input::GroupDeposited { peer, n, accepted };
                    self.deposit(peer, envelope, mailboxes, report);
                }
                Effect::Receipt { peer, request, deposit, mailboxes, key } => {
                    self.send_receipt(peer, (request, deposit), mailboxes, key)
                }
                Effect::Schedule { at, timer } => {
                    let delay = Duration::from_millis(at.saturating_sub(now_ms()));
                    self.drive_later(Input::Timer(timer), delay);
                }
            }
        }
    }

    /// Sends a direct message request to `peer` at the addresses this node dialled it
    /// at, and at the DHT's when `lookup` and not connected.
    pub(super) async fn deliver(
        &self,
        peer: AuthorId,
        bytes: Vec<u8>,
        lookup: bool,
        proto: net::Proto,
    ) -> Result<Vec<u8>, String> {
        let peer_id = peer.to_peer_id().map_err(|e| e.to_string())?;
        let known = self.inner.store.known_peers_of(&peer_id.to_string()).unwrap_or_default();
        let mut addrs: Vec<Multiaddr> = known.iter().filter_map(|a| a.parse().ok()).collect();
        if lookup && !self.inner.net.is_connected(peer_id).await {
            // The remembered addresses did not work before: ask the DHT.
            addrs.extend(self.inner.net.find_peer(peer_id).await);
        }
        self.inner.net.request(proto, peer_id, addrs, bytes).await.map_err(|e| e.to_string())
    }

    async fn publish(&self, topic: String, bytes: Vec<u8>) {
        match self.inner.net.publish(topic.clone(), bytes).await {
            Ok(0) => tracing::debug!(%topic, "no peer on topic yet"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%topic, %error, "publish failed"),
        }
    }

    /// Shows a new record to live feeds, if anyone watches and it is a post they show.
    pub(super) fn send_live(&self, record: &VerifiedRecord) {
        if self.inner.live.receiver_count() == 0 {
            return;
        }
        let (store, reader) = (&self.inner.store, self.reader());
        if let Some(item) = view::feed_item_of(store, &reader, record.id(), record.record()) {
            let _ = self.inner.live.send(LivePost { item, author: record.record().author });
        }
    }

    /// Appends a record to our own log (next seq, prev, sign, store, flush) and publishes
    /// it: the core decides, this carries it out.
    pub(crate) async fn publish_own(&self, kind: RecordKind) -> Result<VerifiedRecord, ApiError> {
        match self.ask(|answer| Input::Publish { kind, answer }).await? {
            Answer::Published(record) => Ok(*record),
            other => Err(ApiError::internal(format!("the core answered {other:?}"))),
        }
    }

    /// Ingests gossip messages in order (checks, signature, store: the core's work, on a
    /// blocking thread since signature checks cost) and carries out the verdicts.
    pub(super) async fn handle_gossip(&self, batch: Vec<GossipMessage>) {
        let senders: Vec<_> = batch.iter().map(|m| (m.id.clone(), m.from)).collect();
        let node = self.clone();
        match tokio::task::spawn_blocking(move || node.step(Input::Gossip(batch))).await {
            Ok(effects) => {
                self.carry_out(effects).await;
            }
            Err(error) => {
                tracing::error!(%error, "ingest task failed");
                self.engine().core.count_lost(senders.len() as u64);
                for (id, source) in senders {
                    self.inner.net.report(id, source, net::Verdict::Ignore);
                }
            }
        }
    }
}
