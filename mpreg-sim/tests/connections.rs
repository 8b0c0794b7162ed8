//! The connection rules of the core, run by the simulator's stream model
//! exactly as a runtime runs them, each over twenty seeds (a failing seed
//! prints `MPREG_SEED=n` to replay it): simultaneous dials, backoff after
//! refused dials, idle close, a restart at the same address, and graceful
//! leaves — with running calls, and under load.

mod common;

use bytes::Bytes;
use common::{converged, for_seeds, within};
use mpreg_proto::{Call, CallError, Config, Event, FunctionSpec, Invocation, MemberState, Time};
use mpreg_sim::Sim;
use std::collections::BTreeMap;
use std::time::Duration;

const SEEDS: std::ops::Range<u64> = 1..21;

fn seeds(base: u64) -> Vec<u64> {
    SEEDS.map(|s| base + s).collect()
}

fn up_chain(sim: &mut Sim, n: usize, cfg: &Config) -> Vec<usize> {
    let nodes = common::chain(sim, n, cfg);
    within(sim, Duration::from_secs(10), |s| converged(s, &nodes)).expect("converged");
    nodes
}

/// Connections `i` holds to `j`'s address that are not closing.
fn open_to(sim: &Sim, i: usize, j: usize) -> usize {
    sim.node(i).map_or(0, |n| {
        n.connections()
            .filter(|c| c.addr == *sim.addr(j) && !c.closing)
            .count()
    })
}

