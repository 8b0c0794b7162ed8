//! A runtime over real loopback sockets as a [`Harness`]: nodes of any
//! executor over any [`Transport`] (WebSocket on tokio or async-std, QUIC),
//! each wrapped in a [`TestTransport`]. The harness drives them from a
//! tokio thread through their executor-independent handles.

use crate::faults::{FaultNet, TestTransport};
use crate::{CallSpec, Change, Harness, SLOW, Seen, config, reply_of};
use bytes::Bytes;
use mpreg_drive::Runtime;
use mpreg_drive::transport::Transport;
use mpreg_drive::{Event, Events, Node, Settings};
use mpreg_proto::{CallError, Config, FunctionSpec, MemberState, Metrics, NodeId};
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nodes of one runtime on 127.0.0.1, driven from a test thread.
pub struct RealHarness<T: Transport> {
    name: &'static str,
    rt: tokio::runtime::Runtime,
    make: Box<dyn FnMut() -> T>,
    /// Each node's transport (a restart reuses it: same identity).
    transports: Vec<T>,
    seeds: Vec<Vec<usize>>,
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
            transports: Vec::new(),
            seeds: Vec::new(),
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

impl<T: Transport> RealHarness<T> {
    /// Starts node `i` on `port` (0: any) over `inner`.
    fn launch(&mut self, i: usize, inner: T, port: u16, newer: bool) -> Node {
        let transport = TestTransport::new(inner, self.net.clone(), i, newer);
        let mut s = Settings::local();
        s.port = port;
        s.name = format!("n{i}");
        s.protocol = self.config.clone();
        s.seeds = self.seeds[i]
            .iter()
            .filter_map(|j| self.nodes.get(*j).and_then(Option::as_ref))
            .map(|n| n.addr().clone())
            .collect();
        s.protocol.connections.dial_timeout = Duration::from_secs(2);
        let node = self
            .rt
            .block_on(Node::<T::Runtime>::start_with(transport, s))
            .unwrap_or_else(|e| panic!("{}: node {i} did not start: {e}", self.name))
            .erase();
        self.net.add(i, node.addr());
        node
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
        let inner = (self.make)();
        self.transports.push(inner.clone());
        self.seeds.push(seeds.to_vec());
        let node = self.launch(i, inner, 0, newer);
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
        let slow = name.starts_with("slow");
        let r = self
            .rt
            .block_on(self.node(i).register_raw(spec, move |args| async move {
                if slow {
                    // On the node's own executor: handlers run there.
                    T::Runtime::sleep_until(Instant::now() + SLOW).await;
                }
                Ok(reply_of(i, &args))
            }));
        r.unwrap_or_else(|e| panic!("register {name} on node {i}: {e}"));
    }

    fn calls_while_leaving(
        &mut self,
        calls: &[CallSpec],
        leaver: usize,
    ) -> Vec<Result<Bytes, CallError>> {
        let leaving = (leaver != usize::MAX).then(|| {
            self.collect();
            self.events[leaver] = None;
            self.nodes[leaver].take().expect("the leaver runs")
        });
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
            if let Some(n) = leaving {
                // Once calls run there, it leaves.
                let started = Instant::now();
                while n.stats().await.map_or(0, |s| s.running_invocations) == 0
                    && started.elapsed() < Duration::from_secs(5)
                {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                n.leave().await;
            }
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

    fn set_config(&mut self, config: Config) {
        self.config = config;
    }

    fn join(&mut self, i: usize, seeds: &[usize]) {
        let addrs = seeds.iter().map(|j| self.node(*j).addr().clone()).collect();
        self.seeds[i].extend_from_slice(seeds);
        let _ = self.rt.block_on(self.node(i).join(addrs));
    }

    fn connections_to(&mut self, i: usize, j: usize) -> usize {
        let to = self.node(j).addr().clone();
        self.rt
            .block_on(self.node(i).connections())
            .map_or(0, |cs| {
                cs.iter().filter(|c| c.addr == to && !c.closing).count()
            })
    }

    fn restart(&mut self, i: usize) {
        let port = self.node(i).addr().url().map_or(0, |u| u.port);
        self.crash(i);
        let node = self.launch(i, self.transports[i].clone(), port, false);
        self.ids[i] = node.id();
        self.events[i] = Some(node.events());
        self.nodes[i] = Some(node);
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
