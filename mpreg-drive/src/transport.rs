//! The transport seam: what the drive loop needs from a network to carry
//! frames. Everything else — the drive loop, connection management, chunking
//! and priority queues, the application API — is shared by every transport.
//!
//! A transport moves **messages** (byte strings of at most
//! [`MAX_CHUNK`](mpreg_proto::chunk::MAX_CHUNK) bytes) over ordered, reliable
//! connections, in both directions. The WebSocket transports of the
//! adapters carry them as WebSocket binary messages (see
//! the `tungstenite` module, behind the feature of that name); the QUIC
//! one on a stream per traffic class.

use crate::runtime::Runtime;
use bytes::Bytes;
use mpreg_proto::Addr;
use std::future::Future;
use std::io;
use std::net::SocketAddr;

/// A way to listen for and open connections that carry messages.
pub trait Transport: Clone + Send + Sync + 'static {
    /// The executor its sockets belong to (the node's thread runs it).
    type Runtime: Runtime;
    /// The sending half of a connection.
    type Sink: MessageSink;
    /// The receiving half of a connection.
    type Stream: MessageStream;
    /// A bound listener.
    type Listener: Listener<Accepting = Self::Accepting>;
    /// An accepted connection whose handshake has not run yet.
    type Accepting: Send + 'static;

    /// The URL scheme of the addresses this transport dials (`"ws"`).
    fn scheme(&self) -> &'static str;

    /// The URL a node listening on `authority` (`host:port`) advertises:
    /// `scheme://authority` unless the transport adds to it (QUIC appends
    /// the fingerprint of a self-signed certificate, so peers that learn
    /// the address can pin it).
    fn url(&self, authority: &str) -> Addr {
        Addr::new(format!("{}://{authority}", self.scheme()))
    }

    /// Binds a listener on `host:port` (port 0 picks a free port).
    fn bind(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// Opens a connection to `addr` (a URL of [`scheme`](Transport::scheme)).
    /// Incoming messages larger than `max_message` are refused.
    fn dial(
        &self,
        addr: &Addr,
        max_message: usize,
    ) -> impl Future<Output = io::Result<(Self::Sink, Self::Stream)>> + Send;

    /// Completes an accepted connection (for WebSocket, the HTTP upgrade).
    fn handshake(
        &self,
        accepting: Self::Accepting,
        max_message: usize,
    ) -> impl Future<Output = io::Result<(Self::Sink, Self::Stream)>> + Send;
}

/// A bound listener.
pub trait Listener: Send + 'static {
    /// An accepted connection before its handshake.
    type Accepting: Send + 'static;

    /// The address actually bound.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Accepting, SocketAddr)>> + Send;
}

/// The sending half of a connection.
pub trait MessageSink: Send + 'static {
    /// Queues one message (it may be buffered until [`flush`](Self::flush)).
    fn feed(&mut self, message: Bytes) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes everything queued.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Flushes and closes the connection cleanly.
    fn close(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// The receiving half of a connection.
pub trait MessageStream: Send + 'static {
    /// The next message; `Ok(None)` when the peer closed cleanly, `Err` when
    /// the connection broke.
    fn recv(&mut self) -> impl Future<Output = io::Result<Option<Bytes>>> + Send;
}