#[test]
fn simultaneous_dials_settle_on_one_connection_per_pair() {
    for_seeds(&seeds(100), |seed| {
        let mut sim = Sim::new(seed);
        let n = 6;
        let cfg = Config::default();
        let nodes: Vec<usize> = (0..n).map(|_| sim.add_node(cfg.clone())).collect();
        // Every node joins through every other at the same instant: each
        // pair dials both ways, and both ends see two connections.
        for &i in &nodes {
            let others: Vec<usize> = nodes.iter().copied().filter(|j| *j != i).collect();
            sim.join(i, &others);
        }
        let pairs = n * (n - 1) / 2;
        assert_eq!(
            sim.log.dials.len(),
            2 * pairs,
            "both ends of every pair dialled"
        );
        within(&mut sim, Duration::from_secs(10), |s| converged(s, &nodes)).expect("converged");
        let doubled = (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .filter(|&(i, j)| sim.connections_between(i, j) == 2)
            .count();
        eprintln!("seed {seed}: doubled {doubled}");
        // A duplicate closes once it has been quiet for a probe period.
        sim.run_for(cfg.membership.probe_period * 3);
        for i in 0..n {
            for j in (i + 1)..n {
                let c = sim.connections_between(i, j);
                assert!(c <= 1, "seed {seed}: {c} connections between {i} and {j}");
                assert!(open_to(&sim, i, j) <= 1 && open_to(&sim, j, i) <= 1);
                // Both ends agree: either both have it, or neither.
                assert_eq!(open_to(&sim, i, j), open_to(&sim, j, i));
            }
        }
        assert!(
            doubled > 0,
            "seed {seed}: no pair ever held two connections"
        );
    });
}

#[test]
fn a_refused_dial_backs_off_with_jitter_and_detection_stays_within_the_bound() {
    let mut gaps: Vec<Duration> = Vec::new();
    for_seeds(&seeds(200), |seed| {
        let mut sim = Sim::new(seed);
        let cfg = Config::default();
        let nodes = up_chain(&mut sim, 5, &cfg);
        let victim = 4;
        let (vid, vaddr) = (sim.id(victim), sim.addr(victim).clone());
        let killed = sim.now();
        sim.log.dials.clear();
        // The process is gone, the host up: every dial is refused.
        sim.kill(victim);
        let bound = cfg.detection_bound(nodes.len());
        let took = within(&mut sim, bound, |s| {
            nodes
                .iter()
                .filter(|i| **i != victim)
                .all(|i| s.node(*i).unwrap().member_state(&vid) == Some(MemberState::Dead))
        })
        .unwrap_or_else(|| panic!("seed {seed}: not Dead everywhere within {bound:?}"));
        assert!(took <= bound);
        // Dials to the victim, per node: spaced by the backoff, never a
        // storm.
        let mut by_node: BTreeMap<usize, Vec<Time>> = BTreeMap::new();
        for (t, i, a) in &sim.log.dials {
            if *a == vaddr && *t <= killed + bound {
                by_node.entry(*i).or_default().push(*t);
            }
        }
        for (i, times) in &by_node {
            // One round trip for the refusal, then at least half the
            // smallest backoff.
            let floor = cfg.connections.backoff_min / 2;
            for w in times.windows(2) {
                let gap = w[1].saturating_since(w[0]);
                assert!(
                    gap >= floor,
                    "seed {seed}: node {i} redialled after {gap:?}"
                );
                gaps.push(gap);
            }
            assert!(
                times.len() <= 12,
                "seed {seed}: node {i} dialled {} times",
                times.len()
            );
        }
    });
    // Jitter: the waits differ (equal jitter draws from half of each wait).
    gaps.sort();
    gaps.dedup();
    assert!(
        gaps.len() >= 10,
        "only {} distinct waits between dials",
        gaps.len()
    );
}

#[test]
fn a_connection_nobody_keeps_closes_once_idle() {
    for_seeds(&seeds(300), |seed| {
        let mut sim = Sim::new(seed);
        let mut cfg = Config::default();
        cfg.connections.idle_timeout = Duration::from_secs(2);
        let nodes = up_chain(&mut sim, 24, &cfg);
        sim.run_for(Duration::from_secs(5));
        // A caller and a provider that keep no connection to each other.
        let kept = |s: &Sim, i: usize, j: usize| {
            s.node(i)
                .unwrap()
                .connections()
                .any(|c| c.addr == *s.addr(j) && c.kept)
        };
        let (a, b) = nodes
            .iter()
            .flat_map(|a| nodes.iter().map(move |b| (*a, *b)))
            .find(|&(a, b)| {
                a != b
                    && sim.connections_between(a, b) == 0
                    && !kept(&sim, a, b)
                    && !kept(&sim, b, a)
            })
            .expect("24 nodes with views of about six leave pairs unconnected");
        sim.register(b, FunctionSpec::new("f"));
        within(&mut sim, Duration::from_secs(5), |s| {
            s.node(a).unwrap().live_providers("f").count() == 1
        })
        .expect("propagated");
        sim.call(a, Call::new("f")).unwrap();
        within(&mut sim, Duration::from_secs(1), |s| {
            !s.log.calls.is_empty()
        })
        .expect("answered");
        assert!(
            sim.connections_between(a, b) >= 1,
            "the call opened a connection"
        );
        let closed = within(&mut sim, Duration::from_secs(5), |s| {
            s.connections_between(a, b) == 0 || kept(s, a, b) || kept(s, b, a)
        })
        .unwrap_or_else(|| panic!("seed {seed}: the idle connection stayed open"));
        if sim.connections_between(a, b) == 0 {
            assert!(
                closed >= cfg.connections.idle_timeout,
                "closed after {closed:?}"
            );
        }
    });
}

#[test]
fn a_node_restarted_at_the_same_address_is_rekeyed() {
    // Seeds in which a peer held connections to both processes at once
    // (elsewhere the old ones were reset first).
    let mut rekeyed = 0;
    for_seeds(&seeds(400), |seed| {
        let mut sim = Sim::new(seed);
        let cfg = Config::default();
        let nodes = up_chain(&mut sim, 5, &cfg);
        let r = 3;
        let id = sim.id(r);
        // Crash and restart at once: the peers' connections to the old
        // process look open (nothing was in flight) until used.
        sim.crash(r);
        sim.restart(r, false);
        sim.register(r, FunctionSpec::new("after-restart"));
        let others: Vec<usize> = nodes.iter().copied().filter(|i| *i != r).collect();
        // The new process's connections arrive while the old ones look
        // open: at some peer both are keyed by the same address at once.
        let deadline = sim.now() + Duration::from_secs(1);
        let both = sim.run_until_true(deadline, Duration::from_micros(100), |s| {
            others.iter().any(|i| {
                let n = s.node(*i).unwrap();
                let to = n.connections().filter(|c| c.addr == *s.addr(r));
                to.map(|c| c.incarnation)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
                    == 2
            })
        });
        rekeyed += usize::from(both.is_some());
        within(&mut sim, Duration::from_secs(5), |s| {
            others.iter().all(|i| {
                let n = s.node(*i).unwrap();
                n.members()
                    .any(|m| m.id == id && m.incarnation == 2 && m.state == MemberState::Alive)
                    && n.live_providers("after-restart").count() == 1
            })
        })
        .unwrap_or_else(|| panic!("seed {seed}: the restarted node is not back everywhere"));
        sim.run_for(cfg.membership.probe_period * 2);
        for &i in &others {
            let n = sim.node(i).unwrap();
            let to: Vec<_> = n
                .connections()
                .filter(|c| c.addr == *sim.addr(r) && c.primary)
                .collect();
            assert!(to.len() <= 1);
            for c in to {
                assert_eq!(
                    c.incarnation, 2,
                    "seed {seed}: node {i} still talks to the old process"
                );
            }
            let n = sim.node(i).unwrap();
            assert_eq!(n.member_state(&id), Some(MemberState::Alive));
        }
        for &i in &others {
            sim.call(i, Call::new("after-restart")).unwrap();
        }
        within(&mut sim, Duration::from_secs(2), |s| {
            s.log.calls.len() == others.len()
        })
        .expect("every call answered");
        assert!(
            sim.log.calls.iter().all(|c| c.result.is_ok()),
            "{:?}",
            sim.log.calls
        );
    });
    eprintln!(
        "re-keyed from the old connection in {rekeyed} of {} seeds",
        SEEDS.count()
    );
    assert!(rekeyed > 0, "no seed exercised the re-key");
}

/// Handlers that take `latency` to echo.
fn slow(latency: Duration) -> mpreg_sim::Handler {
    Box::new(move |_, inv: &Invocation| (latency, Ok(inv.args.clone())))
}

#[test]
fn a_leave_drains_flushes_and_closes_with_running_calls_finished() {
    for_seeds(&seeds(500), |seed| {
        let mut sim = Sim::new(seed);
        let cfg = Config::default();
        let nodes = up_chain(&mut sim, 5, &cfg);
        let leaver = 2;
        let lid = sim.id(leaver);
        sim.register(leaver, FunctionSpec::new("slow"));
        within(&mut sim, Duration::from_secs(5), |s| {
            nodes
                .iter()
                .all(|i| s.node(*i).unwrap().live_providers("slow").count() == 1)
        })
        .expect("propagated");
        sim.set_handler(slow(Duration::from_millis(300)));
        let callers: Vec<usize> = nodes.iter().copied().filter(|i| *i != leaver).collect();
        for &i in &callers {
            for k in 0..2u8 {
                sim.call(i, Call::new("slow").args(vec![k])).unwrap();
            }
        }
        sim.run_for(Duration::from_millis(50));
        assert_eq!(sim.node(leaver).unwrap().running_invocations(), 8);
        sim.leave(leaver);
        // Draining: functions withdrawn, handlers still running.
        assert_eq!(
            sim.node(leaver).unwrap().status(),
            mpreg_proto::Status::Draining
        );
        within(&mut sim, Duration::from_secs(3), |s| !s.is_up(leaver)).expect("the leaver stopped");
        // Every running call was answered by the leaver before it closed.
        assert_eq!(sim.log.calls.len(), 8);
        for c in &sim.log.calls {
            assert!(c.result.is_ok(), "seed {seed}: {:?}", c.result);
        }
        for &i in &callers {
            let n = sim.node(i).unwrap();
            assert_eq!(n.member_state(&lid), Some(MemberState::Left));
            assert_eq!(open_to(&sim, i, leaver), 0, "node {i} kept a connection");
        }
        assert_eq!(sim.connections(leaver), 0, "every connection closed");
        // It was seen Left only after its last answer left it.
        let last_answer = sim.log.calls.iter().map(|c| c.at).max().unwrap();
        let first_left = sim
            .log
            .events
            .iter()
            .filter(|o| o.event == Event::MemberLeft { id: lid })
            .map(|o| o.at)
            .min()
            .unwrap();
        assert!(first_left >= last_answer.saturating_sub_time(Duration::from_millis(5)));
    });
}

/// `t - d`, or the epoch.
trait SubTime {
    fn saturating_sub_time(self, d: Duration) -> Time;
}

impl SubTime for Time {
    fn saturating_sub_time(self, d: Duration) -> Time {
        Time::from_micros(self.as_micros().saturating_sub(d.as_micros() as u64))
    }
}

#[test]
fn a_graceful_leave_under_load_loses_no_outcome() {
    for_seeds(&seeds(600), |seed| {
        let mut sim = Sim::new(seed);
        let cfg = Config::default();
        let nodes = up_chain(&mut sim, 6, &cfg);
        // Three providers of a function that must not run twice.
        let providers = [1, 2, 3];
        for p in providers {
            sim.register(p, FunctionSpec::new("write"));
        }
        within(&mut sim, Duration::from_secs(5), |s| {
            nodes
                .iter()
                .all(|i| s.node(*i).unwrap().live_providers("write").count() == 3)
        })
        .expect("propagated");
        // Handlers take 5-50 ms, varying per call.
        sim.set_handler(Box::new(|_, inv: &Invocation| {
            let ms = 5 + inv.call.seq % 46;
            (Duration::from_millis(ms), Ok(inv.args.clone()))
        }));
        let callers = [0, 4, 5];
        let in_flight = 64;
        let (mut started, mut k) = (0usize, 0u64);
        let start = sim.now();
        let leave_at = start + Duration::from_secs(1);
        let (mut left, mut ran_on_leaver) = (false, 0);
        while sim.now() < start + Duration::from_secs(3) {
            while started - sim.log.calls.len() < in_flight {
                let from = callers[(k % 3) as usize];
                k += 1;
                let r = sim.call(from, Call::new("write").args(Bytes::from(k.to_string())));
                assert!(r.is_ok(), "seed {seed}: {r:?}");
                started += 1;
            }
            if !left && sim.now() >= leave_at {
                ran_on_leaver = sim.log.invocations.iter().filter(|i| i.node == 2).count();
                sim.leave(2);
                left = true;
            }
            sim.run_for(Duration::from_millis(1));
        }
        within(&mut sim, Duration::from_secs(5), |s| {
            s.log.calls.len() == started
        })
        .expect("every call finished");
        let unknown = sim
            .log
            .calls
            .iter()
            .filter(|c| c.result == Err(CallError::OutcomeUnknown))
            .count();
        assert_eq!(
            unknown, 0,
            "seed {seed}: {unknown} OutcomeUnknown of {started}"
        );
        let failed: Vec<_> = sim.log.calls.iter().filter(|c| c.result.is_err()).collect();
        assert!(failed.is_empty(), "seed {seed}: {failed:?}");
        // Each call ran exactly once.
        let mut runs: BTreeMap<_, usize> = BTreeMap::new();
        for i in &sim.log.invocations {
            *runs.entry(i.call).or_default() += 1;
        }
        assert!(runs.values().all(|n| *n == 1), "a call ran twice");
        assert!(
            ran_on_leaver > 0 && started >= 3 * in_flight,
            "the load reached the leaver"
        );
        assert!(!sim.is_up(2));
        let retried: u64 = callers
            .iter()
            .map(|c| sim.node(*c).map_or(0, |n| n.metrics().calls_retried))
            .sum();
        eprintln!("seed {seed}: {started} calls, {retried} sent elsewhere, 0 unknown");
    });
}
