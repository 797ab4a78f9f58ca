//! Records in the record heap: read back after reopening, compacted after erases, bounded
//! under churn, damage read as missing, and an older store's `records` tree still read.

use kith_protocol::{Keypair, VerifiedRecord};

use super::super::{
    heap::TEST_SEGMENT_BYTES,
    records::{Compacted, TEST_COMPACT_ROUND_BYTES, TEST_REST_PUTS, TEST_TREE_ONLY},
    Inserted, Store,
};
use super::post;

/// Opens the store in `dir` with heap segments of `segment_bytes`.
fn open(dir: &std::path::Path, segment_bytes: u64) -> Store {
    TEST_SEGMENT_BYTES.with(|s| s.set(Some(segment_bytes)));
    let store = Store::open(dir).unwrap();
    TEST_SEGMENT_BYTES.with(|s| s.set(None));
    store
}

/// Posts `from..from + n` of `authors` authors taking turns, each author's a chain (post
/// `i` is its author's seq `i / authors + 1`; `from` a multiple of `authors`, and the
/// chains' earlier posts are made again to link to).
fn posts(n: usize, authors: u8, from: usize) -> Vec<VerifiedRecord> {
    let authors = authors as usize;
    let mut last: Vec<Option<kith_protocol::RecordId>> = vec![None; authors];
    let mut out = Vec::new();
    for i in 0..from + n {
        let kp = Keypair::from_secret_bytes(&[1 + (i % authors) as u8; 32]);
        let seq = (i / authors) as u64 + 1;
        let r =
            post(&kp, seq, last[i % authors], 1_000 + i as u64, &format!("post number {i} #heap"));
        last[i % authors] = Some(r.id());
        if i >= from {
            out.push(r);
        }
    }
    out
}

fn tree(store: &Store, name: &str) -> (u64, u64) {
    let sizes = store.tree_sizes().unwrap();
    sizes.into_iter().find(|(n, _, _)| n == name).map_or((0, 0), |(_, e, b)| (e, b))
}

/// The heap's live bytes as counted in memory equal those of the locations in sled.
fn assert_live_counted_right(store: &Store) {
    let (_, live) = store.records.heap_bytes().unwrap();
    assert_eq!(live, Some(tree(store, "heap live").1));
}

#[test]
fn records_live_in_the_heap_and_read_back_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let recs = posts(30, 3, 0);
    {
        let store = open(dir.path(), 4096);
        for r in &recs {
            assert_eq!(store.insert(r).unwrap(), Inserted::New);
            assert_eq!(store.insert(r).unwrap(), Inserted::Duplicate);
        }
        store.flush_blocking().unwrap();
    }
    let store = open(dir.path(), 4096);
    for r in &recs {
        assert!(store.has(&r.id()).unwrap());
        assert_eq!(store.get(&r.id()).unwrap().unwrap().record, *r.record());
        assert_eq!(store.get_bytes(&r.id()).unwrap().unwrap(), r.bytes());
    }
    let signed: u64 = recs.iter().map(|r| r.bytes().len() as u64).sum();
    assert_eq!(store.record_bytes().unwrap(), (30, signed));
    // Nothing in the old tree; every record in the heap, on disk in its folder.
    assert_eq!(tree(&store, "records").0, 0);
    assert_eq!(tree(&store, "heap live"), (30, signed + 30 * 12));
    assert!(store.heap_file_bytes().unwrap().1 >= signed);
    assert!(dir.path().join("heap").read_dir().unwrap().count() >= 2);
    let author = recs[0].record().author;
    let log = store.author_log_bytes(&author, 0, 100).unwrap();
    assert_eq!(log.len(), 10);
    assert_eq!(log[0], recs[0].bytes());
    let hex = recs[5].id().to_string();
    assert_eq!(store.records_with_prefix(&hex[..5], 10).unwrap(), [recs[5].id()]);
}

