//! Circles: a circle post is read by the circle's members only (and its author); a
//! removal rotates the session, so the removed member reads nothing posted after; a
//! member added later reads from then on; a non-mutual cannot be added; forged,
//! misdirected and replayed circle key shares are refused or change nothing.

use kith_protocol::{
    group::{wire::Control, wire::GroupReply, GroupId, Outbound},
    VerifiedRecord,
};

use super::{group::World, *};
use crate::{
    core::group::{GroupAnswer, GroupOp},
    node::circle::Reader,
};

fn keypair(w: &World, i: usize) -> Keypair {
    let secret = u8::try_from(i + 1).unwrap();
    let keys = Keypair::from_secret_bytes(&[secret; 32]);
    assert_eq!(keys.id(), w.id(i));
    keys
}

fn create(w: &mut World, name: &str, members: &[usize]) {
    let members = members.iter().map(|m| w.id(*m)).collect();
    let done = w.op(0, GroupOp::CircleCreate { name: name.into(), members }).unwrap();
    assert!(matches!(done, GroupAnswer::Done));
}

/// Node 0 posts `text` to circle `name`; the record reaches every node's store (as the
/// author's followers' nodes keep it), and the key shares are delivered.
fn post(w: &mut World, name: &str, text: &str) -> VerifiedRecord {
    let op = GroupOp::CirclePost { name: name.into(), text: text.into() };
    let (effects, record) = w.nodes[0].published(|answer| Input::Group { op, answer }, w.now);
    w.pump(0, effects);
    for node in &w.nodes[1..] {
        node.core.store().insert(&record).unwrap();
    }
    w.now += 1;
    record
}

fn read(w: &World, i: usize, record: &VerifiedRecord) -> Option<String> {
    Reader::new(&keypair(w, i)).private_text(w.nodes[i].core.store(), record.record())
}

#[test]
fn a_circle_post_is_read_by_its_members_and_author_only() {
    let mut w = World::new(4);
    create(&mut w, "close", &[1, 2]);
    let record = post(&mut w, "close", "for my close friends");
    assert!(matches!(record.record().kind, RecordKind::Private(_)));
    assert!(!String::from_utf8_lossy(record.bytes()).contains("close friends"));
    for i in [0, 1, 2] {
        assert_eq!(read(&w, i, &record).as_deref(), Some("for my close friends"), "node {i}");
    }
    assert_eq!(read(&w, 3, &record), None, "a follower outside the circle");
    // The outsider stores the record (its log has no gap) and shows nothing of it.
    assert!(w.nodes[3].core.store().has(&record.id()).unwrap());
}

#[test]
fn a_removed_member_reads_nothing_posted_after_and_a_new_one_reads_from_joining() {
    let mut w = World::new(4);
    create(&mut w, "close", &[1, 2]);
    let before = post(&mut w, "close", "while two was in");
    w.op(0, GroupOp::CircleRemove { name: "close".into(), member: w.id(2) }).unwrap();
    let after = post(&mut w, "close", "after two left");
    assert_eq!(read(&w, 1, &after).as_deref(), Some("after two left"));
    assert_eq!(read(&w, 2, &before).as_deref(), Some("while two was in"));
    assert_eq!(read(&w, 2, &after), None, "the removed member");
    let (RecordKind::Private(old), RecordKind::Private(new)) =
        (&before.record().kind, &after.record().kind)
    else {
        panic!("not circle posts")
    };
    assert_ne!(old.session, new.session, "a removal rotates the session");
    // Node 3 joins: it reads from now on, not what came before.
    w.op(0, GroupOp::CircleAdd { name: "close".into(), member: w.id(3) }).unwrap();
    let later = post(&mut w, "close", "welcome three");
    assert_eq!(read(&w, 3, &later).as_deref(), Some("welcome three"));
    assert_eq!(read(&w, 3, &after), None);
    assert_eq!(read(&w, 2, &later), None);
    let circles = w.nodes[0].core.store().circles().unwrap();
    assert_eq!(circles.len(), 1);
    assert_eq!(circles[0].1.members.len(), 2);
}

#[test]
fn only_mutual_connections_can_be_put_in_a_circle() {
    let mut w = World::new(3);
    let stranger = Keypair::from_secret_bytes(&[9; 32]).id();
    let op = GroupOp::CircleCreate { name: "c".into(), members: vec![w.id(1), stranger] };
    let refused = w.op(0, op).unwrap_err();
    assert!(refused.message.contains("mutual"), "{refused:?}");
    assert!(w.nodes[0].core.store().circle("c").unwrap().is_none());
    create(&mut w, "c", &[1]);
    let refused = w.op(0, GroupOp::CircleAdd { name: "c".into(), member: stranger }).unwrap_err();
    assert!(refused.message.contains("mutual"), "{refused:?}");
    // Nodes 1 and 2 do not follow each other.
    let op = GroupOp::CircleCreate { name: "d".into(), members: vec![w.id(2)] };
    assert!(w.op(1, op).unwrap_err().message.contains("mutual"));
}

