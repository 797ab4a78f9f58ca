//! Group key shares on Olm sessions between member devices (issue #19): between members
//! who are not mutual connections (through the creator's passed-on announcements) and
//! between mutual ones; forged announcements, replays, another device, and a share that
//! does not open sealed again on a new session.

use kith_protocol::{
    codec,
    dm::PairKeys,
    group::{
        wire::{Control, GroupReply, GroupRequest, Opened},
        GroupId,
    },
    olm::prekey::Announcement,
    record::{SignedRecord, RECORD_DOMAIN},
};

use super::{group::World, *};
use crate::core::group::GroupOp;

/// `f`'s latest `Devices` record, as it travels.
fn devices_record(f: &Fixture) -> VerifiedRecord {
    let store = f.core.store();
    let stored = store.devices(&f.core.me()).unwrap().expect("a device announcement");
    VerifiedRecord::from_bytes(&store.get_bytes(&stored.id).unwrap().unwrap()).unwrap()
}

fn announcement(record: &VerifiedRecord) -> Announcement {
    match &record.record().kind {
        RecordKind::Devices(a) => a.clone(),
        other => panic!("{other:?}"),
    }
}

/// Node `i` connects to node `to`: what follows is delivered.
fn connect(w: &mut World, i: usize, to: usize) {
    let peer = w.id(to).to_peer_id().unwrap();
    let first = w.nodes[i].handle(Input::Connected { peer }, w.now);
    let effects = w.nodes[i].settle(first, w.now);
    w.pump(i, effects);
}

/// Nodes 0 (creator), 1 and 2 in a group; 1 and 2 do not follow each other. Every node
/// made its device (on the group's first requests); the mutual connections (0 with 1,
/// 0 with 2) replicate each other's `Devices` records, and the creator passes on 1's
/// to 2 and 2's to 1 when they connect.
fn three_with_devices() -> (World, GroupId) {
    let mut w = World::new(3);
    let members = vec![w.id(1), w.id(2)];
    let answer = w.op(0, GroupOp::Create { name: "friends".into(), members }).unwrap();
    let crate::core::group::GroupAnswer::Created(group) = answer else { panic!("not created") };
    for (from, to) in [(0, 1), (0, 2), (1, 0), (2, 0)] {
        let record = devices_record(&w.nodes[from]);
        w.nodes[to].core.store().insert(&record).unwrap();
    }
    connect(&mut w, 0, 1);
    connect(&mut w, 0, 2);
    (w, group)
}

/// The requests from node `from` to node `to` so far, decoded.
fn requests(w: &World, from: usize, to: usize) -> Vec<GroupRequest> {
    w.sent
        .iter()
        .filter(|(f, t, _)| *f == from && *t == to)
        .map(|(_, _, bytes)| GroupRequest::from_bytes(bytes).unwrap())
        .collect()
}

/// What the sealed control messages from `from` to `to` said.
fn controls(w: &World, from: usize, to: usize) -> Vec<Opened> {
    let keys = Keypair::from_secret_bytes(&[u8::try_from(to).unwrap() + 1; 32]);
    let pair = PairKeys::new(&keys, &w.id(from)).unwrap();
    requests(w, from, to)
        .into_iter()
        .filter_map(|r| match r {
            GroupRequest::Control(sealed) => Some(Control::open(&sealed, &keys, &pair).unwrap().1),
            _ => None,
        })
        .collect()
}

/// The Olm requests (key shares) from `from` to `to`, encoded.
fn olm_shares(w: &World, from: usize, to: usize) -> Vec<Vec<u8>> {
    w.sent
        .iter()
        .filter(|(f, t, bytes)| {
            *f == from
                && *t == to
                && matches!(GroupRequest::from_bytes(bytes), Ok(GroupRequest::Olm { .. }))
        })
        .map(|(_, _, bytes)| bytes.clone())
        .collect()
}

fn inbound_count(w: &World, i: usize) -> usize {
    w.nodes[i].core.store().group_inbounds().unwrap().len()
}

