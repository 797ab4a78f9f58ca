//! The driver's side of mailboxes as their client (issue #18): collecting what this
//! node's mailboxes hold for it when it connects to one, acknowledging what the core
//! stored, sending end-to-end receipts directly or through the sender's mailboxes, and
//! depositing messages that could not be delivered directly with the recipient's.

use kith_protocol::{
    mailbox::{MailboxReply, MailboxRequest},
    olm::envelope::Dm2Reply,
    AuthorId,
};
use libp2p::{Multiaddr, PeerId};

use super::Node;
use crate::{
    core::{mailbox::choose, Input},
    net::Proto,
};

/// Most collect answers taken in one round with a mailbox (64 envelopes each).
const MAX_COLLECT_ROUNDS: usize = 64;
/// When a mailbox is asked again after connecting: what could not be taken at first (a
/// sender whose device announcement was still being synced) is taken then.
const COLLECT_AGAIN_MS: [u64; 3] = [0, 3_000, 20_000];

/// A collect from a mailbox under way; over when dropped (the task ended or stopped).
struct UnderWay<'a>(&'a Node, PeerId);

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        super::drive::lock(&self.0.inner.collecting).remove(&self.1);
    }
}

impl Node {
    /// Asks `mailbox` over `/kith/mailbox/1` (dialling its remembered addresses).
    pub(super) async fn ask_mailbox(
        &self,
        mailbox: &AuthorId,
        request: &MailboxRequest,
    ) -> Result<MailboxReply, String> {
        let peer = mailbox.to_peer_id().map_err(|e| e.to_string())?;
        let bytes = request.to_bytes().map_err(|e| e.to_string())?;
        let known = self.inner.store.known_peers_of(&peer.to_string()).unwrap_or_default();
        let addrs: Vec<Multiaddr> = known.iter().filter_map(|a| a.parse().ok()).collect();
        let reply = self.inner.net.request(Proto::Mailbox, peer, addrs, bytes).await;
        MailboxReply::from_bytes(&reply.map_err(|e| e.to_string())?).map_err(|e| e.to_string())
    }

    /// `peer` connected: when it is one of this node's mailboxes, what it holds for this
    /// node is collected.
    pub(super) fn collect_if_mailbox(&self, peer: PeerId) {
        let Ok(author) = AuthorId::from_peer_id(&peer) else { return };
        let store = &self.inner.store;
        let mine = choose(store, &self.inner.me).unwrap_or_default();
        let published = store.mailboxes_of(&self.inner.me).unwrap_or_default();
        if !mine.contains(&author) && !published.contains(&author) {
            return;
        }
        let node = self.clone();
        self.spawn(Box::pin(async move {
            for delay in COLLECT_AGAIN_MS {
                let wait = std::time::Duration::from_millis(delay);
                if !wait.is_zero() && !node.pause(wait).await {
                    return;
                }
                if !node.inner.net.is_connected(peer).await {
                    return;
                }
                node.collect_from(peer, author).await;
            }
        }));
    }

    /// Collects from each of this node's published mailboxes now (dialling them).
    pub(super) fn collect_now(&self) {
        let mine = self.inner.store.mailboxes_of(&self.inner.me).unwrap_or_default();
        for author in mine {
            let Ok(peer) = author.to_peer_id() else { continue };
            let node = self.clone();
            self.spawn(Box::pin(async move { node.collect_from(peer, author).await }));
        }
    }

    /// Collects from `mailbox` until it holds nothing more after what was read; nothing
    /// when a collect from it is under way (two connections to it, a collect asked for
    /// while connecting): the one under way reads to the end, and two at once took the
    /// same envelopes twice (for one that no session opens, two repair requests).
    async fn collect_from(&self, peer: PeerId, mailbox: AuthorId) {
        if !super::drive::lock(&self.inner.collecting).insert(peer) {
            tracing::debug!("a collect from this mailbox is under way");
            return;
        }
        let _under_way = UnderWay(self, peer);
        self.collect_rounds(peer, mailbox).await;
    }

