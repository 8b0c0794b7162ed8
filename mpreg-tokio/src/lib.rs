//! # mpreg-tokio — the tokio runtime of mpreg-rs
//!
//! Drives the sans-IO core ([`mpreg_proto::Node`]) over real connections
//! (WebSocket binary messages by default) and offers the application API:
//! start a [`Node`] from [`Settings`], register handlers, call functions,
//! read members, the catalog and events, leave gracefully; or connect a
//! [`Client`] that only calls.
//!
//! ```no_run
//! use mpreg_tokio::{Node, Settings};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let a = Node::start(Settings { name: "a".into(), ..Settings::local() }).await?;
//! a.register("greet", ["cpu"], |(who,): (String,)| async move {
//!     Ok::<_, String>(format!("hello, {who}"))
//! }).await?;
//! let b = Node::start(Settings { seeds: vec![a.addr().clone()], ..Settings::local() }).await?;
//! let mut events = b.events();
//! while let Some(e) = events.next().await {
//!     if matches!(e.event, mpreg_tokio::Event::FunctionAdded { ref name, .. } if name == "greet") {
//!         break;
//!     }
//! }
//! let s: String = b.call("greet", &("world",)).locs(["cpu"]).await?.json()?;
//! assert_eq!(s, "hello, world");
//! b.leave().await;
//! a.leave().await;
//! # Ok(()) }
//! ```
//!
//! ## The runtime (DESIGN §5)
//!
//! Each node runs on its own thread, with a current-thread runtime for
//! [`Tokio`] (another [`Runtime`] brings its own executor: see
//! `tests/async_std_nodes.rs`, async-std nodes in one cluster with tokio
//! nodes).
//! Every protocol rule — connections (dials, backoff, keys, the
//! simultaneous-dial tie-break, idle close, the cap), the phases of a
//! leave, handler budgets — is the core's; this crate carries out its
//! orders:
//!
//! * **the drive loop** owns the core. It feeds frames to `handle_frame`,
//!   calls `handle_timeout` once `now >= deadline` (checked here first,
//!   re-armed after every input), carries out `poll_order` (dial, send,
//!   close, run or cancel a handler, stop) and hands `poll_event` to the
//!   application's event stream and to waiting callers. It never awaits a
//!   socket.
//! * **connections** get an id when they open (dialled or accepted); their
//!   frames, failures and closes are reported to the core by that id.
//! * **writers** — each connection has a writer task draining the core's
//!   [`chunk::Outbox`](mpreg_proto::chunk::Outbox): bounded queues per
//!   traffic class, frames in chunks of at most 64 KiB, so a control frame
//!   waits for at most one chunk of a large call. A full queue (a peer that
//!   stopped reading) drops that connection only.
//! * **readers** reassemble chunks and skip a frame announced above
//!   `limits.max_frame_size` before buffering it.
//! * **handlers** — async handlers run as tasks on the node's thread;
//!   blocking handlers ([`Node::register_blocking`]) on the blocking pool.
//!   Neither can delay probes.
//!
//! The drive loop only needs the [`Transport`] trait (dial, accept, send
//! and receive messages) and the [`Runtime`] its sockets belong to (run
//! the node's thread, spawn tasks, a timer), so another transport or
//! another executor reuses all of it.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

mod api;
pub mod client;
pub mod config;
mod conn;
mod driver;
mod node;
pub mod runtime;
pub mod transport;
mod ws;

pub use api::{CallBuilder, Events, FunctionEntry, Observed, Reply, Stats, Stopped, funtimes};
pub use client::{Client, ClientError};
pub use config::{ConfigError, Layer, PolicyKind, RuntimeSettings, Settings, Topology};
pub use node::{Node, NodeInfo, StartError};
pub use runtime::{Runtime, Tokio};
pub use transport::Transport;
pub use ws::{WsListener, WsSink, WsStream, WsTransport};

pub use mpreg_proto::{
    Addr, BridgeConfig, CallError, ConnView, Event, FunctionSpec, MemberState, MemberView, Metrics,
    NodeId, Policy, RegisterError,
};
pub use semver::{Version, VersionReq};
