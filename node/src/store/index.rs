//! The record indexes, described once. [`Store::entries`] lists what a record puts in the
//! plain indexes; [`Store::index`] writes those entries and sets what the record changes
//! (follow state, profile, reaction, repost, tombstone), and [`Store::unindex`] removes
//! the same entries and takes back what the record set, so insert and erase cannot drift.
//! Both run under the store's writer lock.

use super::backend::{IVec, Tree};
use kith_protocol::{Record, RecordId, RecordKind};

use super::{
    codec::{self, FollowValue, ProfileValue, ReactionValue},
    heap::Loc,
    keys::{pair_key, tag_key, time_key, AUTHOR_PREFIX},
    social::{attachment_blobs, pair},
    BlobOwner, Store, StoreError,
};

/// One entry a record puts in a plain index.
pub(super) struct Entry<'a> {
    pub(super) tree: &'a Tree,
    pub(super) key: Vec<u8>,
    pub(super) value: Vec<u8>,
    /// Whether the value ends with the record's place in the heap when it has one (a
    /// feed's entries, [`Store::get_hinted`]).
    pub(super) hint: bool,
}

impl<'a> Entry<'a> {
    /// `key` set to `value` in `tree`.
    pub(super) fn new(tree: &'a Tree, key: Vec<u8>, value: Vec<u8>) -> Self {
        Self { tree, key, value, hint: false }
    }

    /// The entry with `loc` (the record's place in the heap) after its value, if it takes
    /// one.
    pub(super) fn placed(mut self, loc: Option<&Loc>) -> Result<Self, StoreError> {
        if let (true, Some(loc)) = (self.hint, loc) {
            self.value.extend(codec::encode(loc)?);
        }
        Ok(self)
    }
}

