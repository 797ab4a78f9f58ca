//! Groups: members read each other without following each other, removal holds, a new
//! member reads from when they joined, and a hostile member's forged membership, message
//! under another member's name and replayed old epoch are refused.

use kith_protocol::{
    codec,
    dm::{MessageId, PairKeys, Plain},
    group::{
        membership::{Membership, SignedMembership, MEMBERSHIP_DOMAIN},
        wire::{Control, GroupReply, GroupRequest, Opened},
        GroupId, Outbound,
    },
};

use super::{dm::befriend, *};
use crate::core::group::{GroupAnswer, GroupOp};

const NOW: u64 = 1_000_000;

/// Nodes and the group requests that went between them.
pub(super) struct World {
    pub(super) now: u64,
    pub(super) nodes: Vec<Fixture>,
    /// Every (from, to, bytes) delivered, in order.
    pub(super) sent: Vec<(usize, usize, Vec<u8>)>,
    next_reply: u64,
    /// Whether the `Devices` records nodes publish reach their followers (by gossip).
    pub(super) announce: bool,
}

impl World {
    /// Nodes 1..=n (secrets 1..=n); node 0 is mutual with every other one, the others
    /// follow nobody but node 0. Each node made its device at start (it has a mutual
    /// connection) and its followers have its `Devices` record.
    pub(super) fn new(n: u8) -> Self {
        let mut nodes: Vec<Fixture> = (1..=n).map(Fixture::new).collect();
        let (first, rest) = nodes.split_at_mut(1);
        for other in rest {
            befriend(&mut first[0], other);
        }
        let mut w = Self { nodes, sent: Vec::new(), next_reply: 0, now: NOW, announce: true };
        for i in 0..w.nodes.len() {
            let first = w.nodes[i].handle(Input::Timer(crate::core::Timer::Devices), w.now);
            let effects = w.nodes[i].settle(first, w.now);
            w.pump(i, effects);
        }
        w
    }

    /// Node `i`'s latest `Devices` record goes by gossip to every node that follows
    /// node `i`, and what follows is delivered.
    pub(super) fn gossip_devices(&mut self, i: usize) {
        let store = self.nodes[i].core.store();
        let stored = store.devices(&self.id(i)).unwrap().expect("a device announcement");
        let bytes = store.get_bytes(&stored.id).unwrap().unwrap();
        let topic = Topic::Author(self.id(i)).to_string();
        self.deliver_record(i, &topic, &bytes);
    }

    /// Record `bytes` published by node `from` on `topic` reaches the nodes that follow
    /// its author.
    fn deliver_record(&mut self, from: usize, topic: &str, bytes: &[u8]) {
        let author = self.id(from);
        let record = VerifiedRecord::from_bytes(bytes).unwrap();
        for to in 0..self.nodes.len() {
            let store = self.nodes[to].core.store();
            if to == from || !store.is_following(&self.id(to), &author).unwrap() {
                continue;
            }
            let message = GossipMessage {
                from: author.to_peer_id().unwrap(),
                id: libp2p::gossipsub::MessageId::new(record.id().as_bytes()),
                topic: topic.to_owned(),
                bytes: bytes.to_vec(),
            };
            let first = self.nodes[to].handle(Input::Gossip(vec![message]), self.now);
            let effects = self.nodes[to].settle(first, self.now);
            self.pump(to, effects);
        }
    }

    pub(super) fn id(&self, i: usize) -> AuthorId {
        self.nodes[i].core.me()
    }

    pub(super) fn index(&self, who: &AuthorId) -> usize {
        self.nodes.iter().position(|f| f.core.me() == *who).unwrap()
    }

    /// Runs a group request on node `i` and delivers everything that follows.
    pub(super) fn op(&mut self, i: usize, op: GroupOp) -> Result<GroupAnswer, ApiError> {
        self.nodes[i].next_answer += 1;
        let answer = AnswerId(self.nodes[i].next_answer);
        let first = self.nodes[i].handle(Input::Group { op, answer }, self.now);
        let effects = self.nodes[i].settle(first, self.now);
        let result = effects.iter().find_map(|e| match e {
            Effect::Answer { answer: a, result } if *a == answer => Some(result.clone()),
            _ => None,
        });
        self.pump(i, effects);
        match result.unwrap()? {
            Answer::Group(done) => Ok(done),
            other => panic!("answered {other:?}"),
        }
    }

