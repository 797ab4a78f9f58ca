//! What happens in the world: events, queued by (time, sequence number).

use std::cmp::Ordering;

use kith_node::core::sync::QueryFailure;
use kith_node::core::{sync::Pull, AnswerId, FlushId, Timer};
use kith_protocol::AuthorId;

use super::mailbox;

/// Something that happens at a time.
#[derive(Debug)]
pub(super) enum Event {
    /// A person does something.
    Act(usize),
    /// A gossip message arrives.
    Deliver {
        to: usize,
        from: usize,
        topic: String,
        bytes: Vec<u8>,
    },
    /// A flush the core asked for completes.
    Flush {
        node: usize,
        flush: FlushId,
        epoch: u64,
    },
    /// `to` starts pulling `what` from `from` (a follow, a gap, a catch-up).
    Sync {
        to: usize,
        from: usize,
        what: Pull,
    },
    /// A sync request arrives (sent by `from` in its run `epoch`, for its pull `pull`;
    /// none: an offer).
    SyncAsk {
        to: usize,
        from: usize,
        epoch: u64,
        bytes: Vec<u8>,
        pull: Option<AnswerId>,
    },
    /// The asker of a sync question hears how it went.
    SyncReply {
        to: usize,
        epoch: u64,
        pull: AnswerId,
        result: Result<Vec<u8>, QueryFailure>,
    },
    /// A direct message request arrives (sent by `from` in its run `epoch`).
    DmArrive {
        to: usize,
        from: usize,
        epoch: u64,
        message: [u8; 16],
        bytes: Vec<u8>,
        /// The exchange it goes on.
        proto: kith_node::core::DmProto,
    },
    /// The sender of a direct message learns how its delivery went.
    DmReply {
        to: usize,
        epoch: u64,
        peer: AuthorId,
        message: [u8; 16],
        result: Result<Vec<u8>, String>,
    },
    /// A timer a core scheduled (in its run `epoch`) is due.
    Timer {
        node: usize,
        timer: Timer,
        epoch: u64,
    },
    /// A request to a node's core on `proto` arrives (sent by `from` in its run
    /// `epoch`).
    Ask {
        to: usize,
        from: usize,
        epoch: u64,
        proto: mailbox::Proto,
        bytes: Vec<u8>,
        purpose: mailbox::Purpose,
    },
    /// The asker (in its run `epoch`) hears the answer to an [`Event::Ask`] (`None`: no
    /// answer came).
    Answer {
        to: usize,
        epoch: u64,
        purpose: mailbox::Purpose,
        result: Option<Vec<u8>>,
    },
    /// Node `node` (in its run `epoch`) collects from its mailbox `mailbox`.
    Collect {
        node: usize,
        mailbox: usize,
        epoch: u64,
    },
    Offline(usize),
    Online(usize),
    Crash(usize),
    Restart(usize),
    /// Splits the nodes in two sides that cannot reach each other.
    Partition,
    Heal,
    /// The scenario is over: everyone comes back and catches up.
    Settle,
}

pub(super) struct Queued {
    pub(super) at: u64,
    pub(super) seq: u64,
    pub(super) event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        // Earliest first from a max-heap.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
