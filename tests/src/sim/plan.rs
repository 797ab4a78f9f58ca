//! The simulation's plan: which node dials, follows, subscribes and posts what, from one
//! seed.

use std::collections::HashSet;

use super::Config;

/// A small seeded generator (SplitMix64): enough for picking peers and tags, and no
/// dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that always yields the same sequence for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Up to `k` distinct numbers of `0..n`, never `except`, in random order.
    pub fn pick(&mut self, n: usize, k: usize, except: Option<usize>) -> Vec<usize> {
        let mut pool: Vec<usize> = (0..n).filter(|&i| Some(i) != except).collect();
        let k = k.min(pool.len());
        for i in 0..k {
            let j = i + self.below(pool.len() - i);
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool
    }
}

/// One post to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPost {
    /// Index of the author's node.
    pub author: usize,
    /// Indexes of its hashtags.
    pub tags: Vec<usize>,
}

/// Every random choice of a run, made up front from the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Per node: the nodes it dials.
    pub dials: Vec<Vec<usize>>,
    /// Per node: the authors it follows.
    pub follows: Vec<Vec<usize>>,
    /// Per node: the tags it subscribes.
    pub subscriptions: Vec<Vec<usize>>,
    /// Posts, in each author's order.
    pub posts: Vec<PlannedPost>,
    /// How many distinct tags there are.
    pub tags: usize,
}

impl Plan {
    /// The plan for `config` (which must be valid).
    pub fn new(config: &Config) -> Self {
        let mut rng = Rng::new(config.seed);
        let n = config.nodes;
        // About seven subscribers per tag, and at least three tags.
        let tags = (n / 5).max(3);
        let dials = (0..n).map(|i| rng.pick(n, config.degree, Some(i))).collect();
        let follows = (0..n)
            .map(|i| {
                let k = 1 + rng.below(2);
                let mut f = rng.pick(config.authors, k, Some(i));
                f.sort_unstable();
                f
            })
            .collect();
        let subscriptions = (0..n)
            .map(|_| {
                let k = 1 + rng.below(2);
                let mut s = rng.pick(tags, k, None);
                s.sort_unstable();
                s
            })
            .collect();
        let mut posts = Vec::with_capacity(config.authors * config.posts);
        for author in 0..config.authors {
            for _ in 0..config.posts {
                let k = 1 + rng.below(2);
                let mut t = rng.pick(tags, k, None);
                t.sort_unstable();
                posts.push(PlannedPost { author, tags: t });
            }
        }
        Self { dials, follows, subscriptions, posts, tags }
    }

    /// The nodes that should store `post`: those that follow its author or subscribe one
    /// of its tags (never the author).
    pub fn expected(&self, post: &PlannedPost) -> Vec<usize> {
        (0..self.follows.len())
            .filter(|&i| i != post.author)
            .filter(|&i| {
                self.follows[i].contains(&post.author)
                    || self.subscriptions[i].iter().any(|t| post.tags.contains(t))
            })
            .collect()
    }

    /// Each gossip topic a post goes to, with its subscribers and its publishers.
    pub(super) fn topics(&self) -> Vec<(SimTopic, Vec<usize>, Vec<usize>)> {
        let mut out = Vec::new();
        let authors: HashSet<usize> = self.posts.iter().map(|p| p.author).collect();
        let mut authors: Vec<usize> = authors.into_iter().collect();
        authors.sort_unstable();
        for a in authors {
            let subs = (0..self.follows.len()).filter(|&i| self.follows[i].contains(&a)).collect();
            out.push((SimTopic::Author(a), subs, vec![a]));
        }
        for t in 0..self.tags {
            let subs = (0..self.subscriptions.len())
                .filter(|&i| self.subscriptions[i].contains(&t))
                .collect();
            let mut pubs: Vec<usize> =
                self.posts.iter().filter(|p| p.tags.contains(&t)).map(|p| p.author).collect();
            pubs.sort_unstable();
            pubs.dedup();
            if !pubs.is_empty() {
                out.push((SimTopic::Tag(t), subs, pubs));
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum SimTopic {
    Author(usize),
    Tag(usize),
}

pub(super) fn tag_name(t: usize) -> String {
    format!("simtag{t}")
}

pub(super) fn post_text(seq: usize, author: usize, tags: &[usize]) -> String {
    let tags: Vec<String> = tags.iter().map(|&t| format!("#{}", tag_name(t))).collect();
    format!("sim post {seq} by node {author} {}", tags.join(" "))
}
