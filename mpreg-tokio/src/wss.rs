//! WebSocket over TLS (`wss://host:port[/sha256=HEX]`): the WebSocket
//! transport of [`WsTransport`](crate::WsTransport) inside a TLS 1.3
//! session (tokio-rustls), with the certificates and verification of
//! [`mpreg_tls`] — the same as QUIC's.
//!
//! * A node presents its PEM chain, or a self-signed certificate made at
//!   start whose fingerprint goes into its URL
//!   (`wss://127.0.0.1:7000/sha256=HEX`); peers that learn the URL by
//!   gossip pin it.
//! * A dial verifies the peer by the fingerprint in the URL, else by the
//!   configured CA; a URL with neither is refused with
//!   [`TlsError::NoTrust`] inside the I/O error, a certificate that does
//!   not verify with [`TlsError::Handshake`] (reach both with
//!   `io::Error::get_ref` and `downcast_ref::<TlsError>()`).
//! * The WebSocket request carries the URL's path (`/sha256=HEX`); the
//!   server accepts any path.

use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use mpreg_drive::transport::{Listener, Transport};
use mpreg_drive::tungstenite::{self as ws, WsSink as Sink, WsStream as Stream};
use mpreg_proto::Addr;
use mpreg_tls::{Identity, TlsConfig, TlsError, handshake_error, server_name};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// WebSocket over TLS (`wss://host:port[/sha256=HEX]`).
///
/// One value per node (its clones share the identity): the certificate is
/// read or generated once, by [`new`](WssTransport::new).
#[derive(Clone, Debug)]
pub struct WssTransport {
    identity: Arc<Identity>,
}

/// A bound WebSocket-over-TLS listener (TLS runs in the handshake).
#[derive(Debug)]
pub struct WssListener(TcpListener);

/// A TLS session over TCP, either side.
pub type TlsTcp = TlsStream<TcpStream>;

/// Sending half of a WebSocket-over-TLS connection.
pub type WssSink = Sink<SplitSink<WebSocketStream<TlsTcp>, Message>>;

/// Receiving half of a WebSocket-over-TLS connection.
pub type WssStream = Stream<SplitStream<WebSocketStream<TlsTcp>>>;

fn halves(ws: WebSocketStream<TlsTcp>) -> (WssSink, WssStream) {
    let (sink, stream) = ws.split();
    (Sink(sink), Stream(stream))
}

impl WssTransport {
    /// A transport with the identity and trust of `config`.
    pub fn new(config: &TlsConfig) -> Result<WssTransport, TlsError> {
        Ok(WssTransport {
            identity: Arc::new(Identity::new(config, &[])?),
        })
    }

    /// A transport with a fresh self-signed certificate, pinned by the
    /// fingerprint in the node's URL.
    pub fn self_signed() -> Result<WssTransport, TlsError> {
        WssTransport::new(&TlsConfig::default())
    }

    /// The fingerprint this node advertises in its URL, if any.
    pub fn fingerprint(&self) -> Option<&str> {
        self.identity.advertised_pin()
    }
}

impl Transport for WssTransport {
    type Runtime = crate::Tokio;
    type Sink = WssSink;
    type Stream = WssStream;
    type Listener = WssListener;
    type Accepting = TcpStream;

    fn scheme(&self) -> &'static str {
        "wss"
    }

    fn url(&self, authority: &str) -> Addr {
        Addr::new(self.identity.url("wss", authority))
    }

    async fn bind(&self, host: &str, port: u16) -> io::Result<WssListener> {
        Ok(WssListener(TcpListener::bind((host, port)).await?))
    }

    async fn dial(&self, addr: &Addr, max_message: usize) -> io::Result<(WssSink, WssStream)> {
        let target = ws::dial_target(addr, "wss")?;
        let client = self
            .identity
            .client_config(target.path)
            .map_err(TlsError::into_io)?;
        let name = server_name(target.host).map_err(TlsError::into_io)?;
        let tcp = TcpStream::connect(target.authority).await?;
        tcp.set_nodelay(true)?;
        let tls = TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .map_err(handshake_error)?;
        let config = Some(ws::config(max_message));
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            addr.as_str(),
            TlsStream::Client(tls),
            config,
        )
        .await
        .map_err(ws::io_err)?;
        Ok(halves(ws))
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        max_message: usize,
    ) -> io::Result<(WssSink, WssStream)> {
        tcp.set_nodelay(true)?;
        let tls = TlsAcceptor::from(self.identity.server_config())
            .accept(tcp)
            .await
            .map_err(handshake_error)?;
        let ws = tokio_tungstenite::accept_async_with_config(
            TlsStream::Server(tls),
            Some(ws::config(max_message)),
        )
        .await
        .map_err(ws::io_err)?;
        Ok(halves(ws))
    }
}

impl Listener for WssListener {
    type Accepting = TcpStream;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        self.0.accept().await
    }
}

/// Why a `wss://` node or client did not start.
#[derive(Debug, thiserror::Error)]
pub enum WssError {
    /// The certificate or trust configuration is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The node did not start.
    #[error(transparent)]
    Start(#[from] mpreg_drive::StartError),
    /// The client could not connect.
    #[error(transparent)]
    Client(#[from] mpreg_drive::ClientError),
}

/// Starts a node over `wss://` with a self-signed certificate (its URL
/// pins it).
pub async fn start(settings: mpreg_drive::Settings) -> Result<crate::Node, WssError> {
    start_with(&TlsConfig::default(), settings).await
}

/// Starts a node over `wss://` with the certificates and trust of
/// `config`.
pub async fn start_with(
    config: &TlsConfig,
    settings: mpreg_drive::Settings,
) -> Result<crate::Node, WssError> {
    let t = WssTransport::new(config)?;
    Ok(crate::Node::start_with(t, settings).await?)
}

/// Connects a client to `url` (`wss://host:port/sha256=HEX`, as the node
/// prints it), verifying the node by the pinned fingerprint.
pub async fn connect(url: &str) -> Result<crate::Client, WssError> {
    connect_with(&TlsConfig::default(), url).await
}

/// Connects a client with the trust of `config` (a CA for URLs without a
/// pin).
pub async fn connect_with(config: &TlsConfig, url: &str) -> Result<crate::Client, WssError> {
    let t = WssTransport::new(config)?;
    Ok(crate::Client::connect_with(t, url, std::time::Duration::from_secs(5)).await?)
}