#[test]
fn members_who_do_not_follow_each_other_share_keys_on_olm_through_the_creators_announcements() {
    let (mut w, group) = three_with_devices();
    // The creator passed on each member's announcement to the other one.
    let passed = |w: &World, to: usize, of: usize| {
        controls(w, 0, to)
            .iter()
            .any(|c| matches!(c, Opened::Devices(r) if r.record().author == w.id(of)))
    };
    assert!(passed(&w, 1, 2) && passed(&w, 2, 1));
    w.send(1, group, "one");
    w.now += 1_000;
    w.send(2, group, "two");
    for i in 0..3 {
        assert_eq!(w.texts(i, group), ["one", "two"], "node {i}");
    }
    // The keys went on Olm sessions, each way, and never sealed with `/kith/dm/1`.
    for (from, to) in [(1, 2), (2, 1), (1, 0), (2, 0)] {
        assert_eq!(olm_shares(&w, from, to).len(), 1, "{from} -> {to}");
        let old = controls(&w, from, to);
        assert!(!old.iter().any(|c| matches!(c, Opened::Share(_))), "{from} -> {to}");
    }
}

#[test]
fn mutual_connections_share_keys_on_olm() {
    let (mut w, group) = three_with_devices();
    w.send(0, group, "from the creator");
    assert_eq!(w.texts(1, group), ["from the creator"]);
    assert_eq!(w.texts(2, group), ["from the creator"]);
    assert_eq!(olm_shares(&w, 0, 1).len(), 1);
    assert_eq!(olm_shares(&w, 0, 2).len(), 1);
    assert!(!controls(&w, 0, 1).iter().any(|c| matches!(c, Opened::Share(_))));
}

#[test]
fn forged_announcements_are_refused_and_kept_nowhere() {
    let (mut w, group) = three_with_devices();
    let stranger = Keypair::from_secret_bytes(&[9; 32]);
    let theirs = devices_record(&w.nodes[2]);
    // Devices certified by another identity (the stranger's own device).
    let forged_devices = {
        let mut other = World::new(2);
        let members = vec![other.id(1)];
        other.op(0, GroupOp::Create { name: "x".into(), members }).unwrap();
        announcement(&devices_record(&other.nodes[0]))
    };
    // 1. A `Devices` record of node 2 carrying them, signed by node 2's key all the
    //    same, passed on by the creator: it does not verify.
    let mut record = theirs.record().clone();
    record.kind = RecordKind::Devices(forged_devices.clone());
    let signature =
        Keypair::from_secret_bytes(&[3; 32]).sign(RECORD_DOMAIN, &codec::encode(&record).unwrap());
    let forged = codec::encode(&SignedRecord { record, signature }).unwrap();
    let (reply, _) = w.request(0, 1, w.sealed(1, 1, &Control::Devices(forged)));
    assert!(matches!(reply, GroupReply::Refused(_)), "{reply:?}");
    // 2. Node 2's genuine record passed on by someone who is not the creator of a group
    //    with them: refused.
    w.nodes.push(Fixture::new(9));
    let pair = PairKeys::new(&stranger, &w.id(1)).unwrap();
    let control = Control::Devices(theirs.bytes().to_vec());
    let request = GroupRequest::Control(control.seal(&stranger, &pair).unwrap());
    let (reply, _) = w.request(3, 1, request.to_bytes().unwrap());
    assert!(matches!(reply, GroupReply::Refused(_)), "{reply:?}");
    // 3. An Olm share whose announcement is of another identity: refused, nothing kept.
    w.send(1, group, "one");
    let bytes = olm_shares(&w, 1, 2).remove(0);
    let GroupRequest::Olm { envelope, .. } = GroupRequest::from_bytes(&bytes).unwrap() else {
        unreachable!()
    };
    let before = inbound_count(&w, 2);
    let forged = GroupRequest::Olm { envelope, devices: forged_devices }.to_bytes().unwrap();
    let (reply, _) = w.request(1, 2, forged);
    assert!(matches!(reply, GroupReply::Refused(_)), "{reply:?}");
    assert_eq!(inbound_count(&w, 2), before);
}

