//! Feeds (`kith feed`): the timeline, a hashtag's posts, a person's posts; page by page.
//!
//! A page holds exactly `limit` items when that many are stored: a post and its reposts
//! count once (the newest of them shows, "reposted by"), and what cannot be shown (a
//! repost of a post this node lacks, posts of muted people) is skipped while the page is
//! read, not after. Each page after the first starts strictly after the item a cursor
//! names (`--before ID`).

use std::collections::{HashMap, HashSet};

use kith_protocol::{AuthorId, RecordId, RecordKind, Tag};

use super::{circle::Reader, errors::Reply, view, Node};
use crate::{
    api::{ApiError, Response},
    store::{Store, StoredRecord},
};

/// Feed length when none is asked for.
pub const DEFAULT_FEED_LIMIT: usize = 20;
/// Longest feed one request may ask for.
pub const MAX_FEED_LIMIT: usize = 10_000;

/// Which posts a page of a feed may show, and which it has shown: each post once.
struct Page<'a> {
    store: &'a Store,
    reader: &'a Reader,
    shown: HashSet<RecordId>,
    /// Posts of hidden (muted or blocked) people skipped.
    hidden: u64,
    /// Whether each person met so far is hidden (read once per page).
    moderated: HashMap<AuthorId, bool>,
}

impl<'a> Page<'a> {
    fn new(store: &'a Store, reader: &'a Reader) -> Self {
        Self { store, reader, shown: HashSet::new(), hidden: 0, moderated: HashMap::new() }
    }

    /// Whether `who` is muted or blocked ([`Store::is_hidden`], asked once per person).
    fn is_hidden(&mut self, who: &AuthorId) -> bool {
        *self.moderated.entry(*who).or_insert_with(|| self.store.is_hidden(who))
    }

    /// Whether `r` (a post or a repost) adds a post this page has not shown; the post's
    /// author must not be hidden unless `show_hidden`.
    fn takes(&mut self, r: &StoredRecord, show_hidden: bool) -> bool {
        let (post, author) = match &r.record.kind {
            RecordKind::Post(_) => (r.id, r.record.author),
            // A circle post shows only where it is read.
            RecordKind::Private(_) if self.reader.shows(self.store, &r.record) => {
                (r.id, r.record.author)
            }
            RecordKind::Repost { target } => match self.store.get(target) {
                Ok(Some(t)) if matches!(t.record.kind, RecordKind::Post(_)) => {
                    (t.id, t.record.author)
                }
                _ => return false,
            },
            _ => return false,
        };
        if !show_hidden && self.is_hidden(&author) {
            self.hidden += 1;
            return false;
        }
        self.shown.insert(post)
    }
}

impl Node {
    /// One page of a feed: the timeline, or posts with `tag` and/or by `author`.
    pub(super) fn feed(
        &self,
        tag: Option<&str>,
        author: Option<&str>,
        limit: Option<usize>,
        before: Option<&str>,
    ) -> Reply {
        let limit = limit.unwrap_or(DEFAULT_FEED_LIMIT);
        if limit == 0 || limit > MAX_FEED_LIMIT {
            return Err(ApiError::invalid(format!(
                "--limit must be between 1 and {MAX_FEED_LIMIT}"
            )));
        }
        let tag = tag.map(super::handlers::parse_tag).transpose()?;
        let author = author.map(|a| self.person(a)).transpose()?;
        let store = &self.inner.store;
        let cursor = match before {
            Some(text) => {
                let id = self.record_ref(text)?;
                let r = store.get(&id)?.ok_or_else(|| {
                    ApiError::not_found(format!(
                        "unknown record {id}: --before takes the id of a post shown"
                    ))
                })?;
                Some(r)
            }
            None => None,
        };
        let at = cursor.as_ref().map(|c| (c.record.timestamp, c.id));
        let reader = self.reader();
        let mut page = Page::new(store, &reader);
        let me = self.inner.me;
        let records: Vec<StoredRecord> = match (&tag, author) {
            (Some(tag), None) => store.posts_by_tag(tag, limit, at, |r| page.takes(r, false)),
            (None, Some(author)) => {
                // A person's own posts: paged by their log; what is asked for by name is
                // shown even when muted, but a muted person's posts say so by a count.
                let before_seq = match &cursor {
                    Some(c) if c.record.author == author => Some(c.record.seq),
                    Some(c) => return self.feed_older_than(author, c, limit),
                    None => None,
                };
                let muted = author != me && store.is_hidden(&author);
                store.posts_by_author(&author, limit, before_seq, |r| {
                    if muted {
                        page.hidden += 1;
                        false
                    } else {
                        page.takes(r, true)
                    }
                })
            }
            (Some(tag), Some(author)) => store.posts_by_tag(tag, limit, at, |r| {
                r.record.author == author
                    && r.record.tags().contains(tag)
                    && page.takes(r, author == me)
            }),
            (None, None) => {
                let following: HashSet<AuthorId> = store.following(&me)?.into_iter().collect();
                let subs: HashSet<Tag> = store.subscriptions()?.into_iter().collect();
                // The indexes give only what is wanted; the check stays as the rule.
                let shown: HashSet<AuthorId> = following.iter().copied().chain([me]).collect();
                let tags: Vec<Tag> = subs.iter().cloned().collect();
                store.home_posts(&shown, &tags, limit, at, |r| {
                    let by = &r.record.author;
                    let wanted = *by == me
                        || following.contains(by)
                        || r.record.tags().iter().any(|t| subs.contains(t));
                    wanted && (*by == me || !page.is_hidden(by)) && page.takes(r, *by == me)
                })
            }
        }?;
        let hidden = page.hidden;
        Ok(Response::Feed { items: view::feed_items(store, &reader, &records), hidden })
    }

    /// A person's posts older than a cursor from someone else's feed (by time).
    fn feed_older_than(&self, author: AuthorId, cursor: &StoredRecord, limit: usize) -> Reply {
        let store = &self.inner.store;
        let at = (cursor.record.timestamp, cursor.id);
        let reader = self.reader();
        let mut page = Page::new(store, &reader);
        let only = HashSet::from([author]);
        let records = store.home_posts(&only, &[], limit, Some(at), |r| {
            r.record.author == author && page.takes(r, true)
        })?;
        Ok(Response::Feed { items: view::feed_items(store, &reader, &records), hidden: 0 })
    }
}
