use proptest::prelude::*;

use super::{invariants, run, Config, World};

fn small(seed: u64) -> Config {
    Config { seconds: 300, ..Config::new(20, seed) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// A small simulation has no violations, and the same seed gives the same digest.
    #[test]
    fn a_small_simulation_holds_and_repeats(seed in any::<u64>()) {
        let first = run(&small(seed));
        prop_assert_eq!(first.violations, 0, "seed {}: {:?}", seed, first.first_violation);
        prop_assert!(first.published > 0 && first.delivered > 0);
        let again = run(&small(seed));
        prop_assert_eq!(&first.digest, &again.digest, "seed {}", seed);
    }
}

#[test]
fn different_seeds_give_different_worlds() {
    assert_ne!(run(&small(1)).digest, run(&small(2)).digest);
}

#[test]
fn lost_writes_are_caught() {
    // Followers catch up at the end without flushing (the store flushes later in the
    // daemon); crashing everyone then loses records they hold for authors they follow.
    let mut world = World::new(&small(3));
    world.run();
    assert!(invariants::check(&world).is_empty());
    world.crash_everyone_now();
    let found = invariants::check(&world);
    assert!(!found.is_empty(), "records lost in a crash are missing");
    assert!(found[0].to_string().starts_with("followers hold followed logs"), "{}", found[0]);
}

#[test]
fn a_world_with_messages_holds_and_repeats() {
    let first = run(&small(6));
    assert_eq!(first.violations, 0, "{:?}", first.first_violation);
    assert!(first.messages > 0);
    assert_eq!(first.digest, run(&small(6)).digest);
}

#[test]
fn broken_messages_are_caught() {
    let mut world = World::new(&small(6));
    world.run();
    assert!(invariants::check(&world).is_empty());
    assert!(world.stats().messages > 0);
    world.break_messages();
    let found: Vec<String> = invariants::check(&world).iter().map(ToString::to_string).collect();
    let caught = |start: &str| found.iter().any(|v| v.starts_with(start));
    assert!(caught("every direct message between mutuals is stored once"), "{found:?}");
    assert!(caught("nobody stores a direct message they were not party to"), "{found:?}");
}

/// A world of `n` nodes driven by hand.
fn scripted(n: usize) -> World {
    World::new(&Config { scripted: true, ..Config::new(n, 11) })
}

#[test]
fn a_message_reaches_a_recipient_never_online_with_its_sender_through_a_mailbox() {
    use kith_node::store::DmStatus;
    // A (0), B (1) and C (2) follow each other; B writes A a first message (its node
    // makes and announces its device). From then on A and B are never online at the
    // same time; C, the mailbox of both, always is.
    let (a, b, c) = (0, 1, 2);
    let mut world = scripted(3);
    for (x, y) in [(a, b), (a, c), (b, c)] {
        world.friends(x, y);
    }
    world.pass(30_000);
    let hello = world.write(b, a).expect("B may write to A");
    world.pass(30_000);
    world.set_online(b, false);
    let message = world.write(a, b).expect("A may write to B");
    world.pass(60_000);
    let status = |w: &World, from: usize, id: &[u8; 16]| {
        let me = w.nodes[from].me;
        w.nodes[from].store().and_then(|s| s.dm_get(&me, id).ok().flatten()).map(|r| r.status)
    };
    assert_eq!(status(&world, a, &message), Some(DmStatus::Held), "deposited with C");
    world.set_online(a, false);
    world.set_online(b, true);
    world.pass(60_000);
    let reply = world.write(b, a).expect("B may write back");
    world.pass(60_000);
    world.set_online(b, false);
    world.set_online(a, true);
    world.pass(60_000);
    assert_eq!(status(&world, a, &message), Some(DmStatus::Delivered), "receipt through C");
    world.set_online(a, false);
    world.set_online(b, true);
    world.pass(60_000);
    assert_eq!(status(&world, b, &reply), Some(DmStatus::Delivered), "receipt through C");
    let held = |w: &World, to: usize, from: usize, id: &[u8; 16]| {
        let sender = w.nodes[from].me;
        w.nodes[to].store().and_then(|s| s.dm_get(&sender, id).ok().flatten()).map(|r| r.status)
    };
    assert_eq!(held(&world, b, a, &message), Some(DmStatus::Received));
    assert_eq!(held(&world, a, b, &reply), Some(DmStatus::Received));
    assert_eq!(held(&world, a, b, &hello), Some(DmStatus::Received));
    let stats = world.stats();
    assert_eq!(stats.mailbox_deliveries, 2, "both came through the mailbox");
    // Exactly once, and C holds no message it was not party to (A comes back, and
    // catches up with B's log).
    world.set_online(a, true);
    world.pass(60_000);
    let found: Vec<String> = invariants::check(&world).iter().map(ToString::to_string).collect();
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn broken_groups_and_circles_are_caught() {
    // The first small world (of a few seeds) with both group messages and circle posts.
    let mut world = (3..8)
        .map(|seed| {
            let mut world = World::new(&small(seed));
            world.run();
            assert!(invariants::check(&world).is_empty(), "seed {seed}");
            world
        })
        .find(|w| w.stats().group_messages > 0 && w.stats().circle_posts > 0)
        .expect("a world with group messages and circle posts");
    world.break_groups();
    let found: Vec<String> = invariants::check(&world).iter().map(ToString::to_string).collect();
    let caught = |start: &str| found.iter().any(|v| v.starts_with(start));
    assert!(caught("every group member reads every message sent while"), "{found:?}");
    assert!(caught("no removed member or outsider holds a group message"), "{found:?}");
    assert!(caught("circle posts are read by their circle's members and nobody else"), "{found:?}");
}
