//! Holding envelopes for others (issue #18): who is held for, durability, order,
//! acknowledgements, quotas and expiry.

use kith_protocol::mailbox::{HeldId, MailboxReply, MailboxRequest, Refusal};

use super::{dm::befriend, *};
use crate::{config::MailboxConfig, core::Timer};

const DAY: u64 = 24 * 60 * 60 * 1000;

/// A mailbox `m` (3), a recipient `r` (2) who is its mutual connection and lists it,
/// and a depositor `d` (1) that `m` does not know.
fn world() -> (Fixture, Fixture, Fixture) {
    let (mut m, mut r, d) = (Fixture::new(3), Fixture::new(2), Fixture::new(1));
    befriend(&mut m, &mut r);
    list(&mut r, &m);
    (m, r, d)
}

/// `who` names `m` as their mailbox, and `m` has the record.
pub(super) fn list(who: &mut Fixture, m: &Fixture) {
    let (_, record) = who.publish(RecordKind::Mailboxes { holders: vec![m.core.me()] }, 10);
    m.core.store().insert(&record).unwrap();
}

/// `m`'s answer to `request` from `from`'s node at `now`, flushes done.
pub(super) fn ask(
    m: &mut Fixture,
    from: &Fixture,
    request: &MailboxRequest,
    now: u64,
) -> MailboxReply {
    ask_bytes(m, from, request.to_bytes().unwrap(), now)
}

fn ask_bytes(m: &mut Fixture, from: &Fixture, bytes: Vec<u8>, now: u64) -> MailboxReply {
    m.next_answer += 1;
    let reply = ReplyId(m.next_answer);
    let from = from.core.me().to_peer_id().unwrap();
    let first = m.handle(Input::MailboxRequest { from, bytes, reply }, now);
    let effects = m.settle(first, now);
    let answer = effects.iter().find_map(|e| match e {
        Effect::Respond { reply: r, bytes } if *r == reply => Some(bytes.clone()),
        _ => None,
    });
    MailboxReply::from_bytes(&answer.expect("answered")).unwrap()
}

fn deposit(to: &Fixture, envelope: Vec<u8>) -> MailboxRequest {
    MailboxRequest::Deposit { recipient: to.core.me(), envelope }
}

fn envelope(n: u8, len: usize) -> Vec<u8> {
    vec![n; len]
}

fn accepted(envelope: &[u8]) -> MailboxReply {
    MailboxReply::Accepted { id: HeldId::of(envelope) }
}

