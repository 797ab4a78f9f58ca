//! The home timeline from the indexes ([`Store::home_posts`]) shows exactly what the
//! scan of every post by time ([`Store::posts_where`]) with the same rule shows, page by
//! page: people shown, subscribed tags, a post in both, reposts, equal timestamps.

use std::collections::HashSet;

use kith_protocol::{AuthorId, Keypair, RecordId, RecordKind, Tag};

use super::{post, signed, Home};
use crate::store::{Store, StoredRecord};

const TAGS: [&str; 4] = ["rust", "go", "cats", "tea"];

/// Six authors posting in turn, with tags, reposts of earlier posts and (every fifth
/// record) a reaction, so the indexes hold what the timeline must skip as well.
fn fill(store: &Store, people: &[Keypair]) {
    let mut seqs = vec![0u64; people.len()];
    let mut prevs: Vec<Option<RecordId>> = vec![None; people.len()];
    let mut posts: Vec<RecordId> = Vec::new();
    for i in 0..300u64 {
        let who = (i * 7 % people.len() as u64) as usize;
        let kp = &people[who];
        seqs[who] += 1;
        // Equal timestamps in threes: pages must break ties by id.
        let ts = 10_000 + i / 3;
        let record = match i % 5 {
            3 if !posts.is_empty() => {
                let target = posts[(i as usize * 13) % posts.len()];
                signed(kp, seqs[who], prevs[who], ts, RecordKind::Repost { target })
            }
            4 if !posts.is_empty() => {
                let target = posts[(i as usize * 11) % posts.len()];
                let kind = RecordKind::Reaction { target, emoji: "+1".into() };
                signed(kp, seqs[who], prevs[who], ts, kind)
            }
            _ => {
                let tag = TAGS[(i as usize * 3) % TAGS.len()];
                let text =
                    if i % 2 == 0 { format!("post {i} #{tag}") } else { format!("post {i}") };
                let r = post(kp, seqs[who], prevs[who], ts, &text);
                posts.push(r.id());
                r
            }
        };
        prevs[who] = Some(record.id());
        store.insert(&record).unwrap();
    }
}

pub(super) fn ids(records: &[StoredRecord]) -> Vec<RecordId> {
    records.iter().map(|r| r.id).collect()
}

#[test]
fn home_posts_match_a_scan_of_every_post_page_by_page() {
    Home::on_both(|home| {
        let store = home.open();
        let people: Vec<Keypair> =
            (1..=6u8).map(|i| Keypair::from_secret_bytes(&[i; 32])).collect();
        fill(&store, &people);
        let shown: HashSet<AuthorId> = [people[0].id(), people[3].id()].into();
        let tags: Vec<Tag> = ["rust", "tea"].iter().map(|t| Tag::parse(t).unwrap()).collect();
        let rule = |r: &StoredRecord| {
            shown.contains(&r.record.author) || r.record.tags().iter().any(|t| tags.contains(t))
        };
        let everything = store.posts_where(1_000, None, rule).unwrap();
        assert!(everything.len() > 100, "the rule picks a good part: {}", everything.len());
        assert!(everything.len() < 250, "and leaves some out: {}", everything.len());
        assert_eq!(
            ids(&store.home_posts(&shown, &tags, 1_000, None, |_| true).unwrap()),
            ids(&everything)
        );
        // Page by page with cursors, several page sizes.
        for limit in [1, 7, 50] {
            let mut at = None;
            let mut paged = Vec::new();
            loop {
                let page = store.home_posts(&shown, &tags, limit, at, |_| true).unwrap();
                assert_eq!(ids(&page), ids(&store.posts_where(limit, at, rule).unwrap()));
                let Some(last) = page.last() else { break };
                at = Some((last.record.timestamp, last.id));
                paged.extend(ids(&page));
            }
            assert_eq!(paged, ids(&everything), "pages of {limit}");
        }
        // `keep` sees each record once, in order, and only wanted ones.
        let mut seen = Vec::new();
        store
            .home_posts(&shown, &tags, 1_000, None, |r| {
                seen.push(r.id);
                false
            })
            .unwrap();
        assert_eq!(seen, ids(&everything));
        // Nobody shown and no tag: nothing.
        assert!(store.home_posts(&HashSet::new(), &[], 10, None, |_| true).unwrap().is_empty());
        home.close(store);
    });
}
