//! Measured scenarios: each figure comes from an event observed in virtual
//! time, never from a fixed sleep.

use crate::{Link, LinkModel, Sim};
use mpreg_proto::{Config, Event, FunctionSpec, MemberState, Time};
use std::time::Duration;

/// Chains `n` nodes: node i joins through node i-1.
pub fn chain(sim: &mut Sim, n: usize, cfg: &Config) -> Vec<usize> {
    let nodes: Vec<usize> = (0..n).map(|_| sim.add_node(cfg.clone())).collect();
    for i in 1..n {
        sim.join(nodes[i], &[nodes[i - 1]]);
    }
    nodes
}

/// Nodes (among `nodes`, running) that see every running node of `nodes`
/// as a live member.
pub fn full_membership(sim: &Sim, nodes: &[usize]) -> usize {
    let up = nodes.iter().filter(|i| sim.is_up(**i)).count();
    nodes
        .iter()
        .filter_map(|i| sim.node(*i))
        .filter(|n| n.live_members() == up)
        .count()
}

/// Every running node knows every running node Alive.
pub fn converged(sim: &Sim, nodes: &[usize]) -> bool {
    let up: Vec<usize> = nodes.iter().copied().filter(|i| sim.is_up(*i)).collect();
    up.iter().all(|i| {
        let n = sim
            .node(*i)
            .unwrap_or_else(|| unreachable!("filtered to running nodes"));
        n.live_members() == up.len()
            && up
                .iter()
                .all(|j| n.member_state(&sim.id(*j)) == Some(MemberState::Alive))
    })
}

/// Runs until `pred` holds, checking every `step`, for at most `limit`;
/// returns the elapsed virtual time.
pub fn time_until(
    sim: &mut Sim,
    limit: Duration,
    step: Duration,
    pred: impl FnMut(&Sim) -> bool,
) -> Option<Duration> {
    let start = sim.now();
    sim.run_until_true(start + limit, step, pred)
        .map(|t| t.saturating_since(start))
}

/// How a cold chain join went.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct JoinTimes {
    /// Until 90% of nodes had the full member list (seconds).
    pub t90: Option<f64>,
    /// Until every node had it.
    pub t100: Option<f64>,
}

/// A cold chain join of `n` nodes, all started at once.
pub fn chain_join(
    seed: u64,
    n: usize,
    cfg: &Config,
    net: &crate::NetConfig,
    limit: Duration,
) -> JoinTimes {
    let mut sim = Sim::new(seed);
    sim.net = net.clone();
    sim.record_events = false;
    let nodes = chain(&mut sim, n, cfg);
    let mut t90 = None;
    let start = sim.now();
    let step = Duration::from_millis(1);
    let t100 = sim.run_until_true(start + limit, step, |s| {
        let full = full_membership(s, &nodes);
        if t90.is_none() && full * 10 >= n * 9 {
            t90 = Some(s.now().saturating_since(start).as_secs_f64());
        }
        full == n
    });
    JoinTimes {
        t90,
        t100: t100.map(|t| t.saturating_since(start).as_secs_f64()),
    }
}

/// A converged chain cluster, settled for `settle`.
pub fn converged_cluster(
    seed: u64,
    n: usize,
    cfg: &Config,
    net: &crate::NetConfig,
    settle: Duration,
) -> Option<(Sim, Vec<usize>)> {
    let mut sim = Sim::new(seed);
    sim.net = net.clone();
    sim.record_events = false;
    let nodes = chain(&mut sim, n, cfg);
    time_until(
        &mut sim,
        Duration::from_secs(120),
        Duration::from_millis(5),
        |s| converged(s, &nodes),
    )?;
    sim.run_for(settle);
    Some((sim, nodes))
}

/// Time for a function registered on one node to reach every catalog.
pub fn propagation(
    sim: &mut Sim,
    nodes: &[usize],
    on: usize,
    name: &str,
    limit: Duration,
) -> Option<Duration> {
    sim.register(on, FunctionSpec::new(name));
    time_until(sim, limit, Duration::from_micros(500), |s| {
        // The event tally says when it may be complete; the catalogs say
        // whether it is.
        s.tally.added.get(name).is_some_and(|k| *k >= nodes.len())
            && nodes
                .iter()
                .filter_map(|i| s.node(*i))
                .all(|n| !n.catalog().providers(name).is_empty())
    })
}

