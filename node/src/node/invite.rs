//! Invites: a link to hand someone (`kith invite`), adding the person behind one (`kith
//! add`), and reaching a person by id alone (`kith dial ID`).

use std::{collections::HashSet, net::IpAddr, time::Duration};

use futures::future::select_ok;
use kith_protocol::{
    invite::{Invite, InviteError, MAX_INVITE_ADDRS},
    AuthorId,
};
use libp2p::{multiaddr::Protocol, Multiaddr};

use super::{errors::Reply, now_ms, view, Node};
use crate::{
    api::{ApiError, Response},
    names::{check_petname, lookalike_key, same_petname},
};

/// How long an invite is valid when no expiry is asked for (7 days).
pub const DEFAULT_INVITE_MS: u64 = 7 * 24 * 3_600_000;
/// Longest validity an invite may have (one year).
pub const MAX_INVITE_MS: u64 = 365 * 24 * 3_600_000;
/// Addresses put in an invite, at most (fewer make a shorter link).
const INVITE_ADDRS: usize = 6;
/// How long `add` and `dial ID` try the known addresses, and then the DHT, each.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// Addresses dialled at once when connecting to a person.
const DIAL_AT_ONCE: usize = 8;

/// "3 minutes", "2 hours", "5 days": how long `ms` is, for people.
pub(crate) fn span(ms: u64) -> String {
    let s = ms / 1000;
    let (n, unit) = match s {
        0..=119 => (s, "second"),
        120..=7_199 => (s / 60, "minute"),
        7_200..=172_799 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Where an address leads, best first: 0 public, 1 relayed, 2 private network,
/// 3 loopback; `None` for addresses no one can dial (unspecified).
fn rank(addr: &Multiaddr) -> Option<u8> {
    if addr.iter().any(|p| p == Protocol::P2pCircuit) {
        return Some(1);
    }
    let ip: IpAddr = match addr.iter().next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) => return Some(0),
        _ => return None,
    };
    if ip.is_unspecified() {
        return None;
    }
    if ip.is_loopback() {
        return Some(3);
    }
    let private = match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local() || v4.is_shared_or_cgnat(),
        IpAddr::V6(v6) => v6.is_unique_local() || v6.is_unicast_link_local(),
    };
    Some(if private { 2 } else { 0 })
}

/// `true` for 100.64.0.0/10 (carrier-grade NAT), not reachable from outside.
trait Cgnat {
    fn is_shared_or_cgnat(&self) -> bool;
}

impl Cgnat for std::net::Ipv4Addr {
    fn is_shared_or_cgnat(&self) -> bool {
        let [a, b, ..] = self.octets();
        a == 100 && (64..128).contains(&b)
    }
}

/// `addr` without a final `/p2p/<peer>`.
fn without_peer(addr: &Multiaddr) -> Multiaddr {
    let mut a = addr.clone();
    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.pop();
    }
    a
}

/// Why an invite cannot be used.
fn invite_error(e: InviteError) -> ApiError {
    match e {
        InviteError::Expired { expires } => ApiError::refused(format!(
            "the invite expired {} ago; ask them for a new one",
            span(now_ms().saturating_sub(expires))
        )),
        other => ApiError::invalid(other.to_string()),
    }
}

impl Node {
    /// The addresses to put in an invite: the public one AutoNAT confirmed, relayed
    /// ones, then the rest of the listen addresses (LAN, then loopback), at most
    /// [`INVITE_ADDRS`], without `/p2p/<own id>`.
    async fn invite_addrs(&self) -> Vec<Multiaddr> {
        let mut all: Vec<Multiaddr> = Vec::new();
        if let Ok(stats) = self.inner.net.stats().await {
            all.extend(stats.public_addr);
            all.extend(stats.relay_addrs);
        }
        all.extend(self.listen_addrs());
        let mut seen = HashSet::new();
        let mut ranked: Vec<(u8, usize, Multiaddr)> = all
            .iter()
            .map(without_peer)
            .enumerate()
            .filter_map(|(i, a)| Some((rank(&a)?, i, a)))
            .filter(|(_, _, a)| seen.insert(a.to_vec()))
            .collect();
        ranked.sort_by_key(|(r, i, _)| (*r, *i));
        ranked.into_iter().map(|(_, _, a)| a).take(INVITE_ADDRS.min(MAX_INVITE_ADDRS)).collect()
    }

