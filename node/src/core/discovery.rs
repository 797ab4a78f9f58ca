//! Discovery: which peers this node keeps connections to and looks for, decided here,
//! carried out by the driver (dials, DHT lookups and announcements).
//!
//! - **Bootstrap peers** are dialled at start and again with backoff whenever they are
//!   not connected: first wait [`BOOTSTRAP_RETRY_MIN_MS`], doubling up to
//!   [`BOOTSTRAP_RETRY_MAX_MS`]; a connected one is looked at again every
//!   [`BOOTSTRAP_CHECK_MS`]. Only the first failure in a row is a warning.
//! - **At start**, remembered peers are redialled (people this node's person follows
//!   first, then by most recent contact; [`REDIAL_PEERS`] of them, two addresses each),
//!   and a moment later ([`LOOKUP_DELAY_MS`]: lookups need someone to ask) subscribed
//!   hashtags are announced and looked up in the DHT and followed people are reached.
//! - **Hashtags in the DHT**: subscribing announces the tag and dials a few of the others
//!   who announced it ([`PROVIDERS_TO_DIAL`], not this node, not already connected);
//!   unsubscribing stops renewing the announcement. With `dht_tags` off nothing about tags
//!   goes to the DHT (a lookup would tell the peers asked, too).
//! - **Friends**: the network lets followed peers in beyond its connection limits and,
//!   with the relay for friends, relays for mutual connections. The sets are looked at
//!   every [`FRIENDS_EVERY_MS`] and right after this node's person follows or unfollows,
//!   and handed to the network only when they changed.

use std::collections::{BTreeSet, HashSet};

use kith_protocol::{AuthorId, Tag};
use libp2p::{Multiaddr, PeerId};

use super::{Context, Effect, Timer};

/// First wait before dialling an unreachable bootstrap peer again.
pub const BOOTSTRAP_RETRY_MIN_MS: u64 = 1_000;
/// Longest wait between attempts to reach a bootstrap peer.
pub const BOOTSTRAP_RETRY_MAX_MS: u64 = 300_000;
/// How often a connected bootstrap peer is looked at again.
pub const BOOTSTRAP_CHECK_MS: u64 = 30_000;
/// How long after start subscribed tags and followed people are looked up.
pub const LOOKUP_DELAY_MS: u64 = 1_000;
/// How often the sets of followed peers and mutual connections are looked at.
pub const FRIENDS_EVERY_MS: u64 = 2_000;
/// Providers of a hashtag dialled after a lookup.
pub const PROVIDERS_TO_DIAL: usize = 3;
/// How many remembered peers are redialled at start.
pub const REDIAL_PEERS: usize = 32;
/// Addresses tried per remembered peer at start.
const REDIAL_ADDRS: usize = 2;

/// How discovery starts: what the configuration says.
#[derive(Debug, Clone, Default)]
pub struct Start {
    /// Bootstrap peers to keep connected.
    pub bootstrap: Vec<Multiaddr>,
    /// Whether the relay serves mutual connections (their set is kept up to date).
    pub relay_friends: bool,
    /// Whether subscribed hashtags are announced and looked up in the DHT.
    pub dht_tags: bool,
}

/// One bootstrap peer.
#[derive(Debug)]
struct Bootstrap {
    addr: Multiaddr,
    /// Its peer id: from the address's `/p2p` part, or learnt when a dial succeeded.
    peer: Option<PeerId>,
    /// The wait before the next attempt after a failure.
    wait: u64,
    /// Whether the last attempt failed (the next failure is not news).
    failing: bool,
}

/// The discovery concern's state.
#[derive(Debug, Default)]
pub struct Discovery {
    bootstrap: Vec<Bootstrap>,
    connected: BTreeSet<PeerId>,
    relay_friends: bool,
    dht_tags: bool,
    /// The sets last handed to the network.
    followed: Option<Vec<PeerId>>,
    mutual: Option<Vec<PeerId>>,
}

