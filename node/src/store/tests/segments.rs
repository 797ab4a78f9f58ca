//! sled's segment size: a store this kith creates gets [`SEGMENT_BYTES`]; a store created
//! before (sled's default, 512 KiB, recorded in its `conf` file) keeps its own, since sled
//! refuses to open a database with another one.

use kith_protocol::Keypair;

use super::super::{Inserted, Store, SEGMENT_BYTES};
use super::post;

/// The segment size recorded in the sled `conf` file of the store at `path`.
fn recorded(path: &std::path::Path) -> usize {
    let conf = std::fs::read(path.join("conf")).unwrap();
    String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|l| l.strip_prefix("segment_size: ")?.parse().ok())
        .unwrap()
}

/// Opens the store at `path` that was dropped a moment ago (sled's flusher may still hold
/// its lock: `Store::open` waits for it).
fn reopen(path: &std::path::Path) -> Store {
    Store::open(path).unwrap()
}

/// Makes a store at `path` as every kith before this one did (sled's default segments)
/// holding `rec`.
fn old_store(path: &std::path::Path, rec: &kith_protocol::VerifiedRecord) {
    let store = Store::open_with_segments(path, 512 * 1024).unwrap();
    assert_eq!(store.insert(rec).unwrap(), Inserted::New);
    store.flush_blocking().unwrap();
}

#[test]
fn a_new_store_gets_large_segments_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let kp = Keypair::from_secret_bytes(&[3; 32]);
    let rec = post(&kp, 1, None, 1_000, "hello");
    {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.insert(&rec).unwrap(), Inserted::New);
        store.flush_blocking().unwrap();
    }
    assert_eq!(recorded(dir.path()), SEGMENT_BYTES);
    let store = reopen(dir.path());
    assert!(store.has(&rec.id()).unwrap());
    assert_eq!(recorded(dir.path()), SEGMENT_BYTES);
}

#[test]
fn a_store_created_with_the_old_segment_size_opens_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let kp = Keypair::from_secret_bytes(&[4; 32]);
    let rec = post(&kp, 1, None, 1_000, "from before");
    old_store(dir.path(), &rec);
    assert_eq!(recorded(dir.path()), 512 * 1024);
    let store = reopen(dir.path());
    assert!(store.has(&rec.id()).unwrap(), "the old store's record is read back");
    let second = post(&kp, 2, Some(rec.id()), 1_001, "after");
    assert_eq!(store.insert(&second).unwrap(), Inserted::New);
    store.flush_blocking().unwrap();
    drop(store);
    assert_eq!(recorded(dir.path()), 512 * 1024);
    assert!(reopen(dir.path()).has(&second.id()).unwrap());
}

#[test]
fn a_store_with_data_and_no_conf_is_opened_with_the_old_size() {
    let dir = tempfile::tempdir().unwrap();
    let kp = Keypair::from_secret_bytes(&[5; 32]);
    let rec = post(&kp, 1, None, 1_000, "conf lost");
    old_store(dir.path(), &rec);
    // A conf file that cannot be read (sled treats one of 8 bytes or less as missing):
    // the store has data, so it was made with sled's old default.
    std::fs::write(dir.path().join("conf"), b"").unwrap();
    let store = reopen(dir.path());
    assert!(store.has(&rec.id()).unwrap());
    assert_eq!(recorded(dir.path()), 512 * 1024, "sled wrote the conf again with the old size");
}
