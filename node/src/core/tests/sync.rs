//! Sync: paging an author's log, gap filling once per author, failures, offers, and
//! peers' requests, between cores with no network (a question is handed to the other
//! core and served from its store).

use kith_protocol::sync::{Query, SyncRequest, SyncResponse, TagCursor};

use super::*;
use crate::core::sync::{self, Page, Pull, Pulled, QueryFailure};

/// `b` follows `a` (the follow stored on both sides).
fn follow(b: &mut Fixture, a: &Fixture, now: u64) {
    let (_, record) = b.publish(RecordKind::Follow { target: a.core.me() }, now);
    a.core.store().insert(&record).unwrap();
}

/// `n` posts of `f`'s, one a millisecond from `from`.
fn posts(f: &mut Fixture, n: u64, from: u64) -> Vec<VerifiedRecord> {
    (0..n).map(|i| f.publish(text_post(&format!("post {i}"), None), from + i).1).collect()
}

fn peer_of(f: &Fixture) -> libp2p::PeerId {
    f.core.me().to_peer_id().unwrap()
}

/// The questions asked: (peer, query, pull).
fn queries(effects: &[Effect]) -> Vec<(libp2p::PeerId, Query, Option<AnswerId>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Query { peer, bytes, pull } => {
                Some((*peer, SyncRequest::from_bytes(bytes).unwrap().query, *pull))
            }
            _ => None,
        })
        .collect()
}

fn pulled(effects: &[Effect], answer: AnswerId) -> Option<Pulled> {
    effects.iter().find_map(|e| match e {
        Effect::Answer { answer: a, result: Ok(Answer::Pulled(p)) } if *a == answer => Some(*p),
        _ => None,
    })
}

/// `server` answers `asker`'s request `bytes` as a driver would (within `page`).
fn serve(server: &mut Fixture, asker: &Fixture, bytes: Vec<u8>, page: Page, now: u64) -> Vec<u8> {
    let from = peer_of(asker);
    let effects = server.handle(Input::SyncRequest { from, bytes, reply: ReplyId(1) }, now);
    match effects.as_slice() {
        [Effect::Serve { reply: ReplyId(1), peer, query, .. }] => {
            assert_eq!(*peer, from);
            sync::answer(server.core.store(), (**query).clone(), page).unwrap().0
        }
        [Effect::Respond { reply: ReplyId(1), bytes }] => bytes.clone(),
        other => panic!("{other:?}"),
    }
}

/// Runs the pull `answer` of `asker` against `server` to its end: every question asked
/// (in order) and the answer.
fn run_pull(
    asker: &mut Fixture,
    server: &mut Fixture,
    first: Vec<Effect>,
    page: Page,
    now: u64,
) -> (Vec<Query>, Pulled) {
    let (asked, done, _) = run_pull_seeing(asker, server, first, page, now);
    (asked, done)
}

/// [`run_pull`], with the ages in every [`Effect::GossipMissed`] the asker's core gave on
/// the way, by topic.
fn run_pull_seeing(
    asker: &mut Fixture,
    server: &mut Fixture,
    first: Vec<Effect>,
    page: Page,
    now: u64,
) -> (Vec<Query>, Pulled, crate::core::MissedTopics) {
    let mut asked = Vec::new();
    let mut missed = Vec::new();
    let mut effects = asker.settle(first, now);
    loop {
        for e in &effects {
            if let Effect::GossipMissed { topics } = e {
                missed.extend(topics.iter().cloned());
            }
        }
        let found = effects.iter().find_map(|e| match e {
            Effect::Query { bytes, pull: Some(answer), .. } => Some((bytes.clone(), *answer)),
            _ => None,
        });
        let Some((bytes, answer)) = found else { break };
        asked.push(SyncRequest::from_bytes(&bytes).unwrap().query);
        let reply = serve(server, asker, bytes, page, now);
        let next = asker.handle(Input::PullAnswer { answer, result: Ok(reply) }, now);
        effects = asker.settle(next, now);
    }
    let done = pulled(&effects, AnswerId(50)).expect("the pull is answered");
    (asked, done, missed)
}

