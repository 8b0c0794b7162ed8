//! Drivers for tests (feature `testing`): the run loop of the crate docs,
//! with the network replaced by a test's script ([`Lone`]) or by an
//! in-memory one ([`Net`], quinn-proto's `Pair` is the model). They carry
//! out every [`Order`] as a runtime must, so a test exercises exactly the
//! code a deployment runs.

use crate::event::{Closed, ConnId, Event, Invocation, Order};
use crate::id::{Addr, InvocationId, NodeId};
use crate::node::{Identity, Node};
use crate::time::Time;
use crate::wire::{self, Message};
use crate::{Config, FrameError};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

/// A node whose peers are scripted: frames come from named addresses,
/// every dial connects at once (unless refused), and everything the node
/// sends is recorded by the address it went to.
#[derive(Debug)]
pub struct Lone {
    /// The node under test.
    pub node: Node,
    /// The clock.
    pub now: Time,
    peers: BTreeMap<ConnId, Addr>,
    by_peer: BTreeMap<Addr, ConnId>,
    next: u64,
    /// Every frame sent, with the address of its connection's peer.
    pub sent: Vec<(Addr, Bytes)>,
    /// Every event.
    pub events: Vec<Event>,
    /// Handlers started.
    pub invocations: Vec<Invocation>,
    /// Handlers cancelled.
    pub cancelled: Vec<InvocationId>,
    /// Dials ordered.
    pub dials: Vec<Addr>,
    /// Connections the node closed (or aborted), by peer address.
    pub closed: Vec<Addr>,
    /// The node ordered [`Order::Stop`].
    pub stopped: bool,
    /// What the scripted network does with a dial.
    pub dial: Dial,
}

/// What [`Lone`]'s network does with a dial.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub enum Dial {
    /// It connects at once.
    #[default]
    Connect,
    /// It fails at once.
    Refuse,
    /// It neither connects nor fails (until the core gives up).
    Hang,
}

/// The address of a node index in the test drivers (`mem://I`).
pub fn addr(i: u128) -> Addr {
    Addr::new(format!("mem://{i}"))
}

/// An identity for index `i`: id `i`, address [`addr`]`(i)`, incarnation 1.
pub fn identity(i: u128) -> Identity {
    Identity {
        id: NodeId::from_u128(i),
        key: key(i),
        addr: addr(i),
        incarnation: 1,
    }
}

/// Node `i`'s key pair (its seed is `i`, twice).
pub fn key(i: u128) -> crate::Keypair {
    let mut seed = [0; 32];
    seed[..16].copy_from_slice(&i.to_le_bytes());
    seed[16..].copy_from_slice(&i.to_le_bytes());
    crate::Keypair::from_seed(seed)
}

/// Node `i`'s identity with its id derived from its key, as clusters with
/// an admission policy require.
pub fn keyed_identity(i: u128) -> Identity {
    Identity::new(key(i), addr(i), 1)
}

impl Lone {
    /// Node `i` with `cfg` (panics if `cfg` does not validate).
    pub fn new(cfg: Config, i: u128) -> Lone {
        Lone::with_identity(cfg, identity(i))
    }

    /// A node with this identity.
    pub fn with_identity(cfg: Config, identity: Identity) -> Lone {
        let node = Node::new(cfg, identity, Time::ZERO)
            .unwrap_or_else(|e| panic!("the test config does not validate: {e}"));
        let mut l = Lone {
            node,
            now: Time::ZERO,
            peers: BTreeMap::new(),
            by_peer: BTreeMap::new(),
            next: 0,
            sent: Vec::new(),
            events: Vec::new(),
            invocations: Vec::new(),
            cancelled: Vec::new(),
            dials: Vec::new(),
            closed: Vec::new(),
            stopped: false,
            dial: Dial::Connect,
        };
        l.drain();
        l
    }

    fn fresh(&mut self) -> ConnId {
        self.next += 1;
        ConnId(self.next)
    }

    /// The connection to `peer`, opened (as if the node had dialled it) if
    /// there is none.
    pub fn conn(&mut self, peer: &Addr) -> ConnId {
        if let Some(c) = self.by_peer.get(peer) {
            return *c;
        }
        let c = self.fresh();
        self.peers.insert(c, peer.clone());
        self.by_peer.insert(peer.clone(), c);
        self.node.handle_dialed(self.now, peer, c);
        self.drain();
        c
    }

    /// A new accepted connection, known to the test as `label` (frames the
    /// node sends on it are recorded under that address).
    pub fn accept(&mut self, label: &Addr) -> ConnId {
        let c = self.fresh();
        self.peers.insert(c, label.clone());
        self.by_peer.insert(label.clone(), c);
        self.node.handle_accepted(self.now, c);
        self.drain();
        c
    }

