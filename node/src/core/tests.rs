//! The core's rules, driven without a network: inputs in, effects out.
#![allow(clippy::unwrap_used)]

use kith_protocol::{Post, RecordId, Topic, VerifiedRecord};
use libp2p::{gossipsub::MessageId, PeerId};

use crate::{ingest::Verdict, store::StoreError};

use super::*;
use crate::store::tests::{post, signed};

mod circle;
mod collect;
mod deposit;
mod discovery;
mod dm;
mod feeds;
mod group;
mod group_churn;
mod group_epochs;
mod group_mailbox;
mod group_olm;
mod hold;
mod notify;
mod olm;
mod olm_answer;
mod olm_collect_repair;
mod olm_repair;
mod probe;
mod sync;
mod sync_rounds;

/// A core over a fresh memory store.
pub(super) struct Fixture {
    pub(super) core: Core,
    pub(super) rng: rand_pcg::Pcg64Mcg,
    pub(super) next_answer: u64,
}

impl Fixture {
    pub(super) fn new(secret: u8) -> Self {
        let store = Store::open_memory().unwrap();
        let core = Core::new(Keypair::from_secret_bytes(&[secret; 32]), store);
        Self { core, rng: rand_pcg::Pcg64Mcg::new(7), next_answer: 0 }
    }

    /// The same node after a crash and restart: a new core over what was flushed.
    pub(super) fn restart(&self, secret: u8) -> Self {
        let image = self.core.store().memory_image().unwrap();
        let store = Store::open_memory_image(image).unwrap();
        let core = Core::new(Keypair::from_secret_bytes(&[secret; 32]), store);
        Self { core, rng: rand_pcg::Pcg64Mcg::new(8), next_answer: 0 }
    }

    pub(super) fn handle(&mut self, input: Input, now: u64) -> Vec<Effect> {
        self.core.handle(input, now, &mut self.rng)
    }

    /// Runs the flushes among `effects` (flushed, then reported done), as a driver
    /// would: the effects in order, a flush's consequences in its place.
    pub(super) fn settle(&mut self, effects: Vec<Effect>, now: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        for effect in effects {
            match effect {
                Effect::Flush(flush) => {
                    out.push(Effect::Flush(flush));
                    let result = self.core.store().flush_blocking();
                    let after = self.handle(Input::Flushed { flush, result }, now);
                    out.extend(self.settle(after, now));
                }
                other => out.push(other),
            }
        }
        out
    }

    /// Publishes a record of `kind` at `now`, flushed: the effects, and the record.
    pub(super) fn publish(&mut self, kind: RecordKind, now: u64) -> (Vec<Effect>, VerifiedRecord) {
        self.published(|answer| Input::Publish { kind, answer }, now)
    }

    /// Runs the input `ask` makes (one that publishes a record of this node) at `now`,
    /// flushed: the effects, and the record.
    pub(super) fn published(
        &mut self,
        ask: impl FnOnce(AnswerId) -> Input,
        now: u64,
    ) -> (Vec<Effect>, VerifiedRecord) {
        self.next_answer += 1;
        let answer = AnswerId(self.next_answer);
        let first = self.handle(ask(answer), now);
        let effects = self.settle(first, now);
        let record = effects
            .iter()
            .find_map(|e| match e {
                Effect::Answer { answer: a, result: Ok(Answer::Published(r)) } if *a == answer => {
                    Some((**r).clone())
                }
                _ => None,
            })
            .unwrap();
        (effects, record)
    }
}

/// A gossip message carrying `record`, on `topic`, from the peer of `from`.
pub(super) fn gossip(from: &Keypair, topic: &Topic, record: &VerifiedRecord) -> GossipMessage {
    GossipMessage {
        from: from.id().to_peer_id().unwrap(),
        id: MessageId::new(record.id().as_bytes()),
        topic: topic.to_string(),
        bytes: record.bytes().to_vec(),
    }
}

/// A post with text and nothing else.
pub(super) fn text_post(text: &str, reply_to: Option<RecordId>) -> RecordKind {
    RecordKind::Post(Post {
        text: text.into(),
        reply_to,
        mentions: vec![],
        expires_at: None,
        attachments: vec![],
    })
}

/// The topics published on, in order.
pub(super) fn published(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish { topic, .. } => Some(topic.clone()),
            _ => None,
        })
        .collect()
}

/// The verdicts reported, in order.
pub(super) fn verdicts(effects: &[Effect]) -> Vec<Verdict> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Verdict { verdict, .. } => Some(*verdict),
            _ => None,
        })
        .collect()
}

#[test]
fn the_same_inputs_give_the_same_effects() {
    let run = || {
        let mut f = Fixture::new(1);
        let (effects, _) = f.publish(text_post("hello #rust", None), 1_000);
        format!("{effects:?}")
    };
    assert_eq!(run(), run());
}
