//! Strangers' records in heap segments of their own (`heap.rs`, `Lane::Strangers`):
//! evictions empty those segments whole, and the flush after removes them with nothing
//! copied; the friends' records never share them; a live count gone wrong removes nothing.

use std::collections::BTreeMap;

use kith_protocol::{Keypair, VerifiedRecord};

use super::super::{heap::TEST_SEGMENT_BYTES, Store};
use super::post;
use crate::keep::{Keep, Quotas};

/// Opens the store in `dir` with heap segments of `segment_bytes`.
fn open(dir: &std::path::Path, segment_bytes: u64) -> Store {
    TEST_SEGMENT_BYTES.with(|s| s.set(Some(segment_bytes)));
    let store = Store::open(dir).unwrap();
    TEST_SEGMENT_BYTES.with(|s| s.set(None));
    store
}

/// `n` strangers' first posts, each by its own key.
fn strangers(n: u16) -> Vec<VerifiedRecord> {
    (0..n)
        .map(|i| {
            let mut secret = [0x80u8; 32];
            secret[..2].copy_from_slice(&i.to_be_bytes());
            let kp = Keypair::from_secret_bytes(&secret);
            post(&kp, 1, None, 100 + u64::from(i), &format!("a stranger's post {i}"))
        })
        .collect()
}

/// A friend's chain of `n` posts.
fn friends(n: u64) -> Vec<VerifiedRecord> {
    let kp = Keypair::from_secret_bytes(&[7; 32]);
    let mut prev = None;
    (1..=n)
        .map(|seq| {
            let r = post(&kp, seq, prev, seq, &format!("a friend's post {seq}"));
            prev = Some(r.id());
            r
        })
        .collect()
}

#[test]
fn evicted_strangers_segments_go_whole_with_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let quotas = Quotas { strangers: 4, ..Quotas::default() };
    let (mine, theirs) = (friends(20), strangers(120));
    {
        let store = open(dir.path(), 8192);
        // Friends and strangers in turn: six strangers' posts to a friend's.
        for (i, stranger) in theirs.iter().enumerate() {
            if i % 6 == 0 {
                store.insert_kept(&mine[i / 6], Keep::Followed, &quotas).unwrap();
            }
            store.insert_kept(stranger, Keep::Stranger, &quotas).unwrap();
        }
        assert_eq!(store.stranger_count(), 4);
        // No friend's frame shares a segment with a stranger's.
        let friend_segs: Vec<u32> =
            mine.iter().map(|r| store.records.heap_loc(&r.id()).unwrap().seg).collect();
        for r in &theirs[116..] {
            let seg = store.records.heap_loc(&r.id()).unwrap().seg;
            assert!(!friend_segs.contains(&seg), "segment {seg}");
        }
        let before = store.records.heap_segments();
        let (files_before, _) = store.records.heap_bytes().unwrap();
        store.flush_blocking().unwrap();
        let after = store.records.heap_segments();
        let (files_after, live) = store.records.heap_bytes().unwrap();
        // 120 strangers' posts take about two dozen strangers' segments of 1 KiB; all but
        // the last one or two are empty and gone, with nothing copied (no compaction ran).
        assert!(before >= after + 9, "{before} segments before the flush, {after} after");
        assert!(files_after < files_before);
        let mut distinct = friend_segs.clone();
        distinct.dedup();
        let strangers_left = after - distinct.len();
        assert!(strangers_left <= 2, "{strangers_left} strangers' segments left");
        assert_eq!(live, Some(tree_bytes(&store, "heap live")));
        for (i, r) in theirs.iter().enumerate() {
            assert_eq!(store.has(&r.id()).unwrap(), i >= 116, "stranger {i}");
        }
        for r in &mine {
            assert_eq!(store.get(&r.id()).unwrap().map(|s| s.id), Some(r.id()));
        }
    }
    // What the flush left reads back after reopening, and the counts agree.
    let store = open(dir.path(), 8192);
    for r in mine.iter().chain(&theirs[116..]) {
        assert_eq!(store.get(&r.id()).unwrap().map(|s| s.id), Some(r.id()));
    }
    assert_eq!(store.counts().records, 24);
    assert_eq!(store.stranger_count(), 4);
}

#[test]
fn a_wrong_live_count_removes_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let wide = Quotas::default();
    let theirs = strangers(40);
    let store = open(dir.path(), 8192);
    for r in &theirs {
        store.insert_kept(r, Keep::Stranger, &wide).unwrap();
    }
    // The first strangers' segment is sealed: count it as holding one frame only.
    let first = store.records.heap_loc(&theirs[0].id()).unwrap();
    let in_first: Vec<&VerifiedRecord> = theirs
        .iter()
        .filter(|r| store.records.heap_loc(&r.id()).unwrap().seg == first.seg)
        .collect();
    assert!(in_first.len() >= 3, "{} records in the first segment", in_first.len());
    let mut wrong: BTreeMap<u32, u64> = BTreeMap::new();
    wrong.insert(first.seg, first.frame_bytes());
    store.records.set_heap_live(wrong);
    // Evicting the first record takes that count to nothing.
    let tight = Quotas { strangers: 40, ..wide };
    let more = strangers(41).pop().unwrap();
    store.insert_kept(&more, Keep::Stranger, &tight).unwrap();
    assert!(!store.has(&theirs[0].id()).unwrap());
    store.flush_blocking().unwrap();
    // The segment stays: every other record in it reads back, now and after reopening.
    for r in &in_first[1..] {
        assert_eq!(store.get(&r.id()).unwrap().map(|s| s.id), Some(r.id()));
    }
    drop(store);
    let store = open(dir.path(), 8192);
    for r in theirs[1..].iter().chain([&more]) {
        assert_eq!(store.get(&r.id()).unwrap().map(|s| s.id), Some(r.id()));
    }
}

fn tree_bytes(store: &Store, name: &str) -> u64 {
    let sizes = store.tree_sizes().unwrap();
    sizes.into_iter().find(|(n, _, _)| n == name).map_or(0, |(_, _, b)| b)
}
