#![allow(clippy::unwrap_used)]

use kith_protocol::{Keypair, Post, Record, RecordId, RecordKind, Tag, VerifiedRecord};

use super::{Inserted, MemoryImage, Moderation, Store};

/// Where a test's store lives: on disk (sled) or in memory. Opening again after
/// [`Home::close`] is a restart (in memory: from what was flushed only).
pub(crate) enum Home {
    Disk(tempfile::TempDir),
    Memory(Option<MemoryImage>),
}

impl Home {
    /// Runs `test` on a store on disk, then on one in memory.
    pub(crate) fn on_both(mut test: impl FnMut(&mut Home)) {
        test(&mut Home::Disk(tempfile::tempdir().unwrap()));
        test(&mut Home::Memory(None));
    }

    pub(crate) fn open(&mut self) -> Store {
        match self {
            Home::Disk(dir) => Store::open(dir.path()).unwrap(),
            Home::Memory(None) => Store::open_memory().unwrap(),
            Home::Memory(Some(image)) => Store::open_memory_image(image.clone()).unwrap(),
        }
    }

    /// Closes `store` (a crash: in memory, what was not flushed is lost).
    pub(crate) fn close(&mut self, store: Store) {
        if let Home::Memory(image) = self {
            *image = store.memory_image();
        }
    }
}

/// A signed post for tests (shared by the node's unit tests).
pub(crate) fn post(
    kp: &Keypair,
    seq: u64,
    prev: Option<RecordId>,
    ts: u64,
    text: &str,
) -> VerifiedRecord {
    Record {
        author: kp.id(),
        seq,
        prev,
        timestamp: ts,
        kind: RecordKind::Post(Post {
            text: text.into(),
            reply_to: None,
            mentions: vec![],
            expires_at: None,
            attachments: vec![],
        }),
    }
    .sign(kp)
    .unwrap()
}

fn chain(kp: &Keypair, texts: &[&str]) -> Vec<VerifiedRecord> {
    let mut out: Vec<VerifiedRecord> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let prev = out.last().map(|r| r.id());
        out.push(post(kp, i as u64 + 1, prev, 1_000 + i as u64, text));
    }
    out
}

#[test]
fn reopen_keeps_everything() {
    Home::on_both(|home| {
        let kp = Keypair::from_secret_bytes(&[1; 32]);
        let recs = chain(&kp, &["one #a", "two", "three #a"]);
        {
            let store = home.open();
            for r in &recs {
                assert_eq!(store.insert(r).unwrap(), Inserted::New);
            }
            store.subscribe(&Tag::parse("a").unwrap()).unwrap();
            store.remember_peer("peer", "/ip4/127.0.0.1/tcp/1", 1).unwrap();
            store.flush_blocking().unwrap();
            home.close(store);
        }
        let store = home.open();
        for r in &recs {
            assert!(store.has(&r.id()).unwrap());
            assert_eq!(store.get(&r.id()).unwrap().unwrap().record, *r.record());
        }
        assert_eq!(store.latest(&kp.id()).unwrap(), Some((3, recs[2].id())));
        assert_eq!(store.subscriptions().unwrap(), vec![Tag::parse("a").unwrap()]);
        assert_eq!(store.known_peers(10).unwrap()[0].1, vec!["/ip4/127.0.0.1/tcp/1".to_string()]);
        assert_eq!(store.counts().posts, 3);
    });
}

#[test]
fn duplicates_and_forks() {
    Home::on_both(|home| {
        let store = home.open();
        let kp = Keypair::from_secret_bytes(&[2; 32]);
        let first = post(&kp, 1, None, 5, "original");
        let other = post(&kp, 1, None, 6, "conflicting");
        assert_eq!(store.insert(&first).unwrap(), Inserted::New);
        assert_eq!(store.insert(&first).unwrap(), Inserted::Duplicate);
        assert!(!store.is_flagged(&kp.id()).unwrap());
        assert_eq!(store.insert(&other).unwrap(), Inserted::Fork { existing: first.id() });
        assert!(store.is_flagged(&kp.id()).unwrap());
        // The log keeps the first record; the fork is not served as a post.
        assert_eq!(store.latest(&kp.id()).unwrap(), Some((1, first.id())));
        assert!(!store.has(&other.id()).unwrap());
        assert_eq!(store.counts().records, 1);
    });
}

