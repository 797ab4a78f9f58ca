//! Notifications: what notifies, once, strangers bounded, and the paths that notify.

use kith_protocol::Post;

use super::*;
use crate::{keep::MAX_STRANGER_NOTIFICATIONS, store::Moderation};

/// The kinds of the notifications among `effects`, in order.
fn notified(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notified(n) => Some(n.kind.clone()),
            _ => None,
        })
        .collect()
}

fn kinds(store: &Store, me: &AuthorId, rec: &VerifiedRecord) -> Vec<String> {
    crate::core::notify::for_record(store, me, rec, 100).into_iter().map(|n| n.kind).collect()
}

#[test]
fn replies_mentions_reactions_reposts_and_follows_of_mine_notify_once() {
    let mut f = Fixture::new(1);
    let me = f.core.me();
    let (_, mine) = f.publish(text_post("mine", None), 10);
    let other = Keypair::from_secret_bytes(&[2; 32]);
    let store = f.core.store().clone();
    // Each one a first record (seq 1), at its own time: kinds are checked, not logs.
    let reply = signed(&other, 1, None, 20, text_post("re", Some(mine.id())));
    let mention = signed(
        &other,
        1,
        None,
        21,
        RecordKind::Post(Post {
            text: format!("hi @{me}"),
            reply_to: Some(mine.id()),
            mentions: vec![me],
            expires_at: None,
            attachments: vec![],
        }),
    );
    let react = |emoji: &str| {
        let kind = RecordKind::Reaction { target: mine.id(), emoji: emoji.into() };
        signed(&other, 1, None, 22, kind)
    };
    let repost = signed(&other, 1, None, 23, RecordKind::Repost { target: mine.id() });
    let follow = signed(&other, 1, None, 24, RecordKind::Follow { target: me });
    assert_eq!(kinds(&store, &me, &reply), vec!["reply"]);
    assert_eq!(kinds(&store, &me, &mention), vec!["reply", "mention"]);
    assert_eq!(kinds(&store, &me, &react("👍")), vec!["reaction"]);
    // Taking a reaction back notifies nobody.
    assert!(kinds(&store, &me, &react("")).is_empty());
    assert_eq!(kinds(&store, &me, &repost), vec!["repost"]);
    assert_eq!(kinds(&store, &me, &follow), vec!["follow"]);
    // The same events again: each was stored once.
    assert!(kinds(&store, &me, &reply).is_empty());
    assert!(kinds(&store, &me, &follow).is_empty());
    // Own records never notify.
    let (_, own) = f.publish(text_post("again", Some(mine.id())), 30);
    assert!(kinds(&store, &me, &own).is_empty());
}

/// A node that follows a friend, and the friend's follow back (not yet received).
fn followed_friend() -> (Fixture, AuthorId, Keypair, VerifiedRecord) {
    let mut f = Fixture::new(1);
    let me = f.core.me();
    let friend = Keypair::from_secret_bytes(&[2; 32]);
    f.publish(RecordKind::Follow { target: friend.id() }, 5);
    let follow = signed(&friend, 1, None, 20, RecordKind::Follow { target: me });
    (f, me, friend, follow)
}

#[test]
fn a_follow_back_notifies_a_mutual_connection_once_whichever_comes_first() {
    let (mut f, me, friend, follow) = followed_friend();
    let topic = Topic::Author(me);
    let effects = f.handle(Input::Gossip(vec![gossip(&friend, &topic, &follow)]), 100);
    assert_eq!(notified(&effects), vec!["follow", "mutual"]);
    // Our side noticing the same connection adds nothing.
    let store = f.core.store();
    assert!(crate::core::notify::own_follow_made_mutual(store, &me, &friend.id(), 110).is_none());
}

