//! # mpreg-proto — the sans-IO core of mpreg-rs
//!
//! A pure state machine for MPREG federation: nodes find each other by
//! gossip, detect failures, replicate a catalog of registered functions and
//! route calls to a node that can serve them. It performs no I/O, reads no
//! clock and owns its randomness (a seeded RNG): the same seed and the same
//! inputs produce the same outputs, byte for byte. Runtimes (tokio over
//! WebSockets, QUIC, the deterministic simulator, your own) carry bytes.
//!
//! ## Architecture
//!
//! ```text
//!            ┌──────────────────────── Node ─────────────────────────┐
//!  inputs ─► │ handle_accepted(now, conn)  handle_dialed(now, addr,  │
//!            │ handle_dial_failed(now, addr)             conn)       │
//!            │ handle_frame(now, conn, bytes)  handle_closed(now,    │
//!            │ handle_timeout(now)                       conn, how)  │
//!            │ join leave register unregister call cancel bridge     │
//!            │ complete_invocation                                   │
//!            ├───────────────────────────────────────────────────────┤
//! outputs ◄─ │ poll_order()   -> Order: Dial, Send, Close, Abort,    │
//!            │                   Invoke, Cancel, Stop  (the runtime) │
//!            │ poll_event()   -> Event: members, functions, call     │
//!            │                   results, limits  (the application) │
//!            │ poll_timeout() -> the next deadline                   │
//!            └───────────────────────────────────────────────────────┘
//! ```
//!
//! | module | concern |
//! |---|---|
//! | [`wire`] | frames, versions, postcard codec, size limits |
//! | [`chunk`] | frames in ≤ 64 KiB chunks, interleaved by traffic class |
//! | `node::conns` | the connection table: dials, backoff, keys, tie-break, idle close |
//! | `node::overlay` | the bounded active view (HyParView) |
//! | `node::membership` | probes, suspicion, refutation, join |
//! | `node::broadcast` | eager tree + lazy repair (Plumtree) |
//! | `node::sync` | anti-entropy over a range digest |
//! | [`catalog`] | versioned per-node function entries, the funtimes view |
//! | `node::calls` | routing, call state, deduplication, failover, handler budgets |
//! | [`multistep`] | multi-step calls: commands, references, levels |
//! | `node::requests` | running them level by level, for the application, clients and upstream clients |
//! | [`upstream`] | upstream MPREG's JSON client protocol: requests and answers |
//! | `node` | ties them together; the phased leave |
//! | [`config`] | every knob, its default, validation, `detection_bound` |
//! | [`testing`] | drivers for tests: a scripted node, an in-memory network |
//!
//! ## The run loop (the embedding contract)
//!
//! Every method takes `now`, a [`Time`] from a monotonic clock (any epoch).
//! The core owns the protocol, connections included: the runtime opens
//! sockets when told, moves bytes, runs handlers and reports what happened.
//! The rules, in the spirit of str0m's run loop:
//!
//! 1. **After every input or command, drain the outputs**: call
//!    [`poll_order`](Node::poll_order) until `None` and carry each order
//!    out in order, then [`poll_event`](Node::poll_event) until `None`.
//!    Carrying out an order may be an input (a dial that fails at once):
//!    keep draining after it.
//! 2. **Then ask for the next deadline** with
//!    [`poll_timeout`](Node::poll_timeout), and call
//!    [`handle_timeout`](Node::handle_timeout) once `now >= deadline` —
//!    compare in the runtime first to avoid busy loops. The deadline moves
//!    with every input, so re-arm the timer after each drain. An early
//!    `handle_timeout` does nothing.
//! 3. **Connections**: give every socket an id ([`ConnId`], unique among
//!    the open ones). Report an accepted one with `handle_accepted`; carry
//!    out [`Order::Dial`] and report `handle_dialed` or `handle_dial_failed`;
//!    feed each received frame to `handle_frame(now, conn, bytes)` (an
//!    `Err` never requires closing it); on [`Order::Close`] close the
//!    connection once its queue is written, on [`Order::Abort`] drop it;
//!    report every end with `handle_closed(now, conn, how)` ([`Closed`]).
//!    Queue [`Order::Send`] frames per connection by [`TrafficClass`]
//!    (control before broadcast before calls); a stream transport chunks
//!    them with [`chunk`] so a 4 MiB call never holds an ack behind it.
//! 4. **Handlers**: [`Order::Invoke`] asks you to run one; when it
//!    finishes, call `complete_invocation(now, inv.id, result)`. Run them
//!    off the loop if they may block: probes must keep flowing.
//!    [`Order::Cancel`] stops one if you can (the core has answered for it).
//! 5. **Stop** on [`Order::Stop`]: a graceful [`leave`](Node::leave) is
//!    over.
//!
//! A complete runtime, two nodes in one process wired by a queue:
//!
//! ```
//! use mpreg_proto::{Addr, Call, Closed, Config, ConnId, Event, FunctionSpec, Identity};
//! use mpreg_proto::{Keypair, Node, Order, Time};
//! use std::collections::{BTreeMap, VecDeque};
//!
//! let mk = |i: u128| {
//!     let key = Keypair::from_seed([i as u8; 32]); // from the OS in real use
//!     let id = Identity::new(key, Addr::new(format!("mem://{i}")), 1);
//!     Node::new(Config { rng_seed: i as u64, ..Config::default() }, id, Time::ZERO).unwrap()
//! };
//! let mut nodes = [mk(0), mk(1)];
//! // Each end of a connection: (node, its id) -> (peer node, peer's id).
//! let mut wires: BTreeMap<(usize, ConnId), (usize, ConnId)> = BTreeMap::new();
//! let mut inbox: VecDeque<(usize, ConnId, bytes::Bytes)> = VecDeque::new();
//! let (mut now, mut next_id, mut results) = (Time::ZERO, 0, Vec::new());
//! nodes[1].register(now, FunctionSpec::new("double").resources(["cpu"])).unwrap();
//! nodes[0].join(now, [Addr::new("mem://1")]);
//! for step in 0..300 {
//!     // Rule 1: drain every node's orders, then its events.
//!     for i in 0..2 {
//!         while let Some(o) = nodes[i].poll_order() {
//!             match o {
//!                 Order::Dial(_) => {
//!                     let (a, b) = (ConnId(next_id), ConnId(next_id + 1));
//!                     next_id += 2;
//!                     wires.insert((i, a), (1 - i, b));
//!                     wires.insert((1 - i, b), (i, a));
//!                     nodes[1 - i].handle_accepted(now, b);
//!                     nodes[i].handle_dialed(now, &Addr::new(format!("mem://{}", 1 - i)), a);
//!                 }
//!                 Order::Send(t) => {
//!                     let (to, conn) = wires[&(i, t.conn)];
//!                     inbox.push_back((to, conn, t.frame));
//!                 }
//!                 Order::Close(c) | Order::Abort(c) => {
//!                     if let Some((to, conn)) = wires.remove(&(i, c)) {
//!                         wires.remove(&(to, conn));
//!                         nodes[to].handle_closed(now, conn, Closed::Clean);
//!                     }
//!                     nodes[i].handle_closed(now, c, Closed::Clean);
//!                 }
//!                 Order::Invoke(inv) => {
//!                     let n: u32 = std::str::from_utf8(&inv.args).unwrap().parse().unwrap();
//!                     nodes[i].complete_invocation(now, inv.id, Ok((2 * n).to_string().into())).unwrap();
//!                 }
//!                 Order::Cancel(_) | Order::Stop => {}
//!             }
//!         }
//!         while let Some(e) = nodes[i].poll_event() {
//!             if let Event::CallDone { result, .. } = e {
//!                 results.push(result);
//!             }
//!         }
//!     }
//!     // Frames in.
//!     while let Some((to, conn, frame)) = inbox.pop_front() {
//!         let _ = nodes[to].handle_frame(now, conn, &frame);
//!     }
//!     if step == 100 {
//!         nodes[0].call(now, Call::new("double").locs(["cpu"]).args("21")).unwrap();
//!     }
//!     // Rule 2: time passes; fire what is due.
//!     now = now + std::time::Duration::from_millis(5);
//!     for n in &mut nodes {
//!         if n.poll_timeout().is_some_and(|d| now >= d) {
//!             n.handle_timeout(now);
//!         }
//!     }
//! }
//! assert_eq!(results, vec![Ok(bytes::Bytes::from("42"))]);
//! ```
//!
//! [`testing::Net`] is the same loop with latency, crashes and cuts.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod auth;
pub mod catalog;
pub mod chunk;
pub mod client;
pub mod config;
mod digest;
pub mod error;
mod event;
mod hash;
mod id;
mod members;
mod metrics;
pub mod multistep;
mod node;
mod records;
mod rtt;
pub mod testing;
mod time;
mod timers;
pub mod upstream;
pub mod wire;

pub use auth::{Admission, ClusterSecret, Keypair, PublicKey, Refusal};
pub use catalog::{Catalog, FnBody, FunctionSpec, Provider, ResourceSet, Route};
pub use client::{ClientConn, ClientEvent};
pub use config::{
    BridgeConfig, CallConfig, Config, ConfigError, ConnectionConfig, DisseminationConfig,
    FederationConfig, LeaveConfig, Limits, MembershipConfig, OverlayConfig, Policy,
};
pub use error::{CallError, FrameError, InvocationError, RegisterError};
pub use event::{Closed, ConnId, Event, Invocation, Order, TrafficClass, Transmit};
pub use id::{Addr, CallId, Incarnation, InvocationId, NodeId, Url};
pub use metrics::{Limit, Metrics, PerKind, RejectReason};
pub use node::{Call, ConnView, Identity, MemberView, Node, RequestId, Status};
pub use records::MemberState;
pub use time::Time;
pub use wire::Role;
