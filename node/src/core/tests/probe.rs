//! Probes of this node's own records' topics (issue 21, `sync/probe.rs`): a while after
//! its records go out, a digest of each topic; a subscriber that finds a probe ahead of
//! what it holds pulls from the prober.

use kith_protocol::{
    sync::{Query, SyncRequest},
    Tag,
};

use super::*;

const HOUR: u64 = 3_600_000;

fn peer_of(f: &Fixture) -> PeerId {
    f.core.me().to_peer_id().unwrap()
}

/// When each probe timer among `effects` is due.
fn probe_timers(effects: &[Effect]) -> Vec<u64> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Schedule { at, timer: Timer::Probe } => Some(*at),
            _ => None,
        })
        .collect()
}

/// The probes among `effects`: (topic, question).
fn probes(effects: &[Effect]) -> Vec<(String, Query)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Probe { topic, bytes } => {
                Some((topic.clone(), SyncRequest::from_bytes(bytes).unwrap().query))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn own_records_are_probed_once_a_while_after_they_go_out() {
    let mut a = Fixture::new(1);
    let now = 40 * 24 * HOUR + HOUR / 2;
    // Off (as at first): no timer.
    let (effects, _) = a.publish(text_post("#rust not probed", None), now - 10_000);
    assert!(probe_timers(&effects).is_empty());

    a.core.set_probe_after(Some(5_000));
    let (effects, _) = a.publish(text_post("#rust first", None), now);
    assert_eq!(probe_timers(&effects), vec![now + 5_000]);
    // A second record before the probe: no second timer; the probe covers both.
    let (effects, _) = a.publish(text_post("#rust second", None), now + 1_000);
    assert!(probe_timers(&effects).is_empty());

    let fired = probes(&a.handle(Input::Timer(Timer::Probe), now + 5_000));
    let mine = Topic::Author(a.core.me()).to_string();
    let rust = Tag::parse("rust").unwrap();
    let tag_topic = Topic::Tag(rust.clone()).to_string();
    assert_eq!(fired.len(), 2, "{fired:?}");
    for (topic, query) in fired {
        let Query::Digest { authors, since, tags } = query else { panic!("{query:?}") };
        if topic == mine {
            assert_eq!(authors, vec![(a.core.me(), 3)], "its last seq");
            assert!(tags.is_empty());
        } else {
            assert_eq!(topic, tag_topic);
            assert!(authors.is_empty());
            assert_eq!(since, now - 60_000, "from a minute before the first record");
            assert_eq!(tags.len(), 1);
            assert_eq!(tags[0].0, "rust");
            assert_eq!(tags[0].1.count, 3, "every #rust post of this hour");
        }
    }
    // Nothing pending: firing again probes nothing, and the next record schedules anew.
    assert!(probes(&a.handle(Input::Timer(Timer::Probe), now + 6_000)).is_empty());
    let (effects, _) = a.publish(text_post("later", None), now + 7_000);
    assert_eq!(probe_timers(&effects), vec![now + 12_000]);
    // Turned off: what was pending is dropped.
    a.core.set_probe_after(None);
    assert!(probes(&a.handle(Input::Timer(Timer::Probe), now + 12_000)).is_empty());
}

/// A node that takes the tag and lacks the post pulls from the prober; one that holds it,
/// one that does not take the tag, and a periodic round's digest (30 days) do not.
#[test]
fn a_probe_ahead_on_a_taken_tag_is_pulled_from() {
    let (mut a, mut b, mut c, mut d) =
        (Fixture::new(1), Fixture::new(2), Fixture::new(3), Fixture::new(4));
    let now = 40 * 24 * HOUR + HOUR / 2;
    a.core.set_probe_after(Some(5_000));
    let (_, post) = a.publish(text_post("hello #rust", None), now);
    let fired = probes(&a.handle(Input::Timer(Timer::Probe), now + 5_000));
    let rust = Tag::parse("rust").unwrap();
    let tag_topic = Topic::Tag(rust.clone()).to_string();
    let (_, probe) = fired.iter().find(|(t, _)| *t == tag_topic).unwrap().clone();
    b.core.store().subscribe(&rust).unwrap();
    c.core.store().subscribe(&rust).unwrap();
    c.core.store().insert(&post).unwrap();

    let ask = |f: &mut Fixture, query: &Query, reply| {
        let bytes = SyncRequest { query: query.clone() }.to_bytes().unwrap();
        f.handle(
            Input::SyncRequest { from: peer_of(&a), bytes, reply: ReplyId(reply) },
            now + 5_000,
        )
    };
    let pulls = |effects: &[Effect]| {
        effects.iter().filter(|e| matches!(e, Effect::SyncWith(p) if *p == peer_of(&a))).count()
    };
    let served = |effects: &[Effect]| effects.iter().any(|e| matches!(e, Effect::Serve { .. }));

    let effects = ask(&mut b, &probe, 1);
    assert_eq!(pulls(&effects), 1, "b lacks the post: {effects:?}");
    assert!(served(&effects));
    let effects = ask(&mut c, &probe, 2);
    assert_eq!(pulls(&effects), 0, "c holds it");
    assert!(served(&effects));
    let effects = ask(&mut d, &probe, 3);
    assert_eq!(pulls(&effects), 0, "d does not take #rust");

    // The same summary in a periodic round's digest, from 30 days back: only answered.
    let Query::Digest { tags, .. } = probe else { panic!() };
    let round = Query::Digest { authors: Vec::new(), since: now - 30 * 24 * HOUR, tags };
    let mut e = Fixture::new(5);
    e.core.store().subscribe(&rust).unwrap();
    let effects = ask(&mut e, &round, 4);
    assert_eq!(pulls(&effects), 0);
    assert!(served(&effects));
}
