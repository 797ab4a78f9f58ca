//! Group requests through mailboxes (issue #19, item 1): what cannot reach a member
//! directly is sealed for the member's person and deposited with the member's mailboxes;
//! the member collects it, takes it in order (a key share carried later in the same batch
//! included), acknowledges it once flushed, and stores each message once. The mailbox
//! holds only sealed bytes; garbage and a non-member's deposit store nothing.

use kith_protocol::{
    group::{megolm::GroupMessage, wire, GroupId},
    mailbox::{sealed, Held as HeldEnvelope, HeldId, MailboxReply, MailboxRequest},
};

use super::{
    dm::befriend,
    group::{friends_of_0, World},
    hold::{ask, collect},
    *,
};
use crate::core::group::GroupOp;

/// Node 0 makes a group of 0, 1 and 2 (1 and 2 do not follow each other); node 3 is a
/// mutual connection of node 2 and listed by it as its mailbox, and nodes 0 and 1 know
/// that list.
fn world() -> (World, GroupId) {
    let mut w = World::new(4);
    let (left, right) = w.nodes.split_at_mut(3);
    befriend(&mut left[2], &mut right[0]);
    let holders = vec![w.id(3)];
    let (_, record) = w.nodes[2].publish(RecordKind::Mailboxes { holders }, 10);
    for i in [0, 1, 3] {
        w.nodes[i].core.store().insert(&record).unwrap();
    }
    let group = friends_of_0(&mut w);
    (w, group)
}

/// Node `i` sends `text` while node 2 is unreachable: what goes to node 1 is delivered,
/// what goes to node 2 fails directly and is deposited with node 3 (a real mailbox core).
fn send_while_2_is_away(w: &mut World, i: usize, group: GroupId, text: &str) {
    w.nodes[i].next_answer += 1;
    let answer = AnswerId(w.nodes[i].next_answer);
    let op = GroupOp::Send { group, text: text.into() };
    let first = w.nodes[i].handle(Input::Group { op, answer }, w.now);
    let mut todo = w.nodes[i].settle(first, w.now);
    let (away, mailbox) = (w.id(2), w.id(3));
    let mut other = Vec::new();
    while !todo.is_empty() {
        let effect = todo.remove(0);
        let input = match effect {
            Effect::GroupDeliver { peer, n, .. } if peer == away => {
                Input::GroupDelivered { peer, n, result: Err("not reached".into()) }
            }
            Effect::GroupDeposit { peer, n, envelope, mailboxes } => {
                assert_eq!(peer, away);
                assert_eq!(mailboxes, vec![mailbox]);
                let request = MailboxRequest::Deposit { recipient: peer, envelope };
                let now = w.now;
                let (m, from) = pick(w, 3, i);
                let accepted = match ask(m, from, &request, now) {
                    MailboxReply::Accepted { .. } => 1,
                    other => panic!("{other:?}"),
                };
                Input::GroupDeposited { peer, n, accepted }
            }
            other_effect => {
                other.push(other_effect);
                continue;
            }
        };
        let first = w.nodes[i].handle(input, w.now);
        todo.extend(w.nodes[i].settle(first, w.now));
    }
    w.pump(i, other);
}

/// Mutable node `a` and shared node `b` of the world.
fn pick(w: &mut World, a: usize, b: usize) -> (&mut Fixture, &Fixture) {
    assert_ne!(a, b);
    if a < b {
        let (left, right) = w.nodes.split_at_mut(b);
        (&mut left[a], &right[0])
    } else {
        let (left, right) = w.nodes.split_at_mut(a);
        (&mut right[0], &left[b])
    }
}

