//! # mpreg-tls — certificates and verification for mpreg-rs's TLS transports
//!
//! One place for what QUIC (`mpreg-quic`, `quic://`) and WebSocket over
//! TLS (`mpreg-tokio` and `mpreg-async-std`, `wss://`) do with TLS: rustls
//! 0.23 with the ring provider, TLS 1.3 only.
//!
//! A node presents either the certificate chain from its PEM files or a
//! self-signed certificate made at start. A dialling node always verifies
//! the peer it reaches:
//!
//! * **pinned** — the URL carries the SHA-256 fingerprint of the peer's
//!   certificate (`quic://host:port/sha256=HEX`, `wss://host:port/sha256=HEX`:
//!   what a node with a self-signed certificate advertises; peers learn it
//!   with the address by gossip). The presented certificate must have
//!   exactly that fingerprint and the handshake must be signed by its key.
//! * **CA** — the URL has no fingerprint: the chain must verify against the
//!   configured CA roots for the host name (or IP) in the URL.
//!
//! A URL without a fingerprint when no CA is configured is refused
//! ([`TlsError::NoTrust`]): there is no unverified path. Tests that want to
//! trust one certificate whatever the URL says use
//! [`TlsConfig::trust_this_cert_for_tests`].
//!
//! A transport builds one [`Identity`] from a [`TlsConfig`]: the server
//! configuration it accepts with, the fingerprint it advertises
//! ([`Identity::url`]), and per dial the client configuration that verifies
//! the URL dialled ([`Identity::client_config`]).
//!
//! ```
//! use mpreg_tls::{Identity, TlsConfig, TlsError};
//!
//! let id = Identity::new(&TlsConfig::default(), &[])?; // self-signed
//! let url = id.url("wss", "127.0.0.1:7000");
//! assert!(url.starts_with("wss://127.0.0.1:7000/sha256="));
//! let path = url.split_once(":7000/").map(|(_, p)| p).unwrap_or_default();
//! assert!(id.client_config(path).is_ok()); // verifies by the pin
//! assert!(matches!(id.client_config(""), Err(TlsError::NoTrust))); // no pin, no CA
//! # Ok::<_, TlsError>(())
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

pub use rustls;

/// The URL path prefix of a pinned fingerprint.
pub const PIN_PREFIX: &str = "sha256=";

/// Why a TLS identity could not be set up, or a peer could not be verified.
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
    /// A dial to a URL that pins no certificate, with no CA configured:
    /// nothing could verify the peer, so the dial is refused.
    #[error(
        "the URL pins no certificate (…/sha256=HEX) and no CA is configured to verify the peer"
    )]
    NoTrust,
    /// The URL's host is not a name or address TLS can verify.
    #[error("{0:?} is not a host name or IP address TLS can verify")]
    ServerName(String),
    /// The TLS handshake failed: for a dial, typically the peer's
    /// certificate is not the pinned one or does not verify against the CA
    /// (`InvalidCertificate`).
    #[error("TLS handshake failed: {0}")]
    Handshake(rustls::Error),
}

impl TlsError {
    /// This error as an I/O error (what a transport's dial returns); the
    /// typed error stays reachable with `get_ref()` and `downcast_ref`.
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            TlsError::NoTrust | TlsError::ServerName(_) => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }
}

/// An I/O error of a TLS handshake (as tokio-rustls or futures-rustls
/// report it) with its rustls error made a [`TlsError::Handshake`]; other
/// I/O errors stay themselves.
pub fn handshake_error(e: io::Error) -> io::Error {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    match rustls_error {
        Some(r) => io::Error::new(e.kind(), TlsError::Handshake(r)),
        None => e,
    }
}

/// Where a node's certificate and its trust come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
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

impl TlsConfig {
    /// A configuration from optional paths (as settings hold them).
    pub fn from_paths(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        ca: Option<PathBuf>,
    ) -> TlsConfig {
        TlsConfig {
            cert,
            key,
            ca,
            trusted_for_tests: Vec::new(),
        }
    }