#[test]
fn an_author_is_pulled_page_by_page_from_the_end_of_what_is_held() {
    let (mut a, mut b) = (Fixture::new(1), Fixture::new(2));
    let log = posts(&mut a, 100, 1_000);
    follow(&mut b, &a, 2_000);
    // b already holds the first 10 records.
    for record in &log[..10] {
        b.core.store().insert(record).unwrap();
    }
    let first = b.handle(
        Input::Pull { peer: peer_of(&a), what: Pull::Author(a.core.me()), answer: AnswerId(50) },
        3_000,
    );
    let (asked, done) = run_pull(&mut b, &mut a, first, Page::STRANGER, 3_000);
    let afters: Vec<u64> = asked
        .iter()
        .map(|q| match q {
            Query::Author { after, .. } => *after,
            other => panic!("{other:?}"),
        })
        .collect();
    // Pages of 32: from seq 10 on; the last page is not full, so nothing more is asked.
    assert_eq!(afters, vec![10, 42, 74]);
    assert_eq!(done, Pulled { fetched: 90, failed: false });
    assert_eq!(b.core.store().contiguous_seq(&a.core.me()).unwrap(), 100);
    assert_eq!(b.core.sync_counters(), (90, 0));
    // Everything held: one question, nothing fetched.
    let again = b.handle(
        Input::Pull { peer: peer_of(&a), what: Pull::Author(a.core.me()), answer: AnswerId(50) },
        3_001,
    );
    let (asked, done) = run_pull(&mut b, &mut a, again, Page::FRIEND, 3_001);
    assert_eq!(asked.len(), 1);
    assert_eq!(done, Pulled { fetched: 0, failed: false });
}

/// Records that come by sync written within [`sync::MISSED_WINDOW_MS`] may be ones gossip
/// missed: the core says so for each topic they went to (the network layer decides,
/// `net/mend.rs`); older ones are history and a record from the future is not news.
#[test]
fn recent_records_from_sync_are_reported_as_missed_by_gossip() {
    let (mut a, mut b) = (Fixture::new(1), Fixture::new(2));
    let now = 100 * sync::MISSED_WINDOW_MS;
    let old = now - sync::MISSED_WINDOW_MS - 10;
    let _ = posts(&mut a, 3, old);
    let recent = posts(&mut a, 2, now - 60_000);
    let _ = posts(&mut a, 1, now + 5_000);
    follow(&mut b, &a, old);
    let first = b.handle(
        Input::Pull { peer: peer_of(&a), what: Pull::Author(a.core.me()), answer: AnswerId(50) },
        now,
    );
    let (_, done, missed) = run_pull_seeing(&mut b, &mut a, first, Page::FRIEND, now);
    assert_eq!(done.fetched, 6);
    let author = Topic::Author(a.core.me()).to_string();
    let youngest = now - recent[1].record().timestamp;
    let (older, younger) = (&recent[0], &recent[1]);
    assert!(younger.record().timestamp >= older.record().timestamp);
    let records = vec![younger.bytes().to_vec(), older.bytes().to_vec()];
    let want = crate::core::MissedTopic { topic: author, ages: youngest..=60_000, records };
    assert_eq!(missed, vec![want], "the two recent records, youngest first");
}

/// Issue 21 item 4: a pull used to stop after 200 pages of a question (6,400 records
/// in a stranger's pages of 32); the rest waited for the next sync round, 30 s later.
/// Now one pull fetches the whole log, in as many questions as it has pages (and one to
/// learn there is no more), however small the pages.
#[test]
fn a_long_log_is_pulled_in_one_pull_one_question_a_page() {
    let (mut a, mut b) = (Fixture::new(1), Fixture::new(2));
    let n = 2 * sync::MAX_PAGES as u64 + 51;
    let _ = posts(&mut a, n, 1_000);
    follow(&mut b, &a, 10_000);
    let first = b.handle(
        Input::Pull { peer: peer_of(&a), what: Pull::Author(a.core.me()), answer: AnswerId(50) },
        20_000,
    );
    let (asked, done) = run_pull(&mut b, &mut a, first, Page::new(2, 1 << 20), 20_000);
    assert_eq!(done, Pulled { fetched: n, failed: false });
    assert_eq!(b.core.store().contiguous_seq(&a.core.me()).unwrap(), n);
    assert_eq!(asked.len() as u64, n.div_ceil(2));
    // Each question starts where the one before ended: no page is asked twice.
    for (i, query) in asked.iter().enumerate() {
        assert_eq!(*query, Query::Author { author: a.core.me(), after: 2 * i as u64 });
    }
}