impl Discovery {
    /// Starts discovery: bootstrap dials, remembered peers redialled, the friends sets,
    /// and the lookups a moment later.
    pub(crate) fn start(&mut self, cx: &Context, start: Start, now: u64) -> Vec<Effect> {
        self.relay_friends = start.relay_friends;
        self.dht_tags = start.dht_tags;
        self.bootstrap = start
            .bootstrap
            .into_iter()
            .map(|addr| Bootstrap {
                peer: crate::net::peer_of(&addr),
                addr,
                wait: BOOTSTRAP_RETRY_MIN_MS,
                failing: false,
            })
            .collect();
        let mut effects: Vec<Effect> = (0..self.bootstrap.len())
            .map(|i| Effect::Dial { addr: self.bootstrap[i].addr.clone(), bootstrap: Some(i) })
            .collect();
        effects
            .extend(redial_plan(cx).into_iter().map(|addr| Effect::Dial { addr, bootstrap: None }));
        effects.extend(self.friends(cx, now, true));
        effects.push(Effect::Schedule {
            at: now.saturating_add(LOOKUP_DELAY_MS),
            timer: Timer::Lookups,
        });
        effects
    }

    /// A connection to `peer` was made.
    pub(crate) fn connected(&mut self, peer: PeerId) {
        self.connected.insert(peer);
    }

    /// The last connection to `peer` closed.
    pub(crate) fn disconnected(&mut self, peer: &PeerId) {
        self.connected.remove(peer);
    }

    /// Time to look at bootstrap peer `index`: dial it unless it is connected.
    pub(crate) fn bootstrap_due(&mut self, index: usize, now: u64) -> Vec<Effect> {
        let Some(b) = self.bootstrap.get(index) else { return Vec::new() };
        if b.peer.is_some_and(|peer| self.connected.contains(&peer)) {
            let at = now.saturating_add(BOOTSTRAP_CHECK_MS);
            return vec![Effect::Schedule { at, timer: Timer::Bootstrap(index) }];
        }
        vec![Effect::Dial { addr: b.addr.clone(), bootstrap: Some(index) }]
    }

    /// How the dial of bootstrap peer `index` went: look again later, sooner after a
    /// failure (with backoff).
    pub(crate) fn bootstrap_dialled(
        &mut self,
        index: usize,
        result: Result<PeerId, String>,
        now: u64,
    ) -> Vec<Effect> {
        let Some(b) = self.bootstrap.get_mut(index) else { return Vec::new() };
        let at = match result {
            Ok(peer) => {
                tracing::info!(%peer, addr = %b.addr, "connected to bootstrap peer");
                b.peer = Some(peer);
                // Not marked connected here: only the connection's own event says so (this
                // answer may come after the connection already closed again, and a peer
                // marked connected by mistake would never be dialled again).
                b.failing = false;
                b.wait = BOOTSTRAP_RETRY_MIN_MS;
                now.saturating_add(BOOTSTRAP_CHECK_MS)
            }
            Err(error) => {
                if b.failing {
                    tracing::debug!(addr = %b.addr, %error, retry_in_ms = b.wait, "bootstrap peer unreachable");
                } else {
                    tracing::warn!(addr = %b.addr, %error, "cannot reach bootstrap peer; will keep trying");
                }
                b.failing = true;
                let at = now.saturating_add(b.wait);
                b.wait = b.wait.saturating_mul(2).min(BOOTSTRAP_RETRY_MAX_MS);
                at
            }
        };
        vec![Effect::Schedule { at, timer: Timer::Bootstrap(index) }]
    }

