//! # mpreg-sim — a deterministic simulator for mpreg-rs
//!
//! Every node is a real [`mpreg_proto::Node`]; the simulator is its
//! runtime, with a virtual clock, an event queue and a network of
//! configurable links (latency, jitter, loss, bandwidth) in two models —
//! ordered *streams* (the default, as deployed) and *datagrams*. It can
//! partition the network into groups and heal it, crash, kill and restart
//! nodes, run handlers with a latency, and make nodes misbehave. One seed
//! reproduces a run exactly.
//!
//! ```
//! use mpreg_sim::Sim;
//! use mpreg_proto::{Config, Time};
//! use std::time::Duration;
//!
//! let mut sim = Sim::new(7);
//! let nodes: Vec<usize> = (0..6).map(|_| sim.add_node(Config::default())).collect();
//! for i in 1..6 {
//!     sim.join(nodes[i], &[nodes[i - 1]]); // a chain, as the guide's dynamic mesh
//! }
//! let done = sim.run_until_true(Time::from_secs(10), Duration::from_millis(10), |s| {
//!     (0..6).all(|i| s.node(i).unwrap().live_members() == 6)
//! });
//! assert!(done.is_some());
//! ```

#![warn(missing_docs)]

pub mod anchors;
pub mod compare;
pub mod net;
pub mod report;
pub mod scale;
pub mod scenario;
mod sim;
pub mod topology;

pub use net::{Link, LinkModel, NetConfig};
pub use sim::{
    CallRecord, Handler, InvocationRecord, Log, Misbehavior, NetStats, Observed, Sim, SimNode,
    Tally, derive_seed,
};
