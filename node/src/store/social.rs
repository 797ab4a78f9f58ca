//! Conversation state in the store: replies, reactions, tombstones (deletion), expiry and
//! notifications. Called from [`Store::insert`] under the writer lock, or read by queries.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use kith_protocol::{blob::BlobHash, AuthorId, Post, RecordId};

use super::{
    codec::{self, ReactionValue, Value},
    corrupt,
    keys::{id_suffix, time_key},
    Store, StoreError, StoredRecord,
};

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Notification {
    /// `reply`, `mention`, `reaction`, `repost`, `follow`, `mutual` or `message`.
    pub kind: String,
    /// Who caused it.
    pub from: String,
    /// The record (or message) id.
    pub record: String,
    /// When, ms.
    pub timestamp: u64,
    /// Whether it was listed already.
    pub read: bool,
    /// From someone this node's person does not follow (capped while unread, see
    /// [`crate::keep::notify`]).
    pub stranger: bool,
}

impl Value for Notification {
    const WHAT: &'static str = "notification";
}

/// Most notifications kept; the oldest go first.
pub const MAX_NOTIFICATIONS: u64 = 10_000;

/// How many of the latest notifications a new one is compared with to drop a duplicate.
const NOTIFY_DEDUP_WINDOW: usize = 256;

pub(super) fn pair(a: &[u8; 32], b: &[u8; 32]) -> Vec<u8> {
    let mut k = a.to_vec();
    k.extend_from_slice(b);
    k
}

/// The blobs a post refers to: each attachment and its thumbnail.
pub(crate) fn attachment_blobs(post: &Post) -> impl Iterator<Item = BlobHash> + '_ {
    post.attachments
        .iter()
        .flat_map(|a| std::iter::once(a.hash).chain(a.thumbnail().map(|t| t.hash)))
}

impl Store {
    /// Whether `id` by `author` was deleted by its author.
    pub(super) fn is_tombstoned(
        &self,
        id: &RecordId,
        author: &AuthorId,
    ) -> Result<bool, StoreError> {
        Ok(self.tombstones.contains_key(pair(id.as_bytes(), author.as_bytes()))?)
    }

    /// The delete record that tombstoned `id`, if any (the first found: only a delete by
    /// the record's own author stops it from being stored, see [`Store::insert`]).
    ///
    /// # Errors
    /// Disk errors.
    pub fn tombstone_of(&self, id: &RecordId) -> Result<Option<RecordId>, StoreError> {
        match self.tombstones.scan_prefix(id.as_bytes()).values().next() {
            Some(v) => Ok(id_suffix(&v?)),
            None => Ok(None),
        }
    }

    /// Rewrites tombstones of the first format (key: target; value: deleter, delete id)
    /// to the current one (key: target, deleter; value: delete id). Idempotent.
    pub(super) fn upgrade_tombstones(&self) -> Result<(), StoreError> {
        let old: Vec<_> = self
            .tombstones
            .iter()
            .filter(|item| item.as_ref().map_or(true, |(k, _)| k.len() == 32))
            .collect::<Result<_, _>>()?;
        for (key, value) in old {
            let deleter = value.get(..32).ok_or_else(|| corrupt("tombstone"))?;
            let delete = value.get(32..64).ok_or_else(|| corrupt("tombstone"))?;
            let mut new = key.to_vec();
            new.extend_from_slice(deleter);
            self.tombstones.insert(new, delete)?;
            self.tombstones.remove(key)?;
        }
        Ok(())
    }

    /// Removes a record's content and index entries; its log entry stays (the author's
    /// seq is taken), so the log has no hole.
    pub(super) fn erase(&self, old: &StoredRecord) -> Result<(), StoreError> {
        let r = &old.record;
        let id = &old.id;
        self.totals_change()?;
        self.unindex(id, r)?;
        if self.records.remove(id)? {
            self.count_removed(&r.author)?;
        }
        Ok(())
    }

