//! A small many-node simulation (issue 7): 12 nodes in a random sparse topology, 3 authors
//! posting 20 posts each with hashtags. Every follower of an author and every subscriber
//! of a post's tag must store the post. No timing thresholds: the deadlines only bound
//! how long the test may take.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kith_tests::sim::{run, Config, Plan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_simulation_delivers_every_post_to_every_follower_and_subscriber() {
    let config = Config {
        nodes: 12,
        authors: 3,
        posts: 20,
        seed: 7,
        interval: Duration::from_millis(10),
        ready_deadline: Duration::from_secs(20),
        settle: Duration::ZERO,
        delivery_deadline: Duration::from_secs(60),
        ..Config::default()
    };
    let report = run(&config).await.unwrap();
    println!("{}", report.to_table());
    assert!(report.expected > 0, "{}", report.to_table());
    assert_eq!(report.delivered, report.expected, "\n{}", report.to_table());
}

#[test]
fn plan_is_repeatable_and_sane() {
    let config = Config { nodes: 30, authors: 4, posts: 5, seed: 42, ..Config::default() };
    let plan = Plan::new(&config);
    assert_eq!(plan, Plan::new(&config));
    assert_ne!(plan, Plan::new(&Config { seed: 43, ..config.clone() }));
    for (i, dials) in plan.dials.iter().enumerate() {
        assert_eq!(dials.len(), config.degree);
        assert!(!dials.contains(&i));
        let mut d = dials.clone();
        d.dedup();
        assert_eq!(d.len(), dials.len());
    }
    for (i, follows) in plan.follows.iter().enumerate() {
        assert!(follows.iter().all(|&a| a < config.authors && a != i));
    }
    assert_eq!(plan.posts.len(), config.authors * config.posts);
    for post in &plan.posts {
        assert!(!post.tags.is_empty() && post.tags.iter().all(|&t| t < plan.tags));
        let expected = plan.expected(post);
        assert!(!expected.contains(&post.author));
        for n in expected {
            assert!(
                plan.follows[n].contains(&post.author)
                    || plan.subscriptions[n].iter().any(|t| post.tags.contains(t))
            );
        }
    }
}
