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
//!  inputs ─► │ handle_frame(now, from, bytes)   handle_timeout(now)  │
//!            │ handle_connected / handle_unreachable(now, addr)      │
//!            │ join leave register unregister call cancel            │
//!            │ complete_invocation                                   │
//!            ├───────────────────────────────────────────────────────┤
//! outputs ◄─ │ poll_transmit() -> Transmit { to, frame, class }      │
//!            │ poll_event()    -> Event (members, functions, Invoke, │
//!            │                    CallDone, Connect/Disconnect, …)   │
//!            │ poll_timeout()  -> next deadline                      │
//!            └───────────────────────────────────────────────────────┘
//! ```
//!
//! | module | concern |
//! |---|---|
//! | [`wire`] | frames, versions, postcard codec, size limits |
//! | `node::overlay` | the bounded active view (HyParView) |
//! | `node::membership` | probes, suspicion, refutation, join, leave |
//! | `node::broadcast` | eager tree + lazy repair (Plumtree) |
//! | `node::sync` | anti-entropy over a range digest |
//! | [`catalog`] | versioned per-node function entries, the funtimes view |
//! | `node::calls` | routing, call state, deduplication, failover |
//! | [`config`] | every knob, its default, validation, `detection_bound` |
//!
//! ## The run loop (the embedding contract)
//!
//! Every method takes `now`, a [`Time`] from a monotonic clock (any epoch).
//! The rules, in the spirit of str0m's run loop:
//!
//! 1. **After every input or command, drain the outputs**: call
//!    `poll_transmit` until `None` and send each frame to its address (open
//!    a connection if there is none; keep one per address), then
//!    `poll_event` until `None`.
//! 2. **Then ask for the next deadline** with `poll_timeout`, and call
//!    `handle_timeout(now)` once `now >= deadline` — compare in the runtime
//!    first to avoid busy loops. The deadline moves with every input, so
//!    re-arm the timer after each drain. An early `handle_timeout` does
//!    nothing.
//! 3. **Frames in**: `handle_frame(now, from, bytes)`, where `from` is the
//!    address the connection is keyed by. When it returns
//!    `Ok(Received { hello: Some(h) })` on a connection you accepted, key
//!    that connection by `h.addr` from then on, so one connection serves
//!    both directions. An `Err` never requires closing the connection.
//! 4. **Connections**: `Event::Connect(addr)` asks you to keep a connection
//!    open (an active-view peer); `Event::Disconnect(addr)` releases it.
//!    Other connections may be closed when idle. When a connection breaks
//!    or cannot be opened, drop its queued frames and call
//!    `handle_unreachable(now, addr)`; the core resends its `Hello` on the
//!    next connection.
//! 5. **Handlers**: `Event::Invoke(inv)` asks you to run a handler; when it
//!    finishes, call `complete_invocation(now, inv.id, result)`. Run them
//!    off the loop if they may block: probes must keep flowing.
//!
//! ```
//! use mpreg_proto::{Addr, Call, Config, Event, FunctionSpec, Identity, Node, NodeId, Time};
//! use std::collections::VecDeque;
//!
//! // Two nodes wired back to back: a minimal runtime.
//! let mk = |i: u128| {
//!     let id = Identity { id: NodeId::from_u128(i), addr: Addr::new(format!("mem://{i}")), incarnation: 1 };
//!     Node::new(Config { rng_seed: i as u64, ..Config::default() }, id, Time::ZERO).unwrap()
//! };
//! let (mut a, mut b) = (mk(1), mk(2));
//! let mut now = Time::ZERO;
//! b.register(now, FunctionSpec::new("double").resources(["cpu"])).unwrap();
//! a.join(now, [b.addr().clone()]);
//! let mut results = Vec::new();
//! for step in 0..200 {
//!     // Deliver every frame in both directions, run handlers, collect results.
//!     let mut wire: VecDeque<(bool, Addr, bytes::Bytes)> = VecDeque::new();
//!     while let Some(t) = a.poll_transmit() { wire.push_back((true, a.addr().clone(), t.frame)); }
//!     while let Some(t) = b.poll_transmit() { wire.push_back((false, b.addr().clone(), t.frame)); }
//!     for (from_a, from, frame) in wire {
//!         let to = if from_a { &mut b } else { &mut a };
//!         let _ = to.handle_frame(now, &from, &frame);
//!     }
//!     for node in [&mut a, &mut b] {
//!         while let Some(e) = node.poll_event() {
//!             match e {
//!                 Event::Invoke(inv) => {
//!                     let n: u32 = std::str::from_utf8(&inv.args).unwrap().parse().unwrap();
//!                     node.complete_invocation(now, inv.id, Ok((2 * n).to_string().into())).unwrap();
//!                 }
//!                 Event::CallDone { result, .. } => results.push(result),
//!                 _ => {}
//!             }
//!         }
//!     }
//!     if step == 50 {
//!         a.call(now, Call::new("double").locs(["cpu"]).args("21")).unwrap();
//!     }
//!     now = now + std::time::Duration::from_millis(10);
//!     a.handle_timeout(now);
//!     b.handle_timeout(now);
//! }
//! assert_eq!(results, vec![Ok(bytes::Bytes::from("42"))]);
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod catalog;
pub mod client;
pub mod config;
mod digest;
pub mod error;
mod event;
mod id;
mod members;
mod metrics;
mod node;
mod rtt;
mod time;
mod timers;
pub mod wire;

pub use catalog::{Catalog, FnBody, FunctionSpec, Provider, ResourceSet, Route};
pub use client::{ClientConn, ClientEvent};
pub use config::{
    BridgeConfig, CallConfig, Config, ConfigError, DisseminationConfig, FederationConfig, Limits,
    MembershipConfig, OverlayConfig, Policy,
};
pub use error::{CallError, FrameError, InvocationError, RegisterError};
pub use event::{Closed, ConnId, Event, Invocation, Order, TrafficClass, Transmit};
pub use id::{Addr, CallId, Incarnation, InvocationId, NodeId};
pub use members::MemberState;
pub use metrics::{Limit, Metrics, PerKind, RejectReason};
pub use node::{Call, ConnView, Identity, MemberView, Node, Status};
pub use time::Time;
pub use wire::Role;