    /// Hands `bytes` from node `from` to node `to` as a `/kith/group/1` request: the
    /// reply, and the effects at `to`.
    pub(super) fn request(
        &mut self,
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    ) -> (GroupReply, Vec<Effect>) {
        self.next_reply += 1;
        let reply = ReplyId(self.next_reply);
        let peer = self.nodes[from].core.me().to_peer_id().unwrap();
        let input = Input::GroupRequest { from: peer, bytes, reply };
        let first = self.nodes[to].handle(input, self.now);
        let effects = self.nodes[to].settle(first, self.now);
        let answer = effects
            .iter()
            .find_map(|e| match e {
                Effect::Respond { reply: r, bytes } if *r == reply => Some(bytes.clone()),
                _ => None,
            })
            .unwrap();
        (GroupReply::from_bytes(&answer).unwrap(), effects)
    }

    /// Delivers every group request among `effects` of node `i`, and what follows from
    /// them, until nothing is left.
    pub(super) fn pump(&mut self, i: usize, effects: Vec<Effect>) {
        let mut todo: Vec<(usize, Effect)> = effects.into_iter().map(|e| (i, e)).collect();
        while !todo.is_empty() {
            let (from, effect) = todo.remove(0);
            if let Effect::Publish { topic, bytes } = &effect {
                let devices = matches!(
                    VerifiedRecord::from_bytes(bytes).map(|r| r.record().kind.clone()),
                    Ok(RecordKind::Devices(_))
                );
                if devices && self.announce {
                    self.deliver_record(from, topic, bytes);
                }
                continue;
            }
            let Effect::GroupDeliver { peer, n, bytes } = effect else { continue };
            let to = self.index(&peer);
            assert!(!self.is_old_share(to, &bytes), "a key share sealed with /kith/dm/1");
            self.sent.push((from, to, bytes.clone()));
            let (reply, at_to) = self.request(from, to, bytes);
            todo.extend(at_to.into_iter().map(|e| (to, e)));
            let result = Ok(reply.to_bytes().unwrap());
            let first =
                self.nodes[from].handle(Input::GroupDelivered { peer, n, result }, self.now);
            let after = self.nodes[from].settle(first, self.now);
            todo.extend(after.into_iter().map(|e| (from, e)));
        }
    }

    pub(super) fn send(&mut self, i: usize, group: GroupId, text: &str) {
        let done = self.op(i, GroupOp::Send { group, text: text.into() }).unwrap();
        assert!(matches!(done, GroupAnswer::Sent(_)));
    }

    pub(super) fn texts(&self, i: usize, group: GroupId) -> Vec<String> {
        let store = self.nodes[i].core.store();
        store.group_thread(group.as_bytes(), 1000).unwrap().into_iter().map(|l| l.text).collect()
    }

    pub(super) fn epoch(&self, i: usize, group: GroupId) -> u64 {
        let state = self.nodes[i].core.store().group(group.as_bytes()).unwrap().unwrap();
        SignedMembership::from_bytes(&state.membership).unwrap().membership().epoch
    }

    /// What request `bytes` to node `to` says, if it is a sealed control message.
    fn opened(&self, to: usize, bytes: &[u8]) -> Option<Opened> {
        let Ok(GroupRequest::Control(sealed)) = GroupRequest::from_bytes(bytes) else {
            return None;
        };
        let keys = Keypair::from_secret_bytes(&[u8::try_from(to).unwrap() + 1; 32]);
        let pair = PairKeys::new(&keys, &sealed.sender).unwrap();
        // (`None` too for a node whose secret is not its index + 1.)
        Control::open(&sealed, &keys, &pair).ok().map(|(_, opened)| opened)
    }

