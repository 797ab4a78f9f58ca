//! Finding peers beyond the LAN: bootstrap peers dialled with backoff, people looked up
//! by id in the DHT, and hashtag providers announced and found in the DHT.

use std::time::Duration;

use kith_protocol::{AuthorId, Tag, Topic};
use libp2p::Multiaddr;

use super::Node;

/// First and longest wait between attempts to reach a bootstrap peer.
const BOOTSTRAP_RETRY_MIN: Duration = Duration::from_secs(1);
const BOOTSTRAP_RETRY_MAX: Duration = Duration::from_secs(300);
/// How often a connected bootstrap peer is checked again.
const BOOTSTRAP_CHECK: Duration = Duration::from_secs(30);
/// How often the sets of followed peers (let in beyond the connection limits) and of
/// mutual connections (relayed for) are brought up to date.
const FRIENDS_REFRESH: Duration = Duration::from_secs(2);
/// Providers of a hashtag dialled after a lookup.
const PROVIDERS_TO_DIAL: usize = 3;

/// The DHT key under which nodes interested in `tag` announce themselves.
pub(crate) fn tag_key(tag: &Tag) -> Vec<u8> {
    Topic::Tag(tag.clone()).to_string().into_bytes()
}

impl Node {
    /// Keeps a connection to one bootstrap peer: dials it, and again with backoff
    /// whenever it is not connected.
    pub(super) async fn keep_bootstrap(self, addr: Multiaddr) {
        let mut wait = BOOTSTRAP_RETRY_MIN;
        // Only the first failure in a row is a warning; the retries after it are not news.
        let mut failing = false;
        loop {
            let connected = match crate::net::peer_of(&addr) {
                Some(peer) => self.inner.net.is_connected(peer).await,
                None => false,
            };
            if connected {
                wait = BOOTSTRAP_RETRY_MIN;
                if !self.pause(BOOTSTRAP_CHECK).await {
                    return;
                }
                continue;
            }
            match self.inner.net.dial(addr.clone()).await {
                Ok(peer) => {
                    tracing::info!(%peer, %addr, "connected to bootstrap peer");
                    failing = false;
                    wait = BOOTSTRAP_RETRY_MIN;
                    // Without a /p2p part we cannot tell later whether we are still
                    // connected; check again after the usual interval.
                    if !self.pause(BOOTSTRAP_CHECK).await {
                        return;
                    }
                }
                Err(error) => {
                    if failing {
                        tracing::debug!(%addr, %error, retry_in = ?wait, "bootstrap peer unreachable");
                    } else {
                        tracing::warn!(%addr, %error, "cannot reach bootstrap peer; will keep trying");
                    }
                    failing = true;
                    if !self.pause(wait).await {
                        return;
                    }
                    wait = (wait * 2).min(BOOTSTRAP_RETRY_MAX);
                }
            }
        }
    }

    /// Connects to `who` if not connected, finding their addresses in the DHT.
    pub(super) async fn reach(&self, who: AuthorId) -> bool {
        let Ok(peer) = who.to_peer_id() else { return false };
        if self.inner.net.is_connected(peer).await {
            return true;
        }
        for addr in self.inner.net.find_peer(peer).await {
            let addr = addr.with_p2p(peer).unwrap_or_else(|a| a);
            if self.inner.net.dial(addr.clone()).await.is_ok() {
                tracing::info!(%peer, %addr, "reached through the DHT");
                return true;
            }
        }
        false
    }

    /// Announces interest in `tag` in the DHT and connects to a few others interested;
    /// nothing when the configuration keeps tags out of the DHT (`dht_tags = false`: a
    /// lookup would tell the peers asked, too).
    pub(super) async fn find_tag_peers(&self, tag: &Tag) {
        if !self.inner.dht_tags.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let key = tag_key(tag);
        self.inner.net.provide(key.clone()).await;
        let me = self.inner.net.local_peer();
        let mut dialled = 0;
        for peer in self.inner.net.find_providers(key).await {
            if peer == me || self.inner.net.is_connected(peer).await {
                continue;
            }
            self.inner.net.dial_peer(peer).await;
            dialled += 1;
            if dialled == PROVIDERS_TO_DIAL {
                break;
            }
        }
    }

    /// Keeps the network's set of followed peers (always let in) equal to whom this
    /// node's person follows, and with `relay_friends`, the relay's allowed set equal to
    /// the mutual connections among them.
    pub(super) async fn run_friends(self, relay_friends: bool) {
        loop {
            self.update_friends(relay_friends);
            if !self.pause(FRIENDS_REFRESH).await {
                return;
            }
        }
    }

    /// See [`Node::run_friends`]; also called right after a follow or an unfollow.
    pub(super) fn update_friends(&self, relay_friends: bool) {
        let following = self.inner.store.following(&self.inner.me).unwrap_or_default();
        let peers = |who: &[AuthorId]| -> Vec<libp2p::PeerId> {
            who.iter().filter_map(|a| a.to_peer_id().ok()).collect()
        };
        self.inner.net.set_followed(peers(&following));
        if relay_friends {
            let mutual: Vec<AuthorId> =
                following.into_iter().filter(|o| self.is_mutual(o).unwrap_or(false)).collect();
            self.inner.net.set_relay_friends(peers(&mutual));
        }
    }
}
