//! Turning stored records into what the control API shows.

use std::{
    cell::{OnceCell, RefCell},
    collections::HashMap,
};

use kith_protocol::{AuthorId, Post, Record, RecordId, RecordKind};

use super::circle::Reader;
use crate::{
    api::{FeedItem, FollowEntry, Mention, Naming, Profile},
    store::{Store, StoreError, StoredRecord},
};

/// The display name of `author`, when a profile with a name is known.
pub(crate) fn name_of(store: &Store, author: &AuthorId) -> Option<String> {
    match store.profile(author) {
        Ok(Some(p)) => match p.record.kind {
            RecordKind::Profile { name, .. } if !name.is_empty() => Some(name),
            _ => None,
        },
        _ => None,
    }
}

/// Your petname for `author` and whether their name looks like another's.
pub(crate) fn naming_of(store: &Store, author: &AuthorId) -> Naming {
    Naming {
        petname: store.petname(author).ok().flatten(),
        lookalike: store.looks_like_another(author).unwrap_or(false),
    }
}

/// [`naming_of`] for an id that came as text (plain when it is not an id).
pub(crate) fn naming_of_text(store: &Store, author: &str) -> Naming {
    author.parse().map(|a| naming_of(store, &a)).unwrap_or_default()
}

/// Names looked up once per person while one answer is built: a page of 50 items shows
/// few people, and each look-up ([`name_of`], [`naming_of`]) reads the profile, the
/// petnames and the lookalike index again. Lives for one request only, so what it holds
/// is never older than the request.
pub(crate) struct Names<'a> {
    store: &'a Store,
    known: RefCell<HashMap<AuthorId, (Option<String>, Naming)>>,
    /// Each person's id as text (base58, worth writing once per answer).
    ids: RefCell<HashMap<AuthorId, String>>,
    /// Every petname, and its [`crate::names::lookalike_key`], by whom it names: read
    /// once per answer, when the first person is named.
    petnames: OnceCell<Petnames>,
}

/// The petnames as [`Names`] holds them: each, and each one's look-alike key.
struct Petnames {
    given: HashMap<AuthorId, String>,
    keys: Vec<(AuthorId, String)>,
}

impl<'a> Names<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self {
            store,
            known: RefCell::new(HashMap::new()),
            ids: RefCell::new(HashMap::new()),
            petnames: OnceCell::new(),
        }
    }

    fn petnames(&self) -> &Petnames {
        self.petnames.get_or_init(|| {
            let given: HashMap<AuthorId, String> =
                self.store.petnames().unwrap_or_default().into_iter().collect();
            let keys =
                given.iter().map(|(who, p)| (*who, crate::names::lookalike_key(p))).collect();
            Petnames { given, keys }
        })
    }

    pub(crate) fn store(&self) -> &'a Store {
        self.store
    }

    /// The display name and naming of `author` ([`name_of`] and [`naming_of`]).
    pub(crate) fn of(&self, author: &AuthorId) -> (Option<String>, Naming) {
        if let Some(known) = self.known.borrow().get(author) {
            return known.clone();
        }
        // As `name_of` and `naming_of`, reading the profile once and the petnames once
        // per answer.
        let name = name_of(self.store, author);
        let petnames = self.petnames();
        let naming = Naming {
            petname: petnames.given.get(author).cloned(),
            lookalike: name.as_deref().is_some_and(|name| {
                self.store.name_looks_like_another(author, name, &petnames.keys).unwrap_or(false)
            }),
        };
        let found = (name, naming);
        self.known.borrow_mut().insert(*author, found.clone());
        found
    }

    /// `author`'s id as text.
    pub(crate) fn id(&self, author: &AuthorId) -> String {
        self.ids.borrow_mut().entry(*author).or_insert_with(|| author.to_string()).clone()
    }

    /// `author` as a [`Mention`].
    pub(crate) fn mention(&self, author: &AuthorId) -> Mention {
        let (name, naming) = self.of(author);
        Mention { id: self.id(author), name, naming }
    }

    /// The people `post` mentions, with their names.
    pub(crate) fn mentions(&self, post: &Post) -> Vec<Mention> {
        post.mentions.iter().map(|who| self.mention(who)).collect()
    }
}