/// The driver asks the next page while the core stores this one
/// (`sync::next_page_guess`): in an honest catch-up the guess is each next question byte
/// for byte, so every early answer is used; none is made after the last page.
#[test]
fn the_next_page_guess_is_the_next_question_of_a_catch_up() {
    let (mut a, mut b) = (Fixture::new(1), Fixture::new(2));
    let _ = posts(&mut a, 7, 1_000);
    follow(&mut b, &a, 10_000);
    let pull = Pull::Author(a.core.me());
    let first =
        b.handle(Input::Pull { peer: peer_of(&a), what: pull, answer: AnswerId(50) }, 20_000);
    let question = |effects: &[Effect]| {
        effects.iter().find_map(|e| match e {
            Effect::Query { bytes, pull: Some(_), .. } => Some(bytes.clone()),
            _ => None,
        })
    };
    let (mut effects, mut guessed, mut asked) = (b.settle(first, 20_000), 0, 0);
    while let Some(bytes) = question(&effects) {
        asked += 1;
        let reply = serve(&mut a, &b, bytes.clone(), Page::new(2, 1 << 20), 20_000);
        let guess = sync::next_page_guess(&bytes, &reply);
        let next = b.handle(Input::PullAnswer { answer: AnswerId(50), result: Ok(reply) }, 20_000);
        effects = b.settle(next, 20_000);
        if let Some(guess) = guess {
            assert_eq!(Some(guess), question(&effects));
            guessed += 1;
        }
    }
    // Pages 1-2, 3-4, 5-6 are full (a guess each), 7 is the last (none).
    assert_eq!((asked, guessed), (4, 3));
    assert_eq!(b.core.store().contiguous_seq(&a.core.me()).unwrap(), 7);
}

/// A page moves the cursor only by records that pass the checks: a peer answering
/// "more" with a forged record past the cursor gets no further question.
#[test]
fn a_forged_record_does_not_move_the_cursor() {
    let (mut a, mut b) = (Fixture::new(1), Fixture::new(2));
    let log = posts(&mut a, 3, 1_000);
    follow(&mut b, &a, 2_000);
    b.core.store().insert(&log[0]).unwrap();
    let first = b.handle(
        Input::Pull { peer: peer_of(&a), what: Pull::Author(a.core.me()), answer: AnswerId(50) },
        3_000,
    );
    assert_eq!(queries(&first).len(), 1);
    // Record 3 with its signature's last byte changed: its author and seq decode.
    let mut forged = log[2].bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let bytes = SyncResponse { records: vec![forged], more: true, next: None }.to_bytes().unwrap();
    // The driver's early question past the forged record is never asked by the core.
    let asked = first.iter().find_map(|e| match e {
        Effect::Query { bytes, .. } => Some(bytes.clone()),
        _ => None,
    });
    assert!(sync::next_page_guess(&asked.unwrap(), &bytes).is_some());
    let after = b.handle(Input::PullAnswer { answer: AnswerId(50), result: Ok(bytes) }, 3_000);
    assert!(queries(&after).is_empty(), "{after:?}");
    assert_eq!(pulled(&after, AnswerId(50)), Some(Pulled { fetched: 0, failed: false }));
    assert_eq!(b.core.sync_counters(), (0, 1));
}

/// A forged record inside a page is refused, and the records around it are kept.
#[test]
fn a_forged_record_inside_a_page_is_refused_and_the_rest_kept() {
    let (mut a, mut b) = (Fixture::new(1), Fixture::new(2));
    let log = posts(&mut a, 5, 1_000);
    follow(&mut b, &a, 2_000);
    let first = b.handle(
        Input::Pull { peer: peer_of(&a), what: Pull::Author(a.core.me()), answer: AnswerId(50) },
        3_000,
    );
    assert_eq!(queries(&first).len(), 1);
    // Record 2's signature changed: record 3 names the real one.
    let mut records: Vec<Vec<u8>> = log.iter().map(|r| r.bytes().to_vec()).collect();
    *records[1].last_mut().unwrap() ^= 1;
    let bytes = SyncResponse { records, more: false, next: None }.to_bytes().unwrap();
    let after = b.handle(Input::PullAnswer { answer: AnswerId(50), result: Ok(bytes) }, 3_000);
    assert_eq!(pulled(&after, AnswerId(50)), Some(Pulled { fetched: 4, failed: false }));
    assert_eq!(b.core.sync_counters(), (4, 1));
    let store = b.core.store();
    assert!(!store.has(&log[1].id()).unwrap());
    assert!(log.iter().enumerate().all(|(i, r)| i == 1 || store.has(&r.id()).unwrap()));
    assert_eq!(store.contiguous_seq(&a.core.me()).unwrap(), 1);
}

