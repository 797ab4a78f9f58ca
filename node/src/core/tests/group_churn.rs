//! A large group with churn, in process (issue #19): members come and go while they
//! write; every message is held exactly once, in order, by exactly the people who were
//! members when it was sent. `KITH_GROUP_MEMBERS` and `KITH_GROUP_MESSAGES` scale it (the
//! figures in docs/benchmarks.md: 50 and 1,000); it prints messages/s and bytes per
//! message per member.

use std::collections::BTreeSet;

use rand_core::Rng;

use super::group::World;
use crate::core::group::{GroupAnswer, GroupOp};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn a_group_with_churn_holds_every_message_once_in_order_for_exactly_its_members() {
    let (members, messages) = (env("KITH_GROUP_MEMBERS", 8), env("KITH_GROUP_MESSAGES", 120));
    let mut w = World::new(u8::try_from(members).unwrap());
    let others: Vec<_> = (1..members).map(|i| w.id(i)).collect();
    let GroupAnswer::Created(group) =
        w.op(0, GroupOp::Create { name: "many".into(), members: others }).unwrap()
    else {
        panic!("not created")
    };
    let mut rng = rand_pcg::Pcg64Mcg::new(19);
    let mut current: BTreeSet<usize> = (0..members).collect();
    let mut gone: Vec<usize> = Vec::new();
    // Per message: its text and who was a member when it was sent.
    let mut sent: Vec<(String, BTreeSet<usize>)> = Vec::new();
    let (started, bytes_before) = (std::time::Instant::now(), w.sent.len());
    let mut message_bytes = 0usize;
    for n in 0..messages {
        w.now += 10;
        // Every tenth message someone is removed, and someone removed before comes back.
        if n % 10 == 9 && current.len() > 2 {
            let pick = current
                .iter()
                .copied()
                .filter(|m| *m != 0)
                .nth((rng.next_u64() % (current.len() as u64 - 1)) as usize);
            let back = (!gone.is_empty()).then(|| gone.remove(0));
            if let Some(out) = pick {
                w.op(0, GroupOp::Remove { group, member: w.id(out) }).unwrap();
                current.remove(&out);
                gone.push(out);
            }
            if let Some(back) = back {
                w.op(0, GroupOp::Add { group, member: w.id(back), history: false }).unwrap();
                current.insert(back);
            }
        }
        let from = *current.iter().nth((rng.next_u64() % current.len() as u64) as usize).unwrap();
        let text = format!("message {n} from {from}");
        let before = w.sent.len();
        w.send(from, group, &text);
        message_bytes += w.sent[before..].iter().map(|(_, _, b)| b.len()).sum::<usize>();
        sent.push((text, current.clone()));
    }
    let elapsed = started.elapsed();
    for i in 0..members {
        let held = w.texts(i, group);
        let wanted: Vec<&String> =
            sent.iter().filter(|(_, who)| who.contains(&i)).map(|(t, _)| t).collect();
        let held: Vec<&String> = held.iter().collect();
        assert_eq!(held, wanted, "member {i} holds exactly its messages, once, in order");
    }
    let recipients: usize = sent.iter().map(|(_, who)| who.len() - 1).sum();
    eprintln!(
        "group churn: {members} members, {messages} messages, {} requests, {:.0} messages/s, \
         {:.0} bytes per message per member (all requests), {:.0} bytes of messages and key shares",
        w.sent.len() - bytes_before,
        messages as f64 / elapsed.as_secs_f64(),
        w.sent[bytes_before..].iter().map(|(_, _, b)| b.len()).sum::<usize>() as f64
            / recipients as f64,
        message_bytes as f64 / recipients as f64,
    );
}
