//! Records that came by sync and that gossip may have missed ([`Effect::GossipMissed`]):
//! what the network layer needs to mend a split mesh (`net/mend.rs`).

use std::collections::BTreeMap;

use kith_protocol::VerifiedRecord;

use crate::core::{Context, Effect};

/// A record that comes by sync written at most this long ago (ms) may be one that gossip
/// missed ([`Effect::GossipMissed`]); an older one is history (twice the longest wait
/// between two periodic sync rounds with [`crate::net::IdleTuning::KITH`]).
pub const MISSED_WINDOW_MS: u64 = 10 * 60 * 1000;

/// The records of one batch from sync that gossip may have missed, by topic: the youngest
/// and the oldest age, ms ([`Effect::GossipMissed`]).
#[derive(Default)]
pub(super) struct Missed(BTreeMap<String, (u64, u64)>);

impl Missed {
    /// Notes `record`, new to this node, if it was written within [`MISSED_WINDOW_MS`]
    /// (by its author's clock; one from the future is not news gossip missed).
    pub(super) fn note(&mut self, cx: &Context, record: &VerifiedRecord, now: u64) {
        let Some(age) = now.checked_sub(record.record().timestamp) else { return };
        if age > MISSED_WINDOW_MS {
            return;
        }
        for topic in crate::core::feeds::topics_for(&cx.store, record.record()) {
            let ages = self.0.entry(topic).or_insert((age, age));
            *ages = (ages.0.min(age), ages.1.max(age));
        }
    }

    pub(super) fn effect(self) -> Option<Effect> {
        (!self.0.is_empty()).then(|| Effect::GossipMissed {
            topics: self.0.into_iter().map(|(topic, (young, old))| (topic, young..=old)).collect(),
        })
    }
}
