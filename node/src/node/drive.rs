//! The driver's side of the core ([`crate::core`]): it hands the core an input with the
//! time and randomness, under a lock held only for [`Core::handle`], and carries out the
//! effects it returns, in order. A flush the core asks for is done here and reported
//! back, so answers that claim durability come only after it.

use std::collections::VecDeque;

use kith_protocol::{Keypair, RecordKind, VerifiedRecord};
use rand_core::SeedableRng;

use super::{now_ms, view, LivePost, Node};
use crate::{
    api::{ApiError, RecordCounters},
    core::{Answer, AnswerId, Core, Effect, GossipMessage, Input},
    net,
    store::Store,
};

/// The core and the randomness it draws from.
pub(super) struct Engine {
    core: Core,
    rng: rand_pcg::Pcg64Mcg,
}

impl Engine {
    pub(super) fn new(keys: Keypair, store: Store) -> Self {
        // Not secret: the core's randomness schedules and picks, it does not make keys.
        let seed = getrandom::u64().unwrap_or_else(|_| now_ms());
        Self { core: Core::new(keys, store), rng: rand_pcg::Pcg64Mcg::seed_from_u64(seed) }
    }
}

/// What the core answered, by request.
type Answers = Vec<(AnswerId, Result<Answer, ApiError>)>;

impl Node {
    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        match self.inner.core.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
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
        counters.rate_limited += self.inner.rate_limited.load(std::sync::atomic::Ordering::Relaxed);
        counters
    }

    /// Runs `input` through the core and carries out what follows; returns the answers.
    async fn drive(&self, input: Input) -> Answers {
        let effects = self.step(input);
        self.carry_out(effects).await
    }

    /// Carries out `effects` in order; the effects of a flush's report run before the
    /// ones after the flush.
    async fn carry_out(&self, effects: Vec<Effect>) -> Answers {
        let mut queue = VecDeque::from(effects);
        let mut answers = Vec::new();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Publish { topic, bytes } => self.publish(topic, bytes).await,
                Effect::Verdict { id, from, verdict } => self.inner.net.report(id, from, verdict),
                Effect::Stored(record) => {
                    self.notify_for(&record);
                    self.queue_thumbnails(&record);
                }
                Effect::LivePost(record) => self.send_live(&record),
                Effect::FillGap { peer, author } => self.fill_gap(peer, author),
                Effect::Flush(flush) => {
                    let result = self.inner.store.flush().await;
                    let after = self.step(Input::Flushed { flush, result });
                    for effect in after.into_iter().rev() {
                        queue.push_front(effect);
                    }
                }
                Effect::Answer { answer, result } => answers.push((answer, result)),
            }
        }
        answers
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
        let (store, me) = (&self.inner.store, &self.inner.me);
        if let Some(item) = view::feed_item_of(store, me, record.id(), record.record()) {
            let _ = self.inner.live.send(LivePost { item, author: record.record().author });
        }
    }

    /// Appends a record to our own log (next seq, prev, sign, store, flush) and publishes
    /// it: the core decides, this carries it out.
    pub(crate) async fn publish_own(&self, kind: RecordKind) -> Result<VerifiedRecord, ApiError> {
        let answer =
            AnswerId(self.inner.next_answer.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let answers = self.drive(Input::Publish { kind, answer }).await;
        match answers.into_iter().find(|(id, _)| *id == answer) {
            Some((_, Ok(Answer::Published(record)))) => Ok(*record),
            Some((_, Err(error))) => Err(error),
            None => Err(ApiError::internal("the node's core gave no answer")),
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
