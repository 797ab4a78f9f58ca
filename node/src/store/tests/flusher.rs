//! sled's flusher on a store left alone (`node/vendor/sled/KITH-PATCHES.md`, change 46).

use std::time::{Duration, Instant};

/// What a crash now would leave of the store in `from`: its files as they are (written,
/// whether fsynced or not), opened from a copy.
fn crash_copy(from: &std::path::Path) -> (tempfile::TempDir, sled::Db) {
    let to = tempfile::tempdir().unwrap();
    super::fixture::copy_dir(from, to.path());
    let config = sled::Config::new().path(to.path()).segment_size(256 * 1024);
    let db = config.flush_every_ms(None).open().unwrap();
    (to, db)
}

/// A flusher whose store is left alone rests: after 4 rounds with nothing written it
/// sleeps 4 rounds' time and fsyncs only when a log write completed since its last
/// fsync (sled 0.34.7 fsyncs the file every round, 2 a second by default: with 100 nodes
/// in one process, 200 wake-ups and fsyncs a second). A write ends the rest: an entry
/// written and never flushed reaches the file within a few rounds, and the flusher
/// fsyncs again.
#[test]
fn a_store_left_alone_rests_its_flusher_and_a_write_wakes_it() {
    let dir = tempfile::tempdir().unwrap();
    let every = Duration::from_millis(50);
    let config = sled::Config::new()
        .path(dir.path())
        .segment_size(256 * 1024)
        .flush_every_ms(Some(every.as_millis() as u64));
    let db = super::open_sled(&config);
    db.insert(b"before", &[1u8; 100][..]).unwrap();
    db.flush().unwrap();
    // Rounds at rest: 4 to begin resting, then each 4 rounds long. Over 40 rounds'
    // time sled 0.34.7 fsyncs about 40 times; a resting flusher once at most (the
    // flush above completed a write its last fsync may not have covered).
    std::thread::sleep(every * 8);
    let syncs = db.kith_flusher_syncs();
    std::thread::sleep(every * 40);
    let at_rest = db.kith_flusher_syncs() - syncs;
    assert!(at_rest <= 1, "{at_rest} fsyncs in 40 rounds' time at rest");

    let syncs = db.kith_flusher_syncs();
    db.insert(b"after", &[2u8; 100][..]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_copy, crashed) = crash_copy(dir.path());
        if crashed.get(b"after").unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the entry never reached the file");
        std::thread::sleep(every);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.kith_flusher_syncs() == syncs {
        assert!(Instant::now() < deadline, "no fsync after the write");
        std::thread::sleep(every);
    }
}