/// A post (or the post a repost shares) as a feed item; `None` for other kinds, and for
/// a repost whose target is unknown or not a post. A repost is resolved one level only:
/// peers choose what a repost points at, and a chain of them must cost no more than one.
pub(crate) fn feed_item_of(
    store: &Store,
    reader: &Reader,
    id: RecordId,
    record: &Record,
) -> Option<FeedItem> {
    feed_item_named(&Names::new(store), reader, id, record)
}

/// The feed items of `records` (those that show), each person's names looked up once.
pub(crate) fn feed_items(
    store: &Store,
    reader: &Reader,
    records: &[StoredRecord],
) -> Vec<FeedItem> {
    let names = Names::new(store);
    records.iter().filter_map(|r| feed_item_named(&names, reader, r.id, &r.record)).collect()
}

/// [`feed_item_of`] with names looked up through `names` (a page's items share it).
fn feed_item_named(
    names: &Names<'_>,
    reader: &Reader,
    id: RecordId,
    record: &Record,
) -> Option<FeedItem> {
    let store = names.store;
    let me = &reader.me;
    if let RecordKind::Private(_) = &record.kind {
        let text = reader.private_text(store, record)?;
        let post = Post {
            text,
            reply_to: None,
            mentions: Vec::new(),
            expires_at: None,
            attachments: Vec::new(),
        };
        let mut item = post_item(names, me, id, record, &post);
        item.private = true;
        item.tags = Vec::new();
        return Some(item);
    }
    if let RecordKind::Repost { target } = &record.kind {
        let original = store.get(target).ok()??;
        let RecordKind::Post(post) = &original.record.kind else { return None };
        let mut item = post_item(names, me, original.id, &original.record, post);
        item.reposted_by = Some(names.id(&record.author));
        item.reposter = Some(Box::new(names.mention(&record.author)));
        return Some(item);
    }
    let RecordKind::Post(post) = &record.kind else { return None };
    Some(post_item(names, me, id, record, post))
}

fn post_item(
    names: &Names<'_>,
    me: &AuthorId,
    id: RecordId,
    record: &Record,
    post: &Post,
) -> FeedItem {
    let store = names.store;
    let (author_name, naming) = names.of(&record.author);
    let (reactions, my_reaction) = store.reactions_and_one(&id, Some(me)).unwrap_or_default();
    FeedItem {
        id: id.to_string(),
        author: names.id(&record.author),
        seq: record.seq,
        timestamp: record.timestamp,
        text: post.text.clone(),
        tags: record.tags().iter().map(|t| t.to_string()).collect(),
        reply_to: post.reply_to.map(|r| r.to_string()),
        author_name,
        naming,
        mentions: names.mentions(post),
        reposted_by: None,
        reposter: None,
        reactions,
        my_reaction,
        attachments: post.attachments.iter().map(|a| super::attach::entry_of(store, a)).collect(),
        private: false,
    }
}

/// The person's own reaction to a record, if they have one.
pub(crate) fn my_reaction(store: &Store, me: &AuthorId, id: &RecordId) -> Option<String> {
    store.reaction_of(id, me).ok().flatten().filter(|emoji| !emoji.is_empty())
}

/// A profile as shown, for `author`.
pub(crate) fn profile_of(store: &Store, author: &AuthorId) -> Result<Profile, StoreError> {
    let (name, bio) = match store.profile(author)? {
        Some(p) => match p.record.kind {
            RecordKind::Profile { name, bio } => (Some(name), Some(bio)),
            _ => (None, None),
        },
        None => (None, None),
    };
    Ok(Profile {
        id: author.to_string(),
        name,
        bio,
        forked: store.is_flagged(author)?,
        naming: naming_of(store, author),
        latest_seq: store.latest(author)?.map_or(0, |(seq, _)| seq),
        log_records: store.author_count(author)?,
    })
}

