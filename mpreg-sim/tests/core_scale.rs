//! Scale properties of the core: payload copies per update and bounded
//! connections, under the stream model.

mod common;

use common::*;
use mpreg_proto::{Config, FunctionSpec};
use mpreg_sim::Sim;
use std::time::Duration;

fn updates_sent(sim: &Sim) -> u64 {
    sim.up_nodes()
        .iter()
        .map(|i| sim.node(*i).unwrap().metrics().updates_sent)
        .sum()
}

#[test]
fn a_catalog_update_costs_at_most_two_copies_per_node_at_n_100() {
    for_seeds(&[101, 102], |seed| {
        let n = 100;
        let mut sim = Sim::new(seed);
        let nodes = chain(&mut sim, n, &Config::default());
        within(&mut sim, Duration::from_secs(30), |s| converged(s, &nodes)).expect("converged");
        // Let the overlay and the broadcast tree settle.
        sim.run_for(Duration::from_secs(30));
        let mut worst = 0;
        for k in 0..5 {
            let before = updates_sent(&sim);
            let name = format!("f{k}");
            sim.register(k * 7, FunctionSpec::new(&name));
            within(&mut sim, Duration::from_secs(5), |s| {
                nodes
                    .iter()
                    .all(|i| !s.node(*i).unwrap().catalog().providers(&name).is_empty())
            })
            .expect("propagated");
            // Count every copy, repairs included, until things are quiet.
            sim.run_for(Duration::from_secs(1));
            let copies = updates_sent(&sim) - before;
            eprintln!("seed {seed}: update {k}: {copies} payload copies for {n} nodes");
            worst = worst.max(copies);
        }
        assert!(worst <= 2 * n as u64, "{worst} copies > 2N");
    });
}

#[test]
fn connections_per_node_stay_bounded_at_n_500() {
    let n = 500;
    let cfg = Config::default();
    let mut sim = Sim::new(501);
    let nodes = chain(&mut sim, n, &cfg);
    within(&mut sim, Duration::from_secs(30), |s| converged(s, &nodes)).expect("converged");
    sim.run_for(Duration::from_secs(60));
    let view = cfg.active_view_target(n) + cfg.overlay.active_view_slack;
    let mut max = 0;
    let mut total = 0;
    for _ in 0..10 {
        sim.run_for(Duration::from_secs(3));
        for i in &nodes {
            let c = sim.connections(*i);
            max = max.max(c);
            total += c;
        }
    }
    let views: Vec<usize> = nodes
        .iter()
        .map(|i| sim.node(*i).unwrap().active_view().len())
        .collect();
    let transient: Vec<usize> = nodes
        .iter()
        .map(|i| sim.transient_connections(*i))
        .collect();
    eprintln!(
        "mean active view {:.1}, transient max {} mean {:.1}",
        views.iter().sum::<usize>() as f64 / n as f64,
        transient.iter().max().unwrap(),
        transient.iter().sum::<usize>() as f64 / n as f64
    );
    eprintln!(
        "N={n}: connections per node max {max}, mean {:.1}; active view max {} (configured {view})",
        total as f64 / (10 * n) as f64,
        views.iter().max().unwrap()
    );
    assert!(views.iter().all(|v| *v <= view));
    // The constant: a probe-only link to the ring successor and one from
    // the ring predecessor while they are outside the view, plus a few
    // short-lived dials (indirect probes, anti-entropy with a random member).
    let constant = 2 + 3;
    assert!(
        max <= view + constant,
        "max {max} connections > {view} + {constant}"
    );
}
