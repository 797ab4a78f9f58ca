//! Conversation features: threads, reactions, reposts, deletion, notifications.

use kith_protocol::{limits::MAX_REACTION_BYTES, RecordId, RecordKind};
use tokio::sync::broadcast;

use super::{errors::Reply, now_ms, view, Node};
use crate::{
    api::{ApiError, NotificationEntry, Response, ThreadEntry},
    store::{Notification, StoredRecord},
};

/// Deepest reply chain followed up to the root, and deepest tree shown.
const MAX_DEPTH: usize = 64;
/// Most records shown by one `thread`.
const MAX_THREAD: usize = 2000;
/// Notifications listed at once.
const NOTIFICATION_LIMIT: usize = 200;
/// Characters of a post or message a notification shows.
const SNIPPET_CHARS: usize = 140;

/// A stream of new notifications for `kith notifications --live`.
pub struct LiveNotifications {
    rx: broadcast::Receiver<NotificationEntry>,
}

impl LiveNotifications {
    /// The next notification, or `None` when the node stops.
    pub async fn next(&mut self) -> Option<NotificationEntry> {
        loop {
            match self.rx.recv().await {
                Ok(n) => return Some(n),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Node {
    fn known(&self, id: &RecordId) -> Result<StoredRecord, ApiError> {
        self.inner
            .store
            .get(id)?
            .ok_or_else(|| ApiError::not_found(format!("unknown record {id} (not on this node)")))
    }

    pub(super) fn thread(&self, id: &str) -> Reply {
        let store = &self.inner.store;
        let mut root = self.known(&self.record_ref(id)?)?;
        // A reaction or repost belongs to the conversation of the post it is about.
        if let RecordKind::Reaction { target, .. } | RecordKind::Repost { target } =
            root.record.kind
        {
            root = self.known(&target)?;
        }
        for _ in 0..MAX_DEPTH {
            let RecordKind::Post(post) = &root.record.kind else { break };
            let Some(parent) = post.reply_to else { break };
            match store.get(&parent)? {
                Some(p) => root = p,
                None => break,
            }
        }
        // Replies by muted (or blocked) people are left out, with the replies to them,
        // and counted; the root shows whoever wrote it (it was asked for).
        let me = self.inner.me;
        let mut hidden = 0u64;
        let mut entries = Vec::new();
        let names = view::Names::new(store);
        let mut stack = vec![(root, 0usize, false)];
        while let Some((rec, depth, under_hidden)) = stack.pop() {
            if entries.len() as u64 + hidden >= MAX_THREAD as u64 {
                break;
            }
            let RecordKind::Post(post) = &rec.record.kind else { continue };
            let by = rec.record.author;
            let hide = under_hidden || (depth > 0 && by != me && store.is_hidden(&by));
            if hide {
                hidden += 1;
            } else {
                let (author_name, naming) = names.of(&by);
                entries.push(ThreadEntry {
                    id: rec.id.to_string(),
                    author: by.to_string(),
                    text: post.text.clone(),
                    parent: if depth == 0 { None } else { post.reply_to.map(|p| p.to_string()) },
                    timestamp: rec.record.timestamp,
                    depth,
                    reactions: store.reactions(&rec.id)?,
                    my_reaction: view::my_reaction(store, &me, &rec.id),
                    author_name,
                    naming,
                    mentions: names.mentions(post),
                    attachments: post
                        .attachments
                        .iter()
                        .map(|a| super::attach::entry_of(store, a))
                        .collect(),
                });
            }
            // Bounded in depth and in what waits on the stack: never more than the
            // entries still to show.
            let seen = entries.len() + hidden as usize;
            if depth < MAX_DEPTH && seen + stack.len() < MAX_THREAD {
                let mut children = store.replies_to(&rec.id)?;
                children.truncate(MAX_THREAD - seen - stack.len());
                for child in children.iter().rev() {
                    if let Some(c) = store.get(child)? {
                        stack.push((c, depth + 1, hide));
                    }
                }
            }
        }
        Ok(Response::Conversation { entries, hidden })
    }

    pub(super) async fn react(&self, id: &str, emoji: String) -> Reply {
        let target = self.record_ref(id)?;
        let emoji = emoji.trim().to_owned();
        if emoji.len() > MAX_REACTION_BYTES || emoji.chars().any(char::is_whitespace) {
            return Err(ApiError::invalid(format!(
                "a reaction is one emoji or word of at most {MAX_REACTION_BYTES} bytes"
            )));
        }
        refuse_private(&self.known(&target)?.record)?;
        let current = self.inner.store.reaction_of(&target, &self.inner.me)?;
        if emoji.is_empty() && current.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::refused("you have not reacted to that record"));
        }
        let signed = self.publish_own(RecordKind::Reaction { target, emoji }).await?;
        Ok(Response::Record { id: signed.id().to_string() })
    }

    pub(super) async fn repost(&self, id: &str) -> Reply {
        let target = self.record_ref(id)?;
        let original = self.known(&target)?;
        if !matches!(original.record.kind, RecordKind::Post(_)) {
            return Err(ApiError::refused("only posts can be reposted"));
        }
        if self.inner.store.repost_of(&target, &self.inner.me)?.is_some() {
            return Err(ApiError::refused(
                "you have already reposted this post (kith unrepost undoes it)",
            ));
        }
        let signed = self.publish_own(RecordKind::Repost { target }).await?;
        // Followers who never saw the original get it with the repost, on our topic.
        if let Ok(Some(bytes)) = self.inner.store.get_bytes(&target) {
            let topic = kith_protocol::Topic::Author(self.inner.me).to_string();
            let _ = self.inner.net.publish(topic, bytes).await;
        }
        Ok(Response::Record { id: signed.id().to_string() })
    }

    /// Withdraws our repost of a post (`id` names the post or our repost of it): a signed
    /// tombstone for the repost.
    pub(super) async fn unrepost(&self, id: &str) -> Reply {
        let (store, me) = (&self.inner.store, self.inner.me);
        let named = self.known(&self.record_ref(id)?)?;
        let repost = match named.record.kind {
            RecordKind::Repost { .. } if named.record.author == me => named.id,
            _ => store
                .repost_of(&named.id, &me)?
                .ok_or_else(|| ApiError::refused("you have not reposted this post"))?,
        };
        self.publish_own(RecordKind::Delete { target: repost }).await?;
        Ok(Response::Ok)
    }

    pub(super) async fn delete(&self, id: &str) -> Reply {
        let target = self.record_ref(id)?;
        let original = self.known(&target)?;
        if original.record.author != self.inner.me {
            return Err(ApiError::refused("you can only delete your own records"));
        }
        self.publish_own(RecordKind::Delete { target }).await?;
        Ok(Response::Ok)
    }

    pub(super) async fn moderate(
        &self,
        id: &str,
        block: Option<bool>,
        mute: Option<bool>,
    ) -> Reply {
        let who = self.person(id)?;
        if who == self.inner.me {
            return Err(ApiError::refused("you cannot block or mute yourself"));
        }
        let store = &self.inner.store;
        let mut m = store.moderation(&who)?;
        if let Some(b) = block {
            m.blocked = b;
        }
        if let Some(x) = mute {
            m.muted = x;
        }
        store.set_moderation(&who, m)?;
        if let Some(b) = block {
            store.mark_block_period(&who, b, now_ms())?;
        }
        store.flush().await?;
        if let (Some(b), Ok(peer)) = (block, who.to_peer_id()) {
            self.inner.net.set_blocked(peer, b).await;
        }
        Ok(Response::Ok)
    }

    pub(super) fn blocked(&self) -> Reply {
        let list = self.inner.store.moderated()?;
        Ok(Response::Moderation {
            entries: list
                .into_iter()
                .map(|(who, m)| crate::api::ModerationEntry {
                    id: who.to_string(),
                    blocked: m.blocked,
                    muted: m.muted,
                })
                .collect(),
        })
    }

    /// Notifications, newest first: at most `limit` (default and cap
    /// [`NOTIFICATION_LIMIT`]), only unread ones with `unread`; those listed become read.
    pub(super) fn notifications(&self, unread: bool, limit: Option<usize>) -> Reply {
        let limit = limit.unwrap_or(NOTIFICATION_LIMIT).min(NOTIFICATION_LIMIT);
        let store = &self.inner.store;
        let list = store.notifications(limit, unread, true)?;
        let names = view::Names::new(store);
        Ok(Response::Notifications {
            entries: list.into_iter().map(|n| notification_entry(&names, n)).collect(),
        })
    }

    /// Marks a notification sent to a live stream read.
    pub fn notification_shown(&self, entry: &NotificationEntry) {
        let n = Notification {
            kind: entry.kind.clone(),
            from: entry.from.clone(),
            record: entry.record.clone(),
            timestamp: entry.timestamp,
            read: true,
            stranger: false,
        };
        if let Err(error) = self.inner.store.mark_notification_read(&n) {
            tracing::warn!(%error, "cannot mark a notification read");
        }
    }

    /// Starts a live stream of new notifications.
    pub fn live_notifications(&self) -> LiveNotifications {
        LiveNotifications { rx: self.inner.notes.subscribe() }
    }

    /// Tells live notification streams of a new notification.
    pub(super) fn announce_notification(&self, n: Notification) {
        // Its entry (names, what it is about) is only looked up for someone watching.
        if self.inner.notes.receiver_count() == 0 {
            return;
        }
        let _ = self.inner.notes.send(notification_entry(&view::Names::new(&self.inner.store), n));
    }

    /// The person's own follow of `t` made them mutual: notify (see
    /// [`crate::core::notify::own_follow_made_mutual`]).
    pub(super) fn own_follow_made_mutual(&self, t: kith_protocol::AuthorId) {
        let (store, me) = (&self.inner.store, &self.inner.me);
        if let Some(n) = crate::core::notify::own_follow_made_mutual(store, me, &t, now_ms()) {
            self.announce_notification(n);
        }
    }
}

/// A notification as listed, with its sender's name and what it is about.
fn notification_entry(names: &view::Names<'_>, n: Notification) -> NotificationEntry {
    let (name, naming) = match n.from.parse() {
        Ok(author) => names.of(&author),
        // Not an id: shown plain.
        Err(_) => (None, view::naming_of_text(names.store(), &n.from)),
    };
    let about = About::of(names, &n);
    NotificationEntry {
        kind: n.kind,
        from: n.from,
        record: n.record,
        timestamp: n.timestamp,
        read: n.read,
        name,
        naming,
        mentions: about.mentions,
        target: about.target,
        text: about.text.map(|t| snippet(&t)),
        emoji: about.emoji,
    }
}

/// What a notification is about, looked up when it is listed (a deleted post or message
/// leaves nothing to show).
#[derive(Default)]
struct About {
    target: Option<String>,
    text: Option<String>,
    emoji: Option<String>,
    mentions: Vec<crate::api::Mention>,
}

impl About {
    fn of(names: &view::Names<'_>, n: &Notification) -> Self {
        let store = names.store();
        if n.kind == "message" {
            return Self { text: message_text(store, n), ..Self::default() };
        }
        let Some(rec) = n.record.parse().ok().and_then(|id| store.get(&id).ok().flatten()) else {
            return Self::default();
        };
        let post_at = |id: &RecordId| match store.get(id).ok().flatten()?.record.kind {
            RecordKind::Post(post) => Some(post),
            _ => None,
        };
        let (post, target, emoji) = match (n.kind.as_str(), rec.record.kind) {
            ("reply" | "mention", RecordKind::Post(post)) => {
                let target = post.reply_to.filter(|_| n.kind == "reply");
                (Some(post), target, None)
            }
            ("reaction", RecordKind::Reaction { target, emoji }) => {
                (post_at(&target), Some(target), Some(emoji))
            }
            ("repost", RecordKind::Repost { target }) => (post_at(&target), Some(target), None),
            _ => return Self::default(),
        };
        Self {
            target: target.map(|t| t.to_string()),
            mentions: post.as_ref().map(|p| names.mentions(p)).unwrap_or_default(),
            text: post.map(|p| p.text),
            emoji,
        }
    }
}

/// The text of the message a `message` notification is about, if still stored.
fn message_text(store: &crate::store::Store, n: &Notification) -> Option<String> {
    let from: kith_protocol::AuthorId = n.from.parse().ok()?;
    let id: kith_protocol::dm::MessageId = n.record.parse().ok()?;
    Some(store.dm_get(&from, id.as_bytes()).ok()??.text)
}

/// The first [`SNIPPET_CHARS`] characters of `text`, with `…` when cut. A cut never
/// splits a word (so a mention's `@<id>` is kept whole or left out and can be shown as a
/// name), unless the text's first word alone is longer than the snippet.
fn snippet(text: &str) -> String {
    let Some((cut, _)) = text.char_indices().nth(SNIPPET_CHARS) else {
        return text.to_owned();
    };
    let head = text.get(..cut).unwrap_or(text);
    let mid_word = !text.get(cut..).unwrap_or("").starts_with(char::is_whitespace);
    let kept = match head.rfind(char::is_whitespace) {
        Some(space) if mid_word => head.get(..space).unwrap_or(head),
        _ => head,
    };
    format!("{}…", kept.trim_end())
}

/// Replies and reactions are public records: one to a circle post would tell everyone
/// that the post exists for the replier, and go where the circle's audience does not.
/// They are refused (`docs/protocol.md` 20.5).
pub(super) fn refuse_private(target: &kith_protocol::Record) -> Result<(), ApiError> {
    if matches!(target.kind, RecordKind::Private(_)) {
        return Err(ApiError::refused(
            "that is a circle post: replies and reactions to it would be public, so they \
             are not made (send its author a message instead)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{snippet, SNIPPET_CHARS};

    #[test]
    fn a_snippet_never_splits_a_mention() {
        let id = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
        let short = format!("hi @{id}");
        assert_eq!(snippet(&short), short);
        let lead = "x".repeat(SNIPPET_CHARS - 20);
        let long = format!("{lead} @{id} and more");
        assert_eq!(snippet(&long), format!("{lead}…"));
        let exact = format!("{} tail", "y".repeat(SNIPPET_CHARS));
        assert_eq!(snippet(&exact), format!("{}…", "y".repeat(SNIPPET_CHARS)));
        let one_word = "z".repeat(SNIPPET_CHARS + 10);
        assert_eq!(snippet(&one_word), format!("{}…", "z".repeat(SNIPPET_CHARS)));
        let words = format!("{} end", "ab ".repeat(SNIPPET_CHARS / 3 + 5));
        assert!(snippet(&words).ends_with("ab…"), "{}", snippet(&words));
    }
}