#[test]
fn per_author_and_per_tag_order() {
    Home::on_both(|home| {
        let store = home.open();
        let a = Keypair::from_secret_bytes(&[3; 32]);
        let b = Keypair::from_secret_bytes(&[4; 32]);
        let ra = chain(&a, &["a1 #rust", "a2", "a3 #Rust"]);
        let rb = chain(&b, &["b1 #rust", "b2 #go"]);
        // Insert out of order: order must come from the indexes, not arrival.
        for r in [&ra[2], &rb[1], &ra[0], &rb[0], &ra[1]] {
            store.insert(r).unwrap();
        }
        let texts = |v: Vec<super::StoredRecord>| -> Vec<String> {
            v.into_iter()
                .map(|r| match r.record.kind {
                    RecordKind::Post(p) => p.text,
                    _ => String::new(),
                })
                .collect()
        };
        assert_eq!(
            texts(store.posts_by_author(&a.id(), 10, None, |_| true).unwrap()),
            ["a3 #Rust", "a2", "a1 #rust"]
        );
        assert_eq!(
            texts(store.posts_by_author(&a.id(), 2, None, |_| true).unwrap()),
            ["a3 #Rust", "a2"]
        );
        // The next page: below a seq.
        let older = store.posts_by_author(&a.id(), 10, Some(3), |_| true).unwrap();
        assert_eq!(texts(older), ["a2", "a1 #rust"]);
        // ts: a1=1000, a3=1002, b1=1000 -> newest first; ties broken by id.
        let rust_tag = Tag::parse("rust").unwrap();
        let page = store.posts_by_tag(&rust_tag, 10, None, |_| true).unwrap();
        let rust = texts(page.clone());
        assert_eq!(rust.len(), 3);
        assert_eq!(rust[0], "a3 #Rust");
        // Pages by (timestamp, id) continue exactly after the last record of the one before.
        let cursor = |r: &super::StoredRecord| Some((r.record.timestamp, r.id));
        let first = store.posts_by_tag(&rust_tag, 1, None, |_| true).unwrap();
        let rest = store.posts_by_tag(&rust_tag, 10, cursor(&first[0]), |_| true).unwrap();
        assert_eq!(texts(rest), rust[1..]);
        let all = texts(store.posts_where(100, None, |_| true).unwrap());
        let first = store.posts_where(2, None, |_| true).unwrap();
        let rest = texts(store.posts_where(100, cursor(&first[1]), |_| true).unwrap());
        assert_eq!(rest, all[2..]);
        assert_eq!(
            texts(store.posts_by_tag(&Tag::parse("go").unwrap(), 10, None, |_| true).unwrap()),
            ["b2 #go"]
        );
        let log: Vec<u64> =
            store.author_log(&a.id(), 1, 10).unwrap().iter().map(|r| r.record.seq).collect();
        assert_eq!(log, [2, 3]);
    });
}

#[test]
fn follow_state_follows_seq_not_arrival() {
    Home::on_both(|home| {
        let store = home.open();
        let a = Keypair::from_secret_bytes(&[5; 32]);
        let b = Keypair::from_secret_bytes(&[6; 32]);
        let follow = Record {
            author: a.id(),
            seq: 1,
            prev: None,
            timestamp: 1,
            kind: RecordKind::Follow { target: b.id() },
        }
        .sign(&a)
        .unwrap();
        let unfollow = Record {
            author: a.id(),
            seq: 2,
            prev: Some(follow.id()),
            timestamp: 2,
            kind: RecordKind::Unfollow { target: b.id() },
        }
        .sign(&a)
        .unwrap();
        store.insert(&unfollow).unwrap();
        store.insert(&follow).unwrap();
        assert!(!store.is_following(&a.id(), &b.id()).unwrap());
        assert!(store.following(&a.id()).unwrap().is_empty());

        let mut home2 = Home::Memory(None);
        let store2 = home2.open();
        store2.insert(&follow).unwrap();
        assert!(store2.is_following(&a.id(), &b.id()).unwrap());
        assert_eq!(store2.followers(&b.id()).unwrap(), vec![a.id()]);
    });
}

#[test]
fn second_open_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    // sled's lock is per process file handle; within one process a second open of the
    // same path may succeed or fail depending on platform, so only check it never panics.
    let _ = Store::open(dir.path());
}