#[test]
fn a_gap_is_filled_once_per_author_at_a_time() {
    let (mut a, mut b) = (Fixture::new(1), Fixture::new(2));
    let log = posts(&mut a, 5, 1_000);
    follow(&mut b, &a, 2_000);
    b.core.store().insert(&log[0]).unwrap();
    // Record 5 comes by gossip: its predecessor is missing.
    let topic = Topic::Author(a.core.me());
    let effects = b.handle(
        Input::Gossip(vec![gossip(&Keypair::from_secret_bytes(&[1; 32]), &topic, &log[4])]),
        3_000,
    );
    let gap: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::FillGap { peer, author } => Some((*peer, *author)),
            _ => None,
        })
        .collect();
    assert_eq!(gap, vec![(peer_of(&a), a.core.me())]);
    let (peer, author) = (peer_of(&a), a.core.me());
    let pull = |answer| Input::Pull { peer, what: Pull::Gap(author), answer };
    let first = b.handle(pull(AnswerId(50)), 3_000);
    let asked = queries(&first);
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].1, Query::Author { author: a.core.me(), after: 1 });
    // The same gap again while it is being filled: answered at once, nothing asked.
    let twice = b.handle(pull(AnswerId(51)), 3_000);
    assert!(queries(&twice).is_empty());
    assert_eq!(pulled(&twice, AnswerId(51)), Some(Pulled::default()));
    let (_, done) = run_pull(&mut b, &mut a, first, Page::FRIEND, 3_000);
    assert_eq!(done, Pulled { fetched: 3, failed: false });
    assert_eq!(b.core.store().contiguous_seq(&a.core.me()).unwrap(), 5);
    // Filled: the next gap pull asks again.
    assert_eq!(queries(&b.handle(pull(AnswerId(52)), 3_001)).len(), 1);
}

#[test]
fn a_silent_peer_ends_the_pull_and_a_refusal_moves_to_the_next_question() {
    let (a, mut b, mut c) = (Fixture::new(1), Fixture::new(2), Fixture::new(3));
    follow(&mut b, &a, 1_000);
    follow(&mut b, &c, 1_001);
    let _ = posts(&mut c, 1, 1_002);
    let everything = |answer| Input::Pull { peer: peer_of(&a), what: Pull::Everything, answer };
    let first = b.handle(everything(AnswerId(50)), 2_000);
    let [(_, Query::Author { author, .. }, Some(AnswerId(50)))] = queries(&first)[..] else {
        panic!("{first:?}")
    };
    let silent = QueryFailure { reason: "no answer".into(), silent: true };
    let after = b.handle(Input::PullAnswer { answer: AnswerId(50), result: Err(silent) }, 2_000);
    assert!(queries(&after).is_empty());
    assert_eq!(pulled(&after, AnswerId(50)), Some(Pulled { fetched: 0, failed: true }));
    // A refusal: the other followed author is asked next.
    let first = b.handle(everything(AnswerId(51)), 2_001);
    let refused = QueryFailure { reason: "refused".into(), silent: false };
    let after = b.handle(Input::PullAnswer { answer: AnswerId(51), result: Err(refused) }, 2_001);
    let [(_, Query::Author { author: next, .. }, Some(AnswerId(51)))] = queries(&after)[..] else {
        panic!("{after:?}")
    };
    assert_ne!(next, author);
    assert!([a.core.me(), c.core.me()].contains(&next));
    let _ = first;
    // A pull stopped by the driver: a late answer does nothing.
    assert!(b.handle(Input::PullStop { answer: AnswerId(51) }, 2_002).is_empty());
    let late = b.handle(Input::PullAnswer { answer: AnswerId(51), result: Ok(vec![]) }, 2_002);
    assert!(late.is_empty());
}

