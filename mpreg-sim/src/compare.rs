//! The comparison report: the guide's topologies measured from observed
//! events in virtual time, beside the figures the guide published.
//!
//! # JSON rows (`mpreg-sim compare --json`)
//!
//! One object per topology:
//!
//! | field | meaning |
//! |---|---|
//! | `topology` | name, with its node count |
//! | `nodes` | cluster size |
//! | `seeds` | runs aggregated |
//! | `loss` | per-frame loss rate of every link |
//! | `model` | `Stream` or `Datagram` |
//! | `membership_converged_s` | median time from start until every node knows every other Alive |
//! | `propagation_pct` | % of (node, seed) pairs whose catalog had the new function by the end of the run (100 = all) |
//! | `propagation_pct_at_0_5s`, `propagation_pct_at_2s` | the same, 0.5 s and 2 s after registration (the guide's tests slept about that long) |
//! | `propagation_s_median`, `propagation_s_p95` | time from registration until every catalog had it |
//! | `callability_pct` | % of (node, seed) pairs whose call to the new function succeeded |
//! | `callability_s_median`, `callability_s_p95` | time from registration until a call from every node had succeeded (each node retries every 10 ms) |
//! | `frames_per_update`, `copies_per_update` | frames carrying update payloads (gossip, anti-entropy, bridge summaries), and payload copies, sent cluster-wide for the one registration |
//! | `frames_per_node_s`, `bytes_per_node_s` | steady-state traffic sent per node per second |
//! | `links_per_node`, `links_per_node_max` | open connections per node (mean, max) |
//! | `detection_s_median` | time from a silent crash until every live node marked it Dead |
//! | `false_dead` | live nodes ever declared Dead |
//! | `partitions` | per partition scenario: `heal_s_median` (heal → identical catalogs and full membership) and `recovered_pct` |
//! | `guide` | the guide's published connection efficiency, propagation and setup time |

use crate::scenario::{converged, time_until};
use crate::topology::{GuideFigures, TopologyBuilder};
use crate::{Link, LinkModel, Sim};
use mpreg_proto::{Call, Config, Event, FunctionSpec};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::Duration;

/// Options of a comparison run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seeds per topology.
    pub seeds: u64,
    /// Loss rate of every link.
    pub loss: f64,
    /// Link model.
    pub model: LinkModel,
    /// Node configuration.
    pub config: Config,
}

/// One partition scenario's outcome over the seeds.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionRow {
    /// Name, e.g. "Split Brain (5-5)".
    pub name: String,
    /// Median time from heal until identical catalogs and full membership.
    pub heal_s_median: Option<f64>,
    /// Worst seed.
    pub heal_s_max: Option<f64>,
    /// % of nodes that fully recovered (every node Alive) within 30 s.
    pub recovered_pct: f64,
    /// % of nodes that had, after the heal, the function registered on the
    /// largest side during the partition.
    pub partition_function_pct: f64,
}

/// One topology's row.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    #[allow(missing_docs)]
    pub topology: String,
    #[allow(missing_docs)]
    pub nodes: usize,
    #[allow(missing_docs)]
    pub seeds: u64,
    #[allow(missing_docs)]
    pub loss: f64,
    #[allow(missing_docs)]
    pub model: String,
    #[allow(missing_docs)]
    pub membership_converged_s: Option<f64>,
    #[allow(missing_docs)]
    pub propagation_pct: f64,
    #[allow(missing_docs)]
    pub propagation_pct_at_0_5s: f64,
    #[allow(missing_docs)]
    pub propagation_pct_at_2s: f64,
    #[allow(missing_docs)]
    pub propagation_s_median: Option<f64>,
    #[allow(missing_docs)]
    pub propagation_s_p95: Option<f64>,
    #[allow(missing_docs)]
    pub callability_pct: f64,
    #[allow(missing_docs)]
    pub callability_s_median: Option<f64>,
    #[allow(missing_docs)]
    pub callability_s_p95: Option<f64>,
    #[allow(missing_docs)]
    pub frames_per_update: f64,
    #[allow(missing_docs)]
    pub copies_per_update: f64,
    #[allow(missing_docs)]
    pub frames_per_node_s: f64,
    #[allow(missing_docs)]
    pub bytes_per_node_s: f64,
    #[allow(missing_docs)]
    pub links_per_node: f64,
    #[allow(missing_docs)]
    pub links_per_node_max: usize,
    #[allow(missing_docs)]
    pub detection_s_median: Option<f64>,
    #[allow(missing_docs)]
    pub false_dead: usize,
    #[allow(missing_docs)]
    pub partitions: Vec<PartitionRow>,
    #[allow(missing_docs)]
    pub guide: GuideFigures,
    /// Propagation over time (ms since registration, % of nodes), first seed.
    #[serde(skip)]
    pub curve: Vec<(f64, f64)>,
}