    /// This node's certificate chain and key, from PEM files.
    pub fn from_pem(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            cert: Some(cert.into()),
            key: Some(key.into()),
            ..TlsConfig::default()
        }
    }

    /// Verifies peers whose URL has no pin against these CA certificates
    /// (PEM).
    pub fn with_ca(mut self, ca: impl Into<PathBuf>) -> TlsConfig {
        self.ca = Some(ca.into());
        self
    }

    /// Test-only: trust this certificate (DER) for every peer, whatever its
    /// URL or name says. Never use it in production: it is how a test
    /// connects to a node whose certificate it made itself.
    pub fn trust_this_cert_for_tests(mut self, der: &[u8]) -> TlsConfig {
        self.trusted_for_tests.push(der.to_vec());
        self
    }
}

/// SHA-256 of a DER certificate, in lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The pinned fingerprint of a URL path (`sha256=HEX`, the part after
/// `host:port/`), if it is one.
pub fn pinned_fingerprint(path: &str) -> Option<&str> {
    let fp = path.strip_prefix(PIN_PREFIX)?;
    (fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit())).then_some(fp)
}

/// The URL path that pins a certificate.
pub fn pin_path(fingerprint: &str) -> String {
    format!("{PIN_PREFIX}{fingerprint}")
}

/// The TLS server name of a URL's host (a DNS name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName(host.to_string()))
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

/// A node's TLS identity and trust, built once per transport from a
/// [`TlsConfig`].
pub struct Identity {
    server: Arc<rustls::ServerConfig>,
    /// Fingerprint to advertise in the URL (self-signed or no CA).
    advertised_pin: Option<String>,
    roots: Option<Arc<rustls::RootCertStore>>,
    trusted_for_tests: Vec<Vec<u8>>,
    provider: Arc<CryptoProvider>,
    alpn: Vec<Vec<u8>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("advertised_pin", &self.advertised_pin)
            .field("ca", &self.roots.is_some())
            .finish()
    }
}

impl Identity {
    /// Reads (or generates) the certificate and the CA of `cfg`. `alpn`
    /// lists the ALPN protocol ids both ends offer (QUIC needs one;
    /// WebSocket offers none).
    pub fn new(cfg: &TlsConfig, alpn: &[&[u8]]) -> Result<Identity, TlsError> {
        let provider = provider();
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
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
        server.alpn_protocols.clone_from(&alpn);
        Ok(Identity {
            server: Arc::new(server),
            advertised_pin,
            roots,
            trusted_for_tests: cfg.trusted_for_tests.clone(),
            provider,
            alpn,
        })
    }

    /// The configuration this node accepts connections with.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server.clone()
    }

    /// The fingerprint this node advertises in its URL, if any (a
    /// self-signed certificate, or one no CA is configured for).
    pub fn advertised_pin(&self) -> Option<&str> {
        self.advertised_pin.as_deref()
    }

    /// The URL a node listening on `authority` (`host:port`) advertises:
    /// `scheme://authority`, plus `/sha256=HEX` when it pins its
    /// certificate.
    pub fn url(&self, scheme: &str, authority: &str) -> String {
        match &self.advertised_pin {
            Some(fp) => format!("{scheme}://{authority}/{}", pin_path(fp)),
            None => format!("{scheme}://{authority}"),
        }
    }

    /// The client configuration that verifies the peer at a URL whose path
    /// is `path` (after `host:port/`): by the pinned fingerprint, else by
    /// the CA; [`TlsError::NoTrust`] when there is neither.
    pub fn client_config(&self, path: &str) -> Result<rustls::ClientConfig, TlsError> {
        let algorithms = self.provider.signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = if let Some(fp) = pinned_fingerprint(path) {
            Arc::new(Pinned {
                pins: vec![fp.to_ascii_lowercase()],
                algorithms,
            })
        } else if !self.trusted_for_tests.is_empty() {
            Arc::new(Pinned {
                pins: self
                    .trusted_for_tests
                    .iter()
                    .map(|d| fingerprint(d))
                    .collect(),
                algorithms,
            })
        } else if let Some(roots) = &self.roots {
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.clone(),
                self.provider.clone(),
            )
            .build()
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?
        } else {
            return Err(TlsError::NoTrust);
        };
        let mut client = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        client.alpn_protocols.clone_from(&self.alpn);
        Ok(client)
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

