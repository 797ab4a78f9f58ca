//! Turning stored records into what the control API shows.

use kith_protocol::{AuthorId, Record, RecordId, RecordKind};

use crate::{
    api::{FeedItem, FollowEntry, Profile},
    store::{Store, StoreError},
};

/// The display name of `author`, when a profile with a name is known.
pub(crate) fn name_of(store: &Store, author: &AuthorId) -> Option<String> {
    match store.profile(author) {
        Ok(Some(p)) => match p.record.kind {
            RecordKind::Profile { name, .. } if !name.is_empty() => Some(name),
            _ => None,
        },
        _ => None,
    }
}

/// A post (or the post a repost shares) as a feed item; `None` for other kinds.
pub(crate) fn feed_item_of(store: &Store, id: RecordId, record: &Record) -> Option<FeedItem> {
    if let RecordKind::Repost { target } = &record.kind {
        let original = store.get(target).ok()??;
        let mut item = feed_item_of(store, original.id, &original.record)?;
        item.reposted_by = Some(record.author.to_string());
        return Some(item);
    }
    let RecordKind::Post(post) = &record.kind else { return None };
    Some(FeedItem {
        id: id.to_string(),
        author: record.author.to_string(),
        seq: record.seq,
        timestamp: record.timestamp,
        text: post.text.clone(),
        tags: record.tags().iter().map(|t| t.to_string()).collect(),
        reply_to: post.reply_to.map(|r| r.to_string()),
        author_name: name_of(store, &record.author),
        reposted_by: None,
        reactions: store.reactions(&id).unwrap_or_default(),
    })
}

/// A profile as shown, for `author`.
pub(crate) fn profile_of(store: &Store, author: &AuthorId) -> Result<Profile, StoreError> {
    let (name, bio) = match store.profile(author)? {
        Some(p) => match p.record.kind {
            RecordKind::Profile { name, bio } => (Some(name), Some(bio)),
            _ => (None, None),
        },
        None => (None, None),
    };
    Ok(Profile { id: author.to_string(), name, bio, forked: store.is_flagged(author)? })
}

/// A following/followers list entry; `mutual` when the follow goes both ways.
pub(crate) fn follow_entry(store: &Store, who: &AuthorId, mutual: bool) -> FollowEntry {
    FollowEntry { id: who.to_string(), mutual, name: name_of(store, who) }
}
