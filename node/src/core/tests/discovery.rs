//! Discovery's rules: bootstrap backoff, the redial plan, tag lookups and providers,
//! the friends sets.

use kith_protocol::Tag;

use super::*;
use crate::core::discovery::{
    Start, BOOTSTRAP_CHECK_MS, BOOTSTRAP_RETRY_MAX_MS, LOOKUP_DELAY_MS, PROVIDERS_TO_DIAL,
};

fn peer(secret: u8) -> PeerId {
    Keypair::from_secret_bytes(&[secret; 32]).id().to_peer_id().unwrap()
}

fn schedules(effects: &[Effect]) -> Vec<(u64, Timer)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Schedule { at, timer } => Some((*at, *timer)),
            _ => None,
        })
        .collect()
}

fn dials(effects: &[Effect]) -> Vec<(String, Option<usize>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Dial { addr, bootstrap } => Some((addr.to_string(), *bootstrap)),
            _ => None,
        })
        .collect()
}

fn friends(effects: &[Effect]) -> Vec<(Vec<PeerId>, Option<Vec<PeerId>>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Friends { followed, mutual } => Some((followed.clone(), mutual.clone())),
            _ => None,
        })
        .collect()
}

const BOOT: &str = "/ip4/127.0.0.1/tcp/4001";

#[test]
fn an_unreachable_bootstrap_peer_is_dialled_again_with_doubling_waits_up_to_the_cap() {
    let mut f = Fixture::new(1);
    let start = Start { bootstrap: vec![BOOT.parse().unwrap()], ..Start::default() };
    let effects = f.handle(Input::Discover(start), 0);
    assert_eq!(dials(&effects), vec![(BOOT.to_string(), Some(0))]);
    assert!(schedules(&effects).contains(&(LOOKUP_DELAY_MS, Timer::Lookups)));
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..12 {
        let failed = Input::Dialled { bootstrap: 0, result: Err("refused".into()) };
        let effects = f.handle(failed, now);
        let [(at, Timer::Bootstrap(0))] = schedules(&effects)[..] else { panic!("{effects:?}") };
        waits.push(at - now);
        now = at;
        let effects = f.handle(Input::Timer(Timer::Bootstrap(0)), now);
        assert_eq!(dials(&effects), vec![(BOOT.to_string(), Some(0))]);
    }
    assert_eq!(&waits[..4], &[1_000, 2_000, 4_000, 8_000]);
    assert_eq!(*waits.last().unwrap(), BOOTSTRAP_RETRY_MAX_MS);
    assert!(waits.iter().all(|w| *w <= BOOTSTRAP_RETRY_MAX_MS));

    // Reached: looked at again after the check interval, not dialled while connected.
    let reached = peer(9);
    f.handle(Input::Connected { peer: reached }, now);
    let effects = f.handle(Input::Dialled { bootstrap: 0, result: Ok(reached) }, now);
    assert_eq!(schedules(&effects), vec![(now + BOOTSTRAP_CHECK_MS, Timer::Bootstrap(0))]);
    now += BOOTSTRAP_CHECK_MS;
    let effects = f.handle(Input::Timer(Timer::Bootstrap(0)), now);
    assert!(dials(&effects).is_empty());
    assert_eq!(schedules(&effects), vec![(now + BOOTSTRAP_CHECK_MS, Timer::Bootstrap(0))]);
    // Lost: dialled at the next look, and a failure then waits the shortest time again.
    f.handle(Input::Disconnected { peer: reached }, now);
    now += BOOTSTRAP_CHECK_MS;
    let effects = f.handle(Input::Timer(Timer::Bootstrap(0)), now);
    assert_eq!(dials(&effects), vec![(BOOT.to_string(), Some(0))]);
    let effects = f.handle(Input::Dialled { bootstrap: 0, result: Err("gone".into()) }, now);
    assert_eq!(schedules(&effects), vec![(now + 1_000, Timer::Bootstrap(0))]);
    // A dial's success that arrives after its connection closed again (restarts on a busy
    // machine) does not count as connected: the next look dials again. It used to, and
    // the peer was never dialled again.
    let effects = f.handle(Input::Timer(Timer::Bootstrap(0)), now);
    assert_eq!(dials(&effects), vec![(BOOT.to_string(), Some(0))]);
    f.handle(Input::Connected { peer: reached }, now);
    f.handle(Input::Disconnected { peer: reached }, now);
    let effects = f.handle(Input::Dialled { bootstrap: 0, result: Ok(reached) }, now);
    assert_eq!(schedules(&effects), vec![(now + BOOTSTRAP_CHECK_MS, Timer::Bootstrap(0))]);
    now += BOOTSTRAP_CHECK_MS;
    let effects = f.handle(Input::Timer(Timer::Bootstrap(0)), now);
    assert_eq!(dials(&effects), vec![(BOOT.to_string(), Some(0))]);
    // A timer for a bootstrap peer that does not exist does nothing.
    assert!(f.handle(Input::Timer(Timer::Bootstrap(7)), now).is_empty());
}

