//! The simulator: a virtual clock, an event queue and the network between
//! [`mpreg_proto::Node`]s. It is a runtime like any other — it drives the
//! core exactly as the embedding contract says — except that time is
//! virtual and every random choice comes from one seed.

use crate::net::{Link, LinkModel, NetConfig};
use bytes::Bytes;
use mpreg_proto::Keypair;
use mpreg_proto::{
    Addr, Call, CallError, CallId, Closed, Config, ConnId, Event, FunctionSpec, Identity,
    Invocation, InvocationId, Node, NodeId, Order, Time, Transmit,
};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Duration;

/// What a handler does with an invocation: how long it takes and what it
/// returns.
pub type Handler = Box<dyn FnMut(usize, &Invocation) -> (Duration, Result<Bytes, String>)>;

/// A misbehaving node's outgoing frames pass through this (for the
/// security work): return the frames to send instead, each with an extra
/// delay. Dropping is returning nothing; duplicating, returning a frame
/// twice; rewriting, returning other bytes; replaying, keeping a frame and
/// returning it later.
pub trait Misbehavior {
    /// Decides what happens to one outgoing frame.
    fn outgoing(&mut self, now: Time, t: Transmit, rng: &mut dyn Rng) -> Vec<(Duration, Transmit)>;
}

/// A completed call, as the simulator saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    /// When it completed.
    pub at: Time,
    /// The calling node.
    pub node: usize,
    /// Which call.
    pub call: CallId,
    /// Its outcome.
    pub result: Result<Bytes, CallError>,
}

/// A handler started somewhere.
#[derive(Clone, Debug, PartialEq)]
pub struct InvocationRecord {
    /// When.
    pub at: Time,
    /// On which node.
    pub node: usize,
    /// For which call.
    pub call: CallId,
    /// Which function.
    pub function: String,
}

/// A membership or catalog event seen by a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// When.
    pub at: Time,
    /// The node that saw it.
    pub observer: usize,
    /// What.
    pub event: Event,
}

/// Everything recorded during a run.
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// Member and function events (not calls or invocations).
    pub events: Vec<Observed>,
    /// Completed calls.
    pub calls: Vec<CallRecord>,
    /// Started handlers.
    pub invocations: Vec<InvocationRecord>,
    /// Dials ordered: when, by which node, to which address.
    pub dials: Vec<(Time, usize, Addr)>,
}

/// Network counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames handed to the network.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Connections dialled.
    pub dials: u64,
    /// Connections that broke (stall, kill, failed dial).
    pub breaks: u64,
    /// Frames the datagram model dropped.
    pub dropped: u64,
    /// A hash of every frame handed to the network, in order, with its
    /// time, sender and destination: equal for two runs exactly when they
    /// transmitted the same bytes in the same order (up to collisions).
    pub trace: u64,
}

/// Counts of events the nodes emitted, kept even when full recording is
/// off: how many nodes marked a member Dead, and how many nodes' catalogs
/// gained a function. Large runs check these instead of polling every node.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// `MemberDown` events per member.
    pub down: HashMap<NodeId, usize>,
    /// `FunctionAdded` events per function name.
    pub added: HashMap<String, usize>,
}

/// One simulated process.
pub struct SimNode {
    node: Option<Node>,
    addr: Addr,
    id: NodeId,
    key: Keypair,
    zone: u16,
    incarnation: u64,
    config: Config,
    seeds: Vec<Addr>,
    armed: Option<Time>,
    timer_gen: u64,
    /// Crashed without a trace (host silent) rather than killed.
    silent: bool,
}

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("addr", &self.addr)
            .field("up", &self.node.is_some())
            .finish()
    }
}

/// What travels in one direction of a connection, in order.
#[derive(Debug)]
enum Piece {
    Frame(Bytes),
    /// The sender's close: after everything it sent before.
    Close,
}

#[derive(Debug, Default)]
struct Dir {
    last_delivery: Time,
    busy_until: Time,
    /// Pieces held back (stalled by a partition, or the receiver gone).
    held: VecDeque<Piece>,
    stalled_since: Option<Time>,
}

/// One connection: `ends[0]` dialled `ends[1]`. Each end has the id its
/// node's runtime (this simulator) gave it.
#[derive(Debug)]
struct Conn {
    ends: [(u32, ConnId); 2],
    open: bool,
    epoch: u64,
    /// `[dialler → acceptor, acceptor → dialler]`.
    dir: [Dir; 2],
    /// Which ends have been told the connection closed.
    told: [bool; 2],
    /// The incarnation of each end's process: a piece reaching a restarted
    /// process on its predecessor's connection is answered with a reset.
    incarnations: [u64; 2],
    /// The dialled address (reported back to the dialler).
    addr: Addr,
}

