//! What the node does with the network's events: gossip batches ingested and answered
//! with a verdict, connections made and lost, and the redialling of known peers.

use super::*;
use crate::core::GossipMessage;

impl Node {
    pub(super) async fn run_events(self, mut events: mpsc::Receiver<Event>) {
        let mut next = events.recv().await;
        while let Some(event) = next.take() {
            let Event::Message { source, id, topic, data } = event else {
                self.handle_event(event).await;
                next = events.recv().await;
                continue;
            };
            // Gossip that is already waiting is taken together: one hop to a blocking
            // thread for the lot instead of one per message. Order is kept; the first
            // other event ends the batch and is handled right after it.
            let mut batch = vec![GossipMessage { from: source, id, topic, bytes: data }];
            while batch.len() < GOSSIP_BATCH {
                match events.try_recv() {
                    Ok(Event::Message { source, id, topic, data }) => {
                        batch.push(GossipMessage { from: source, id, topic, bytes: data });
                    }
                    Ok(other) => {
                        next = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.handle_gossip(batch).await;
            if next.is_none() {
                next = events.recv().await;
            }
        }
    }

    pub(super) async fn handle_event(&self, event: Event) {
        match event {
            Event::Message { source, id, topic, data } => {
                self.handle_gossip(vec![GossipMessage { from: source, id, topic, bytes: data }])
                    .await;
            }
            Event::Connected { peer, addr, first } => {
                if first {
                    tracing::info!(peer = %self.peer_label(&peer), "peer connected");
                }
                self.handle_connected(peer, addr, first).await
            }
            Event::Disconnected { peer } => {
                tracing::info!(peer = %self.peer_label(&peer), "peer left");
                self.drive(crate::core::Input::Disconnected { peer }).await;
            }
            Event::Request { peer, .. } if !self.inner.request_limit.allow(peer) => {
                // Dropping the channel fails the request; the peer may retry later.
                self.inner.rate_limited.fetch_add(1, Ordering::Relaxed);
            }
            Event::Request { proto, peer, bytes, channel } => {
                // Over the global bound the request is dropped like a rate-limited one.
                let Some(slot) = self.inner.inbound.take(|| self.is_friend(&peer)) else {
                    return;
                };
                let node = self.clone();
                let span = tracing::info_span!(parent: &self.inner.span, "request", ?proto, peer = %short_peer(&peer));
                let _in = span.enter();
                self.spawn(async move {
                    let _slot = slot;
                    match proto {
                        net::Proto::Dm => node.handle_dm_request(peer, bytes, channel).await,
                        net::Proto::Dm2 => node.handle_dm2_request(peer, bytes, channel).await,
                        net::Proto::Group => {
                            node.answer_request(channel, |reply| {
                                crate::core::Input::GroupRequest { from: peer, bytes, reply }
                            })
                            .await;
                        }
                        net::Proto::Sync => node.handle_sync_request(peer, bytes, channel).await,
                        net::Proto::Mailbox => {
                            node.handle_mailbox_request(peer, bytes, channel).await
                        }
                        net::Proto::Blob => node.handle_blob_request(peer, bytes, channel).await,
                    }
                });
            }
            // The addresses a peer claims are not remembered (see `remember`).
            Event::Identified { .. } => {}
            Event::Subscribed { peer, topic } => self.peer_subscribed(peer, &topic),
        }
    }

    pub(super) async fn handle_connected(
        &self,
        peer: libp2p::PeerId,
        addr: Option<Multiaddr>,
        first: bool,
    ) {
        if let Some(addr) = addr {
            self.remember(peer, &addr);
        }
        let span = tracing::info_span!(parent: &self.inner.span, "peer", id = %short_peer(&peer));
        let work = async {
            // Queued messages for this peer go now rather than at their next retry time.
            if let Ok(author) = AuthorId::from_peer_id(&peer) {
                self.drive(crate::core::Input::Connected { peer }).await;
                self.collect_if_mailbox(peer);
                let node = self.clone();
                self.spawn(async move { node.resume_attachments(author).await });
            }
            // A second connection to a peer (an AutoNAT dial-back, a simultaneous dial)
            // brings nothing the first one's sync did not.
            if first || crate::net::idle_tuning().sync_every_connection {
                let node = self.clone();
                self.spawn(async move {
                    node.sync_with(peer, Stranger::IfFree).await;
                });
            }
        };
        tracing::Instrument::instrument(work, span).await;
    }

    /// Remembers an address this node dialled `peer` at (never an address a peer only
    /// claims: identify's listen addresses are not kept).
    pub(super) fn remember(&self, peer: libp2p::PeerId, addr: &Multiaddr) {
        let addr = addr.clone().with_p2p(peer).unwrap_or_else(|a| a);
        let (peer, addr) = (peer.to_string(), addr.to_string());
        if let Err(error) = self.inner.store.remember_peer(&peer, &addr, now_ms()) {
            tracing::warn!(%error, "cannot remember peer");
        }
    }
}
