//! Admission by the epoch a message was sent in (`docs/protocol.md` 20.7): what a member
//! wrote before it was removed or left reaches everyone (the removed member included)
//! however late; what is dated after the end of a membership, plus the clock-skew
//! allowance, is refused on both sides; a backdated message from someone who was not a
//! member in its epoch is refused; an epoch not known yet waits.

use kith_protocol::{
    dm::{MessageId, Plain},
    group::{
        wire::{Control, GroupReply, GroupRequest},
        GroupId, Outbound,
    },
    limits::MAX_FUTURE_SKEW_MS,
};

use super::{group::World, *};
use crate::core::group::GroupOp;

/// When the creator changes the group in these tests.
const CHANGE: u64 = 2_000_000;

/// A group of node 0 (creator) and 1, 2, 3.
fn four() -> (World, GroupId) {
    let mut w = World::new(4);
    let members = vec![w.id(1), w.id(2), w.id(3)];
    let op = GroupOp::Create { name: "four".into(), members };
    let crate::core::group::GroupAnswer::Created(group) = w.op(0, op).unwrap() else {
        panic!("not created")
    };
    (w, group)
}

/// Node `i` sends `text` now; nothing leaves it yet (its lanes start and are not run).
fn send_held(w: &mut World, i: usize, group: GroupId, text: &str) {
    let op = GroupOp::Send { group, text: text.into() };
    let first = w.nodes[i].handle(Input::Group { op, answer: AnswerId(500 + i as u64) }, w.now);
    w.nodes[i].settle(first, w.now);
}

/// Hands node `from`'s whole queue for node `to` to it, in order (and delivers what
/// follows at `to`): the answers.
fn deliver_queue(w: &mut World, from: usize, to: usize) -> Vec<GroupReply> {
    let peer = *w.id(to).as_bytes();
    let mut replies = Vec::new();
    let mut n = 0;
    while let Some(queued) = w.nodes[from].core.store().group_queue_from(&peer, n).unwrap() {
        n = queued.n + 1;
        let (reply, effects) = w.request(from, to, queued.bytes);
        w.pump(to, effects);
        replies.push(reply);
    }
    replies
}

/// Node `from`'s person (secret `from + 1`) shares a session of `epoch` it made itself
/// with node `to`, then sends `text` in it dated `timestamp`: the two answers.
fn own_session(
    w: &mut World,
    from: usize,
    to: usize,
    (group, epoch): (GroupId, u64),
    timestamp: u64,
    text: &str,
) -> (GroupReply, GroupReply) {
    let who = w.id(from);
    let mut out = Outbound::new(group, epoch, timestamp);
    let secret = u8::try_from(from + 1).unwrap();
    let share = w.sealed(secret, to, &Control::Share(out.share(&who)));
    let shared = w.request(from, to, share).0;
    let id = MessageId::from_bytes([u8::try_from(timestamp % 251).unwrap(); 16]);
    let plain = Plain { id, timestamp, text: text.into(), attachments: vec![] };
    let message = GroupRequest::Message(out.encrypt(&who, &plain).unwrap()).to_bytes().unwrap();
    (shared, w.request(from, to, message).0)
}

fn refused(reply: &GroupReply) -> bool {
    matches!(reply, GroupReply::Refused(_))
}

#[test]
fn a_message_sent_before_a_removal_and_arriving_after_it_is_read_by_everyone() {
    let (mut w, group) = four();
    // Node 2 writes, and so does node 1, just before node 2 is removed; nothing of
    // either has left yet.
    w.now = CHANGE - 6;
    send_held(&mut w, 2, group, "from two, before");
    w.now = CHANGE - 5;
    send_held(&mut w, 1, group, "from one, before");
    w.now = CHANGE;
    w.op(0, GroupOp::Remove { group, member: w.id(2) }).unwrap();
    assert!(!w.nodes[2].core.store().group(group.as_bytes()).unwrap().unwrap().active);
    // Long after, the queued requests arrive: key share, then message.
    w.now = CHANGE + 10 * MAX_FUTURE_SKEW_MS;
    for to in [0, 1, 3] {
        assert_eq!(deliver_queue(&mut w, 2, to), [GroupReply::Accepted, GroupReply::Accepted]);
        assert!(w.texts(to, group).contains(&"from two, before".to_owned()), "node {to}");
    }
    // The removed member reads what was sent to it before its removal, too.
    assert_eq!(deliver_queue(&mut w, 1, 2), [GroupReply::Accepted, GroupReply::Accepted]);
    assert_eq!(w.texts(2, group), ["from two, before", "from one, before"]);
}

