//! Private groups (issue #19): what a member keeps. One tree, `groups`:
//!
//! - `g` || group -> [`GroupState`]: the current epoch's signed membership and whether
//!   this node's person is still in it;
//! - `o` || group -> this node's Megolm outbound session for the group (a sealed pickle);
//! - `i` || session tag -> an inbound session of another member (a sealed pickle);
//! - `m` || group || timestamp || message id -> a message read ([`GroupLine`]), so a
//!   thread is oldest first by (timestamp, id);
//! - `s` || group || message id -> the message was stored (exactly once);
//! - `c` || group || n -> a message's ciphertext, for members catching up; `h` ||
//!   digest -> a ciphertext held already;
//! - `q` || peer || n -> a request waiting to be delivered to that member (the group
//!   outbox: each member's queue in order); `n` -> the last n given out;
//! - `r` || group -> timestamp || message id of the last message the person has seen
//!   (messages after it, from others, are unread);
//! - `k` || name -> one of this node's person's circles (`circle.rs`);
//! - `e` || group || epoch and `l` || group || member || epoch -> the membership
//!   history (`group_epochs.rs`);
//! - `u` || peer || n -> the key share that queued request `n` for `peer` carries on an
//!   Olm session, sealed with the pickle key, to seal it again on a new session;
//! - `d` || person -> the latest device announcement known of a fellow member who is
//!   not necessarily a mutual connection (its encoding), to seal key shares for them.
//!
//! Pickles are sealed before they get here. Plaintext is kept only for groups this
//! node's person is in (or was in, for what was sent before it left: 20.7); a node that
//! is removed stops getting more.

use bincode::{Decode, Encode};
use kith_protocol::codec;

use super::{corrupt, Store, StoreError};

const STATE: u8 = b'g';
const OUTBOUND: u8 = b'o';
const INBOUND: u8 = b'i';
const LINE: u8 = b'm';
const SEEN: u8 = b's';
const CIPHER: u8 = b'c';
const HELD: u8 = b'h';
const QUEUE: u8 = b'q';
const READ: u8 = b'r';
const UNSEALED: u8 = b'u';
const PEER_DEVICES: u8 = b'd';
const COUNTER: &[u8] = b"n";

/// Largest stored value decoded here.
const MAX_VALUE: usize = 64 * 1024;

/// An inbound session's tag and sealed pickle.
pub type TaggedPickle = ([u8; 16], Vec<u8>);

/// Most ciphertexts kept per group for members catching up (the oldest go first).
pub const MAX_KEPT_CIPHERTEXTS: usize = 1_000;

pub(super) fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = vec![prefix];
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

/// A group as this member keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct GroupState {
    /// The current epoch's signed membership, as it travels.
    pub membership: Vec<u8>,
    /// Whether this node's person is a member (false once removed, gone or deleted).
    pub active: bool,
}

/// A group message as this member read it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct GroupLine {
    /// Its id.
    pub id: [u8; 16],
    /// Who sent it.
    pub from: [u8; 32],
    /// The text.
    pub text: String,
    /// When it was written (the sender's clock), ms since the Unix epoch.
    pub timestamp: u64,
}

/// A request waiting in the group outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupQueued {
    /// The member it is for.
    pub peer: [u8; 32],
    /// Its place (oldest first).
    pub n: u64,
    /// The encoded request.
    pub bytes: Vec<u8>,
}

fn decode<T: bincode::Decode<()> + Encode>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    codec::decode::<T, MAX_VALUE>(bytes).map_err(|_| corrupt(what))
}

fn encode<T: Encode>(value: &T) -> Result<Vec<u8>, StoreError> {
    codec::encode(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn n_of(bytes: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| corrupt("group counter"))?))
}

