//! A home written by real daemons before the store had a schema version
//! (`node/tests/fixtures/home-v0`, made by `scripts/make-store-fixture`; its `CONTENTS`
//! says what it holds). Whatever the store's layout becomes, opening this home must carry
//! everything over: these assertions hold before and after the migration.

use std::{collections::BTreeSet, path::Path, str::FromStr};

use kith_protocol::{AuthorId, RecordId, Tag};

use super::super::{DmStatus, Store};
use crate::home::Home;

const BOB: &str = "12D3KooWDXvveJVq14LDYHLWV6YCnfLsv1Se7vFGTkAJBqCGp5C2";
const CAROL: &str = "12D3KooWSMTxCYaGM5Nxt88MAVDTWt9SznJZsxENY6uSQNLSqRpB";
const ANN_POST: &str = "639d73de2c90f73d1723c3711ca474f7fbaf67310ce0c1980447fccdf317558d";
const BOB_POST: &str = "319da5f83132bca849d7b82ca57e0530f2967f9d34feac398809127e6256417e";
const GONE: &str = "af4ad77a578b084801079d5143b22a89de917ef7915a7e5c5a4449e9cd20d6ac";

pub(super) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of the fixture home in a temporary folder (sled writes on open).
pub(crate) fn fixture_home() -> (tempfile::TempDir, Home) {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/home-v0");
    copy_dir(&src, &dir.path().join("home"));
    let home = Home::new(dir.path().join("home"));
    (dir, home)
}

/// Everything the fixture's `CONTENTS` lists, read through the store's API.
pub(crate) fn assert_fixture_contents(store: &Store, ann: &AuthorId) {
    let bob = AuthorId::from_str(BOB).unwrap();
    let carol = AuthorId::from_str(CAROL).unwrap();
    let (ann_post, bob_post, gone) = (
        RecordId::from_str(ANN_POST).unwrap(),
        RecordId::from_str(BOB_POST).unwrap(),
        RecordId::from_str(GONE).unwrap(),
    );
    // Ann's log is whole, Bob's post is there, the deleted one is gone for good.
    let (latest, _) = store.latest(ann).unwrap().unwrap();
    assert!(latest >= 8, "{latest}");
    assert_eq!(store.contiguous_seq(ann).unwrap(), latest);
    assert!(store.get(&ann_post).unwrap().is_some());
    assert!(store.get(&bob_post).unwrap().is_some());
    assert!(store.get(&gone).unwrap().is_none());
    assert!(store.tombstone_of(&gone).unwrap().is_some());
    assert_eq!(store.replies_to(&bob_post).unwrap().len(), 1);
    assert_eq!(store.reactions(&ann_post).unwrap().get("👍"), Some(&1));
    let tag = Tag::parse("rust").unwrap();
    assert_eq!(store.posts_by_tag(&tag, 10, None, |_| true).unwrap().len(), 1);
    assert_eq!(store.posts_by_author(ann, 10, None, |_| true).unwrap().len(), 3);

    // People.
    assert_eq!(store.following(ann).unwrap(), vec![bob]);
    assert!(store.is_following(&bob, ann).unwrap());
    let followers: BTreeSet<_> = store.followers(ann).unwrap().into_iter().collect();
    assert_eq!(followers, [bob, carol].into_iter().collect());
    assert_eq!(store.subscriptions().unwrap(), vec![tag]);
    let profile = store.profile(ann).unwrap().unwrap();
    assert!(matches!(
        profile.record.kind,
        kith_protocol::RecordKind::Profile { ref name, ref bio }
            if name == "Ann" && bio == "keeps a fixture"
    ));
    assert_eq!(store.petname(&bob).unwrap().as_deref(), Some("bobby"));
    assert!(store.moderation(&carol).unwrap().muted);
    assert!(!store.known_peers_of(BOB).unwrap().is_empty());

    // Messages: delivered, received and read, queued (our own count as read).
    let thread = store.dm_thread(&bob, 10).unwrap();
    let seen: Vec<(&str, DmStatus, bool)> =
        thread.iter().map(|m| (m.text.as_str(), m.status, m.read)).collect();
    assert_eq!(
        seen,
        [
            ("hi bob", DmStatus::Delivered, true),
            ("hi ann", DmStatus::Received, true),
            ("are you there?", DmStatus::Queued, true),
        ]
    );
    let outbox = store.dm_outbox().unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].peer, *bob.as_bytes());
    assert_eq!(hex::encode(outbox[0].id), thread[2].id);
    assert_eq!(store.dm_conversations().unwrap().len(), 1);

    // Notifications.
    let kinds: BTreeSet<String> =
        store.notifications(100, false, false).unwrap().into_iter().map(|n| n.kind).collect();
    for kind in ["reaction", "repost", "message"] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
}

#[test]
fn a_home_written_before_the_schema_version_opens_whole() {
    let (_dir, home) = fixture_home();
    let ann = home.load_identity().unwrap().id();
    let store = Store::open(&home.store_path()).unwrap();
    assert_fixture_contents(&store, &ann);
    drop(store);
    // And again: whatever opening changed is stable.
    let store = Store::open(&home.store_path()).unwrap();
    assert_fixture_contents(&store, &ann);
}