/// What one seeded run measured.
#[derive(Clone, Debug, Default)]
struct Run {
    converged: Option<f64>,
    propagation: Option<f64>,
    propagated: usize,
    at_half: usize,
    at_two: usize,
    callable: Option<f64>,
    called: usize,
    frames_per_update: u64,
    copies: u64,
    rate: (f64, f64),
    links: (f64, usize),
    detection: Option<f64>,
    false_dead: BTreeSet<usize>,
    curve: Vec<(f64, f64)>,
    partitions: Vec<(Option<f64>, usize, usize)>,
    nodes: usize,
}

fn updates_out(sim: &Sim, nodes: &[usize]) -> (u64, u64) {
    nodes
        .iter()
        .filter_map(|i| sim.node(*i))
        .fold((0, 0), |a, n| {
            let m = n.metrics();
            let frames = m.frames_out_of(mpreg_proto::wire::MessageKind::Gossip)
                + m.frames_out_of(mpreg_proto::wire::MessageKind::SyncUpdates)
                + m.frames_out_of(mpreg_proto::wire::MessageKind::Summary);
            (a.0 + frames, a.1 + m.updates_sent)
        })
}

fn has(sim: &Sim, i: usize, f: &str) -> bool {
    sim.node(i)
        .is_some_and(|n| !n.catalog().providers(f).is_empty())
}

