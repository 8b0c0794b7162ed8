//! The QUIC [`Transport`]: one connection per peer, three unidirectional
//! streams per direction — one per traffic class (control, broadcast, call)
//! — each carrying length-prefixed messages.
//!
//! ```text
//! stream open:  [lane: u8]
//! message:      [len: u32 BE, len > 0][len bytes]   (a chunk, mpreg_proto::chunk)
//! clean close:  [0u32] then FIN, on every stream
//! ```
//!
//! The control stream has the highest send priority, so a probe ack is
//! packetised ahead of call data already buffered, and a lost packet of a
//! large call never delays it (no head-of-line blocking across streams).
//! A stream that ends without the closing marker, or a connection that is
//! lost, is an error — the drive loop reports it as unreachable — so only a
//! deliberate close reads as clean.

use crate::QuicConfig;
use crate::tls::{Tls, TlsError};
use bytes::Bytes;
use mpreg_proto::chunk;
use mpreg_proto::{Addr, TrafficClass};
use mpreg_tokio::transport::{Listener, MessageSink, MessageStream, Transport};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The streams of a connection, one per lane (traffic class).
const LANES: usize = 3;

/// QUIC with quinn (`quic://host:port[/sha256=HEX]`).
///
/// One value per node: the node's endpoint (its UDP socket, used both to
/// accept and to dial) is made by [`bind`](Transport::bind) and shared by
/// its clones. A transport that never binds (a client) opens a client-only
/// endpoint on its first dial.
#[derive(Clone, Debug)]
pub struct QuicTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tls: Tls,
    endpoint: Mutex<Option<quinn::Endpoint>>,
}

impl QuicTransport {
    /// A transport with the identity and trust of `config`.
    pub fn new(config: &QuicConfig) -> Result<QuicTransport, TlsError> {
        Ok(QuicTransport {
            inner: Arc::new(Inner {
                tls: Tls::new(config)?,
                endpoint: Mutex::new(None),
            }),
        })
    }

    /// A transport with a fresh self-signed certificate, pinned by the
    /// fingerprint in the node's URL.
    pub fn self_signed() -> Result<QuicTransport, TlsError> {
        QuicTransport::new(&QuicConfig::default())
    }