#[test]
fn a_replayed_share_is_accepted_once_and_changes_nothing() {
    let (mut w, group) = three_with_devices();
    w.send(1, group, "one");
    let bytes = olm_shares(&w, 1, 2).remove(0);
    let before = inbound_count(&w, 2);
    for _ in 0..2 {
        let (reply, _) = w.request(1, 2, bytes.clone());
        assert_eq!(reply, GroupReply::Accepted);
        assert_eq!(inbound_count(&w, 2), before);
    }
    // After a restart too (its digest is kept).
    w.nodes[2] = w.nodes[2].restart(3);
    let (reply, _) = w.request(1, 2, bytes);
    assert_eq!(reply, GroupReply::Accepted);
    assert_eq!(inbound_count(&w, 2), before);
    assert_eq!(w.texts(2, group), ["one"]);
}

#[test]
fn a_share_for_one_device_is_not_opened_by_another() {
    let (mut w, group) = three_with_devices();
    w.send(1, group, "one");
    let for_2 = olm_shares(&w, 1, 2).remove(0);
    let before = inbound_count(&w, 0);
    // Node 0 gets node 2's envelope: not for its device.
    let (reply, _) = w.request(1, 0, for_2);
    let GroupReply::NewSession(Some(theirs)) = reply else { panic!("{reply:?}") };
    assert_eq!(theirs, announcement(&devices_record(&w.nodes[0])));
    assert_eq!(inbound_count(&w, 0), before);
}

/// Node 2's device state no longer opens (lost), and node 2 restarts a minute later.
fn lose_device(w: &mut World) {
    let cert = w.nodes[2].core.store().olm_device().unwrap().unwrap().cert;
    w.nodes[2].core.store().set_olm_device(b"lost", &cert).unwrap();
    w.nodes[2].core.store().flush_blocking().unwrap();
    w.nodes[2] = w.nodes[2].restart(3);
    w.now += 60_000;
}

#[test]
fn a_share_that_does_not_open_is_sealed_again_for_the_members_new_device() {
    let (mut w, group) = three_with_devices();
    // Node 2 loses its device (its pickle no longer opens): a new one is made.
    lose_device(&mut w);
    // Node 1 seals for the device it knows: node 2 makes a new device and answers
    // `NewSession` (with its new announcement once it has one), and node 1 seals the
    // key again until it is for the new device.
    w.send(1, group, "after the loss");
    assert_eq!(w.texts(2, group), ["after the loss"]);
    let devices: Vec<_> = olm_shares(&w, 1, 2)
        .iter()
        .map(|b| match GroupRequest::from_bytes(b).unwrap() {
            GroupRequest::Olm { envelope, .. } => envelope.recipient_device,
            _ => unreachable!(),
        })
        .collect();
    assert!((2..=4).contains(&devices.len()), "sent, then sealed again: {devices:?}");
    assert_ne!(devices.first(), devices.last());
    let new = w.nodes[2].core.store().olm_device().unwrap().unwrap();
    let new = kith_protocol::olm::device::SignedCertificate::from_bytes(&new.cert).unwrap();
    assert_eq!(devices.last(), Some(&new.id()));
    // Nothing is left queued.
    assert_eq!(w.nodes[1].core.store().group_queue_len(), 0);
}

#[test]
fn a_members_announcement_gossiped_to_the_creator_is_passed_on_to_the_others() {
    let mut w = World::new(3);
    let members = vec![w.id(1), w.id(2)];
    let answer = w.op(0, GroupOp::Create { name: "friends".into(), members }).unwrap();
    let crate::core::group::GroupAnswer::Created(group) = answer else { panic!("not created") };
    let creators = devices_record(&w.nodes[0]);
    for member in [1, 2] {
        w.nodes[member].core.store().insert(&creators).unwrap();
        // The member's announcement reaches the creator as it would: by gossip.
        let record = devices_record(&w.nodes[member]);
        let keys = Keypair::from_secret_bytes(&[u8::try_from(member).unwrap() + 1; 32]);
        let message = gossip(&keys, &Topic::Author(w.id(member)), &record);
        let first = w.nodes[0].handle(Input::Gossip(vec![message]), w.now);
        let effects = w.nodes[0].settle(first, w.now);
        w.pump(0, effects);
    }
    let passed = controls(&w, 0, 2)
        .iter()
        .any(|c| matches!(c, Opened::Devices(r) if r.record().author == w.id(1)));
    assert!(passed);
    w.send(1, group, "one");
    assert_eq!(w.texts(2, group), ["one"]);
    assert_eq!(olm_shares(&w, 1, 2).len(), 1);
}

