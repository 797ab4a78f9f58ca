//! Forward-secret messages (issue #17): this node's device, its announcement and its
//! rotation.

use kith_protocol::olm::prekey::{Announcement, FALLBACK_ROTATION_MS};

use super::{dm::pair, *};
use crate::core::{dm::Outgoing, Timer};

/// `f`'s latest announcement in its own store.
fn announcement(f: &Fixture) -> Option<Announcement> {
    let record = f.core.store().devices(&f.core.me()).unwrap()?;
    match record.record.kind {
        RecordKind::Devices(a) => Some(a),
        other => panic!("{other:?}"),
    }
}

fn out(to: &Fixture, n: u8) -> Outgoing {
    Outgoing {
        peer: to.core.me(),
        id: kith_protocol::dm::MessageId::from_bytes([n; 16]),
        text: "hi".into(),
        attachments: vec![],
    }
}

#[test]
fn a_node_that_never_messages_makes_no_device() {
    let mut f = Fixture::new(1);
    let effects = f.handle(Input::Timer(Timer::Devices), 1_000);
    assert!(matches!(
        effects.as_slice(),
        [Effect::Schedule { at: 3_601_000, timer: Timer::Devices }]
    ));
    assert!(f.core.store().olm_device().unwrap().is_none());
    assert!(announcement(&f).is_none());
}

#[test]
fn the_first_message_makes_the_device_and_announces_it_once_durably() {
    let (mut a, b) = pair();
    let first = a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    let effects = a.settle(first, 100);
    let topic = Topic::Author(a.core.me()).to_string();
    assert!(published(&effects).contains(&topic), "{effects:?}");
    // Published only after a flush, and the device is durable with it.
    let flush = effects.iter().position(|e| matches!(e, Effect::Flush(_))).unwrap();
    let publish = effects.iter().position(|e| matches!(e, Effect::Publish { .. })).unwrap();
    assert!(flush < publish);
    let announced = announcement(&a).unwrap();
    assert_eq!(announced.verify(&a.core.me()).unwrap().len(), 1);
    let restarted = a.restart(1);
    assert_eq!(announcement(&restarted), Some(announced.clone()));
    assert!(restarted.core.store().olm_device().unwrap().is_some());

    // A second message announces nothing new.
    let again = a.handle(Input::MsgSend { message: out(&b, 2), answer: AnswerId(2) }, 200);
    assert!(published(&a.settle(again, 200)).is_empty());

    // After a restart the same device is loaded: the announcement stands.
    let mut restarted = a.restart(1);
    let next = restarted.handle(Input::Timer(Timer::Devices), 300);
    assert!(published(&restarted.settle(next, 300)).is_empty());
    assert_eq!(announcement(&restarted), Some(announced));
}

#[test]
fn the_fallback_key_is_rotated_when_old_and_the_new_one_announced() {
    let (mut a, b) = pair();
    let first = a.handle(Input::MsgSend { message: out(&b, 1), answer: AnswerId(1) }, 100);
    a.settle(first, 100);
    let before = announcement(&a).unwrap();
    let later = 100 + FALLBACK_ROTATION_MS;
    let effects = a.handle(Input::Timer(Timer::Devices), later);
    let effects = a.settle(effects, later);
    assert_eq!(published(&effects), vec![Topic::Author(a.core.me()).to_string()]);
    let after = announcement(&a).unwrap();
    let (old, new) = (&before.devices[0], &after.devices[0]);
    assert_eq!(old.certificate, new.certificate);
    assert_ne!(old.fallback.prekey.key, new.fallback.prekey.key);
    assert_eq!(new.fallback.prekey.created, later);
}