    /// A frame from `peer` (on [`conn`](Lone::conn)`(peer)`).
    pub fn frame(&mut self, peer: &Addr, frame: &[u8]) -> Result<(), FrameError> {
        let c = self.conn(peer);
        self.frame_on(c, frame)
    }

    /// A frame on a connection.
    pub fn frame_on(&mut self, conn: ConnId, frame: &[u8]) -> Result<(), FrameError> {
        let r = self.node.handle_frame(self.now, conn, frame);
        self.drain();
        r
    }

    /// The connection to `peer` closed.
    pub fn close(&mut self, peer: &Addr, how: Closed) {
        if let Some(c) = self.by_peer.remove(peer) {
            self.peers.remove(&c);
            self.node.handle_closed(self.now, c, how);
            self.drain();
        }
    }

    /// Moves the clock to `t` and fires what is due.
    pub fn advance_to(&mut self, t: Time) {
        self.now = self.now.max(t);
        self.node.handle_timeout(self.now);
        self.drain();
    }

    /// Runs every timer until `t`, one deadline at a time.
    pub fn run_until(&mut self, t: Time) {
        while let Some(d) = self.node.poll_timeout().filter(|d| *d <= t) {
            self.advance_to(d.max(self.now));
            if self.stopped {
                break;
            }
        }
        self.advance_to(t);
    }

    /// Carries out every order and collects every event.
    pub fn drain(&mut self) {
        loop {
            if let Some(o) = self.node.poll_order() {
                self.carry_out(o);
                continue;
            }
            if let Some(e) = self.node.poll_event() {
                self.events.push(e);
                continue;
            }
            break;
        }
    }

    fn carry_out(&mut self, o: Order) {
        match o {
            Order::Send(t) => {
                let to = self.peers.get(&t.conn).cloned().unwrap_or_default();
                self.sent.push((to, t.frame));
            }
            Order::Dial(a) => {
                self.dials.push(a.clone());
                match self.dial {
                    Dial::Refuse => self.node.handle_dial_failed(self.now, &a),
                    Dial::Hang => {}
                    Dial::Connect => {
                        let c = self.fresh();
                        self.peers.insert(c, a.clone());
                        self.by_peer.insert(a.clone(), c);
                        self.node.handle_dialed(self.now, &a, c);
                    }
                }
            }
            Order::Close(c) | Order::Abort(c) => {
                if let Some(a) = self.peers.remove(&c) {
                    if self.by_peer.get(&a) == Some(&c) {
                        self.by_peer.remove(&a);
                    }
                    self.closed.push(a);
                }
                self.node.handle_closed(self.now, c, Closed::Clean);
            }
            Order::Invoke(i) => self.invocations.push(*i),
            Order::Cancel(i) => self.cancelled.push(i),
            Order::Stop => self.stopped = true,
        }
    }

    /// Every message sent, decoded, with its destination.
    pub fn messages(&self) -> Vec<(Addr, Message)> {
        let max = self.node.config().limits.max_frame_size;
        self.sent
            .iter()
            .filter_map(|(a, f)| wire::decode(f, max, None).ok().map(|(_, m)| (a.clone(), m)))
            .collect()
    }

    /// The messages of one kind sent to `peer`.
    pub fn sent_to(&self, peer: &Addr, kind: wire::MessageKind) -> Vec<Message> {
        self.messages()
            .into_iter()
            .filter(|(a, m)| a == peer && m.kind() == kind)
            .map(|(_, m)| m)
            .collect()
    }
}

/// What a [`Net`] handler does with an invocation: its result and how long
/// it takes.
pub type Handler = Box<dyn FnMut(usize, &Invocation) -> (Duration, Result<Bytes, String>)>;

enum Item {
    Frame {
        to: usize,
        conn: ConnId,
        frame: Bytes,
    },
    Opened {
        dialer: usize,
        addr: Addr,
        to: usize,
    },
    DialFailed {
        node: usize,
        addr: Addr,
    },
    Closed {
        node: usize,
        conn: ConnId,
    },
    Done {
        node: usize,
        inv: InvocationId,
        result: Result<Bytes, String>,
    },
}