pub(super) fn collect(
    m: &mut Fixture,
    r: &Fixture,
    after: u64,
    now: u64,
) -> (Vec<Vec<u8>>, Vec<u64>) {
    match ask(m, r, &MailboxRequest::Collect { after }, now) {
        MailboxReply::Held { items, more: false } => (
            items.iter().map(|h| h.envelope.clone()).collect(),
            items.iter().map(|h| h.position).collect(),
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_mailbox_holds_only_for_mutual_connections_that_list_it() {
    let (mut m, mut r, d) = world();
    let one = envelope(1, 300);
    assert_eq!(ask(&mut m, &d, &deposit(&r, one.clone()), 100), accepted(&one));
    // Someone who lists the mailbox but is not its mutual connection.
    let mut stranger = Fixture::new(4);
    list(&mut stranger, &m);
    let refused = MailboxReply::Refused(Refusal::NotHolding);
    assert_eq!(ask(&mut m, &d, &deposit(&stranger, one.clone()), 100), refused);
    // A mutual connection that does not list it (any more).
    let (_, record) = r.publish(RecordKind::Mailboxes { holders: vec![] }, 20);
    m.core.store().insert(&record).unwrap();
    assert_eq!(ask(&mut m, &d, &deposit(&r, envelope(2, 300)), 100), refused);
    // Garbage.
    let invalid = MailboxReply::Refused(Refusal::Invalid);
    assert_eq!(ask_bytes(&mut m, &d, vec![0xff; 40], 100), invalid);
    assert_eq!(ask_bytes(&mut m, &d, Vec::new(), 100), invalid);
}

#[test]
fn a_deposit_is_durable_before_it_is_accepted() {
    let (mut m, r, d) = world();
    let one = envelope(1, 300);
    let from = d.core.me().to_peer_id().unwrap();
    let bytes = deposit(&r, one.clone()).to_bytes().unwrap();
    let effects = m.handle(Input::MailboxRequest { from, bytes, reply: ReplyId(9) }, 100);
    // Nothing is answered before the flush.
    assert!(matches!(effects.as_slice(), [Effect::Flush(_)]), "{effects:?}");
    let effects = m.settle(effects, 100);
    assert!(matches!(effects.last(), Some(Effect::Respond { reply: ReplyId(9), .. })));
    // A crash after the answer: still held.
    let mut again = m.restart(3);
    assert_eq!(collect(&mut again, &r, 0, 200).0, vec![one]);
}

#[test]
fn collects_read_in_deposit_order_after_the_cursor_and_acks_delete() {
    let (mut m, r, d) = world();
    let all: Vec<Vec<u8>> = (1..=3).map(|n| envelope(n, 300)).collect();
    for e in &all {
        assert_eq!(ask(&mut m, &d, &deposit(&r, e.clone()), 100), accepted(e));
    }
    // The same envelope again is held once.
    assert_eq!(ask(&mut m, &d, &deposit(&r, all[0].clone()), 100), accepted(&all[0]));
    let (got, positions) = collect(&mut m, &r, 0, 200);
    assert_eq!(got, all);
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(collect(&mut m, &r, positions[1], 200).0, vec![all[2].clone()]);
    // The depositor collects only what is held for it: nothing.
    assert!(collect(&mut m, &d, 0, 200).0.is_empty());
    // Someone else cannot delete them.
    let ids: Vec<HeldId> = all[..2].iter().map(|e| HeldId::of(e)).collect();
    let ack = MailboxRequest::Ack { ids: ids.clone() };
    assert_eq!(ask(&mut m, &d, &ack, 300), MailboxReply::Acked { removed: 0 });
    assert_eq!(ask(&mut m, &r, &ack, 300), MailboxReply::Acked { removed: 2 });
    assert_eq!(ask(&mut m, &r, &ack, 300), MailboxReply::Acked { removed: 0 });
    assert_eq!(collect(&mut m, &r, 0, 400).0, vec![all[2].clone()]);
    let tally = m.core.store().held_tally().unwrap();
    assert_eq!((tally.total.count, tally.total.bytes), (1, 300));
}

#[test]
fn quotas_per_recipient_per_depositor_and_in_total() {
    let (mut m, r, d) = world();
    let limits = MailboxConfig { per_recipient_messages: 2, ..MailboxConfig::default() };
    m.core.set_mailbox_limits(limits);
    for n in 1..=2 {
        assert_eq!(
            ask(&mut m, &d, &deposit(&r, envelope(n, 300)), 100),
            accepted(&envelope(n, 300))
        );
    }
    let full = ask(&mut m, &d, &deposit(&r, envelope(3, 300)), 100);
    assert_eq!(full, MailboxReply::Refused(Refusal::RecipientFull));
    // A retry of one already held is still accepted.
    assert_eq!(ask(&mut m, &d, &deposit(&r, envelope(1, 300)), 100), accepted(&envelope(1, 300)));

    // 1 MiB from one depositor: 32 envelopes of 32,000 bytes fit, the 33rd does not.
    let (mut m, r2, d) = world();
    let limits = MailboxConfig { per_depositor_mb: 1, ..MailboxConfig::default() };
    m.core.set_mailbox_limits(limits);
    let big = |n: u8| envelope(n, 32_000);
    for n in 0..32 {
        assert_eq!(ask(&mut m, &d, &deposit(&r2, big(n)), 100), accepted(&big(n)));
    }
    let over = ask(&mut m, &d, &deposit(&r2, big(32)), 100);
    assert_eq!(over, MailboxReply::Refused(Refusal::DepositorFull));
    // Another depositor still may, until the mailbox's total is reached.
    let limits = MailboxConfig { per_depositor_mb: 1, total_mb: 1, ..MailboxConfig::default() };
    m.core.set_mailbox_limits(limits);
    let other = Fixture::new(5);
    let total = ask(&mut m, &other, &deposit(&r2, big(40)), 100);
    assert_eq!(total, MailboxReply::Refused(Refusal::Full));
    // Deleting makes room again.
    let ids = (0..4).map(|n| HeldId::of(&big(n))).collect();
    assert_eq!(
        ask(&mut m, &r2, &MailboxRequest::Ack { ids }, 200),
        MailboxReply::Acked { removed: 4 }
    );
    assert_eq!(ask(&mut m, &other, &deposit(&r2, big(40)), 200), accepted(&big(40)));
}

#[test]
fn expired_envelopes_are_not_handed_out_and_are_swept() {
    let (mut m, r, d) = world();
    m.core.set_mailbox_limits(MailboxConfig { ttl_days: 1, ..MailboxConfig::default() });
    let (old, new) = (envelope(1, 300), envelope(2, 300));
    ask(&mut m, &d, &deposit(&r, old.clone()), 1_000);
    ask(&mut m, &d, &deposit(&r, new.clone()), 1_000 + DAY / 2);
    let later = 1_000 + DAY + 1;
    assert_eq!(collect(&mut m, &r, 0, later).0, vec![new.clone()]);
    let effects = m.handle(Input::Timer(Timer::HoldSweep), later);
    let next = later + crate::core::hold::SWEEP_EVERY_MS;
    assert!(
        matches!(effects.as_slice(), [Effect::Schedule { at, timer: Timer::HoldSweep }] if *at == next)
    );
    let tally = m.core.store().held_tally().unwrap();
    assert_eq!((tally.total.count, tally.total.bytes), (1, 300));
    // The quota counts what is left.
    m.core.set_mailbox_limits(MailboxConfig {
        per_recipient_messages: 2,
        ttl_days: 1,
        ..MailboxConfig::default()
    });
    assert_eq!(ask(&mut m, &d, &deposit(&r, envelope(3, 300)), later), accepted(&envelope(3, 300)));
}
