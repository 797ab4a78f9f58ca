//! The records of the scale benchmark: what a node following 100 of 1,000 authors and
//! subscribed to 5 of 50 hashtags receives over a year, planned from a seeded generator,
//! signed by the authors' real keys on every core, and ingested through the node's own
//! gossip checks and keep decision (`ingest::ingest_batch`, the same outcomes as
//! `ingest::ingest` per record), each new record's notifications stored as the core
//! stores them.

use std::collections::{HashMap, VecDeque};

use kith_node::{
    core::notify,
    ingest::{self, Admission, Outcome},
    store::Store,
};
use kith_protocol::{
    AuthorId, Keypair, Post, Record, RecordId, RecordKind, Tag, Topic, VerifiedRecord,
};

use crate::sim_core::SimRng;

/// Authors who post (the reader is one more).
pub const AUTHORS: usize = 1_000;
/// Of them, followed by the reader: the first ones.
pub const FOLLOWED: usize = 100;
/// Hashtags in use.
pub const TAGS: usize = 50;
/// Of them, subscribed by the reader: the first ones.
pub const SUBSCRIBED: usize = 5;
/// Records planned, signed and ingested at a time (one flush each).
const CHUNK: usize = 4096;
/// Time between two records of the stream, ms (a million records span about a year).
const STEP_MS: u64 = 31_000;
/// Recent posts that replies, reactions and reposts pick from.
const RECENT: usize = 2_000;
/// Posts and threads remembered as query targets.
const SAMPLES: usize = 20_000;

const WORDS: &[&str] = &[
    "the", "a", "network", "garden", "today", "rust", "coffee", "morning", "build", "release",
    "river", "bike", "train", "music", "night", "book", "reading", "wonder", "small", "fast",
    "friends", "weekend", "photo", "light", "rain", "code", "tests", "server", "local", "first",
];
const EMOJI: &[&str] = &["👍", "❤", "🎉", "😂", "🔥", "+1"];

/// A post remembered as a query target.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The post.
    pub id: RecordId,
    /// Its author's index (the reader is [`AUTHORS`]).
    pub author: usize,
    /// A hashtag it carries, if any (an index into the tags).
    pub tag: Option<usize>,
}

/// How ingest went.
#[derive(Debug, Clone, Default)]
pub struct Ingested {
    /// Records offered to ingest.
    pub offered: u64,
    /// Stored as new.
    pub new: u64,
    /// Valid but not kept (on a topic for its owner, not for this reader).
    pub unwanted: u64,
    /// Anything else (duplicate, gone): none expected.
    pub other: u64,
    /// Seconds spent in ingest, notifications and flushes (not planning or signing).
    pub seconds: f64,
    /// Seconds spent signing.
    pub signing_seconds: f64,
    /// Signed bytes offered.
    pub bytes: u64,
}

struct Author {
    key: Keypair,
    id: AuthorId,
    seq: u64,
    prev: Option<RecordId>,
    /// This author's latest posts (delete targets).
    own: VecDeque<RecordId>,
}

/// One record to sign: who, where in their log, when, what, on which topic it comes.
struct Planned {
    author: usize,
    seq: u64,
    timestamp: u64,
    kind: RecordKind,
    topic: String,
}

/// The stream's state: authors' logs and what new records may refer to.
pub struct Stream {
    rng: SimRng,
    /// The 1,000 authors, then the reader.
    authors: Vec<Author>,
    tags: Vec<Tag>,
    clock: u64,
    /// Recent posts of followed authors and the reader: (id, author).
    recent: VecDeque<(RecordId, usize)>,
    /// The reader's recent posts.
    mine: VecDeque<RecordId>,
    /// Query targets: posts of followed authors and the reader (reservoir).
    pub posts: Vec<Sample>,
    /// Query targets: posts known to have a reply (reservoir).
    pub threads: Vec<RecordId>,
    seen_posts: u64,
    seen_threads: u64,
}

