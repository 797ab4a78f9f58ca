//! Names for the people a node shows: when a feed, a thread or the notifications show an
//! author whose profile this node does not hold (someone it does not follow: an author of
//! a tag post, a stranger's reply, a reposted post), it asks connected peers for that
//! profile ([`Query::Profile`]), the author's own node first, within a budget: a few
//! fetches at once, a few peers each, and each author at most once per
//! [`RETRY_AFTER`]. The answer goes through the one ingest path, and the keep decision
//! keeps a profile of someone whose records it keeps ([`crate::keep`]); the next listing
//! shows the name.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use kith_protocol::AuthorId;

use crate::api::{FeedItem, Response};
use libp2p::PeerId;
use tokio::sync::Semaphore;

use crate::{core::sync::Pull, node::Node};

/// An author asked about is not asked about again before this.
const RETRY_AFTER: Duration = Duration::from_secs(600);
/// Fetches running at once; more wait.
const AT_ONCE: usize = 4;
/// Peers asked for one profile, at most.
const PEERS_ASKED: usize = 3;
/// Authors taken from one listing, at most.
const PER_LISTING: usize = 16;
/// Authors remembered as asked, at most (older ones are forgotten first).
const REMEMBERED: usize = 4096;

/// Which authors were asked about, and when; and the places for running fetches.
pub(in crate::node) struct ProfileFetches {
    asked: std::sync::Mutex<HashMap<AuthorId, Instant>>,
    running: Semaphore,
}

impl Default for ProfileFetches {
    fn default() -> Self {
        Self { asked: std::sync::Mutex::new(HashMap::new()), running: Semaphore::new(AT_ONCE) }
    }
}

impl ProfileFetches {
    /// Of `authors`, those to ask about now (at most [`PER_LISTING`]), marked as asked.
    fn take(&self, authors: impl IntoIterator<Item = AuthorId>, now: Instant) -> Vec<AuthorId> {
        let mut asked = match self.asked.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if asked.len() >= REMEMBERED {
            asked.retain(|_, at| now.duration_since(*at) < RETRY_AFTER);
        }
        let mut out = Vec::new();
        for author in authors {
            if out.len() == PER_LISTING || asked.len() >= REMEMBERED {
                break;
            }
            let recent = asked.get(&author).is_some_and(|at| now.duration_since(*at) < RETRY_AFTER);
            if !recent {
                asked.insert(author, now);
                out.push(author);
            }
        }
        out
    }
}

impl Node {
    /// Fetches, in the background, the profiles of those of `authors` this node holds no
    /// profile of (see the [module](self) documentation).
    pub(in crate::node) fn want_profiles(&self, authors: impl IntoIterator<Item = AuthorId>) {
        let store = &self.inner.store;
        let me = self.inner.me;
        let unnamed =
            authors.into_iter().filter(|a| *a != me && matches!(store.profile(a), Ok(None)));
        for author in self.inner.sync.profiles.take(unnamed, Instant::now()) {
            let node = self.clone();
            self.spawn(async move { node.fetch_profile(author).await });
        }
    }

    /// [`Node::want_profiles`] for the people `response` shows: authors, reposters and
    /// people mentioned in a feed or thread, who caused each notification, and the
    /// person of `profile show`.
    pub(in crate::node) fn name_the_shown(&self, response: &Response) {
        let mut shown: Vec<&str> = Vec::new();
        // Someone shown with a name has a profile here: only the others are looked up.
        fn add_item<'a>(item: &'a FeedItem, shown: &mut Vec<&'a str>) {
            if item.author_name.is_none() {
                shown.push(&item.author);
            }
            match &item.reposter {
                Some(by) if by.name.is_some() => {}
                _ => shown.extend(item.reposted_by.as_deref()),
            }
            shown.extend(item.mentions.iter().filter(|m| m.name.is_none()).map(|m| m.id.as_str()));
        }
        match response {
            Response::Profile(p) => shown.push(&p.id),
            Response::Feed { items, .. } => items.iter().for_each(|i| add_item(i, &mut shown)),
            Response::FeedItem(item) => add_item(item, &mut shown),
            Response::Conversation { entries, .. } => {
                for e in entries {
                    shown.push(&e.author);
                    shown.extend(e.mentions.iter().map(|m| m.id.as_str()));
                }
            }
            Response::Notifications { entries } => shown.extend(entries.iter().map(|n| &*n.from)),
            // Members need not follow each other: their names are fetched like strangers'.
            Response::GroupThread { messages } => shown.extend(messages.iter().map(|m| &*m.from)),
            _ => return,
        }
        // A page shows few people many times: each is parsed (a point check) once.
        shown.sort_unstable();
        shown.dedup();
        self.want_profiles(shown.into_iter().filter_map(|s| s.parse().ok()));
    }

    async fn fetch_profile(&self, author: AuthorId) {
        let Ok(_place) = self.inner.sync.profiles.running.acquire().await else { return };
        let mut peers: Vec<PeerId> =
            self.inner.net.peers().await.unwrap_or_default().into_iter().map(|p| p.peer).collect();
        // The author's own node holds their profile for sure.
        if let Ok(theirs) = author.to_peer_id() {
            if let Some(i) = peers.iter().position(|p| *p == theirs) {
                peers.swap(0, i);
            }
        }
        for peer in peers.into_iter().take(PEERS_ASKED) {
            // A failed question or an empty answer: the next peer is asked.
            self.pull(peer, Pull::Profile(author), None).await;
            if matches!(self.inner.store.profile(&author), Ok(Some(_))) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kith_protocol::Keypair;

    use super::*;

    #[test]
    fn each_author_once_per_interval_and_a_few_per_listing() {
        let fetches = ProfileFetches::default();
        let ids: Vec<AuthorId> =
            (0..40u8).map(|i| Keypair::from_secret_bytes(&[i + 1; 32]).id()).collect();
        let t0 = Instant::now();
        let first = fetches.take(ids.iter().copied(), t0);
        assert_eq!(first, ids[..PER_LISTING]);
        // Those asked are not asked again soon; the next ones are.
        let second = fetches.take(ids.iter().copied(), t0 + Duration::from_secs(1));
        assert_eq!(second, ids[PER_LISTING..2 * PER_LISTING]);
        let later = fetches.take(ids[..2].iter().copied(), t0 + RETRY_AFTER);
        assert_eq!(later, ids[..2]);
    }
}
