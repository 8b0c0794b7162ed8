//! The scenarios, written once for every [`Harness`]. Each asserts
//! observable outcomes (member tables, catalogs, call results, protocol
//! counters, membership changes with their times) and returns what it
//! measured.
//!
//! [`run_all`] runs them in order on one 5-node cluster — join,
//! propagation, calls, routing, large calls, over the limit, leave, crash
//! — then the partition, the mixed-version and the connection scenarios
//! (simultaneous dials, idle close, restart at the same address, a leave
//! under load) on fresh clusters.

use crate::{CallSpec, Change, Harness, reply_of};
use bytes::Bytes;
use mpreg_proto::wire::MessageKind;
use mpreg_proto::{CallError, MemberState, NodeId, RejectReason};
use std::time::{Duration, Instant};

/// Cluster size.
pub const N: usize = 5;
/// How often conditions are checked (in the harness's time).
const POLL: Duration = Duration::from_millis(10);
/// The function every call scenario uses, served by node 2 only.
const FN: &str = "conf.fn";
/// Node 2's private resource.
const FN_RES: &str = "conf-r2";

/// What one scenario measured.
#[derive(Clone, Debug)]
pub struct Step {
    /// The scenario.
    pub name: &'static str,
    /// The figure it measured, in the harness's time.
    pub measured: Duration,
    /// What the figure is.
    pub what: String,
    /// Wall-clock time the scenario took.
    pub wall: Duration,
}

/// Everything one runtime's run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// The runtime.
    pub runtime: &'static str,
    /// The scenarios, in order.
    pub steps: Vec<Step>,
}

impl Report {
    /// The report as a table.
    pub fn table(&self) -> String {
        let mut s = format!("conformance: {}\n", self.runtime);
        for st in &self.steps {
            s += &format!(
                "  {:<24} {:>9.1} ms  {:<52} (wall {:.2} s)\n",
                st.name,
                st.measured.as_secs_f64() * 1e3,
                st.what,
                st.wall.as_secs_f64()
            );
        }
        s
    }
}

/// Waits (in the harness's time) until `pred` holds; fails the test after
/// `limit`. Returns how long it took.
pub fn within<H: Harness>(
    h: &mut H,
    limit: Duration,
    what: &str,
    mut pred: impl FnMut(&mut H) -> bool,
) -> Duration {
    let start = h.now();
    loop {
        if pred(h) {
            return h.now().saturating_sub(start);
        }
        let waited = h.now().saturating_sub(start);
        assert!(waited < limit, "{}: {what}: not within {limit:?}", h.name());
        h.pass(POLL);
    }
}

/// Whether every running node of `nodes` sees exactly the running nodes of
/// `nodes` as live, all of them Alive.
pub fn converged<H: Harness>(h: &mut H, nodes: &[usize]) -> bool {
    let up: Vec<usize> = nodes.iter().copied().filter(|i| h.is_up(*i)).collect();
    let ids: Vec<NodeId> = up.iter().map(|i| h.id(*i)).collect();
    up.iter().all(|&i| {
        let ms = h.members(i);
        let live = ms.iter().filter(|(_, s)| s.is_live()).count();
        live == up.len()
            && ids
                .iter()
                .all(|id| ms.iter().any(|(m, s)| m == id && *s == MemberState::Alive))
    })
}

fn state_of<H: Harness>(h: &mut H, observer: usize, of: NodeId) -> Option<MemberState> {
    h.members(observer)
        .into_iter()
        .find(|(m, _)| *m == of)
        .map(|(_, s)| s)
}

fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

fn ok_from<H: Harness>(h: &H, r: &Result<Bytes, CallError>, what: &str) -> Bytes {
    match r {
        Ok(b) => b.clone(),
        Err(e) => panic!("{}: {what}: {e}", h.name()),
    }
}

struct Run<'a, H> {
    h: &'a mut H,
    steps: Vec<Step>,
}

