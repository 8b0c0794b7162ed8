//! The scale report: clusters of growing size, each run for a span of
//! virtual time in which functions are registered and 1% of nodes crash.
//!
//! Every figure comes from an observed event. Memory is the process's peak
//! resident set while the row ran (reset between rows where Linux allows).

use crate::scenario;
use crate::{NetConfig, Sim};
use mpreg_proto::{Config, MemberState, Time};
use serde::Serialize;
use std::time::{Duration, Instant};

/// How a cluster starts.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// Nodes seeded as a chain join from nothing.
    Cold,
    /// Nodes start knowing every member (a converged snapshot), with no
    /// connections yet.
    Snapshot,
}

/// One cluster size's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Cluster size.
    pub nodes: usize,
    /// How it started.
    pub start: Start,
    /// Virtual seconds simulated.
    pub seconds: f64,
    /// Cold: until every node knew every member. Snapshot: until every
    /// node's active view reached its minimum.
    pub join_s: Option<f64>,
    /// Functions registered.
    pub functions: usize,
    /// Median time for a new function to reach every catalog.
    pub propagation_s_median: Option<f64>,
    /// Slowest function.
    pub propagation_s_max: Option<f64>,
    /// Payload copies sent cluster-wide for the first registration (which
    /// also prunes a snapshot-started cluster's broadcast tree).
    pub copies_first_update: u64,
    /// Median copies over the other registrations.
    pub copies_per_update_median: u64,
    /// Nodes crashed (1%).
    pub crashed: usize,
    /// Median over crashed nodes of the time until every live node marked
    /// it Dead.
    pub detection_s_median: Option<f64>,
    /// Slowest detection.
    pub detection_s_max: Option<f64>,
    /// Live nodes some node declared Dead.
    pub false_dead: usize,
    /// Steady state, before the registrations: frames sent per node per s.
    pub frames_per_node_s: f64,
    /// Steady state: bytes sent per node per s.
    pub bytes_per_node_s: f64,
    /// Open connections per node at the end (mean).
    pub connections_mean: f64,
    /// And the most any node had.
    pub connections_max: usize,
    /// Peak resident memory of the process during the row, in MiB.
    pub peak_mib: Option<f64>,
    /// Wall-clock seconds the row took.
    pub wall_s: f64,
    /// Simulator events processed.
    pub events: u64,
}

fn peak_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|x| x.parse::<f64>().ok())
        })
        .map_or(0.0, |pages| pages * 4096.0 / 1048576.0)
}

fn phase(name: &str, sim: &Sim, wall: &Instant) {
    if std::env::var("MPREG_PHASES").is_ok() {
        let mut kinds = Vec::new();
        for k in mpreg_proto::wire::MessageKind::ALL {
            let f: u64 = sim
                .up_nodes()
                .iter()
                .filter_map(|i| sim.node(*i))
                .map(|n| n.metrics().frames_out[k.index()])
                .sum();
            if f > 0 {
                kinds.push(format!("{k:?}={f}"));
            }
        }
        eprintln!("  kinds {}", kinds.join(" "));
        let (mut o, mut r, mut su, mut d, mut dup) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for n in sim.up_nodes().iter().filter_map(|i| sim.node(*i)) {
            let m = n.metrics();
            o += m.broadcasts_originated;
            r += m.broadcasts_relayed;
            su += m.suspicions;
            d += m.deaths_declared;
            dup += m.duplicate_updates;
        }
        eprintln!("  originated {o} relayed {r} suspicions {su} deaths {d} dups {dup}");
        let (mut ses, mut tim, mut q, mut pend) = (0usize, 0usize, 0usize, 0usize);
        for n in sim.up_nodes().iter().filter_map(|i| sim.node(*i)) {
            ses += n.connection_count();
            tim += n.timer_count();
            q += n.queued_orders();
            pend += n.pending_calls();
        }
        eprintln!(
            "  connections {ses} timers {tim} queued {q} pending {pend} sim {:?}",
            sim.debug_sizes()
        );
        eprintln!(
            "phase {name}: t={:?} rss {:.0} MiB wall {:.1}s events {}",
            sim.now(),
            rss_mib(),
            wall.elapsed().as_secs_f64(),
            sim.processed()
        );
    }
}

fn reset_peak() {
    // Linux: writing 5 to clear_refs resets the peak RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn updates_sent(sim: &Sim) -> u64 {
    sim.up_nodes()
        .iter()
        .filter_map(|i| sim.node(*i))
        .map(|n| n.metrics().updates_sent)
        .sum()
}