    /// Drops every post whose expiry time is at or before `now_ms`; returns how many.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn expire(&self, now_ms: u64) -> Result<usize, StoreError> {
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        let mut dropped = 0;
        let end = time_key(now_ms, &RecordId::from_bytes([0xff; 32]));
        let due: Vec<_> = self.expiry.range(..=&end[..]).keys().collect::<Result<_, _>>()?;
        for key in due {
            let id = id_suffix(&key).ok_or_else(|| corrupt("expiry key"))?;
            if let Some(old) = self.get(&id)? {
                self.erase(&old)?;
                dropped += 1;
            }
            self.expiry.remove(key)?;
        }
        Ok(dropped)
    }

    /// `author`'s repost of `target`, if this store holds one.
    ///
    /// # Errors
    /// Disk errors.
    pub fn repost_of(
        &self,
        target: &RecordId,
        author: &AuthorId,
    ) -> Result<Option<RecordId>, StoreError> {
        Ok(self
            .reposts
            .get(pair(target.as_bytes(), author.as_bytes()))?
            .and_then(|v| id_suffix(&v)))
    }

    /// Who reposted `target` (as far as this store holds their reposts).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn reposters(&self, target: &RecordId) -> Result<Vec<AuthorId>, StoreError> {
        self.reposts
            .scan_prefix(target.as_bytes())
            .keys()
            .map(|k| {
                let k = k?;
                let who: [u8; 32] = k
                    .get(32..64)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt("repost key"))?;
                AuthorId::from_bytes(who).map_err(|_| corrupt("repost key"))
            })
            .collect()
    }

    /// Ids of the direct replies to `parent`, oldest first.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn replies_to(&self, parent: &RecordId) -> Result<Vec<RecordId>, StoreError> {
        self.replies
            .scan_prefix(parent.as_bytes())
            .keys()
            .map(|k| id_suffix(&k?).ok_or_else(|| corrupt("reply key")))
            .collect()
    }

    /// Reaction counts per emoji on `target` (latest reaction of each person).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn reactions(&self, target: &RecordId) -> Result<BTreeMap<String, u64>, StoreError> {
        Ok(self.reactions_and_one(target, None)?.0)
    }

    /// [`Store::reactions`] on `target`, and the current reaction of `who` (none when
    /// withdrawn) as [`Store::reaction_of`] gives it, in one read: a feed shows both for
    /// each post.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn reactions_and_one(
        &self,
        target: &RecordId,
        who: Option<&AuthorId>,
    ) -> Result<(BTreeMap<String, u64>, Option<String>), StoreError> {
        let (mut out, mut theirs) = (BTreeMap::new(), None);
        for item in self.reactions.scan_prefix(target.as_bytes()) {
            let (key, value) = item?;
            let ReactionValue { emoji, .. } = codec::decode(&value)?;
            if emoji.is_empty() {
                continue;
            }
            if who.is_some_and(|who| key.get(32..) == Some(&who.as_bytes()[..])) {
                theirs = Some(emoji.clone());
            }
            *out.entry(emoji).or_insert(0) += 1;
        }
        Ok((out, theirs))
    }

    /// The current reaction of `who` on `target` (empty when withdrawn), if any.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn reaction_of(
        &self,
        target: &RecordId,
        who: &AuthorId,
    ) -> Result<Option<String>, StoreError> {
        let key = pair(target.as_bytes(), who.as_bytes());
        Ok(codec::get::<ReactionValue>(&self.reactions, key)?.map(|r| r.emoji))
    }

    /// Stores a notification, unless one of the latest [`NOTIFY_DEDUP_WINDOW`] has the
    /// same kind, sender and record (two paths can notice one event at once: our own
    /// follow and theirs arriving together both see the new mutual connection). Returns
    /// whether it was stored.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn notify(&self, n: &Notification) -> Result<bool, StoreError> {
        self.notify_checked(n, true)
    }

    /// Stores `n`, known to be new (its record was stored for the first time just now):
    /// [`Store::notify`] without the look for a repeat, which decodes the latest 256.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn notify_new(&self, n: &Notification) -> Result<bool, StoreError> {
        self.notify_checked(n, false)
    }

    fn notify_checked(&self, n: &Notification, check: bool) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        let recent =
            self.notifications.iter().rev().take(if check { NOTIFY_DEDUP_WINDOW } else { 0 });
        for item in recent {
            let (_, value) = item?;
            let old: Notification = codec::decode(&value)?;
            if old.kind == n.kind && old.from == n.from && old.record == n.record {
                return Ok(false);
            }
        }
        let seq = self.db.generate_id()?;
        let mut key = n.timestamp.to_be_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        codec::put(&self.notifications, key, n)?;
        self.tally.noted(n.stranger && !n.read, 1);
        while self.tally.notifications() > MAX_NOTIFICATIONS {
            let Some((_, old)) = self.notifications.pop_min()? else { break };
            let old: Notification = codec::decode(&old)?;
            self.tally.noted(old.stranger && !old.read, -1);
        }
        Ok(true)
    }

    /// Notifications, newest first, at most `limit` (only unread ones with
    /// `unread_only`); with `mark_read`, those returned become read.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn notifications(
        &self,
        limit: usize,
        unread_only: bool,
        mark_read: bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut out = Vec::new();
        for item in self.notifications.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            let n: Notification = codec::decode(&value)?;
            if unread_only && n.read {
                continue;
            }
            if mark_read && !n.read {
                self.mark_read_at(&key, &value, &n)?;
            }
            out.push(n);
        }
        Ok(out)
    }

    /// Marks one notification read (one sent to `kith notifications --live`): the
    /// stored one with the same kind, sender and record among the latest ones.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn mark_notification_read(&self, n: &Notification) -> Result<(), StoreError> {
        for item in self.notifications.iter().rev().take(NOTIFY_DEDUP_WINDOW) {
            let (key, value) = item?;
            let old: Notification = codec::decode(&value)?;
            if old.kind == n.kind && old.from == n.from && old.record == n.record {
                if !old.read {
                    self.mark_read_at(&key, &value, &old)?;
                }
                break;
            }
        }
        Ok(())
    }

    /// Stores `n` (read from `key` as `value`) as read, unless a concurrent listing did
    /// so first (then the tally of unread ones from strangers is not lowered twice).
    fn mark_read_at(&self, key: &[u8], value: &[u8], n: &Notification) -> Result<(), StoreError> {
        let read = Notification { read: true, ..n.clone() };
        let v = codec::encode(&read)?;
        let swapped = self.notifications.compare_and_swap(key, Some(value), Some(v))?;
        if swapped.is_ok() && n.stranger {
            self.tally.stranger_read();
        }
        Ok(())
    }

    /// Unread notifications from strangers.
    pub fn stranger_unread(&self) -> u64 {
        self.tally.stranger_unread()
    }

    /// Counts the notifications when the store opens.
    pub(super) fn count_notifications(&self) -> Result<(), StoreError> {
        let (mut all, mut strangers) = (0, 0);
        for item in self.notifications.iter() {
            let (_, value) = item?;
            let n: Notification = codec::decode(&value)?;
            all += 1;
            strangers += u64::from(n.stranger && !n.read);
        }
        self.tally.set_notifications(all, strangers);
        Ok(())
    }

    /// Unread notifications.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn unread_notifications(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self.notifications.iter() {
            let (_, value) = item?;
            let note: Notification = codec::decode(&value)?;
            n += u64::from(!note.read);
        }
        Ok(n)
    }
}
