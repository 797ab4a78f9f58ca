//! A deterministic simulation of many nodes' cores (issue #16, `scripts/sim-core`).
//!
//! N [`Core`](kith_node::core::Core)s, the code the daemon runs, each over a store in
//! memory ([`Store::open_memory`](kith_node::store::Store::open_memory)), on a simulated
//! network: gossip fanned out to each topic's subscribers with a latency drawn per
//! message, loss, partitions, nodes going offline and coming back, crashes whose restart
//! keeps only what was flushed. Time is a priority queue of events ordered by (time,
//! sequence number); one seeded generator drives the scenario and the network; nothing
//! reads the wall clock except to report `wall_seconds`, and there are no threads.
//!
//! After the scenario the network heals, every node comes back and catches up with the
//! authors it follows (what the driver's sync does on connect), the queue drains, and the
//! invariants ([`invariants`]) are checked over every node's store. The digest is BLAKE3
//! over every node's state as its store's typed API shows it ([`digest`]): the same
//! seed gives the same digest.
//!
//! Sync goes through the core's sync concern as in the daemon (`world/sync.rs`: pulls,
//! questions on the simulated network, answers served by the peer's core). What the
//! core does not handle yet is done here as the driver does it (and goes when the core
//! takes it): gossip topic subscriptions (followed authors, own author topic,
//! subscribed tags) and tag subscriptions (written to the store as `kith sub` does).

mod digest;
pub mod invariants;
mod rng;
mod world;

use std::time::Instant;

pub use rng::SimRng;
pub use world::World;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Number of nodes.
    pub nodes: usize,
    /// The seed of everything random.
    pub seed: u64,
    /// Simulated time the scenario lasts, in seconds (catching up comes after).
    pub seconds: u64,
    /// Mean time between two actions of one person, in seconds.
    pub act_every_s: u64,
    /// Gossip messages lost, per thousand.
    pub loss_per_mille: u64,
    /// Nothing is planned: a test drives the world by hand (`world/script.rs`).
    pub scripted: bool,
}

impl Config {
    /// The defaults for `nodes` and `seed`: ten simulated minutes, an action per person
    /// a minute on average, 2 % of gossip lost.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self { nodes, seed, seconds: 600, act_every_s: 60, loss_per_mille: 20, scripted: false }
    }
}

/// What a run found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// BLAKE3 of every node's final store, hex.
    pub digest: String,
    /// Invariant violations found.
    pub violations: usize,
    /// The first one: the invariant's name and what failed.
    pub first_violation: Option<String>,
    /// Nodes simulated.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Events handled.
    pub events: u64,
    /// Simulated time, seconds (scenario and catching up).
    pub sim_seconds: f64,
    /// Real time the run took, seconds.
    pub wall_seconds: f64,
    /// Records published by the nodes.
    pub published: u64,
    /// Gossip messages delivered / lost (loss, partitions, offline recipients).
    pub delivered: u64,
    /// Gossip messages that did not arrive.
    pub lost: u64,
    /// Crashes (restarts from what was flushed).
    pub crashes: u64,
    /// Direct messages people asked to send (to a mutual connection).
    pub messages: u64,
    /// Deposits a mailbox accepted (messages and receipts).
    pub deposits: u64,
    /// Direct messages their recipients stored from a mailbox.
    pub mailbox_deliveries: u64,
    /// Group messages sent.
    pub group_messages: u64,
    /// Circle posts published.
    pub circle_posts: u64,
}

/// Runs one simulation.
pub fn run(config: &Config) -> Report {
    let started = Instant::now();
    let mut world = World::new(config);
    world.run();
    let found = invariants::check(&world);
    let stats = world.stats();
    Report {
        digest: world.digest(),
        violations: found.len(),
        first_violation: found.first().map(ToString::to_string),
        nodes: config.nodes,
        seed: config.seed,
        events: stats.events,
        sim_seconds: world.now_ms().saturating_sub(world::EPOCH_MS) as f64 / 1000.0,
        wall_seconds: started.elapsed().as_secs_f64(),
        published: stats.published,
        delivered: stats.delivered,
        lost: stats.lost,
        crashes: stats.crashes,
        messages: stats.messages,
        deposits: stats.deposits,
        mailbox_deliveries: stats.mailbox_deliveries,
        group_messages: stats.group_messages,
        circle_posts: stats.circle_posts,
    }
}

#[cfg(test)]
mod tests;
