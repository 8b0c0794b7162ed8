//! The WebSocket mapping every tungstenite-based transport shares (the
//! tokio one over tokio-tungstenite, the async-std one over
//! async-tungstenite): each message of the drive loop is one binary
//! WebSocket message; a text message is taken as its bytes (upstream
//! MPREG's clients may send JSON as text; on a native connection it fails
//! reassembly); pings, pongs and raw frames are skipped; a clean close is
//! the end of the stream.
//! An adapter only opens sockets and runs the handshakes.

use crate::transport::{MessageSink, MessageStream};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use mpreg_proto::{Addr, Url};
use std::io;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Error, Message};

/// The sending half of a WebSocket connection.
#[derive(Debug)]
pub struct WsSink<S>(pub S);

/// The receiving half of a WebSocket connection.
#[derive(Debug)]
pub struct WsStream<S>(pub S);

/// The WebSocket settings of a connection that accepts messages of up to
/// `max_message` bytes.
pub fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
        .write_buffer_size(64 * 1024)
}

/// A WebSocket error as an I/O error (an I/O error stays itself).
pub fn io_err(e: Error) -> io::Error {
    match e {
        Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// The `host:port` a `ws://` URL dials.
pub fn authority(addr: &Addr) -> io::Result<String> {
    dial_target(addr, "ws").map(|u| u.authority.to_string())
}

/// The parts of a `scheme://host:port[/path]` URL a transport dials (`ws`,
/// or `wss`, whose path may pin a certificate).
pub fn dial_target<'a>(addr: &'a Addr, scheme: &str) -> io::Result<Url<'a>> {
    addr.url().filter(|u| u.scheme == scheme).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a {scheme}:// URL: {addr}"),
        )
    })
}

impl<S> MessageSink for WsSink<S>
where
    S: Sink<Message, Error = Error> + Unpin + Send + 'static,
{
    async fn feed(&mut self, message: Bytes) -> io::Result<()> {
        self.0.feed(Message::Binary(message)).await.map_err(io_err)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.0.flush().await.map_err(io_err)
    }

    async fn close(&mut self) -> io::Result<()> {
        match SinkExt::close(&mut self.0).await {
            Ok(()) | Err(Error::ConnectionClosed | Error::AlreadyClosed) => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }
}

impl<S> MessageStream for WsStream<S>
where
    S: Stream<Item = Result<Message, Error>> + Unpin + Send + 'static,
{
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.0.next().await {
                None | Some(Err(Error::ConnectionClosed) | Ok(Message::Close(_))) => {
                    return Ok(None);
                }
                Some(Ok(Message::Binary(b))) => return Ok(Some(b)),
                Some(Ok(Message::Text(t))) => return Ok(Some(Bytes::from(t))),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Err(io_err(e)),
            }
        }
    }
}