/// A following/followers list entry; `mutual` when the follow goes both ways.
pub(crate) fn follow_entry(store: &Store, who: &AuthorId, mutual: bool) -> FollowEntry {
    FollowEntry {
        id: who.to_string(),
        mutual,
        name: name_of(store, who),
        naming: naming_of(store, who),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kith_protocol::{Keypair, RecordKind, VerifiedRecord};

    use super::{feed_item_of, name_of, naming_of, Names, Reader};
    use crate::store::{
        tests::{post, signed},
        Store,
    };

    /// Thousands of chained reposts (a stored chain, as if ingested before the ingest
    /// check or in reverse order) cost one lookup each: no recursion down the chain.
    #[test]
    fn a_chain_of_reposts_resolves_one_level() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kp = Keypair::from_secret_bytes(&[3; 32]);
        let original = post(&kp, 1, None, 1, "the post");
        store.insert(&original).unwrap();
        let mut last: VerifiedRecord = original.clone();
        for seq in 2..=10_000u64 {
            let kind = RecordKind::Repost { target: last.id() };
            let repost = signed(&kp, seq, Some(last.id()), seq, kind);
            store.insert(&repost).unwrap();
            last = repost;
        }
        let reader = Reader::without_keys(kp.id());
        assert_eq!(feed_item_of(&store, &reader, last.id(), last.record()), None);
        let first = store.author_log(&kp.id(), 1, 1).unwrap().remove(0);
        let item = feed_item_of(&store, &reader, first.id, &first.record).unwrap();
        assert_eq!(item.id, original.id().to_string());
        assert_eq!(item.reposted_by, Some(kp.id().to_string()));
    }

    fn profile(kp: &Keypair, seq: u64, name: &str) -> VerifiedRecord {
        let prev = (seq > 1).then(|| kith_protocol::RecordId::from_bytes([9; 32]));
        let kind = RecordKind::Profile { name: name.into(), bio: String::new() };
        signed(kp, seq, prev, 1_000 + seq, kind)
    }

    /// A page names each person as [`name_of`] and [`naming_of`] do one by one, though it
    /// reads the petnames once and each profile once: look-alikes of others' names and of
    /// petnames given to others, one's own petname, renames, a name that folds to nothing.
    #[test]
    fn a_pages_names_are_those_read_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let people: Vec<Keypair> =
            (21u8..=27).map(|s| Keypair::from_secret_bytes(&[s; 32])).collect();
        let [ann, eve, bob, zed, ned, sym, nobody] = [0, 1, 2, 3, 4, 5, 6].map(|i| &people[i]);
        store.insert(&profile(ann, 1, "Ann")).unwrap();
        store.insert(&profile(eve, 1, "\u{410}NN")).unwrap();
        store.insert(&profile(bob, 1, "Bob")).unwrap();
        store.insert(&profile(zed, 1, "Z\u{200B}ed")).unwrap();
        store.insert(&profile(ned, 1, "Ned")).unwrap();
        store.insert(&profile(sym, 1, "\u{200B}")).unwrap();
        store.set_petname(&bob.id(), Some("zed")).unwrap();
        store.set_petname(&ned.id(), Some("ned")).unwrap();
        store.set_petname(&nobody.id(), Some("\u{200B}\u{200B}")).unwrap();
        let same = |store: &Store| {
            let names = Names::new(store);
            for who in &people {
                let one_by_one = (name_of(store, &who.id()), naming_of(store, &who.id()));
                assert_eq!(names.of(&who.id()), one_by_one, "{:?}", one_by_one.0);
            }
        };
        same(&store);
        let names = Names::new(&store);
        assert!(names.of(&ann.id()).1.lookalike && names.of(&eve.id()).1.lookalike);
        assert!(names.of(&zed.id()).1.lookalike, "like the petname given to Bob");
        assert!(!names.of(&bob.id()).1.lookalike);
        assert!(!names.of(&ned.id()).1.lookalike, "one's own petname");
        assert_eq!(names.of(&ned.id()).1.petname.as_deref(), Some("ned"));
        // Eve renames; Bob's petname goes: a new answer sees both.
        store.insert(&profile(eve, 2, "Eve")).unwrap();
        store.set_petname(&bob.id(), None).unwrap();
        same(&store);
        let names = Names::new(&store);
        assert!(!names.of(&ann.id()).1.lookalike && !names.of(&zed.id()).1.lookalike);
    }
}