fn one_run(t: &dyn TopologyBuilder, seed: u64, o: &Options) -> Run {
    let mut sim = Sim::new(seed);
    sim.net.model = o.model;
    sim.net.default_link = Link::latency(Duration::from_millis(1)).with_loss(o.loss);
    let topo = t.build(&mut sim, &o.config);
    let nodes = topo.nodes.clone();
    // Membership is per cluster: one group unless the topology federates.
    let clusters: Vec<Vec<usize>> = if topo.federated {
        topo.groups.iter().map(|g| g.1.clone()).collect()
    } else {
        vec![nodes.clone()]
    };
    let mut r = Run {
        nodes: nodes.len(),
        ..Run::default()
    };
    let ms = Duration::from_millis(1);
    r.converged = time_until(&mut sim, Duration::from_secs(60), ms, |s| {
        clusters.iter().all(|g| converged(s, g))
    })
    .map(|d| d.as_secs_f64());
    sim.run_for(Duration::from_secs(5));
    r.rate = crate::scenario::steady_rate(&mut sim, &nodes, Duration::from_secs(10));
    let counts = sim.connection_counts();
    let conns: Vec<usize> = nodes.iter().map(|i| counts[*i]).collect();
    r.links = (
        conns.iter().sum::<usize>() as f64 / nodes.len() as f64,
        conns.iter().copied().max().unwrap_or(0),
    );

    // A new function on the last node: propagation and callability.
    let provider = *nodes.last().unwrap_or(&0);
    let before = updates_out(&sim, &nodes);
    sim.register(
        provider,
        FunctionSpec::new("new-function")
            .resources(["gpu"])
            .idempotent(true),
    );
    let start = sim.now();
    let mut done_calls: BTreeSet<usize> = BTreeSet::new();
    let mut waiting: Vec<(usize, mpreg_proto::CallId)> = Vec::new();
    let mut next_try = vec![start; sim.len()];
    let mut seen = 0;
    let limit = Duration::from_secs(20);
    while sim.now() < start + limit {
        let t_ms = sim.now().saturating_since(start).as_secs_f64() * 1e3;
        let have = nodes
            .iter()
            .filter(|i| has(&sim, **i, "new-function"))
            .count();
        if r.curve
            .last()
            .is_none_or(|l| l.1 != 100.0 * have as f64 / nodes.len() as f64)
        {
            r.curve
                .push((t_ms, 100.0 * have as f64 / nodes.len() as f64));
        }
        if t_ms <= 500.0 {
            r.at_half = have;
        }
        if t_ms <= 2000.0 {
            r.at_two = have;
        }
        if have == nodes.len() && r.propagation.is_none() {
            r.propagation = Some(t_ms / 1e3);
        }
        for c in &sim.log.calls[seen..] {
            if let Some(pos) = waiting.iter().position(|w| w.1 == c.call) {
                let (node, _) = waiting.remove(pos);
                if c.result.is_ok() {
                    done_calls.insert(node);
                } else {
                    next_try[node] = c.at + Duration::from_millis(10);
                }
            }
        }
        seen = sim.log.calls.len();
        for &i in &nodes {
            if done_calls.contains(&i)
                || waiting.iter().any(|w| w.0 == i)
                || sim.now() < next_try[i]
            {
                continue;
            }
            match sim.call(
                i,
                Call::new("new-function")
                    .locs(["gpu"])
                    .timeout(Duration::from_secs(5)),
            ) {
                Ok(id) => waiting.push((i, id)),
                Err(_) => next_try[i] = sim.now() + Duration::from_millis(10),
            }
        }
        if done_calls.len() == nodes.len() && r.callable.is_none() {
            r.callable = Some(t_ms / 1e3);
        }
        if r.propagation.is_some() && r.callable.is_some() {
            break;
        }
        sim.run_for(Duration::from_micros(500));
    }
    r.propagated = nodes
        .iter()
        .filter(|i| has(&sim, **i, "new-function"))
        .count();
    r.called = done_calls.len();
    sim.run_for(Duration::from_secs(1));
    let after = updates_out(&sim, &nodes);
    r.frames_per_update = after.0 - before.0;
    r.copies = after.1 - before.1;

    // Partitions, each held 30 probe periods, then healed. Deaths declared
    // while a partition lasts (and until it has healed) are expected.
    let mut excused: Vec<(mpreg_proto::Time, mpreg_proto::Time)> = Vec::new();
    let live = nodes.clone();
    for (_, groups) in &topo.partitions {
        let refs: Vec<&[usize]> = groups.iter().map(|g| g.as_slice()).collect();
        let split_at = sim.now();
        sim.partition(&refs);
        let largest = groups.iter().max_by_key(|g| g.len()).map_or(0, |g| g[0]);
        let name = format!("partition-test-{largest}-{}", sim.now().as_micros());
        sim.register(
            largest,
            FunctionSpec::new(&name).resources(["partition-resource"]),
        );
        sim.run_for(o.config.membership.probe_period * 30);
        sim.heal();
        let healed = time_until(&mut sim, Duration::from_secs(30), ms, |s| {
            converged(s, &live) && crate::scenario::digests_agree(s, &live)
        })
        .map(|d| d.as_secs_f64());
        excused.push((split_at, sim.now()));
        let recovered = live
            .iter()
            .filter(|i| {
                sim.node(**i)
                    .is_some_and(|n| n.live_members() == live.len())
            })
            .count();
        let got = live.iter().filter(|i| has(&sim, **i, &name)).count();
        r.partitions.push((healed, recovered, got));
    }

    // A silent crash of a node that is not the provider.
    let victim = nodes[nodes.len() / 2];
    // Its own cluster's members are the ones that know it.
    let observers: Vec<usize> = clusters
        .iter()
        .find(|g| g.contains(&victim))
        .cloned()
        .unwrap_or_default();
    r.detection = crate::scenario::detection(&mut sim, &observers, victim, Duration::from_secs(30))
        .map(|d| d.as_secs_f64());

    for o in &sim.log.events {
        let during_split = excused.iter().any(|(a, b)| o.at >= *a && o.at <= *b);
        if let Event::MemberDown { id } = &o.event
            && !during_split
            && let Some(j) = sim.index_of(id)
            && j != victim
        {
            r.false_dead.insert(j);
        }
    }
    r
}

