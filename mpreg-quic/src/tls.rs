//! Certificates and verification.
//!
//! A node presents either the certificate chain from its PEM files or a
//! self-signed certificate made at start. A dialling node always verifies
//! the peer it reaches:
//!
//! * **pinned** — the URL carries the SHA-256 fingerprint of the peer's
//!   certificate (`quic://host:port/sha256=HEX`, what a node with a
//!   self-signed certificate advertises; peers learn it with the address by
//!   gossip). The presented certificate must have exactly that fingerprint
//!   and the handshake must be signed by its key.
//! * **CA** — the URL has no fingerprint: the chain must verify against the
//!   configured CA roots for the host name (or IP) in the URL.
//!
//! A URL without a fingerprint when no CA is configured is refused: there
//! is no unverified path. Tests that want to trust one certificate whatever
//! the URL says use [`QuicConfig::trust_this_cert_for_tests`].

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// The ALPN protocol id of mpreg over QUIC.
pub const ALPN: &[u8] = b"mpreg/1";

/// The URL path prefix of a pinned fingerprint.
const PIN_PREFIX: &str = "sha256=";

/// Why a QUIC identity could not be set up.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {error}")]
    Pem {
        /// Certificate, key or CA.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// A certificate file holds no certificate.
    #[error("{0} holds no certificate")]
    Empty(PathBuf),
    /// Only one of the certificate and the key was given.
    #[error("a certificate needs its key and a key its certificate (both or neither)")]
    Incomplete,
    /// The self-signed certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    /// rustls refused the configuration (e.g. the key does not match).
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The TLS configuration is not usable for QUIC.
    #[error("TLS configuration not usable for QUIC: {0}")]
    Quic(String),
}

/// Where a node's certificate and its trust come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuicConfig {
    /// PEM certificate chain (leaf first). With `key`; without both, a
    /// self-signed certificate is generated and its fingerprint is put in
    /// the node's URL.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA certificates that peers' chains must verify against when
    /// their URL carries no fingerprint.
    pub ca: Option<PathBuf>,
    /// Test only: certificates (DER) trusted for any URL.
    trusted_for_tests: Vec<Vec<u8>>,
}

impl QuicConfig {
    /// This node's certificate chain and key, from PEM files.
    pub fn from_pem(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> QuicConfig {
        QuicConfig {
            cert: Some(cert.into()),
            key: Some(key.into()),
            ..QuicConfig::default()
        }
    }

    /// Verifies peers whose URL has no pin against these CA certificates
    /// (PEM).
    pub fn with_ca(mut self, ca: impl Into<PathBuf>) -> QuicConfig {
        self.ca = Some(ca.into());
        self
    }

    /// Test-only: trust this certificate (DER) for every peer, whatever its
    /// URL or name says. Never use it in production: it is how a test
    /// connects to a node whose certificate it made itself.
    pub fn trust_this_cert_for_tests(mut self, der: &[u8]) -> QuicConfig {
        self.trusted_for_tests.push(der.to_vec());
        self
    }
}

/// SHA-256 of a DER certificate, in lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The pinned fingerprint of a `quic://host:port/sha256=HEX` URL.
pub(crate) fn pinned_fingerprint(path: &str) -> Option<&str> {
    let fp = path.strip_prefix(PIN_PREFIX)?;
    (fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit())).then_some(fp)
}

/// The URL path that pins a certificate.
pub(crate) fn pin_path(fingerprint: &str) -> String {
    format!("{PIN_PREFIX}{fingerprint}")
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |error: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        error,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Empty(path.to_path_buf()));
    }
    Ok(certs)
}

