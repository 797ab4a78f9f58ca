//! Sync as the driver did it before the core's sync concern (not wired into the
//! simulation yet): a gap fill, a follow, coming back and the final catch-up ask the
//! author's node for the log, and the answer's records go to the asking core as gossip
//! of the author's topic (requests are not lost, an unreachable peer is).

use kith_protocol::{AuthorId, Topic};

use super::{Event, World};

impl World {
    /// Node `i` now follows `target`: it subscribes to their topic and catches up on
    /// their log (as the driver does on a follow).
    pub(super) fn followed(&mut self, i: usize, target: AuthorId) {
        self.subscribe(i, Topic::Author(target).to_string());
        if let Some(&from) = self.by_peer.get(&target.to_peer_id().expect("an ed25519 id")) {
            let delay = self.rng.latency_ms();
            self.at(delay, Event::Sync { to: i, from, author: target });
        }
    }

    /// `from` answers `to`'s request for `author`'s log with what `to` lacks (request and
    /// answer each take a latency; requests are not lost, a peer out of reach is).
    pub(super) fn serve_sync(&mut self, to: usize, from: usize, author: AuthorId) {
        if !self.reachable(to, from) {
            return;
        }
        let (Some(theirs), Some(mine)) = (self.nodes[from].store(), self.nodes[to].store()) else {
            return;
        };
        let records: Vec<Vec<u8>> = theirs
            .author_log(&author, 0, usize::MAX)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !mine.has(&r.id).unwrap_or(false))
            .filter_map(|r| theirs.get_bytes(&r.id).ok().flatten())
            .collect();
        if !records.is_empty() {
            let delay = self.rng.latency_ms();
            self.at(delay, Event::SyncAnswer { to, from, author, records });
        }
    }

    /// Node `i` is reachable again: it catches up with everyone it follows.
    pub(super) fn come_back(&mut self, i: usize) {
        self.nodes[i].online = true;
        self.catch_up(i);
    }

    pub(super) fn catch_up(&mut self, i: usize) {
        let Some(store) = self.nodes[i].store() else { return };
        let me = self.nodes[i].me;
        for author in store.following(&me).unwrap_or_default() {
            if let Some(&from) = self.by_peer.get(&author.to_peer_id().expect("an ed25519 id")) {
                let delay = self.rng.latency_ms();
                self.at(delay, Event::Sync { to: i, from, author });
            }
        }
    }
}
