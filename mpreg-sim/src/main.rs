//! `mpreg-sim`: reports from the deterministic simulator.
//!
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

#[derive(Subcommand)]
enum Cmd {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
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
