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
//!     if matches!(e.event, mpreg_tokio::NodeEvent::FunctionAdded { ref name, .. } if name == "greet") {
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
//! Each node runs on its own thread with a current-thread tokio runtime:
//!
//! * **the drive loop** owns the core and the connection table. It feeds
//!   frames to `handle_frame`, calls `handle_timeout` once `now >= deadline`
//!   (checked here first, re-armed after every input), drains
//!   `poll_transmit` into connection outboxes and `poll_event` into
//!   handlers, pending calls and the application's event stream. It never
//!   awaits a socket.
//! * **connections** — one reused connection per peer address, dialled on
//!   demand with a backoff after failures; an accepted connection is keyed
//!   by the address its `Hello` advertises; when two connections to one
//!   peer exist, both ends keep the one dialled by the lower address. The
//!   core's `Connect`/`Disconnect` events say which ones to keep; others are
//!   closed after `runtime.idle_timeout` without traffic. Breaks and failed
//!   dials are reported with `handle_unreachable`, clean closes with
//!   `handle_closed`.
//! * **writers** — each connection has a writer task draining bounded
//!   priority queues (control, broadcast, call). Frames travel in chunks of
//!   at most 64 KiB (see [`chunk`]), so a control frame waits for at most
//!   one chunk of a large call. A full queue (a peer that stopped reading)
//!   drops that connection only.
//! * **readers** reassemble chunks and skip a frame announced above
//!   `limits.max_frame_size` before buffering it.
//! * **handlers** — async handlers run as tasks on the node's thread;
//!   blocking handlers ([`Node::register_blocking`]) on the blocking pool.
//!   Neither can delay probes. Past `limits.max_invocations` running
//!   handlers the core answers `Overloaded`.
//!
//! The drive loop only needs the [`Transport`] trait (dial, accept, send
//! and receive messages), so another transport reuses all of it.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod chunk;
pub mod client;
pub mod config;
mod conn;
mod driver;
mod node;
pub mod transport;
mod ws;

pub use client::{Client, ClientError};
pub use config::{ConfigError, Layer, PolicyKind, RuntimeSettings, Settings, Topology};
pub use node::{
    CallBuilder, Events, FunctionEntry, Node, NodeEvent, NodeInfo, Observed, Reply, StartError,
    Stats, Stopped, funtimes,
};
pub use transport::Transport;
pub use ws::{WsListener, WsSink, WsStream, WsTransport};

pub use mpreg_proto::{
    Addr, BridgeConfig, CallError, FunctionSpec, MemberState, MemberView, Metrics, NodeId, Policy,
    RegisterError,
};
pub use semver::{Version, VersionReq};
