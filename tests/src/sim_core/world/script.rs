//! Worlds driven by hand, for tests: nothing is planned ([`Config::scripted`]); a test
//! says who follows whom, who is online, who writes to whom, and lets time pass.
//!
//! [`Config::scripted`]: crate::sim_core::Config::scripted

use super::{Queued, World};

impl World {
    /// Lets `ms` of simulated time pass, handling what happens meanwhile.
    pub(in crate::sim_core) fn pass(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.queue.peek().is_some_and(|q| q.at <= end) {
            let Some(Queued { at, event, .. }) = self.queue.pop() else { break };
            self.now = at;
            self.stats.events += 1;
            self.handle(event);
        }
        self.now = end;
    }

    /// Nodes `i` and `j` follow each other.
    pub(in crate::sim_core) fn friends(&mut self, i: usize, j: usize) {
        self.befriend(i, j);
    }

    /// Node `i` goes offline, or comes back (and connects).
    pub(in crate::sim_core) fn set_online(&mut self, i: usize, online: bool) {
        if online {
            self.come_back(i);
        } else {
            self.nodes[i].online = false;
        }
    }

    /// Node `i` writes to node `j`: the message's id, if its node took it.
    pub(in crate::sim_core) fn write(&mut self, i: usize, j: usize) -> Option<[u8; 16]> {
        self.send_dm_to(i, self.nodes[j].me)
    }
}