/// Node 2 takes `envelopes` collected from node 3, flushes done: what it acknowledged.
fn take(w: &mut World, envelopes: Vec<Vec<u8>>) -> Vec<HeldId> {
    let items: Vec<HeldEnvelope> = envelopes
        .into_iter()
        .enumerate()
        .map(|(n, envelope)| HeldEnvelope { position: n as u64 + 1, deposited: w.now, envelope })
        .collect();
    let mailbox = w.id(3).to_peer_id().unwrap();
    let first = w.nodes[2].handle(Input::Collected { mailbox, items }, w.now);
    let effects = w.nodes[2].settle(first, w.now);
    effects
        .into_iter()
        .flat_map(|e| match e {
            Effect::MailboxAck { mailbox: m, ids } if m == w.id(3) => ids,
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn what_cannot_reach_a_member_goes_through_their_mailbox_once_and_in_order() {
    let (mut w, group) = world();
    w.send(0, group, "all here");
    send_while_2_is_away(&mut w, 0, group, "while two was away");
    // Node 1's first message: its key share and the message both go to the mailbox.
    send_while_2_is_away(&mut w, 1, group, "from one, also away");
    assert_eq!(w.texts(1, group).len(), 3);
    assert_eq!(w.texts(2, group), ["all here"]);
    // The mailbox holds sealed bytes only.
    let (held, _) = {
        let (m, r) = pick(&mut w, 3, 2);
        collect(m, r, 0, 1)
    };
    assert_eq!(held.len(), 3, "a message from 0, a key share and a message from 1");
    for envelope in &held {
        for text in ["while two was away", "from one, also away"] {
            assert!(!envelope.windows(text.len()).any(|win| win == text.as_bytes()));
        }
    }
    // Collected in reverse (the message before the key share it needs): all taken.
    let mut reversed = held.clone();
    reversed.reverse();
    let acked = take(&mut w, reversed);
    assert_eq!(acked.len(), 3, "every deposit acknowledged once stored");
    let mut texts = w.texts(2, group);
    texts.sort();
    assert_eq!(texts, ["all here", "from one, also away", "while two was away"]);
    // The same again (a mailbox that did not take the acknowledgement): stored once.
    assert_eq!(take(&mut w, held).len(), 3);
    assert_eq!(w.texts(2, group).len(), 3);
    // The deposits stay queued (node 2 might never collect from that mailbox) until
    // node 2 answers directly: once it is back, each is sent again and answered as known.
    for i in [0, 1] {
        assert!(w.nodes[i].core.store().group_queue_next(w.id(2).as_bytes()).unwrap().is_some());
        connect(&mut w, i, 2);
        assert_eq!(w.nodes[i].core.store().group_queue_next(w.id(2).as_bytes()).unwrap(), None);
    }
    let mut texts = w.texts(2, group);
    texts.sort();
    assert_eq!(texts, ["all here", "from one, also away", "while two was away"], "stored once");
}

/// Node `i` learns that node `to` connected: its lane to `to` goes directly.
fn connect(w: &mut World, i: usize, to: usize) {
    let peer = w.id(to).to_peer_id().unwrap();
    let first = w.nodes[i].handle(Input::Connected { peer }, w.now);
    let effects = w.nodes[i].settle(first, w.now);
    w.pump(i, effects);
}

#[test]
fn a_deposit_with_a_mailbox_the_member_no_longer_collects_from_still_reaches_it_directly() {
    let (mut w, group) = world();
    w.send(0, group, "all here");
    w.now += 1;
    // Node 1's key share and first message go to node 3, which node 2 then stops using
    // (node 0's view of node 2's list is stale): node 2 never collects them.
    send_while_2_is_away(&mut w, 1, group, "deposited and lost");
    assert_eq!(w.texts(2, group), ["all here"]);
    // Node 2 is back: node 1's lane sends the share, then the message, directly.
    connect(&mut w, 1, 2);
    assert_eq!(w.texts(2, group), ["all here", "deposited and lost"]);
    assert_eq!(w.nodes[1].core.store().group_queue_next(w.id(2).as_bytes()).unwrap(), None);
    w.now += 1;
    w.send(1, group, "and after");
    assert_eq!(w.texts(2, group), ["all here", "deposited and lost", "and after"]);
}

#[test]
fn a_member_away_for_long_gets_each_request_deposited_once_and_a_backed_off_lane() {
    let (mut w, group) = world();
    w.send(0, group, "all here");
    send_while_2_is_away(&mut w, 0, group, "first while away");
    let away = w.id(2);
    // Pass after pass (the lane's timer), node 2 still away: one direct try each time,
    // no deposit again, and the next pass later each time (1 s doubling up to 60 s).
    let mut last_gap = 0;
    w.now += 1_000;
    for pass in 0..10 {
        let at = w.now;
        let first = w.nodes[0].handle(Input::Timer(Timer::GroupOutbox), at);
        let mut effects = w.nodes[0].settle(first, at);
        let tries = effects.iter().filter(|e| matches!(e, Effect::GroupDeliver { .. })).count();
        assert_eq!(tries, 1, "pass {pass}: the oldest request, directly");
        let n = effects
            .iter()
            .find_map(|e| match e {
                Effect::GroupDeliver { peer, n, .. } if *peer == away => Some(*n),
                _ => None,
            })
            .unwrap();
        let input = Input::GroupDelivered { peer: away, n, result: Err("not reached".into()) };
        let first = w.nodes[0].handle(input, at);
        effects = w.nodes[0].settle(first, at);
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::GroupDeposit { .. })),
            "pass {pass}: deposited once already"
        );
        let next = effects
            .iter()
            .find_map(|e| match e {
                Effect::Schedule { at: next, timer: Timer::GroupOutbox } => Some(*next),
                _ => None,
            })
            .unwrap();
        let gap = next - at;
        assert!(gap >= last_gap && (1_000..=60_000).contains(&gap), "{gap}");
        last_gap = gap;
        w.now = next;
    }
    assert_eq!(last_gap, 60_000);
    // A newer message is deposited (only it) at the next pass.
    send_while_2_is_away(&mut w, 0, group, "second while away");
    let (held, _) = {
        let (m, r) = pick(&mut w, 3, 2);
        collect(m, r, 0, 1)
    };
    assert_eq!(held.len(), 2, "each message deposited once");
}

