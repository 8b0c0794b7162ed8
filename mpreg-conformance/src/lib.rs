//! # mpreg-conformance — one set of scenarios for every runtime
//!
//! The scenarios ([`scenarios`]) are written once against the small
//! [`Harness`] trait and run, with identical assertions, against:
//!
//! * the deterministic simulator ([`sim::SimHarness`], virtual time);
//! * mpreg-tokio over WebSockets and mpreg-quic over QUIC
//!   ([`real::RealHarness`], real loopback sockets, real time), each
//!   transport wrapped in [`faults::TestTransport`], which can partition
//!   the nodes into groups — connections between groups *stall* (sends
//!   block, received messages are held) as in a real partition, they are not
//!   reset — and can make a node speak a newer protocol version.
//!
//! ```text
//! cargo test -p mpreg-conformance            # sim, ws and quic
//! cargo test -p mpreg-conformance --test quic -- --nocapture   # one, with timings
//! ```
//!
//! A harness only starts nodes, registers functions, calls, reads views
//! and injects faults; every rule and every threshold lives in
//! [`scenarios`].

#![warn(missing_docs)]

pub mod faults;
pub mod real;
pub mod scenarios;
pub mod sim;

use bytes::Bytes;
use mpreg_proto::{CallError, Config, MemberState, Metrics, NodeId};
use std::time::Duration;

/// A membership change seen by a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The member is Alive.
    Up(NodeId),
    /// The member is suspected.
    Suspect(NodeId),
    /// The member was declared Dead.
    Down(NodeId),
    /// The member left.
    Left(NodeId),
}

/// A change, who saw it and when (time since the harness started).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// When.
    pub at: Duration,
    /// The node that saw it.
    pub observer: usize,
    /// What.
    pub change: Change,
}

/// One call to make.
#[derive(Clone, Debug)]
pub struct CallSpec {
    /// The calling node.
    pub from: usize,
    /// The function.
    pub function: String,
    /// Resources the executing node must have.
    pub locs: Vec<String>,
    /// Arguments.
    pub args: Bytes,
}

impl CallSpec {
    /// A call of `function` from node `from`.
    pub fn new(from: usize, function: &str) -> CallSpec {
        CallSpec {
            from,
            function: function.to_string(),
            locs: Vec::new(),
            args: Bytes::new(),
        }
    }

    /// With these resources required.
    pub fn locs(mut self, locs: &[&str]) -> CallSpec {
        self.locs = locs.iter().map(|l| l.to_string()).collect();
        self
    }

    /// With these arguments.
    pub fn args(mut self, args: impl Into<Bytes>) -> CallSpec {
        self.args = args.into();
        self
    }
}

/// What every registered function answers on node `i`: `n{i}:` followed
/// by its arguments — so a caller sees who served it and that the bytes
/// survived the round trip. A function whose name starts with `slow`
/// takes [`SLOW`] to answer.
pub fn reply_of(node: usize, args: &[u8]) -> Bytes {
    let mut out = format!("n{node}:").into_bytes();
    out.extend_from_slice(args);
    Bytes::from(out)
}

/// How long a `slow…` function takes.
pub const SLOW: Duration = Duration::from_millis(20);

/// The protocol configuration every runtime runs the scenarios with (the
/// edge-computing template's fast probing; identical for all).
pub fn config() -> Config {
    let mut c = Config::default();
    let m = &mut c.membership;
    m.probe_period = Duration::from_millis(300);
    m.probe_timeout_min = Duration::from_millis(50);
    m.probe_timeout_max = Duration::from_millis(300);
    m.indirect_timeout = Duration::from_millis(300);
    m.suspicion_per_decade = Duration::from_millis(600);
    m.join_retry_interval = Duration::from_millis(500);
    c.dissemination.sync_interval = Duration::from_secs(1);
    c
}

/// What a runtime offers the scenarios. Node indices are given in start
/// order from 0. Time is the harness's own (virtual for the simulator).
pub trait Harness {
    /// The runtime's name, for reports.
    fn name(&self) -> &'static str;
    /// The protocol configuration of every node.
    fn config(&self) -> &Config;
    /// Starts a node joining through `seeds` (indices); `newer` makes it
    /// speak a newer protocol version with an extra message kind.
    fn start(&mut self, seeds: &[usize], newer: bool) -> usize;
    /// Node `i`'s id.
    fn id(&self, i: usize) -> NodeId;
    /// Whether node `i` runs (not crashed, not left).
    fn is_up(&self, i: usize) -> bool;
    /// Registers `name` with `resources` on node `i`; it answers
    /// [`reply_of`].
    fn register(&mut self, i: usize, name: &str, resources: &[&str]);
    /// Makes the calls concurrently and waits for every outcome.
    fn calls(&mut self, calls: &[CallSpec]) -> Vec<Result<Bytes, CallError>> {
        self.calls_while_leaving(calls, usize::MAX)
    }
    /// Node `i`'s member table.
    fn members(&mut self, i: usize) -> Vec<(NodeId, MemberState)>;
    /// The live providers of `function` in node `i`'s catalog.
    fn providers(&mut self, i: usize, function: &str) -> Vec<NodeId>;
    /// Node `i`'s protocol counters.
    fn metrics(&mut self, i: usize) -> Metrics;
    /// Node `i`'s Lifeguard local-health score (0 is healthy; higher
    /// scores stretch its probe timing).
    fn local_health(&mut self, i: usize) -> u32;
    /// Node `i` stops at once, without leaving (its runtime is dropped).
    fn crash(&mut self, i: usize);
    /// The protocol configuration of nodes started from now on.
    fn set_config(&mut self, config: Config);
    /// Node `i` joins through `seeds` now.
    fn join(&mut self, i: usize, seeds: &[usize]);
    /// Connections node `i` holds to node `j`'s address that are not
    /// closing.
    fn connections_to(&mut self, i: usize, j: usize) -> usize;
    /// Node `i` is killed and started again at the same address (a new
    /// process, joining the same seeds).
    fn restart(&mut self, i: usize);
    /// Makes the calls concurrently; once some run on node `leaver`, it
    /// leaves. Waits for every outcome.
    fn calls_while_leaving(
        &mut self,
        calls: &[CallSpec],
        leaver: usize,
    ) -> Vec<Result<Bytes, CallError>>;
    /// Node `i` leaves gracefully; returns once it has stopped.
    fn leave(&mut self, i: usize);
    /// Nodes in different groups can no longer reach each other (nodes in
    /// no group form one more group).
    fn partition(&mut self, groups: &[&[usize]]);
    /// Ends the partition: stalled connections resume.
    fn heal(&mut self);
    /// Time since the harness started.
    fn now(&self) -> Duration;
    /// Lets `d` pass.
    fn pass(&mut self, d: Duration);
    /// Every membership change seen so far.
    fn changes(&mut self) -> Vec<Seen>;
}