#[test]
fn forged_misdirected_and_replayed_circle_key_shares_are_refused_or_change_nothing() {
    let mut w = World::new(4);
    create(&mut w, "close", &[1, 2]);
    let first = post(&mut w, "close", "first");
    let circle = GroupId::from_bytes(w.nodes[0].core.store().circle("close").unwrap().unwrap().id);
    // Member 1 shares a session in the author's name with member 2: refused, and a post
    // in that session would not be read as the author's.
    let fake = Outbound::new(circle, 1, w.now);
    let forged = w.sealed(2, 2, &Control::CircleShare(fake.share(&w.id(0))));
    assert!(matches!(w.request(1, 2, forged).0, GroupReply::Refused(_)));
    // A share sealed by someone node 1 does not follow (node 2's own session): refused.
    let stranger = Outbound::new(circle, 1, w.now);
    let unfollowed = w.sealed(3, 1, &Control::CircleShare(stranger.share(&w.id(2))));
    let (reply, _) = w.request(2, 1, unfollowed);
    assert!(matches!(&reply, GroupReply::Refused(r) if r.contains("follow")), "{reply:?}");
    // An exported (forwarded) key is never taken for a circle.
    let mut exported = fake.share(&w.id(0));
    exported.exported = true;
    let bytes = w.sealed(1, 2, &Control::CircleShare(exported));
    assert!(matches!(w.request(0, 2, bytes).0, GroupReply::Refused(_)));
    // The author's real share, replayed to member 1 after a removal and a new session:
    // accepted as known, and it opens nothing new.
    let to_one: Vec<Vec<u8>> =
        w.sent.iter().filter(|(f, t, _)| *f == 0 && *t == 1).map(|(_, _, b)| b.clone()).collect();
    assert_eq!(to_one.len(), 1, "one key share");
    w.op(0, GroupOp::CircleRemove { name: "close".into(), member: w.id(1) }).unwrap();
    let second = post(&mut w, "close", "second");
    assert_eq!(w.request(0, 1, to_one[0].clone()).0, GroupReply::Accepted);
    assert_eq!(read(&w, 1, &first).as_deref(), Some("first"));
    assert_eq!(read(&w, 1, &second), None);
    assert_eq!(read(&w, 2, &second).as_deref(), Some("second"));
}

/// The circle posts shown again to live feeds among `effects` (not the new `Devices`
/// record a node publishes when a first Olm message used its fallback key).
fn shown_live(effects: &[Effect]) -> Vec<RecordId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::LivePost(record) if matches!(record.record().kind, RecordKind::Private(_)) => {
                Some(record.id())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_circle_post_whose_key_comes_after_it_is_shown_again_live_once_the_key_is_taken() {
    let mut w = World::new(3);
    create(&mut w, "close", &[1, 2]);
    let op = GroupOp::CirclePost { name: "close".into(), text: "the key comes later".into() };
    let (_, record) = w.nodes[0].published(|answer| Input::Group { op, answer }, w.now);
    // The record reaches node 1 first (by gossip or sync): it cannot show it yet.
    w.nodes[1].core.store().insert(&record).unwrap();
    assert_eq!(read(&w, 1, &record), None);
    // Then the key share queued for it: once the key is flushed the post goes to the
    // live feeds again, readable now.
    let one = *w.id(1).as_bytes();
    let share = w.nodes[0].core.store().group_queue_from(&one, 0).unwrap().unwrap();
    let (reply, effects) = w.request(0, 1, share.bytes.clone());
    assert_eq!(reply, GroupReply::Accepted);
    assert_eq!(shown_live(&effects), [record.id()]);
    assert_eq!(read(&w, 1, &record).as_deref(), Some("the key comes later"));
    // The same share again opens nothing new; node 2, which holds no post of the
    // session yet, has nothing to show again.
    assert!(shown_live(&w.request(0, 1, share.bytes).1).is_empty());
    let two = *w.id(2).as_bytes();
    let share = w.nodes[0].core.store().group_queue_from(&two, 0).unwrap().unwrap();
    let (reply, effects) = w.request(0, 2, share.bytes);
    assert_eq!(reply, GroupReply::Accepted);
    assert!(shown_live(&effects).is_empty());
}
