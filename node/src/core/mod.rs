//! The node's decisions as plain, synchronous code (issue #16; see
//! `docs/architecture.md`, "Core").
//!
//! [`Core::handle`] takes one [`Input`] together with the time and a random number
//! generator from outside, reads and writes the store, and returns the [`Effect`]s for
//! the driver to carry out (the daemon's async code in `node/src/node/`, or a
//! simulation). It never awaits, never reads the clock and never touches the network.
//! Each concern is a module owning its state; this module only routes.
//!
//! An answer that claims durability is held until the driver reports, with
//! [`Input::Flushed`], that the flush the core asked for ([`Effect::Flush`]) is done.
//!
//! ```no_run
//! # fn demo(core: &mut kith_node::core::Core, kind: kith_protocol::RecordKind) {
//! use kith_node::core::{AnswerId, Effect, Input};
//! let mut rng = rand_pcg::Pcg64Mcg::new(7);
//! let effects = core.handle(Input::Publish { kind, answer: AnswerId(1) }, 1_000, &mut rng);
//! // The record is stored; the driver flushes, then tells the core.
//! for effect in effects {
//!     if let Effect::Flush(flush) = effect {
//!         let done = core.handle(Input::Flushed { flush, result: Ok(()) }, 1_001, &mut rng);
//!         // `done` publishes the record on its topics and answers `AnswerId(1)`.
//! #       let _ = done;
//!     }
//! }
//! # }
//! ```

pub mod feeds;

use kith_protocol::{AuthorId, Keypair, RecordKind, VerifiedRecord};
use libp2p::{gossipsub::MessageId, PeerId};
use rand_core::Rng;

use crate::{
    api::{ApiError, RecordCounters},
    ingest::Admission,
    net::Verdict,
    store::{Store, StoreError},
};

/// Names a control request waiting for its answer (chosen by the driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnswerId(pub u64);

/// Names a flush the core asked for (chosen by the core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlushId(pub u64);

/// One gossip message as it came from the network.
#[derive(Debug, Clone)]
pub struct GossipMessage {
    /// The peer that forwarded it (who gets the verdict).
    pub from: PeerId,
    /// Gossipsub's id of the message (to report the verdict on).
    pub id: MessageId,
    /// The topic it came on.
    pub topic: String,
    /// The encoded record.
    pub bytes: Vec<u8>,
}

/// What happens to the core.
#[derive(Debug)]
pub enum Input {
    /// Gossip messages, in the order they came (a batch: checking signatures costs, so
    /// the driver hands them over together, off the async threads).
    Gossip(Vec<GossipMessage>),
    /// Append a record of `kind` to this node's own log and publish it.
    Publish {
        /// What the record says.
        kind: RecordKind,
        /// Who waits for the answer.
        answer: AnswerId,
    },
    /// A flush the core asked for is done (or failed).
    Flushed {
        /// Which one.
        flush: FlushId,
        /// Its outcome.
        result: Result<(), StoreError>,
    },
}

/// What the core answers a control request with.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The record was appended to this node's log, flushed and published.
    Published(Box<VerifiedRecord>),
}

/// What the driver does for the core, in the order given.
#[derive(Debug)]
pub enum Effect {
    /// Publish `bytes` on gossip `topic`.
    Publish {
        /// The topic.
        topic: String,
        /// The encoded record.
        bytes: Vec<u8>,
    },
    /// Report the verdict on a gossip message.
    Verdict {
        /// The message.
        id: MessageId,
        /// The peer that forwarded it.
        from: PeerId,
        /// The verdict.
        verdict: Verdict,
    },
    /// A record new to this node was stored: notifications and thumbnails (the driver's
    /// for now; a notify concern later).
    Stored(Box<VerifiedRecord>),
    /// A new record live feeds may show (the driver turns it into a feed item when
    /// someone watches).
    LivePost(Box<VerifiedRecord>),
    /// The log of `author`, whom this node follows, has a gap: fetch it from `peer`
    /// (sync is the driver's for now).
    FillGap {
        /// Who sent the record after the gap.
        peer: PeerId,
        /// Whose log.
        author: AuthorId,
    },
    /// Flush the store, then report [`Input::Flushed`] with this id.
    Flush(FlushId),
    /// Answer a control request.
    Answer {
        /// Which one.
        answer: AnswerId,
        /// The answer.
        result: Result<Answer, ApiError>,
    },
}

/// What the core's concerns share: who this node is and its store.
pub struct Context {
    /// This node's person.
    pub me: AuthorId,
    /// Their keys (to sign and seal).
    pub keys: Keypair,
    /// What ingest decides with.
    pub admission: Admission,
    /// The store.
    pub store: Store,
    next_flush: u64,
}

impl Context {
    /// A new flush id.
    fn flush_id(&mut self) -> FlushId {
        self.next_flush += 1;
        FlushId(self.next_flush)
    }
}

/// The node's decisions: one per concern, composed.
pub struct Core {
    cx: Context,
    feeds: feeds::Feeds,
}

impl Core {
    /// The core of the node of `keys`, over `store`.
    pub fn new(keys: Keypair, store: Store) -> Self {
        let me = keys.id();
        let cx = Context { me, keys, admission: Admission::new(me), store, next_flush: 0 };
        Self { cx, feeds: feeds::Feeds::default() }
    }

    /// Handles one input at time `now` (ms since the Unix epoch), drawing randomness
    /// from `rng`, and returns what the driver should do, in order.
    pub fn handle(&mut self, input: Input, now: u64, rng: &mut dyn Rng) -> Vec<Effect> {
        let _ = rng;
        match input {
            Input::Gossip(batch) => self.feeds.handle_gossip(&mut self.cx, batch, now),
            Input::Publish { kind, answer } => {
                self.feeds.handle_publish(&mut self.cx, kind, answer, now)
            }
            Input::Flushed { flush, result } => self.feeds.handle_flushed(flush, result),
        }
    }

    /// This node's person.
    pub fn me(&self) -> AuthorId {
        self.cx.me
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.cx.store
    }

    /// Ingest counters so far.
    pub fn counters(&self) -> RecordCounters {
        self.feeds.counters()
    }

    /// Counts gossip messages the driver could not hand to the core (ignored).
    pub fn count_lost(&mut self, n: u64) {
        self.feeds.count_lost(n);
    }
}

#[cfg(test)]
mod tests;