enum Ev {
    Deliver {
        conn: u64,
        d: usize,
        piece: Piece,
        epoch: u64,
    },
    Send {
        from: u32,
        t: Transmit,
    },
    Timer {
        node: u32,
        epoch: u64,
    },
    ConnReady {
        conn: u64,
        epoch: u64,
    },
    DialFailed {
        node: u32,
        incarnation: u64,
        addr: Addr,
    },
    StallCheck {
        conn: u64,
        epoch: u64,
    },
    /// A connection breaks (the host reset it).
    Reset {
        conn: u64,
        epoch: u64,
    },
    InvokeDone {
        node: u32,
        incarnation: u64,
        inv: InvocationId,
        result: Result<Bytes, String>,
    },
}

struct Item {
    at: Time,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The simulator.
pub struct Sim {
    now: Time,
    seed: u64,
    rng: ChaCha8Rng,
    /// Network settings; change before the run or between phases.
    pub net: NetConfig,
    nodes: Vec<SimNode>,
    by_addr: HashMap<Addr, u32>,
    by_id: HashMap<NodeId, u32>,
    zone_links: BTreeMap<(u16, u16), Link>,
    groups: Option<Vec<u16>>,
    /// By global id (both ends' `ConnId`); a fixed hasher keeps runs
    /// replayable, and every walk over it is sorted first.
    conns: HashMap<u64, Conn, foldhash::fast::FixedState>,
    next_conn: u64,
    queue: BinaryHeap<Reverse<Item>>,
    seq: u64,
    handler: Handler,
    misbehavior: BTreeMap<u32, Box<dyn Misbehavior>>,
    /// What happened (when recording).
    pub log: Log,
    /// Whether to record member and function events (off for large runs).
    pub record_events: bool,
    /// Network counters.
    pub stats: NetStats,
    /// Event counts.
    pub tally: Tally,
    processed: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("seed", &self.seed)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

/// Derives independent seeds from one.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Sim {
    /// A simulator with no nodes; `seed` determines everything.
    pub fn new(seed: u64) -> Sim {
        Sim {
            now: Time::ZERO,
            seed,
            rng: ChaCha8Rng::seed_from_u64(derive_seed(seed, u64::MAX)),
            net: NetConfig::default(),
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            by_id: HashMap::new(),
            zone_links: BTreeMap::new(),
            groups: None,
            conns: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0)),
            next_conn: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            handler: Box::new(|_, inv| (Duration::ZERO, Ok(inv.args.clone()))),
            misbehavior: BTreeMap::new(),
            log: Log::default(),
            record_events: true,
            stats: NetStats::default(),
            tally: Tally::default(),
            processed: 0,
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual now.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Events processed so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Number of nodes ever added.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Sets what handlers do (default: echo the arguments at once).
    pub fn set_handler(&mut self, h: Handler) {
        self.handler = h;
    }

    /// Makes a node misbehave.
    pub fn set_misbehavior(&mut self, node: usize, m: Box<dyn Misbehavior>) {
        self.misbehavior.insert(node as u32, m);
    }

    /// Sets the link between two zones (both directions).
    pub fn set_zone_link(&mut self, a: u16, b: u16, link: Link) {
        self.zone_links.insert((a.min(b), a.max(b)), link);
    }

    fn link(&self, a: u32, b: u32) -> &Link {
        let (za, zb) = (self.nodes[a as usize].zone, self.nodes[b as usize].zone);
        self.zone_links
            .get(&(za.min(zb), za.max(zb)))
            .unwrap_or(&self.net.default_link)
    }

