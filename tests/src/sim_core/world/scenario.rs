//! The scenario: what people do, each about once a minute.

use kith_node::core::{AnswerId, Input};
use kith_protocol::{AuthorId, Post, RecordId, RecordKind, Tag, Topic};

use super::{dm, group, Event, World, TAGS};

impl World {
    /// Person `i` does one thing, then plans the next.
    pub(super) fn act(&mut self, i: usize) {
        if self.settled {
            return;
        }
        let next = self.rng.exp(self.config.act_every_s * 1000);
        self.at(next, Event::Act(i));
        if self.nodes[i].core.is_none() {
            return;
        }
        if self.rng.chance(dm::DM_PER_MILLE) && self.send_dm(i) {
            self.stats.messages += 1;
            return;
        }
        if self.rng.chance(group::GROUP_PER_MILLE) && self.act_group(i) {
            return;
        }
        let roll = self.rng.below(100);
        let kind = match roll {
            0..=19 => {
                let target = match self.follow_back(i) {
                    Some(target) => target,
                    None => self.nodes[self.rng.index(self.nodes.len())].me,
                };
                if target == self.nodes[i].me {
                    return;
                }
                RecordKind::Follow { target }
            }
            20..=29 => {
                let tag = Tag::parse(TAGS[self.rng.index(TAGS.len())]).expect("a valid tag");
                if let Some(store) = self.nodes[i].store() {
                    let _ = store.subscribe(&tag);
                }
                self.subscribe(i, Topic::Tag(tag).to_string());
                return;
            }
            30..=64 => self.post(None),
            65..=79 if !self.posts.is_empty() => {
                let parent = self.posts[self.rng.index(self.posts.len())];
                self.post(Some(parent))
            }
            80..=94 if !self.posts.is_empty() => {
                let target = self.posts[self.rng.index(self.posts.len())];
                RecordKind::Reaction {
                    target, emoji: ["👍", "❤", "🎉"][self.rng.index(3)].into()
                }
            }
            _ if !self.nodes[i].posts.is_empty() => {
                let own = &mut self.nodes[i].posts;
                let target = own.swap_remove(self.rng.index(own.len()));
                RecordKind::Delete { target }
            }
            _ => return,
        };
        let node = &mut self.nodes[i];
        node.next_answer += 1;
        let answer = AnswerId(node.next_answer);
        self.input(i, Input::Publish { kind, answer });
    }

    /// Mostly, someone who follows person `i` and whom `i` does not follow yet (people
    /// follow back, which makes mutual connections to write to and to hold mail).
    pub(super) fn follow_back(&mut self, i: usize) -> Option<AuthorId> {
        if !self.rng.chance(800) {
            return None;
        }
        let store = self.nodes[i].store()?;
        let me = self.nodes[i].me;
        let candidates: Vec<AuthorId> = store
            .followers(&me)
            .unwrap_or_default()
            .into_iter()
            .filter(|f| !store.is_following(&me, f).unwrap_or(true))
            .collect();
        (!candidates.is_empty()).then(|| candidates[self.rng.index(candidates.len())])
    }

    /// Persons `i` and `j` follow each other.
    pub(super) fn befriend(&mut self, i: usize, j: usize) {
        for (a, b) in [(i, j), (j, i)] {
            let target = self.nodes[b].me;
            self.nodes[a].next_answer += 1;
            let answer = AnswerId(self.nodes[a].next_answer);
            self.input(a, Input::Publish { kind: RecordKind::Follow { target }, answer });
        }
    }

    pub(super) fn post(&mut self, reply_to: Option<RecordId>) -> RecordKind {
        let n = self.rng.below(1_000_000);
        let text = if self.rng.chance(300) {
            format!("post {n} #{}", TAGS[self.rng.index(TAGS.len())])
        } else {
            format!("post {n}")
        };
        RecordKind::Post(Post {
            text,
            reply_to,
            mentions: vec![],
            expires_at: None,
            attachments: vec![],
        })
    }
}