/// Runs one cluster size for `seconds` of virtual time.
pub fn run(n: usize, seconds: u64, start: Start, seed: u64, mut progress: impl FnMut(f64)) -> Row {
    reset_peak();
    let wall = Instant::now();
    let cfg = Config::default();
    let mut sim = Sim::new(seed);
    sim.net = NetConfig::default();
    sim.record_events = false;
    let nodes = match start {
        Start::Cold => scenario::chain(&mut sim, n, &cfg),
        Start::Snapshot => sim.add_converged(n, &cfg),
    };
    phase("built", &sim, &wall);
    let end = Time::from_secs(seconds);
    let step = Duration::from_millis(5);
    let min_view = cfg.overlay.active_view_min;
    let join = sim
        .run_until_true(end, step, |s| match start {
            Start::Cold => scenario::full_membership(s, &nodes) == nodes.len(),
            Start::Snapshot => nodes
                .iter()
                .filter_map(|i| s.node(*i))
                .all(|nd| nd.active_view().len() >= min_view),
        })
        .map(|t| t.since_epoch().as_secs_f64());
    progress(sim.now().as_micros() as f64 / end.as_micros() as f64);
    phase("joined", &sim, &wall);

    // Steady state: a window after the join settles.
    let window_start = (sim.now() + Duration::from_secs(5)).min(end);
    sim.run_until(window_start);
    let window = Duration::from_secs((seconds / 6).max(2));
    let (frames, bytes) = scenario::steady_rate(&mut sim, &nodes, window);
    progress(sim.now().as_micros() as f64 / end.as_micros() as f64);

    phase("steady", &sim, &wall);
    // Registrations, one at a time.
    let functions = 5;
    let mut props = Vec::new();
    let mut copies = Vec::new();
    for k in 0..functions {
        let on = nodes[(k * 7919 + 13) % nodes.len()];
        let before = updates_sent(&sim);
        let name = format!("scale-fn-{k}");
        props.push(
            scenario::propagation(&mut sim, &nodes, on, &name, Duration::from_secs(10))
                .map(|d| d.as_secs_f64()),
        );
        sim.run_for(Duration::from_millis(500));
        copies.push(updates_sent(&sim) - before);
    }
    progress(sim.now().as_micros() as f64 / end.as_micros() as f64);

    phase("registered", &sim, &wall);
    // Crash 1% (at least one), silently, all at once.
    let crashed: Vec<usize> = (0..(n / 100).max(1))
        .map(|k| nodes[(k * 104_729 + 7) % n])
        .collect();
    let ids: Vec<_> = crashed.iter().map(|i| sim.id(*i)).collect();
    for c in &crashed {
        sim.crash(*c);
    }
    let crash_at = sim.now();
    let live: Vec<usize> = nodes.iter().copied().filter(|i| sim.is_up(*i)).collect();
    let mut detected: Vec<Option<f64>> = vec![None; ids.len()];
    let limit = (crash_at + Duration::from_secs(30)).max(end);
    sim.run_until_true(limit, Duration::from_millis(5), |s| {
        for (k, id) in ids.iter().enumerate() {
            if detected[k].is_none()
                && s.tally.down.get(id).is_some_and(|d| *d >= live.len())
                && live
                    .iter()
                    .filter_map(|i| s.node(*i))
                    .all(|nd| nd.member_state(id) == Some(MemberState::Dead))
            {
                detected[k] = Some(s.now().saturating_since(crash_at).as_secs_f64());
            }
        }
        detected.iter().all(Option::is_some)
    });
    phase("detected", &sim, &wall);
    sim.run_until(end.max(sim.now()));
    progress(1.0);
    phase("end", &sim, &wall);
    // Live nodes that any node ever declared Dead.
    let false_dead = live
        .iter()
        .filter(|j| sim.tally.down.contains_key(&sim.id(**j)))
        .count();
    let counts = sim.connection_counts();
    let conns: Vec<usize> = live.iter().map(|i| counts[*i]).collect();
    let mut rest: Vec<u64> = copies.iter().skip(1).copied().collect();
    rest.sort_unstable();
    Row {
        nodes: n,
        start,
        seconds: sim.now().as_micros() as f64 / 1e6,
        join_s: join,
        functions,
        propagation_s_median: scenario::median(&props),
        propagation_s_max: scenario::worst(&props),
        copies_first_update: copies.first().copied().unwrap_or(0),
        copies_per_update_median: rest.get(rest.len() / 2).copied().unwrap_or(0),
        crashed: crashed.len(),
        detection_s_median: scenario::median(&detected),
        detection_s_max: scenario::worst(&detected),
        false_dead,
        frames_per_node_s: frames,
        bytes_per_node_s: bytes,
        connections_mean: conns.iter().sum::<usize>() as f64 / conns.len().max(1) as f64,
        connections_max: conns.iter().copied().max().unwrap_or(0),
        peak_mib: peak_mib(),
        wall_s: wall.elapsed().as_secs_f64(),
        events: sim.processed(),
    }
}

/// Prints rows as a table.
pub fn table(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let f = |v: Option<f64>, scale: f64, u: &str| {
        v.map_or("never".into(), |v| format!("{:.0}{u}", v * scale))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>6} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>5} {:>9} {:>8} {:>8} {:>9} {:>8}",
        "nodes",
        "start",
        "join",
        "prop p50",
        "prop max",
        "copies1",
        "copies",
        "detect50",
        "detectmx",
        "false",
        "frames/s",
        "B/n/s",
        "conns",
        "peak MiB",
        "wall s"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:>6} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>5} {:>9.1} {:>8.1} {:>4.1}/{:<3} {:>9} {:>8.1}",
            r.nodes,
            format!("{:?}", r.start).to_lowercase(),
            f(r.join_s, 1e3, "ms"),
            f(r.propagation_s_median, 1e3, "ms"),
            f(r.propagation_s_max, 1e3, "ms"),
            r.copies_first_update,
            r.copies_per_update_median,
            f(r.detection_s_median, 1e3, "ms"),
            f(r.detection_s_max, 1e3, "ms"),
            r.false_dead,
            r.frames_per_node_s,
            r.bytes_per_node_s,
            r.connections_mean,
            r.connections_max,
            r.peak_mib.map_or("-".into(), |m| format!("{m:.0}")),
            r.wall_s,
        );
    }
    s
}