    /// [`Node::collect_from`]'s rounds.
    async fn collect_rounds(&self, peer: PeerId, mailbox: AuthorId) {
        let mut after = 0;
        for _ in 0..MAX_COLLECT_ROUNDS {
            let request = MailboxRequest::Collect { after };
            match self.ask_mailbox(&mailbox, &request).await {
                Ok(MailboxReply::Held { items, more }) => {
                    let Some(last) = items.last().map(|h| h.position) else { return };
                    if last <= after {
                        return;
                    }
                    after = last;
                    tracing::info!(count = items.len(), "collected from a mailbox");
                    self.drive(Input::Collected { mailbox: peer, items }).await;
                    if !more {
                        return;
                    }
                }
                Ok(other) => {
                    tracing::info!(?other, "a mailbox did not hand over what it holds");
                    return;
                }
                Err(error) => {
                    tracing::debug!(%error, "cannot collect from a mailbox");
                    return;
                }
            }
        }
    }

    /// Tells `mailbox` these envelopes are stored.
    pub(super) fn mailbox_ack(&self, mailbox: AuthorId, ids: Vec<kith_protocol::mailbox::HeldId>) {
        let node = self.clone();
        self.spawn(Box::pin(async move {
            if let Err(error) = node.ask_mailbox(&mailbox, &MailboxRequest::Ack { ids }).await {
                tracing::debug!(%error, "cannot acknowledge to a mailbox");
            }
        }));
    }

    /// Deposits `envelope` (a message or a group request, sealed for `peer`) with each
    /// of `mailboxes` at once, then tells the core how many accepted it (`report`).
    pub(super) fn deposit(
        &self,
        peer: AuthorId,
        envelope: Vec<u8>,
        mailboxes: Vec<AuthorId>,
        report: impl FnOnce(usize) -> Input + Send + 'static,
    ) {
        let node = self.clone();
        self.spawn(Box::pin(async move {
            let accepted = node.deposit_with(peer, &envelope, &mailboxes).await;
            tracing::info!(accepted, of = mailboxes.len(), "deposited with mailboxes");
            node.drive(report(accepted)).await;
        }));
    }

    /// Deposits `envelope` for `peer` with each of `mailboxes` at once; how many accepted.
    async fn deposit_with(&self, peer: AuthorId, envelope: &[u8], mailboxes: &[AuthorId]) -> usize {
        let asks = mailboxes.iter().map(|mailbox| async move {
            let request = MailboxRequest::Deposit { recipient: peer, envelope: envelope.to_vec() };
            match self.ask_mailbox(mailbox, &request).await {
                Ok(MailboxReply::Accepted { .. }) => true,
                Ok(other) => {
                    tracing::info!(%mailbox, ?other, "a mailbox did not take a deposit");
                    false
                }
                Err(error) => {
                    tracing::debug!(%mailbox, %error, "cannot deposit with a mailbox");
                    false
                }
            }
        });
        futures::future::join_all(asks).await.into_iter().filter(|ok| *ok).count()
    }

    /// Sends an end-to-end receipt to `peer`: directly, or else deposited with each of
    /// `mailboxes`.
    pub(super) fn send_receipt(
        &self,
        peer: AuthorId,
        (request, deposit): (Vec<u8>, Vec<u8>),
        mailboxes: Vec<AuthorId>,
        key: [u8; 32],
    ) {
        let node = self.clone();
        self.spawn(Box::pin(async move {
            let direct = node.deliver(peer, request, false, Proto::Dm2).await;
            if direct
                .is_ok_and(|bytes| matches!(Dm2Reply::from_bytes(&bytes), Ok(Dm2Reply::Receipt(_))))
            {
                node.drive(Input::ReceiptSent { key }).await;
                return;
            }
            let held = node.deposit_with(peer, &deposit, &mailboxes).await;
            tracing::info!(held, "receipt deposited with the sender's mailboxes");
            if held > 0 {
                node.drive(Input::ReceiptSent { key }).await;
            }
        }));
    }
}
