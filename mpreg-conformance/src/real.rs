//! A runtime over real loopback sockets as a [`Harness`]: mpreg-tokio's
//! nodes over any [`Transport`] (WebSocket, QUIC), each wrapped in a
//! [`TestTransport`].

use crate::faults::{FaultNet, TestTransport};
use crate::{CallSpec, Change, Harness, Seen, config, reply_of};
use bytes::Bytes;
use mpreg_proto::{CallError, Config, FunctionSpec, MemberState, Metrics, NodeId};
use mpreg_tokio::transport::Transport;
use mpreg_tokio::{Event, Events, Node, Settings};
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nodes of one runtime on 127.0.0.1, driven from a test thread.
pub struct RealHarness<T: Transport> {
    name: &'static str,
    rt: tokio::runtime::Runtime,
    make: Box<dyn FnMut() -> T>,
    net: Arc<FaultNet>,
    config: Config,
    nodes: Vec<Option<Node>>,
    ids: Vec<NodeId>,
    events: Vec<Option<Events>>,
    seen: Vec<Seen>,
    t0: Instant,
}

impl<T: Transport> std::fmt::Debug for RealHarness<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealHarness")
            .field("name", &self.name)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl<T: Transport> RealHarness<T> {
    /// A harness named `name` whose nodes each get a transport from
    /// `make`.
    pub fn new(name: &'static str, make: impl FnMut() -> T + 'static) -> RealHarness<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("a tokio runtime: {e}"));
        RealHarness {
            name,
            rt,
            make: Box::new(make),
            net: FaultNet::new(),
            config: config(),
            nodes: Vec::new(),
            ids: Vec::new(),
            events: Vec::new(),
            seen: Vec::new(),
            t0: Instant::now(),
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i]
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is not running"))
    }

    fn collect(&mut self) {
        for (i, ev) in self.events.iter_mut().enumerate() {
            let Some(ev) = ev else { continue };
            while let Some(o) = ev.try_next() {
                let change = match o.event {
                    Event::MemberUp { id, .. } => Change::Up(id),
                    Event::MemberSuspect { id } => Change::Suspect(id),
                    Event::MemberDown { id } => Change::Down(id),
                    Event::MemberLeft { id } => Change::Left(id),
                    _ => continue,
                };
                self.seen.push(Seen {
                    at: o.at.saturating_duration_since(self.t0),
                    observer: i,
                    change,
                });
            }
        }
    }
}

impl<T: Transport> Drop for RealHarness<T> {
    fn drop(&mut self) {
        for n in self.nodes.iter().flatten() {
            self.rt.block_on(n.abort());
        }
    }
}

impl<T: Transport> Harness for RealHarness<T> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn config(&self) -> &Config {
        &self.config
    }

    fn start(&mut self, seeds: &[usize], newer: bool) -> usize {
        let i = self.nodes.len();
        let transport = TestTransport::new((self.make)(), self.net.clone(), i, newer);
        let mut s = Settings::local();
        s.name = format!("n{i}");
        s.protocol = self.config.clone();
        s.seeds = seeds.iter().map(|j| self.node(*j).addr().clone()).collect();
        s.protocol.connections.dial_timeout = Duration::from_secs(2);
        let node = self
            .rt
            .block_on(Node::start_with(transport, s))
            .unwrap_or_else(|e| panic!("{}: node {i} did not start: {e}", self.name));
        self.net.add(i, node.addr());
        self.ids.push(node.id());
        self.events.push(Some(node.events()));
        self.nodes.push(Some(node));
        i
    }

    fn id(&self, i: usize) -> NodeId {
        self.ids[i]
    }

    fn is_up(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| n.is_some())
    }

    fn register(&mut self, i: usize, name: &str, resources: &[&str]) {
        let spec = FunctionSpec::new(name).resources(resources.iter().copied());
        let r = self.rt.block_on(
            self.node(i)
                .register_raw(spec, move |args| async move { Ok(reply_of(i, &args)) }),
        );
        r.unwrap_or_else(|e| panic!("register {name} on node {i}: {e}"));
    }

    fn calls(&mut self, calls: &[CallSpec]) -> Vec<Result<Bytes, CallError>> {
        let futures: Vec<_> = calls
            .iter()
            .map(|c| {
                self.node(c.from)
                    .call_raw(&c.function, c.args.clone())
                    .locs(c.locs.iter())
            })
            .collect();
        self.rt.block_on(async move {
            let handles: Vec<_> = futures
                .into_iter()
                .map(|c| tokio::spawn(c.into_future()))
                .collect();
            let mut out = Vec::with_capacity(handles.len());
            for h in handles {
                out.push(match h.await {
                    Ok(r) => r.map(|reply| reply.0),
                    Err(e) => Err(CallError::Rejected(format!("the call task failed: {e}"))),
                });
            }
            out
        })
    }

    fn members(&mut self, i: usize) -> Vec<(NodeId, MemberState)> {
        self.rt
            .block_on(self.node(i).members())
            .map(|ms| ms.into_iter().map(|m| (m.id, m.state)).collect())
            .unwrap_or_default()
    }

    fn providers(&mut self, i: usize, function: &str) -> Vec<NodeId> {
        self.rt
            .block_on(self.node(i).catalog())
            .map(|c| {
                c.into_iter()
                    .filter(|e| e.name == function)
                    .map(|e| e.node)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn metrics(&mut self, i: usize) -> Metrics {
        self.rt.block_on(self.node(i).metrics()).unwrap_or_default()
    }

    fn local_health(&mut self, i: usize) -> u32 {
        self.rt
            .block_on(self.node(i).stats())
            .map_or(0, |s| s.local_health)
    }

    fn crash(&mut self, i: usize) {
        self.collect();
        if let Some(n) = self.nodes[i].take() {
            self.rt.block_on(n.abort());
        }
        self.events[i] = None;
    }

    fn leave(&mut self, i: usize) {
        self.collect();
        if let Some(n) = self.nodes[i].take() {
            self.rt.block_on(n.leave());
        }
        self.events[i] = None;
    }

    fn partition(&mut self, groups: &[&[usize]]) {
        self.net.partition(groups);
    }

    fn heal(&mut self) {
        self.net.heal();
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    fn pass(&mut self, d: Duration) {
        self.rt.block_on(async move { tokio::time::sleep(d).await });
    }

    fn changes(&mut self) -> Vec<Seen> {
        self.collect();
        self.seen.clone()
    }
}