#[test]
fn erased_records_are_compacted_away_and_their_segments_removed_after_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let recs = posts(60, 4, 0);
    let store = open(dir.path(), 2048);
    for r in &recs {
        store.insert(r).unwrap();
    }
    store.flush_blocking().unwrap();
    let segments_before = store.records.heap_segments();
    // Every record but one in five erased.
    let kept: Vec<&VerifiedRecord> = recs.iter().step_by(5).collect();
    for r in recs.iter().filter(|r| !kept.iter().any(|k| k.id() == r.id())) {
        let stored = store.get(&r.id()).unwrap().unwrap();
        store.erase(&stored).unwrap();
    }
    let done = store.compact_records().unwrap();
    assert!(done.segments >= segments_before - 2, "{done:?} of {segments_before}");
    assert!(done.moved > 0 && done.moved <= kept.len(), "{done:?}");
    // Not removed before the flush that makes the new locations durable.
    assert!(store.records.heap_segments() >= segments_before);
    for r in &kept {
        assert_eq!(store.get_bytes(&r.id()).unwrap().unwrap(), r.bytes());
    }
    store.flush_blocking().unwrap();
    assert!(store.records.heap_segments() < segments_before);
    assert_live_counted_right(&store);
    for r in &recs {
        let expected = kept.iter().any(|k| k.id() == r.id());
        assert_eq!(store.has(&r.id()).unwrap(), expected);
        assert_eq!(store.get_bytes(&r.id()).unwrap().is_some(), expected);
    }
    assert_eq!(store.counts().records, kept.len() as u64);
    // Again: the segment that took the copies may be sparse in its turn (its own records
    // were erased too), then nothing is left to move.
    store.compact_records().unwrap();
    store.flush_blocking().unwrap();
    assert_eq!(store.compact_records().unwrap().moved, 0);
    assert!(store.records.heap_segments() <= 2);
    drop(store);

    let store = open(dir.path(), 2048);
    for r in &kept {
        assert_eq!(store.get_bytes(&r.id()).unwrap().unwrap(), r.bytes());
    }
    assert_eq!(store.counts().records, kept.len() as u64);
}

#[test]
fn a_store_that_churns_stays_within_twice_its_live_records_and_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let segment = 2048u64;
    let store = open(dir.path(), segment);
    let mut held: Vec<VerifiedRecord> = Vec::new();
    for round in 0..12 {
        // Ten new records of a new author each round, and the oldest ten erased.
        let kp = Keypair::from_secret_bytes(&[100 + round as u8; 32]);
        let mut prev = None;
        for seq in 1..=10u64 {
            let r = post(&kp, seq, prev, 1_000 + seq, "a stranger's post, soon evicted");
            prev = Some(r.id());
            store.insert(&r).unwrap();
            held.push(r);
        }
        if held.len() > 20 {
            for r in held.drain(..10) {
                let stored = store.get(&r.id()).unwrap().unwrap();
                store.erase(&stored).unwrap();
            }
        }
        store.compact_records().unwrap();
        store.flush_blocking().unwrap();
        let (files, live) = store.records.heap_bytes().unwrap();
        let live = live.unwrap();
        assert!(files <= 2 * live + segment, "round {round}: {files} bytes for {live} live");
    }
    assert_live_counted_right(&store);
    for r in &held {
        assert_eq!(store.get_bytes(&r.id()).unwrap().unwrap(), r.bytes());
    }
}

#[test]
fn live_bytes_are_counted_again_when_a_crash_left_none_saved() {
    let dir = tempfile::tempdir().unwrap();
    let recs = posts(40, 2, 0);
    {
        let store = open(dir.path(), 2048);
        for r in &recs[..20] {
            store.insert(r).unwrap();
        }
        store.flush_blocking().unwrap();
        // Written after the flush: the saved live bytes are removed first.
        for r in &recs[20..] {
            store.insert(r).unwrap();
        }
        for r in &recs[..15] {
            let stored = store.get(&r.id()).unwrap().unwrap();
            store.erase(&stored).unwrap();
        }
        store.db.flush().unwrap();
    }
    let store = open(dir.path(), 2048);
    assert_eq!(store.records.heap_bytes().unwrap().1, None);
    let done = store.compact_records().unwrap();
    assert!(done.segments > 0, "{done:?}");
    store.flush_blocking().unwrap();
    assert_live_counted_right(&store);
    for r in &recs[15..] {
        assert_eq!(store.get_bytes(&r.id()).unwrap().unwrap(), r.bytes());
    }
    drop(store);
    // Saved by that flush.
    let store = open(dir.path(), 2048);
    assert_live_counted_right(&store);
}