#[test]
fn an_answer_with_records_not_asked_for_stores_none_of_them() {
    let (a, mut b, mut c) = (Fixture::new(1), Fixture::new(2), Fixture::new(3));
    follow(&mut b, &a, 1_000);
    follow(&mut b, &c, 1_001);
    let theirs = posts(&mut c, 3, 1_002);
    let first = b.handle(
        Input::Pull { peer: peer_of(&a), what: Pull::Author(a.core.me()), answer: AnswerId(50) },
        2_000,
    );
    assert_eq!(queries(&first).len(), 1);
    // a answers a question about a with c's records.
    let records = theirs.iter().map(|r| r.bytes().to_vec()).collect();
    let bytes = SyncResponse { records, more: false, next: None }.to_bytes().unwrap();
    let after = b.handle(Input::PullAnswer { answer: AnswerId(50), result: Ok(bytes) }, 2_000);
    assert_eq!(pulled(&after, AnswerId(50)), Some(Pulled { fetched: 0, failed: false }));
    assert!(!b.core.store().has(&theirs[0].id()).unwrap());
    assert_eq!(b.core.sync_counters(), (0, 3));
}

#[test]
fn tags_are_pulled_by_buckets_with_a_cursor() {
    let (mut a, mut b) = (Fixture::new(1), Fixture::new(2));
    let now = 40 * 24 * 3_600_000;
    let tagged: Vec<_> = (0..40u64)
        .map(|i| a.publish(text_post(&format!("#rust {i}"), None), now - 1_000 + i).1)
        .collect();
    let tag = kith_protocol::Tag::parse("rust").unwrap();
    b.core.store().subscribe(&tag).unwrap();
    let first = b.handle(
        Input::Pull { peer: peer_of(&a), what: Pull::Tag(tag.clone()), answer: AnswerId(50) },
        now,
    );
    let (asked, done) = run_pull(&mut b, &mut a, first, Page::STRANGER, now);
    let cursors: Vec<Option<TagCursor>> = asked
        .iter()
        .map(|q| match q {
            Query::Tag { since, after, .. } => {
                assert_eq!(*since, now - sync::TAG_HORIZON_MS);
                *after
            }
            other => panic!("{other:?}"),
        })
        .collect();
    // A page of 32, then the rest after the 32nd record's cursor.
    assert_eq!(cursors.len(), 2);
    assert_eq!(cursors[0], None);
    assert_eq!(cursors[1].map(|c| c.id), Some(tagged[31].id()));
    assert_eq!(done.fetched, 40);
    assert!(tagged.iter().all(|r| b.core.store().has(&r.id()).unwrap()));
}

#[test]
fn a_subscriber_is_offered_recent_records_and_the_follow_of_them() {
    let (mut a, b) = (Fixture::new(1), Fixture::new(2));
    let minute = 60_000;
    let (_, follow_of_b) = a.publish(RecordKind::Follow { target: b.core.me() }, 1_000);
    let (_, old) = a.publish(text_post("old", None), 2_000);
    let (_, recent) = a.publish(text_post("recent", None), 20 * minute);
    let now = 25 * minute;
    // b's node subscribes to b's own topic: a's recent post is not there, the follow is.
    let own = Topic::Author(b.core.me()).to_string();
    let effects = a.handle(Input::PeerSubscribed { peer: peer_of(&b), topic: own }, now);
    let [(peer, Query::Offer { records }, None)] = &queries(&effects)[..] else {
        panic!("{effects:?}")
    };
    assert_eq!(*peer, peer_of(&b));
    assert_eq!(*records, vec![follow_of_b.bytes().to_vec()]);
    // On a's topic: the records of the last ten minutes only, newest first.
    let topic = Topic::Author(a.core.me()).to_string();
    let effects = a.handle(Input::PeerSubscribed { peer: peer_of(&b), topic }, now);
    let [(_, Query::Offer { records }, None)] = &queries(&effects)[..] else {
        panic!("{effects:?}")
    };
    assert_eq!(*records, vec![recent.bytes().to_vec()]);
    assert!(!records.contains(&old.bytes().to_vec()));
    // Nothing to offer, nothing sent; a topic that is not one, nothing either.
    let c = Fixture::new(3);
    let theirs = Topic::Author(c.core.me()).to_string();
    assert!(a.handle(Input::PeerSubscribed { peer: peer_of(&c), topic: theirs }, now).is_empty());
    let junk = "not a topic".to_string();
    assert!(a.handle(Input::PeerSubscribed { peer: peer_of(&c), topic: junk }, now).is_empty());
}