#[test]
fn moderation_survives_reopen_and_is_read_when_set() {
    Home::on_both(|home| {
        let who = Keypair::from_secret_bytes(&[3; 32]).id();
        let other = Keypair::from_secret_bytes(&[4; 32]).id();
        {
            let store = home.open();
            assert_eq!(store.moderation(&who).unwrap(), Moderation::default());
            let blocked = Moderation { blocked: true, muted: false };
            store.set_moderation(&who, blocked).unwrap();
            assert_eq!(store.moderation(&who).unwrap(), blocked);
            assert_eq!(store.moderation(&other).unwrap(), Moderation::default());
            store.flush_blocking().unwrap();
            home.close(store);
        }
        let store = home.open();
        assert!(store.moderation(&who).unwrap().blocked, "a block is read after a restart");
        store.set_moderation(&who, Moderation::default()).unwrap();
        assert_eq!(store.moderation(&who).unwrap(), Moderation::default());
    });
}

/// A record of any kind, for tests.
pub(crate) fn signed(
    kp: &Keypair,
    seq: u64,
    prev: Option<RecordId>,
    ts: u64,
    kind: RecordKind,
) -> VerifiedRecord {
    Record { author: kp.id(), seq, prev, timestamp: ts, kind }.sign(kp).unwrap()
}

#[test]
fn a_strangers_delete_never_undoes_the_authors() {
    Home::on_both(|home| {
        let store = home.open();
        let (author, stranger) =
            (Keypair::from_secret_bytes(&[7; 32]), Keypair::from_secret_bytes(&[8; 32]));
        let x = post(&author, 1, None, 10, "regretted");
        assert_eq!(store.insert(&x).unwrap(), Inserted::New);
        let delete = signed(&author, 2, Some(x.id()), 11, RecordKind::Delete { target: x.id() });
        assert_eq!(store.insert(&delete).unwrap(), Inserted::New);
        assert!(!store.has(&x.id()).unwrap());
        // A stranger "deletes" X too: the author's tombstone stays, and a replay stays out.
        let theirs = signed(&stranger, 1, None, 12, RecordKind::Delete { target: x.id() });
        assert_eq!(store.insert(&theirs).unwrap(), Inserted::New);
        assert_eq!(store.insert(&x).unwrap(), Inserted::Deleted);
        assert!(!store.has(&x.id()).unwrap());
        assert!(store.tombstone_of(&x.id()).unwrap().is_some());
        // A stranger's delete of a record not yet seen does not keep it out either.
        let y = post(&author, 3, Some(delete.id()), 13, "kept");
        let early =
            signed(&stranger, 2, Some(theirs.id()), 14, RecordKind::Delete { target: y.id() });
        assert_eq!(store.insert(&early).unwrap(), Inserted::New);
        assert_eq!(store.insert(&y).unwrap(), Inserted::New);
        assert!(store.has(&y.id()).unwrap());
    });
}

#[test]
fn first_format_tombstones_are_upgraded() {
    Home::on_both(|home| {
        let author = Keypair::from_secret_bytes(&[9; 32]);
        let x = post(&author, 1, None, 10, "gone");
        let delete = signed(&author, 2, Some(x.id()), 11, RecordKind::Delete { target: x.id() });
        {
            let store = home.open();
            // As the first format wrote it: key target, value deleter then delete id.
            let mut value = author.id().as_bytes().to_vec();
            value.extend_from_slice(delete.id().as_bytes());
            store.tombstones.insert(x.id().as_bytes(), value).unwrap();
            store.flush_blocking().unwrap();
            home.close(store);
        }
        let store = home.open();
        assert_eq!(store.insert(&x).unwrap(), Inserted::Deleted);
        assert_eq!(store.tombstone_of(&x.id()).unwrap(), Some(delete.id()));
    });
}

#[test]
fn a_crash_in_memory_keeps_only_flushed_writes() {
    let kp = Keypair::from_secret_bytes(&[10; 32]);
    let recs = chain(&kp, &["one #a", "two", "three #a"]);
    let mut home = Home::Memory(None);
    let store = home.open();
    store.insert(&recs[0]).unwrap();
    store.subscribe(&Tag::parse("a").unwrap()).unwrap();
    store.flush_blocking().unwrap();
    store.insert(&recs[1]).unwrap();
    store.insert(&recs[2]).unwrap();
    store.subscribe(&Tag::parse("b").unwrap()).unwrap();
    assert_eq!(store.counts().records, 3, "unflushed writes are read before the crash");
    home.close(store);

    let store = home.open();
    assert!(store.has(&recs[0].id()).unwrap());
    assert!(!store.has(&recs[1].id()).unwrap() && !store.has(&recs[2].id()).unwrap());
    assert_eq!(store.latest(&kp.id()).unwrap(), Some((1, recs[0].id())));
    assert_eq!(store.counts(), super::Counts { records: 1, posts: 1, forked_authors: 0 });
    assert_eq!(store.subscriptions().unwrap(), vec![Tag::parse("a").unwrap()]);
    // The lost records come again (as from a peer) and are new to the restarted store.
    assert_eq!(store.insert(&recs[1]).unwrap(), Inserted::New);
    assert_eq!(store.author_log(&kp.id(), 0, 10).unwrap().len(), 2);
}

