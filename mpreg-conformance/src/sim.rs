//! The simulator as a [`Harness`]: virtual time, stream links.

use crate::faults::{new_kind_frame, newer_hello};
use crate::{CallSpec, Change, Harness, SLOW, Seen, config, reply_of};
use bytes::Bytes;
use mpreg_proto::{
    Call, CallError, Config, Event, FunctionSpec, MemberState, Metrics, NodeId, Time, Transmit,
};
use mpreg_sim::{Misbehavior, Sim};
use std::time::Duration;

/// The simulator running the scenarios.
#[derive(Debug)]
pub struct SimHarness {
    sim: Sim,
    config: Config,
    up: Vec<bool>,
}

impl SimHarness {
    /// A simulator with `seed` and the conformance [`config`].
    pub fn new(seed: u64) -> SimHarness {
        let mut sim = Sim::new(seed);
        sim.set_handler(Box::new(|i, inv| {
            let took = if inv.function.starts_with("slow") {
                SLOW
            } else {
                Duration::ZERO
            };
            (took, Ok(reply_of(i, &inv.args)))
        }));
        SimHarness {
            sim,
            config: config(),
            up: Vec::new(),
        }
    }

    /// The simulator itself.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }
}

/// The newer node's outgoing frames: `Hello` rewritten, a new-kind frame
/// after every fourth other frame.
struct Newer {
    count: u32,
}

impl Misbehavior for Newer {
    fn outgoing(
        &mut self,
        _now: Time,
        t: Transmit,
        _rng: &mut dyn rand::Rng,
    ) -> Vec<(Duration, Transmit)> {
        if let Some(h) = newer_hello(&t.frame) {
            return vec![(
                Duration::ZERO,
                Transmit {
                    frame: Bytes::from(h),
                    ..t
                },
            )];
        }
        self.count += 1;
        let extra = (self.count >= 4)
            .then(|| new_kind_frame(&t.frame))
            .flatten();
        let mut out = vec![(Duration::ZERO, t.clone())];
        if let Some(f) = extra {
            self.count = 0;
            out.push((
                Duration::ZERO,
                Transmit {
                    frame: Bytes::from(f),
                    ..t
                },
            ));
        }
        out
    }
}

fn change(e: &Event) -> Option<Change> {
    Some(match e {
        Event::MemberUp { id, .. } => Change::Up(*id),
        Event::MemberSuspect { id } => Change::Suspect(*id),
        Event::MemberDown { id } => Change::Down(*id),
        Event::MemberLeft { id } => Change::Left(*id),
        _ => return None,
    })
}

impl Harness for SimHarness {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn config(&self) -> &Config {
        &self.config
    }

    fn start(&mut self, seeds: &[usize], newer: bool) -> usize {
        let i = self.sim.add_node(self.config.clone());
        if newer {
            self.sim.set_misbehavior(i, Box::new(Newer { count: 0 }));
        }
        if !seeds.is_empty() {
            self.sim.join(i, seeds);
        }
        self.up.push(true);
        i
    }

    fn id(&self, i: usize) -> NodeId {
        self.sim.id(i)
    }

    fn is_up(&self, i: usize) -> bool {
        self.up.get(i).copied().unwrap_or(false)
    }

    fn register(&mut self, i: usize, name: &str, resources: &[&str]) {
        self.sim.register(
            i,
            FunctionSpec::new(name).resources(resources.iter().copied()),
        );
    }

    fn calls_while_leaving(
        &mut self,
        calls: &[CallSpec],
        leaver: usize,
    ) -> Vec<Result<Bytes, CallError>> {
        let started: Vec<Result<_, CallError>> = calls
            .iter()
            .map(|c| {
                let call = Call::new(&c.function)
                    .locs(c.locs.iter().map(|l| l.as_str()))
                    .args(c.args.clone());
                self.sim.call(c.from, call)
            })
            .collect();
        let ids: Vec<_> = started
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        let limit = self.sim.now() + self.config.calls.default_timeout + Duration::from_secs(5);
        if leaver != usize::MAX {
            let running = |s: &Sim| s.node(leaver).is_some_and(|n| n.running_invocations() > 0);
            self.sim
                .run_until_true(limit, Duration::from_micros(100), running);
            self.leave(leaver);
        }
        let done = |s: &Sim| {
            ids.iter()
                .all(|id| s.log.calls.iter().any(|c| c.call == *id))
        };
        self.sim
            .run_until_true(limit, Duration::from_millis(1), done);
        started
            .into_iter()
            .map(|r| {
                let id = r?;
                self.sim
                    .log
                    .calls
                    .iter()
                    .find(|c| c.call == id)
                    .map_or(Err(CallError::Timeout), |c| c.result.clone())
            })
            .collect()
    }

    fn members(&mut self, i: usize) -> Vec<(NodeId, MemberState)> {
        self.sim
            .node(i)
            .map(|n| n.members().map(|m| (m.id, m.state)).collect())
            .unwrap_or_default()
    }

    fn providers(&mut self, i: usize, function: &str) -> Vec<NodeId> {
        self.sim
            .node(i)
            .map(|n| n.live_providers(function).map(|p| p.node).collect())
            .unwrap_or_default()
    }

    fn metrics(&mut self, i: usize) -> Metrics {
        self.sim
            .node(i)
            .map(|n| n.metrics().clone())
            .unwrap_or_default()
    }

    fn local_health(&mut self, i: usize) -> u32 {
        self.sim.node(i).map_or(0, |n| n.local_health())
    }

    fn crash(&mut self, i: usize) {
        // The process is gone: its host resets connections, refuses dials.
        self.sim.kill(i);
        self.up[i] = false;
    }

    fn leave(&mut self, i: usize) {
        // As every runtime: drain, say Left, close, stop.
        self.sim.leave(i);
        let c = &self.config.leave;
        let limit = self.sim.now() + c.grace + c.flush_timeout;
        self.sim
            .run_until_true(limit, Duration::from_millis(1), |s| !s.is_up(i));
        self.sim.kill(i);
        self.up[i] = false;
    }

    fn set_config(&mut self, config: Config) {
        self.config = config;
    }

    fn join(&mut self, i: usize, seeds: &[usize]) {
        self.sim.join(i, seeds);
    }

    fn connections_to(&mut self, i: usize, j: usize) -> usize {
        let to = self.sim.addr(j).clone();
        self.sim.node(i).map_or(0, |n| {
            n.connections()
                .filter(|c| c.addr == to && !c.closing)
                .count()
        })
    }

    fn restart(&mut self, i: usize) {
        self.sim.kill(i);
        self.sim.restart(i, false);
        self.up[i] = true;
    }

    fn partition(&mut self, groups: &[&[usize]]) {
        self.sim.partition(groups);
    }

    fn heal(&mut self) {
        self.sim.heal();
    }

    fn now(&self) -> Duration {
        self.sim.now().saturating_since(Time::ZERO)
    }

    fn pass(&mut self, d: Duration) {
        self.sim.run_for(d);
    }

    fn changes(&mut self) -> Vec<Seen> {
        self.sim
            .log
            .events
            .iter()
            .filter_map(|o| {
                Some(Seen {
                    at: o.at.saturating_since(Time::ZERO),
                    observer: o.observer,
                    change: change(&o.event)?,
                })
            })
            .collect()
    }
}