fn pct(k: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        100.0 * k as f64 / n as f64
    }
}

fn quantile(v: &[Option<f64>], q: f64) -> Option<f64> {
    let mut x: Vec<f64> = v.iter().copied().collect::<Option<Vec<f64>>>()?;
    if x.is_empty() {
        return None;
    }
    x.sort_by(f64::total_cmp);
    let i = ((q * x.len() as f64).ceil() as usize).clamp(1, x.len()) - 1;
    Some(x[i])
}

/// Measures one topology over the seeds.
pub fn measure(
    t: &dyn TopologyBuilder,
    guide: GuideFigures,
    o: &Options,
    partition_names: &[String],
) -> Row {
    let runs: Vec<Run> = (0..o.seeds).map(|s| one_run(t, s + 1, o)).collect();
    let n = runs.first().map_or(0, |r| r.nodes);
    let total = n * runs.len();
    let col = |f: &dyn Fn(&Run) -> Option<f64>| runs.iter().map(f).collect::<Vec<_>>();
    let mean = |f: &dyn Fn(&Run) -> f64| runs.iter().map(f).sum::<f64>() / runs.len().max(1) as f64;
    let partitions = partition_names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let heal = col(&|r| r.partitions.get(k).and_then(|p| p.0));
            let live = n * runs.len();
            PartitionRow {
                name: name.clone(),
                heal_s_median: quantile(&heal, 0.5),
                heal_s_max: quantile(&heal, 1.0),
                recovered_pct: pct(
                    runs.iter()
                        .map(|r| r.partitions.get(k).map_or(0, |p| p.1))
                        .sum(),
                    live,
                ),
                partition_function_pct: pct(
                    runs.iter()
                        .map(|r| r.partitions.get(k).map_or(0, |p| p.2))
                        .sum(),
                    live,
                ),
            }
        })
        .collect();
    Row {
        topology: t.name(),
        nodes: n,
        seeds: o.seeds,
        loss: o.loss,
        model: format!("{:?}", o.model),
        membership_converged_s: quantile(&col(&|r| r.converged), 0.5),
        propagation_pct: pct(runs.iter().map(|r| r.propagated).sum(), total),
        propagation_pct_at_0_5s: pct(runs.iter().map(|r| r.at_half).sum(), total),
        propagation_pct_at_2s: pct(runs.iter().map(|r| r.at_two).sum(), total),
        propagation_s_median: quantile(&col(&|r| r.propagation), 0.5),
        propagation_s_p95: quantile(&col(&|r| r.propagation), 0.95),
        callability_pct: pct(runs.iter().map(|r| r.called).sum(), total),
        callability_s_median: quantile(&col(&|r| r.callable), 0.5),
        callability_s_p95: quantile(&col(&|r| r.callable), 0.95),
        frames_per_update: mean(&|r| r.frames_per_update as f64),
        copies_per_update: mean(&|r| r.copies as f64),
        frames_per_node_s: mean(&|r| r.rate.0),
        bytes_per_node_s: mean(&|r| r.rate.1),
        links_per_node: mean(&|r| r.links.0),
        links_per_node_max: runs.iter().map(|r| r.links.1).max().unwrap_or(0),
        detection_s_median: quantile(&col(&|r| r.detection), 0.5),
        false_dead: runs.iter().map(|r| r.false_dead.len()).sum(),
        partitions,
        guide,
        curve: runs.first().map(|r| r.curve.clone()).unwrap_or_default(),
    }
}

/// Measures the guide's five topologies, then the federated variants
/// (hierarchical tiers and datacenters as bridged clusters).
pub fn run(o: &Options, mut progress: impl FnMut(&str)) -> Vec<Row> {
    crate::topology::guide_topologies()
        .into_iter()
        .map(|(t, guide)| {
            progress(&t.name());
            let mut probe = Sim::new(0);
            let names: Vec<String> = t
                .build(&mut probe, &o.config)
                .partitions
                .into_iter()
                .map(|p| p.0)
                .collect();
            measure(t.as_ref(), guide, o, &names)
        })
        .collect()
}
