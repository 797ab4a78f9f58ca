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