/// Time from a silent crash of `victim` until every running node marks it
/// Dead. The crash falls at a random instant of the next second (one
/// default probe period): nodes created together keep their timers in
/// step, and a crash always just after (or before) the same probe round
/// would measure that phase instead of the protocol.
pub fn detection(
    sim: &mut Sim,
    nodes: &[usize],
    victim: usize,
    limit: Duration,
) -> Option<Duration> {
    let phase = crate::derive_seed(sim.seed(), 0xC4A5) % 1_000_000;
    sim.run_for(Duration::from_micros(phase));
    let id = sim.id(victim);
    sim.crash(victim);
    let need = nodes.iter().filter(|i| sim.is_up(**i)).count();
    time_until(sim, limit, Duration::from_millis(1), |s| {
        s.tally.down.get(&id).is_some_and(|k| *k >= need)
            && nodes
                .iter()
                .filter_map(|i| s.node(*i))
                .all(|n| n.member_state(&id) == Some(MemberState::Dead))
    })
}

/// Frames and bytes sent per node per second over `window`.
pub fn steady_rate(sim: &mut Sim, nodes: &[usize], window: Duration) -> (f64, f64) {
    let totals = |s: &Sim| {
        nodes
            .iter()
            .filter_map(|i| s.node(*i))
            .fold((0u64, 0u64), |a, n| {
                (
                    a.0 + n.metrics().total_frames_out(),
                    a.1 + n.metrics().total_bytes_out(),
                )
            })
    };
    let before = totals(sim);
    sim.run_for(window);
    let after = totals(sim);
    let per = nodes.len() as f64 * window.as_secs_f64();
    (
        (after.0 - before.0) as f64 / per,
        (after.1 - before.1) as f64 / per,
    )
}

/// What a lossy run produced.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LossOutcome {
    /// Live nodes some node declared Dead.
    pub false_dead: usize,
    /// Nodes forced to rejoin under a new identity (never, by design: a
    /// node refutes instead).
    pub forced_rejoins: usize,
    /// Times a node refuted a suspicion or death of itself.
    pub refutations: u64,
    /// Suspicions raised.
    pub suspicions: u64,
}

/// `n` nodes under `loss` for `periods` probe periods.
pub fn lossy(
    seed: u64,
    n: usize,
    periods: u32,
    loss: f64,
    model: LinkModel,
) -> Option<LossOutcome> {
    let cfg = Config::default();
    let net = crate::NetConfig::default();
    let (mut sim, nodes) = converged_cluster(seed, n, &cfg, &net, Duration::from_secs(5))?;
    sim.record_events = true;
    sim.net.model = model;
    sim.net.default_link = Link::latency(Duration::from_millis(1)).with_loss(loss);
    sim.run_for(cfg.membership.probe_period * periods);
    // Distinct live members that some node declared Dead.
    let false_dead = sim
        .log
        .events
        .iter()
        .filter_map(|o| match o.event {
            Event::MemberDown { id } => Some(id),
            _ => None,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let (mut refutations, mut suspicions) = (0, 0);
    for n in nodes.iter().filter_map(|i| sim.node(*i)) {
        refutations += n.metrics().refutations;
        suspicions += n.metrics().suspicions;
    }
    Some(LossOutcome {
        false_dead,
        forced_rejoins: 0,
        refutations,
        suspicions,
    })
}

/// Whether every running node in `nodes` has the same state digest.
pub fn digests_agree(sim: &Sim, nodes: &[usize]) -> bool {
    let mut d = nodes
        .iter()
        .filter_map(|i| sim.node(*i))
        .map(|n| n.state_digest());
    let first = d.next();
    d.all(|x| Some(x) == first)
}

/// Seconds, for reports.
pub fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

/// The median of some values (`None` if any is missing).
pub fn median(v: &[Option<f64>]) -> Option<f64> {
    let mut x: Vec<f64> = v.iter().copied().collect::<Option<Vec<f64>>>()?;
    if x.is_empty() {
        return None;
    }
    x.sort_by(f64::total_cmp);
    Some(x[x.len() / 2])
}

/// The largest of some values (`None` if any is missing).
pub fn worst(v: &[Option<f64>]) -> Option<f64> {
    v.iter()
        .copied()
        .collect::<Option<Vec<f64>>>()?
        .into_iter()
        .reduce(f64::max)
}

/// A time in the virtual clock, for printing.
pub fn at(t: Time) -> f64 {
    t.as_micros() as f64 / 1e6
}