#[test]
fn an_offer_stores_only_the_offerers_own_records() {
    let (mut a, mut b, mut c) = (Fixture::new(1), Fixture::new(2), Fixture::new(3));
    follow(&mut b, &a, 1_000);
    follow(&mut b, &c, 1_001);
    let (_, mine) = a.publish(text_post("mine", None), 2_000);
    let (_, not_mine) = c.publish(text_post("c's", None), 2_000);
    let records = vec![mine.bytes().to_vec(), not_mine.bytes().to_vec()];
    let bytes = SyncRequest { query: Query::Offer { records } }.to_bytes().unwrap();
    let first = b.handle(Input::SyncRequest { from: peer_of(&a), bytes, reply: ReplyId(3) }, 3_000);
    let effects = b.settle(first, 3_000);
    let respond = effects.iter().find_map(|e| match e {
        Effect::Respond { reply: ReplyId(3), bytes } => Some(bytes.clone()),
        _ => None,
    });
    let response = SyncResponse::from_bytes(&respond.unwrap()).unwrap();
    assert!(response.records.is_empty());
    assert!(b.core.store().has(&mine.id()).unwrap());
    assert!(!b.core.store().has(&not_mine.id()).unwrap());
    assert_eq!(b.core.sync_counters(), (1, 1));
    assert!(effects.iter().any(|e| matches!(e, Effect::Stored(r) if r.id() == mine.id())));
}

#[test]
fn requests_are_served_by_page_for_friends_and_strangers() {
    let (mut a, mut b, c) = (Fixture::new(1), Fixture::new(2), Fixture::new(3));
    follow(&mut b, &a, 1_000);
    let question =
        |author| SyncRequest { query: Query::Author { author, after: 0 } }.to_bytes().unwrap();
    for (asker, friend) in [(&b, true), (&c, false)] {
        let bytes = question(a.core.me());
        let effects =
            a.handle(Input::SyncRequest { from: peer_of(asker), bytes, reply: ReplyId(4) }, 2_000);
        let [Effect::Serve { friend: f, .. }] = effects.as_slice() else { panic!("{effects:?}") };
        assert_eq!(*f, friend);
    }
    // A malformed request is answered with nothing.
    let junk = vec![0xff; 7];
    let effects =
        a.handle(Input::SyncRequest { from: peer_of(&c), bytes: junk, reply: ReplyId(5) }, 2_000);
    let [Effect::Respond { reply: ReplyId(5), bytes }] = effects.as_slice() else {
        panic!("{effects:?}")
    };
    assert!(SyncResponse::from_bytes(bytes).unwrap().records.is_empty());
    // A stranger's page is small; a friend's holds everything asked.
    let _ = posts(&mut a, 40, 3_000);
    let query = Query::Author { author: a.core.me(), after: 0 };
    let small = sync::serve(a.core.store(), query.clone(), Page::STRANGER);
    assert_eq!((small.records.len(), small.more), (sync::STRANGER_PAGE_RECORDS, true));
    let full = sync::serve(a.core.store(), query, Page::FRIEND);
    assert_eq!((full.records.len(), full.more), (40, false));
}

