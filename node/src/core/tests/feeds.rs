//! Feeds: own log, topics, gossip verdicts, gaps, durability of follows.

use kith_protocol::Tag;

use super::*;
use crate::api::ErrorKind;

fn author_topic(who: &AuthorId) -> String {
    Topic::Author(*who).to_string()
}

#[test]
fn an_own_record_is_stored_at_once_and_published_only_after_its_flush() {
    let mut f = Fixture::new(1);
    let me = f.core.me();
    let first =
        f.handle(Input::Publish { kind: text_post("hi #rust", None), answer: AnswerId(1) }, 100);
    let [Effect::Flush(flush)] = first.as_slice() else { panic!("{first:?}") };
    let (seq, id) = f.core.store().latest(&me).unwrap().unwrap();
    assert_eq!(seq, 1);
    let done = f.handle(Input::Flushed { flush: *flush, result: Ok(()) }, 101);
    let tag = Topic::Tag(Tag::parse("rust").unwrap()).to_string();
    assert_eq!(published(&done), vec![author_topic(&me), tag]);
    assert!(
        matches!(done.last(), Some(Effect::Answer { answer: AnswerId(1), result: Ok(Answer::Published(r)) }) if r.id() == id)
    );
    assert!(done.iter().any(|e| matches!(e, Effect::LivePost(r) if r.id() == id)));
    // A second report of the same flush does nothing.
    assert!(f.handle(Input::Flushed { flush: *flush, result: Ok(()) }, 102).is_empty());
}

#[test]
fn own_records_chain_by_seq_and_prev_and_never_go_back_in_time() {
    let mut f = Fixture::new(1);
    let (_, one) = f.publish(text_post("one", None), 1_000);
    // The clock was set back: the next record is still dated no earlier.
    let (_, two) = f.publish(text_post("two", None), 500);
    assert_eq!((one.record().seq, two.record().seq), (1, 2));
    assert_eq!(two.record().prev, Some(one.id()));
    assert_eq!(two.record().timestamp, 1_000);
    let (_, three) = f.publish(text_post("three", None), 2_000);
    assert_eq!(three.record().timestamp, 2_000);
}

#[test]
fn a_failed_flush_answers_the_error_and_publishes_nothing() {
    let mut f = Fixture::new(1);
    let first = f.handle(Input::Publish { kind: text_post("hi", None), answer: AnswerId(4) }, 100);
    let [Effect::Flush(flush)] = first.as_slice() else { panic!("{first:?}") };
    let failed = Err(StoreError::Corrupt("disk gone".into()));
    let done = f.handle(Input::Flushed { flush: *flush, result: failed }, 101);
    let [Effect::Answer { answer: AnswerId(4), result: Err(error) }] = done.as_slice() else {
        panic!("{done:?}")
    };
    assert_eq!(error.kind, ErrorKind::Internal);
}

#[test]
fn a_reply_reaches_the_parents_author_and_a_delete_goes_where_its_target_went() {
    let mut f = Fixture::new(1);
    let me = f.core.me();
    let other = Keypair::from_secret_bytes(&[2; 32]);
    let parent = post(&other, 1, None, 10, "parent");
    f.core.store().insert(&parent).unwrap();
    let (effects, _) = f.publish(text_post("reply", Some(parent.id())), 100);
    assert_eq!(published(&effects), vec![author_topic(&me), author_topic(&other.id())]);
    let (_, tagged) = f.publish(text_post("a #Rust post", None), 200);
    let (effects, _) = f.publish(RecordKind::Delete { target: tagged.id() }, 300);
    let tag = Topic::Tag(Tag::parse("rust").unwrap()).to_string();
    // Each topic once, the author's first.
    assert_eq!(published(&effects), vec![author_topic(&me), tag]);
}

/// A node (secret 1) that follows the person of secret 2.
fn following_two() -> (Fixture, Keypair) {
    let mut f = Fixture::new(1);
    let friend = Keypair::from_secret_bytes(&[2; 32]);
    f.publish(RecordKind::Follow { target: friend.id() }, 5);
    (f, friend)
}

