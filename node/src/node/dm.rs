//! Direct messages: the driver's side of `msg send` and of inbound messages (the
//! decisions are the core's: `crate::core::dm`), and reading conversations.

use kith_protocol::dm::MessageId;
use libp2p::PeerId;

use super::{errors::Reply, Node};
use crate::{
    api::{ApiError, InboxEntry, MessageEntry, Response},
    core::{dm::Outgoing, Answer, Input},
    net::Responder,
    store::DmRecord,
};

/// A thread's `--limit`: the default when not given, else between 1 and the feed's.
pub(super) fn thread_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(super::handlers::DEFAULT_THREAD_LIMIT);
    if limit == 0 || limit > super::MAX_FEED_LIMIT {
        return Err(ApiError::invalid(format!(
            "--limit must be between 1 and {}",
            super::MAX_FEED_LIMIT
        )));
    }
    Ok(limit)
}

impl Node {
    /// `msg send`: the core admits the message; its attachments are prepared and sealed
    /// here (files, blobs); then the core seals, stores, queues and tries it, and answers
    /// delivered or queued once flushed.
    pub(super) async fn msg_send(&self, to: &str, text: String, attach: Vec<String>) -> Reply {
        let peer = self.person(to)?;
        self.check_send(&peer, &text, !attach.is_empty())?;
        let id = MessageId::generate().map_err(|e| ApiError::internal(format!("random: {e}")))?;
        let prepared = self.prepare_attachments(attach).await.map_err(ApiError::invalid)?;
        let attachments = self
            .seal_attachments(peer, *id.as_bytes(), prepared)
            .await
            .map_err(ApiError::internal)?;
        let message = Outgoing { peer, id, text, attachments };
        match self.ask(|answer| Input::MsgSend { message, answer }).await? {
            Answer::MsgSent { id, status } => {
                Ok(Response::MsgSent { id: id.to_string(), status: status.as_str().to_owned() })
            }
            other => Err(ApiError::internal(format!("the core answered {other:?}"))),
        }
    }

    /// Answers an inbound direct message request (through the core).
    pub(super) async fn handle_dm_request(&self, peer: PeerId, bytes: Vec<u8>, channel: Responder) {
        self.answer_request(channel, |reply| Input::DmRequest { from: peer, bytes, reply }).await;
    }

    pub(super) async fn handle_dm2_request(
        &self,
        peer: PeerId,
        bytes: Vec<u8>,
        channel: Responder,
    ) {
        self.answer_request(channel, |reply| Input::Dm2Request { from: peer, bytes, reply }).await;
    }

    pub(super) fn msg_inbox(&self) -> Reply {
        let store = &self.inner.store;
        let convs = store.dm_conversations()?;
        Ok(Response::Inbox {
            conversations: convs
                .into_iter()
                .map(|c| InboxEntry {
                    peer: c.peer.to_string(),
                    last_text: c.last.text,
                    timestamp: c.last.timestamp,
                    unread: c.unread,
                    name: super::view::name_of(store, &c.peer),
                    naming: super::view::naming_of(store, &c.peer),
                })
                .collect(),
        })
    }

    pub(super) async fn msg_thread(&self, with: &str, limit: Option<usize>) -> Reply {
        let peer = self.person(with)?;
        let limit = thread_limit(limit)?;
        let store = &self.inner.store;
        let messages = store.dm_thread(&peer, limit)?;
        store.dm_mark_read(&peer)?;
        store.flush().await?;
        let entry = |m: DmRecord| {
            let attachments = m
                .sealed_attachments()
                .iter()
                .map(|a| super::attach::entry_of(store, &a.attachment))
                .collect();
            MessageEntry {
                from_name: m.from.parse().ok().and_then(|a| super::view::name_of(store, &a)),
                naming: super::view::naming_of_text(store, &m.from),
                id: m.id,
                from: m.from,
                to: m.to,
                text: m.text,
                timestamp: m.timestamp,
                status: m.status.as_str().to_owned(),
                attachments,
                reason: m.reason,
            }
        };
        Ok(Response::Thread { messages: messages.into_iter().map(entry).collect() })
    }
}
