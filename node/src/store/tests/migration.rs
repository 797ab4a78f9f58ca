//! The migration from the layout before the schema version (the fixture home) to the
//! current one: complete, idempotent, and whole after a crash at any step.

use super::super::{
    blobs::BlobMeta,
    codec::{
        self, AuthorCount, BlockPeriod, FollowValue, Petname, ProfileValue, ReactionValue, Schema,
        Value,
    },
    dm::{DmRecord, OutboxEntry},
    migrate,
    people::KnownPeer,
    social::Notification,
    Store, StoreError,
};
use super::fixture::{assert_fixture_contents, fixture_home};

/// Every value of `tree` decodes as `V`; returns how many there are.
fn all_decode<V: Value>(db: &sled::Db, tree: &str) -> usize {
    let tree = db.open_tree(tree).unwrap();
    for item in tree.iter() {
        let (key, value) = item.unwrap();
        if let Err(e) = codec::decode::<V>(&value) {
            panic!("{} at {key:?}: {e}", V::WHAT);
        }
    }
    tree.len()
}

/// Opens the database at `path` that a [`Store`] dropped just before (`open_sled` waits
/// for sled's background threads to let go of its lock).
fn reopen(path: &std::path::Path) -> sled::Db {
    // The segment size the store was made with (sled refuses another).
    let segments = super::super::segment_size_for(path, super::super::SEGMENT_BYTES);
    super::open_sled(&sled::Config::new().path(path).segment_size(segments))
}

/// The store at `path` is in the current layout: every changed tree holds only values in
/// the store's encoding, and no staging tree is left.
fn assert_current_layout(path: &std::path::Path) {
    let db = reopen(path);
    assert_eq!(migrate::version(&db.clone().into()).unwrap(), migrate::CURRENT);
    assert!(all_decode::<DmRecord>(&db, "dm_msgs") >= 3);
    assert_eq!(all_decode::<OutboxEntry>(&db, "outbox"), 1);
    assert!(all_decode::<Notification>(&db, "notifications") >= 3);
    assert!(all_decode::<KnownPeer>(&db, "peers") >= 1);
    all_decode::<BlobMeta>(&db, "blobs");
    assert!(all_decode::<FollowValue>(&db, "follows") >= 1);
    assert!(all_decode::<FollowValue>(&db, "followers") >= 2);
    assert!(all_decode::<ProfileValue>(&db, "profiles") >= 1);
    assert_eq!(all_decode::<ReactionValue>(&db, "reactions"), 1);
    all_decode::<BlockPeriod>(&db, "block_periods");
    all_decode::<AuthorCount>(&db, "author_counts");
    assert_eq!(all_decode::<Petname>(&db, "petnames"), 1);
    let staging: Vec<_> =
        db.tree_names().into_iter().filter(|n| n.starts_with(b"migration:")).collect();
    assert!(staging.is_empty(), "{staging:?}");
    assert!(!db.contains_key(b"migration:staged").unwrap());
}

#[test]
fn the_fixture_is_migrated_to_the_current_layout() {
    let (_dir, home) = fixture_home();
    let path = home.store_path();
    {
        // Before: no version, and the values of layout 0 (JSON messages, a big-endian
        // follow state).
        let db = sled::open(&path).unwrap();
        assert_eq!(migrate::version(&db.clone().into()).unwrap(), 0);
        let (_, message) = db.open_tree("dm_msgs").unwrap().first().unwrap().unwrap();
        assert_eq!(message.first(), Some(&b'{'));
        let (_, follow) = db.open_tree("follows").unwrap().first().unwrap().unwrap();
        assert_eq!(follow.len(), 9);
    }
    let ann = home.load_identity().unwrap().id();
    let store = Store::open(&path).unwrap();
    assert_fixture_contents(&store, &ann);
    drop(store);
    assert_current_layout(&path);
}

#[test]
fn a_migration_interrupted_after_staging_is_finished() {
    let (_dir, home) = fixture_home();
    let path = home.store_path();
    {
        // The conversion finished and a crash came while trees were being replaced:
        // one already emptied, one half copied.
        let db = sled::open(&path).unwrap();
        migrate::stage(&db.clone().into()).unwrap();
        db.open_tree("dm_msgs").unwrap().clear().unwrap();
        let follows = db.open_tree("followers").unwrap();
        let first = follows.first().unwrap().unwrap().0;
        follows.remove(first).unwrap();
        db.flush().unwrap();
    }
    let ann = home.load_identity().unwrap().id();
    let store = Store::open(&path).unwrap();
    assert_fixture_contents(&store, &ann);
    drop(store);
    assert_current_layout(&path);
}

#[test]
fn a_migration_interrupted_while_staging_starts_again() {
    let (_dir, home) = fixture_home();
    let path = home.store_path();
    {
        // A staging tree half written, without the mark that staging finished.
        let db = sled::open(&path).unwrap();
        let staging = db.open_tree("migration:follows").unwrap();
        staging.insert(b"half written", &b"?"[..]).unwrap();
        db.flush().unwrap();
    }
    let ann = home.load_identity().unwrap().id();
    let store = Store::open(&path).unwrap();
    assert_fixture_contents(&store, &ann);
    assert!(store.follow_state(&ann, &ann).unwrap().is_none());
    drop(store);
    assert_current_layout(&path);
}

#[test]
fn a_store_of_a_newer_layout_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        drop(store);
        let db = reopen(dir.path());
        assert_eq!(migrate::version(&db.clone().into()).unwrap(), migrate::CURRENT);
        db.insert(b"schema", codec::encode(&Schema(migrate::CURRENT + 1)).unwrap()).unwrap();
        db.flush().unwrap();
    }
    match Store::open(dir.path()) {
        Err(StoreError::NewerSchema { found, known }) => {
            assert_eq!((found, known), (migrate::CURRENT + 1, migrate::CURRENT));
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a store of a newer layout was opened"),
    }
}
