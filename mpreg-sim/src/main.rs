//! `mpreg-sim`: reports from the deterministic simulator.
//!
//! * `compare` — the guide's five topologies, measured, beside the guide's
//!   published table; CSV and an SVG plot.
//! * `scale` — clusters of 100 to 10,000 nodes and more: join,
//!   propagation, detection, traffic, connections, memory, wall time.
//! * `anchors` — the scenarios of shared/ANCHORS.md on our core, beside
//!   foca's and chitchat's figures.

use clap::{Parser, Subcommand};
use mpreg_proto::Config;
use mpreg_sim::anchors;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mpreg-sim",
    version,
    about = "Deterministic simulations of mpreg-rs clusters"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Model {
    Stream,
    Datagram,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StartArg {
    Cold,
    Snapshot,
    Auto,
}

#[derive(Subcommand)]
enum Cmd {
    /// The guide's five topologies: our measured figures beside the guide's.
    Compare {
        /// Seeds per topology (median and p95 are over these).
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Loss rate of every link, 0 to 1.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Link model.
        #[arg(long, value_enum, default_value = "stream")]
        model: Model,
        /// Print JSON rows instead of a table (files are still written).
        #[arg(long)]
        json: bool,
        /// Where to write compare.csv, propagation.csv and propagation.svg.
        #[arg(long, default_value = "out/compare")]
        out: std::path::PathBuf,
    },
    /// Clusters of growing size: join, propagation, detection, traffic,
    /// connections, memory and wall time.
    Scale {
        /// Cluster sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        nodes: Vec<usize>,
        /// Virtual seconds per size.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// How clusters start: cold (a chain join), snapshot (every node
        /// knows every member), or auto (cold up to 2,000 nodes).
        #[arg(long, value_enum, default_value = "auto")]
        start: StartArg,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print JSON rows instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Our figures beside foca's and chitchat's on the anchor scenarios.
    Anchors {
        /// Seeds per scenario.
        #[arg(long, default_value_t = 5)]
        seeds: u64,
        /// Print JSON rows instead of a table.
        #[arg(long)]
        json: bool,
        /// Largest cluster (the anchors use 1,000).
        #[arg(long, default_value_t = 1000)]
        max_nodes: usize,
    },
}

#[allow(clippy::print_stdout)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Scale {
            nodes,
            seconds,
            start,
            seed,
            json,
        } => {
            if let Some(bad) = nodes.iter().find(|n| **n < 2 || **n > 200_000) {
                eprintln!("error: --nodes: {bad} is out of range (2 to 200000)");
                return ExitCode::from(2);
            }
            if seconds < 10 {
                eprintln!("error: --seconds must be at least 10, got {seconds}");
                return ExitCode::from(2);
            }
            let mut rows = Vec::new();
            for n in nodes {
                let start = match start {
                    StartArg::Cold => mpreg_sim::scale::Start::Cold,
                    StartArg::Snapshot => mpreg_sim::scale::Start::Snapshot,
                    StartArg::Auto if n <= 2000 => mpreg_sim::scale::Start::Cold,
                    StartArg::Auto => mpreg_sim::scale::Start::Snapshot,
                };
                let bar =
                    (!json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
                        let b = indicatif::ProgressBar::new(1000);
                        b.set_message(format!("N={n}"));
                        b
                    });
                let row = mpreg_sim::scale::run(n, seconds, start, seed, |f| {
                    if let Some(b) = &bar {
                        b.set_position((f * 1000.0) as u64);
                    }
                });
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                if !json {
                    eprintln!("N={n} done in {:.1} s", row.wall_s);
                }
                rows.push(row);
            }
            if json {
                match serde_json::to_string_pretty(&rows) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", mpreg_sim::scale::table(&rows));
            }
            ExitCode::SUCCESS
        }
        Cmd::Compare {
            seeds,
            loss,
            model,
            json,
            out,
        } => {
            if !(0.0..1.0).contains(&loss) {
                eprintln!("error: --loss must be in [0, 1), got {loss}");
                return ExitCode::from(2);
            }
            let opts = mpreg_sim::compare::Options {
                seeds: seeds.max(1),
                loss,
                model: match model {
                    Model::Stream => mpreg_sim::LinkModel::Stream,
                    Model::Datagram => mpreg_sim::LinkModel::Datagram,
                },
                config: Config::default(),
            };
            let rows = mpreg_sim::compare::run(&opts, |name| {
                if !json {
                    eprintln!("measuring {name} ...");
                }
            });
            if let Err(e) = mpreg_sim::report::write_files(&rows, &out) {
                eprintln!("error: writing {}: {e}", out.display());
                return ExitCode::FAILURE;
            }
            if json {
                match serde_json::to_string_pretty(&rows) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", mpreg_sim::report::table(&rows));
                eprintln!(
                    "wrote {}/compare.csv, propagation.csv, propagation.svg",
                    out.display()
                );
            }
            ExitCode::SUCCESS
        }
        Cmd::Anchors {
            seeds,
            json,
            max_nodes,
        } => {
            let rows = anchors::run(&Config::default(), seeds, max_nodes, !json);
            if json {
                match serde_json::to_string_pretty(&rows) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                anchors::print_table(&rows);
            }
            ExitCode::SUCCESS
        }
    }
}