    /// The fingerprint this node advertises in its URL, if any.
    pub fn fingerprint(&self) -> Option<&str> {
        self.inner.tls.identity.advertised_pin()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<quinn::Endpoint>> {
        self.inner
            .endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn endpoint_for(&self, target: &SocketAddr) -> io::Result<quinn::Endpoint> {
        let mut slot = self.slot();
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let any = if target.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        let e = quinn::Endpoint::client(SocketAddr::new(any, 0))?;
        *slot = Some(e.clone());
        Ok(e)
    }
}

/// `(host, port, path)` of `quic://host:port[/path]`.
pub(crate) fn parse_url(addr: &Addr) -> Option<(&str, u16, &str)> {
    addr.url()
        .filter(|u| u.scheme == "quic")
        .map(|u| (u.host, u.port, u.path))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

fn conn_err(e: quinn::ConnectionError) -> io::Error {
    use quinn::ConnectionError as E;
    let kind = match &e {
        E::TimedOut => io::ErrorKind::TimedOut,
        E::Reset | E::ConnectionClosed(_) | E::ApplicationClosed(_) => {
            io::ErrorKind::ConnectionReset
        }
        E::LocallyClosed => io::ErrorKind::ConnectionAborted,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

async fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| invalid(format!("{host} resolves to no address")))
}

impl Transport for QuicTransport {
    type Runtime = mpreg_tokio::Tokio;
    type Sink = QuicSink;
    type Stream = QuicStream;
    type Listener = QuicListener;
    type Accepting = quinn::Incoming;

    fn scheme(&self) -> &'static str {
        "quic"
    }

    fn url(&self, authority: &str) -> Addr {
        Addr::new(self.inner.tls.identity.url("quic", authority))
    }

    async fn bind(&self, host: &str, port: u16) -> io::Result<QuicListener> {
        let at = resolve(host, port).await?;
        // A transport that binds again (a node restarted with the same
        // identity) lets go of its previous endpoint and socket first.
        let old = self.slot().take();
        if let Some(old) = old {
            old.close(0u32.into(), b"rebound");
            let _ = tokio::time::timeout(Duration::from_secs(1), old.wait_idle()).await;
        }
        let endpoint = quinn::Endpoint::server(self.inner.tls.server.clone(), at)?;
        *self.slot() = Some(endpoint.clone());
        Ok(QuicListener(endpoint))
    }

    async fn dial(&self, addr: &Addr, max_message: usize) -> io::Result<(QuicSink, QuicStream)> {
        let (host, port, path) =
            parse_url(addr).ok_or_else(|| invalid(format!("not a quic:// URL: {addr}")))?;
        let client = self.inner.tls.client_for(path).map_err(TlsError::into_io)?;
        let target = resolve(host, port).await?;
        let endpoint = self.endpoint_for(&target)?;
        let connecting = endpoint
            .connect_with(client, target, host)
            .map_err(|e| invalid(e.to_string()))?;
        let conn = connecting.await.map_err(conn_err)?;
        halves(conn, max_message).await
    }

    async fn handshake(
        &self,
        incoming: quinn::Incoming,
        max_message: usize,
    ) -> io::Result<(QuicSink, QuicStream)> {
        let conn = incoming.await.map_err(conn_err)?;
        halves(conn, max_message).await
    }
}

/// Opens this side's three streams and starts reading the peer's.
async fn halves(conn: quinn::Connection, max_message: usize) -> io::Result<(QuicSink, QuicStream)> {
    let mut streams = Vec::with_capacity(LANES);
    for lane in 0..LANES {
        let mut s = conn.open_uni().await.map_err(conn_err)?;
        // Control first, then broadcast, then calls.
        let _ = s.set_priority(i32::try_from(LANES - lane).unwrap_or(0));
        s.write_all(&[lane as u8]).await.map_err(write_err)?;
        streams.push(s);
    }
    let (tx, rx) = mpsc::channel(64);
    let reader = tokio::spawn(read_streams(conn.clone(), max_message, tx));
    Ok((
        QuicSink { streams, conn },
        QuicStream {
            rx,
            ended: 0,
            reader,
        },
    ))
}

enum Item {
    Message(Bytes),
    /// A stream ended with the closing marker.
    End,
    Failed(io::Error),
}

/// Accepts the peer's three streams and forwards their messages.
async fn read_streams(conn: quinn::Connection, max: usize, tx: mpsc::Sender<Item>) {
    let mut readers = JoinSet::new();
    let mut seen = [false; LANES];
    for _ in 0..LANES {
        let mut recv = match conn.accept_uni().await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Item::Failed(conn_err(e))).await;
                return;
            }
        };
        let mut lane = [0u8; 1];
        if let Err(e) = recv.read_exact(&mut lane).await {
            let _ = tx.send(Item::Failed(io::Error::other(e))).await;
            return;
        }
        let lane = usize::from(lane[0]);
        if lane >= LANES || seen[lane] {
            let _ = tx
                .send(Item::Failed(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad stream header",
                )))
                .await;
            return;
        }
        seen[lane] = true;
        readers.spawn(read_stream(recv, max, tx.clone()));
    }
    // Keep the readers (dropping the set aborts them) until all end.
    while readers.join_next().await.is_some() {}
}

async fn read_stream(mut recv: quinn::RecvStream, max: usize, tx: mpsc::Sender<Item>) {
    let item = loop {
        let mut len = [0u8; 4];
        if let Err(e) = recv.read_exact(&mut len).await {
            break Item::Failed(read_err(e));
        }
        let n = u32::from_be_bytes(len) as usize;
        if n == 0 {
            break Item::End;
        }
        if n > max {
            break Item::Failed(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("message of {n} bytes above the limit of {max}"),
            ));
        }
        let mut buf = vec![0u8; n];
        if let Err(e) = recv.read_exact(&mut buf).await {
            break Item::Failed(read_err(e));
        }
        if tx.send(Item::Message(Bytes::from(buf))).await.is_err() {
            return;
        }
    };
    let _ = tx.send(item).await;
}

