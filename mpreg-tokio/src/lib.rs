//! # mpreg-tokio — mpreg-rs on tokio
//!
//! The tokio adapter of [`mpreg_drive`]'s drive loop: the [`Tokio`]
//! [`Runtime`] (a node's thread runs a current-thread runtime; blocking
//! handlers go to its blocking pool) and the WebSocket transport
//! [`WsTransport`] (tokio-tungstenite). QUIC is `mpreg-quic`, on this
//! runtime too. Everything else — the loop, connections, the application
//! API — is `mpreg-drive`'s, re-exported here: [`Node`] is
//! `mpreg_drive::Node<Tokio>`, [`Client`] is `mpreg_drive::Client<Tokio>`.
//!
//! Start a [`Node`] from [`Settings`], register handlers, call functions,
//! read members, the catalog and events, leave gracefully; or connect a
//! [`Client`] that only calls:
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

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

mod tokio_rt;
mod ws;

pub use tokio_rt::Tokio;
pub use ws::{WsListener, WsSink, WsStream, WsTransport};

/// A running node on tokio (see [`mpreg_drive::Node`]).
pub type Node = mpreg_drive::Node<Tokio>;
/// A client on tokio (see [`mpreg_drive::Client`]).
pub type Client = mpreg_drive::Client<Tokio>;

pub use mpreg_drive::exports::*;