#[test]
fn a_deposited_share_that_does_not_open_is_dropped_there_and_sealed_again_directly() {
    let (mut w, group) = three_with_devices();
    // Node 2 loses its device; node 1 sends while node 2 is away: its key share (for
    // the lost device) and message wait in node 1's queue for node 2.
    lose_device(&mut w);
    w.nodes[1].next_answer += 1;
    let answer = AnswerId(w.nodes[1].next_answer);
    let op = GroupOp::Send { group, text: "while two was away".into() };
    let first = w.nodes[1].handle(Input::Group { op, answer }, w.now);
    let effects = w.nodes[1].settle(first, w.now);
    let away = w.id(2);
    let (to_2, to_0): (Vec<Effect>, Vec<Effect>) = effects
        .into_iter()
        .partition(|e| matches!(e, Effect::GroupDeliver { peer, .. } if *peer == away));
    w.pump(1, to_0);
    for effect in to_2 {
        let Effect::GroupDeliver { peer, n, .. } = effect else { unreachable!() };
        let failed = Input::GroupDelivered { peer, n, result: Err("not reached".into()) };
        let first = w.nodes[1].handle(failed, w.now);
        w.nodes[1].settle(first, w.now);
    }
    let queued = w.nodes[1].core.store().group_queue_next(away.as_bytes()).unwrap().unwrap();
    assert!(matches!(GroupRequest::from_bytes(&queued.bytes), Ok(GroupRequest::Olm { .. })));
    // The share reaches node 2 through a mailbox: it does not open there, and is
    // acknowledged (not kept by the mailbox for ever); nothing is read yet.
    let payload = kith_protocol::group::wire::deposit_payload(&queued.bytes);
    let envelope = kith_protocol::mailbox::sealed::seal(&away, &w.id(1), &payload).unwrap();
    let item = kith_protocol::mailbox::Held { position: 1, deposited: w.now, envelope };
    let held = item.id();
    let mailbox = w.id(0).to_peer_id().unwrap();
    let first = w.nodes[2].handle(Input::Collected { mailbox, items: vec![item] }, w.now);
    let effects = w.nodes[2].settle(first, w.now);
    let acked =
        effects.iter().any(|e| matches!(e, Effect::MailboxAck { ids, .. } if ids.contains(&held)));
    assert!(acked);
    assert!(w.texts(2, group).is_empty());
    // It stayed queued at node 1: when node 2 is back, it goes directly, is sealed
    // again for node 2's new device, and the message follows.
    assert!(w.nodes[1].core.store().group_queue_next(away.as_bytes()).unwrap().is_some());
    connect(&mut w, 1, 2);
    assert_eq!(w.texts(2, group), ["while two was away"]);
    assert_eq!(w.nodes[1].core.store().group_queue_len(), 0);
}

/// Nodes 0 and 1 of a [`World`], and node 2, node 0's mutual connection, which has made
/// no device yet (so nobody knows one). `Devices` records published from now on reach
/// nobody until a test passes them on.
fn with_a_newcomer() -> World {
    let mut w = World::new(2);
    let mut newcomer = Fixture::new(3);
    super::dm::befriend(&mut w.nodes[0], &mut newcomer);
    w.nodes.push(newcomer);
    w.announce = false;
    assert!(w.nodes[2].core.store().olm_device().unwrap().is_none());
    w
}

/// Node 0 makes a group of itself and the nodes `members`.
fn group_of_0(w: &mut World, members: &[usize]) -> GroupId {
    let members = members.iter().map(|m| w.id(*m)).collect();
    let answer = w.op(0, GroupOp::Create { name: "g".into(), members }).unwrap();
    let crate::core::group::GroupAnswer::Created(group) = answer else { panic!("not created") };
    group
}

/// The requests queued at node `from` for node `to`: (held key shares, others).
fn queued(w: &World, from: usize, to: usize) -> (usize, usize) {
    let store = w.nodes[from].core.store();
    let key = *w.id(to).as_bytes();
    let (mut held, mut other, mut n) = (0, 0, 0);
    while let Some(q) = store.group_queue_from(&key, n).unwrap() {
        if q.bytes.is_empty() {
            held += 1;
        } else {
            other += 1;
        }
        n = q.n + 1;
    }
    (held, other)
}

