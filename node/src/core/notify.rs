//! Notifications: which events notify the person (replies, mentions, reactions and
//! reposts of their posts, follows, mutual connections, messages), each stored once
//! (the store drops a repeat of the same kind, sender and record), and from strangers
//! only while few of theirs are unread ([`crate::keep::notify`]).
//!
//! The one place notifications are decided: the concerns of the core and the parts of
//! the driver not yet in it (sync) call these functions; what they return is new and
//! stored, for live streams ([`super::Effect::Notified`]).

use kith_protocol::{AuthorId, RecordId, RecordKind, VerifiedRecord};

use crate::store::{Notification, Store, StoredRecord};

/// Records one notification of `kind` from `from` about `record` at `now`; returns it
/// when it is new and kept.
pub fn notify(
    store: &Store,
    me: &AuthorId,
    kind: &str,
    from: String,
    record: String,
    now: u64,
) -> Option<Notification> {
    notify_checked(store, me, kind, (from, record), now, true)
}

/// [`notify`] for a record stored for the first time just now (a direct message): it
/// cannot have notified before, so no look for a repeat.
pub fn notify_new(
    store: &Store,
    me: &AuthorId,
    kind: &str,
    (from, record): (String, String),
    now: u64,
) -> Option<Notification> {
    notify_checked(store, me, kind, (from, record), now, false)
}

fn notify_checked(
    store: &Store,
    me: &AuthorId,
    kind: &str,
    (from, record): (String, String),
    now: u64,
    check: bool,
) -> Option<Notification> {
    let stranger = match from.parse::<AuthorId>() {
        Ok(who) => !store.is_following(me, &who).unwrap_or(false),
        Err(_) => true,
    };
    if !crate::keep::notify(stranger, store.stranger_unread()) {
        return None;
    }
    let n = Notification { kind: kind.into(), from, record, timestamp: now, read: false, stranger };
    let stored = if check { store.notify(&n) } else { store.notify_new(&n) };
    match stored {
        Ok(true) => Some(n),
        Ok(false) => None,
        Err(error) => {
            tracing::warn!(%error, "cannot store a notification");
            None
        }
    }
}

/// The notifications a record new to this node causes (none for the person's own, nor
/// for people hidden).
pub fn for_record(
    store: &Store,
    me: &AuthorId,
    rec: &VerifiedRecord,
    now: u64,
) -> Vec<Notification> {
    let r = rec.record();
    if r.author == *me || store.is_hidden(&r.author) {
        return Vec::new();
    }
    let mine = |id: &RecordId| store.get(id).ok().flatten().is_some_and(|t| t.record.author == *me);
    let mut kinds: Vec<&str> = Vec::new();
    match &r.kind {
        RecordKind::Post(post) => {
            if post.reply_to.as_ref().is_some_and(mine) {
                kinds.push("reply");
            }
            if post.mentions.contains(me) {
                kinds.push("mention");
            }
        }
        RecordKind::Reaction { target, emoji } if !emoji.is_empty() && mine(target) => {
            kinds.push("reaction");
        }
        RecordKind::Repost { target } if mine(target) => kinds.push("repost"),
        RecordKind::Follow { target } if target == me => {
            kinds.push("follow");
            if store.is_following(me, &r.author).unwrap_or(false) {
                kinds.push("mutual");
            }
        }
        _ => {}
    }
    if kinds.is_empty() {
        // Most records notify nothing: no names to write out (a catch-up of 100,000
        // records spent 2 % of its CPU on them).
        return Vec::new();
    }
    let (from, id) = (r.author.to_string(), rec.id().to_string());
    kinds
        .into_iter()
        .filter_map(|kind| notify(store, me, kind, from.clone(), id.clone(), now))
        .collect()
}

/// The person's own follow of `them` made a mutual connection (they follow already):
/// notify. The notification names their follow record, as the one made when their
/// follow arrives does, so that when both happen at once the store keeps one. When
/// their follow is indexed but its record is not stored yet (an insert on another
/// thread, between its writes: the record is written last), nothing is noted here: the
/// record, once stored, notifies the connection ([`for_record`]), and a notification
/// naming no record would not be recognised as the same one.
pub fn own_follow_made_mutual(
    store: &Store,
    me: &AuthorId,
    them: &AuthorId,
    now: u64,
) -> Option<Notification> {
    if !super::dm::is_mutual(store, me, them).unwrap_or(false) {
        return None;
    }
    let follows_me = |r: &StoredRecord| r.record.kind == RecordKind::Follow { target: *me };
    let theirs = store
        .follow_state(them, me)
        .ok()
        .flatten()
        .and_then(|s| store.author_log(them, s.seq.saturating_sub(1), 1).ok())
        .and_then(|log| log.into_iter().next())
        .filter(follows_me)
        .map(|r| r.id.to_string())?;
    notify(store, me, "mutual", them.to_string(), theirs, now)
}