    /// Makes an invite link valid for `expires_in_ms` (default [`DEFAULT_INVITE_MS`]).
    pub(super) async fn invite(&self, expires_in_ms: Option<u64>) -> Reply {
        let valid = expires_in_ms.unwrap_or(DEFAULT_INVITE_MS);
        if valid == 0 || valid > MAX_INVITE_MS {
            return Err(ApiError::invalid(format!(
                "an invite is valid for more than 0 and at most {}",
                span(MAX_INVITE_MS)
            )));
        }
        let addrs = self.invite_addrs().await;
        let name = view::name_of(&self.inner.store, &self.inner.me).unwrap_or_default();
        let expires = now_ms().saturating_add(valid);
        let invite =
            Invite::new(self.inner.me, &name, addrs.iter().map(|a| a.to_vec()).collect(), expires);
        let link =
            invite.to_link(&self.inner.keypair).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Response::Invite { link, expires, addrs: addrs.iter().map(|a| a.to_string()).collect() })
    }

    /// Adds the person behind an invite link: checks it, connects (its addresses, else
    /// the DHT), follows them and gives them a petname (`petname`, else the name in the
    /// link when it is a free, valid petname and they have none).
    pub(super) async fn add(&self, link: &str, petname: Option<&str>) -> Reply {
        let invite = Invite::from_link(link, now_ms()).map_err(invite_error)?;
        let who = invite.id;
        let store = &self.inner.store;
        if who == self.inner.me {
            return Err(ApiError::refused(
                "this is your own invite link: send it to someone else, who adds you with \
                 kith add",
            ));
        }
        if store.moderation(&who)?.blocked {
            return Err(ApiError::refused(format!("you blocked {who}; unblock them first")));
        }
        let petname = match petname {
            Some(p) => Some(self.free_petname(&who, p)?),
            None => self.suggested_petname(&who, &invite.name),
        };
        let peer = who.to_peer_id().map_err(|e| ApiError::invalid(e.to_string()))?;
        let addrs: Vec<Multiaddr> = invite
            .addrs
            .iter()
            .filter_map(|bytes| Multiaddr::try_from(bytes.clone()).ok())
            // An address that names another peer at its end is dropped.
            .filter_map(|a| a.with_p2p(peer).ok())
            .collect();
        // Signed by the person the link is from, so kept to redial, but as never
        // contacted: a dial that works remembers the address again with its time.
        for addr in &addrs {
            if let Err(error) = store.remember_peer(&peer.to_string(), &addr.to_string(), 0) {
                tracing::warn!(%error, "cannot remember an invite's address");
            }
        }
        let connected = self.connect_to(who, addrs).await;
        self.follow(&who.to_string(), true).await?;
        if let Some(p) = &petname {
            store.set_petname(&who, Some(p))?;
        }
        store.flush().await?;
        tracing::info!(peer = %who, connected, "added from an invite");
        Ok(Response::Added { id: who.to_string(), name: invite.name, connected, petname })
    }

    /// `text` as a petname for `who`: valid, and not another person's.
    fn free_petname(&self, who: &AuthorId, text: &str) -> Result<String, ApiError> {
        let p = check_petname(text).map_err(|e| ApiError::invalid(e.to_string()))?;
        match self.inner.store.petname_owner(p)? {
            Some(owner) if owner != *who => Err(ApiError::refused(format!(
                "{p:?} is already your petname for {owner}; choose another"
            ))),
            _ => Ok(p.to_owned()),
        }
    }

    /// The name from an invite as a petname, when `who` has none and it is a free,
    /// valid one (lower case) that looks like no one else's: a petname is shown unmarked,
    /// so a link whose name imitates a friend's (a Cyrillic `а` for `a`, an invisible
    /// character) must not become one without the person choosing it (`--as`).
    fn suggested_petname(&self, who: &AuthorId, name: &str) -> Option<String> {
        let store = &self.inner.store;
        if store.petname(who).ok()?.is_some() || name.chars().any(crate::names::is_invisible) {
            return None;
        }
        let p = check_petname(&name.to_lowercase()).ok()?.to_owned();
        let key = lookalike_key(&p);
        let taken = store
            .petnames()
            .ok()?
            .iter()
            .any(|(other, q)| other != who && (same_petname(q, &p) || lookalike_key(q) == key));
        let like_another =
            store.people_looking_like(&p, 8).ok()?.iter().any(|(other, _)| other != who);
        (!taken && !like_another).then_some(p)
    }

    /// Connects to `who` unless connected: dials `addrs` and the addresses remembered for
    /// them at once, then asks the DHT. Returns whether a connection is up.
    pub(super) async fn connect_to(&self, who: AuthorId, addrs: Vec<Multiaddr>) -> bool {
        let Ok(peer) = who.to_peer_id() else { return false };
        let net = &self.inner.net;
        if net.is_connected(peer).await {
            return true;
        }
        let remembered = self.inner.store.known_peers_of(&peer.to_string()).unwrap_or_default();
        let mut seen = HashSet::new();
        let candidates: Vec<Multiaddr> = addrs
            .into_iter()
            .chain(remembered.iter().filter_map(|a| a.parse().ok()))
            .filter(|a: &Multiaddr| seen.insert(a.to_vec()))
            .take(DIAL_AT_ONCE)
            .collect();
        if !candidates.is_empty() {
            let dials = candidates.into_iter().map(|a| Box::pin(net.dial(a)));
            if let Ok(Ok(_)) = tokio::time::timeout(CONNECT_WAIT, select_ok(dials)).await {
                return true;
            }
        }
        tokio::time::timeout(CONNECT_WAIT, self.reach(who)).await.unwrap_or(false)
    }

    /// `kith dial ID`: connects to a person by id (remembered addresses, then the DHT).
    pub(super) async fn dial_person(&self, text: &str) -> Reply {
        let who = self.person(text)?;
        if who == self.inner.me {
            return Err(ApiError::refused("that is you"));
        }
        if self.connect_to(who, Vec::new()).await {
            Ok(Response::Ok)
        } else {
            Err(ApiError::unavailable(format!(
                "cannot reach {who}: no remembered address answered and the DHT found none \
                 (are you connected to anyone?)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ranks() {
        let r = |s: &str| rank(&s.parse().unwrap());
        assert_eq!(r("/ip4/203.0.113.7/tcp/4001"), Some(0));
        assert_eq!(r("/dns4/example.org/tcp/4001"), Some(0));
        let relayed = "/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWEtW4gg4oBMVv145QpS46UV7uQMxyNxP2vftiFUfeSH5K/p2p-circuit";
        assert_eq!(r(relayed), Some(1));
        assert_eq!(r("/ip4/192.168.1.2/udp/4001/quic-v1"), Some(2));
        assert_eq!(r("/ip4/100.100.1.1/tcp/1"), Some(2));
        assert_eq!(r("/ip6/fd00::1/tcp/1"), Some(2));
        assert_eq!(r("/ip4/127.0.0.1/tcp/1"), Some(3));
        assert_eq!(r("/ip4/0.0.0.0/tcp/1"), None);
    }

    #[test]
    fn spans() {
        assert_eq!(span(1_000), "1 second");
        assert_eq!(span(90_000), "90 seconds");
        assert_eq!(span(3_600_000), "60 minutes");
        assert_eq!(span(7 * 24 * 3_600_000), "7 days");
    }
}
