//! Transport selection by URL scheme: `ws://` (WebSocket, on tokio or
//! async-std), `wss://` (WebSocket over TLS, on tokio) or `quic://`
//! (mpreg-quic, on tokio). The TLS ones share one set of certificate
//! options (`--tls-*`, `[tls]`, `MPREG_TLS_*`; `--quic-*` are aliases).
//! Everything above the transport and the executor is the same code.

use clap::{Args, ValueEnum};
use mpreg_drive::Node;
use mpreg_tokio::config::{Layer, TlsSettings};
use mpreg_tokio::{Client, Settings, StartError, TlsConfig, WsTransport, WssTransport};
use std::path::PathBuf;
use std::time::Duration;

/// A transport the CLI can run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    /// WebSocket over TCP (`ws://`).
    Ws,
    /// WebSocket over TLS (`wss://`).
    Wss,
    /// QUIC (`quic://`).
    Quic,
}

impl Kind {
    pub(crate) fn of_url(url: &str) -> Option<Kind> {
        match mpreg_proto::Url::parse(url)?.scheme {
            "ws" => Some(Kind::Ws),
            "wss" => Some(Kind::Wss),
            "quic" => Some(Kind::Quic),
            _ => None,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Ws => "WebSockets",
            Kind::Wss => "WebSockets over TLS",
            Kind::Quic => "QUIC",
        }
    }
}