    fn schedule(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Item {
            at: at.max(self.now),
            seq: self.seq,
            ev,
        }));
    }

    // ----- nodes -----------------------------------------------------------

    /// Adds a node in zone 0 (not yet joined to anything).
    pub fn add_node(&mut self, config: Config) -> usize {
        self.add_node_in_zone(config, 0)
    }

    /// Adds a node in a zone (zones select links; see
    /// [`set_zone_link`](Sim::set_zone_link)).
    pub fn add_node_in_zone(&mut self, mut config: Config, zone: u16) -> usize {
        let i = self.nodes.len();
        // The node's key from the sim's RNG; its id derives from the key.
        let seed: u128 = self.rng.random();
        let key = Keypair::from_seed(key_seed(seed));
        let id = key.node_id();
        config.rng_seed = derive_seed(self.seed, i as u64);
        let addr = Addr::new(format!("sim://{i}"));
        let node = Node::new(
            config.clone(),
            Identity {
                id,
                key: key.clone(),
                addr: addr.clone(),
                incarnation: 1,
            },
            self.now,
        )
        .unwrap_or_else(|e| panic!("invalid simulation config: {e}"));
        self.by_addr.insert(addr.clone(), i as u32);
        self.by_id.insert(id, i as u32);
        self.nodes.push(SimNode {
            node: Some(node),
            addr,
            id,
            key,
            zone,
            incarnation: 1,
            config,
            seeds: Vec::new(),
            armed: None,
            timer_gen: 0,
            silent: false,
        });
        self.drain(i as u32);
        i
    }

    /// Adds `n` nodes that already know each other, as if a cluster had
    /// converged (each imports every member record; nobody is connected
    /// yet). Returns their indices.
    pub fn add_converged(&mut self, n: usize, config: &Config) -> Vec<usize> {
        let nodes: Vec<usize> = (0..n).map(|_| self.add_node(config.clone())).collect();
        let records: Vec<mpreg_proto::wire::Update> = nodes
            .iter()
            .map(|i| {
                mpreg_proto::wire::Update::Member(mpreg_proto::wire::MemberRecord {
                    id: self.nodes[*i].id,
                    addr: self.nodes[*i].addr.clone(),
                    incarnation: self.nodes[*i].incarnation,
                    state: mpreg_proto::MemberState::Alive,
                    accusers: Vec::new(),
                    name: config.name.as_str().into(),
                })
            })
            .collect();
        for &i in &nodes {
            self.with_node(i, |n, now| n.import(now, &records));
        }
        nodes
    }

    /// The node, unless it is crashed.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(i).and_then(|n| n.node.as_ref())
    }

    /// Whether the node is running.
    pub fn is_up(&self, i: usize) -> bool {
        self.node(i).is_some()
    }

    /// The node's id (stable across restarts).
    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].id
    }

    /// The node's address.
    pub fn addr(&self, i: usize) -> &Addr {
        &self.nodes[i].addr
    }

    /// The index of a node id.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.by_id.get(id).map(|i| *i as usize)
    }

    /// Indices of running nodes.
    pub fn up_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.is_up(*i)).collect()
    }

    /// Runs `f` on a running node now, then routes what it produced.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Time) -> R) -> Option<R> {
        let now = self.now;
        let r = f(self.nodes.get_mut(i)?.node.as_mut()?, now);
        self.drain(i as u32);
        Some(r)
    }

    /// Joins node `i` through the given seed nodes.
    pub fn join(&mut self, i: usize, seeds: &[usize]) {
        let addrs: Vec<Addr> = seeds.iter().map(|s| self.nodes[*s].addr.clone()).collect();
        self.nodes[i].seeds = addrs.clone();
        self.with_node(i, |n, now| n.join(now, addrs));
    }

    /// Opens a bridge from node `i` to another cluster through seed nodes.
    pub fn bridge(&mut self, i: usize, cluster: &str, seeds: &[usize]) {
        let bridge = mpreg_proto::BridgeConfig {
            cluster: cluster.into(),
            seeds: seeds.iter().map(|s| self.nodes[*s].addr.clone()).collect(),
        };
        self.with_node(i, |n, now| n.bridge(now, bridge))
            .transpose()
            .unwrap_or_else(|e| panic!("bridge from node {i}: {e}"));
    }

    /// Registers a function on node `i`.
    pub fn register(&mut self, i: usize, spec: FunctionSpec) {
        self.with_node(i, |n, now| n.register(now, spec))
            .transpose()
            .unwrap_or_else(|e| panic!("register on node {i}: {e}"));
    }

    /// Starts a call on node `i`.
    pub fn call(&mut self, i: usize, call: Call) -> Result<CallId, CallError> {
        self.with_node(i, |n, now| n.call(now, call))
            .unwrap_or(Err(CallError::Rejected("node is down".into())))
    }

    /// Node `i` leaves gracefully, as every runtime does: it drains, says
    /// it left, closes its connections and stops (its process exits) when
    /// the core orders it.
    pub fn leave(&mut self, i: usize) {
        self.with_node(i, |n, now| n.leave(now));
    }

    /// Node `i` stops silently: its host answers nothing, connections to it
    /// stall, dials time out.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].node = None;
        self.nodes[i].silent = true;
    }

    /// Node `i`'s process is killed: its host resets every connection at
    /// once and refuses new ones.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].node = None;
        self.nodes[i].silent = false;
        self.break_all(i as u32);
    }

    /// Breaks every connection with an end at node `i`.
    fn break_all(&mut self, i: u32) {
        let mut mine: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.ends.iter().any(|e| e.0 == i))
            .map(|(g, _)| *g)
            .collect();
        mine.sort_unstable();
        for g in mine {
            self.break_conn(g);
        }
    }

    /// Restarts a crashed node with a new incarnation (and the same id),
    /// optionally at a new address, rejoining its seeds.
    pub fn restart(&mut self, i: usize, new_addr: bool) {
        let n = &mut self.nodes[i];
        n.incarnation += 1;
        if new_addr {
            let addr = Addr::new(format!("sim://{i}.{}", n.incarnation));
            self.by_addr.insert(addr.clone(), i as u32);
            n.addr = addr;
        }
        let mut config = n.config.clone();
        config.rng_seed = derive_seed(self.seed, (i as u64) << 20 | n.incarnation);
        let node = Node::new(
            config,
            Identity {
                id: n.id,
                key: n.key.clone(),
                addr: n.addr.clone(),
                incarnation: n.incarnation,
            },
            self.now,
        )
        .unwrap_or_else(|e| panic!("invalid simulation config: {e}"));
        n.node = Some(node);
        n.silent = false;
        let seeds = n.seeds.clone();
        // The old process's connections are dead: what peers were still
        // retransmitting to it is reset a round trip from now; an idle one
        // is reset when something next reaches it.
        let me = i as u32;
        let mut retrying: Vec<(u64, u64, Duration)> = self
            .conns
            .iter()
            .filter_map(|(g, c)| {
                let d = c.ends.iter().position(|e| e.0 != me)?;
                let toward_me = c.ends[1 - d].0 == me && !c.dir[d].held.is_empty();
                toward_me.then(|| (*g, c.epoch, self.link(c.ends[0].0, c.ends[1].0).latency * 2))
            })
            .collect();
        retrying.sort_unstable_by_key(|r| r.0);
        for (g, epoch, rtt) in retrying {
            self.schedule(self.now + rtt, Ev::Reset { conn: g, epoch });
        }
        self.drain(i as u32);
        if !seeds.is_empty() {
            self.with_node(i, |n, now| n.join(now, seeds));
        }
    }

    /// Splits the network: nodes in different groups cannot reach each
    /// other. Nodes not listed form one more group.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let mut g = vec![u16::MAX; self.nodes.len()];
        for (gi, members) in groups.iter().enumerate() {
            for m in *members {
                g[*m] = gi as u16;
            }
        }
        self.groups = Some(g);
    }

    /// Ends the partition: stalled connections resume in order.
    pub fn heal(&mut self) {
        self.groups = None;
        let mut stalled: Vec<(u64, usize)> = self
            .conns
            .iter()
            .flat_map(|(g, c)| {
                (0..2)
                    .filter(move |d| c.open && !c.dir[*d].held.is_empty())
                    .map(move |d| (*g, d))
            })
            .collect();
        stalled.sort_unstable();
        for (g, d) in stalled {
            self.flush_held(g, d);
        }
    }

    fn reachable(&self, a: u32, b: u32) -> bool {
        match &self.groups {
            None => true,
            Some(g) => {
                let ga = g.get(a as usize).copied().unwrap_or(u16::MAX);
                let gb = g.get(b as usize).copied().unwrap_or(u16::MAX);
                ga == gb
            }
        }
    }

    /// Connections of a node that its core does not keep (outside its
    /// active view, ring and bridges).
    pub fn transient_connections(&self, i: usize) -> usize {
        self.node(i)
            .map_or(0, |n| n.connections().filter(|c| !c.kept).count())
    }

    /// Internal sizes: connections, held pieces, queued events.
    pub fn debug_sizes(&self) -> (usize, usize, usize) {
        let held = self
            .conns
            .values()
            .map(|c| c.dir[0].held.len() + c.dir[1].held.len())
            .sum();
        (self.conns.len(), held, self.queue.len())
    }

    /// Connections between two nodes (opening ones included).
    pub fn connections_between(&self, a: usize, b: usize) -> usize {
        let (a, b) = (a as u32, b as u32);
        self.conns
            .values()
            .filter(|c| {
                let ends = [c.ends[0].0, c.ends[1].0];
                ends == [a, b] || ends == [b, a]
            })
            .count()
    }

    /// Connections with an end at a node (opening ones included).
    pub fn connections(&self, i: usize) -> usize {
        let me = i as u32;
        self.conns
            .values()
            .filter(|c| c.ends.iter().any(|e| e.0 == me))
            .count()
    }

    /// [`connections`](Sim::connections) of every node, in one pass.
    pub fn connection_counts(&self) -> Vec<usize> {
        let mut n = vec![0; self.nodes.len()];
        for c in self.conns.values() {
            for e in &c.ends {
                if let Some(k) = n.get_mut(e.0 as usize) {
                    *k += 1;
                }
            }
        }
        n
    }

    // ----- running -----------------------------------------------------------

    /// Processes events up to and including `t`; the clock ends at `t`.
    pub fn run_until(&mut self, t: Time) {
        while let Some(Reverse(item)) = self.queue.peek() {
            if item.at > t {
                break;
            }
            let Some(Reverse(item)) = self.queue.pop() else {
                break;
            };
            self.now = item.at;
            self.processed += 1;
            self.process(item.ev);
        }
        self.now = self.now.max(t);
    }

    /// Runs for a virtual duration.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Runs until `pred` holds (checked every `step`) or `deadline`;
    /// returns when it first held.
    pub fn run_until_true(
        &mut self,
        deadline: Time,
        step: Duration,
        mut pred: impl FnMut(&Sim) -> bool,
    ) -> Option<Time> {
        loop {
            if pred(self) {
                return Some(self.now);
            }
            if self.now >= deadline {
                return None;
            }
            let t = (self.now + step).min(deadline);
            self.run_until(t);
        }
    }

    fn process(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver {
                conn,
                d,
                piece,
                epoch,
            } => self.deliver(conn, d, piece, epoch),
            Ev::Send { from, t } => self.route(from, t),
            Ev::Timer { node, epoch } => {
                let n = &mut self.nodes[node as usize];
                if n.timer_gen != epoch {
                    return;
                }
                n.armed = None;
                let now = self.now;
                if let Some(core) = n.node.as_mut() {
                    core.handle_timeout(now);
                    self.drain(node);
                }
            }
            Ev::ConnReady { conn, epoch } => self.conn_ready(conn, epoch),
            Ev::DialFailed {
                node,
                incarnation,
                addr,
            } => {
                if self.nodes[node as usize].incarnation == incarnation {
                    self.with_node(node as usize, |n, now| n.handle_dial_failed(now, &addr));
                }
            }
            Ev::StallCheck { conn, epoch } => self.stall_check(conn, epoch),
            Ev::Reset { conn, epoch } => {
                if self.conns.get(&conn).is_some_and(|c| c.epoch == epoch) {
                    self.break_conn(conn);
                }
            }
            Ev::InvokeDone {
                node,
                incarnation,
                inv,
                result,
            } => {
                let n = &self.nodes[node as usize];
                if n.incarnation == incarnation && n.node.is_some() {
                    self.with_node(node as usize, |n, now| {
                        let _ = n.complete_invocation(now, inv, result);
                    });
                }
            }
        }
    }

    /// Carries out a node's orders, routes its events and re-arms its
    /// timer: the run loop of every runtime.
    fn drain(&mut self, i: u32) {
        let idx = i as usize;
        loop {
            let Some(core) = self.nodes[idx].node.as_mut() else {
                return;
            };
            if let Some(o) = core.poll_order() {
                self.on_order(i, o);
                continue;
            }
            if let Some(e) = core.poll_event() {
                self.on_event(i, e);
                continue;
            }
            break;
        }
        // Arm a wake-up only when the deadline moved earlier than the one
        // already queued: a wake-up that comes early finds nothing due and
        // re-arms, which is cheaper than queueing one per change.
        let next = self.nodes[idx].node.as_ref().and_then(|n| n.poll_timeout());
        let n = &mut self.nodes[idx];
        if let Some(t) = next
            && n.armed.is_none_or(|a| t < a)
        {
            n.timer_gen += 1;
            n.armed = Some(t);
            let epoch = n.timer_gen;
            self.schedule(t, Ev::Timer { node: i, epoch });
        }
    }

    fn on_order(&mut self, i: u32, o: Order) {
        let now = self.now;
        match o {
            Order::Send(t) => self.send(i, t),
            Order::Dial(addr) => {
                if self.record_events {
                    self.log.dials.push((now, i as usize, addr.clone()));
                }
                self.dial(i, addr)
            }
            Order::Close(id) => {
                if let Some(g) = self.conn_of(i, id) {
                    self.send_piece(g, i, Piece::Close);
                }
            }
            Order::Abort(id) => {
                if let Some(g) = self.conn_of(i, id) {
                    self.break_conn(g);
                }
            }
            Order::Invoke(inv) => {
                self.log.invocations.push(InvocationRecord {
                    at: now,
                    node: i as usize,
                    call: inv.call,
                    function: inv.function.to_string(),
                });
                let (latency, result) = (self.handler)(i as usize, &inv);
                let incarnation = self.nodes[i as usize].incarnation;
                self.schedule(
                    now + latency,
                    Ev::InvokeDone {
                        node: i,
                        incarnation,
                        inv: inv.id,
                        result,
                    },
                );
            }
            // Simulated handlers cannot be stopped: the core ignores their
            // late results.
            Order::Cancel(_) => {}
            Order::Stop => {
                // The process exits; whatever is still open is reset.
                self.nodes[i as usize].node = None;
                self.nodes[i as usize].silent = false;
                self.break_all(i);
            }
        }
    }

    fn on_event(&mut self, i: u32, e: Event) {
        let now = self.now;
        match e {
            Event::CallDone { call, result } => self.log.calls.push(CallRecord {
                at: now,
                node: i as usize,
                call,
                result,
            }),
            Event::LimitHit(_) => {}
            other => {
                match &other {
                    Event::MemberDown { id } => *self.tally.down.entry(*id).or_default() += 1,
                    Event::FunctionAdded { name, .. } => {
                        *self.tally.added.entry(name.to_string()).or_default() += 1
                    }
                    _ => {}
                }
                if self.record_events {
                    self.log.events.push(Observed {
                        at: now,
                        observer: i as usize,
                        event: other,
                    });
                }
            }
        }
    }

    // ----- the network -------------------------------------------------------

    fn send(&mut self, from: u32, t: Transmit) {
        if let Some(m) = self.misbehavior.get_mut(&from) {
            let out = m.outgoing(self.now, t, &mut self.rng);
            for (delay, t) in out {
                if delay.is_zero() {
                    self.route(from, t);
                } else {
                    let at = self.now + delay;
                    self.schedule(at, Ev::Send { from, t });
                }
            }
            return;
        }
        self.route(from, t);
    }

    fn route(&mut self, from: u32, t: Transmit) {
        if self.nodes[from as usize].node.is_none() {
            return;
        }
        let Some(g) = self.conn_of(from, t.conn) else {
            return; // closed meanwhile
        };
        self.stats.frames += 1;
        self.stats.bytes += t.frame.len() as u64;
        let to = self
            .conns
            .get(&g)
            .map_or(u32::MAX, |c| other_end(c, from).0);
        let mut h = std::hash::DefaultHasher::new();
        (self.stats.trace, self.now, from, to, &t.frame[..]).hash(&mut h);
        self.stats.trace = h.finish();
        self.send_piece(g, from, Piece::Frame(t.frame));
    }

    fn jitter(&mut self, link: &Link) -> Duration {
        if link.jitter.is_zero() {
            Duration::ZERO
        } else {
            let us = self.rng.random_range(0..=link.jitter.as_micros() as u64);
            Duration::from_micros(us)
        }
    }

    /// Sends a piece from node `from` on connection `g`.
    fn send_piece(&mut self, g: u64, from: u32, piece: Piece) {
        let Some(c) = self.conns.get(&g) else {
            return;
        };
        let d = usize::from(c.ends[0].0 != from);
        let to = c.ends[1 - d].0;
        let blocked = !self.reachable(from, to) || self.nodes[to as usize].node.is_none();
        if self.net.model == LinkModel::Datagram {
            if let Piece::Frame(_) = piece {
                let loss = self.link(from, to).loss;
                if blocked || (loss > 0.0 && self.rng.random_bool(loss.min(1.0))) {
                    self.stats.dropped += 1;
                    return;
                }
            }
            return self.transmit(g, d, piece);
        }
        let Some(c) = self.conns.get_mut(&g) else {
            return;
        };
        if !c.dir[d].held.is_empty() || blocked {
            c.dir[d].held.push_back(piece);
            self.maybe_stall(g, d);
            return;
        }
        self.transmit(g, d, piece);
    }

    /// Puts one piece on an open connection's wire.
    fn transmit(&mut self, g: u64, d: usize, piece: Piece) {
        let Some(c) = self.conns.get(&g) else {
            return;
        };
        let (from, to) = (c.ends[d].0, c.ends[1 - d].0);
        let link = self.link(from, to).clone();
        let jitter = self.jitter(&link);
        let mut extra = Duration::ZERO;
        if link.loss > 0.0 && self.net.model == LinkModel::Stream {
            let mut rto = self.net.min_rto.max(link.latency * 4);
            while self.rng.random_bool(link.loss.min(0.99)) {
                extra += rto;
                rto *= 2;
            }
        }
        let now = self.now;
        let Some(c) = self.conns.get_mut(&g) else {
            return;
        };
        let dir = &mut c.dir[d];
        let mut at = now;
        if let (Some(bw), Piece::Frame(f)) = (link.bandwidth.filter(|b| *b > 0), &piece) {
            let tx = Duration::from_secs_f64(f.len() as f64 / bw as f64);
            dir.busy_until = dir.busy_until.max(now) + tx;
            at = dir.busy_until;
        }
        at = at + link.latency + jitter + extra;
        if self.net.model == LinkModel::Stream {
            at = at.max(dir.last_delivery);
            dir.last_delivery = at;
        }
        let epoch = c.epoch;
        self.schedule(
            at,
            Ev::Deliver {
                conn: g,
                d,
                piece,
                epoch,
            },
        );
    }

    /// Node `from` dials `addr`: a handshake later both ends are told, or
    /// the dialler hears it failed.
    fn dial(&mut self, from: u32, addr: Addr) {
        self.stats.dials += 1;
        let incarnation = self.nodes[from as usize].incarnation;
        let fail = |at: Time, sim: &mut Sim| {
            sim.schedule(
                at,
                Ev::DialFailed {
                    node: from,
                    incarnation,
                    addr: addr.clone(),
                },
            )
        };
        let Some(to) = self.by_addr.get(&addr).copied().filter(|t| *t != from) else {
            // Nobody listens there.
            return fail(self.now, self);
        };
        let rtt = self.link(from, to).latency * 2;
        let target = &self.nodes[to as usize];
        if !self.reachable(from, to) || (target.node.is_none() && target.silent) {
            return fail(self.now + self.net.connect_timeout, self);
        }
        if target.node.is_none() {
            // Host up, process gone: refused after one round trip.
            return fail(self.now + rtt, self);
        }
        self.next_conn += 1;
        let g = self.next_conn;
        let epoch = self.seq;
        self.conns.insert(
            g,
            Conn {
                ends: [(from, ConnId(u64::MAX)), (to, ConnId(u64::MAX))],
                open: false,
                epoch,
                dir: [Dir::default(), Dir::default()],
                told: [false; 2],
                incarnations: [
                    self.nodes[from as usize].incarnation,
                    self.nodes[to as usize].incarnation,
                ],
                addr,
            },
        );
        let handshake = match self.net.model {
            LinkModel::Stream => rtt * self.net.handshake_rtts,
            LinkModel::Datagram => Duration::ZERO,
        };
        self.schedule(self.now + handshake, Ev::ConnReady { conn: g, epoch });
    }

    fn conn_ready(&mut self, g: u64, epoch: u64) {
        let Some(c) = self.conns.get(&g) else {
            return;
        };
        if c.epoch != epoch || c.open {
            return;
        }
        let (a, b, addr) = (c.ends[0].0, c.ends[1].0, c.addr.clone());
        // Both ends know it by the simulator's id: unique among each
        // node's connections, as the contract asks, and found without a
        // lookup table.
        let (ia, ib) = (ConnId(g), ConnId(g));
        if let Some(c) = self.conns.get_mut(&g) {
            c.open = true;
            c.ends = [(a, ia), (b, ib)];
        }
        self.with_node(b as usize, |n, now| n.handle_accepted(now, ib));
        self.with_node(a as usize, |n, now| n.handle_dialed(now, &addr, ia));
    }

    /// The connection node `i` calls `id`, while open at its end.
    fn conn_of(&self, i: u32, id: ConnId) -> Option<u64> {
        let c = self.conns.get(&id.0)?;
        let e = c.ends.iter().position(|e| *e == (i, id))?;
        (c.open && !c.told[e]).then_some(id.0)
    }

    fn flush_held(&mut self, g: u64, d: usize) {
        let Some(c) = self.conns.get(&g) else {
            return;
        };
        let (from, to) = (c.ends[d].0, c.ends[1 - d].0);
        if !self.reachable(from, to) || self.nodes[to as usize].node.is_none() {
            return;
        }
        let Some(c) = self.conns.get_mut(&g) else {
            return;
        };
        let held = std::mem::take(&mut c.dir[d].held);
        c.dir[d].stalled_since = None;
        for p in held {
            self.transmit(g, d, p);
        }
    }

    fn maybe_stall(&mut self, g: u64, d: usize) {
        let now = self.now;
        let timeout = self.net.stall_timeout;
        let Some(c) = self.conns.get_mut(&g) else {
            return;
        };
        if c.dir[d].stalled_since.is_none() {
            c.dir[d].stalled_since = Some(now);
            let epoch = c.epoch;
            self.schedule(now + timeout, Ev::StallCheck { conn: g, epoch });
        }
    }

    fn stall_check(&mut self, g: u64, epoch: u64) {
        let now = self.now;
        let timeout = self.net.stall_timeout;
        let Some(c) = self.conns.get(&g) else { return };
        if c.epoch != epoch {
            return;
        }
        let stuck = c
            .dir
            .iter()
            .any(|d| d.stalled_since.is_some_and(|t| t + timeout <= now) && !d.held.is_empty());
        if stuck {
            self.break_conn(g);
        } else if let Some(t) = c.dir.iter().filter_map(|d| d.stalled_since).min() {
            self.schedule(t + timeout, Ev::StallCheck { conn: g, epoch });
        }
    }

    /// Tells end `e` of `g` that the connection closed (once), and forgets
    /// the connection once both ends know.
    fn tell_closed(&mut self, g: u64, e: usize, how: Closed) {
        let Some(c) = self.conns.get_mut(&g) else {
            return;
        };
        if c.told[e] {
            return;
        }
        c.told[e] = true;
        let (node, id) = c.ends[e];
        let done = c.told[0] && c.told[1];
        if done {
            self.conns.remove(&g);
        }
        if self.nodes[node as usize].node.is_some() && id != ConnId(u64::MAX) {
            self.with_node(node as usize, |n, now| n.handle_closed(now, id, how));
        }
    }

    /// The connection breaks: pieces queued and in flight are lost, and
    /// both running ends are told.
    fn break_conn(&mut self, g: u64) {
        let Some(c) = self.conns.get_mut(&g) else {
            return;
        };
        self.stats.breaks += 1;
        c.epoch = u64::MAX - 1; // nothing in flight arrives
        let open = c.open;
        if !open {
            // A dial in progress: the dialler hears it failed.
            let (node, addr) = (c.ends[0].0, c.addr.clone());
            self.conns.remove(&g);
            self.with_node(node as usize, |n, now| n.handle_dial_failed(now, &addr));
            return;
        }
        for e in 0..2 {
            self.tell_closed(g, e, Closed::Lost);
        }
    }

    fn deliver(&mut self, g: u64, d: usize, piece: Piece, epoch: u64) {
        let Some(c) = self.conns.get(&g) else {
            return;
        };
        if c.epoch != epoch {
            return;
        }
        let (to, id) = c.ends[1 - d];
        if c.told[1 - d] {
            return; // that end is closed already
        }
        if self.nodes[to as usize].incarnation != c.incarnations[1 - d] {
            // A restarted process: its host resets the old connection.
            return self.break_conn(g);
        }
        match piece {
            Piece::Frame(frame) => {
                let now = self.now;
                if let Some(n) = self.nodes[to as usize].node.as_mut() {
                    let _ = n.handle_frame(now, id, &frame);
                    self.drain(to);
                }
            }
            Piece::Close => {
                // The receiver is told (its own queued pieces unsent), and
                // answers the close: the closer learns one trip later, after
                // whatever the receiver had sent.
                let unsent = !c.dir[1 - d].held.is_empty();
                let how = if unsent {
                    Closed::Unsent
                } else {
                    Closed::Clean
                };
                if let Some(c) = self.conns.get_mut(&g) {
                    c.dir[1 - d].held.clear();
                }
                self.tell_closed(g, 1 - d, how);
                if self.conns.contains_key(&g) {
                    self.transmit(g, 1 - d, Piece::Close);
                }
            }
        }
    }
}

/// The end of `c` that is not node `me`.
fn other_end(c: &Conn, me: u32) -> (u32, ConnId) {
    if c.ends[0].0 == me {
        c.ends[1]
    } else {
        c.ends[0]
    }
}

/// A key pair's 32-byte seed from 128 random bits (both halves).
fn key_seed(r: u128) -> [u8; 32] {
    let mut seed = [0; 32];
    seed[..16].copy_from_slice(&r.to_le_bytes());
    seed[16..].copy_from_slice(&r.to_le_bytes());
    seed
}