#[test]
fn restart_redials_followed_peers_first_with_two_addresses_each() {
    let mut f = Fixture::new(1);
    let (friend, other) = (peer(2), peer(3));
    let store = f.core.store().clone();
    // The stranger was seen more recently, the friend is followed.
    for (i, port) in [4002, 4003, 4004].into_iter().enumerate() {
        let addr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{friend}");
        store.remember_peer(&friend.to_string(), &addr, 10 + i as u64).unwrap();
    }
    let addr = format!("/ip4/127.0.0.1/tcp/5000/p2p/{other}");
    store.remember_peer(&other.to_string(), &addr, 100).unwrap();
    let friend_id = Keypair::from_secret_bytes(&[2; 32]).id();
    f.publish(RecordKind::Follow { target: friend_id }, 1);

    let effects = f.handle(Input::Discover(Start::default()), 200);
    let dialled: Vec<String> = dials(&effects).into_iter().map(|(a, _)| a).collect();
    assert_eq!(dialled.len(), 3, "{dialled:?}");
    assert!(dialled[..2].iter().all(|a| a.ends_with(&friend.to_string())), "{dialled:?}");
    assert!(dialled[2].ends_with(&other.to_string()));
}

#[test]
fn tags_go_to_the_dht_only_when_allowed_and_unsubscribing_stops_the_announcement() {
    let mut f = Fixture::new(1);
    let rust = Tag::parse("rust").unwrap();
    f.core.store().subscribe(&rust).unwrap();
    let followed = Keypair::from_secret_bytes(&[4; 32]).id();
    f.publish(RecordKind::Follow { target: followed }, 1);

    // Off: the lookups after start reach followed people but ask nothing about tags.
    f.handle(Input::Discover(Start { dht_tags: false, ..Start::default() }), 10);
    let effects = f.handle(Input::Timer(Timer::Lookups), 10 + LOOKUP_DELAY_MS);
    assert!(matches!(&effects[..], [Effect::Reach(who)] if *who == followed), "{effects:?}");
    let on = Input::TagInterest { tag: rust.clone(), on: true };
    assert!(f.handle(on, 20).is_empty());
    let off = Input::TagInterest { tag: rust.clone(), on: false };
    assert!(matches!(&f.handle(off, 21)[..], [Effect::StopProviding(t)] if *t == rust));

    // Turned on: every subscribed tag is announced and looked up; off again: stopped.
    let effects = f.handle(Input::DhtTags(true), 30);
    assert!(matches!(&effects[..], [Effect::FindTagPeers(t)] if *t == rust), "{effects:?}");
    assert!(f.handle(Input::DhtTags(true), 31).is_empty(), "no change, nothing to do");
    let on = Input::TagInterest { tag: rust.clone(), on: true };
    assert!(matches!(&f.handle(on, 32)[..], [Effect::FindTagPeers(t)] if *t == rust));
    let effects = f.handle(Input::DhtTags(false), 40);
    assert!(matches!(&effects[..], [Effect::StopProviding(t)] if *t == rust), "{effects:?}");
}

#[test]
fn a_few_providers_are_dialled_never_this_node_or_one_already_connected() {
    let mut f = Fixture::new(1);
    let me = f.core.me().to_peer_id().unwrap();
    let connected = peer(2);
    f.handle(Input::Connected { peer: connected }, 5);
    let others: Vec<PeerId> = (3..10).map(peer).collect();
    let mut offered = vec![me, connected, others[0], others[0]];
    offered.extend(&others[1..]);
    let effects = f.handle(Input::Providers(offered), 10);
    let dialled: Vec<PeerId> = effects
        .iter()
        .map(|e| match e {
            Effect::DialPeer(p) => *p,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(dialled, others[..PROVIDERS_TO_DIAL].to_vec());
}

#[test]
fn the_friends_sets_reach_the_network_when_they_change() {
    let mut f = Fixture::new(1);
    let me = f.core.me();
    let friend = Keypair::from_secret_bytes(&[2; 32]);
    let friend_peer = friend.id().to_peer_id().unwrap();
    let effects = f.handle(Input::Discover(Start { relay_friends: true, ..Start::default() }), 0);
    assert_eq!(friends(&effects), vec![(vec![], Some(vec![]))]);
    assert!(schedules(&effects).iter().any(|(_, t)| *t == Timer::Friends));

    // Following: handed over at once, not at the next look.
    let (effects, _) = f.publish(RecordKind::Follow { target: friend.id() }, 5);
    assert_eq!(friends(&effects), vec![(vec![friend_peer], Some(vec![]))]);
    // Nothing changed: only the next look is scheduled.
    let effects = f.handle(Input::Timer(Timer::Friends), 2_000);
    assert!(friends(&effects).is_empty());
    assert_eq!(schedules(&effects), vec![(4_000, Timer::Friends)]);
    // They follow back: a mutual connection, relayed for from the next look.
    let follow = signed(&friend, 1, None, 20, RecordKind::Follow { target: me });
    f.handle(Input::Gossip(vec![gossip(&friend, &Topic::Author(me), &follow)]), 2_100);
    let effects = f.handle(Input::Timer(Timer::Friends), 4_000);
    assert_eq!(friends(&effects), vec![(vec![friend_peer], Some(vec![friend_peer]))]);
}