impl Store {
    /// Every group this node knows, by id.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn groups(&self) -> Result<Vec<([u8; 16], GroupState)>, StoreError> {
        let mut out = Vec::new();
        for item in self.groups.scan_prefix([STATE]) {
            let (k, v) = item?;
            let id = k.get(1..).and_then(|i| <[u8; 16]>::try_from(i).ok());
            let id = id.ok_or_else(|| corrupt("group id"))?;
            out.push((id, decode(&v, "group")?));
        }
        Ok(out)
    }

    /// One group.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn group(&self, id: &[u8; 16]) -> Result<Option<GroupState>, StoreError> {
        self.groups.get(key(STATE, &[id]))?.map(|v| decode(&v, "group")).transpose()
    }

    /// Stores a group's state (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_group(&self, id: &[u8; 16], state: &GroupState) -> Result<(), StoreError> {
        self.groups.insert(key(STATE, &[id]), encode(state)?)?;
        Ok(())
    }

    /// This node's outbound session pickle for a group.
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_outbound(&self, id: &[u8; 16]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.groups.get(key(OUTBOUND, &[id]))?.map(|v| v.to_vec()))
    }

    /// Stores (`Some`) or drops this node's outbound session for a group (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_group_outbound(
        &self,
        id: &[u8; 16],
        pickle: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        match pickle {
            Some(p) => self.groups.insert(key(OUTBOUND, &[id]), p)?,
            None => self.groups.remove(key(OUTBOUND, &[id]))?,
        };
        Ok(())
    }

    /// An inbound session pickle, by session tag.
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_inbound(&self, tag: &[u8; 16]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.groups.get(key(INBOUND, &[tag]))?.map(|v| v.to_vec()))
    }

    /// Every inbound session pickle, with its session tag.
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_inbounds(&self) -> Result<Vec<TaggedPickle>, StoreError> {
        let mut out = Vec::new();
        for item in self.groups.scan_prefix([INBOUND]) {
            let (k, v) = item?;
            if let Some(tag) = k.get(1..).and_then(|t| <[u8; 16]>::try_from(t).ok()) {
                out.push((tag, v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Stores an inbound session pickle (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_group_inbound(&self, tag: &[u8; 16], pickle: &[u8]) -> Result<(), StoreError> {
        self.groups.insert(key(INBOUND, &[tag]), pickle)?;
        Ok(())
    }

    /// Whether message `id` of group `group` is stored.
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_seen(&self, group: &[u8; 16], id: &[u8; 16]) -> Result<bool, StoreError> {
        Ok(self.groups.contains_key(key(SEEN, &[group, id]))?)
    }

    /// Stores a message read (once; not flushed). Returns whether it was new.
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_add_line(&self, group: &[u8; 16], line: &GroupLine) -> Result<bool, StoreError> {
        if self.group_seen(group, &line.id)? {
            return Ok(false);
        }
        let ts = line.timestamp.to_be_bytes();
        self.groups.insert(key(LINE, &[group, &ts, &line.id]), encode(line)?)?;
        self.groups.insert(key(SEEN, &[group, &line.id]), &[][..])?;
        Ok(true)
    }

    /// The latest `limit` messages of a group, oldest first by (timestamp, id).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn group_thread(
        &self,
        group: &[u8; 16],
        limit: usize,
    ) -> Result<Vec<GroupLine>, StoreError> {
        let mut out = Vec::new();
        for item in self.groups.scan_prefix(key(LINE, &[group])).rev().take(limit) {
            let (_, v) = item?;
            out.push(decode(&v, "group message")?);
        }
        out.reverse();
        Ok(out)
    }

    /// Marks every message of a group stored so far as read.
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_mark_read(&self, group: &[u8; 16]) -> Result<(), StoreError> {
        let prefix = key(LINE, &[group]);
        if let Some(item) = self.groups.scan_prefix(&prefix).next_back() {
            let (k, _) = item?;
            self.groups.insert(key(READ, &[group]), &k[prefix.len()..])?;
        }
        Ok(())
    }

    /// How many messages of a group from someone other than `me` came after the last one
    /// marked read.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn group_unread(&self, group: &[u8; 16], me: &[u8; 32]) -> Result<u64, StoreError> {
        let prefix = key(LINE, &[group]);
        let mut from = prefix.clone();
        if let Some(mark) = self.groups.get(key(READ, &[group]))? {
            from.extend_from_slice(&mark);
            // Just after the last one read.
            from.push(0);
        }
        let mut unread = 0;
        for item in self.groups.range(from..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let line: GroupLine = decode(&v, "group message")?;
            if &line.from != me {
                unread += 1;
            }
        }
        Ok(unread)
    }

    /// Holds a message's ciphertext for members catching up, unless held already (the
    /// oldest beyond [`MAX_KEPT_CIPHERTEXTS`] go). Returns whether it was new.
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_hold(
        &self,
        group: &[u8; 16],
        digest: &[u8; 32],
        bytes: &[u8],
    ) -> Result<bool, StoreError> {
        if self.groups.contains_key(key(HELD, &[digest]))? {
            return Ok(false);
        }
        let n = self.group_next_n()?;
        self.groups.insert(key(CIPHER, &[group, &n.to_be_bytes()]), bytes)?;
        self.groups.insert(key(HELD, &[digest]), &[][..])?;
        let prefix = key(CIPHER, &[group]);
        let kept = self.groups.scan_prefix(&prefix).count();
        if kept > MAX_KEPT_CIPHERTEXTS {
            for item in self.groups.scan_prefix(&prefix).take(kept - MAX_KEPT_CIPHERTEXTS) {
                let (k, _) = item?;
                self.groups.remove(k)?;
            }
        }
        Ok(true)
    }

    /// Whether a ciphertext of this digest is held.
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_held(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.groups.contains_key(key(HELD, &[digest]))?)
    }

    /// The newest `limit` ciphertexts held for a group, oldest first.
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_ciphertexts(
        &self,
        group: &[u8; 16],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for item in self.groups.scan_prefix(key(CIPHER, &[group])).rev().take(limit) {
            out.push(item?.1.to_vec());
        }
        out.reverse();
        Ok(out)
    }

    fn group_next_n(&self) -> Result<u64, StoreError> {
        let n = match self.groups.get(COUNTER)? {
            Some(v) => n_of(&v)?.saturating_add(1),
            None => 1,
        };
        self.groups.insert(COUNTER, &n.to_be_bytes()[..])?;
        Ok(n)
    }

    /// Queues a request for member `peer` after every other one (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_queue(&self, peer: &[u8; 32], bytes: &[u8]) -> Result<u64, StoreError> {
        let n = self.group_next_n()?;
        self.groups.insert(key(QUEUE, &[peer, &n.to_be_bytes()]), bytes)?;
        Ok(n)
    }

    /// The oldest request queued for `peer`.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn group_queue_next(&self, peer: &[u8; 32]) -> Result<Option<GroupQueued>, StoreError> {
        self.group_queue_from(peer, 0)
    }

    /// The oldest request queued for `peer` whose number is `from` or more (a lane's
    /// pass going on past requests it already handled).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn group_queue_from(
        &self,
        peer: &[u8; 32],
        from: u64,
    ) -> Result<Option<GroupQueued>, StoreError> {
        let start = key(QUEUE, &[peer, &from.to_be_bytes()]);
        let end = key(QUEUE, &[peer, &u64::MAX.to_be_bytes()]);
        let Some(item) = self.groups.range(start..=end).next() else {
            return Ok(None);
        };
        let (k, v) = item?;
        Ok(Some(GroupQueued {
            peer: *peer,
            n: n_of(k.get(33..).unwrap_or_default())?,
            bytes: v.to_vec(),
        }))
    }

    /// The members with queued requests (each once).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn group_queue_peers(&self) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut peers: Vec<[u8; 32]> = Vec::new();
        for item in self.groups.scan_prefix([QUEUE]).keys() {
            let k = item?;
            let peer = k.get(1..33).and_then(|p| <[u8; 32]>::try_from(p).ok());
            let peer = peer.ok_or_else(|| corrupt("group queue"))?;
            if peers.last() != Some(&peer) {
                peers.push(peer);
            }
        }
        Ok(peers)
    }

    /// Takes a delivered (or refused) request off the queue (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_unqueue(&self, peer: &[u8; 32], n: u64) -> Result<(), StoreError> {
        self.groups.remove(key(QUEUE, &[peer, &n.to_be_bytes()]))?;
        Ok(())
    }

    /// Replaces the bytes of queued request `n` for `peer`, if it is still queued (not
    /// flushed). Returns whether it was.
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_requeue(&self, peer: &[u8; 32], n: u64, bytes: &[u8]) -> Result<bool, StoreError> {
        let k = key(QUEUE, &[peer, &n.to_be_bytes()]);
        if self.groups.get(&k)?.is_none() {
            return Ok(false);
        }
        self.groups.insert(k, bytes)?;
        Ok(true)
    }

    /// The sealed key share kept for queued request `n` of `peer`, if any.
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_unsealed(&self, peer: &[u8; 32], n: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.groups.get(key(UNSEALED, &[peer, &n.to_be_bytes()]))?.map(|v| v.to_vec()))
    }

    /// Keeps (or, `None`, forgets) the sealed key share of queued request `n` of `peer`
    /// (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_group_unsealed(
        &self,
        peer: &[u8; 32],
        n: u64,
        sealed: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let k = key(UNSEALED, &[peer, &n.to_be_bytes()]);
        match sealed {
            Some(bytes) => self.groups.insert(k, bytes)?,
            None => self.groups.remove(k)?,
        };
        Ok(())
    }

    /// The numbers of `peer`'s queued requests that have a sealed key share kept, oldest
    /// first.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn group_unsealed_numbers(&self, peer: &[u8; 32]) -> Result<Vec<u64>, StoreError> {
        let mut numbers = Vec::new();
        for item in self.groups.scan_prefix(key(UNSEALED, &[peer])).keys() {
            numbers.push(n_of(item?.get(33..).unwrap_or_default())?);
        }
        Ok(numbers)
    }

    /// The device announcement kept for fellow member `person` (its encoding), if any.
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_peer_devices(&self, person: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.groups.get(key(PEER_DEVICES, &[person]))?.map(|v| v.to_vec()))
    }

    /// Keeps the device announcement of fellow member `person` (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_group_peer_devices(
        &self,
        person: &[u8; 32],
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.groups.insert(key(PEER_DEVICES, &[person]), bytes)?;
        Ok(())
    }

    /// How many requests wait in the group outbox.
    pub fn group_queue_len(&self) -> usize {
        self.groups.scan_prefix([QUEUE]).count()
    }
}