#[test]
fn a_share_for_a_member_whose_device_is_unknown_waits_for_its_announcement_across_a_restart() {
    let mut w = with_a_newcomer();
    let group = group_of_0(&mut w, &[2]);
    // Node 2 took the membership and made its device, whose announcement has not
    // reached node 0: node 0's key share waits, and the message behind it.
    assert!(w.nodes[2].core.store().olm_device().unwrap().is_some());
    w.send(0, group, "before your device was known");
    assert_eq!(queued(&w, 0, 2), (1, 1));
    assert!(olm_shares(&w, 0, 2).is_empty());
    assert!(w.texts(2, group).is_empty());
    // Node 0 restarts; its lane's looks (at start, at a connection) send nothing.
    w.nodes[0] = w.nodes[0].restart(1);
    let first = w.nodes[0].handle(Input::Timer(crate::core::Timer::GroupOutbox), w.now);
    let effects = w.nodes[0].settle(first, w.now);
    assert!(!effects.iter().any(|e| matches!(e, Effect::GroupDeliver { .. })), "{effects:?}");
    connect(&mut w, 0, 2);
    // (Queued behind it now: the creator's own record, passed on again in this run.)
    assert_eq!(queued(&w, 0, 2).0, 1);
    assert!(w.texts(2, group).is_empty());
    // Node 2's announcement arrives (gossip): the share goes on Olm, then the message.
    w.gossip_devices(2);
    assert_eq!(w.texts(2, group), ["before your device was known"]);
    assert_eq!(olm_shares(&w, 0, 2).len(), 1);
    assert_eq!(queued(&w, 0, 2), (0, 0));
}

#[test]
fn a_share_waits_for_the_announcement_the_creator_passes_on() {
    let mut w = with_a_newcomer();
    let group = group_of_0(&mut w, &[1, 2]);
    // Node 1 (not node 2's mutual connection) knows no device of node 2: its share for
    // node 2 waits; its share for node 0 goes.
    w.send(1, group, "one");
    assert_eq!(w.texts(0, group), ["one"]);
    assert!(w.texts(2, group).is_empty());
    assert_eq!(queued(&w, 1, 2), (1, 1));
    // Node 2's announcement reaches the creator, who passes it on to node 1: node 1's
    // share for node 2 goes on Olm, then the message.
    w.gossip_devices(2);
    let passed = controls(&w, 0, 1)
        .iter()
        .any(|c| matches!(c, Opened::Devices(r) if r.record().author == w.id(2)));
    assert!(passed);
    assert_eq!(w.texts(2, group), ["one"]);
    assert_eq!(olm_shares(&w, 1, 2).len(), 1);
    assert_eq!(queued(&w, 1, 2), (0, 0));
}

#[test]
fn a_circle_member_who_did_nothing_gets_keys_on_olm_and_at_most_so_many_wait_for_it() {
    use crate::core::group::MAX_HELD_SHARES;
    let mut w = with_a_newcomer();
    let members = vec![w.id(2)];
    w.op(0, GroupOp::CircleCreate { name: "close".into(), members }).unwrap();
    // One more session than may wait (a new one a week apart), while node 2 has no
    // device: each post's key share for node 2 waits, the oldest one goes.
    let mut posts = Vec::new();
    for _ in 0..=MAX_HELD_SHARES {
        w.now += kith_protocol::group::megolm::ROTATE_AFTER_MS + 1;
        let op = GroupOp::CirclePost { name: "close".into(), text: "for two".into() };
        let (effects, record) = w.nodes[0].published(|answer| Input::Group { op, answer }, w.now);
        w.pump(0, effects);
        w.nodes[2].core.store().insert(&record).unwrap();
        posts.push(record);
    }
    assert_eq!(queued(&w, 0, 2), (MAX_HELD_SHARES, 0));
    // Node 2, which never messaged, posted or joined anything, makes its device at
    // start (it has a mutual connection) and announces it; node 0 seals what waits.
    w.announce = true;
    let first = w.nodes[2].handle(Input::Timer(crate::core::Timer::Devices), w.now);
    let effects = w.nodes[2].settle(first, w.now);
    w.pump(2, effects);
    assert_eq!(queued(&w, 0, 2), (0, 0));
    assert_eq!(olm_shares(&w, 0, 2).len(), MAX_HELD_SHARES);
    let keys = Keypair::from_secret_bytes(&[3; 32]);
    let reader = crate::node::circle::Reader::new(&keys);
    let read = |r: &VerifiedRecord| reader.private_text(w.nodes[2].core.store(), r.record());
    assert_eq!(read(&posts[0]), None, "the oldest share went");
    for post in &posts[1..] {
        assert_eq!(read(post).as_deref(), Some("for two"));
    }
}