/// A node's TLS identity and trust, built once per transport.
pub(crate) struct Tls {
    pub(crate) server: quinn::ServerConfig,
    /// Fingerprint to advertise in the URL (self-signed or no CA).
    pub(crate) advertised_pin: Option<String>,
    roots: Option<Arc<rustls::RootCertStore>>,
    trusted_for_tests: Arc<Vec<Vec<u8>>>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("advertised_pin", &self.advertised_pin)
            .field("ca", &self.roots.is_some())
            .finish()
    }
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
    pub(crate) fn new(cfg: &QuicConfig) -> Result<Tls, TlsError> {
        let provider = provider();
        let (chain, key, self_signed) = match (&cfg.cert, &cfg.key) {
            (Some(c), Some(k)) => {
                let chain = read_pem_certs("a certificate", c)?;
                let key = PrivateKeyDer::from_pem_file(k).map_err(|e| TlsError::Pem {
                    what: "a private key",
                    path: k.clone(),
                    error: e.to_string(),
                })?;
                (chain, key, false)
            }
            (None, None) => {
                let ck = rcgen::generate_simple_self_signed(vec![
                    "mpreg".to_string(),
                    "localhost".to_string(),
                ])
                .map_err(|e| TlsError::Generate(e.to_string()))?;
                let key = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
                (vec![ck.cert.der().clone()], key, true)
            }
            _ => return Err(TlsError::Incomplete),
        };
        let roots = match &cfg.ca {
            Some(path) => {
                let mut store = rustls::RootCertStore::empty();
                for c in read_pem_certs("a CA certificate", path)? {
                    store.add(c)?;
                }
                Some(Arc::new(store))
            }
            None => None,
        };
        let advertised_pin = (self_signed || roots.is_none())
            .then(|| chain.first().map(|c| fingerprint(c)))
            .flatten();
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
            .map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
        server.transport_config(Arc::new(transport_config()));
        Ok(Tls {
            server,
            advertised_pin,
            roots,
            trusted_for_tests: Arc::new(cfg.trusted_for_tests.clone()),
            provider,
        })
    }

    /// The client configuration that verifies the peer at a URL whose path
    /// is `path` (after `host:port/`).
    pub(crate) fn client_for(&self, path: &str) -> Result<quinn::ClientConfig, String> {
        let verifier: Arc<dyn ServerCertVerifier> = if let Some(fp) = pinned_fingerprint(path) {
            Arc::new(Pinned {
                pins: vec![fp.to_ascii_lowercase()],
                algorithms: self.provider.signature_verification_algorithms,
            })
        } else if !self.trusted_for_tests.is_empty() {
            Arc::new(Pinned {
                pins: self
                    .trusted_for_tests
                    .iter()
                    .map(|d| fingerprint(d))
                    .collect(),
                algorithms: self.provider.signature_verification_algorithms,
            })
        } else if let Some(roots) = &self.roots {
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.clone(),
                self.provider.clone(),
            )
            .build()
            .map_err(|e| e.to_string())?
        } else {
            return Err(
                "the URL pins no certificate (…/sha256=HEX) and no CA is configured to verify the peer"
                    .into(),
            );
        };
        let mut client = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        client.alpn_protocols = vec![ALPN.to_vec()];
        let client =
            quinn::crypto::rustls::QuicClientConfig::try_from(client).map_err(|e| e.to_string())?;
        let mut c = quinn::ClientConfig::new(Arc::new(client));
        c.transport_config(Arc::new(transport_config()));
        Ok(c)
    }
}

/// Accepts exactly the certificates with these fingerprints, and checks
/// that the handshake was signed with their key.
#[derive(Debug)]
struct Pinned {
    pins: Vec<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        if self.pins.contains(&fp) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A self-signed certificate and key as PEM (for tests and tooling that
/// want files).
pub fn self_signed_pem(names: &[&str]) -> Result<(String, String, Vec<u8>), TlsError> {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((
        ck.cert.pem(),
        ck.signing_key.serialize_pem(),
        ck.cert.der().to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_only_when_well_formed() {
        let fp = fingerprint(b"x");
        assert_eq!(fp.len(), 64);
        assert_eq!(pinned_fingerprint(&pin_path(&fp)), Some(fp.as_str()));
        assert_eq!(pinned_fingerprint("sha256=abc"), None);
        assert_eq!(pinned_fingerprint(""), None);
        assert_eq!(
            pinned_fingerprint(&format!("sha256={}", "z".repeat(64))),
            None
        );
    }

    #[test]
    fn missing_trust_is_an_error_not_an_open_door() {
        let (cert, key, _) = self_signed_pem(&["localhost"]).unwrap();
        let dir = std::env::temp_dir().join(format!("mpreg-quic-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        let tls = Tls::new(&QuicConfig {
            cert: Some(c.clone()),
            key: Some(k.clone()),
            ca: Some(c.clone()),
            ..QuicConfig::default()
        })
        .unwrap();
        // With a CA, the URL carries no pin; a plain URL verifies by CA.
        assert!(tls.advertised_pin.is_none());
        assert!(tls.client_for("").is_ok());
        let self_signed = Tls::new(&QuicConfig::default()).unwrap();
        assert!(self_signed.advertised_pin.is_some());
        assert!(self_signed.client_for("").is_err());
        assert!(matches!(
            Tls::new(&QuicConfig {
                cert: Some(c),
                ..QuicConfig::default()
            }),
            Err(TlsError::Incomplete)
        ));
        assert!(matches!(
            Tls::new(&QuicConfig {
                cert: Some(dir.join("missing.pem")),
                key: Some(k),
                ..QuicConfig::default()
            }),
            Err(TlsError::Pem { .. })
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
