//! # mpreg-tokio — mpreg-rs on tokio
//!
//! The tokio adapter of [`mpreg_drive`]'s drive loop: the [`Tokio`]
//! [`Runtime`] (a node's thread runs a current-thread runtime; blocking
//! handlers go to its blocking pool), the WebSocket transport
//! [`WsTransport`] (`ws://`, tokio-tungstenite) and WebSocket over TLS,
//! [`WssTransport`] (`wss://`, tokio-rustls; see [`wss`]), whose
//! certificates — PEM files, or self-signed and pinned by the fingerprint
//! in the node's URL — are [`mpreg_tls`]'s, as QUIC's are. QUIC is
//! `mpreg-quic`, on this runtime too. Everything else — the loop, connections, the application
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
//!
//! Over `wss://`, start the nodes with [`wss::start`] (self-signed, pinned)
//! or [`wss::start_with`] (a [`TlsConfig`] with PEM files and a CA), and
//! connect clients with [`wss::connect`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mpreg_tokio::{Settings, wss};
//!
//! let a = wss::start(Settings::local()).await?;
//! assert!(a.addr().as_str().starts_with("wss://127.0.0.1:"));
//! assert!(a.addr().as_str().contains("/sha256="));
//! let b = wss::start(Settings { seeds: vec![a.addr().clone()], ..Settings::local() }).await?;
//! let client = wss::connect(a.addr().as_str()).await?;
//! let s: String = client.call("echo", &("hi",)).await?.json()?;
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

mod tokio_rt;
mod ws;
pub mod wss;

pub use mpreg_tls::{TlsConfig, TlsError};
pub use tokio_rt::Tokio;
pub use ws::{WsListener, WsSink, WsStream, WsTransport};
pub use wss::{WssError, WssListener, WssSink, WssStream, WssTransport};

/// A running node on tokio (see [`mpreg_drive::Node`]).
pub type Node = mpreg_drive::Node<Tokio>;
/// A client on tokio (see [`mpreg_drive::Client`]).
pub type Client = mpreg_drive::Client<Tokio>;

pub use mpreg_drive::exports::*;
