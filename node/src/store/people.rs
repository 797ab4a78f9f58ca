//! Who follows whom, tag subscriptions, profiles, flagged authors and remembered peer
//! addresses.

use kith_protocol::{AuthorId, Tag};
use sled::Tree;

use super::{
    corrupt,
    keys::{id_suffix, pair_key, pair_second},
    parse_follow, FollowState, Store, StoreError, StoredRecord,
};

impl Store {
    /// The latest follow state of `follower` towards `target`, if any record set it.
    ///
    /// # Errors
    /// Disk errors.
    pub fn follow_state(
        &self,
        follower: &AuthorId,
        target: &AuthorId,
    ) -> Result<Option<FollowState>, StoreError> {
        Ok(self.follows.get(pair_key(follower, target))?.and_then(|v| parse_follow(&v)))
    }

    /// Whether `follower` currently follows `target`.
    ///
    /// # Errors
    /// Disk errors.
    pub fn is_following(&self, follower: &AuthorId, target: &AuthorId) -> Result<bool, StoreError> {
        Ok(self.follow_state(follower, target)?.is_some_and(|s| s.active))
    }

    fn active_pairs(tree: &Tree, first: &AuthorId) -> Result<Vec<AuthorId>, StoreError> {
        let mut out = Vec::new();
        for item in tree.scan_prefix(first.as_bytes()) {
            let (key, value) = item?;
            if parse_follow(&value).is_some_and(|s| s.active) {
                out.push(pair_second(&key).ok_or_else(|| corrupt("follow key"))?);
            }
        }
        Ok(out)
    }

    /// Whom `follower` currently follows.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn following(&self, follower: &AuthorId) -> Result<Vec<AuthorId>, StoreError> {
        Self::active_pairs(&self.follows, follower)
    }

    /// Who currently follows `target` (as far as this node has seen their records).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn followers(&self, target: &AuthorId) -> Result<Vec<AuthorId>, StoreError> {
        Self::active_pairs(&self.followers, target)
    }

    /// Adds a hashtag subscription; returns whether it is new.
    ///
    /// # Errors
    /// Disk errors.
    pub fn subscribe(&self, tag: &Tag) -> Result<bool, StoreError> {
        Ok(self.subs.insert(tag.as_str(), &[])?.is_none())
    }

    /// Removes a hashtag subscription; returns whether it existed.
    ///
    /// # Errors
    /// Disk errors.
    pub fn unsubscribe(&self, tag: &Tag) -> Result<bool, StoreError> {
        Ok(self.subs.remove(tag.as_str())?.is_some())
    }

    /// Whether `tag` is subscribed.
    ///
    /// # Errors
    /// Disk errors.
    pub fn is_subscribed(&self, tag: &Tag) -> Result<bool, StoreError> {
        Ok(self.subs.contains_key(tag.as_str())?)
    }

    /// The subscribed hashtags, in order.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn subscriptions(&self) -> Result<Vec<Tag>, StoreError> {
        let mut out = Vec::new();
        for item in self.subs.iter() {
            let (key, _) = item?;
            let text = std::str::from_utf8(&key).map_err(|_| corrupt("subscription"))?;
            out.push(Tag::parse(text).map_err(|_| corrupt("subscription"))?);
        }
        Ok(out)
    }

    /// The latest profile record of `author`, if known.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn profile(&self, author: &AuthorId) -> Result<Option<StoredRecord>, StoreError> {
        let Some(value) = self.profiles.get(author.as_bytes())? else { return Ok(None) };
        let id = id_suffix(&value).ok_or_else(|| corrupt("profile value"))?;
        self.get(&id)
    }

    /// Whether `author` has been seen forking their log.
    ///
    /// # Errors
    /// Disk errors.
    pub fn is_flagged(&self, author: &AuthorId) -> Result<bool, StoreError> {
        Ok(self.flagged.contains_key(author.as_bytes())?)
    }

    /// Remembers an address of a peer (by peer id text); keeps a few most recent.
    ///
    /// # Errors
    /// Disk errors.
    pub fn remember_peer(&self, peer: &str, addr: &str) -> Result<(), StoreError> {
        const MAX_ADDRS: usize = 8;
        let mut addrs = self.peer_addrs(peer)?;
        addrs.retain(|a| a != addr);
        addrs.insert(0, addr.to_owned());
        addrs.truncate(MAX_ADDRS);
        let value = serde_json::to_vec(&addrs).map_err(|e| corrupt(&e.to_string()))?;
        self.peers.insert(peer.as_bytes(), value)?;
        Ok(())
    }

    /// The remembered addresses of one peer (by peer id text), most recent first.
    ///
    /// # Errors
    /// Disk errors.
    pub fn known_peers_of(&self, peer: &str) -> Result<Vec<String>, StoreError> {
        self.peer_addrs(peer)
    }

    fn peer_addrs(&self, peer: &str) -> Result<Vec<String>, StoreError> {
        Ok(match self.peers.get(peer.as_bytes())? {
            Some(v) => serde_json::from_slice(&v).unwrap_or_default(),
            None => Vec::new(),
        })
    }

    /// Known peers and their remembered addresses, at most `limit` peers.
    ///
    /// # Errors
    /// Disk errors.
    pub fn known_peers(&self, limit: usize) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.peers.iter().take(limit) {
            let (key, value) = item?;
            let Ok(peer) = String::from_utf8(key.to_vec()) else { continue };
            let addrs: Vec<String> = serde_json::from_slice(&value).unwrap_or_default();
            out.push((peer, addrs));
        }
        Ok(out)
    }
}
