//! `mpreg-sim`: reports from the deterministic simulator.
//!
//! * `compare` — the guide's five topologies, measured, beside the guide's
//!   published table; CSV and an SVG plot.
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
