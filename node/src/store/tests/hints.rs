//! Feed entries that say where their record is in the heap (`records/pending.rs`): they
//! name the record's location, follow it through compaction, are read past when stale or
//! wrong, and never outlive an insert cut off before its commit point.

use kith_protocol::{Keypair, RecordKind, VerifiedRecord};

use super::super::{
    codec,
    heap::{Lane, Loc, TEST_SEGMENT_BYTES},
    keys::{by_time_value, id_suffix, time_key, AUTHOR_PREFIX},
    Store,
};
use super::{home::ids, post};

fn open(dir: &std::path::Path) -> Store {
    TEST_SEGMENT_BYTES.with(|s| s.set(Some(2048)));
    let store = Store::open(dir).unwrap();
    TEST_SEGMENT_BYTES.with(|s| s.set(None));
    store
}

/// `n` tagged posts of one author, a chain.
fn posts(n: usize) -> Vec<VerifiedRecord> {
    let kp = Keypair::from_secret_bytes(&[3; 32]);
    let mut prev = None;
    let mut out: Vec<VerifiedRecord> = Vec::new();
    for i in 0..n {
        let r = post(&kp, i as u64 + 1, prev, 1_000 + i as u64, &format!("post {i} #hints"));
        prev = Some(r.id());
        out.push(r);
    }
    out
}

/// Every `by_time` and `by_tag` entry names the location `record_locs` holds for its
/// record; returns how many entries there are.
pub(super) fn assert_hints_name_locations(store: &Store) -> usize {
    let locs = store.db.open_tree("record_locs").unwrap();
    let mut entries = 0;
    for (tree, time) in [(&store.by_time, true), (&store.by_tag, false)] {
        for item in tree.iter() {
            let (key, value) = item.unwrap();
            let id = id_suffix(&key).unwrap();
            let skip = if time { by_time_value(&value).1 } else { 0 };
            let hint: Loc = codec::decode(&value[skip..]).unwrap();
            assert_eq!(codec::get::<Loc>(&locs, id.as_bytes()).unwrap(), Some(hint), "{id}");
            entries += 1;
        }
    }
    entries
}

#[test]
fn feed_entries_name_their_record_s_location_and_follow_it_through_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let recs = posts(60);
    for r in &recs {
        store.insert(r).unwrap();
    }
    assert_eq!(assert_hints_name_locations(&store), 120);
    // Four in five erased; compaction moves the rest to new frames.
    for r in recs.iter().enumerate().filter(|(i, _)| i % 5 != 0).map(|(_, r)| r) {
        store.erase(&store.get(&r.id()).unwrap().unwrap()).unwrap();
    }
    let done = store.compact_records().unwrap();
    assert!(done.moved > 0, "{done:?}");
    store.flush_blocking().unwrap();
    assert_eq!(assert_hints_name_locations(&store), 24);
    let shown = store.posts_where(100, None, |_| true).unwrap();
    let kept: Vec<_> = recs.iter().step_by(5).rev().map(VerifiedRecord::id).collect();
    assert_eq!(ids(&shown), kept);
}

#[test]
fn a_hint_that_is_stale_wrong_or_junk_reads_the_record_by_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let recs = posts(3);
    for r in &recs[..2] {
        store.insert(r).unwrap();
    }
    let value = |r: &VerifiedRecord| {
        store.by_time.get(time_key(r.record().timestamp, &r.id())).unwrap().unwrap()
    };
    let (first, second) = (value(&recs[0]), value(&recs[1]));
    let author = &recs[0].record().author.as_bytes()[..AUTHOR_PREFIX];
    assert_eq!((&first[..AUTHOR_PREFIX], first.len()), (author, AUTHOR_PREFIX + 12));
    let gone = codec::encode(&Loc { seg: 9_999, off: 0, len: 200 }).unwrap();
    let huge = codec::encode(&Loc { seg: 1, off: 0, len: u32::MAX }).unwrap();
    for hint in [&second[AUTHOR_PREFIX..], &gone[..], &huge[..], b"junk", &[][..]] {
        let got = store.get_hinted(&recs[0].id(), hint).unwrap().unwrap();
        assert_eq!(got.record, *recs[0].record());
    }
    assert_eq!(
        store.get_hinted(&recs[0].id(), &first[AUTHOR_PREFIX..]).unwrap().unwrap().id,
        recs[0].id()
    );
    // Another record's frame is not this record, and this one is not stored.
    assert_eq!(store.get_hinted(&recs[2].id(), &first[AUTHOR_PREFIX..]).unwrap(), None);
}

