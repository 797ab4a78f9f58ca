//! Who follows whom, tag subscriptions, profiles, flagged authors and remembered peer
//! addresses.

use super::backend::Tree;
use bincode::{Decode, Encode};
use kith_protocol::{AuthorId, RecordId, Tag};

use super::{
    codec::{self, FollowValue, ProfileValue, Value},
    corrupt,
    keys::{pair_key, pair_second},
    FollowState, Store, StoreError, StoredRecord,
};

impl Store {
    /// The latest follow state of `follower` towards `target`, if any record set it.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn follow_state(
        &self,
        follower: &AuthorId,
        target: &AuthorId,
    ) -> Result<Option<FollowState>, StoreError> {
        let value = codec::get::<FollowValue>(&self.follows, pair_key(follower, target))?;
        Ok(value.map(|FollowValue { seq, active }| FollowState { seq, active }))
    }

    /// Whether `follower` currently follows `target`.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn is_following(&self, follower: &AuthorId, target: &AuthorId) -> Result<bool, StoreError> {
        Ok(self.follow_state(follower, target)?.is_some_and(|s| s.active))
    }

    fn active_pairs(tree: &Tree, first: &AuthorId) -> Result<Vec<AuthorId>, StoreError> {
        let mut out = Vec::new();
        for item in tree.scan_prefix(first.as_bytes()) {
            let (key, value) = item?;
            if codec::decode::<FollowValue>(&value)?.active {
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
        let Some(value) = codec::get::<ProfileValue>(&self.profiles, author.as_bytes())? else {
            return Ok(None);
        };
        self.get(&RecordId::from_bytes(value.id))
    }

    /// Whether `author` has been seen forking their log.
    ///
    /// # Errors
    /// Disk errors.
    pub fn is_flagged(&self, author: &AuthorId) -> Result<bool, StoreError> {
        Ok(self.flagged.contains_key(author.as_bytes())?)
    }

    /// Remembers an address this node dialled a peer at (by peer id text), and when:
    /// keeps a few most recent addresses per peer, and the [`MAX_KNOWN_PEERS`] peers
    /// contacted last.
    ///
    /// # Errors
    /// Disk errors.
    pub fn remember_peer(&self, peer: &str, addr: &str, now_ms: u64) -> Result<(), StoreError> {
        const MAX_ADDRS: usize = 8;
        let mut known = self.peer_record(peer)?.unwrap_or_default();
        known.addrs.retain(|a| a != addr);
        known.addrs.insert(0, addr.to_owned());
        known.addrs.truncate(MAX_ADDRS);
        known.last = now_ms;
        let new = self.peers.insert(peer.as_bytes(), codec::encode(&known)?)?.is_none();
        if new && self.peers.len() > MAX_KNOWN_PEERS {
            if let Some((oldest, _)) = self.all_known_peers()?.last() {
                self.peers.remove(oldest.as_bytes())?;
            }
        }
        Ok(())
    }

    /// The remembered addresses of one peer (by peer id text), most recent first.
    ///
    /// # Errors
    /// Disk errors.
    pub fn known_peers_of(&self, peer: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.peer_record(peer)?.map(|k| k.addrs).unwrap_or_default())
    }

    fn peer_record(&self, peer: &str) -> Result<Option<KnownPeer>, StoreError> {
        Ok(self.peers.get(peer.as_bytes())?.and_then(|v| parse_known(&v)))
    }

    /// Known peers and their remembered addresses, the most recently contacted first, at
    /// most `limit` peers.
    ///
    /// # Errors
    /// Disk errors.
    pub fn known_peers(&self, limit: usize) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let mut all = self.all_known_peers()?;
        all.truncate(limit);
        Ok(all.into_iter().map(|(peer, k)| (peer, k.addrs)).collect())
    }

    /// Every known peer, the most recently contacted first.
    fn all_known_peers(&self) -> Result<Vec<(String, KnownPeer)>, StoreError> {
        let mut out = Vec::new();
        for item in self.peers.iter() {
            let (key, value) = item?;
            let Ok(peer) = String::from_utf8(key.to_vec()) else { continue };
            if let Some(known) = parse_known(&value) {
                out.push((peer, known));
            }
        }
        out.sort_by_key(|(_, k)| std::cmp::Reverse(k.last));
        Ok(out)
    }
}

/// Most peers remembered; the one contacted longest ago is forgotten first.
pub const MAX_KNOWN_PEERS: usize = 1024;

/// A remembered peer (`peers`: peer id text): addresses it was dialled at, most recent
/// first, and when it last was.
#[derive(Debug, Default, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct KnownPeer {
    pub addrs: Vec<String>,
    /// ms since the epoch (0 for peers remembered before this was kept).
    pub last: u64,
}

impl Value for KnownPeer {
    const WHAT: &'static str = "known peer";
}

/// A `peers` value; a damaged one is forgotten rather than refused (the peer is
/// remembered again on the next contact).
fn parse_known(value: &[u8]) -> Option<KnownPeer> {
    codec::decode(value).ok()
}