/// Their follow indexed but its record not stored yet when our own follow asks whether
/// it made a connection (the insert is on another thread): one notification all the
/// same, made when the record is stored. A flaky `conversation` test once saw two.
#[test]
fn a_follow_back_indexed_before_its_record_is_stored_notifies_once() {
    let (mut f, me, friend, follow) = followed_friend();
    let store = f.core.store().clone();
    store.index_only(&follow).unwrap();
    assert!(crate::core::dm::is_mutual(&store, &me, &friend.id()).unwrap());
    assert!(crate::core::notify::own_follow_made_mutual(&store, &me, &friend.id(), 30).is_none());
    let topic = Topic::Author(me);
    let effects = f.handle(Input::Gossip(vec![gossip(&friend, &topic, &follow)]), 100);
    assert_eq!(notified(&effects), vec!["follow", "mutual"]);
    let mutual = store.notifications(100, false, false).unwrap();
    assert_eq!(mutual.iter().filter(|n| n.kind == "mutual").count(), 1, "{mutual:?}");
}

#[test]
fn hidden_people_do_not_notify_and_strangers_only_while_few_are_unread() {
    let f = Fixture::new(1);
    let me = f.core.me();
    let store = f.core.store();
    let muted = Keypair::from_secret_bytes(&[2; 32]);
    store.set_moderation(&muted.id(), Moderation { blocked: false, muted: true }).unwrap();
    let follow = signed(&muted, 1, None, 20, RecordKind::Follow { target: me });
    assert!(kinds(store, &me, &follow).is_empty());
    for i in 0..MAX_STRANGER_NOTIFICATIONS + 5 {
        let stranger = Keypair::from_secret_bytes(&[(i % 200) as u8 + 10; 32]);
        let kind = RecordKind::Follow { target: me };
        let follow = signed(&stranger, 1, None, 20 + i, kind);
        let got = kinds(store, &me, &follow);
        assert_eq!(got.is_empty(), i >= MAX_STRANGER_NOTIFICATIONS, "at {i}");
    }
}

#[test]
fn a_received_message_notifies_unless_its_sender_is_muted() {
    let (mut a, mut b) = (Fixture::new(1), Fixture::new(2));
    let (_, ab) = a.publish(RecordKind::Follow { target: b.core.me() }, 5);
    let (_, ba) = b.publish(RecordKind::Follow { target: a.core.me() }, 5);
    b.core.store().insert(&ab).unwrap();
    a.core.store().insert(&ba).unwrap();
    let b_id = b.core.me();
    let to_b = |a: &mut Fixture, n: u8| {
        let message = crate::core::dm::Outgoing {
            peer: b_id,
            id: kith_protocol::dm::MessageId::from_bytes([n; 16]),
            text: "hi".into(),
            attachments: vec![],
        };
        let effects = a.handle(Input::MsgSend { message, answer: AnswerId(n.into()) }, 10);
        effects
            .into_iter()
            .find_map(|e| match e {
                Effect::Deliver { bytes, .. } => Some(bytes),
                _ => None,
            })
            .unwrap()
    };
    let from = a.core.me().to_peer_id().unwrap();
    let bytes = to_b(&mut a, 1);
    let got = b.handle(Input::DmRequest { from, bytes, reply: ReplyId(1) }, 20);
    assert_eq!(notified(&got), vec!["message"]);
    // The receipt lets A's lane go on.
    let receipt = b
        .settle(got, 20)
        .into_iter()
        .find_map(|e| match e {
            Effect::Respond { bytes, .. } => Some(bytes),
            _ => None,
        })
        .unwrap();
    let done = Input::DmDelivered { peer: b.core.me(), message: [1; 16], result: Ok(receipt) };
    let effects = a.handle(done, 25);
    a.settle(effects, 25);
    let muted = Moderation { blocked: false, muted: true };
    b.core.store().set_moderation(&a.core.me(), muted).unwrap();
    let bytes = to_b(&mut a, 2);
    let got = b.handle(Input::DmRequest { from, bytes, reply: ReplyId(2) }, 30);
    assert!(got.iter().any(|e| matches!(e, Effect::Received { hidden: true, .. })));
    assert!(notified(&got).is_empty());
}