    /// Whether request `bytes` to node `to` passes on someone's `Devices` record.
    pub(super) fn is_devices(&self, to: usize, bytes: &[u8]) -> bool {
        matches!(self.opened(to, bytes), Some(Opened::Devices(_)))
    }

    /// Whether request `bytes` to node `to` is a key share sealed with `/kith/dm/1`
    /// (which nodes never send since issue #19: every pump checks it).
    fn is_old_share(&self, to: usize, bytes: &[u8]) -> bool {
        matches!(self.opened(to, bytes), Some(Opened::Share(_) | Opened::CircleShare(_)))
    }

    /// A control message sealed by node `from`'s person for node `to`'s, as a request.
    pub(super) fn sealed(&self, from: u8, to: usize, control: &Control) -> Vec<u8> {
        let keys = Keypair::from_secret_bytes(&[from; 32]);
        let pair = PairKeys::new(&keys, &self.id(to)).unwrap();
        GroupRequest::Control(control.seal(&keys, &pair).unwrap()).to_bytes().unwrap()
    }
}

/// Node 0 makes group "friends" of itself, 1 and 2.
pub(super) fn friends_of_0(w: &mut World) -> GroupId {
    let members = vec![w.id(1), w.id(2)];
    let GroupAnswer::Created(group) =
        w.op(0, GroupOp::Create { name: "friends".into(), members }).unwrap()
    else {
        panic!("not created")
    };
    group
}

/// A group of nodes 0 (creator), 1 and 2; 1 and 2 do not follow each other.
fn three() -> (World, GroupId) {
    let mut w = World::new(3);
    let group = friends_of_0(&mut w);
    (w, group)
}

#[test]
fn members_read_each_other_and_a_removed_member_reads_nothing_sent_after() {
    let (mut w, group) = three();
    assert!(!crate::core::dm::is_mutual(w.nodes[1].core.store(), &w.id(1), &w.id(2)).unwrap());
    w.send(1, group, "from one");
    w.send(2, group, "from two");
    w.send(0, group, "from zero");
    // Each member is told of the others' messages once (not of its own).
    let notes = w.nodes[1].core.store().notifications(100, false, false).unwrap();
    assert_eq!(notes.iter().filter(|n| n.kind == "group").count(), 2, "{notes:?}");
    for i in 0..3 {
        let mut texts = w.texts(i, group);
        texts.sort();
        assert_eq!(texts, ["from one", "from two", "from zero"], "node {i}");
    }
    let removed = w.id(2);
    w.op(0, GroupOp::Remove { group, member: removed }).unwrap();
    assert!(!w.nodes[2].core.store().group(group.as_bytes()).unwrap().unwrap().active);
    w.send(1, group, "after");
    w.send(0, group, "after from zero");
    assert!(w.texts(0, group).contains(&"after".to_owned()));
    assert!(w.texts(1, group).contains(&"after from zero".to_owned()));
    assert_eq!(w.texts(2, group).len(), 3, "the removed member reads nothing new");
    // Nothing sent after the removal went to node 2 at all.
    let removal = w.sent.iter().rposition(|(from, to, _)| *from == 0 && *to == 2).unwrap();
    assert!(w.sent[removal + 1..].iter().all(|(_, to, _)| *to != 2));
    // A non-member (node 2 now) cannot send to the group either.
    let refused = w.op(2, GroupOp::Send { group, text: "still here?".into() }).unwrap_err();
    assert_eq!(refused.kind, crate::api::ErrorKind::NotFound);
}

#[test]
fn a_new_member_reads_from_when_they_joined() {
    let (mut w, group) = three();
    w.send(1, group, "before");
    let mut d = Fixture::new(4);
    befriend(&mut w.nodes[0], &mut d);
    w.nodes.push(d);
    w.op(0, GroupOp::Add { group, member: w.id(3), history: false }).unwrap();
    w.send(1, group, "after");
    w.send(3, group, "hello from the new one");
    // (Same timestamp: ordered by id.)
    let mut joined = w.texts(3, group);
    joined.sort();
    assert_eq!(joined, ["after", "hello from the new one"]);
    assert!(w.texts(2, group).contains(&"hello from the new one".to_owned()));
    // Only mutual connections can be added.
    let stranger = Keypair::from_secret_bytes(&[9; 32]).id();
    let refused = w.op(0, GroupOp::Add { group, member: stranger, history: false }).unwrap_err();
    assert_eq!(refused.kind, crate::api::ErrorKind::NotMutual);
    // Only the creator changes membership.
    let refused = w.op(1, GroupOp::Remove { group, member: w.id(2) }).unwrap_err();
    assert_eq!(refused.kind, crate::api::ErrorKind::Refused);
}