/// Certificates for the TLS transports, `wss://` and `quic://` (ignored
/// over `ws://`). `--quic-*` are the older names of the same options.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct TlsArgs {
    /// wss:// and QUIC: PEM certificate chain of this node (with
    /// --tls-key). Without it a self-signed certificate is made and pinned
    /// by the fingerprint in the node's URL.
    #[arg(long, value_name = "FILE", global = true, visible_alias = "quic-cert")]
    tls_cert: Option<PathBuf>,
    /// wss:// and QUIC: PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", global = true, visible_alias = "quic-key")]
    tls_key: Option<PathBuf>,
    /// wss:// and QUIC: PEM CA certificates that verify peers whose URL
    /// pins no fingerprint.
    #[arg(long, value_name = "FILE", global = true, visible_alias = "quic-ca")]
    tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The flags as settings keys (`tls.cert`, `tls.key`, `tls.ca`).
    pub(crate) fn set_in(&self, l: &mut Layer) {
        for (key, v) in [
            ("tls.cert", &self.tls_cert),
            ("tls.key", &self.tls_key),
            ("tls.ca", &self.tls_ca),
        ] {
            if let Some(p) = v {
                l.set(key, p.to_string_lossy().into_owned());
            }
        }
    }

    /// What a client trusts (and presents, if it has a certificate): the
    /// flags, else the `MPREG_TLS_*` variables (empty ones ignored, as
    /// [`Layer::from_env`] does for a node).
    pub(crate) fn config(&self) -> TlsConfig {
        let or_env = |flag: &Option<PathBuf>, var: &str| {
            flag.clone().or_else(|| {
                std::env::var_os(var)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
        };
        TlsConfig::from_paths(
            or_env(&self.tls_cert, "MPREG_TLS_CERT"),
            or_env(&self.tls_key, "MPREG_TLS_KEY"),
            or_env(&self.tls_ca, "MPREG_TLS_CA"),
        )
    }
}

/// The certificate configuration of settings' `[tls]`.
pub(crate) fn tls_config(t: &TlsSettings) -> TlsConfig {
    TlsConfig::from_paths(t.cert.clone(), t.key.clone(), t.ca.clone())
}

/// Why a node or client did not start, with the exit code it deserves.
pub(crate) enum Failure {
    /// Bad configuration or usage (exit 2).
    Config(String),
    /// Anything else (exit 1).
    Other(String),
}

fn start_failure(e: StartError) -> Failure {
    match e {
        StartError::Config(e) => Failure::Config(e.to_string()),
        e => Failure::Other(e.to_string()),
    }
}

/// The executor `s` names (`runtime.executor`), tokio when none.
pub(crate) fn executor(s: &Settings) -> &str {
    s.runtime.executor.as_deref().unwrap_or("tokio")
}

/// Starts a node over `kind` on the executor the settings name, with the
/// certificates of their `[tls]` (for `wss://` and `quic://`).
pub(crate) async fn start(kind: Kind, s: Settings) -> Result<Node, Failure> {
    let tls = &tls_config(&s.tls);
    let node = match (kind, executor(&s)) {
        (Kind::Ws, "async-std") => mpreg_async_std::Node::start(s).await.map(|n| n.erase()),
        (Kind::Quic, "async-std") => {
            return Err(Failure::Config(
                "QUIC runs on tokio only: use --runtime tokio, or a ws:// URL with async-std"
                    .into(),
            ));
        }
        (Kind::Wss, "async-std") => {
            return Err(Failure::Config(
                "wss:// runs on tokio only for now (the async-std adapter has no TLS): use --runtime tokio, or a ws:// URL with async-std"
                    .into(),
            ));
        }
        (Kind::Wss, _) => {
            let t = WssTransport::new(tls).map_err(|e| Failure::Config(e.to_string()))?;
            mpreg_tokio::Node::start_with(t, s).await.map(|n| n.erase())
        }
        (Kind::Ws, _) => mpreg_tokio::Node::start_with(WsTransport, s)
            .await
            .map(|n| n.erase()),
        (Kind::Quic, _) => {
            let t =
                mpreg_quic::QuicTransport::new(tls).map_err(|e| Failure::Config(e.to_string()))?;
            mpreg_tokio::Node::start_with(t, s).await.map(|n| n.erase())
        }
    };
    node.map_err(start_failure)
}

/// Connects a client to `url`, over the transport its scheme names.
pub(crate) async fn connect(url: &str, tls: &TlsConfig) -> Result<Client, Failure> {
    let timeout = Duration::from_secs(5);
    let r = match Kind::of_url(url) {
        Some(Kind::Ws) => Client::connect_with(WsTransport, url, timeout).await,
        Some(Kind::Wss) => {
            let t = WssTransport::new(tls).map_err(|e| Failure::Config(e.to_string()))?;
            Client::connect_with(t, url, timeout).await
        }
        Some(Kind::Quic) => {
            let t =
                mpreg_quic::QuicTransport::new(tls).map_err(|e| Failure::Config(e.to_string()))?;
            Client::connect_with(t, url, timeout).await
        }
        None => {
            return Err(Failure::Config(format!(
                "invalid node URL {url:?} (expected ws://host:port, wss://host:port[/sha256=HEX] or quic://host:port[/sha256=HEX])"
            )));
        }
    };
    r.map_err(|e| match e {
        e @ mpreg_tokio::ClientError::Url(_) => Failure::Config(e.to_string()),
        e => Failure::Other(e.to_string()),
    })
}

/// `(kind, host, port)` of a `--listen` URL (`ws://0.0.0.0:7000`,
/// `wss://127.0.0.1:0`, `quic://127.0.0.1:0`, `quic://[::1]:7000`).
pub(crate) fn parse_listen(url: &str) -> Option<(Kind, String, u16)> {
    let u = mpreg_proto::Url::parse(url)?;
    let kind = Kind::of_url(url)?;
    u.path
        .is_empty()
        .then(|| (kind, u.host.to_string(), u.port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_urls_name_a_transport_host_and_port() {
        assert_eq!(
            parse_listen("quic://127.0.0.1:0"),
            Some((Kind::Quic, "127.0.0.1".into(), 0))
        );
        assert_eq!(
            parse_listen("wss://127.0.0.1:0"),
            Some((Kind::Wss, "127.0.0.1".into(), 0))
        );
        assert_eq!(
            parse_listen("ws://[::1]:7000/"),
            Some((Kind::Ws, "::1".into(), 7000))
        );
        for bad in [
            "tcp://a:1",
            "quic://a",
            "quic://:1",
            "ws://a:x",
            "ws://a:1/p",
            "a:1",
        ] {
            assert_eq!(parse_listen(bad), None, "{bad}");
        }
    }
}