/// Nodes on an in-memory network: every hop takes `latency`, connections
/// are ordered and never lose a frame; nodes can be cut off (their frames
/// and dials vanish) and brought back.
pub struct Net {
    /// The clock.
    pub now: Time,
    /// One-way latency of every hop.
    pub latency: Duration,
    nodes: Vec<Option<Node>>,
    ends: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    next_conn: u64,
    queue: BinaryHeap<std::cmp::Reverse<(Time, u64, usize)>>,
    items: BTreeMap<u64, Item>,
    seq: u64,
    cut: BTreeSet<usize>,
    handler: Handler,
    /// Every event, with the node that saw it.
    pub events: Vec<(usize, Event)>,
    /// Every handler started, with its node.
    pub invocations: Vec<(usize, Invocation)>,
    /// Every handler cancelled, with its node.
    pub cancelled: Vec<(usize, InvocationId)>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl Net {
    /// `n` nodes with configs from `cfg(i)` (seeded with `i`), not joined.
    pub fn new(n: usize, cfg: impl FnMut(usize) -> Config) -> Net {
        Net::with_identities(n, cfg, |i| identity(i as u128))
    }

    /// Like [`Net::new`], node `i` with identity `id(i)` (e.g.
    /// [`keyed_identity`]).
    pub fn with_identities(
        n: usize,
        mut cfg: impl FnMut(usize) -> Config,
        mut id: impl FnMut(usize) -> Identity,
    ) -> Net {
        let mut net = Net {
            now: Time::ZERO,
            latency: Duration::from_millis(1),
            nodes: Vec::new(),
            ends: BTreeMap::new(),
            next_conn: 0,
            queue: BinaryHeap::new(),
            items: BTreeMap::new(),
            seq: 0,
            cut: BTreeSet::new(),
            handler: Box::new(|_, inv| (Duration::ZERO, Ok(inv.args.clone()))),
            events: Vec::new(),
            invocations: Vec::new(),
            cancelled: Vec::new(),
        };
        for i in 0..n {
            let mut c = cfg(i);
            c.rng_seed = i as u64;
            let node = Node::new(c, id(i), Time::ZERO)
                .unwrap_or_else(|e| panic!("the test config does not validate: {e}"));
            net.nodes.push(Some(node));
            net.drain(i);
        }
        net
    }

    /// `n` nodes joined as a chain (node i through node i − 1), run until
    /// every node sees every other Alive (panics after ten seconds).
    pub fn joined(n: usize, cfg: impl FnMut(usize) -> Config) -> Net {
        let mut net = Net::new(n, cfg);
        for i in 1..n {
            net.join(i, i - 1);
        }
        net.run_until_true(Duration::from_secs(10), |net| net.converged())
            .unwrap_or_else(|| panic!("{n} nodes did not converge"));
        net
    }

    /// Whether every running node sees exactly the running nodes, all
    /// Alive.
    pub fn converged(&self) -> bool {
        let up: Vec<NodeId> = self.nodes.iter().flatten().map(Node::id).collect();
        self.nodes.iter().flatten().all(|n| {
            n.live_members() == up.len()
                && up
                    .iter()
                    .all(|id| n.member_state(id) == Some(crate::MemberState::Alive))
        })
    }

    /// Sets what handlers do (default: echo the arguments at once).
    pub fn set_handler(&mut self, h: Handler) {
        self.handler = h;
    }

    /// Node `i`, unless it is down.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(i).and_then(Option::as_ref)
    }