#[test]
fn a_member_added_with_the_history_reads_the_earlier_messages_once() {
    let (mut w, group) = three();
    w.send(1, group, "early from one");
    w.send(0, group, "early from zero");
    w.send(2, group, "early from two");
    let mut d = Fixture::new(4);
    befriend(&mut w.nodes[0], &mut d);
    w.nodes.push(d);
    w.op(0, GroupOp::Add { group, member: w.id(3), history: true }).unwrap();
    w.send(1, group, "after");
    let mut read = w.texts(3, group);
    read.sort();
    assert_eq!(read, ["after", "early from one", "early from two", "early from zero"]);
    // The epoch says so; and a member cannot pass off an exported key (only the creator).
    let state = w.nodes[3].core.store().group(group.as_bytes()).unwrap().unwrap();
    assert!(SignedMembership::from_bytes(&state.membership).unwrap().membership().history);
    let out = Outbound::new(group, w.epoch(1, group), w.now);
    let mut inbound_share = out.share(&w.id(1));
    inbound_share.exported = true;
    let forged = w.sealed(2, 3, &Control::Share(inbound_share));
    let (reply, _) = w.request(1, 3, forged);
    assert!(matches!(reply, GroupReply::Refused(_)), "{reply:?}");
}

#[test]
fn a_forged_membership_change_is_refused() {
    let (mut w, group) = three();
    let others = [w.id(0), w.id(2)];
    // Member 1 signs an epoch of its own that drops node 0...
    let own = Membership::new(group, 2, &w.id(1), "mine", &others[1..], NOW).unwrap();
    let own = own.sign(&Keypair::from_secret_bytes(&[2; 32])).unwrap();
    // ...and one that names the creator but carries member 1's signature.
    let named = Membership::new(group, 2, &w.id(0), "friends", &others[1..], NOW).unwrap();
    let signature = Keypair::from_secret_bytes(&[2; 32])
        .sign(MEMBERSHIP_DOMAIN, &codec::encode(&named).unwrap());
    let forged = SignedMembership { membership: named, signature };
    for signed in [own, forged] {
        let bytes = w.sealed(2, 2, &Control::Membership(signed));
        let (reply, _) = w.request(1, 2, bytes);
        assert!(matches!(reply, GroupReply::Refused(_)), "{reply:?}");
        assert_eq!(w.epoch(2, group), 1);
    }
}

#[test]
fn a_message_claiming_another_member_as_its_sender_is_refused() {
    let (mut w, group) = three();
    let (one, creator) = (w.id(1), w.id(0));
    // Member 1's own session, shared properly: taken.
    let mut out = Outbound::new(group, 1, NOW);
    let share = w.sealed(2, 2, &Control::Share(out.share(&one)));
    assert_eq!(w.request(1, 2, share).0, GroupReply::Accepted);
    // A message in it that claims to be from the creator: refused, not stored.
    let plain = Plain {
        id: MessageId::from_bytes([7; 16]),
        timestamp: NOW,
        text: "I am the creator".into(),
        attachments: vec![],
    };
    let message = out.encrypt(&creator, &plain).unwrap();
    let (reply, _) = w.request(1, 2, GroupRequest::Message(message).to_bytes().unwrap());
    assert!(matches!(reply, GroupReply::Refused(_)), "{reply:?}");
    // A share of a session in the creator's name, sealed by member 1: refused.
    let fake = Outbound::new(group, 1, NOW);
    let share = w.sealed(2, 2, &Control::Share(fake.share(&creator)));
    assert!(matches!(w.request(1, 2, share).0, GroupReply::Refused(_)));
    assert!(w.texts(2, group).is_empty());
}