/// Issue 21 item 3: a periodic sync with nothing new is one digest question; with
/// something new, the digest and then only the questions that bring it; an author with
/// a gap is asked directly; a peer that does not understand digests is asked everything.
#[test]
fn a_changed_pull_asks_one_digest_and_then_only_what_the_peer_has_more_of() {
    let (mut a, mut b, mut c) = (Fixture::new(1), Fixture::new(2), Fixture::new(3));
    let now = 40 * 24 * 3_600_000;
    follow(&mut b, &a, now - 10_000);
    follow(&mut b, &c, now - 9_999);
    let tag = kith_protocol::Tag::parse("rust").unwrap();
    b.core.store().subscribe(&tag).unwrap();
    let mut both = posts(&mut a, 5, now - 9_000);
    both.extend(posts(&mut c, 3, now - 8_000));
    both.extend(
        (0..4u64).map(|i| a.publish(text_post(&format!("#rust {i}"), None), now - 7_000 + i).1),
    );
    for record in &both {
        a.core.store().insert(record).unwrap();
        b.core.store().insert(record).unwrap();
    }
    let peer = peer_of(&a);
    let changed = |b: &mut Fixture, a: &mut Fixture, now| {
        let first = b.handle(Input::Pull { peer, what: Pull::Changed, answer: AnswerId(50) }, now);
        run_pull(b, a, first, Page::FRIEND, now)
    };
    // Nothing new: one digest naming both authors and the tag.
    let (asked, done) = changed(&mut b, &mut a, now);
    let [Query::Digest { authors, tags, .. }] = &asked[..] else { panic!("{asked:?}") };
    assert_eq!(authors.len(), 2);
    assert_eq!(tags.len(), 1);
    assert_eq!(done, Pulled { fetched: 0, failed: false });
    // A new post of a's: the digest, then a's log only.
    let (_, new) = a.publish(text_post("new", None), now);
    let (asked, done) = changed(&mut b, &mut a, now + 1);
    assert!(matches!(asked[0], Query::Digest { .. }), "{asked:?}");
    assert_eq!(asked[1..], [Query::Author { author: a.core.me(), after: 9 }]);
    assert_eq!(done, Pulled { fetched: 1, failed: false });
    assert!(b.core.store().has(&new.id()).unwrap());
    // A tagged post of c's that a holds: c's log and the tag.
    let (_, tagged) = c.publish(text_post("#rust from c", None), now + 2);
    a.core.store().insert(&tagged).unwrap();
    let (asked, done) = changed(&mut b, &mut a, now + 3);
    assert!(matches!(&asked[1], Query::Author { author, after: 3 } if *author == c.core.me()));
    assert!(matches!(&asked[2], Query::Tag { .. }), "{asked:?}");
    assert_eq!(asked.len(), 3);
    assert_eq!(done.fetched, 1);
    // b holds a's seq 12 but not 11: a's log is asked directly, outside the digest.
    let (_, eleven) = a.publish(text_post("eleven", None), now + 4);
    let (_, twelve) = a.publish(text_post("twelve", None), now + 5);
    b.core.store().insert(&twelve).unwrap();
    let (asked, done) = changed(&mut b, &mut a, now + 6);
    let Query::Digest { authors, .. } = &asked[0] else { panic!("{asked:?}") };
    assert_eq!(authors.iter().map(|(a, _)| *a).collect::<Vec<_>>(), vec![c.core.me()]);
    assert_eq!(asked[1..], [Query::Author { author: a.core.me(), after: 10 }]);
    assert_eq!(done.fetched, 1);
    assert!(b.core.store().has(&eleven.id()).unwrap());
    // A peer from before digests answers with an empty sync response: everything is asked.
    let first = b.handle(Input::Pull { peer, what: Pull::Changed, answer: AnswerId(50) }, now + 7);
    let [(_, Query::Digest { .. }, Some(AnswerId(50)))] = queries(&first)[..] else {
        panic!("{first:?}")
    };
    let old = sync::empty().to_bytes().unwrap();
    let after = b.handle(Input::PullAnswer { answer: AnswerId(50), result: Ok(old) }, now + 7);
    let (asked, _) = run_pull(&mut b, &mut a, after, Page::FRIEND, now + 7);
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(matches!(asked[2], Query::Tag { .. }));
}

/// A digest is served like every other question: by the driver, within the serving
/// budget (friend or stranger), not by the core on the spot; and each tag it names costs
/// that budget [`sync::DIGEST_TAG_COST`], since a tag's summary reads its 30 days of
/// index entries while the answer is a few bytes.
#[test]
fn a_digest_is_served_within_the_budget_and_each_tag_it_names_is_paid_for() {
    let (mut a, c) = (Fixture::new(1), Fixture::new(3));
    let tags: Vec<_> = (0..kith_protocol::sync::MAX_DIGEST_TAGS)
        .map(|i| (format!("busy{i}"), kith_protocol::sync::Bucket::summary(&[])))
        .collect();
    let query = Query::Digest { authors: vec![(a.core.me(), 0)], since: 0, tags };
    let bytes = SyncRequest { query: query.clone() }.to_bytes().unwrap();
    let effects =
        a.handle(Input::SyncRequest { from: peer_of(&c), bytes, reply: ReplyId(6) }, 2_000);
    let [Effect::Serve { query: served, friend: false, .. }] = effects.as_slice() else {
        panic!("{effects:?}")
    };
    assert_eq!(**served, query);
    let (bytes, cost) = sync::answer(a.core.store(), query, Page::STRANGER).unwrap();
    assert!(kith_protocol::sync::DigestResponse::from_bytes(&bytes).unwrap().answered);
    let tags = kith_protocol::sync::MAX_DIGEST_TAGS;
    assert_eq!(cost, bytes.len() + tags * sync::DIGEST_TAG_COST);
}
