//! Pages read from sled's log (`node/vendor/sled/KITH-PATCHES.md`):
//!
//! - a page whose newest copy is in an IO buffer not yet in the file (change 47): the
//!   reader waits until the buffer's bytes are written, no longer until they are also
//!   synced, and reads what was written;
//! - the segment cleaner's moves of pages it found paged out (change 48) evict none of
//!   the pages that reads keep in the cache.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

/// Entry `i` as round `round` writes it: the key, the round, then a filler that depends on
/// both, so that a read of the wrong bytes, or of bytes not yet written, cannot pass.
fn value(i: u32, round: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(900);
    v.extend_from_slice(&i.to_be_bytes());
    v.extend_from_slice(&round.to_be_bytes());
    v.resize(900 + (i % 7) as usize, (i ^ round) as u8);
    v
}

/// Checks that `got` is entry `i` as some round wrote it.
fn check(i: u32, got: &[u8]) {
    assert!(got.len() >= 8, "entry {i}: {} bytes", got.len());
    let round = u32::from_be_bytes(got[4..8].try_into().unwrap());
    assert_eq!(got, value(i, round).as_slice(), "entry {i} as round {round} wrote it");
}

/// A new store of small segments with a cache of `cache` bytes, and sled's flusher off:
/// an IO buffer reaches the file when it is full, flushed, or needed by a read.
fn small_store(cache: u64) -> (tempfile::TempDir, sled::Db) {
    let dir = tempfile::tempdir().unwrap();
    let config = sled::Config::new()
        .path(dir.path())
        .segment_size(256 * 1024)
        .cache_capacity(cache)
        .flush_every_ms(None);
    let db = super::open_sled(&config);
    (dir, db)
}

/// A writer rewrites a tree far larger than the cache while two readers page its entries
/// in. sled's flusher is off, so a buffer reaches the file only when it is full or a
/// reader needs it: readers keep finding the newest copy of a page in a buffer not yet
/// written, and wait for it. Every read must return an entry as some round wrote it, and
/// the readers must have waited (the path under test was taken).
#[test]
fn pages_read_while_their_buffer_is_written_come_back_as_written() {
    let (_dir, db) = small_store(64 * 1024);
    let tree = db.open_tree("t").unwrap();
    let keys = 2_000u32;
    for i in 0..keys {
        tree.insert(i.to_be_bytes(), value(i, 0)).unwrap();
    }
    db.flush().unwrap();
    let (waits_before, _) = db.kith_read_waits();
    let done = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|s| {
        for reader in 0..2u32 {
            let (tree, done) = (&tree, &done);
            s.spawn(move || {
                let mut i = reader * 997;
                while !done.load(Ordering::Relaxed) {
                    i = (i + 7_919) % keys;
                    let got = tree.get(i.to_be_bytes()).unwrap().expect("every entry is there");
                    check(i, &got);
                }
            });
        }
        let mut round = 1;
        // Rounds until the readers have waited often enough to have taken the path many
        // times (a few rounds here), bounded.
        while db.kith_read_waits().0 - waits_before < 50 || round < 3 {
            assert!(Instant::now() < deadline, "readers waited {} times", db.kith_read_waits().0);
            for i in 0..keys {
                tree.insert(i.to_be_bytes(), value(i, round)).unwrap();
            }
            round += 1;
        }
        done.store(true, Ordering::Relaxed);
    });
    db.flush().unwrap();
    for i in 0..keys {
        check(i, &tree.get(i.to_be_bytes()).unwrap().unwrap());
    }
}

/// The segment cleaner moves pages out of the segments it drains; one it finds paged out
/// it reads, writes again and pages out (change 10). sled counted that read in its LRU as
/// a use, evicting the least recently read page, and kept counting the moved page until
/// it reached the LRU's tail: a cleaning round of more than a cache's worth of such pages
/// emptied the cache of the pages that reads were using, and every read after it missed
/// (the first second of a node on a store just built). Here a tree read often stays in
/// the cache while the cleaner moves several caches' worth of another tree's pages.
#[test]
fn the_cleaners_moves_of_paged_out_pages_evict_no_page_in_use() {
    let (_dir, db) = small_store(1024 * 1024);
    let (cold, hot) = (db.open_tree("cold").unwrap(), db.open_tree("hot").unwrap());
    // About 7 MB of entries, two thirds of them written again: the segments of the
    // first writes are a third live, about 2.4 MB of pages for the cleaner to move.
    let keys = 8_000u32;
    for i in 0..keys {
        cold.insert(i.to_be_bytes(), value(i, 0)).unwrap();
    }
    db.flush().unwrap();
    for i in (0..keys).filter(|i| i % 3 != 0) {
        cold.insert(i.to_be_bytes(), value(i, 1)).unwrap();
    }
    for i in 0..40u32 {
        hot.insert(i.to_be_bytes(), value(i, 9)).unwrap();
    }
    db.flush().unwrap();
    let read_hot = || {
        for i in 0..40u32 {
            check(i, &hot.get(i.to_be_bytes()).unwrap().expect("a hot entry"));
        }
    };
    read_hot();
    read_hot();
    let before = db.kith_page_reads();
    read_hot();
    assert_eq!(db.kith_page_reads(), before, "the hot tree is in the cache");

    let before = db.kith_page_reads();
    let moved = db.clean_segments_while_written().unwrap();
    let read_by_cleaner = db.kith_page_reads() - before;
    // Over 2 MB moved, most of it read back from the log first: a cache's worth twice.
    assert!(moved > 300 && read_by_cleaner > 300, "{moved} pages moved, {read_by_cleaner} read");

    let before = db.kith_page_reads();
    read_hot();
    assert_eq!(db.kith_page_reads() - before, 0, "hot pages read from the log again");
    for i in 0..keys {
        check(i, &cold.get(i.to_be_bytes()).unwrap().expect("a cold entry"));
    }
}
