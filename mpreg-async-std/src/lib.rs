//! # mpreg-async-std — mpreg-rs on async-std
//!
//! The async-std adapter of [`mpreg_drive`]'s drive loop, with the same
//! application API as `mpreg-tokio`: [`Node`] is
//! `mpreg_drive::Node<AsyncStd>`, [`Client`] is
//! `mpreg_drive::Client<AsyncStd>`. Nodes of both executors speak the same
//! wire and form one cluster.
//!
//! ```no_run
//! use mpreg_async_std::{Node, Settings};
//!
//! async_std::task::block_on(async {
//!     let a = Node::start(Settings::local()).await?;
//!     a.register("add", ["cpu"], |(x, y): (i64, i64)| async move {
//!         Ok::<_, String>(x + y)
//!     }).await?;
//!     let sum: i64 = a.call("add", &(1, 2)).locs(["cpu"]).await?.json()?;
//!     assert_eq!(sum, 3);
//!     a.leave().await;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate is the two seams and nothing else: [`AsyncStd`] (a node's
//! thread runs `task::block_on` over a local executor of its own; timers
//! are async-io's) and [`WsTransport`]
//! (async-std sockets, async-tungstenite handshakes, the message mapping
//! of [`mpreg_drive::tungstenite`]).
//!
//! **`ws://` only**: WebSocket over TLS (`wss://`) and QUIC are tokio's
//! for now (`mpreg_tokio::WssTransport`, `mpreg-quic`); `mpreg server
//! start --runtime async-std` with a `wss://` or `quic://` listen URL stops
//! with a configuration error saying so. An async-std `wss://` transport
//! would be this one over `futures-rustls` with `mpreg_tls::Identity`'s
//! configurations.
//!
//! **async-std is discontinued in favour of smol.** A smol adapter is the
//! same few lines: `run_local` as here with `smol::block_on`, `spawn` is
//! `smol::spawn`, `spawn_blocking` is
//! `smol::unblock`, `sleep_until` is `async_io::Timer::at` (as here), and
//! the transport is this one over `smol::net` sockets, which implement the
//! same `futures-io` traits.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

use async_executor::LocalExecutor;
use async_std::net::{TcpListener, TcpStream};
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use mpreg_drive::transport::Listener;
use mpreg_drive::tungstenite::{self as ws, WsSink as Sink, WsStream as Stream};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

/// A running node on async-std (see [`mpreg_drive::Node`]).
pub type Node = mpreg_drive::Node<AsyncStd>;
/// A client on async-std (see [`mpreg_drive::Client`]).
pub type Client = mpreg_drive::Client<AsyncStd>;

pub use mpreg_drive::exports::*;

/// The async-std runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStd;

thread_local! {
    /// The node thread's executor of local tasks, while it runs.
    static LOCAL: RefCell<Option<Rc<LocalExecutor<'static>>>> = const { RefCell::new(None) };
}

impl Runtime for AsyncStd {
    const NAME: &'static str = "async-std";

    /// `task::block_on` over a local executor of the node's own (the one
    /// async-std's `spawn_local` uses, but owned here): dropping it when
    /// the node stops ends every task of the node — its listener and
    /// connections close before the node reports that it stopped, so a
    /// restart can bind the same port at once.
    fn run_local(fut: impl Future<Output = ()> + 'static) -> io::Result<()> {
        let ex = Rc::new(LocalExecutor::new());
        LOCAL.with(|l| *l.borrow_mut() = Some(ex.clone()));
        async_std::task::block_on(ex.run(fut));
        LOCAL.with(|l| l.borrow_mut().take());
        drop(ex);
        Ok(())
    }

    fn spawn_local(fut: impl Future<Output = ()> + 'static) {
        LOCAL.with(|l| match &*l.borrow() {
            Some(ex) => ex.spawn(fut).detach(),
            None => drop(async_std::task::spawn_local(fut)),
        });
    }

    fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
        async_std::task::spawn(fut);
    }

    fn spawn_blocking(f: impl FnOnce() + Send + 'static) {
        async_std::task::spawn_blocking(f);
    }

    async fn sleep_until(deadline: Instant) {
        async_io::Timer::at(deadline).await;
    }
}

impl DefaultTransport for AsyncStd {
    type Transport = WsTransport;
}

/// WebSocket over TCP (`ws://host:port`) on async-std sockets: the same
/// wire as `mpreg_tokio::WsTransport`.
#[derive(Clone, Copy, Debug, Default)]
pub struct WsTransport;

/// A bound WebSocket listener.
#[derive(Debug)]
pub struct WsListener(TcpListener);

/// Sending half of a WebSocket connection.
pub type WsSink = Sink<WebSocketSender<TcpStream>>;

/// Receiving half of a WebSocket connection.
pub type WsStream = Stream<WebSocketReceiver<TcpStream>>;

fn halves(ws: WebSocketStream<TcpStream>) -> (WsSink, WsStream) {
    let (sink, stream) = ws.split();
    (Sink(sink), Stream(stream))
}

impl Transport for WsTransport {
    type Runtime = AsyncStd;
    type Sink = WsSink;
    type Stream = WsStream;
    type Listener = WsListener;
    type Accepting = TcpStream;

    fn scheme(&self) -> &'static str {
        "ws"
    }

    async fn bind(&self, host: &str, port: u16) -> io::Result<WsListener> {
        Ok(WsListener(TcpListener::bind((host, port)).await?))
    }

    async fn dial(&self, addr: &Addr, max_message: usize) -> io::Result<(WsSink, WsStream)> {
        let tcp = TcpStream::connect(ws::authority(addr)?).await?;
        tcp.set_nodelay(true)?;
        let config = Some(ws::config(max_message));
        let (ws, _) = async_tungstenite::client_async_with_config(addr.as_str(), tcp, config)
            .await
            .map_err(ws::io_err)?;
        Ok(halves(ws))
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        max_message: usize,
    ) -> io::Result<(WsSink, WsStream)> {
        tcp.set_nodelay(true)?;
        let ws = async_tungstenite::accept_async_with_config(tcp, Some(ws::config(max_message)))
            .await
            .map_err(ws::io_err)?;
        Ok(halves(ws))
    }
}

impl Listener for WsListener {
    type Accepting = TcpStream;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        self.0.accept().await
    }
}