/// A test CA and a certificate it signed, as PEM (see [`ca_signed_pem`]).
#[derive(Clone, Debug)]
pub struct CaSignedPem {
    /// The CA's certificate (what `ca` / `--tls-ca` points at).
    pub ca: String,
    /// The leaf certificate, signed by the CA.
    pub cert: String,
    /// The leaf's private key.
    pub key: String,
}

/// A fresh CA and a leaf certificate for `names` (DNS names or IP
/// addresses) signed by it, as PEM: for tests and tooling that want CA
/// trust rather than pins. Nodes given the leaf and key, with the CA as
/// their `ca`, verify each other by the CA and advertise no fingerprint.
pub fn ca_signed_pem(names: &[&str]) -> Result<CaSignedPem, TlsError> {
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mpreg test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(generate)?;
    let leaf_key = rcgen::KeyPair::generate().map_err(generate)?;
    let leaf =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .map_err(generate)?
            .signed_by(&leaf_key, &ca)
            .map_err(generate)?;
    Ok(CaSignedPem {
        ca: ca.pem(),
        cert: leaf.pem(),
        key: leaf_key.serialize_pem(),
    })
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
        let dir = std::env::temp_dir().join(format!("mpreg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        let tls = Identity::new(
            &TlsConfig::from_paths(Some(c.clone()), Some(k.clone()), Some(c.clone())),
            &[],
        )
        .unwrap();
        // With a CA, the URL carries no pin; a plain URL verifies by CA.
        assert!(tls.advertised_pin().is_none());
        assert_eq!(tls.url("wss", "h:1"), "wss://h:1");
        assert!(tls.client_config("").is_ok());
        let self_signed = Identity::new(&TlsConfig::default(), &[b"x"]).unwrap();
        assert!(self_signed.advertised_pin().is_some());
        assert!(matches!(
            self_signed.client_config(""),
            Err(TlsError::NoTrust)
        ));
        assert_eq!(
            self_signed.server_config().alpn_protocols,
            vec![b"x".to_vec()]
        );
        assert!(matches!(
            Identity::new(&TlsConfig::from_paths(Some(c), None, None), &[]),
            Err(TlsError::Incomplete)
        ));
        assert!(matches!(
            Identity::new(&TlsConfig::from_pem(dir.join("missing.pem"), k), &[]),
            Err(TlsError::Pem { .. })
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod io_tests {
    use super::*;

    #[test]
    fn handshake_errors_become_typed_and_others_stay() {
        let bad = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = handshake_error(io::Error::new(io::ErrorKind::InvalidData, bad));
        let typed = e.get_ref().and_then(|i| i.downcast_ref::<TlsError>());
        assert!(
            matches!(
                typed,
                Some(TlsError::Handshake(rustls::Error::InvalidCertificate(_)))
            ),
            "{e}"
        );
        let plain = handshake_error(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(plain.kind(), io::ErrorKind::ConnectionReset);
        assert!(plain.get_ref().is_none());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("::1").is_ok());
        assert!(matches!(server_name("a b"), Err(TlsError::ServerName(_))));
        assert_eq!(
            TlsError::NoTrust.into_io().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn a_ca_signed_certificate_is_trusted_by_its_ca_and_advertises_no_pin() {
        let pki = ca_signed_pem(&["127.0.0.1"]).unwrap();
        let dir = std::env::temp_dir().join(format!("mpreg-tls-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, c, k) = (dir.join("ca.pem"), dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&ca, &pki.ca).unwrap();
        std::fs::write(&c, &pki.cert).unwrap();
        std::fs::write(&k, &pki.key).unwrap();
        let id = Identity::new(&TlsConfig::from_pem(&c, &k).with_ca(&ca), &[]).unwrap();
        assert_eq!(id.advertised_pin(), None);
        assert!(id.client_config("").is_ok());
        // Without the CA, the same certificate is pinned instead.
        let pinned = Identity::new(&TlsConfig::from_pem(&c, &k), &[]).unwrap();
        assert!(pinned.advertised_pin().is_some());
        let _ = std::fs::remove_dir_all(dir);
    }
}
