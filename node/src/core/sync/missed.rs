//! Records that came by sync and that gossip may have missed ([`Effect::GossipMissed`]):
//! what the network layer needs to mend a split mesh (`net/mend.rs`).

use std::collections::BTreeMap;

use kith_protocol::VerifiedRecord;

use crate::core::{Context, Effect, MissedTopic};

/// A record that comes by sync written at most this long ago (ms) may be one that gossip
/// missed ([`Effect::GossipMissed`]); an older one is history (twice the longest wait
/// between two periodic sync rounds with [`crate::net::IdleTuning::KITH`]).
pub const MISSED_WINDOW_MS: u64 = 10 * 60 * 1000;

/// Most records of one topic and batch handed on to be passed to the topic's mesh
/// ([`MissedTopic::records`]), the youngest.
pub const MAX_REGOSSIP: usize = 16;

/// The records of one batch from sync that gossip may have missed, by topic: the youngest
/// and the oldest age, ms, and the youngest records with their ages
/// ([`Effect::GossipMissed`]).
#[derive(Default)]
pub(super) struct Missed(BTreeMap<String, Ages>);

/// One topic's youngest and oldest age, and its youngest records (age, bytes).
type Ages = (u64, u64, Vec<(u64, Vec<u8>)>);

impl Missed {
    /// Notes `record`, new to this node, if it was written within [`MISSED_WINDOW_MS`]
    /// (by its author's clock; one from the future is not news gossip missed).
    pub(super) fn note(&mut self, cx: &Context, record: &VerifiedRecord, now: u64) {
        let Some(age) = now.checked_sub(record.record().timestamp) else { return };
        if age > MISSED_WINDOW_MS {
            return;
        }
        for topic in crate::core::feeds::topics_for(&cx.store, record.record()) {
            let (young, old, records) = self.0.entry(topic).or_insert((age, age, Vec::new()));
            (*young, *old) = ((*young).min(age), (*old).max(age));
            // Kept youngest first; an older record than the oldest kept of a full list
            // is not kept.
            let at = records.partition_point(|(a, _)| *a <= age);
            if at < MAX_REGOSSIP {
                records.insert(at, (age, record.bytes().to_vec()));
                records.truncate(MAX_REGOSSIP);
            }
        }
    }

    pub(super) fn effect(self) -> Option<Effect> {
        (!self.0.is_empty()).then(|| Effect::GossipMissed {
            topics: self
                .0
                .into_iter()
                .map(|(topic, (young, old, records))| MissedTopic {
                    topic,
                    ages: young..=old,
                    records: records.into_iter().map(|(_, bytes)| bytes).collect(),
                })
                .collect(),
        })
    }
}