/// A store on disk with `n` posts of one author, flushed, then the second post's text
/// flipped in its heap frame on disk.
fn stored_with_the_second_damaged(n: usize) -> (tempfile::TempDir, Store, Vec<VerifiedRecord>) {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let recs = posts(n, 1, 0);
    let store = open(dir.path(), 1 << 20);
    for r in &recs {
        store.insert(r).unwrap();
    }
    store.flush_blocking().unwrap();
    let segment = dir.path().join("heap").read_dir().unwrap().next().unwrap().unwrap().path();
    let data = std::fs::read(&segment).unwrap();
    let at = data.windows(13).position(|w| w == b"post number 1").unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.write_all_at(b"POST", at as u64).unwrap();
    (dir, store, recs)
}

#[test]
fn a_damaged_frame_reads_as_a_missing_record() {
    let (_dir, store, recs) = stored_with_the_second_damaged(3);
    assert!(store.get(&recs[0].id()).unwrap().is_some());
    assert_eq!(store.get(&recs[1].id()).unwrap(), None);
    assert!(store.get(&recs[2].id()).unwrap().is_some());
    let log = store.author_log_bytes(&recs[0].record().author, 0, 10).unwrap();
    assert_eq!(log, [recs[0].bytes().to_vec(), recs[2].bytes().to_vec()]);
}

#[test]
fn an_older_store_s_records_tree_is_read_and_new_records_go_to_the_heap() {
    let dir = tempfile::tempdir().unwrap();
    let old = posts(20, 2, 0);
    let new = posts(20, 2, 20);
    {
        TEST_TREE_ONLY.with(|t| t.set(true));
        let store = Store::open(dir.path());
        TEST_TREE_ONLY.with(|t| t.set(false));
        let store = store.unwrap();
        for r in &old {
            store.insert(r).unwrap();
        }
        store.flush_blocking().unwrap();
        assert_eq!(tree(&store, "records").0, 20);
    }
    let store = open(dir.path(), 1 << 20);
    for r in &old {
        assert!(store.has(&r.id()).unwrap());
        assert_eq!(store.get_bytes(&r.id()).unwrap().unwrap(), r.bytes());
        assert_eq!(store.insert(r).unwrap(), Inserted::Duplicate);
    }
    for r in &new {
        assert_eq!(store.insert(r).unwrap(), Inserted::New);
    }
    assert_eq!(tree(&store, "records").0, 20);
    assert_eq!(tree(&store, "heap live").0, 20);
    let author = old[0].record().author;
    assert_eq!(store.author_log_bytes(&author, 0, 100).unwrap().len(), 20);
    let hex = old[3].id().to_string();
    assert_eq!(store.records_with_prefix(&hex[..6], 10).unwrap(), [old[3].id()]);
    let hex = new[3].id().to_string();
    assert_eq!(store.records_with_prefix(&hex[..6], 10).unwrap(), [new[3].id()]);
    // Erased from where each is.
    for r in [&old[0], &new[0]] {
        let stored = store.get(&r.id()).unwrap().unwrap();
        store.erase(&stored).unwrap();
        assert!(!store.has(&r.id()).unwrap());
    }
    assert_eq!(tree(&store, "records").0, 19);
    assert_eq!(store.record_bytes().unwrap().0, 38);
    assert_eq!(store.counts().records, 38);
    store.flush_blocking().unwrap();
    drop(store);
    let store = open(dir.path(), 1 << 20);
    assert_eq!(store.counts().records, 38);
    assert_eq!(store.get_bytes(&old[1].id()).unwrap().unwrap(), old[1].bytes());
    assert_eq!(store.get_bytes(&new[1].id()).unwrap().unwrap(), new[1].bytes());
}