#[test]
fn a_removed_member_can_neither_write_nor_read_with_an_old_session_after_its_removal() {
    let (mut w, group) = four();
    w.now = CHANGE;
    w.op(0, GroupOp::Remove { group, member: w.id(2) }).unwrap();
    // Node 2 writes with a session of the epoch it was in, dated later than its
    // removal by more than the clock-skew allowance: refused (its key is kept).
    let late = CHANGE + MAX_FUTURE_SKEW_MS + 1;
    let (share, message) = own_session(&mut w, 2, 1, (group, 1), late, "still here");
    assert_eq!(share, GroupReply::Accepted);
    assert!(refused(&message), "{message:?}");
    // Within the allowance it is taken: a removed member can still backdate messages
    // to before its removal with its old session (docs/protocol.md 20.7).
    let (_, message) = own_session(&mut w, 2, 3, (group, 1), CHANGE + 1_000, "just before");
    assert_eq!(message, GroupReply::Accepted);
    assert!(w.texts(1, group).is_empty() && w.texts(3, group) == ["just before"]);
    // A member that missed the removal writes on its old session after it: the removed
    // member stores none of it.
    let (share, message) = own_session(&mut w, 1, 2, (group, 1), late, "not for two");
    assert_eq!(share, GroupReply::Accepted);
    assert!(refused(&message), "{message:?}");
    assert!(w.texts(2, group).is_empty());
}

#[test]
fn a_member_who_left_is_judged_by_the_time_of_its_leave_notice() {
    let (mut w, group) = four();
    w.now = CHANGE - 5;
    send_held(&mut w, 3, group, "from three, before leaving");
    send_held(&mut w, 1, group, "from one, before three left");
    w.now = CHANGE;
    // Node 3 leaves: its queue for the creator (key share, message, leave notice) goes
    // now, and the creator makes the epoch without it.
    let op = GroupOp::Leave { group };
    let first = w.nodes[3].handle(Input::Group { op, answer: AnswerId(600) }, w.now);
    w.nodes[3].settle(first, w.now);
    assert_eq!(deliver_queue(&mut w, 3, 0), [const { GroupReply::Accepted }; 3]);
    assert_eq!(w.epoch(0, group), 2);
    assert_eq!(w.epoch(1, group), 2);
    w.now = CHANGE + 10 * MAX_FUTURE_SKEW_MS;
    // What node 3 wrote before leaving reaches the others late; what node 1 wrote
    // before reaches node 3.
    for to in [1, 2] {
        assert_eq!(deliver_queue(&mut w, 3, to), [GroupReply::Accepted, GroupReply::Accepted]);
    }
    assert_eq!(deliver_queue(&mut w, 1, 3), [GroupReply::Accepted, GroupReply::Accepted]);
    assert!(w.texts(3, group).contains(&"from one, before three left".to_owned()));
    // Dated after the leave: refused by the creator (who has the notice) and by a
    // member (who has the creator's next epoch), and by node 3 for what is sent to it.
    let late = w.now;
    for to in [0, 2] {
        let (_, message) = own_session(&mut w, 3, to, (group, 1), late, "after leaving");
        assert!(refused(&message), "node {to}: {message:?}");
    }
    let (_, message) = own_session(&mut w, 2, 3, (group, 1), late, "after three left");
    assert!(refused(&message), "{message:?}");
    for i in 0..4 {
        let texts = w.texts(i, group);
        assert!(!texts.iter().any(|t| t.contains("after")), "node {i}: {texts:?}");
    }
}

#[test]
fn a_backdated_message_from_someone_not_in_its_epoch_is_refused_and_a_later_epoch_waits() {
    let mut w = World::new(5);
    let members = vec![w.id(1), w.id(2)];
    let op = GroupOp::Create { name: "three".into(), members };
    let crate::core::group::GroupAnswer::Created(group) = w.op(0, op).unwrap() else {
        panic!("not created")
    };
    w.now = CHANGE;
    w.op(0, GroupOp::Add { group, member: w.id(3), history: false }).unwrap();
    // Node 3, a member since epoch 2, forges a session of epoch 1 and backdates a
    // message into it; node 4 was never in the group.
    for from in [3, 4] {
        let (_, message) = own_session(&mut w, from, 1, (group, 1), NOW_EARLY, "backdated");
        assert!(refused(&message), "node {from}: {message:?}");
    }
    assert!(w.texts(1, group).is_empty());
    // A member's session for an epoch node 1 does not know yet: not judged yet.
    let (share, message) = own_session(&mut w, 2, 1, (group, 3), CHANGE + 1, "epoch 3");
    assert_eq!(share, GroupReply::Accepted);
    assert_eq!(message, GroupReply::Later);
    // Once the creator's epoch 3 is there, the same message is taken.
    w.op(0, GroupOp::Remove { group, member: w.id(3) }).unwrap();
    assert_eq!(w.epoch(1, group), 3);
    let (_, message) = own_session(&mut w, 2, 1, (group, 3), CHANGE + 1, "epoch 3");
    assert_eq!(message, GroupReply::Accepted);
    assert_eq!(w.texts(1, group), ["epoch 3"]);
}

/// A time before any change in these tests.
const NOW_EARLY: u64 = 1_000_001;
