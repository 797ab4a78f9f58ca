//! The record heap's files: frames read back, damage read as missing, a torn tail, and
//! segments sealed, scanned and removed.

use std::{collections::BTreeMap, os::unix::fs::FileExt};

use super::super::heap::{Heap, Loc, FRAME_HEADER, TEST_SEGMENT_BYTES};

fn record(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

fn segment_path(dir: &std::path::Path, seg: u32) -> std::path::PathBuf {
    dir.join(format!("{seg:010}"))
}

/// Opens a heap in `dir` whose segments are sealed at `segment_bytes`.
fn open(dir: &std::path::Path, segment_bytes: u64) -> Heap {
    TEST_SEGMENT_BYTES.with(|s| s.set(Some(segment_bytes)));
    let heap = Heap::open(dir).unwrap();
    TEST_SEGMENT_BYTES.with(|s| s.set(None));
    heap
}

#[test]
fn frames_read_back_across_segments_and_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let heap = open(dir.path(), 1024);
    heap.set_live(BTreeMap::new());
    let locs: Vec<(Loc, Vec<u8>)> = (0..40)
        .map(|i| {
            let bytes = record(i, 100 + i);
            (heap.append(&bytes).unwrap(), bytes)
        })
        .collect();
    // Sealed at 1 KiB: several segments, no frame across two.
    let segments = heap.segments();
    assert!(segments.len() >= 4, "{segments:?}");
    for (loc, _) in &locs {
        assert!(u64::from(loc.off) + loc.frame_bytes() <= 1024);
    }
    for (loc, bytes) in &locs {
        assert_eq!(heap.read(loc).unwrap().as_ref(), Some(bytes));
    }
    // Live bytes: every frame.
    let live: u64 = heap.live().unwrap().values().sum();
    assert_eq!(live, locs.iter().map(|(l, _)| l.frame_bytes()).sum::<u64>());
    heap.sync().unwrap();
    drop(heap);

    // Reopened: the same bytes, and new frames go to a new segment.
    let heap = open(dir.path(), 1024);
    for (loc, bytes) in &locs {
        assert_eq!(heap.read(loc).unwrap().as_ref(), Some(bytes));
    }
    let last = *segments.last().unwrap();
    let new = heap.append(&record(99, 50)).unwrap();
    assert_eq!((new.seg, new.off), (last + 1, 0));
}

#[test]
fn a_damaged_frame_reads_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let heap = open(dir.path(), 1 << 20);
    let a = heap.append(&record(1, 200)).unwrap();
    let b = heap.append(&record(2, 200)).unwrap();
    let c = heap.append(&record(3, 200)).unwrap();
    heap.sync().unwrap();
    // One byte of b's record flipped on disk.
    let file = std::fs::OpenOptions::new().write(true).open(segment_path(dir.path(), b.seg));
    let at = u64::from(b.off) + FRAME_HEADER + 10;
    file.unwrap().write_all_at(&[0xAA ^ record(2, 200)[10]], at).unwrap();
    assert_eq!(heap.read(&a).unwrap(), Some(record(1, 200)));
    assert_eq!(heap.read(&b).unwrap(), None);
    assert_eq!(heap.read(&c).unwrap(), Some(record(3, 200)));
    // A location whose length does not match its frame, or past the file's end.
    assert_eq!(heap.read(&Loc { len: 199, ..c }).unwrap(), None);
    assert_eq!(heap.read(&Loc { off: c.off + 1000, ..c }).unwrap(), None);
    assert_eq!(heap.read(&Loc { seg: 77, ..c }).unwrap(), None);
    // A scan stops at the damaged frame.
    let (frames, whole) = heap.scan(a.seg).unwrap();
    assert!(!whole);
    assert_eq!(frames.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [a]);
}

#[test]
fn a_torn_tail_is_dead_space() {
    let dir = tempfile::tempdir().unwrap();
    let heap = open(dir.path(), 1 << 20);
    let locs: Vec<Loc> = (0..5).map(|i| heap.append(&record(i, 300)).unwrap()).collect();
    heap.sync().unwrap();
    drop(heap);
    // A crash in the middle of the last frame's write.
    let seg = locs[0].seg;
    let path = segment_path(dir.path(), seg);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 100).unwrap();

    let heap = open(dir.path(), 1 << 20);
    for (i, loc) in locs.iter().enumerate().take(4) {
        assert_eq!(heap.read(loc).unwrap(), Some(record(i, 300)));
    }
    assert_eq!(heap.read(&locs[4]).unwrap(), None);
    let (frames, whole) = heap.scan(seg).unwrap();
    assert!(!whole);
    assert_eq!(frames.len(), 4);
    // Appends go on in a new segment, never after the torn frame.
    let new = heap.append(&record(9, 300)).unwrap();
    assert_ne!(new.seg, seg);
    assert_eq!(heap.read(&new).unwrap(), Some(record(9, 300)));
}

#[test]
fn sparse_sealed_segments_are_scanned_whole_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let heap = open(dir.path(), 1024);
    heap.set_live(BTreeMap::new());
    let locs: Vec<Loc> = (0..30).map(|i| heap.append(&record(i, 100)).unwrap()).collect();
    let first = locs[0].seg;
    // Nothing is under half live yet (the active segment never counts).
    assert_eq!(heap.sparse(50).unwrap(), Vec::<u32>::new());
    for loc in locs.iter().filter(|l| l.seg == first).skip(2) {
        heap.dead(loc);
    }
    assert_eq!(heap.sparse(50).unwrap(), [first]);
    let (frames, whole) = heap.scan(first).unwrap();
    assert!(whole);
    let in_first: Vec<Loc> = locs.iter().copied().filter(|l| l.seg == first).collect();
    assert_eq!(frames.iter().map(|(l, _)| *l).collect::<Vec<_>>(), in_first);
    let (files_before, _) = heap.bytes();
    heap.remove(first).unwrap();
    assert!(!segment_path(dir.path(), first).exists());
    assert!(!heap.segments().contains(&first));
    assert_eq!(heap.read(&locs[0]).unwrap(), None);
    let (files_after, _) = heap.bytes();
    assert!(files_after < files_before);
}