#[test]
fn a_followed_authors_record_after_a_gap_earns_credit_and_asks_sync_for_the_gap() {
    let (mut f, friend) = following_two();
    let one = post(&friend, 1, None, 10, "one");
    let three = post(&friend, 3, Some(RecordId::from_bytes([9; 32])), 30, "three");
    let topic = Topic::Author(friend.id());
    let msgs = vec![gossip(&friend, &topic, &one), gossip(&friend, &topic, &three)];
    let effects = f.handle(Input::Gossip(msgs), 100);
    assert_eq!(verdicts(&effects), vec![Verdict::Credit, Verdict::Credit]);
    let gaps: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::FillGap { peer, author } => Some((*peer, *author)),
            _ => None,
        })
        .collect();
    assert_eq!(gaps, vec![(friend.id().to_peer_id().unwrap(), friend.id())]);
    assert_eq!(f.core.counters().accepted, 2);
}

#[test]
fn a_strangers_record_on_a_tag_earns_no_credit_and_no_gap_fill() {
    let mut f = Fixture::new(1);
    let tag = Tag::parse("rust").unwrap();
    f.core.store().subscribe(&tag).unwrap();
    let stranger = Keypair::from_secret_bytes(&[3; 32]);
    let rec = post(&stranger, 5, Some(RecordId::from_bytes([9; 32])), 10, "hi #rust");
    let effects = f.handle(Input::Gossip(vec![gossip(&stranger, &Topic::Tag(tag), &rec)]), 100);
    assert_eq!(verdicts(&effects), vec![Verdict::Accept]);
    assert!(effects.iter().any(|e| matches!(e, Effect::Stored(r) if r.id() == rec.id())));
    assert!(!effects.iter().any(|e| matches!(e, Effect::FillGap { .. })));
}

#[test]
fn junk_is_rejected_and_a_repeat_is_a_duplicate_each_in_the_order_it_came() {
    let (mut f, friend) = following_two();
    let topic = Topic::Author(friend.id());
    let one = post(&friend, 1, None, 10, "one");
    let mut junk = gossip(&friend, &topic, &one);
    junk.bytes = b"junk".to_vec();
    let msgs = vec![gossip(&friend, &topic, &one), junk, gossip(&friend, &topic, &one)];
    let effects = f.handle(Input::Gossip(msgs), 100);
    assert_eq!(verdicts(&effects), vec![Verdict::Credit, Verdict::Reject, Verdict::Accept]);
    let c = f.core.counters();
    assert_eq!((c.received, c.accepted, c.rejected, c.duplicate), (3, 1, 1, 1));
}

#[test]
fn a_follow_of_this_nodes_person_is_flushed_at_once() {
    let mut f = Fixture::new(1);
    let me = f.core.me();
    let fan = Keypair::from_secret_bytes(&[4; 32]);
    let follow = signed(&fan, 1, None, 10, RecordKind::Follow { target: me });
    let effects = f.handle(Input::Gossip(vec![gossip(&fan, &Topic::Author(me), &follow)]), 100);
    let flush = effects.iter().find_map(|e| match e {
        Effect::Flush(flush) => Some(*flush),
        _ => None,
    });
    let flush = flush.expect("a flush for the follow");
    assert!(f.core.store().is_following(&fan.id(), &me).unwrap());
    // Nobody waits for it: its report sets nothing off.
    assert!(f.handle(Input::Flushed { flush, result: Ok(()) }, 101).is_empty());
}

#[test]
fn expired_posts_are_dropped_at_the_next_look_and_the_look_after_is_scheduled() {
    let mut f = Fixture::new(1);
    let lasting = RecordKind::Post(Post {
        text: "for a moment".into(),
        reply_to: None,
        mentions: vec![],
        expires_at: Some(5_000),
        attachments: vec![],
    });
    let (_, record) = f.publish(lasting, 1_000);
    let (_, kept) = f.publish(text_post("for good", None), 1_001);
    let effects = f.handle(Input::Timer(Timer::Expiry), 4_999);
    assert!(matches!(
        effects[..],
        [Effect::Schedule { at, timer: Timer::Expiry }] if at == 4_999 + crate::core::feeds::EXPIRY_EVERY_MS
    ));
    assert!(f.core.store().get(&record.id()).unwrap().is_some(), "not yet");
    f.handle(Input::Timer(Timer::Expiry), 5_001);
    assert!(f.core.store().get(&record.id()).unwrap().is_none(), "expired");
    assert!(f.core.store().get(&kept.id()).unwrap().is_some());
}
