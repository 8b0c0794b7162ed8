//! WebSocket transport: one TCP connection per peer, every message a
//! WebSocket binary message (tokio-tungstenite).

use crate::transport::{Listener, MessageSink, MessageStream, Transport};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use mpreg_proto::Addr;
use std::io;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// WebSocket over TCP (`ws://host:port`).
#[derive(Clone, Copy, Debug, Default)]
pub struct WsTransport;

/// A bound WebSocket listener.
#[derive(Debug)]
pub struct WsListener(TcpListener);

/// Sending half of a WebSocket connection.
#[derive(Debug)]
pub struct WsSink(SplitSink<WebSocketStream<TcpStream>, Message>);

/// Receiving half of a WebSocket connection.
#[derive(Debug)]
pub struct WsStream(SplitStream<WebSocketStream<TcpStream>>);

fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
        .write_buffer_size(64 * 1024)
}

fn io_err(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
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
        let auth = addr
            .url()
            .filter(|u| u.scheme == "ws")
            .map(|u| u.authority)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("not a ws:// URL: {addr}"),
                )
            })?;
        let tcp = TcpStream::connect(auth).await?;
        tcp.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            addr.as_str(),
            tcp,
            Some(ws_config(max_message)),
        )
        .await
        .map_err(io_err)?;
        let (sink, stream) = ws.split();
        Ok((WsSink(sink), WsStream(stream)))
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        max_message: usize,
    ) -> io::Result<(WsSink, WsStream)> {
        tcp.set_nodelay(true)?;
        let ws = tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config(max_message)))
            .await
            .map_err(io_err)?;
        let (sink, stream) = ws.split();
        Ok((WsSink(sink), WsStream(stream)))
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

impl MessageSink for WsSink {
    async fn feed(&mut self, message: Bytes) -> io::Result<()> {
        self.0.feed(Message::Binary(message)).await.map_err(io_err)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.0.flush().await.map_err(io_err)
    }

    async fn close(&mut self) -> io::Result<()> {
        match self.0.close().await {
            Ok(()) | Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }
}

impl MessageStream for WsStream {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.0.next().await {
                None | Some(Err(WsError::ConnectionClosed)) | Some(Ok(Message::Close(_))) => {
                    return Ok(None);
                }
                Some(Ok(Message::Binary(b))) => return Ok(Some(b)),
                Some(Ok(Message::Text(_))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message on an mpreg connection",
                    ));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Err(io_err(e)),
            }
        }
    }
}