impl<H: Harness> Run<'_, H> {
    fn step(&mut self, name: &'static str, f: impl FnOnce(&mut H) -> (Duration, String)) {
        let wall = Instant::now();
        let (measured, what) = f(self.h);
        eprintln!(
            "{}: {name}: {:.1} ms ({what})",
            self.h.name(),
            measured.as_secs_f64() * 1e3
        );
        self.steps.push(Step {
            name,
            measured,
            what,
            wall: wall.elapsed(),
        });
    }
}

/// Runs every scenario; `fresh` makes an empty harness (one per cluster:
/// the main sequence, the partition, the mixed-version cluster).
pub fn run_all<H: Harness>(mut fresh: impl FnMut() -> H) -> Report {
    let mut steps = Vec::new();
    let mut runtime = "";
    type Scenario<H> = (&'static str, fn(&mut H) -> (Duration, String));
    let clusters: [&[Scenario<H>]; 4] = [
        &[
            ("join", join),
            ("propagation", propagation),
            ("call from every node", call_from_every_node),
            ("resource routing", resource_routing),
            ("4 MiB calls", large_calls),
            ("over the limit", over_the_limit),
            ("graceful leave", graceful_leave),
            ("crash", crash),
        ],
        &[("partition 3+2 and heal", partition_and_heal)],
        &[("mixed versions", mixed_versions)],
        &[
            ("simultaneous dials", simultaneous_dials),
            ("idle close", idle_close),
            ("restart, same address", restart_at_the_same_address),
            ("leave under load", leave_under_load),
        ],
    ];
    for scenarios in clusters {
        let mut h = fresh();
        runtime = h.name();
        let mut run = Run {
            h: &mut h,
            steps: Vec::new(),
        };
        for (name, f) in scenarios {
            run.step(name, *f);
        }
        steps.extend(run.steps);
    }
    Report { runtime, steps }
}

/// Starts five nodes as a chain (node i joins through node i-1; `newer`
/// speaks a newer protocol version) and waits for full membership.
fn chain<H: Harness>(h: &mut H, newer: Option<usize>) -> Duration {
    let start = h.now();
    for i in 0..N {
        let seeds: Vec<usize> = i.checked_sub(1).into_iter().collect();
        assert_eq!(h.start(&seeds, newer == Some(i)), i);
    }
    within(h, Duration::from_secs(10), "full membership", |h| {
        converged(h, &all(N))
    });
    h.now().saturating_sub(start)
}

/// Registers `where` with resource `r{j}` on every node j and waits until
/// every catalog has all of them.
fn register_where<H: Harness>(h: &mut H) {
    for j in 0..N {
        h.register(j, "where", &[&format!("r{j}")]);
    }
    let mut ids: Vec<NodeId> = (0..N).map(|j| h.id(j)).collect();
    ids.sort();
    within(h, Duration::from_secs(5), "every `where` everywhere", |h| {
        (0..N).all(|i| {
            let mut p = h.providers(i, "where");
            p.sort();
            p == ids
        })
    });
}

/// Five nodes, each joining through the previous one, reach full
/// membership.
pub fn join<H: Harness>(h: &mut H) -> (Duration, String) {
    let took = chain(h, None);
    (took, "5 nodes (chain) to full membership everywhere".into())
}

/// A function registered on node 2 reaches every catalog.
pub fn propagation<H: Harness>(h: &mut H) -> (Duration, String) {
    h.register(2, FN, &[FN_RES]);
    let provider = h.id(2);
    let took = within(h, Duration::from_secs(5), "propagation", |h| {
        (0..N).all(|i| h.providers(i, FN) == vec![provider])
    });
    (took, format!("{FN} from node 2 into every catalog"))
}

/// Every node calls node 2's function.
pub fn call_from_every_node<H: Harness>(h: &mut H) -> (Duration, String) {
    let calls: Vec<CallSpec> = (0..N)
        .map(|i| {
            CallSpec::new(i, FN)
                .locs(&[FN_RES])
                .args(format!("from-{i}"))
        })
        .collect();
    let start = h.now();
    let results = h.calls(&calls);
    let took = h.now().saturating_sub(start);
    for (i, r) in results.iter().enumerate() {
        let got = ok_from(h, r, &format!("call from node {i}"));
        assert_eq!(got, reply_of(2, format!("from-{i}").as_bytes()));
    }
    (took, "5 concurrent calls, one from each node".into())
}

/// `where` runs on every node with resource `r{i}`: a call with locs
/// `[r{t}]` from any node is served by node t; locs nobody has is
/// `NoProvider`, an unknown function `NotFound`.
pub fn resource_routing<H: Harness>(h: &mut H) -> (Duration, String) {
    register_where(h);
    let mut calls = Vec::new();
    for target in 0..N {
        for from in 0..N {
            let loc = format!("r{target}");
            calls.push(
                CallSpec::new(from, "where")
                    .locs(&[&loc])
                    .args(format!("{from}->{target}")),
            );
        }
    }
    let start = h.now();
    let results = h.calls(&calls);
    let took = h.now().saturating_sub(start);
    for (k, r) in results.iter().enumerate() {
        let (target, from) = (k / N, k % N);
        let got = ok_from(h, r, &format!("where@r{target} from node {from}"));
        assert_eq!(
            got,
            reply_of(target, format!("{from}->{target}").as_bytes()),
            "{}: a call with locs [r{target}] must run on node {target}",
            h.name()
        );
    }
    let r = h.calls(&[
        CallSpec::new(0, "where").locs(&["r9"]),
        CallSpec::new(0, "nope"),
    ]);
    assert!(
        matches!(r[0], Err(CallError::NoProvider { .. })),
        "{}: {:?}",
        h.name(),
        r[0]
    );
    assert!(
        matches!(r[1], Err(CallError::NotFound(_))),
        "{}: {:?}",
        h.name(),
        r[1]
    );
    (
        took,
        "25 calls, each served by the one node with its locs".into(),
    )
}

fn suspicions_since<H: Harness>(h: &mut H, since: Duration) -> Vec<(usize, Change)> {
    h.changes()
        .into_iter()
        .filter(|s| s.at >= since)
        .filter(|s| matches!(s.change, Change::Suspect(_) | Change::Down(_)))
        .map(|s| (s.observer, s.change))
        .collect()
}

fn acks_in(m: &mpreg_proto::Metrics) -> u64 {
    let k = MessageKind::ALL
        .iter()
        .position(|k| *k == MessageKind::Ack)
        .unwrap_or(usize::MAX);
    m.frames_in.get(k).copied().unwrap_or(0)
}

/// Rounds of four concurrent calls with 4 MiB arguments from node 0 to
/// node 2, for at least five probe periods: every result is intact, the
/// caller and the provider keep receiving probe acks meanwhile, and nobody
/// is suspected. (Direct probes that missed their adaptive timeout — a few
/// tens of milliseconds on loopback — and were answered through indirect
/// probes are counted in the report.)
pub fn large_calls<H: Harness>(h: &mut H) -> (Duration, String) {
    let period = h.config().membership.probe_period;
    let before: Vec<(u64, u64)> = [0, 2]
        .map(|i| {
            let m = h.metrics(i);
            (acks_in(&m), m.probe_timeouts)
        })
        .to_vec();
    let start = h.now();
    let mut rounds = 0u8;
    let mut slowest = Duration::ZERO;
    while rounds < 2 || (h.now().saturating_sub(start) < period * 5 && rounds < 12) {
        let calls: Vec<CallSpec> = (0..4u8)
            .map(|k| {
                CallSpec::new(0, FN).locs(&[FN_RES]).args(vec![
                    rounds
                        .wrapping_mul(4)
                        .wrapping_add(k);
                    4 << 20
                ])
            })
            .collect();
        let t = h.now();
        let results = h.calls(&calls);
        slowest = slowest.max(h.now().saturating_sub(t));
        for (c, r) in calls.iter().zip(&results) {
            let got = ok_from(h, r, "a 4 MiB call");
            assert!(
                got == reply_of(2, &c.args),
                "{}: a 4 MiB call came back altered ({} bytes)",
                h.name(),
                got.len()
            );
        }
        rounds += 1;
        h.pass(period / 4);
    }
    let mut missed = 0;
    for (k, i) in [0, 2].into_iter().enumerate() {
        let m = h.metrics(i);
        assert!(
            acks_in(&m) > before[k].0,
            "{}: node {i} received no probe ack during the 4 MiB calls",
            h.name()
        );
        missed += m.probe_timeouts - before[k].1;
    }
    let s = suspicions_since(h, start);
    assert!(
        s.is_empty(),
        "{}: suspicions during 4 MiB calls: {s:?}",
        h.name()
    );
    (
        slowest,
        format!(
            "slowest of {rounds} rounds of 4 x 4 MiB; {missed} direct probes late, none suspected"
        ),
    )
}

/// A call whose arguments exceed the frame limit fails with a typed error
/// and leaves the cluster as it was.
pub fn over_the_limit<H: Harness>(h: &mut H) -> (Duration, String) {
    let limit = h.config().limits.max_frame_size;
    let start = h.now();
    let r = h.calls(&[CallSpec::new(0, FN)
        .locs(&[FN_RES])
        .args(vec![0u8; limit + 1])]);
    let took = h.now().saturating_sub(start);
    assert!(
        matches!(r[0], Err(CallError::Rejected(_))),
        "{}: an over-limit call: {:?}",
        h.name(),
        r[0]
    );
    assert!(converged(h, &all(N)), "{}: the cluster changed", h.name());
    let r = h.calls(&[CallSpec::new(0, FN).locs(&[FN_RES]).args("after")]);
    assert_eq!(ok_from(h, &r[0], "a call after"), reply_of(2, b"after"));
    let s = suspicions_since(h, start);
    assert!(s.is_empty(), "{}: suspicions: {s:?}", h.name());
    (took, format!("{} bytes of arguments: Rejected", limit + 1))
}

/// The cluster splits into {0,1,2} and {3,4}: each side declares the other
/// down and keeps serving its own functions; after the heal everyone is
/// Alive everywhere again and calls cross.
pub fn partition_and_heal<H: Harness>(h: &mut H) -> (Duration, String) {
    chain(h, None);
    h.register(2, FN, &[FN_RES]);
    register_where(h);
    let provider = h.id(2);
    within(h, Duration::from_secs(5), "propagation", |h| {
        (0..N).all(|i| h.providers(i, FN) == vec![provider])
    });
    let (a, b) = ([0, 1, 2], [3, 4]);
    let bound = h.config().detection_bound(N);
    h.partition(&[&a, &b]);
    let ids: Vec<NodeId> = (0..N).map(|i| h.id(i)).collect();
    let split = |h: &mut H| {
        a.iter().all(|&x| {
            b.iter()
                .all(|&y| state_of(h, x, ids[y]).is_some_and(|s| !s.is_live()))
        }) && b.iter().all(|&y| {
            a.iter()
                .all(|&x| state_of(h, y, ids[x]).is_some_and(|s| !s.is_live()))
        })
    };
    let apart = within(h, bound * 3, "each side sees the other down", split);
    let r = h.calls(&[
        CallSpec::new(1, FN).locs(&[FN_RES]).args("inside"),
        CallSpec::new(3, FN).locs(&[FN_RES]).args("across"),
    ]);
    assert_eq!(
        ok_from(h, &r[0], "a call within the majority"),
        reply_of(2, b"inside")
    );
    assert!(
        r[1].is_err(),
        "{}: a call across the partition: {:?}",
        h.name(),
        r[1]
    );
    h.heal();
    let healed = within(h, Duration::from_secs(20), "healed", |h| {
        converged(h, &all(N))
    });
    within(h, Duration::from_secs(5), "catalogs after the heal", |h| {
        (0..N).all(|i| h.providers(i, FN) == vec![ids[2]])
    });
    let r = h.calls(&[
        CallSpec::new(4, FN).locs(&[FN_RES]).args("healed"),
        CallSpec::new(0, "where").locs(&["r3"]).args("healed"),
    ]);
    assert_eq!(
        ok_from(h, &r[0], "node 4 calling node 2 after the heal"),
        reply_of(2, b"healed")
    );
    assert_eq!(
        ok_from(h, &r[1], "node 0 calling node 3 after the heal"),
        reply_of(3, b"healed")
    );
    (
        healed,
        format!(
            "heal to full membership (apart in {:.0} ms)",
            apart.as_secs_f64() * 1e3
        ),
    )
}

/// Node 4 leaves: every other node sees it Left (never Dead), and its
/// functions are no longer routable.
pub fn graceful_leave<H: Harness>(h: &mut H) -> (Duration, String) {
    let id = h.id(4);
    let start = h.now();
    h.leave(4);
    let others = [0, 1, 2, 3];
    within(h, Duration::from_secs(5), "Left everywhere", |h| {
        others
            .iter()
            .all(|&i| state_of(h, i, id) == Some(MemberState::Left))
    });
    let took = h.now().saturating_sub(start);
    let downs: Vec<_> = h
        .changes()
        .into_iter()
        .filter(|s| s.at >= start && s.change == Change::Down(id))
        .collect();
    assert!(
        downs.is_empty(),
        "{}: a leaving node was declared dead: {downs:?}",
        h.name()
    );
    let r = h.calls(&[CallSpec::new(0, "where").locs(&["r4"])]);
    assert!(
        matches!(r[0], Err(CallError::NoProvider { .. })),
        "{}: {:?}",
        h.name(),
        r[0]
    );
    (took, "Left on every other node".into())
}

/// Node 3's runtime is dropped without leaving: every other node declares
/// it Dead within `Config::detection_bound`, and calls go on.
pub fn crash<H: Harness>(h: &mut H) -> (Duration, String) {
    let id = h.id(3);
    let bound = h.config().detection_bound(N);
    let others = [0, 1, 2];
    // The bound is for healthy probers: Lifeguard stretches the probe
    // timing of a node that recently missed acks. CORE-GAP: the local
    // health score only falls on successful probes, and a node that hears
    // from every peer all the time never probes, so after a partition it
    // can stay raised indefinitely; hence this scenario runs on a cluster
    // that was never partitioned.
    within(h, Duration::from_secs(10), "healthy probers", |h| {
        [0, 1, 2, 3].iter().all(|&i| h.local_health(i) == 0)
    });
    let t = h.now();
    let failures =
        |h: &mut H| -> Vec<u64> { others.iter().map(|&i| h.metrics(i).dial_failures).collect() };
    let failed_before = failures(h);
    h.crash(3);
    within(h, bound + Duration::from_secs(2), "Dead everywhere", |h| {
        others
            .iter()
            .all(|&i| state_of(h, i, id) == Some(MemberState::Dead))
    });
    // Refused dials back off (from 50-100 ms, doubling): a handful each,
    // never a storm.
    for (k, (a, b)) in failures(h).iter().zip(&failed_before).enumerate() {
        assert!(
            a - b <= 12,
            "{}: node {} failed {} dials to the crashed node",
            h.name(),
            others[k],
            a - b
        );
    }
    let changes = h.changes();
    let took = others
        .iter()
        .map(|&o| {
            changes
                .iter()
                .filter(|s| s.observer == o && s.at >= t && s.change == Change::Down(id))
                .map(|s| s.at.saturating_sub(t))
                .min()
                .unwrap_or_else(|| panic!("{}: node {o} saw no MemberDown", h.name()))
        })
        .max()
        .unwrap_or_default();
    assert!(
        took <= bound,
        "{}: crash detected in {took:?}, above the bound {bound:?}",
        h.name()
    );
    let r = h.calls(&[
        CallSpec::new(0, FN).locs(&[FN_RES]).args("after"),
        CallSpec::new(1, "where").locs(&["r3"]),
    ]);
    assert_eq!(
        ok_from(h, &r[0], "a call after the crash"),
        reply_of(2, b"after")
    );
    assert!(
        r[1].is_err(),
        "{}: node 3's function after the crash: {:?}",
        h.name(),
        r[1]
    );
    (
        took,
        format!(
            "Dead on every other node (bound {:.0} ms)",
            bound.as_secs_f64() * 1e3
        ),
    )
}

/// Node 2 of a fresh cluster speaks a newer protocol version and sends a
/// message kind the others do not know: the cluster still converges, every
/// node serves calls from every node, and the others skip (and count) the
/// unknown frames.
pub fn mixed_versions<H: Harness>(h: &mut H) -> (Duration, String) {
    let newer = 2;
    let took = chain(h, Some(newer));
    register_where(h);
    let mut calls = Vec::new();
    for target in 0..N {
        for from in 0..N {
            let loc = format!("r{target}");
            calls.push(CallSpec::new(from, "where").locs(&[&loc]).args("v"));
        }
    }
    let results = h.calls(&calls);
    for (k, r) in results.iter().enumerate() {
        let (target, from) = (k / N, k % N);
        let got = ok_from(
            h,
            r,
            &format!("mixed versions: node {from} to node {target}"),
        );
        assert_eq!(got, reply_of(target, b"v"));
    }
    let unknown = RejectReason::ALL
        .iter()
        .position(|r| *r == RejectReason::UnknownKind)
        .unwrap_or(usize::MAX);
    let skipped: u64 = (0..N)
        .filter(|i| *i != newer)
        .map(|i| h.metrics(i).rejected.get(unknown).copied().unwrap_or(0))
        .sum();
    assert!(
        skipped > 0,
        "{}: the older nodes never saw the new message kind",
        h.name()
    );
    (
        took,
        format!("to full membership; {skipped} unknown-kind frames skipped"),
    )
}

// ----- connections ---------------------------------------------------------

/// The configuration of the connection scenarios' cluster: views of at
/// most two peers (so some pairs keep no connection) and a short idle
/// timeout.
fn small_views<H: Harness>(h: &H) -> mpreg_proto::Config {
    let mut c = h.config().clone();
    c.overlay.active_view_min = 1;
    c.overlay.active_view_max = 2;
    c.overlay.active_view_extra = 0;
    c.overlay.active_view_slack = 0;
    c.connections.idle_timeout = Duration::from_secs(1);
    c
}

/// Five nodes started alone join each other all at once: every pair dials
/// both ways. Once converged, every pair holds at most one connection, the
/// same one at both ends.
pub fn simultaneous_dials<H: Harness>(h: &mut H) -> (Duration, String) {
    let cfg = small_views(h);
    h.set_config(cfg);
    for _ in 0..N {
        h.start(&[], false);
    }
    for i in 0..N {
        let others: Vec<usize> = (0..N).filter(|j| *j != i).collect();
        h.join(i, &others);
    }
    let took = within(h, Duration::from_secs(10), "full membership", |h| {
        converged(h, &all(N))
    });
    within(h, Duration::from_secs(5), "one connection per pair", |h| {
        (0..N).all(|i| {
            (i + 1..N).all(|j| {
                let (a, b) = (h.connections_to(i, j), h.connections_to(j, i));
                a <= 1 && a == b
            })
        })
    });
    (
        took,
        "to full membership, then one connection per pair".into(),
    )
}

/// A call between two nodes that keep no connection to each other opens
/// one; it closes once idle.
pub fn idle_close<H: Harness>(h: &mut H) -> (Duration, String) {
    // Pairs outside each other's views close what the joins opened.
    let unconnected = |h: &mut H| {
        (0..N)
            .flat_map(|a| (0..N).map(move |b| (a, b)))
            .find(|&(a, b)| a != b && h.connections_to(a, b) == 0 && h.connections_to(b, a) == 0)
    };
    within(
        h,
        Duration::from_secs(5),
        "a pair without a connection",
        |h| unconnected(h).is_some(),
    );
    let (a, b) = unconnected(h).unwrap_or_default();
    let res = format!("idle-r{b}");
    h.register(b, "idle.fn", &[&res]);
    let bid = h.id(b);
    within(
        h,
        Duration::from_secs(5),
        "the function at the caller",
        |h| h.providers(a, "idle.fn").contains(&bid),
    );
    let closed =
        |h: &mut H| h.metrics(a).connections_idle_closed + h.metrics(b).connections_idle_closed;
    let before = closed(h);
    let r = h.calls(&[CallSpec::new(a, "idle.fn").locs(&[&res]).args("i")]);
    assert_eq!(
        ok_from(h, &r[0], "a call to an unconnected node"),
        reply_of(b, b"i")
    );
    let idle = h.config().connections.idle_timeout;
    let took = within(h, idle * 4, "the idle connection closed", |h| {
        closed(h) > before
    });
    (took, format!("until idle-closed (idle timeout {idle:?})"))
}

/// Node 4 is killed and started again at the same address: every node
/// takes the new process in, holds at most one connection to that address,
/// and reaches its functions.
pub fn restart_at_the_same_address<H: Harness>(h: &mut H) -> (Duration, String) {
    let r = N - 1;
    h.restart(r);
    let id = h.id(r);
    let others: Vec<usize> = (0..N - 1).collect();
    let took = within(
        h,
        Duration::from_secs(10),
        "the new process everywhere",
        |h| {
            others
                .iter()
                .all(|&i| state_of(h, i, id) == Some(MemberState::Alive))
        },
    );
    h.register(r, "restarted.fn", &["restarted"]);
    within(h, Duration::from_secs(5), "its function everywhere", |h| {
        others
            .iter()
            .all(|&i| h.providers(i, "restarted.fn").contains(&id))
    });
    let calls: Vec<CallSpec> = others
        .iter()
        .map(|&i| {
            CallSpec::new(i, "restarted.fn")
                .locs(&["restarted"])
                .args("x")
        })
        .collect();
    for r_ in h.calls(&calls) {
        assert_eq!(
            ok_from(h, &r_, "a call to the restarted node"),
            reply_of(r, b"x")
        );
    }
    within(
        h,
        Duration::from_secs(5),
        "one connection to it each",
        |h| others.iter().all(|&i| h.connections_to(i, r) <= 1),
    );
    (took, "until the new process is Alive everywhere".into())
}

/// Three nodes serve a function that must not run twice; 48 calls from
/// node 0 are in flight when node 2 leaves. Calls it accepted are answered
/// before it closes, calls that reach it while it drains are refused as not
/// run and go elsewhere: every call succeeds, none is `OutcomeUnknown`.
pub fn leave_under_load<H: Harness>(h: &mut H) -> (Duration, String) {
    for p in [1, 2, 3] {
        h.register(p, "slow.write", &["w"]);
    }
    let ids: Vec<NodeId> = [1, 2, 3].iter().map(|p| h.id(*p)).collect();
    within(
        h,
        Duration::from_secs(5),
        "three providers at the caller",
        |h| {
            let p = h.providers(0, "slow.write");
            ids.iter().all(|id| p.contains(id))
        },
    );
    let calls: Vec<CallSpec> = (0..48)
        .map(|k| {
            CallSpec::new(0, "slow.write")
                .locs(&["w"])
                .args(format!("{k}"))
        })
        .collect();
    let t = h.now();
    let results = h.calls_while_leaving(&calls, 2);
    let took = h.now().saturating_sub(t);
    let mut by_leaver = 0;
    for (k, r) in results.iter().enumerate() {
        let got = ok_from(h, r, &format!("call {k} while a provider left"));
        assert!(got.ends_with(k.to_string().as_bytes()));
        by_leaver += usize::from(got.starts_with(b"n2:"));
    }
    assert!(by_leaver > 0, "{}: the leaver served no call", h.name());
    (
        took,
        format!("48 calls, {by_leaver} answered by the leaver, none lost"),
    )
}