#[test]
fn a_thousand_memory_stores_open_in_one_process() {
    let kp = Keypair::from_secret_bytes(&[11; 32]);
    let rec = post(&kp, 1, None, 1, "everywhere");
    let stores: Vec<Store> = (0..1_000).map(|_| Store::open_memory().unwrap()).collect();
    for store in &stores {
        assert_eq!(store.insert(&rec).unwrap(), Inserted::New);
    }
    assert!(stores.iter().all(|s| s.has(&rec.id()).unwrap()));
    assert!(stores.iter().all(|s| s.memory_image().is_some()));
}

/// Opens the sled database `config` names, waiting (up to 10 s) while a handle dropped a
/// moment ago in this process still holds its file lock: sled lets go of the lock only
/// when its background threads have stopped, a moment after the last handle
/// ([`Store::open`] waits the same way).
pub(crate) fn open_sled(config: &sled::Config) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match config.open() {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

mod compaction_crash;
mod fixture;
mod flusher;
mod heap;
mod hints;
mod home;
mod insert_run;
mod lanes;
mod leaves;
mod log_reads;
mod migration;
mod records;
mod segments;

#[test]
fn the_latest_mailbox_list_counts_whatever_order_it_arrives_in() {
    Home::on_both(|home| {
        let store = home.open();
        let [a, b, c] = [7u8, 8, 9].map(|s| Keypair::from_secret_bytes(&[s; 32]));
        let list = |seq, prev, holders: Vec<_>| {
            let kind = RecordKind::Mailboxes { holders };
            Record { author: a.id(), seq, prev, timestamp: seq, kind }.sign(&a).unwrap()
        };
        let first = list(1, None, vec![b.id(), c.id()]);
        let second = list(2, Some(first.id()), vec![c.id()]);
        assert!(store.mailboxes_of(&a.id()).unwrap().is_empty());
        store.insert(&second).unwrap();
        store.insert(&first).unwrap();
        assert_eq!(store.mailboxes_of(&a.id()).unwrap(), vec![c.id()]);
        store.flush_blocking().unwrap();
        home.close(store);
        let store = home.open();
        assert_eq!(store.mailboxes_of(&a.id()).unwrap(), vec![c.id()]);
        assert!(store.mailboxes_of(&b.id()).unwrap().is_empty());
    });
}

#[test]
fn the_configuration_default_cache_is_the_stores() {
    assert_eq!(crate::config::DEFAULT_STORE_CACHE_MB * 1024 * 1024, super::DEFAULT_CACHE_BYTES);
}

#[test]
fn group_unread_counts_others_messages_after_the_last_read() {
    use super::group::GroupLine;
    let store = Store::open_memory().unwrap();
    let (group, other_group) = ([1; 16], [2; 16]);
    let (me, them) = ([7; 32], [8; 32]);
    let line = |id: u8, from: [u8; 32], timestamp: u64| GroupLine {
        id: [id; 16],
        from,
        text: format!("m{id}"),
        timestamp,
    };
    assert_eq!(store.group_unread(&group, &me).unwrap(), 0);
    store.group_add_line(&group, &line(1, them, 10)).unwrap();
    store.group_add_line(&group, &line(2, me, 20)).unwrap();
    store.group_add_line(&group, &line(3, them, 30)).unwrap();
    store.group_add_line(&other_group, &line(4, them, 5)).unwrap();
    // Mine never count; another group's never count.
    assert_eq!(store.group_unread(&group, &me).unwrap(), 2);
    store.group_mark_read(&group).unwrap();
    assert_eq!(store.group_unread(&group, &me).unwrap(), 0);
    assert_eq!(store.group_unread(&other_group, &me).unwrap(), 1);
    // A later message is unread; one that arrives late with an older timestamp is
    // ordered before the mark (the thread shows it in its place).
    store.group_add_line(&group, &line(5, them, 40)).unwrap();
    store.group_add_line(&group, &line(6, them, 25)).unwrap();
    assert_eq!(store.group_unread(&group, &me).unwrap(), 1);
    store.group_mark_read(&group).unwrap();
    assert_eq!(store.group_unread(&group, &me).unwrap(), 0);
}

#[test]
fn the_log_says_which_records_are_posts_and_older_values_still_read() {
    Home::on_both(|home| {
        let store = home.open();
        let a = Keypair::from_secret_bytes(&[9; 32]);
        let p1 = post(&a, 1, None, 1_000, "one");
        let reaction = Record {
            author: a.id(),
            seq: 2,
            prev: Some(p1.id()),
            timestamp: 1_001,
            kind: RecordKind::Reaction { target: p1.id(), emoji: "+".into() },
        }
        .sign(&a)
        .unwrap();
        let p3 = post(&a, 3, Some(reaction.id()), 1_002, "three");
        for r in [&p1, &reaction, &p3] {
            assert_eq!(store.insert(r).unwrap(), Inserted::New);
        }
        let value = |seq| store.log.get(super::log_key(&a.id(), seq)).unwrap().unwrap();
        assert_eq!(value(1).as_ref(), super::keys::log_value(&p1.id(), true));
        assert_eq!(value(2).as_ref(), super::keys::log_value(&reaction.id(), false));
        assert_eq!(store.log_at(&a.id(), 2).unwrap(), Some(reaction.id()));
        let listed = |store: &Store| -> Vec<u64> {
            let mut read = 0;
            let posts = store
                .posts_by_author(&a.id(), 10, None, |_| {
                    read += 1;
                    true
                })
                .unwrap();
            assert_eq!(read, posts.len());
            posts.iter().map(|r| r.record.seq).collect()
        };
        assert_eq!(listed(&store), [3, 1]);
        // A store written before the kind byte: the id alone, read and checked.
        for (seq, id) in [(1, p1.id()), (2, reaction.id())] {
            store.log.insert(super::log_key(&a.id(), seq), id.as_bytes()).unwrap();
        }
        assert_eq!(listed(&store), [3, 1]);
        assert_eq!(store.latest(&a.id()).unwrap(), Some((3, p3.id())));
        assert_eq!(store.insert(&reaction).unwrap(), Inserted::Duplicate);
    });
}

/// The counts and one person's reaction in one read are what [`Store::reactions`] and
/// [`Store::reaction_of`] give: a later reaction replaces an earlier one, a withdrawn one
/// (empty) counts for nothing and is nobody's.
#[test]
fn reactions_and_one_persons_reaction_read_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let [ann, bob, me] = [31u8, 32, 33].map(|s| Keypair::from_secret_bytes(&[s; 32]));
    let target = post(&ann, 1, None, 1_000, "react to me");
    store.insert(&target).unwrap();
    let mut last: std::collections::HashMap<kith_protocol::AuthorId, VerifiedRecord> =
        Default::default();
    let mut react = |who: &Keypair, emoji: &str| {
        let prev = last.get(&who.id());
        let seq = prev.map_or(1, |p| p.record().seq + 1);
        let kind = RecordKind::Reaction { target: target.id(), emoji: emoji.into() };
        let r = signed(who, seq, prev.map(VerifiedRecord::id), 2_000 + seq, kind);
        store.insert(&r).unwrap();
        last.insert(who.id(), r);
    };
    let both = |store: &Store, who: &Keypair| {
        let together = store.reactions_and_one(&target.id(), Some(&who.id())).unwrap();
        let mine = store.reaction_of(&target.id(), &who.id()).unwrap().filter(|e| !e.is_empty());
        assert_eq!(together, (store.reactions(&target.id()).unwrap(), mine));
        together
    };
    react(&bob, "❤");
    react(&me, "👍");
    let (counts, mine) = both(&store, &me);
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), [("❤".into(), 1), ("👍".into(), 1)]);
    assert_eq!(mine.as_deref(), Some("👍"));
    assert_eq!(both(&store, &ann).1, None);
    react(&me, "❤");
    let (counts, mine) = both(&store, &me);
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), [("❤".into(), 2)]);
    assert_eq!(mine.as_deref(), Some("❤"));
    react(&me, "");
    let (counts, mine) = both(&store, &me);
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), [("❤".into(), 1)]);
    assert_eq!(mine, None);
    assert_eq!(store.reactions_and_one(&target.id(), None).unwrap().1, None);
}
