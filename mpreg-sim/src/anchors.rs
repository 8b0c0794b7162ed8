//! The anchor scenarios of `shared/ANCHORS.md`, run on our core with the
//! same settings (1 ms links), printed beside foca's and chitchat's figures
//! measured on the same machine kind.

use crate::scenario::{self, median, secs, worst};
use crate::{LinkModel, NetConfig};
use mpreg_proto::Config;
use serde::Serialize;
use std::time::Duration;

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What was measured.
    pub scenario: String,
    /// Cluster size.
    pub nodes: usize,
    /// Unit of the figures.
    pub unit: &'static str,
    /// Our median over the seeds.
    pub ours_median: Option<f64>,
    /// Our worst seed.
    pub ours_worst: Option<f64>,
    /// Seeds run.
    pub seeds: u64,
    /// foca 2.0's figure, as text.
    pub foca: &'static str,
    /// chitchat 0.13's figure, as text.
    pub chitchat: &'static str,
}

fn row(
    scenario: &str,
    nodes: usize,
    unit: &'static str,
    v: &[Option<f64>],
    foca: &'static str,
    chitchat: &'static str,
) -> Row {
    Row {
        scenario: scenario.into(),
        nodes,
        unit,
        ours_median: median(v),
        ours_worst: worst(v),
        seeds: v.len() as u64,
        foca,
        chitchat,
    }
}

/// Runs every anchor scenario for `seeds` seeds, at sizes up to
/// `max_nodes`.
pub fn run(cfg: &Config, seeds: u64, max_nodes: usize, progress: bool) -> Vec<Row> {
    let net = NetConfig::default();
    let say = |s: &str| {
        if progress {
            eprintln!("{s}");
        }
    };
    let mut rows = Vec::new();
    for (n, foca90, foca100, chit) in [(100, "2.0", "30", "0.62"), (1000, "4.0", "450", "-")] {
        if n > max_nodes {
            continue;
        }
        say(&format!("chain join, N={n}"));
        let r: Vec<_> = (0..seeds)
            .map(|s| scenario::chain_join(s + 1, n, cfg, &net, Duration::from_secs(120)))
            .collect();
        let t90: Vec<_> = r.iter().map(|x| x.t90).collect();
        let t100: Vec<_> = r.iter().map(|x| x.t100).collect();
        rows.push(row(
            "chain join: 90% of nodes have every member",
            n,
            "s",
            &t90,
            foca90,
            "-",
        ));
        rows.push(row(
            "chain join: every node has every member",
            n,
            "s",
            &t100,
            foca100,
            chit,
        ));
    }
    for (n, foca, chit, focab, chitb, focac, chitc) in [
        (
            100,
            "0.8",
            "0.20",
            "2 frames, 18-22 B",
            "91 msgs, 289 kB",
            "10.2",
            "2.4-2.8",
        ),
        (
            1000,
            "1.2 (not always)",
            "-",
            "2 frames, 18-22 B",
            "-",
            "14.4",
            "-",
        ),
    ] {
        if n > max_nodes {
            continue;
        }
        say(&format!("broadcast, steady state and crash, N={n}"));
        let (mut prop, mut crash, mut frames, mut bytes) = (vec![], vec![], vec![], vec![]);
        for s in 0..seeds {
            let Some((mut sim, nodes)) =
                scenario::converged_cluster(s + 1, n, cfg, &net, Duration::from_secs(30))
            else {
                prop.push(None);
                crash.push(None);
                continue;
            };
            let (f, b) = scenario::steady_rate(&mut sim, &nodes, Duration::from_secs(30));
            frames.push(Some(f));
            bytes.push(Some(b));
            prop.push(secs(scenario::propagation(
                &mut sim,
                &nodes,
                n / 3,
                "new-function",
                Duration::from_secs(10),
            )));
            sim.run_for(Duration::from_secs(5));
            crash.push(secs(scenario::detection(
                &mut sim,
                &nodes,
                n / 2,
                Duration::from_secs(60),
            )));
        }
        rows.push(row(
            "new function reaches every node",
            n,
            "s",
            &prop,
            foca,
            chit,
        ));
        rows.push(row(
            "crash marked Dead by every node",
            n,
            "s",
            &crash,
            focac,
            chitc,
        ));
        rows.push(row(
            "steady state frames per node per second",
            n,
            "frames/s",
            &frames,
            focab,
            chitb,
        ));
        rows.push(row(
            "steady state bytes per node per second",
            n,
            "B/s",
            &bytes,
            focab,
            chitb,
        ));
    }
    for model in [LinkModel::Stream, LinkModel::Datagram] {
        say(&format!("5% loss, N=50, 1000 periods, {model:?}"));
        let r: Vec<_> = (0..seeds)
            .map(|s| scenario::lossy(s + 1, 50, 1000, 0.05, model))
            .collect();
        let fd: Vec<_> = r
            .iter()
            .map(|x| x.as_ref().map(|x| x.false_dead as f64))
            .collect();
        let fr: Vec<_> = r
            .iter()
            .map(|x| x.as_ref().map(|x| x.forced_rejoins as f64))
            .collect();
        let name = format!("5% loss ({model:?}): live nodes declared Dead");
        rows.push(row(&name, 50, "nodes", &fd, "0-1", "-"));
        let name = format!("5% loss ({model:?}): forced rejoins");
        rows.push(row(&name, 50, "nodes", &fr, "~35", "-"));
    }
    rows
}

/// Prints the rows as a table.
#[allow(clippy::print_stdout)]
pub fn print_table(rows: &[Row]) {
    let f = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.3}"));
    println!(
        "{:<48} {:>5} {:>9} {:>10} {:>10} {:>20} {:>16}",
        "scenario", "N", "unit", "ours p50", "ours max", "foca", "chitchat"
    );
    for r in rows {
        println!(
            "{:<48} {:>5} {:>9} {:>10} {:>10} {:>20} {:>16}",
            r.scenario,
            r.nodes,
            r.unit,
            f(r.ours_median),
            f(r.ours_worst),
            r.foca,
            r.chitchat
        );
    }
}
