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
/// How often the set of peers this node relays for is brought up to date.
const RELAY_FRIENDS_REFRESH: Duration = Duration::from_secs(2);
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
                    wait = BOOTSTRAP_RETRY_MIN;
                    // Without a /p2p part we cannot tell later whether we are still
                    // connected; check again after the usual interval.
                    if !self.pause(BOOTSTRAP_CHECK).await {
                        return;
                    }
                }
                Err(error) => {
                    tracing::debug!(%addr, %error, retry_in = ?wait, "bootstrap peer unreachable");
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

    /// Announces interest in `tag` in the DHT and connects to a few others interested.
    pub(super) async fn find_tag_peers(&self, tag: &Tag) {
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

    /// Keeps the relay's allowed set equal to this node's mutual connections (relaying
    /// limited to friends).
    pub(super) async fn run_relay_friends(self) {
        loop {
            let following = self.inner.store.following(&self.inner.me).unwrap_or_default();
            let friends = following
                .into_iter()
                .filter(|other| self.is_mutual(other).unwrap_or(false))
                .filter_map(|other| other.to_peer_id().ok());
            self.inner.net.set_relay_friends(friends);
            if !self.pause(RELAY_FRIENDS_REFRESH).await {
                return;
            }
        }
    }
}