#[test]
fn an_insert_cut_off_before_its_commit_leaves_no_feed_entry_once_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let recs = posts(2);
    let (done, cut) = (&recs[0], &recs[1]);
    {
        let store = open(dir.path());
        store.insert(done).unwrap();
        // The second insert's frame and indexes are written, and it stops there.
        let loc = store.records.begin(&cut.id(), cut.bytes(), Lane::Main).unwrap();
        store.index(&cut.id(), cut.record(), loc.as_ref()).unwrap();
        store.flush_blocking().unwrap();
        // Its entries name a whole frame of it: a feed would show it.
        assert!(!store.has(&cut.id()).unwrap());
        assert_eq!(store.posts_where(10, None, |_| true).unwrap().len(), 2);
    }
    let store = open(dir.path());
    let shown = store.posts_where(10, None, |_| true).unwrap();
    assert_eq!(ids(&shown), [done.id()]);
    let tag = "hints".parse().unwrap();
    assert_eq!(store.posts_by_tag(&tag, 10, None, |_| true).unwrap().len(), 1);
    assert_eq!(store.db.scan_prefix(b"records_pending").count(), 0);
    assert_eq!(assert_hints_name_locations(&store), 2);
    // Stored for real, it is shown; deleted by its author, it goes.
    store.insert(cut).unwrap();
    assert_eq!(store.posts_where(10, None, |_| true).unwrap().len(), 2);
    let kp = Keypair::from_secret_bytes(&[3; 32]);
    let delete =
        super::signed(&kp, 3, Some(cut.id()), 2_000, RecordKind::Delete { target: cut.id() });
    store.insert(&delete).unwrap();
    let shown = store.posts_where(10, None, |_| true).unwrap();
    assert_eq!(ids(&shown), [done.id()]);
}

#[test]
fn a_layout_2_store_is_marked_3_and_its_entries_without_a_location_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let recs = posts(10);
    {
        let store = open(dir.path());
        for r in &recs {
            store.insert(r).unwrap();
        }
        // The values as layout 2 wrote them: the author, and nothing; every other
        // `by_time` value as 8caee80 wrote it: the author, then the place.
        let author = recs[0].record().author;
        for (i, item) in store.by_time.iter().enumerate() {
            let (key, value) = item.unwrap();
            let mut old = author.as_bytes().to_vec();
            if i % 2 == 0 {
                old.extend_from_slice(&value[AUTHOR_PREFIX..]);
            }
            store.by_time.insert(key, old).unwrap();
        }
        for key in store.by_tag.iter().keys() {
            store.by_tag.insert(key.unwrap(), &[][..]).unwrap();
        }
        store.db.insert(b"schema", codec::encode(&codec::Schema(2)).unwrap()).unwrap();
        store.flush_blocking().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(super::super::migrate::version(&store.db).unwrap(), 3);
    let newest_first: Vec<_> = recs.iter().rev().map(VerifiedRecord::id).collect();
    let shown = store.posts_where(20, None, |_| true).unwrap();
    assert_eq!(ids(&shown), newest_first);
    let tag = "hints".parse().unwrap();
    let tagged = store.posts_by_tag(&tag, 20, None, |_| true).unwrap();
    assert_eq!(ids(&tagged), newest_first);
    let authors = std::collections::HashSet::from([recs[0].record().author]);
    let home = store.home_posts(&authors, &[tag], 20, None, |_| true).unwrap();
    assert_eq!(ids(&home), newest_first);
}

#[test]
fn a_timeline_entry_whose_author_bytes_match_someone_followed_shows_only_their_posts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let followed = posts(2);
    let other = Keypair::from_secret_bytes(&[4; 32]);
    let theirs = post(&other, 1, None, 5_000, "not followed #elsewhere");
    for r in followed.iter().chain([&theirs]) {
        store.insert(r).unwrap();
    }
    // Their entry starts as a followed author's would (first bytes shared).
    let key = time_key(theirs.record().timestamp, &theirs.id());
    let value = store.by_time.get(key).unwrap().unwrap();
    let mut posing = followed[0].record().author.as_bytes()[..AUTHOR_PREFIX].to_vec();
    posing.extend_from_slice(&value[AUTHOR_PREFIX..]);
    store.by_time.insert(key, posing).unwrap();
    let authors = std::collections::HashSet::from([followed[0].record().author]);
    let home = store.home_posts(&authors, &[], 10, None, |_| true).unwrap();
    let expected: Vec<_> = followed.iter().rev().map(VerifiedRecord::id).collect();
    assert_eq!(ids(&home), expected);
    // Carrying a subscribed tag, it shows.
    let tag: kith_protocol::Tag = "elsewhere".parse().unwrap();
    let home = store.home_posts(&authors, &[tag], 10, None, |_| true).unwrap();
    assert_eq!(home.len(), 3);
}