#[test]
fn garbage_and_a_non_members_deposit_store_nothing_and_are_acknowledged() {
    let (mut w, group) = world();
    w.send(0, group, "all here");
    send_while_2_is_away(&mut w, 0, group, "while two was away");
    let me = w.id(2);
    // Garbage after the prefix, sealed by node 1.
    let garbage = sealed::seal(&me, &w.id(1), &wire::deposit_payload(b"\x01junk")).unwrap();
    // Node 0's real message, deposited by node 3 as its sender: not a member.
    let newest = w.nodes[0].core.store().group_ciphertexts(group.as_bytes(), 1).unwrap();
    let message = GroupMessage::from_bytes(newest.last().unwrap()).unwrap();
    let payload = wire::deposit_payload(&wire::GroupRequest::Message(message).to_bytes().unwrap());
    let stranger = sealed::seal(&me, &w.id(3), &payload).unwrap();
    let acked = take(&mut w, vec![garbage, stranger]);
    assert_eq!(acked.len(), 2, "refused for good: acknowledged");
    assert_eq!(w.texts(2, group), ["all here"]);
    // The real deposit still delivers it, once.
    let (held, _) = {
        let (m, r) = pick(&mut w, 3, 2);
        collect(m, r, 0, 1)
    };
    assert_eq!(take(&mut w, held).len(), 1);
    let mut texts = w.texts(2, group);
    texts.sort(); // (same timestamp: thread order is by id)
    assert_eq!(texts, ["all here", "while two was away"]);
}

#[test]
fn a_member_missing_a_key_left_with_its_mailbox_collects_at_once() {
    let (mut w, group) = world();
    w.send(0, group, "all here");
    // Node 1's key share and message wait with node 2's mailbox.
    send_while_2_is_away(&mut w, 1, group, "from one, also away");
    let newest = w.nodes[1].core.store().group_ciphertexts(group.as_bytes(), 1).unwrap();
    let message = GroupMessage::from_bytes(newest.last().unwrap()).unwrap();
    let bytes = wire::GroupRequest::Message(message).to_bytes().unwrap();
    let collects = |effects: &[Effect]| {
        effects.iter().filter(|e| matches!(e, Effect::CollectMailboxes)).count()
    };
    // Node 2 is back and gets the message directly before the key: not now, and it
    // collects from its mailboxes (at most once per 10 s).
    let (reply, effects) = w.request(1, 2, bytes.clone());
    assert_eq!(reply, wire::GroupReply::Later);
    assert_eq!(collects(&effects), 1);
    let (_, effects) = w.request(1, 2, bytes.clone());
    assert_eq!(collects(&effects), 0, "not again at once");
    w.now += 10_000;
    let (_, effects) = w.request(1, 2, bytes.clone());
    assert_eq!(collects(&effects), 1);
    // What the collect brings lets the next try through.
    let (held, _) = {
        let (m, r) = pick(&mut w, 3, 2);
        collect(m, r, 0, 1)
    };
    take(&mut w, held);
    let (reply, _) = w.request(1, 2, bytes);
    assert_eq!(reply, wire::GroupReply::Accepted);
    assert!(w.texts(2, group).contains(&"from one, also away".to_owned()));
}
