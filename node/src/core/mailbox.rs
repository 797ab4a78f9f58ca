//! Choosing this node's mailboxes (issue #18, item 1): the nodes that will hold sealed
//! messages for its person while they are offline, published as a `Mailboxes` record
//! that their mutual connections replicate.
//!
//! The person may choose holders by hand (`kith mailbox add`); otherwise up to
//! [`AUTO_MAILBOXES`] are chosen among their mutual connections, those seen online the
//! longest first ([`crate::store::Presence`]), never one the person removed. Presence is
//! summed from connections and disconnections; the choice is looked at every
//! [`LOOK_EVERY_MS`], when the person changes it and when a follow changes who is
//! mutual, and a new record is published only when the list changes.

use std::collections::BTreeMap;

use kith_protocol::{AuthorId, RecordKind};

use super::{dm::is_mutual, Context};
use crate::store::{Store, StoreError};

/// Most mailboxes chosen automatically.
pub const AUTO_MAILBOXES: usize = 3;

/// How often the choice is looked at (and presence summed), ms.
pub const LOOK_EVERY_MS: u64 = 10 * 60 * 1000;

/// The choice of this node's mailboxes.
#[derive(Default)]
pub struct Mailboxes {
    /// Peers connected now, since when.
    online_since: BTreeMap<AuthorId, u64>,
}

impl Mailboxes {
    /// `peer` connected at `now`.
    pub(crate) fn connected(&mut self, peer: AuthorId, now: u64) {
        self.online_since.entry(peer).or_insert(now);
    }

    /// `peer` is no longer connected: its time online is counted.
    pub(crate) fn disconnected(&mut self, cx: &Context, peer: &AuthorId, now: u64) {
        if let Some(since) = self.online_since.remove(peer) {
            count(cx, peer, since, now);
        }
    }

    /// Counts the time online of everyone connected so far, then looks at the choice.
    pub(crate) fn tick(&mut self, cx: &Context, now: u64) -> Option<RecordKind> {
        for (peer, since) in &mut self.online_since {
            count(cx, peer, *since, now);
            *since = now;
        }
        changed(cx)
    }
}

/// Adds the time from `since` to `now` to `peer`'s presence, if a mutual connection.
fn count(cx: &Context, peer: &AuthorId, since: u64, now: u64) {
    let result = is_mutual(&cx.store, &cx.me, peer).and_then(|mutual| match mutual {
        true => cx.store.add_presence(peer, now.saturating_sub(since), now),
        false => Ok(()),
    });
    if let Err(error) = result {
        tracing::warn!(%error, "cannot count a peer's presence");
    }
}

/// The `Mailboxes` record to publish when the choice differs from the published list.
pub(crate) fn changed(cx: &Context) -> Option<RecordKind> {
    let result = choose(&cx.store, &cx.me).and_then(|chosen| {
        let published = cx.store.mailboxes_of(&cx.me)?;
        Ok((chosen != published).then_some(RecordKind::Mailboxes { holders: chosen }))
    });
    result.unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot look at this node's mailboxes");
        None
    })
}

/// Who `me`'s mailboxes are now: the holders chosen by hand that are still mutual
/// connections, or, when none were chosen, up to [`AUTO_MAILBOXES`] mutual connections
/// seen online the longest (then most recently, then by id), except the excluded.
///
/// # Errors
/// Disk errors or damage.
pub fn choose(store: &Store, me: &AuthorId) -> Result<Vec<AuthorId>, StoreError> {
    let manual = store.mailbox_manual()?;
    if !manual.is_empty() {
        let mut out = Vec::new();
        for holder in manual {
            if is_mutual(store, me, &holder)? {
                out.push(holder);
            }
        }
        return Ok(out);
    }
    let excluded = store.mailbox_excluded()?;
    let mut candidates = Vec::new();
    for peer in store.following(me)? {
        if !excluded.contains(&peer) && peer != *me && is_mutual(store, me, &peer)? {
            candidates.push((store.presence(&peer)?, peer));
        }
    }
    candidates.sort_by(|(a, x), (b, y)| {
        (b.online_ms, b.last_seen_ms).cmp(&(a.online_ms, a.last_seen_ms)).then(x.cmp(y))
    });
    Ok(candidates.into_iter().take(AUTO_MAILBOXES).map(|(_, peer)| peer).collect())
}
