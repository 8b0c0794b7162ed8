//! Helpers shared by the scenario tests.
#![allow(dead_code, unreachable_pub)]

use mpreg_proto::{Config, MemberState, Time};
use mpreg_sim::Sim;
use std::time::Duration;

/// Seeds a test runs with: `MPREG_SEED=n` replays one.
pub fn seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var("MPREG_SEED") {
        Ok(s) => vec![s.parse().expect("MPREG_SEED must be a number")],
        Err(_) => default.to_vec(),
    }
}

/// Runs `f` for every seed, naming the seed if it panics.
pub fn for_seeds(default: &[u64], mut f: impl FnMut(u64)) {
    for seed in seeds(default) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(seed)));
        if let Err(e) = r {
            eprintln!("failed with seed {seed}; replay with MPREG_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
}

/// `n` nodes, node i seeded with node i-1 (the guide's dynamic mesh).
pub fn chain(sim: &mut Sim, n: usize, cfg: &Config) -> Vec<usize> {
    let nodes: Vec<usize> = (0..n).map(|_| sim.add_node(cfg.clone())).collect();
    for i in 1..n {
        sim.join(nodes[i], &[nodes[i - 1]]);
    }
    nodes
}

/// Whether every running node in `nodes` sees every other one in `nodes`
/// Alive (and counts no other live member).
pub fn converged(sim: &Sim, nodes: &[usize]) -> bool {
    let up: Vec<usize> = nodes.iter().copied().filter(|i| sim.is_up(*i)).collect();
    up.iter().all(|i| {
        let n = sim.node(*i).unwrap();
        n.live_members() == up.len()
            && up
                .iter()
                .all(|j| n.member_state(&sim.id(*j)) == Some(MemberState::Alive))
    })
}

/// Runs until `pred` or `limit` from now; returns the elapsed time.
pub fn within(sim: &mut Sim, limit: Duration, pred: impl FnMut(&Sim) -> bool) -> Option<Duration> {
    let start = sim.now();
    sim.run_until_true(start + limit, Duration::from_millis(1), pred)
        .map(|t| t.saturating_since(start))
}

/// Whether every running node's catalog and member table digest agree.
pub fn digests_agree(sim: &Sim, nodes: &[usize]) -> bool {
    let mut d = nodes
        .iter()
        .filter(|i| sim.is_up(**i))
        .map(|i| sim.node(*i).unwrap().state_digest());
    let first = d.next();
    d.all(|x| Some(x) == first)
}

pub fn t(secs: f64) -> Time {
    Time::from_micros((secs * 1e6) as u64)
}