#[test]
fn a_crash_between_compaction_and_its_flush_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let recs = posts(40, 2, 0);
    let kept: Vec<&VerifiedRecord> = recs.iter().step_by(4).collect();
    {
        let store = open(dir.path(), 2048);
        for r in &recs {
            store.insert(r).unwrap();
        }
        for r in recs.iter().filter(|r| !kept.iter().any(|k| k.id() == r.id())) {
            let stored = store.get(&r.id()).unwrap().unwrap();
            store.erase(&stored).unwrap();
        }
        store.flush_blocking().unwrap();
        assert!(store.compact_records().unwrap().segments > 0);
        // No flush: the emptied segments stay, whichever locations sled kept.
    }
    let store = open(dir.path(), 2048);
    for r in &kept {
        assert_eq!(store.get_bytes(&r.id()).unwrap().unwrap(), r.bytes());
    }
    store.compact_records().unwrap();
    store.flush_blocking().unwrap();
    for r in &kept {
        assert_eq!(store.get_bytes(&r.id()).unwrap().unwrap(), r.bytes());
    }
    assert_live_counted_right(&store);
    assert_eq!(store.counts().records, kept.len() as u64);
}

#[test]
fn a_damaged_record_is_forgotten_so_that_sync_brings_it_again() {
    let (dir, store, recs) = stored_with_the_second_damaged(4);
    let author = recs[0].record().author;
    // Before it is found: still said stored, and the log has no hole.
    assert_eq!(store.forget_damaged().unwrap(), 0);
    assert!(store.has(&recs[1].id()).unwrap());
    assert_eq!(store.get(&recs[1].id()).unwrap(), None);
    assert_eq!(store.contiguous_seq(&author).unwrap(), 4);
    // Found by that read, forgotten by the daemon's next compaction round.
    store.compact_records().unwrap();
    assert!(!store.has(&recs[1].id()).unwrap());
    assert_eq!(store.contiguous_seq(&author).unwrap(), 1);
    assert_eq!(store.counts().records, 3);
    assert_eq!(store.forget_damaged().unwrap(), 0);
    // A peer's sync brings it again: stored, counted once, the log whole.
    assert_eq!(store.insert(&recs[1]).unwrap(), Inserted::New);
    assert_eq!(store.get_bytes(&recs[1].id()).unwrap().unwrap(), recs[1].bytes());
    assert_eq!(store.contiguous_seq(&author).unwrap(), 4);
    assert_eq!(store.counts().records, 4);
    assert_eq!(store.author_count(&author).unwrap(), 4);
    store.flush_blocking().unwrap();
    drop(store);
    let store = open(dir.path(), 1 << 20);
    assert_eq!(store.counts().records, 4);
    for r in &recs {
        assert_eq!(store.get_bytes(&r.id()).unwrap().unwrap(), r.bytes());
    }
    assert_live_counted_right(&store);
}

/// 80 posts of 4 authors in heap segments of 4 KiB, those `kept` does not keep (by
/// index) erased, flushed.
fn stored_then_erased(
    dir: &std::path::Path,
    kept: impl Fn(usize) -> bool,
) -> (Store, Vec<VerifiedRecord>) {
    let recs = posts(80, 4, 0);
    let store = open(dir, 4096);
    for r in &recs {
        store.insert(r).unwrap();
    }
    for r in recs.iter().enumerate().filter(|(i, _)| !kept(*i)).map(|(_, r)| r) {
        let stored = store.get(&r.id()).unwrap().unwrap();
        store.erase(&stored).unwrap();
    }
    store.flush_blocking().unwrap();
    (store, recs)
}

#[test]
fn a_compaction_copies_a_bounded_amount_a_call_and_the_next_call_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // Three records in four erased: every sealed segment about a quarter live.
    let (store, recs) = stored_then_erased(dir.path(), |i| i % 4 == 0);
    let (files_before, live) = store.records.heap_bytes().unwrap();
    let live = live.unwrap();
    // Here one segment per call (a call stops after copying this many bytes), with a
    // flush after each, as the daemon does.
    TEST_COMPACT_ROUND_BYTES.with(|b| b.set(Some(1)));
    let mut calls = Vec::new();
    loop {
        let done = store.compact_records().unwrap();
        store.flush_blocking().unwrap();
        calls.push(done);
        if !done.more {
            break;
        }
    }
    TEST_COMPACT_ROUND_BYTES.with(|b| b.set(None));
    assert!(calls.len() >= 3, "{calls:?}");
    assert!(calls.iter().all(|c| c.segments <= 1), "{calls:?}");
    let (files, _) = store.records.heap_bytes().unwrap();
    assert!(files < files_before && files <= live + 4096, "{files} of {files_before}, {live} live");
    assert_live_counted_right(&store);
    assert_eq!(store.counts().records, 20);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(store.get_bytes(&r.id()).unwrap().is_some(), i % 4 == 0);
    }
}