fn read_err(e: quinn::ReadExactError) -> io::Error {
    match e {
        quinn::ReadExactError::FinishedEarly(_) => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer's stream ended without a clean close",
        ),
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => conn_err(c),
        quinn::ReadExactError::ReadError(e) => io::Error::new(io::ErrorKind::ConnectionReset, e),
    }
}

fn write_err(e: quinn::WriteError) -> io::Error {
    match e {
        quinn::WriteError::ConnectionLost(c) => conn_err(c),
        other => io::Error::new(io::ErrorKind::ConnectionReset, other),
    }
}

/// A bound QUIC endpoint.
#[derive(Debug)]
pub struct QuicListener(quinn::Endpoint);

impl Listener for QuicListener {
    type Accepting = quinn::Incoming;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(quinn::Incoming, SocketAddr)> {
        match self.0.accept().await {
            Some(incoming) => {
                let peer = incoming.remote_address();
                Ok((incoming, peer))
            }
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the QUIC endpoint is closed",
            )),
        }
    }
}

/// Sending half: this side's three streams.
#[derive(Debug)]
pub struct QuicSink {
    streams: Vec<quinn::SendStream>,
    conn: quinn::Connection,
}

impl MessageSink for QuicSink {
    async fn feed(&mut self, message: Bytes) -> io::Result<()> {
        let lane = match chunk::class_of(&message) {
            Some(TrafficClass::Control) => 0,
            Some(TrafficClass::Broadcast) => 1,
            Some(TrafficClass::Call) => 2,
            None => return Err(invalid("not a chunk")),
        };
        let len = u32::try_from(message.len()).map_err(|_| invalid("message too large"))?;
        let stream = &mut self.streams[lane];
        stream
            .write_all_chunks(&mut [Bytes::copy_from_slice(&len.to_be_bytes()), message])
            .await
            .map_err(write_err)
    }

    async fn flush(&mut self) -> io::Result<()> {
        // quinn sends buffered stream data on its own.
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
        for s in &mut self.streams {
            s.write_all(&0u32.to_be_bytes()).await.map_err(write_err)?;
            let _ = s.finish();
        }
        // Wait until the peer has acknowledged everything, so the
        // connection may go — but not for a peer that vanished (a crashed
        // host answers nothing): a few round trips at most.
        let wait = (self.conn.rtt() * 8).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let acked = async {
            for s in &self.streams {
                let _ = s.stopped().await;
            }
        };
        let _ = tokio::time::timeout(wait, acked).await;
        Ok(())
    }
}

/// Receiving half: the peer's three streams, merged.
#[derive(Debug)]
pub struct QuicStream {
    rx: mpsc::Receiver<Item>,
    ended: usize,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for QuicStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl MessageStream for QuicStream {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if self.ended == LANES {
                return Ok(None);
            }
            match self.rx.recv().await {
                Some(Item::Message(m)) => return Ok(Some(m)),
                Some(Item::End) => self.ended += 1,
                Some(Item::Failed(e)) => return Err(e),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the connection's readers stopped",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_a_pin() {
        let a = Addr::new("quic://127.0.0.1:7000/sha256=ab");
        assert_eq!(parse_url(&a), Some(("127.0.0.1", 7000, "sha256=ab")));
        let b = Addr::new("quic://[::1]:9");
        assert_eq!(parse_url(&b), Some(("::1", 9, "")));
        for bad in [
            "ws://a:1",
            "quic://a",
            "quic://:1",
            "quic://a:0",
            "quic://a:x/",
        ] {
            assert_eq!(parse_url(&Addr::new(bad)), None, "{bad}");
        }
    }
}