impl Store {
    /// Every plain index entry of a record: `by_time` (posts and reposts: time, id -> the
    /// author's first bytes, then where the record is in the heap), `by_tag` (tag, time, id -> where the
    /// record is), `replies` (parent, time, id), `expiry` (expiry
    /// time, id) and `blob_refs` (each attachment and thumbnail, owned by the record).
    pub(super) fn entries(&self, id: &RecordId, r: &Record) -> Vec<Entry<'_>> {
        let mut out: Vec<Entry<'_>> = Vec::new();
        let feeds = [&self.by_time as *const Tree, &self.by_tag];
        let mut add = |tree, key: Vec<u8>, value: Vec<u8>| {
            let hint = feeds.contains(&std::ptr::from_ref::<Tree>(tree));
            out.push(Entry { tree, key, value, hint });
        };
        if matches!(
            r.kind,
            RecordKind::Post(_) | RecordKind::Repost { .. } | RecordKind::Private(_)
        ) {
            let key = time_key(r.timestamp, id).to_vec();
            add(&self.by_time, key, r.author.as_bytes()[..AUTHOR_PREFIX].to_vec());
        }
        for tag in r.tags() {
            add(&self.by_tag, tag_key(&tag, r.timestamp, id), Vec::new());
        }
        if let RecordKind::Post(post) = &r.kind {
            if let Some(parent) = post.reply_to {
                let mut key = parent.as_bytes().to_vec();
                key.extend_from_slice(&time_key(r.timestamp, id));
                add(&self.replies, key, Vec::new());
            }
            if let Some(at) = post.expires_at {
                add(&self.expiry, time_key(at, id).to_vec(), Vec::new());
            }
            for hash in attachment_blobs(post) {
                add(&self.blob_refs, BlobOwner::Record(*id).key(&hash), Vec::new());
            }
        }
        out
    }

    /// Writes `entries` tree by tree in key order ([`Tree::insert_sorted`]: a leaf that
    /// takes several is written once); a key given twice gets its last value, as inserts
    /// one after the other leave.
    ///
    /// # Errors
    /// Disk errors.
    pub(super) fn write_entries(&self, mut entries: Vec<Entry<'_>>) -> Result<(), StoreError> {
        let tree_of = |e: &Entry<'_>| std::ptr::from_ref::<Tree>(e.tree) as usize;
        entries.sort_by(|a, b| tree_of(a).cmp(&tree_of(b)).then_with(|| a.key.cmp(&b.key)));
        for run in entries.chunk_by(|a, b| std::ptr::eq(a.tree, b.tree)) {
            let Some(first) = run.first() else { continue };
            let mut pairs: Vec<(IVec, IVec)> = run
                .iter()
                .map(|e| (IVec::from(e.key.as_slice()), IVec::from(e.value.as_slice())))
                .collect();
            pairs.dedup_by(|later, earlier| {
                let same = later.0 == earlier.0;
                if same {
                    std::mem::swap(&mut later.1, &mut earlier.1);
                }
                same
            });
            let new = first.tree.insert_sorted(&pairs)?;
            if std::ptr::eq(first.tree, &self.by_time) {
                (0..new).for_each(|_| self.tally.posted(1));
            }
        }
        Ok(())
    }

    /// The indexes of `rec` without the record, as an insert on another thread has
    /// written them just before its commit point (tests of what readers see then).
    #[cfg(test)]
    pub(crate) fn index_only(&self, rec: &kith_protocol::VerifiedRecord) -> Result<(), StoreError> {
        self.index(&rec.id(), rec.record(), None)
    }

    /// Indexes a new record (called by `insert`): its plain entries, and what it sets;
    /// `loc` is where its frame is in the heap.
    pub(super) fn index(
        &self,
        id: &RecordId,
        r: &Record,
        loc: Option<&Loc>,
    ) -> Result<(), StoreError> {
        for entry in self.entries(id, r) {
            let Entry { tree, key, value, .. } = entry.placed(loc)?;
            if tree.insert(key, value)?.is_none() && std::ptr::eq(tree, &self.by_time) {
                self.tally.posted(1);
            }
        }
        match &r.kind {
            RecordKind::Follow { target } | RecordKind::Unfollow { target } => {
                let state =
                    FollowValue { seq: r.seq, active: matches!(r.kind, RecordKind::Follow { .. }) };
                codec::put_if_newer(&self.follows, pair_key(&r.author, target), &state, || {
                    codec::put(&self.followers, pair_key(target, &r.author), &state)
                })?;
            }
            RecordKind::Profile { .. } => {
                let value = ProfileValue { seq: r.seq, id: *id.as_bytes() };
                codec::put_if_newer(&self.profiles, r.author.as_bytes(), &value, || {
                    self.index_profile_name(r)
                })?;
            }
            RecordKind::Reaction { target, emoji } => {
                let value = ReactionValue { seq: r.seq, emoji: emoji.clone() };
                let key = pair(target.as_bytes(), r.author.as_bytes());
                codec::put_if_newer(&self.reactions, key, &value, || Ok(()))?;
            }
            RecordKind::Repost { target } => {
                self.reposts.insert(pair(target.as_bytes(), r.author.as_bytes()), id.as_bytes())?;
            }
            RecordKind::Delete { target } => {
                // Keyed by target and deleter: a delete counts only against its own
                // author's record, and nobody else's delete can replace it.
                self.tombstones
                    .insert(pair(target.as_bytes(), r.author.as_bytes()), id.as_bytes())?;
                if let Some(old) = self.get(target)? {
                    if old.record.author == r.author {
                        self.erase(&old)?;
                    }
                }
            }
            RecordKind::Devices(_) => {
                let value = ProfileValue { seq: r.seq, id: *id.as_bytes() };
                codec::put_if_newer(&self.devices, r.author.as_bytes(), &value, || Ok(()))?;
            }
            RecordKind::Mailboxes { .. } => {
                let value = ProfileValue { seq: r.seq, id: *id.as_bytes() };
                codec::put_if_newer(&self.mailboxes, r.author.as_bytes(), &value, || Ok(()))?;
            }
            RecordKind::Post(_) | RecordKind::Private(_) => {}
        }
        Ok(())
    }

    /// Removes a record's plain entries and the reaction or repost it set, if it is
    /// still its author's latest (called by `erase`). The follow state and profile a
    /// record set stay (a later record replaces them; eviction removes them).
    pub(super) fn unindex(&self, id: &RecordId, r: &Record) -> Result<(), StoreError> {
        for Entry { tree, key, .. } in self.entries(id, r) {
            if tree.remove(key)?.is_some() && std::ptr::eq(tree, &self.by_time) {
                self.tally.posted(-1);
            }
        }
        match &r.kind {
            RecordKind::Reaction { target, .. } => {
                let key = pair(target.as_bytes(), r.author.as_bytes());
                codec::remove_if_set_by::<ReactionValue>(&self.reactions, key, r.seq)?;
            }
            RecordKind::Repost { target } => {
                let key = pair(target.as_bytes(), r.author.as_bytes());
                if self.reposts.get(&key)?.is_some_and(|v| v.as_ref() == id.as_bytes()) {
                    self.reposts.remove(key)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
