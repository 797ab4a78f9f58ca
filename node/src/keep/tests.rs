//! The keep decision, case by case.

use kith_protocol::{Keypair, Post, Record, RecordId, RecordKind};

use super::*;

const NOW: u64 = 1_800_000_000_000;

struct People {
    me: AuthorId,
    friend: AuthorId,
    stranger: AuthorId,
}

fn people() -> People {
    let id = |b: u8| Keypair::from_secret_bytes(&[b; 32]).id();
    People { me: id(1), friend: id(2), stranger: id(3) }
}

fn record(author: AuthorId, kind: RecordKind) -> Record {
    Record { author, seq: 1, prev: None, timestamp: NOW, kind }
}

fn post(author: AuthorId, mentions: Vec<AuthorId>, reply: bool) -> Record {
    let reply_to = reply.then(|| RecordId::from_bytes([9; 32]));
    let post =
        Post { text: "hi".into(), reply_to, mentions, expires_at: None, attachments: vec![] };
    record(author, RecordKind::Post(post))
}

fn decide_with(facts: Facts<'_>) -> Decision {
    decide(&facts, &Quotas::default())
}

#[test]
fn own_records_are_always_kept() {
    let p = people();
    let r = post(p.me, vec![], false);
    let full = Counts { author: u64::MAX, strangers: 0, total: u64::MAX };
    let facts = Facts { counts: full, ..Facts::new(p.me, &r, NOW) };
    assert_eq!(decide_with(facts), Decision::Keep(Keep::Own));
}

#[test]
fn followed_authors_are_kept_within_their_quota() {
    let p = people();
    let r = post(p.friend, vec![], false);
    let facts = Facts { followed: true, ..Facts::new(p.me, &r, NOW) };
    assert_eq!(decide_with(facts), Decision::Keep(Keep::Followed));
    let q = Quotas::default();
    let over = Counts { author: q.per_followed, ..Counts::default() };
    assert_eq!(decide_with(Facts { counts: over, ..facts }), Decision::Drop);
    let on_topic = Facts { counts: over, came: Came::AuthorTopic(p.friend), ..facts };
    assert_eq!(decide_with(on_topic), Decision::Forward);
    // Over the total: kept only if a stranger's record can make room.
    let full = Counts { total: q.total, strangers: 0, author: 0 };
    assert_eq!(decide_with(Facts { counts: full, ..facts }), Decision::Drop);
    let room = Counts { strangers: 1, ..full };
    assert_eq!(decide_with(Facts { counts: room, ..facts }), Decision::Keep(Keep::Followed));
}

#[test]
fn strangers_records_that_do_not_concern_us_are_not_kept() {
    let p = people();
    let r = post(p.stranger, vec![], false);
    let facts = Facts::new(p.me, &r, NOW);
    assert_eq!(decide_with(facts), Decision::Drop);
    // On our own topic (someone pushing records at us): dropped, not forwarded.
    assert_eq!(decide_with(Facts { came: Came::AuthorTopic(p.me), ..facts }), Decision::Drop);
    // On a third person's topic it does not concern: dropped too.
    assert_eq!(decide_with(Facts { came: Came::AuthorTopic(p.friend), ..facts }), Decision::Drop);
    // On the stranger's own topic: their followers need it.
    let own_topic = Facts { came: Came::AuthorTopic(p.stranger), ..facts };
    assert_eq!(decide_with(own_topic), Decision::Forward);
    // On a tag topic: forwarded within the tag window.
    assert_eq!(decide_with(Facts { came: Came::TagTopic, ..facts }), Decision::Forward);
    let old = Facts { came: Came::TagTopic, now_ms: NOW + TAG_WINDOW_MS + 1, ..facts };
    assert_eq!(decide_with(old), Decision::Drop);
    // A profile of a stranger.
    let profile = record(p.stranger, RecordKind::Profile { name: "x".into(), bio: String::new() });
    assert_eq!(decide_with(Facts::new(p.me, &profile, NOW)), Decision::Drop);
}