/// Whether `effects` hand node `to`'s queued requests to a send (directly or to a
/// mailbox).
fn sends_to(w: &World, effects: &[Effect], to: usize) -> bool {
    let to = w.id(to);
    effects.iter().any(|e| match e {
        Effect::GroupDeliver { peer, .. } | Effect::GroupDeposit { peer, .. } => *peer == to,
        _ => false,
    })
}

/// Node `to` connects to node `i`, and node `i`'s group outbox timer fires, before a
/// flush node `i` asked for is done: nothing of node `to`'s queue is sent.
fn nothing_sent_before_the_flush(w: &mut World, i: usize, to: usize) {
    let peer = w.id(to).to_peer_id().unwrap();
    let early = w.nodes[i].handle(Input::Connected { peer }, w.now);
    assert!(!sends_to(w, &early, to), "sent before the flush: {early:?}");
    let timer = w.nodes[i].handle(Input::Timer(crate::core::Timer::GroupOutbox), w.now);
    assert!(!sends_to(w, &timer, to), "sent before the flush: {timer:?}");
}

/// Issue 17 item 4, for key shares: a share sealed on an Olm session leaves only once
/// the session's new state is flushed, whatever else starts the lane in between.
#[test]
fn a_share_sealed_on_olm_is_not_sent_before_its_session_is_flushed() {
    let (mut w, group) = three_with_devices();
    let op = GroupOp::Send { group, text: "one".into() };
    let sent = w.nodes[1].handle(Input::Group { op, answer: AnswerId(900) }, w.now);
    assert!(sent.iter().any(|e| matches!(e, Effect::Flush(_))), "{sent:?}");
    assert!(!sends_to(&w, &sent, 0), "{sent:?}");
    nothing_sent_before_the_flush(&mut w, 1, 0);
    // Once flushed, the share goes (first), then the message.
    let after = w.nodes[1].settle(sent, w.now);
    let first = after.iter().find_map(|e| match e {
        Effect::GroupDeliver { peer, bytes, .. } if *peer == w.id(0) => Some(bytes.clone()),
        _ => None,
    });
    let first = GroupRequest::from_bytes(&first.expect("sent once flushed")).unwrap();
    assert!(matches!(first, GroupRequest::Olm { .. }), "{first:?}");
    w.pump(1, after);
    assert_eq!(w.texts(0, group), ["one"]);
}

#[test]
fn a_held_share_sealed_on_olm_is_not_sent_before_its_session_is_flushed() {
    let mut w = with_a_newcomer();
    let group = group_of_0(&mut w, &[2]);
    w.send(0, group, "waited");
    assert_eq!(queued(&w, 0, 2), (1, 1));
    // Node 2's announcement reaches node 0: the held share is sealed, not yet flushed.
    let store = w.nodes[2].core.store();
    let stored = store.devices(&w.id(2)).unwrap().expect("a device announcement");
    let bytes = store.get_bytes(&stored.id).unwrap().unwrap();
    let message = GossipMessage {
        from: w.id(2).to_peer_id().unwrap(),
        id: libp2p::gossipsub::MessageId::new(stored.id.as_bytes()),
        topic: Topic::Author(w.id(2)).to_string(),
        bytes,
    };
    let released = w.nodes[0].handle(Input::Gossip(vec![message]), w.now);
    assert_eq!(queued(&w, 0, 2), (0, 2), "sealed");
    assert!(!sends_to(&w, &released, 2), "{released:?}");
    nothing_sent_before_the_flush(&mut w, 0, 2);
    let after = w.nodes[0].settle(released, w.now);
    assert!(sends_to(&w, &after, 2), "sent once flushed: {after:?}");
    w.pump(0, after);
    assert_eq!(w.texts(2, group), ["waited"]);
    assert_eq!(olm_shares(&w, 0, 2).len(), 1);
}
