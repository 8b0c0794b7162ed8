//! The guide's topologies under the stream model: 100% propagation and
//! callability with and without loss, partitions that heal, reproducible
//! metrics, and random clusters that keep the invariants.

mod common;

use common::*;
use mpreg_proto::{Call, Config, FunctionSpec, MemberState};
use mpreg_sim::compare::{self, Options};
use mpreg_sim::{Link, LinkModel, Sim};
use proptest::prelude::*;
use std::time::Duration;

fn options(loss: f64, seeds: u64) -> Options {
    Options {
        seeds,
        loss,
        model: LinkModel::Stream,
        config: Config::default(),
    }
}

fn check_all(loss: f64) {
    let rows = compare::run(&options(loss, 3), |_| {});
    assert_eq!(
        rows.len(),
        10,
        "five topologies (seven layouts) and three federated variants"
    );
    assert_eq!(
        rows.iter().filter(|r| r.topology.contains("fed.")).count(),
        3
    );
    for r in &rows {
        let name = &r.topology;
        assert_eq!(r.propagation_pct, 100.0, "{name} at {loss}: propagation");
        assert_eq!(r.callability_pct, 100.0, "{name} at {loss}: callability");
        assert!(r.membership_converged_s.is_some(), "{name}: membership");
        assert!(r.detection_s_median.is_some(), "{name}: crash detection");
        assert_eq!(r.false_dead, 0, "{name}: false deaths");
        for p in &r.partitions {
            assert!(p.heal_s_max.is_some(), "{name} {}: healed", p.name);
            assert_eq!(p.recovered_pct, 100.0, "{name} {}", p.name);
            assert_eq!(p.partition_function_pct, 100.0, "{name} {}", p.name);
        }
    }
    let healing = rows
        .iter()
        .find(|r| r.topology.starts_with("Self-Healing"))
        .unwrap();
    assert_eq!(healing.partitions.len(), 3, "5-5, 7-3 and 6-2-2");
}

#[test]
fn every_topology_propagates_and_is_callable_without_loss() {
    check_all(0.0);
}

#[test]
fn every_topology_propagates_and_is_callable_with_two_percent_loss() {
    check_all(0.02);
}

#[test]
fn the_same_seed_gives_the_same_metrics() {
    let run = || serde_json::to_string(&compare::run(&options(0.02, 1), |_| {})).unwrap();
    assert_eq!(run(), run());
}

/// One random scenario: a small cluster, lossy links, random crashes and a
/// partition; afterwards every invariant must hold.
fn random_cluster(seed: u64, n: usize, loss: f64, crashes: usize, split: usize) {
    let mut sim = Sim::new(seed);
    sim.net.default_link = Link::latency(Duration::from_millis(1)).with_loss(loss);
    let nodes = chain(&mut sim, n, &Config::default());
    within(&mut sim, Duration::from_secs(60), |s| converged(s, &nodes)).expect("converged");
    sim.register(0, FunctionSpec::new("f").idempotent(true));
    sim.register(n - 1, FunctionSpec::new("f").idempotent(true));
    // A partition, held then healed.
    let (a, b) = nodes.split_at(split.clamp(1, n - 1));
    sim.partition(&[a, b]);
    sim.run_for(Duration::from_secs(20));
    sim.heal();
    // Crashes of nodes that provide nothing.
    let victims: Vec<usize> = (1..n - 1).take(crashes).collect();
    for v in &victims {
        sim.crash(*v);
    }
    let live: Vec<usize> = nodes
        .iter()
        .copied()
        .filter(|i| !victims.contains(i))
        .collect();
    let bound = Config::default().detection_bound(n) + Duration::from_secs(30);
    let settled = within(&mut sim, bound, |s| {
        converged(s, &live)
            && digests_agree(s, &live)
            && live.iter().all(|i| {
                victims
                    .iter()
                    .all(|v| s.node(*i).unwrap().member_state(&s.id(*v)) == Some(MemberState::Dead))
            })
    });
    assert!(
        settled.is_some(),
        "seed {seed}: live nodes converge, the crashed are Dead everywhere"
    );
    // No live node stays Dead, and calls to a live provider succeed.
    let calls: Vec<_> = live
        .iter()
        .map(|i| sim.call(*i, Call::new("f")).expect("routable"))
        .collect();
    sim.run_for(Duration::from_secs(5));
    for c in calls {
        let rec = sim
            .log
            .calls
            .iter()
            .find(|r| r.call == c)
            .expect("completed");
        assert!(rec.result.is_ok(), "seed {seed}: {:?}", rec.result);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn random_small_clusters_keep_the_invariants(
        seed in any::<u64>(),
        n in 3usize..9,
        loss in 0.0f64..0.05,
        crashes in 0usize..3,
        split in 1usize..8,
    ) {
        random_cluster(seed, n, loss, crashes.min(n - 2), split);
    }
}