#[test]
fn a_store_at_rest_compacts_segments_up_to_nine_tenths_live_once() {
    let dir = tempfile::tempdir().unwrap();
    // One record in four erased: every sealed segment about three quarters live.
    let (store, recs) = stored_then_erased(dir.path(), |i| i % 4 != 1);
    let (files_before, live) = store.records.heap_bytes().unwrap();
    let live = live.unwrap();
    // 80 records were stored since the last round (more than a store at rest stores,
    // here 60): only segments under half live go.
    TEST_REST_PUTS.with(|p| p.set(Some(60)));
    let busy = store.compact_records().unwrap();
    assert_eq!(busy, Compacted::default(), "{busy:?}");
    // Nothing stored since: the store is at rest, and its sparse segments go.
    let done = store.compact_records().unwrap();
    assert!(done.at_rest && done.segments >= 3 && done.moved > 0, "{done:?}");
    store.flush_blocking().unwrap();
    let (files, _) = store.records.heap_bytes().unwrap();
    assert!(files < files_before && files <= live + 4096, "{files} of {files_before}, {live} live");
    assert_live_counted_right(&store);
    // The segment that was active in that round (dead frames of its own, then copies)
    // may go in the next; then nothing moves: the copies fill whole segments, which stay.
    assert!(store.compact_records().unwrap().segments <= 1);
    store.flush_blocking().unwrap();
    assert_eq!(store.compact_records().unwrap().moved, 0);
    TEST_REST_PUTS.with(|p| p.set(None));
    assert_eq!(store.counts().records, 60);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(store.get_bytes(&r.id()).unwrap().is_some(), i % 4 != 1);
    }
    // And so after reopening: the locations written by the compaction were flushed.
    drop(store);
    let store = open(dir.path(), 4096);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(store.get_bytes(&r.id()).unwrap().is_some(), i % 4 != 1);
    }
    assert_live_counted_right(&store);
}

/// Records erased, or erased and stored again, after the compaction copied their frames
/// and before it wrote their locations: they keep what the writers wrote, the copies are
/// dead space, the emptied segments still go, and the live bytes are counted right.
#[test]
fn records_changed_between_the_copies_and_their_locations_keep_what_writers_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (store, recs) = stored_then_erased(dir.path(), |i| i % 4 == 0);
    let copies = store.compact_copy().unwrap();
    let copied = copies.records();
    assert!(copied >= 10, "{copies:?}");
    // Between the passes: one kept record erased, another erased and stored again.
    let (gone, again) = (&recs[0], &recs[4]);
    for r in [gone, again] {
        let stored = store.get(&r.id()).unwrap().unwrap();
        store.erase(&stored).unwrap();
    }
    assert_eq!(store.insert(again).unwrap(), Inserted::New);
    let done = store.compact_repoint(copies).unwrap();
    assert!(done.segments >= 3, "{done:?}");
    // Both were in the first segment, sealed and copied: all but those two moved.
    assert_eq!(done.moved, copied - 2, "{done:?}");
    store.flush_blocking().unwrap();
    assert_live_counted_right(&store);
    assert_eq!(store.get_bytes(&gone.id()).unwrap(), None);
    assert_eq!(store.get_bytes(&again.id()).unwrap().unwrap(), again.bytes());
    for r in recs.iter().step_by(4).skip(2) {
        assert_eq!(store.get_bytes(&r.id()).unwrap().unwrap(), r.bytes());
    }
    assert_eq!(store.counts().records, 19);
    // The copies nothing points to are dead space, which a later round gives back.
    let (files, live) = store.records.heap_bytes().unwrap();
    assert!(files > live.unwrap());
    drop(store);
    let store = open(dir.path(), 4096);
    assert_live_counted_right(&store);
    assert_eq!(store.get_bytes(&again.id()).unwrap().unwrap(), again.bytes());
    assert_eq!(store.get_bytes(&gone.id()).unwrap(), None);
}
