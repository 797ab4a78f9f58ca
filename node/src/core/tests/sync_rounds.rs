//! The pace of the periodic sync rounds through the core (issue 21 item 3): rounds that
//! find nothing back off; records that sync brings, a gap, or a peer whose digest shows
//! it ahead bring them back (the state machine alone is tested in `sync/rounds.rs`).

use kith_protocol::sync::{Query, SyncRequest};

use super::*;
use crate::core::sync::{Pace, Pull};

const PACE: Pace = Pace { min_ms: 30_000, max_ms: 240_000, jitter: 0.25 };

fn peer_of(f: &Fixture) -> PeerId {
    f.core.me().to_peer_id().unwrap()
}

/// The sync round timers among `effects`: (when, generation).
fn sync_timers(effects: &[Effect]) -> Vec<(u64, u64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Schedule { at, timer: Timer::SyncRound(g) } => Some((*at, *g)),
            _ => None,
        })
        .collect()
}

/// `f`'s rounds started at 0 and run, each finding nothing, until the wait is 4 minutes:
/// the time of the last round's end.
fn backed_off(f: &mut Fixture) -> u64 {
    f.core.set_sync_pace(PACE);
    let [(mut at, mut g)] = sync_timers(&f.handle(Input::Timer(Timer::SyncRound(0)), 0))[..] else {
        panic!("no first round")
    };
    for _ in 0..4 {
        let round = f.handle(Input::Timer(Timer::SyncRound(g)), at);
        assert!(matches!(round[..], [Effect::SyncRound]), "{round:?}");
        let done = f.handle(Input::SyncRoundDone { fetched: 0 }, at);
        let [(next, h)] = sync_timers(&done)[..] else { panic!("{done:?}") };
        (at, g) = (next, h);
    }
    // The last wait was 4 minutes ± 25 %.
    let round = f.handle(Input::Timer(Timer::SyncRound(g)), at);
    assert!(matches!(round[..], [Effect::SyncRound]));
    let [(next, _)] = sync_timers(&f.handle(Input::SyncRoundDone { fetched: 0 }, at))[..] else {
        panic!("no next round")
    };
    assert!(next - at >= 180_000, "waited only {} ms", next - at);
    at
}

/// Records stored from an offer (a peer's own records, which gossip did not bring)
/// bring the next round to within 30 s ± 25 %.
#[test]
fn records_that_sync_brings_bring_the_next_round_near() {
    let (mut a, mut b) = (Fixture::new(1), Fixture::new(2));
    let _ = b.publish(RecordKind::Follow { target: a.core.me() }, 0);
    let now = backed_off(&mut b);
    let offer = |record: &VerifiedRecord| {
        let records = vec![record.bytes().to_vec()];
        SyncRequest { query: Query::Offer { records } }.to_bytes().unwrap()
    };
    let (_, held) = a.publish(text_post("came by gossip", None), now);
    let (_, record) = a.publish(text_post("missed", None), now);
    b.core.store().insert(&held).unwrap();
    // An offer of nothing new changes nothing.
    let bytes = offer(&held);
    let effects = b.handle(Input::SyncRequest { from: peer_of(&a), bytes, reply: ReplyId(1) }, now);
    assert!(sync_timers(&effects).is_empty(), "{effects:?}");
    let bytes = offer(&record);
    let effects = b.handle(Input::SyncRequest { from: peer_of(&a), bytes, reply: ReplyId(2) }, now);
    assert!(b.core.store().has(&record.id()).unwrap());
    let [(at, _)] = sync_timers(&effects)[..] else { panic!("{effects:?}") };
    assert!(at - now <= 37_500, "next round in {} ms", at - now);
}

/// A gap in a followed author's log (gossip missed a record) brings the next round near.
#[test]
fn a_gap_brings_the_next_round_near() {
    let mut b = Fixture::new(2);
    let now = backed_off(&mut b);
    let author = Fixture::new(1).core.me();
    let pull = Input::Pull { peer: PeerId::random(), what: Pull::Gap(author), answer: AnswerId(9) };
    let effects = b.handle(pull, now);
    let [(at, _)] = sync_timers(&effects)[..] else { panic!("{effects:?}") };
    assert!(at - now <= 37_500);
}

/// A digest that shows its sender holding more of a followed author than this node
/// does: this node pulls from the sender at once (once per 30 s per peer), and still
/// serves the digest. Not for authors it does not follow, nor when it holds as much.
#[test]
fn a_peer_whose_digest_is_ahead_is_pulled_from() {
    let (a, mut b, c) = (Fixture::new(1), Fixture::new(2), Fixture::new(3));
    let _ = b.publish(RecordKind::Follow { target: a.core.me() }, 1_000);
    let digest = |author: AuthorId, seq: u64| {
        let query = Query::Digest { authors: vec![(author, seq)], since: 0, tags: Vec::new() };
        SyncRequest { query }.to_bytes().unwrap()
    };
    let ask = |b: &mut Fixture, bytes, reply, now| {
        b.handle(Input::SyncRequest { from: peer_of(&c), bytes, reply: ReplyId(reply) }, now)
    };
    let pulls = |effects: &[Effect]| {
        effects.iter().filter(|e| matches!(e, Effect::SyncWith(p) if *p == peer_of(&c))).count()
    };
    let served = |effects: &[Effect]| effects.iter().any(|e| matches!(e, Effect::Serve { .. }));
    let effects = ask(&mut b, digest(a.core.me(), 3), 1, 2_000);
    assert_eq!(pulls(&effects), 1, "{effects:?}");
    assert!(served(&effects));
    // Again within 30 s: served, not pulled from again.
    let effects = ask(&mut b, digest(a.core.me(), 3), 2, 20_000);
    assert_eq!(pulls(&effects), 0);
    assert!(served(&effects));
    // An author b does not follow, or a seq b holds: nothing to pull.
    let effects = ask(&mut b, digest(c.core.me(), 3), 3, 40_000);
    assert_eq!(pulls(&effects), 0);
    let effects = ask(&mut b, digest(a.core.me(), 0), 4, 40_000);
    assert_eq!(pulls(&effects), 0);
    // Later, ahead again: pulled from again.
    let effects = ask(&mut b, digest(a.core.me(), 3), 5, 40_000);
    assert_eq!(pulls(&effects), 1);
}
