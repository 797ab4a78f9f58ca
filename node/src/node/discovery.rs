//! Finding peers beyond the LAN, the driver's side: what [`crate::core::discovery`]
//! decides (bootstrap peers dialled with backoff, remembered peers redialled, people
//! looked up by id in the DHT, hashtag providers announced and found, the friends sets)
//! carried out here.

use kith_protocol::{AuthorId, Tag, Topic};
use libp2p::{Multiaddr, PeerId};

use super::Node;
use crate::core::Input;

/// The DHT key under which nodes interested in `tag` announce themselves.
pub(crate) fn tag_key(tag: &Tag) -> Vec<u8> {
    Topic::Tag(tag.clone()).to_string().into_bytes()
}

impl Node {
    /// Dials `addr` in the background; for bootstrap peer `bootstrap`, tells the core how
    /// it went.
    pub(super) fn dial_for_discovery(&self, addr: Multiaddr, bootstrap: Option<usize>) {
        let node = self.clone();
        self.spawn(async move {
            let result = node.inner.net.dial(addr.clone()).await.map_err(|e| e.to_string());
            match bootstrap {
                Some(bootstrap) => node.drive(Input::Dialled { bootstrap, result }).await,
                None => {
                    if let Err(error) = result {
                        tracing::debug!(%addr, %error, "redial failed");
                    }
                }
            }
        });
    }

    /// Reaches `who` in the background (see [`Node::reach`]).
    pub(super) fn reach_later(&self, who: AuthorId) {
        let node = self.clone();
        self.spawn(async move {
            node.reach(who).await;
        });
    }

    /// Announces interest in `tag` in the DHT and tells the core who else announced it.
    pub(super) fn find_tag_peers(&self, tag: Tag) {
        let node = self.clone();
        self.spawn(async move {
            let key = tag_key(&tag);
            node.inner.net.provide(key.clone()).await;
            let peers: Vec<PeerId> = node.inner.net.find_providers(key).await;
            node.drive(Input::Providers(peers)).await;
        });
    }

    /// The network's sets of followed peers and mutual connections, as the core decided.
    pub(super) fn set_friends(&self, followed: Vec<PeerId>, mutual: Option<Vec<PeerId>>) {
        self.inner.net.set_followed(followed);
        if let Some(mutual) = mutual {
            self.inner.net.set_relay_friends(mutual);
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
}