    /// The lookups after start: subscribed tags (with `dht_tags`), then followed people.
    pub(crate) fn lookups(&self, cx: &Context) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.dht_tags {
            let tags = cx.store.subscriptions().unwrap_or_default();
            effects.extend(tags.into_iter().map(Effect::FindTagPeers));
        }
        let following = cx.store.following(&cx.me).unwrap_or_default();
        effects.extend(following.into_iter().map(Effect::Reach));
        effects
    }

    /// This node's person subscribed to `tag` (`on`) or unsubscribed.
    pub(crate) fn tag_interest(&self, tag: Tag, on: bool) -> Vec<Effect> {
        match (on, self.dht_tags) {
            (true, true) => vec![Effect::FindTagPeers(tag)],
            (true, false) => Vec::new(),
            // Stopped even with `dht_tags` off: an announcement from before must not be
            // renewed.
            (false, _) => vec![Effect::StopProviding(tag)],
        }
    }

    /// The `dht_tags` setting changed: announce the subscribed tags and look for their
    /// subscribers, or stop renewing their announcements.
    pub(crate) fn set_dht_tags(&mut self, cx: &Context, on: bool) -> Vec<Effect> {
        if self.dht_tags == on {
            return Vec::new();
        }
        self.dht_tags = on;
        let tags = cx.store.subscriptions().unwrap_or_default();
        if on {
            tags.into_iter().map(Effect::FindTagPeers).collect()
        } else {
            tags.into_iter().map(Effect::StopProviding).collect()
        }
    }

    /// Others who announced a tag: dial a few that are not this node and not connected.
    pub(crate) fn providers(&self, cx: &Context, peers: Vec<PeerId>) -> Vec<Effect> {
        let me = cx.me.to_peer_id().ok();
        let mut seen = HashSet::new();
        peers
            .into_iter()
            .filter(|peer| Some(*peer) != me && !self.connected.contains(peer))
            .filter(|peer| seen.insert(*peer))
            .take(PROVIDERS_TO_DIAL)
            .map(Effect::DialPeer)
            .collect()
    }

    /// The friends sets, handed over when they changed; with `schedule`, the next look.
    pub(crate) fn friends(&mut self, cx: &Context, now: u64, schedule: bool) -> Vec<Effect> {
        let mut effects = Vec::new();
        let following = cx.store.following(&cx.me).unwrap_or_default();
        let peers = |who: &[AuthorId]| -> Vec<PeerId> {
            who.iter().filter_map(|a| a.to_peer_id().ok()).collect()
        };
        let followed = peers(&following);
        let mutual = if self.relay_friends {
            let mutual: Vec<AuthorId> = following
                .into_iter()
                .filter(|o| super::dm::is_mutual(&cx.store, &cx.me, o).unwrap_or(false))
                .collect();
            Some(peers(&mutual))
        } else {
            None
        };
        if self.followed.as_ref() != Some(&followed) || self.mutual != mutual {
            self.followed = Some(followed.clone());
            self.mutual.clone_from(&mutual);
            effects.push(Effect::Friends { followed, mutual });
        }
        if schedule {
            let at = now.saturating_add(FRIENDS_EVERY_MS);
            effects.push(Effect::Schedule { at, timer: Timer::Friends });
        }
        effects
    }
}

/// The addresses redialled at start: remembered peers, people this node's person follows
/// first, then by most recent contact (as the store lists them). A peer id counts for
/// nothing by itself: ids that sort first cannot push a friend out.
pub(crate) fn redial_plan(cx: &Context) -> Vec<Multiaddr> {
    let known = match cx.store.known_peers(crate::store::MAX_KNOWN_PEERS) {
        Ok(known) => known,
        Err(error) => {
            tracing::warn!(%error, "cannot read known peers");
            return Vec::new();
        }
    };
    let following = cx.store.following(&cx.me).unwrap_or_default();
    let followed: HashSet<String> =
        following.iter().filter_map(|a| a.to_peer_id().ok()).map(|p| p.to_string()).collect();
    let (mut order, others): (Vec<_>, Vec<_>) =
        known.into_iter().partition(|(peer, _)| followed.contains(peer));
    order.extend(others);
    order
        .into_iter()
        .take(REDIAL_PEERS)
        .flat_map(|(_, addrs)| {
            addrs.into_iter().filter_map(|a| a.parse().ok()).take(REDIAL_ADDRS).collect::<Vec<_>>()
        })
        .collect()
}
