//! Certificates and verification over QUIC: [`mpreg_tls`]'s, shared with
//! WebSocket over TLS (`wss://`), made into quinn's configurations here.
//!
//! A node presents either the certificate chain from its PEM files or a
//! self-signed certificate made at start, whose fingerprint goes into its
//! URL (`quic://host:port/sha256=HEX`). A dialling node verifies the peer
//! by that pin, else by the configured CA; a URL with neither is refused
//! ([`TlsError::NoTrust`]). See [`mpreg_tls`] for the rules.

pub use mpreg_tls::{TlsConfig, TlsError, fingerprint, self_signed_pem};

use mpreg_tls::Identity;
use std::sync::Arc;

/// The QUIC name of [`TlsConfig`] (the same type: one configuration serves
/// QUIC and `wss://`).
pub type QuicConfig = TlsConfig;

/// The ALPN protocol id of mpreg over QUIC.
pub const ALPN: &[u8] = b"mpreg/1";

/// A node's TLS identity and trust as quinn configurations, built once per
/// transport.
#[derive(Debug)]
pub(crate) struct Tls {
    pub(crate) server: quinn::ServerConfig,
    pub(crate) identity: Identity,
}

/// Protocol parameters shared by both ends.
pub(crate) fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // Three unidirectional streams per direction (one per traffic class)
    // and nothing else.
    t.max_concurrent_uni_streams(3u8.into());
    t.max_concurrent_bidi_streams(0u8.into());
    t.stream_receive_window((8u32 << 20).into());
    t.receive_window((24u32 << 20).into());
    t.send_window(24 << 20);
    t.keep_alive_interval(Some(std::time::Duration::from_secs(5)));
    if let Ok(idle) = std::time::Duration::from_secs(30).try_into() {
        t.max_idle_timeout(Some(idle));
    }
    t
}

impl Tls {
    pub(crate) fn new(cfg: &TlsConfig) -> Result<Tls, TlsError> {
        let identity = Identity::new(cfg, &[ALPN])?;
        let server = quinn::crypto::rustls::QuicServerConfig::try_from(identity.server_config())
            .map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
        server.transport_config(Arc::new(transport_config()));
        Ok(Tls { server, identity })
    }

    /// The client configuration that verifies the peer at a URL whose path
    /// is `path` (after `host:port/`).
    pub(crate) fn client_for(&self, path: &str) -> Result<quinn::ClientConfig, TlsError> {
        let client = self.identity.client_config(path)?;
        let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
            .map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut c = quinn::ClientConfig::new(Arc::new(client));
        c.transport_config(Arc::new(transport_config()));
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_identities_offer_the_mpreg_alpn_and_refuse_unpinned_urls_without_a_ca() {
        let tls = Tls::new(&QuicConfig::default()).unwrap();
        assert!(tls.identity.advertised_pin().is_some());
        assert!(matches!(tls.client_for(""), Err(TlsError::NoTrust)));
        let pin = mpreg_tls::pin_path(tls.identity.advertised_pin().unwrap());
        assert!(tls.client_for(&pin).is_ok());
    }
}