#[test]
fn strangers_records_that_concern_us_are_kept() {
    let p = people();
    let mention = post(p.stranger, vec![p.me], false);
    let reply = post(p.stranger, vec![], true);
    let follow = record(p.stranger, RecordKind::Follow { target: p.me });
    let unfollow = record(p.stranger, RecordKind::Unfollow { target: p.me });
    let target = RecordId::from_bytes([9; 32]);
    let reaction = record(p.stranger, RecordKind::Reaction { target, emoji: "👍".into() });
    let repost = record(p.stranger, RecordKind::Repost { target });
    for r in [&mention, &follow, &unfollow] {
        assert_eq!(decide_with(Facts::new(p.me, r, NOW)), Decision::Keep(Keep::Stranger), "{r:?}");
    }
    for r in [&reply, &reaction, &repost] {
        let mine = Facts { target_author: Some(p.me), ..Facts::new(p.me, r, NOW) };
        assert_eq!(decide_with(mine), Decision::Keep(Keep::Stranger), "{r:?}");
        // The same about a friend's record: forwarded on the friend's topic only.
        let theirs = Facts { target_author: Some(p.friend), ..Facts::new(p.me, r, NOW) };
        assert_eq!(decide_with(theirs), Decision::Drop);
        let on_topic = Facts { came: Came::AuthorTopic(p.friend), ..theirs };
        assert_eq!(decide_with(on_topic), Decision::Forward);
        // An unknown target concerns nobody we can tell.
        let unknown = Facts { came: Came::AuthorTopic(p.me), ..Facts::new(p.me, r, NOW) };
        assert_eq!(decide_with(unknown), Decision::Drop);
    }
    let follows_friend = record(p.stranger, RecordKind::Follow { target: p.friend });
    assert_eq!(decide_with(Facts::new(p.me, &follows_friend, NOW)), Decision::Drop);
    let on_topic =
        Facts { came: Came::AuthorTopic(p.friend), ..Facts::new(p.me, &follows_friend, NOW) };
    assert_eq!(decide_with(on_topic), Decision::Forward);
}

#[test]
fn a_delete_is_kept_when_its_target_was() {
    let p = people();
    let target = RecordId::from_bytes([9; 32]);
    let delete = record(p.stranger, RecordKind::Delete { target });
    let of_own = Facts { target_author: Some(p.stranger), ..Facts::new(p.me, &delete, NOW) };
    assert_eq!(decide_with(of_own), Decision::Keep(Keep::Stranger));
    let of_other = Facts { target_author: Some(p.me), ..Facts::new(p.me, &delete, NOW) };
    assert_eq!(decide_with(of_other), Decision::Drop);
    assert_eq!(decide_with(Facts::new(p.me, &delete, NOW)), Decision::Drop);
    // Carried on an author topic even when its target is unknown here.
    let on_topic = Facts { came: Came::AuthorTopic(p.friend), ..Facts::new(p.me, &delete, NOW) };
    assert_eq!(decide_with(on_topic), Decision::Forward);
}

#[test]
fn shared_and_tagged_posts_are_kept() {
    let p = people();
    let r = post(p.stranger, vec![], false);
    let shared = Facts { shared_by_followed: true, ..Facts::new(p.me, &r, NOW) };
    assert_eq!(decide_with(shared), Decision::Keep(Keep::Stranger));
    let tagged = Facts { subscribed_tag: true, ..Facts::new(p.me, &r, NOW) };
    assert_eq!(decide_with(tagged), Decision::Keep(Keep::Stranger));
    let old = Facts { now_ms: NOW + TAG_WINDOW_MS + 1, ..tagged };
    assert_eq!(decide_with(old), Decision::Drop);
}