    /// Runs `f` on node `i` now, then carries out what it produced.
    pub fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Time) -> R) -> Option<R> {
        let now = self.now;
        let r = f(self.nodes.get_mut(i)?.as_mut()?, now);
        self.drain(i);
        Some(r)
    }

    /// Node `i` joins through node `seed`.
    pub fn join(&mut self, i: usize, seed: usize) {
        self.with(i, |n, now| n.join(now, [addr(seed as u128)]));
    }

    /// Node `i` vanishes: its frames and dials go nowhere, nothing reaches
    /// it (a silent partition of one).
    pub fn cut(&mut self, i: usize) {
        self.cut.insert(i);
    }

    /// Node `i` is reachable again.
    pub fn uncut(&mut self, i: usize) {
        self.cut.remove(&i);
    }

    /// Node `i` crashes: its connections break at once.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
        let mine: Vec<(usize, ConnId)> = self.ends.keys().filter(|e| e.0 == i).copied().collect();
        for e in mine {
            if let Some(other) = self.ends.remove(&e) {
                self.ends.remove(&other);
                self.with(other.0, |n, now| {
                    n.handle_closed(now, other.1, Closed::Lost)
                });
            }
        }
    }

    fn push(&mut self, at: Time, item: Item) {
        self.seq += 1;
        self.items.insert(self.seq, item);
        self.queue.push(std::cmp::Reverse((at, self.seq, 0)));
    }

    fn drain(&mut self, i: usize) {
        loop {
            let Some(node) = self.nodes.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            if let Some(o) = node.poll_order() {
                self.carry_out(i, o);
            } else if let Some(e) = node.poll_event() {
                self.events.push((i, e));
            } else {
                return;
            }
        }
    }

    fn carry_out(&mut self, i: usize, o: Order) {
        let at = self.now + self.latency;
        match o {
            Order::Send(t) => {
                if let Some(&(to, conn)) = self.ends.get(&(i, t.conn))
                    && !self.cut.contains(&i)
                    && !self.cut.contains(&to)
                {
                    self.push(
                        at,
                        Item::Frame {
                            to,
                            conn,
                            frame: t.frame,
                        },
                    );
                }
            }
            Order::Dial(a) => {
                let to = a
                    .as_str()
                    .strip_prefix("mem://")
                    .and_then(|s| s.parse::<usize>().ok())
                    .filter(|t| self.node(*t).is_some() && *t != i);
                match to {
                    Some(to) if !self.cut.contains(&i) && !self.cut.contains(&to) => self.push(
                        at + self.latency,
                        Item::Opened {
                            dialer: i,
                            addr: a,
                            to,
                        },
                    ),
                    _ => self.push(at, Item::DialFailed { node: i, addr: a }),
                }
            }
            Order::Close(c) | Order::Abort(c) => {
                if let Some(other) = self.ends.remove(&(i, c)) {
                    self.ends.remove(&other);
                    self.push(
                        at,
                        Item::Closed {
                            node: other.0,
                            conn: other.1,
                        },
                    );
                }
                self.push(at, Item::Closed { node: i, conn: c });
            }
            Order::Invoke(inv) => {
                let (took, result) = (self.handler)(i, &inv);
                self.invocations.push((i, (*inv).clone()));
                self.push(
                    self.now + took,
                    Item::Done {
                        node: i,
                        inv: inv.id,
                        result,
                    },
                );
            }
            Order::Cancel(inv) => self.cancelled.push((i, inv)),
            Order::Stop => self.nodes[i] = None,
        }
    }

    fn fresh(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    fn process(&mut self, item: Item) {
        match item {
            Item::Frame { to, conn, frame } => {
                self.with(to, |n, now| n.handle_frame(now, conn, &frame));
            }
            Item::Opened { dialer, addr, to } => {
                if self.node(to).is_none() || self.node(dialer).is_none() {
                    return self
                        .with(dialer, |n, now| n.handle_dial_failed(now, &addr))
                        .unwrap_or(());
                }
                let (a, b) = (self.fresh(), self.fresh());
                self.ends.insert((dialer, a), (to, b));
                self.ends.insert((to, b), (dialer, a));
                self.with(to, |n, now| n.handle_accepted(now, b));
                self.with(dialer, |n, now| n.handle_dialed(now, &addr, a));
            }
            Item::DialFailed { node, addr } => {
                self.with(node, |n, now| n.handle_dial_failed(now, &addr));
            }
            Item::Closed { node, conn } => {
                self.with(node, |n, now| n.handle_closed(now, conn, Closed::Clean));
            }
            Item::Done { node, inv, result } => {
                self.with(node, |n, now| {
                    let _ = n.complete_invocation(now, inv, result);
                });
            }
        }
    }

    /// Runs until `t`: frames, timers and handlers in time order.
    pub fn run_until(&mut self, t: Time) {
        loop {
            let next_item = self.queue.peek().map(|r| r.0.0);
            let next_timer = (0..self.nodes.len())
                .filter_map(|i| self.node(i).and_then(|n| n.poll_timeout()).map(|d| (d, i)))
                .min();
            let at = match (next_item, next_timer) {
                (Some(a), Some((b, _))) => a.min(b),
                (a, b) => match a.or(b.map(|b| b.0)) {
                    Some(x) => x,
                    None => break,
                },
            };
            if at > t {
                break;
            }
            self.now = self.now.max(at);
            if next_item == Some(at) {
                if let Some(std::cmp::Reverse((_, seq, _))) = self.queue.pop()
                    && let Some(item) = self.items.remove(&seq)
                {
                    self.process(item);
                }
            } else if let Some((_, i)) = next_timer {
                let now = self.now;
                self.with(i, |n, _| n.handle_timeout(now));
            }
        }
        self.now = self.now.max(t);
    }

    /// Runs for `d`.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until `pred` holds (checked after every step of `step`), at
    /// most `limit`; returns how long it took.
    pub fn run_until_true(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Net) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        loop {
            if pred(self) {
                return Some(self.now.saturating_since(start));
            }
            if self.now >= start + limit {
                return None;
            }
            self.run_for(Duration::from_millis(1));
        }
    }
}