#[test]
fn a_replayed_old_epoch_and_a_replayed_message_change_nothing() {
    let (mut w, group) = three();
    w.send(0, group, "once");
    // The first epoch as the creator sent it to node 1, and the message.
    let to_one: Vec<Vec<u8>> = w
        .sent
        .iter()
        .filter(|(f, t, b)| *f == 0 && *t == 1 && !w.is_devices(1, b))
        .map(|(_, _, b)| b.clone())
        .collect();
    w.op(0, GroupOp::Remove { group, member: w.id(2) }).unwrap();
    assert_eq!(w.epoch(1, group), 2);
    // The old epoch is refused; the share and the message again change nothing.
    assert_eq!(to_one.len(), 3, "membership, key share, message");
    let (reply, _) = w.request(0, 1, to_one[0].clone());
    assert!(matches!(&reply, GroupReply::Refused(r) if r.contains("epoch")), "{reply:?}");
    for bytes in &to_one[1..] {
        assert_eq!(w.request(0, 1, bytes.clone()).0, GroupReply::Accepted);
    }
    assert_eq!(w.epoch(1, group), 2, "an old epoch is not taken back");
    assert_eq!(w.texts(1, group), ["once"], "a replayed message is stored once");
}

#[test]
fn a_message_queued_before_a_crash_is_delivered_after_the_restart_once() {
    let (mut w, group) = three();
    // Node 0 sends; it crashes before any request leaves (the flush was done: the
    // message, its session and its queue entries are durable).
    let op = GroupOp::Send { group, text: "survives".into() };
    let first = w.nodes[0].handle(Input::Group { op, answer: AnswerId(99) }, NOW);
    let effects = w.nodes[0].settle(first, NOW);
    let deliveries = effects.iter().filter(|e| matches!(e, Effect::GroupDeliver { .. })).count();
    assert_eq!(deliveries, 2, "one lane per member starts after the flush");
    w.nodes[0] = w.nodes[0].restart(1);
    assert_eq!(w.texts(0, group), ["survives"]);
    // After the restart the outbox is tried at once.
    let effects = w.nodes[0].handle(Input::Timer(Timer::Outbox), NOW + 1);
    w.pump(0, effects);
    assert_eq!(w.texts(1, group), ["survives"]);
    assert_eq!(w.texts(2, group), ["survives"]);
    assert_eq!(w.nodes[0].core.store().group_queue_len(), 0);
    // Sending again after the restart goes on with the stored session.
    w.now = NOW + 10;
    w.send(0, group, "again");
    assert_eq!(w.texts(2, group), ["survives", "again"]);
}

#[test]
fn a_key_sent_before_a_removal_and_arriving_after_it_leaves_no_sender_waiting() {
    let (mut w, group) = three();
    // Node 1 sends while node 2 is a member; nothing has left yet when node 2 is removed.
    let op = GroupOp::Send { group, text: "before the removal".into() };
    let first = w.nodes[1].handle(Input::Group { op, answer: AnswerId(77) }, NOW);
    w.nodes[1].settle(first, NOW);
    w.op(0, GroupOp::Remove { group, member: w.id(2) }).unwrap();
    assert!(!w.nodes[2].core.store().group(group.as_bytes()).unwrap().unwrap().active);
    // Node 1's queue for node 2 still holds the key share, then the message.
    let to = *w.id(2).as_bytes();
    let store = w.nodes[1].core.store();
    let share = store.group_queue_from(&to, 0).unwrap().unwrap();
    let message = store.group_queue_from(&to, share.n + 1).unwrap().unwrap();
    // Both are answered for good (not `Later`: the lane would retry them for ever), and
    // the removed member reads what was sent before its removal (20.7).
    let (reply, _) = w.request(1, 2, share.bytes);
    assert_eq!(reply, GroupReply::Accepted);
    let (reply, _) = w.request(1, 2, message.bytes);
    assert_eq!(reply, GroupReply::Accepted);
    assert_eq!(w.texts(2, group), ["before the removal"]);
}
