//! `kith mailbox`: who holds messages for this node's person while they are offline
//! (chosen in `core/mailbox.rs`), and for whom this node holds.

use kith_protocol::AuthorId;

use super::{errors::Reply, view, Node};
use crate::{
    api::{ApiError, HeldFor, MailboxHolder, MailboxStatus, Response},
    core::{dm::is_mutual, mailbox::choose, Input},
};

impl Node {
    /// The mailboxes now and who this node holds for.
    pub(super) fn mailbox(&self) -> Reply {
        let store = &self.inner.store;
        let me = self.inner.me;
        let chosen = choose(store, &me)?;
        let published = store.mailboxes_of(&me)? == chosen;
        let holders = chosen
            .iter()
            .map(|who| {
                Ok(MailboxHolder {
                    id: who.to_string(),
                    name: view::name_of(store, who),
                    naming: view::naming_of(store, who),
                    online_s: store.presence(who)?.online_ms / 1000,
                })
            })
            .collect::<Result<_, ApiError>>()?;
        let mut holding = Vec::new();
        let tally = store.held_tally()?;
        let mut people = store.listing(&me)?;
        // Also whoever this node still holds for though they no longer list it.
        people.extend(
            tally
                .recipients
                .keys()
                .filter(|who| !people.contains(who))
                .copied()
                .collect::<Vec<_>>(),
        );
        for who in people {
            let held = tally.recipients.get(&who).copied().unwrap_or_default();
            if held.count > 0 || is_mutual(store, &me, &who)? {
                holding.push(HeldFor {
                    id: who.to_string(),
                    name: view::name_of(store, &who),
                    naming: view::naming_of(store, &who),
                    messages: held.count,
                    bytes: held.bytes,
                });
            }
        }
        let mode = if store.mailbox_manual()?.is_empty() { "auto" } else { "manual" };
        Ok(Response::Mailbox(Box::new(MailboxStatus {
            mode: mode.into(),
            holders,
            published,
            holding,
        })))
    }

    /// Answers an inbound `/kith/mailbox/1` request (through the core).
    pub(super) async fn handle_mailbox_request(
        &self,
        peer: libp2p::PeerId,
        bytes: Vec<u8>,
        channel: crate::net::Responder,
    ) {
        self.answer_request(channel, |reply| Input::MailboxRequest { from: peer, bytes, reply })
            .await;
    }

    /// Adds `id` to the holders chosen by hand (the first one turns the automatic choice
    /// off), then publishes the new list.
    pub(super) async fn mailbox_add(&self, id: &str) -> Reply {
        let who = self.person(id)?;
        let store = &self.inner.store;
        let me = self.inner.me;
        if who == me {
            return Err(ApiError::invalid("your own node already has your messages"));
        }
        if !is_mutual(store, &me, &who)? {
            return Err(ApiError::refused(format!(
                "{who} is not a mutual connection: a mailbox holds only for people who \
                 follow each other with it (kith follow {who}, and they follow you)"
            )));
        }
        let mut manual = store.mailbox_manual()?;
        if manual.contains(&who) {
            return Ok(Response::Ok);
        }
        if manual.len() >= kith_protocol::limits::MAX_MAILBOXES {
            return Err(ApiError::refused(format!(
                "at most {} mailboxes; remove one first (kith mailbox remove ID)",
                kith_protocol::limits::MAX_MAILBOXES
            )));
        }
        manual.push(who);
        let excluded: Vec<AuthorId> =
            store.mailbox_excluded()?.into_iter().filter(|p| *p != who).collect();
        store.set_mailbox_manual(&manual)?;
        store.set_mailbox_excluded(&excluded)?;
        self.mailboxes_changed().await
    }

    /// Takes `id` off the holders chosen by hand, or (when chosen automatically) never
    /// chooses them again; then publishes the new list.
    pub(super) async fn mailbox_remove(&self, id: &str) -> Reply {
        let who = self.person(id)?;
        let store = &self.inner.store;
        let mut manual = store.mailbox_manual()?;
        if let Some(at) = manual.iter().position(|p| *p == who) {
            manual.remove(at);
            store.set_mailbox_manual(&manual)?;
            // Back to the automatic choice when none is left: not with this one.
            if manual.is_empty() {
                let mut excluded = store.mailbox_excluded()?;
                if !excluded.contains(&who) {
                    excluded.push(who);
                    store.set_mailbox_excluded(&excluded)?;
                }
            }
        } else {
            let mut excluded = store.mailbox_excluded()?;
            if !choose(store, &self.inner.me)?.contains(&who) && !excluded.contains(&who) {
                return Err(ApiError::not_found(format!("{who} is not one of your mailboxes")));
            }
            if !excluded.contains(&who) {
                excluded.push(who);
                store.set_mailbox_excluded(&excluded)?;
            }
        }
        self.mailboxes_changed().await
    }

    /// Makes the person's choice durable, then lets the core publish the new list.
    async fn mailboxes_changed(&self) -> Reply {
        self.inner.store.flush().await?;
        self.drive(Input::MailboxesChanged).await;
        Ok(Response::Ok)
    }
}
