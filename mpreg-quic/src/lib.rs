//! # mpreg-quic — mpreg-rs over QUIC
//!
//! The same node and application API as [`mpreg_tokio`] — it *is* that
//! API: this crate only provides a [`Transport`](mpreg_tokio::Transport),
//! [`QuicTransport`], on the [`Tokio`](mpreg_tokio::Tokio) runtime, and the
//! mpreg-drive loop, connection management, handlers, node and client run
//! over it unchanged.
//!
//! * **one QUIC connection per peer** (quinn, rustls with ring), with three
//!   unidirectional streams per direction, one per traffic class, so a
//!   4 MiB call never holds a probe ack behind it, not even behind a lost
//!   packet (see [`transport`]);
//! * **addresses** `quic://host:port`, plus `/sha256=HEX` when the node's
//!   certificate is pinned by fingerprint;
//! * **certificates** from PEM files ([`QuicConfig`]: `cert`, `key`, and
//!   `ca` to verify peers), or, when none are given, a self-signed
//!   certificate made at start whose fingerprint goes into the node's URL.
//!   Peers learn the URL (and so the pin) with the address, by gossip.
//!   Verification is always on: a dial to a URL without a pin needs a CA;
//!   [`QuicConfig::trust_this_cert_for_tests`] exists for tests only. The
//!   certificate code is [`mpreg_tls`]'s, shared with WebSocket over TLS
//!   (`wss://`, `mpreg_tokio::WssTransport`): [`QuicConfig`] is
//!   [`mpreg_tls::TlsConfig`], so one configuration serves both.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mpreg_tokio::Settings;
//!
//! let a = mpreg_quic::start(Settings::local()).await?;
//! a.register("greet", ["cpu"], |(who,): (String,)| async move {
//!     Ok::<_, String>(format!("hello, {who}"))
//! }).await?;
//! assert!(a.addr().as_str().starts_with("quic://127.0.0.1:"));
//! let b = mpreg_quic::start(Settings { seeds: vec![a.addr().clone()], ..Settings::local() }).await?;
//! // ... once b's catalog has `greet`:
//! let s: String = b.call("greet", &("world",)).locs(["cpu"]).await?.json()?;
//! let client = mpreg_quic::connect(a.addr().as_str()).await?;
//! let s: String = client.call("greet", &("client",)).await?.json()?;
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod tls;
pub mod transport;

pub use tls::{QuicConfig, TlsConfig, TlsError, fingerprint, self_signed_pem};
pub use transport::{QuicListener, QuicSink, QuicStream, QuicTransport};

use mpreg_tokio::{Client, ClientError, Node, Settings, StartError};
use std::time::Duration;
use thiserror::Error;

/// Why a QUIC node or client did not start.
#[derive(Debug, Error)]
pub enum QuicError {
    /// The certificate or trust configuration is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The node did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The client could not connect.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Starts a node over QUIC with a self-signed certificate.
pub async fn start(settings: Settings) -> Result<Node, QuicError> {
    start_with(&QuicConfig::default(), settings).await
}

/// Starts a node over QUIC with the certificates of `config`.
pub async fn start_with(config: &QuicConfig, settings: Settings) -> Result<Node, QuicError> {
    let t = QuicTransport::new(config)?;
    Ok(Node::start_with(t, settings).await?)
}

/// Connects a client to `url` (`quic://host:port/sha256=HEX`, as the node
/// prints it), verifying the node by the pinned fingerprint.
pub async fn connect(url: &str) -> Result<Client, QuicError> {
    connect_with(&QuicConfig::default(), url).await
}

/// Connects a client with the trust of `config` (a CA for URLs without a
/// pin).
pub async fn connect_with(config: &QuicConfig, url: &str) -> Result<Client, QuicError> {
    let t = QuicTransport::new(config)?;
    Ok(Client::connect_with(t, url, Duration::from_secs(5)).await?)
}
