//! # mpreg-drive — one drive loop for every executor
//!
//! Drives the sans-IO core ([`mpreg_proto::Node`]) over real connections
//! and offers the application API: start a [`Node`] from [`Settings`],
//! register handlers, call functions, read members, the catalog and
//! events, leave gracefully; or connect a [`Client`] that only calls.
//! It is written once against two seams, and the adapter crates fill
//! them in:
//!
//! * a [`Runtime`] — run the node's thread, spawn tasks (on that thread,
//!   anywhere, blocking work on a pool), a timer. Five functions:
//!   `mpreg-tokio` implements them for tokio, `mpreg-async-std` for
//!   async-std;
//! * a [`Transport`] — bind, accept, dial, and send and receive messages
//!   over ordered, reliable connections: WebSocket on each executor, QUIC
//!   (`mpreg-quic`) on tokio.
//!
//! Applications use an adapter: `mpreg_tokio::Node` is `Node<Tokio>`,
//! whose [`Node::start`] uses the executor's own transport
//! ([`DefaultTransport`]). Handles of any executor become one type with
//! [`Node::erase`].
//!
//! ## The loop (DESIGN §5)
//!
//! Each node runs on its own thread, on its executor. Every protocol
//! rule — connections (dials, backoff, keys, the simultaneous-dial
//! tie-break, idle close, the cap), the phases of a leave, handler
//! budgets — is the core's; this crate carries out its orders:
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
//! Its channels are `tokio::sync`'s (and `tokio::select!`), which need no
//! tokio runtime: they run on any executor.

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
#[cfg(feature = "tungstenite")]
pub mod tungstenite;

pub use api::{
    CallBuilder, Events, FunctionEntry, ManyBuilder, Observed, Reply, Stats, Stopped, funtimes,
};
pub use client::{Client, ClientError};
pub use config::{
    ConfigError, Layer, PolicyKind, RuntimeSettings, Settings, TlsSettings, Topology,
};
pub use node::{Node, NodeInfo, StartError};
pub use runtime::{AnyRuntime, DefaultTransport, Runtime};
pub use transport::Transport;

pub use mpreg_proto::multistep::{Command, ManyError, RequestError, Results};
pub use mpreg_proto::{
    Addr, BridgeConfig, CallError, ConnView, Event, FunctionSpec, MemberState, MemberView, Metrics,
    NodeId, Policy, RegisterError,
};
pub use semver::{Version, VersionReq};

/// What every adapter re-exports at its root, beside its own `Node` and
/// `Client` aliases, runtime and transport: one list for both.
pub mod exports {
    pub use crate::{
        Addr, AnyRuntime, BridgeConfig, CallBuilder, CallError, ClientError, Command, ConfigError,
        ConnView, DefaultTransport, Event, Events, FunctionEntry, FunctionSpec, Layer, ManyBuilder,
        ManyError, MemberState, MemberView, Metrics, NodeId, NodeInfo, Observed, Policy,
        PolicyKind, RegisterError, Reply, RequestError, Results, Runtime, RuntimeSettings,
        Settings, StartError, Stats, Stopped, TlsSettings, Topology, Transport, Version,
        VersionReq, client, config, funtimes, runtime, transport,
    };
}
