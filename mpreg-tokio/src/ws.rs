//! WebSocket transport: one TCP connection per peer, every message a
//! WebSocket binary message (tokio-tungstenite; the mapping of messages is
//! [`mpreg_drive::tungstenite`]'s).

use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use mpreg_drive::transport::{Listener, Transport};
use mpreg_drive::tungstenite::{self as ws, WsSink as Sink, WsStream as Stream};
use mpreg_proto::Addr;
use std::io;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// WebSocket over TCP (`ws://host:port`).
#[derive(Clone, Copy, Debug, Default)]
pub struct WsTransport;

/// A bound WebSocket listener.
#[derive(Debug)]
pub struct WsListener(TcpListener);

/// Sending half of a WebSocket connection.
pub type WsSink = Sink<SplitSink<WebSocketStream<TcpStream>, Message>>;

/// Receiving half of a WebSocket connection.
pub type WsStream = Stream<SplitStream<WebSocketStream<TcpStream>>>;

fn halves(ws: WebSocketStream<TcpStream>) -> (WsSink, WsStream) {
    let (sink, stream) = ws.split();
    (Sink(sink), Stream(stream))
}

impl Transport for WsTransport {
    type Runtime = crate::Tokio;
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
        let (ws, _) = tokio_tungstenite::client_async_with_config(addr.as_str(), tcp, config)
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
        let ws = tokio_tungstenite::accept_async_with_config(tcp, Some(ws::config(max_message)))
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