fn author_key(i: usize) -> Keypair {
    let mut secret = [0x5au8; 32];
    secret[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Keypair::from_secret_bytes(&secret)
}

impl Stream {
    /// The stream of `me` (the reader), seeded by `seed`, its records dated up to `end_ms`
    /// for `records` records.
    pub fn new(me: Keypair, seed: u64, records: u64, end_ms: u64) -> Self {
        let mut authors: Vec<Author> = (0..AUTHORS).map(|i| Author::new(author_key(i))).collect();
        authors.push(Author::new(me));
        let tags =
            (0..TAGS).map(|i| Tag::parse(&format!("topic{i:02}")).expect("a valid tag")).collect();
        let span = records.saturating_mul(STEP_MS) + 3_600_000;
        Self {
            rng: SimRng::new(seed),
            authors,
            tags,
            clock: end_ms.saturating_sub(span),
            recent: VecDeque::new(),
            mine: VecDeque::new(),
            posts: Vec::new(),
            threads: Vec::new(),
            seen_posts: 0,
            seen_threads: 0,
        }
    }

    /// Writes the query targets to `path` (one per line: `p ID AUTHOR TAG` with `-` for no
    /// tag, `t ID`), so a kept home can be measured again without building it.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn save_samples(&self, path: &std::path::Path) {
        let mut out = String::new();
        for p in &self.posts {
            let tag = p.tag.map_or_else(|| "-".to_string(), |t| t.to_string());
            out.push_str(&format!("p {} {} {}\n", p.id, p.author, tag));
        }
        for id in &self.threads {
            out.push_str(&format!("t {id}\n"));
        }
        std::fs::write(path, out).expect("the samples are written");
    }

    /// Reads the query targets [`Stream::save_samples`] wrote; `false` when there is no
    /// such file.
    ///
    /// # Panics
    /// When the file does not parse.
    pub fn load_samples(&mut self, path: &std::path::Path) -> bool {
        let Ok(text) = std::fs::read_to_string(path) else { return false };
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            let id = |i: usize| parts[i].parse::<RecordId>().expect("a record id");
            match parts[0] {
                "p" => self.posts.push(Sample {
                    id: id(1),
                    author: parts[2].parse().expect("an author index"),
                    tag: parts[3].parse().ok(),
                }),
                "t" => self.threads.push(id(1)),
                other => panic!("unexpected sample line {other}"),
            }
        }
        true
    }

    /// The id of author `i` (the reader is [`AUTHORS`]).
    pub fn author_id(&self, i: usize) -> AuthorId {
        self.authors[i].id
    }

    /// The hashtag `i`.
    pub fn tag(&self, i: usize) -> &Tag {
        &self.tags[i]
    }

    /// The reader follows its authors and subscribes to its tags: the follows are the
    /// reader's own records, through ingest like the rest.
    ///
    /// # Panics
    /// On a store error.
    pub fn set_up(&mut self, store: &Store, admission: &Admission, tally: &mut Ingested) {
        for tag in &self.tags[..SUBSCRIBED] {
            store.subscribe(tag).expect("subscribe");
        }
        let me = AUTHORS;
        let plan: Vec<Planned> = (0..FOLLOWED)
            .map(|a| {
                let target = self.authors[a].id;
                self.plan_one(me, RecordKind::Follow { target })
            })
            .collect();
        self.sign_and_ingest(plan, store, admission, tally);
    }

    /// Plans, signs and ingests records until the store holds `records` (or a little
    /// more: the last chunk is sized to land near it).
    ///
    /// # Panics
    /// On a store error, or a record ingest calls invalid (a bug in this stream).
    pub fn fill(
        &mut self,
        store: &Store,
        admission: &Admission,
        records: u64,
        tally: &mut Ingested,
        mut progress: impl FnMut(u64),
    ) {
        loop {
            let stored = store.total_count();
            if stored >= records {
                return;
            }
            // Most of the stream is kept: size the last chunks to land near N, and a
            // small store's chunks small enough that later records refer to earlier ones.
            let chunk = (records / 8).clamp(64, CHUNK as u64);
            let want = ((records - stored) * 11 / 10 + 8).min(chunk) as usize;
            let plan: Vec<Planned> = (0..want).map(|_| self.plan_next()).collect();
            self.sign_and_ingest(plan, store, admission, tally);
            progress(store.total_count());
        }
    }

    /// Drops query targets the store no longer holds (deleted by their authors).
    ///
    /// # Panics
    /// On a store error.
    pub fn forget_erased(&mut self, store: &Store) {
        self.posts.retain(|p| store.has(&p.id).expect("the store reads"));
        self.threads.retain(|id| store.has(id).expect("the store reads"));
    }

    fn plan_one(&mut self, author: usize, kind: RecordKind) -> Planned {
        self.clock += 1 + self.rng.below(2 * STEP_MS);
        let a = &mut self.authors[author];
        a.seq += 1;
        let topic = Topic::Author(a.id).to_string();
        Planned { author, seq: a.seq, timestamp: self.clock, kind, topic }
    }

    fn text(&mut self, extra: &str) -> String {
        let words = 4 + self.rng.below(30);
        let mut text = String::new();
        for _ in 0..words {
            text.push_str(WORDS[self.rng.index(WORDS.len())]);
            text.push(' ');
        }
        text.push_str(extra);
        text.trim_end().to_owned()
    }

    fn post(
        &mut self,
        extra: &str,
        reply_to: Option<RecordId>,
        mentions: Vec<AuthorId>,
    ) -> RecordKind {
        let text = self.text(extra);
        RecordKind::Post(Post { text, reply_to, mentions, expires_at: None, attachments: vec![] })
    }

    fn recent_post(&mut self) -> Option<(RecordId, usize)> {
        (!self.recent.is_empty()).then(|| self.recent[self.rng.index(self.recent.len())])
    }

    fn my_post(&mut self) -> Option<RecordId> {
        (!self.mine.is_empty()).then(|| self.mine[self.rng.index(self.mine.len())])
    }

    fn stranger(&mut self) -> usize {
        FOLLOWED + self.rng.index(AUTHORS - FOLLOWED)
    }

    /// The next record of the stream (see the module documentation for the mix).
    fn plan_next(&mut self) -> Planned {
        let me = self.authors[AUTHORS].id;
        let roll = self.rng.below(1000);
        if roll < 10 {
            let tag = self.rng.index(TAGS);
            let extra =
                if self.rng.chance(300) { format!("#{}", self.tags[tag]) } else { String::new() };
            let kind = self.post(&extra, None, vec![]);
            return self.plan_one(AUTHORS, kind);
        }
        if roll < 60 {
            // A stranger about the reader's posts, or following them: on the reader's
            // topic, kept as a stranger's record.
            let who = self.stranger();
            let kind = match (self.rng.below(10), self.my_post()) {
                (0..=3, Some(target)) => self.post("", Some(target), vec![]),
                (4..=7, Some(target)) => RecordKind::Reaction {
                    target,
                    emoji: EMOJI[self.rng.index(EMOJI.len())].into(),
                },
                (8, Some(target)) => RecordKind::Repost { target },
                _ => RecordKind::Follow { target: me },
            };
            let mut p = self.plan_one(who, kind);
            p.topic = Topic::Author(me).to_string();
            return p;
        }
        if roll < 130 {
            // A stranger's post with a subscribed hashtag, on that tag's topic.
            let who = self.stranger();
            let tag = self.tags[self.rng.index(SUBSCRIBED)].clone();
            let kind = self.post(&format!("#{tag}"), None, vec![]);
            let mut p = self.plan_one(who, kind);
            p.topic = Topic::Tag(tag).to_string();
            return p;
        }
        if roll < 200 {
            // A stranger replying to a followed author: on that author's topic, carried
            // for its owner, not kept by this reader.
            if let Some((target, owner)) = self.recent_post() {
                let who = self.stranger();
                let kind = self.post("", Some(target), vec![]);
                let mut p = self.plan_one(who, kind);
                p.topic = Topic::Author(self.authors[owner].id).to_string();
                return p;
            }
        }
        let a = self.rng.index(FOLLOWED);
        let kind = self.followed_kind(a);
        self.plan_one(a, kind)
    }

    /// What a followed author `a` does next.
    fn followed_kind(&mut self, a: usize) -> RecordKind {
        let me = self.authors[AUTHORS].id;
        let k = self.rng.below(100);
        let recent = self.recent_post();
        match (k, recent) {
            (55..=79, Some((target, _))) => {
                RecordKind::Reaction { target, emoji: EMOJI[self.rng.index(EMOJI.len())].into() }
            }
            (80..=84, Some((target, owner))) if owner != a => RecordKind::Repost { target },
            (85..=87, _) if !self.authors[a].own.is_empty() => {
                let own = &mut self.authors[a].own;
                let i = self.rng.index(own.len());
                let target = own.remove(i).expect("an index within the deque");
                RecordKind::Delete { target }
            }
            (88, _) => RecordKind::Profile { name: format!("Author {a}"), bio: self.text("") },
            (89..=91, _) => {
                // Anyone but themselves (the reader now and then).
                let other = (a + 1 + self.rng.index(AUTHORS - 1)) % AUTHORS;
                let target = if self.rng.chance(100) { me } else { self.authors[other].id };
                RecordKind::Follow { target }
            }
            _ => {
                let mut extra = String::new();
                if self.rng.chance(250) {
                    extra = format!("#{}", self.tags[self.rng.index(TAGS)]);
                    if self.rng.chance(200) {
                        extra = format!("{extra} #{}", self.tags[self.rng.index(TAGS)]);
                    }
                }
                let reply_to = if self.rng.chance(300) { recent.map(|r| r.0) } else { None };
                if self.rng.chance(10) {
                    // A mention is written in the text as `@id`.
                    extra = format!("{extra} @{me}");
                    return self.post(&extra, reply_to, vec![me]);
                }
                self.post(&extra, reply_to, vec![])
            }
        }
    }

    /// Signs `plan` on every core (each author's records in order on one thread, their
    /// `prev` links filled in), then ingests it topic by topic as gossip would bring it.
    fn sign_and_ingest(
        &mut self,
        plan: Vec<Planned>,
        store: &Store,
        admission: &Admission,
        tally: &mut Ingested,
    ) {
        let t = std::time::Instant::now();
        let signed = self.sign(&plan);
        tally.signing_seconds += t.elapsed().as_secs_f64();
        let now = self.clock + 1_000;
        // Topics in order of first appearance, each with its records in stream order.
        let mut order: Vec<&str> = Vec::new();
        let mut by_topic: HashMap<&str, Vec<Vec<u8>>> = HashMap::new();
        for (p, rec) in plan.iter().zip(&signed) {
            let group = by_topic.entry(&p.topic).or_insert_with(|| {
                order.push(&p.topic);
                Vec::new()
            });
            group.push(rec.bytes().to_vec());
            tally.bytes += rec.bytes().len() as u64;
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let me = self.authors[AUTHORS].id;
        let t = std::time::Instant::now();
        for topic in order {
            let batch = &by_topic[topic];
            for outcome in ingest::ingest_batch(store, admission, batch, Some(topic), now, threads)
            {
                tally.offered += 1;
                match outcome.expect("the store works") {
                    Outcome::New(rec) => {
                        tally.new += 1;
                        notify::for_record(store, &me, &rec, now);
                    }
                    Outcome::Unwanted { .. } => tally.unwanted += 1,
                    Outcome::Invalid(reason) => {
                        panic!("the stream made an invalid record: {reason}")
                    }
                    _ => tally.other += 1,
                }
            }
        }
        store.flush_blocking().expect("flush");
        tally.seconds += t.elapsed().as_secs_f64();
        self.remember(&plan, &signed);
    }

    fn sign(&mut self, plan: &[Planned]) -> Vec<VerifiedRecord> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let authors = &self.authors;
        let parts: Vec<Vec<(usize, VerifiedRecord)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let mut prev: HashMap<usize, Option<RecordId>> = HashMap::new();
                        let mut out = Vec::new();
                        for (i, p) in
                            plan.iter().enumerate().filter(|(_, p)| p.author % threads == t)
                        {
                            let a = &authors[p.author];
                            let link = prev.entry(p.author).or_insert(a.prev);
                            let rec = Record {
                                author: a.id,
                                seq: p.seq,
                                prev: *link,
                                timestamp: p.timestamp,
                                kind: p.kind.clone(),
                            }
                            .sign(&a.key)
                            .expect("a record within limits signs");
                            *link = Some(rec.id());
                            out.push((i, rec));
                        }
                        out
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("a signing thread")).collect()
        });
        let mut slots: Vec<Option<VerifiedRecord>> = (0..plan.len()).map(|_| None).collect();
        for (i, rec) in parts.into_iter().flatten() {
            slots[i] = Some(rec);
        }
        let signed: Vec<VerifiedRecord> =
            slots.into_iter().map(|s| s.expect("every planned record signed")).collect();
        for (p, rec) in plan.iter().zip(&signed) {
            self.authors[p.author].prev = Some(rec.id());
        }
        signed
    }

    /// Remembers what later records and queries may refer to.
    fn remember(&mut self, plan: &[Planned], signed: &[VerifiedRecord]) {
        for (p, rec) in plan.iter().zip(signed) {
            let RecordKind::Post(post) = &p.kind else { continue };
            if p.author >= FOLLOWED && p.author != AUTHORS {
                continue;
            }
            let id = rec.id();
            if let Some(parent) = post.reply_to {
                self.seen_threads += 1;
                reservoir(&mut self.threads, &mut self.rng, self.seen_threads, parent);
            }
            let own = &mut self.authors[p.author].own;
            own.push_back(id);
            if own.len() > 20 {
                own.pop_front();
            }
            self.recent.push_back((id, p.author));
            if self.recent.len() > RECENT {
                self.recent.pop_front();
            }
            if p.author == AUTHORS {
                self.mine.push_back(id);
                if self.mine.len() > 200 {
                    self.mine.pop_front();
                }
            }
            let tag =
                rec.record().tags().first().and_then(|t| self.tags.iter().position(|x| x == t));
            self.seen_posts += 1;
            let sample = Sample { id, author: p.author, tag };
            reservoir(&mut self.posts, &mut self.rng, self.seen_posts, sample);
        }
    }
}

/// Reservoir sampling: the `seen`-th item replaces a random one with probability
/// [`SAMPLES`] / `seen` once the reservoir is full.
fn reservoir<T>(pool: &mut Vec<T>, rng: &mut SimRng, seen: u64, item: T) {
    if pool.len() < SAMPLES {
        pool.push(item);
    } else {
        let j = rng.below(seen) as usize;
        if j < SAMPLES {
            pool[j] = item;
        }
    }
}

impl Author {
    fn new(key: Keypair) -> Self {
        Self { id: key.id(), key, seq: 0, prev: None, own: VecDeque::new() }
    }
}