#[test]
fn strangers_quotas() {
    let p = people();
    let r = post(p.stranger, vec![p.me], false);
    let q = Quotas::default();
    let facts = Facts::new(p.me, &r, NOW);
    let at_author_quota = Counts { author: q.per_stranger, ..Counts::default() };
    assert_eq!(decide_with(Facts { counts: at_author_quota, ..facts }), Decision::Drop);
    let on_topic = Facts { counts: at_author_quota, came: Came::AuthorTopic(p.me), ..facts };
    assert_eq!(decide_with(on_topic), Decision::Forward);
    // At the strangers' quota: kept, the oldest goes.
    let at_quota = Counts { strangers: q.strangers, total: q.strangers, author: 0 };
    assert_eq!(decide_with(Facts { counts: at_quota, ..facts }), Decision::Keep(Keep::Stranger));
    let none = Quotas { strangers: 0, ..q };
    assert_eq!(decide(&facts, &none), Decision::Drop);
    let full = Counts { total: q.total, strangers: 0, author: 0 };
    assert_eq!(decide_with(Facts { counts: full, ..facts }), Decision::Drop);
}

#[test]
fn follow_proofs() {
    let p = people();
    let follow = Record { seq: 5, ..record(p.friend, RecordKind::Follow { target: p.me }) };
    assert!(follow_proof_counts(&follow, &p.friend, &p.me, None));
    assert!(follow_proof_counts(&follow, &p.friend, &p.me, Some(4)));
    // Older than (or the same as) what set the state we hold: a replay.
    assert!(!follow_proof_counts(&follow, &p.friend, &p.me, Some(5)));
    assert!(!follow_proof_counts(&follow, &p.friend, &p.me, Some(6)));
    // Someone else's follow, or a follow of someone else.
    assert!(!follow_proof_counts(&follow, &p.stranger, &p.me, None));
    let other = record(p.friend, RecordKind::Follow { target: p.stranger });
    assert!(!follow_proof_counts(&other, &p.friend, &p.me, None));
    let unfollow = record(p.friend, RecordKind::Unfollow { target: p.me });
    assert!(!follow_proof_counts(&unfollow, &p.friend, &p.me, None));
}

#[test]
fn notifications_from_strangers_are_capped() {
    assert!(notify(false, u64::MAX));
    assert!(notify(true, 0));
    assert!(notify(true, MAX_STRANGER_NOTIFICATIONS - 1));
    assert!(!notify(true, MAX_STRANGER_NOTIFICATIONS));
}

#[test]
fn a_strangers_profile_is_kept_when_their_records_are() {
    let p = people();
    let profile =
        record(p.stranger, RecordKind::Profile { name: "Sam".into(), bio: String::new() });
    // Nothing of theirs kept: their profile is not wanted either.
    assert_eq!(decide_with(Facts::new(p.me, &profile, NOW)), Decision::Drop);
    // A post of theirs is kept (a tag post, a reply to me...): so is their name.
    let one = Counts { author: 1, strangers: 1, total: 1 };
    let facts = Facts { counts: one, ..Facts::new(p.me, &profile, NOW) };
    assert_eq!(decide_with(facts), Decision::Keep(Keep::Stranger));
    // Within the stranger's quota, like any of their records.
    let full = Counts { author: Quotas::default().per_stranger, ..one };
    assert_eq!(decide_with(Facts { counts: full, ..facts }), Decision::Drop);
    // Another record kind of theirs is not kept for that reason.
    let other = post(p.stranger, vec![], false);
    assert_eq!(decide_with(Facts { counts: one, ..Facts::new(p.me, &other, NOW) }), Decision::Drop);
}

#[test]
fn a_profile_asked_for_is_kept_but_nothing_else_in_its_answer() {
    let p = people();
    let profile =
        record(p.stranger, RecordKind::Profile { name: "Sam".into(), bio: String::new() });
    // Asked for because the node shows them (a group member it does not follow).
    let asked = Facts { came: Came::AskedProfile, ..Facts::new(p.me, &profile, NOW) };
    assert_eq!(decide_with(asked), Decision::Keep(Keep::Stranger));
    // Never forwarded, and no other kind of record rides along.
    let post = record(
        p.stranger,
        RecordKind::Post(kith_protocol::Post {
            text: "hi".into(),
            reply_to: None,
            mentions: vec![],
            expires_at: None,
            attachments: vec![],
        }),
    );
    let along = Facts { came: Came::AskedProfile, ..Facts::new(p.me, &post, NOW) };
    assert_eq!(decide_with(along), Decision::Drop);
}
