//! Probes of this node's own records' topics (issue 21, `sync/probe.rs`): a while after
//! its records go out, a digest of each topic; a subscriber that finds a probe ahead of
//! what it holds pulls from the prober.

use kith_protocol::{
    sync::{Query, SyncRequest},
    Tag,
};

use super::*;
use crate::core::sync::{probe_requests, ProbeEntry};

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

/// The probes among `effects`: (since, each topic with its entry).
fn probes(effects: &[Effect]) -> Vec<(u64, Vec<(String, ProbeEntry)>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Probe { since, topics } => Some((*since, topics.clone())),
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
    let tag_topic = Topic::Tag(Tag::parse("rust").unwrap()).to_string();
    assert_eq!(fired.len(), 1, "one probe of both topics: {fired:?}");
    let (since, topics) = &fired[0];
    assert_eq!(*since, now - 60_000, "from a minute before the first record");
    assert_eq!(topics.len(), 2, "{topics:?}");
    for (topic, entry) in topics {
        match entry {
            ProbeEntry::Author(author, seq) => {
                assert_eq!(*topic, mine);
                assert_eq!((*author, *seq), (a.core.me(), 3), "its last seq");
            }
            ProbeEntry::Tag(tag, sum) => {
                assert_eq!(*topic, tag_topic);
                assert_eq!(tag, "rust");
                assert_eq!(sum.count, 3, "every #rust post of this hour");
            }
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
    let (since, topics) = probes(&a.handle(Input::Timer(Timer::Probe), now + 5_000)).remove(0);
    let rust = Tag::parse("rust").unwrap();
    let tag_topic = Topic::Tag(rust.clone()).to_string();
    // The tag's entry alone, as a peer picked for the tag only gets it.
    let tag_only: Vec<_> = topics.into_iter().filter(|(t, _)| *t == tag_topic).collect();
    let (_, bytes) = probe_requests(since, &tag_only, &[vec![peer_of(&b)]]).remove(0);
    let probe = SyncRequest::from_bytes(&bytes).unwrap().query;
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

/// Each peer picked gets one digest of the entries of the topics it was picked for.
#[test]
fn a_peer_picked_for_several_topics_gets_one_digest() {
    let (a, b, c) = (Fixture::new(1), Fixture::new(2), Fixture::new(3));
    let sum = kith_protocol::sync::Bucket::empty(0);
    let topics = vec![
        (Topic::Author(a.core.me()).to_string(), ProbeEntry::Author(a.core.me(), 7)),
        ("kith/1/tag/rust".to_owned(), ProbeEntry::Tag("rust".into(), sum)),
        ("kith/1/tag/go".to_owned(), ProbeEntry::Tag("go".into(), sum)),
    ];
    let (p, q) = (peer_of(&b), peer_of(&c));
    let requests = probe_requests(5, &topics, &[vec![p], vec![p, q], vec![q]]);
    assert_eq!(requests.len(), 2);
    for (peer, bytes) in requests {
        let Query::Digest { authors, since, tags } = SyncRequest::from_bytes(&bytes).unwrap().query
        else {
            panic!("not a digest")
        };
        assert_eq!(since, 5);
        let tags: Vec<String> = tags.into_iter().map(|(t, _)| t).collect();
        if peer == p {
            assert_eq!((authors, tags), (vec![(a.core.me(), 7)], vec!["rust".to_owned()]));
        } else {
            assert_eq!(peer, q);
            assert!(authors.is_empty());
            assert_eq!(tags, ["rust", "go"]);
        }
    }
}
