//! One configuration type, [`Settings`], read in layers: a named topology
//! template, then a TOML file, then the environment, then command-line
//! flags — each later layer overrides the earlier ones, key by key.
//!
//! ```
//! use mpreg_drive::config::{Layer, Settings};
//! use std::time::Duration;
//!
//! let file = Layer::from_toml(r#"
//!     name = "edge-1"
//!     cluster_id = "dynamic-mesh"
//!     resources = ["edge-resource-1"]
//!     seeds = ["ws://127.0.0.1:8000"]
//!     gossip_interval = 0.5
//! "#, "example.toml").unwrap();
//! let env = Layer::from_env(|k| (k == "MPREG_PORT").then(|| "8001".to_string())).unwrap();
//! let s = Settings::resolve([file, env]).unwrap();
//! assert_eq!(s.port, 8001);
//! assert_eq!(s.protocol.membership.probe_period, Duration::from_millis(500));
//! ```
//!
//! The protocol sections (`[membership]`, `[overlay]`, `[dissemination]`,
//! `[calls]`, `[limits]`, `[connections]`, `[leave]`) are the core's own
//! configuration types ([`mpreg_proto::Config`]), read as they are: every
//! key is the field's name, every default the core's. `[tls]` is
//! [`TlsSettings`] (`cert`, `key`, `ca`: PEM paths for `wss://` and
//! `quic://`). `[runtime]` is [`RuntimeSettings`]. Federation with other clusters is the
//! `[federation]` section; without it nothing crosses clusters:
//!
//! ```toml
//! [federation]
//! policy = "explicit"    # strict (the default) | explicit | permissive
//! allow = ["regional"]   # explicit: remote clusters that may bridge
//! export = ["embed*"]    # explicit: functions offered to them (default "*")
//! import = ["*"]         # explicit: functions taken from them (default "*")
//!
//! [[federation.bridges]] # bridges this node opens
//! cluster = "regional"
//! seeds = ["ws://10.0.0.2:7000"]
//! ```
//!
//! Durations are written as seconds (`0.5`, `2`) or with units (`"500ms"`,
//! `"2s"`, `"1m"`, `"1h"`, `"250us"`; see
//! [`mpreg_proto::config::duration`]). Every invalid value is a
//! [`ConfigError`] naming the key (or environment variable) and the value.

use mpreg_proto::config::duration;
use mpreg_proto::{
    Addr, BridgeConfig, CallConfig, Config, ConnectionConfig, DisseminationConfig,
    FederationConfig, LeaveConfig, Limits, MembershipConfig, OverlayConfig, Policy,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use toml::{Table, Value};

pub use mpreg_proto::config::duration::parse as parse_duration;

/// Environment variables read by [`Layer::from_env`].
pub const ENV_VARS: [&str; 12] = [
    "MPREG_HOST",
    "MPREG_PORT",
    "MPREG_NAME",
    "MPREG_CLUSTER_ID",
    "MPREG_SEEDS",
    "MPREG_RESOURCES",
    "MPREG_GOSSIP_INTERVAL",
    "MPREG_TOPOLOGY",
    "MPREG_RUNTIME",
    "MPREG_TLS_CERT",
    "MPREG_TLS_KEY",
    "MPREG_TLS_CA",
];

/// The executors mpreg-rs has adapters for (`runtime.executor`).
pub const EXECUTORS: [&str; 2] = ["tokio", "async-std"];
const EXECUTOR_NAMES: &str = "tokio or async-std";

/// Checks an executor's name (one of [`EXECUTORS`]); errors name `key`.
pub fn check_executor(key: &str, v: &str) -> Result<(), ConfigError> {
    if EXECUTORS.contains(&v) {
        Ok(())
    } else {
        Err(invalid(key, v, EXECUTOR_NAMES))
    }
}

/// A configuration value that cannot work. Nothing was started.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A value of the wrong form.
    #[error("invalid value for {key}: {value:?} ({expected})")]
    Invalid {
        /// The key, environment variable or flag.
        key: String,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: String,
    },
    /// The config file is not valid TOML for these settings (the message
    /// names the key).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// The protocol configuration does not validate (names the key).
    #[error("invalid protocol configuration: {0}")]
    Protocol(#[from] mpreg_proto::ConfigError),
}

fn invalid(key: impl Into<String>, value: impl Into<String>, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

/// What the runtime alone decides: its executor and how much a connection
/// may queue. Every rule of the protocol, connections and leave included,
/// is the core's ([`Config`]).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// The executor the node runs on (one of [`EXECUTORS`]; TOML also
    /// takes `runtime = "async-std"` for this key alone). The `mpreg`
    /// binary starts the node on it (default tokio). A library picks the
    /// executor by the adapter crate it starts the node with; when this is
    /// set to another one the node refuses to start rather than ignore it.
    pub executor: Option<String>,
    /// Per-connection cap of queued control frames. Default 4 MiB.
    pub queue_control_bytes: usize,
    /// Per-connection cap of queued broadcast frames. Default 32 MiB.
    pub queue_broadcast_bytes: usize,
    /// Per-connection cap of queued call frames. Default 64 MiB.
    pub queue_call_bytes: usize,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            executor: None,
            queue_control_bytes: 4 << 20,
            queue_broadcast_bytes: 32 << 20,
            queue_call_bytes: 64 << 20,
        }
    }
}

impl RuntimeSettings {
    pub(crate) fn queue_caps(&self) -> [usize; 3] {
        [
            self.queue_control_bytes,
            self.queue_broadcast_bytes,
            self.queue_call_bytes,
        ]
    }
}

/// Certificates of the TLS transports (`wss://` and `quic://`; the
/// `[tls]` section, `MPREG_TLS_*`, `--tls-*`). Paths only: the transport
/// reads them when it starts (`mpreg_tls::TlsConfig`), so an unreadable
/// file fails there, naming the file. With neither `cert` nor `key`, a
/// TLS node makes a self-signed certificate and pins it in its URL. A
/// `ws://` node ignores them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain of this node (with `key`).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA certificates that verify peers whose URL pins no fingerprint.
    pub ca: Option<PathBuf>,
}

/// A named configuration template, shipped as a TOML file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Edge computing (the guide's dynamic mesh): fast probing.
    EdgeComputing,
    /// Enterprise (the guide's hierarchical federation): larger views.
    Enterprise,
    /// Global deployment (the guide's cross-datacenter federation):
    /// timeouts tolerant of 80–200 ms links.
    GlobalDeployment,
}

impl Topology {
    /// Every template.
    pub const ALL: [Topology; 3] = [
        Topology::EdgeComputing,
        Topology::Enterprise,
        Topology::GlobalDeployment,
    ];

    /// Its canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Topology::EdgeComputing => "edge-computing",
            Topology::Enterprise => "enterprise",
            Topology::GlobalDeployment => "global-deployment",
        }
    }

    /// The template file's text.
    pub fn template(self) -> &'static str {
        match self {
            Topology::EdgeComputing => include_str!("../templates/edge-computing.toml"),
            Topology::Enterprise => include_str!("../templates/enterprise.toml"),
            Topology::GlobalDeployment => include_str!("../templates/global-deployment.toml"),
        }
    }

    /// Parses a name; the guide's topology names are accepted as aliases
    /// (`dynamic_mesh`, `hierarchical`, `cross_datacenter`).
    pub fn parse(s: &str) -> Option<Topology> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "edge-computing" | "edge" | "dynamic-mesh" => Some(Topology::EdgeComputing),
            "enterprise" | "hierarchical" => Some(Topology::Enterprise),
            "global-deployment" | "global" | "cross-datacenter" => Some(Topology::GlobalDeployment),
            _ => None,
        }
    }
}

const TOPOLOGY_NAMES: &str = "one of edge-computing (dynamic-mesh), enterprise (hierarchical), global-deployment (cross-datacenter)";

/// The names of [`PolicyKind`]s, for error messages.
const POLICY_NAMES: &str = "one of strict, explicit, permissive";

/// Which federation policy, before its lists are filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// Nothing crosses clusters (the default).
    Strict,
    /// Only `allow`ed clusters; only `export`/`import` name patterns.
    Explicit,
    /// Any cluster, every function.
    Permissive,
}

impl PolicyKind {
    /// Parses `strict`, `explicit` or `permissive`.
    pub fn parse(s: &str) -> Option<PolicyKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "strict" => Some(PolicyKind::Strict),
            "explicit" => Some(PolicyKind::Explicit),
            "permissive" => Some(PolicyKind::Permissive),
            _ => None,
        }
    }
}

/// Everything a layer may hold, as written in TOML.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct File {
    host: Option<String>,
    port: Option<u16>,
    advertise: Option<String>,
    name: Option<String>,
    cluster_id: Option<String>,
    resources: Option<Vec<String>>,
    seeds: Option<Vec<String>>,
    /// The guide's `connect`: one more seed.
    connect: Option<String>,
    #[serde(default, deserialize_with = "some_duration")]
    gossip_interval: Option<Duration>,
    topology: Option<String>,
    echo_functions: Option<Vec<String>>,
    #[serde(default)]
    membership: MembershipConfig,
    #[serde(default)]
    overlay: OverlayConfig,
    #[serde(default)]
    dissemination: DisseminationConfig,
    #[serde(default)]
    calls: CallConfig,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    connections: ConnectionConfig,
    #[serde(default)]
    leave: LeaveConfig,
    #[serde(default)]
    runtime: RuntimeSettings,
    #[serde(default)]
    tls: TlsSettings,
    #[serde(default)]
    federation: FederationFile,
}

fn some_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::deserialize(d).map(Some)
}

/// The `[federation]` section.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FederationFile {
    policy: Option<String>,
    allow: Option<Vec<String>>,
    export: Option<Vec<String>>,
    import: Option<Vec<String>>,
    bridges: Option<Vec<BridgeFile>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct BridgeFile {
    cluster: String,
    seeds: Vec<String>,
}

impl File {
    /// Checks what types alone do not: texts, lists, URLs, names. `key`
    /// says where a key came from in errors.
    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        for (k, v, empty) in [
            ("host", &self.host, false),
            ("name", &self.name, true),
            ("cluster_id", &self.cluster_id, false),
        ] {
            if let Some(v) = v {
                check_text(&key(k), v, empty)?;
            }
        }
        if let Some(r) = &self.resources {
            check_resources(&key("resources"), r)?;
        }
        for s in self.seeds.iter().flatten().chain(self.connect.iter()) {
            parse_seed(&key("seeds"), s)?;
        }
        if let Some(d) = self.gossip_interval {
            positive(&key("gossip_interval"), d)?;
        }
        if let Some(t) = &self.topology {
            Topology::parse(t).ok_or_else(|| invalid(key("topology"), t, TOPOLOGY_NAMES))?;
        }
        for f in self.echo_functions.iter().flatten() {
            check_text(&key("echo_functions"), f, false)?;
        }
        if let Some(e) = &self.runtime.executor {
            check_executor(&key("runtime.executor"), e)?;
        }
        for (k, p) in [
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.ca", &self.tls.ca),
        ] {
            if let Some(p) = p {
                check_path(&key(k), p)?;
            }
        }
        let f = &self.federation;
        if let Some(p) = &f.policy {
            PolicyKind::parse(p)
                .ok_or_else(|| invalid(key("federation.policy"), p, POLICY_NAMES))?;
        }
        for (k, list) in [
            ("allow", &f.allow),
            ("export", &f.export),
            ("import", &f.import),
        ] {
            if let Some(l) = list {
                check_names(&key(&format!("federation.{k}")), l)?;
            }
        }
        for b in f.bridges.iter().flatten() {
            check_text(&key("federation.bridges.cluster"), &b.cluster, false)?;
            if b.seeds.is_empty() {
                return Err(invalid(
                    key("federation.bridges.seeds"),
                    "[]",
                    "at least one seed URL in the remote cluster",
                ));
            }
            for s in &b.seeds {
                parse_seed(&key("federation.bridges.seeds"), s)?;
            }
        }
        Ok(())
    }

    /// The protocol's federation settings. When `policy` is unset but
    /// `allow` or bridges are given, the policy is `explicit`; under
    /// `explicit`, `allow` defaults to the bridges' clusters and
    /// `export`/`import` to every function (`*`).
    fn federation(&self) -> Result<FederationConfig, ConfigError> {
        let f = &self.federation;
        let bridges: Vec<BridgeConfig> = f
            .bridges
            .iter()
            .flatten()
            .map(|b| BridgeConfig {
                cluster: b.cluster.clone(),
                seeds: b.seeds.iter().map(|s| Addr::new(s.trim())).collect(),
            })
            .collect();
        let kind = f.policy.as_deref().and_then(PolicyKind::parse).unwrap_or(
            if f.allow.is_some() || !bridges.is_empty() {
                PolicyKind::Explicit
            } else {
                PolicyKind::Strict
            },
        );
        let policy = match kind {
            PolicyKind::Explicit => Policy::Explicit {
                allow: f.allow.clone().unwrap_or_else(|| {
                    let mut a: Vec<String> = bridges.iter().map(|b| b.cluster.clone()).collect();
                    a.sort();
                    a.dedup();
                    a
                }),
                export: f.export.clone().unwrap_or_else(|| vec!["*".into()]),
                import: f.import.clone().unwrap_or_else(|| vec!["*".into()]),
            },
            other => {
                for (key, set) in [
                    ("federation.allow", f.allow.is_some()),
                    ("federation.export", f.export.is_some()),
                    ("federation.import", f.import.is_some()),
                ] {
                    if set {
                        let name = if other == PolicyKind::Strict {
                            "strict"
                        } else {
                            "permissive"
                        };
                        return Err(invalid(
                            key,
                            format!("a list under policy {name}"),
                            "policy = \"explicit\" (the list applies only there)",
                        ));
                    }
                }
                if other == PolicyKind::Strict {
                    Policy::Strict
                } else {
                    Policy::Permissive
                }
            }
        };
        Ok(FederationConfig { policy, bridges })
    }
}

/// Parses a bridge given as `CLUSTER=URL[,URL…]` (the CLI's `--bridge`)
/// into the value of one `[[federation.bridges]]` entry.
pub fn parse_bridge(key: &str, s: &str) -> Result<BridgeConfig, ConfigError> {
    let expected = "CLUSTER=URL[,URL...], such as regional=ws://10.0.0.2:7000";
    let (cluster, urls) = s.split_once('=').ok_or_else(|| invalid(key, s, expected))?;
    let cluster = cluster.trim();
    check_text(key, cluster, false)?;
    let seeds = split_list(urls)
        .iter()
        .map(|u| parse_seed(key, u))
        .collect::<Result<Vec<_>, _>>()?;
    if seeds.is_empty() {
        return Err(invalid(key, s, expected));
    }
    Ok(BridgeConfig {
        cluster: cluster.to_string(),
        seeds,
    })
}

/// Checks a list of cluster ids or function name patterns.
pub fn check_names(key: &str, list: &[String]) -> Result<(), ConfigError> {
    if list.len() > 1024 {
        return Err(invalid(key, list.join(","), "at most 1024 entries"));
    }
    for v in list {
        check_text(key, v, false)?;
    }
    Ok(())
}

/// Checks a seed URL (`ws://host:port[/path]`; another transport's scheme,
/// such as `quic://`, is accepted here and checked against the transport
/// when the node starts).
pub fn parse_seed(key: &str, s: &str) -> Result<Addr, ConfigError> {
    let a = Addr::new(s.trim());
    match a.url() {
        Some(_) => Ok(a),
        None => Err(invalid(key, s, "a URL such as ws://host:port")),
    }
}

fn check_resources(key: &str, list: &[String]) -> Result<(), ConfigError> {
    if list.len() > 64 {
        return Err(invalid(key, list.join(","), "at most 64 resource tags"));
    }
    if list.iter().any(|r| r.is_empty() || r.len() > 255) {
        return Err(invalid(
            key,
            list.join(","),
            "resource tags of 1 to 255 bytes, comma-separated",
        ));
    }
    Ok(())
}

fn check_text(key: &str, v: &str, allow_empty: bool) -> Result<(), ConfigError> {
    if (!allow_empty && v.is_empty()) || v.len() > 255 {
        let expected = if allow_empty {
            "at most 255 bytes"
        } else {
            "1 to 255 bytes"
        };
        return Err(invalid(key, v, expected));
    }
    Ok(())
}

fn check_path(key: &str, p: &Path) -> Result<(), ConfigError> {
    if p.as_os_str().is_empty() {
        return Err(invalid(key, "", "a file path"));
    }
    Ok(())
}

fn positive(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(invalid(key, "0", "a positive duration"));
    }
    Ok(d)
}

fn split_list(v: &str) -> Vec<String> {
    if v.trim().is_empty() {
        return Vec::new();
    }
    v.split(',').map(|s| s.trim().to_string()).collect()
}

/// One layer of settings — a template, a file, the environment, flags —
/// as a TOML table whose values are checked when the layer is made.
/// [`over`](Layer::over) merges two, key by key.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Layer {
    table: Table,
}

impl Layer {
    /// Parses a TOML document; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Layer, ConfigError> {
        let parse = |message: String| ConfigError::Parse {
            path: origin.to_string(),
            message: message.trim().replace('\n', " "),
        };
        let mut table: Table = toml::from_str(text).map_err(|e| parse(e.to_string()))?;
        // `runtime = "async-std"` names the executor alone.
        if let Some(Value::String(e)) = table.get("runtime") {
            let executor = Table::from_iter([("executor".to_string(), Value::String(e.clone()))]);
            table.insert("runtime".into(), Value::Table(executor));
        }
        let file: File = table
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| parse(e.to_string()))?;
        file.check(&|k| format!("{k} in {origin}"))?;
        // The guide's `connect` is one more seed of this layer.
        if let Some(Value::String(c)) = table.remove("connect") {
            match table.get_mut("seeds") {
                Some(Value::Array(seeds)) => seeds.push(Value::String(c)),
                _ => {
                    table.insert("seeds".into(), Value::Array(vec![Value::String(c)]));
                }
            }
        }
        Ok(Layer { table })
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        Layer::from_toml(&text, &path.display().to_string())
    }

    /// Reads the `MPREG_*` environment variables through `get` (pass
    /// `|k| std::env::var(k).ok()` for the process environment). Unset or
    /// empty variables are ignored.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        let mut l = Layer::default();
        if let Some(v) = var("MPREG_HOST") {
            check_text("MPREG_HOST", v.trim(), false)?;
            l.set("host", v.trim());
        }
        if let Some(v) = var("MPREG_PORT") {
            let p: u16 = v
                .trim()
                .parse()
                .map_err(|_| invalid("MPREG_PORT", &v, "a port number from 0 to 65535"))?;
            l.set("port", i64::from(p));
        }
        if let Some(v) = var("MPREG_NAME") {
            check_text("MPREG_NAME", &v, true)?;
            l.set("name", v);
        }
        if let Some(v) = var("MPREG_CLUSTER_ID") {
            check_text("MPREG_CLUSTER_ID", &v, false)?;
            l.set("cluster_id", v);
        }
        if let Some(v) = var("MPREG_SEEDS") {
            let seeds = split_list(&v);
            for s in &seeds {
                parse_seed("MPREG_SEEDS", s)?;
            }
            l.set("seeds", seeds);
        }
        if let Some(v) = var("MPREG_RESOURCES") {
            let list = split_list(&v);
            check_resources("MPREG_RESOURCES", &list)?;
            l.set("resources", list);
        }
        if let Some(v) = var("MPREG_GOSSIP_INTERVAL") {
            parse_duration(&v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    invalid(
                        "MPREG_GOSSIP_INTERVAL",
                        &v,
                        "a positive duration such as 0.5 or 500ms",
                    )
                })?;
            l.set("gossip_interval", v);
        }
        if let Some(v) = var("MPREG_TOPOLOGY") {
            Topology::parse(&v).ok_or_else(|| invalid("MPREG_TOPOLOGY", &v, TOPOLOGY_NAMES))?;
            l.set("topology", v);
        }
        if let Some(v) = var("MPREG_RUNTIME") {
            check_executor("MPREG_RUNTIME", v.trim())?;
            l.set("runtime.executor", v.trim());
        }
        for (name, key) in [
            ("MPREG_TLS_CERT", "tls.cert"),
            ("MPREG_TLS_KEY", "tls.key"),
            ("MPREG_TLS_CA", "tls.ca"),
        ] {
            if let Some(v) = var(name) {
                l.set(key, v);
            }
        }
        Ok(l)
    }

    /// Sets a key (dotted for a section: `"membership.probe_period"`) to a
    /// value already checked by the caller. [`Settings::from_layer`] still
    /// type-checks it.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Layer {
        let mut t = &mut self.table;
        let mut parts = key.split('.').peekable();
        while let Some(k) = parts.next() {
            if parts.peek().is_none() {
                t.insert(k.to_string(), value.into());
                break;
            }
            let entry = t
                .entry(k.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            let Value::Table(next) = entry else {
                unreachable!("made a table above")
            };
            t = next;
        }
        self
    }

    /// Sets `[[federation.bridges]]`.
    pub fn set_bridges(&mut self, bridges: &[BridgeConfig]) -> &mut Layer {
        let list: Vec<Value> = bridges
            .iter()
            .map(|b| {
                let mut t = Table::new();
                t.insert("cluster".into(), b.cluster.as_str().into());
                let seeds: Vec<&str> = b.seeds.iter().map(Addr::as_str).collect();
                t.insert("seeds".into(), seeds.into());
                Value::Table(t)
            })
            .collect();
        self.set("federation.bridges", list)
    }

    /// Whether a key (dotted) is set in this layer.
    fn has(&self, key: &str) -> bool {
        let mut v: Option<&Value> = None;
        let mut t = Some(&self.table);
        for k in key.split('.') {
            v = t.and_then(|t| t.get(k));
            t = v.and_then(Value::as_table);
        }
        v.is_some()
    }

    /// This layer with `top`'s values overriding, key by key (sections
    /// merge; any other value, lists included, is replaced).
    pub fn over(mut self, top: Layer) -> Layer {
        fn merge(base: &mut Table, top: Table) {
            for (k, v) in top {
                match (base.get_mut(&k), v) {
                    (Some(Value::Table(b)), Value::Table(t)) => merge(b, t),
                    (_, v) => {
                        base.insert(k, v);
                    }
                }
            }
        }
        merge(&mut self.table, top.table);
        self
    }
}

/// Everything a node needs to start.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Interface to listen on. Default `127.0.0.1`.
    pub host: String,
    /// Port to listen on; 0 picks a free one. Default 7000.
    pub port: u16,
    /// Host (or `host:port`) to advertise in this node's URL when it
    /// differs from `host` (e.g. when listening on `0.0.0.0`).
    pub advertise: Option<String>,
    /// Human-readable name, replicated with the member record. Default:
    /// `node-PORT`.
    pub name: String,
    /// The cluster. Default `default`.
    pub cluster_id: String,
    /// Resource tags of this node: every function the node registers
    /// through the CLI or config (and the built-ins) carries them.
    pub resources: Vec<String>,
    /// Seed URLs to join through.
    pub seeds: Vec<Addr>,
    /// The template the values started from, if any.
    pub topology: Option<Topology>,
    /// Names under which to register an idempotent echo function.
    pub echo_functions: Vec<String>,
    /// The protocol configuration (`gossip_interval` is
    /// `membership.probe_period`).
    pub protocol: Config,
    /// Runtime knobs.
    pub runtime: RuntimeSettings,
    /// Certificates of the TLS transports (`wss://`, `quic://`).
    pub tls: TlsSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: "127.0.0.1".into(),
            port: 7000,
            advertise: None,
            name: String::new(),
            cluster_id: "default".into(),
            resources: Vec::new(),
            seeds: Vec::new(),
            topology: None,
            echo_functions: Vec::new(),
            protocol: Config::default(),
            runtime: RuntimeSettings::default(),
            tls: TlsSettings::default(),
        }
    }
}

impl Settings {
    /// Settings for a node on `127.0.0.1` with a free port, defaults
    /// otherwise: handy for tests and examples.
    pub fn local() -> Settings {
        Settings {
            port: 0,
            ..Settings::default()
        }
    }

    /// Resolves layers, lowest first: the template named by the merged
    /// `topology` goes below all of them, then the defaults fill the rest.
    pub fn resolve(layers: impl IntoIterator<Item = Layer>) -> Result<Settings, ConfigError> {
        let merged = layers
            .into_iter()
            .fold(Layer::default(), |acc, l| acc.over(l));
        let topology = merged
            .table
            .get("topology")
            .and_then(Value::as_str)
            .and_then(Topology::parse);
        let base = match topology {
            Some(t) => Layer::from_toml(t.template(), &format!("template {}", t.name()))?,
            None => Layer::default(),
        };
        Settings::from_layer(base.over(merged))
    }

    /// Reads the config file (if any), the process environment and the
    /// flags layer, in that order.
    pub fn load(file: Option<&Path>, flags: Layer) -> Result<Settings, ConfigError> {
        let file = match file {
            Some(p) => Layer::from_file(p)?,
            None => Layer::default(),
        };
        let env = Layer::from_env(|k| std::env::var(k).ok())?;
        Settings::resolve([file, env, flags])
    }

    /// Applies one layer over the defaults and validates the result.
    pub fn from_layer(l: Layer) -> Result<Settings, ConfigError> {
        let f: File =
            l.table
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: "settings".into(),
                    message: e.to_string().trim().replace('\n', " "),
                })?;
        f.check(&|k| k.to_string())?;
        let d = Settings::default();
        let mut protocol = Config {
            membership: f.membership.clone(),
            overlay: f.overlay.clone(),
            dissemination: f.dissemination.clone(),
            calls: f.calls.clone(),
            limits: f.limits.clone(),
            connections: f.connections.clone(),
            leave: f.leave.clone(),
            federation: f.federation()?,
            ..Config::default()
        };
        let m = &mut protocol.membership;
        if let Some(p) = f.gossip_interval {
            m.probe_period = p;
        }
        // A shorter protocol period shortens the probe timeouts with it
        // unless they were set explicitly (they may not exceed it).
        if f.gossip_interval.is_some() || l.has("membership.probe_period") {
            if !l.has("membership.probe_timeout_max") {
                m.probe_timeout_max = m.probe_timeout_max.min(m.probe_period);
            }
            if !l.has("membership.probe_timeout_min") {
                m.probe_timeout_min = m.probe_timeout_min.min(m.probe_timeout_max);
            }
        }
        let s = Settings {
            host: f.host.unwrap_or(d.host),
            port: f.port.unwrap_or(d.port),
            advertise: f.advertise,
            name: f.name.unwrap_or_default(),
            cluster_id: f.cluster_id.unwrap_or(d.cluster_id),
            resources: f.resources.unwrap_or_default(),
            seeds: f
                .seeds
                .iter()
                .flatten()
                .map(|s| Addr::new(s.trim()))
                .collect(),
            topology: f.topology.as_deref().and_then(Topology::parse),
            echo_functions: f.echo_functions.unwrap_or_default(),
            protocol,
            runtime: f.runtime,
            tls: f.tls,
        };
        let mut s = s;
        s.protocol.cluster_id = s.cluster_id.clone();
        s.protocol.name = s.name.clone();
        s.validate()?;
        Ok(s)
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_text("host", &self.host, false)?;
        check_text("name", &self.name, true)?;
        check_text("cluster_id", &self.cluster_id, false)?;
        check_resources("resources", &self.resources)?;
        for s in &self.seeds {
            parse_seed("seeds", s.as_str())?;
        }
        for b in &self.protocol.federation.bridges {
            check_text("federation.bridges.cluster", &b.cluster, false)?;
            for s in &b.seeds {
                parse_seed("federation.bridges.seeds", s.as_str())?;
            }
        }
        for f in &self.echo_functions {
            check_text("echo_functions", f, false)?;
        }
        if let Some(e) = &self.runtime.executor {
            check_executor("runtime.executor", e)?;
        }
        let mut protocol = self.protocol.clone();
        protocol.cluster_id = self.cluster_id.clone();
        protocol.name = self.name.clone();
        protocol.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn protocol_sections_are_the_cores_types_read_as_they_are() {
        let l = Layer::from_toml(
            "[connections]\nidle_timeout = \"3s\"\nmax_connections = 7\n\
             [leave]\ngrace = 1.5\n[limits]\nmax_members = 9\n[runtime]\nqueue_call_bytes = 1024",
            "a.toml",
        )
        .unwrap();
        let s = Settings::resolve([l]).unwrap();
        let p = &s.protocol;
        assert_eq!(p.connections.idle_timeout, Duration::from_secs(3));
        assert_eq!(p.connections.max_connections, 7);
        assert_eq!(p.leave.grace, Duration::from_millis(1500));
        assert_eq!(p.limits.max_members, 9);
        assert_eq!(s.runtime.queue_call_bytes, 1024);
        // Everything else keeps the core's defaults.
        assert_eq!(p.membership, mpreg_proto::MembershipConfig::default());
        assert_eq!(p.connections.backoff_max, Duration::from_secs(2));
        let e = Layer::from_toml("[connections]\nidle = 1", "a.toml").unwrap_err();
        assert!(e.to_string().contains("idle"), "{e}");
    }

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        for bad in ["", "fast", "-1", "1x", "NaN", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layers_override_in_order_and_templates_sit_below() {
        let file = Layer::from_toml(
            "port = 1\nname = \"file\"\ntopology = \"edge-computing\"\n[membership]\nsuspicion_per_decade = \"2s\"\n",
            "f.toml",
        )
        .unwrap();
        let env = Layer::from_env(env(&[("MPREG_PORT", "2"), ("MPREG_NAME", "env")])).unwrap();
        let mut flags = Layer::default();
        flags.set("name", "flag");
        let s = Settings::resolve([file, env, flags]).unwrap();
        assert_eq!((s.port, s.name.as_str()), (2, "flag"));
        assert_eq!(s.topology, Some(Topology::EdgeComputing));
        // From the template:
        assert_eq!(
            s.protocol.membership.probe_period,
            Duration::from_millis(300)
        );
        // The file beats the template:
        assert_eq!(
            s.protocol.membership.suspicion_per_decade,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn every_template_resolves() {
        for t in Topology::ALL {
            let mut l = Layer::default();
            l.set("topology", t.name());
            let s = Settings::resolve([l]).unwrap_or_else(|e| panic!("{}: {e}", t.name()));
            assert_eq!(Topology::parse(t.name()), Some(t));
            assert_eq!(s.topology, Some(t));
        }
        assert_eq!(Topology::parse("hierarchical"), Some(Topology::Enterprise));
        assert_eq!(
            Topology::parse("cross_datacenter"),
            Some(Topology::GlobalDeployment)
        );
    }

    #[test]
    fn a_short_gossip_interval_shortens_probe_timeouts() {
        let l = Layer::from_env(env(&[("MPREG_GOSSIP_INTERVAL", "0.2")])).unwrap();
        let s = Settings::resolve([l]).unwrap();
        let m = &s.protocol.membership;
        assert_eq!(m.probe_period, Duration::from_millis(200));
        assert!(m.probe_timeout_max <= m.probe_period);
        assert!(m.probe_timeout_min <= m.probe_timeout_max);
    }

    #[test]
    fn bad_values_name_their_key_and_value() {
        let cases = [
            ("MPREG_PORT", "http"),
            ("MPREG_PORT", "70000"),
            ("MPREG_HOST", " "),
            ("MPREG_CLUSTER_ID", &"x".repeat(300)),
            ("MPREG_NAME", &"n".repeat(300)),
            ("MPREG_SEEDS", "127.0.0.1:7000"),
            ("MPREG_SEEDS", "ws://host"),
            ("MPREG_RESOURCES", "gpu,,cpu"),
            ("MPREG_GOSSIP_INTERVAL", "fast"),
            ("MPREG_GOSSIP_INTERVAL", "0"),
            ("MPREG_TOPOLOGY", "ring"),
            ("MPREG_RUNTIME", "smol"),
        ];
        for (k, v) in cases {
            let e = Layer::from_env(env(&[(k, v)])).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(k), "{msg}");
            assert!(msg.contains(v.trim()), "{msg}");
        }
        let e = Layer::from_toml("port = \"x\"", "a.toml").unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
        let e = Layer::from_toml("prot = 1", "a.toml").unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
        let e = Layer::from_toml("[membership]\nprobe_period = \"soon\"", "a.toml").unwrap_err();
        assert!(e.to_string().contains("membership.probe_period"), "{e}");
        let e = Settings::resolve([Layer::from_toml(
            "[membership]\nprobe_timeout_max = \"5s\"",
            "a.toml",
        )
        .unwrap()])
        .unwrap_err();
        assert!(e.to_string().contains("probe_timeout_max"), "{e}");
    }

    #[test]
    fn the_executor_comes_from_toml_either_way_the_environment_or_a_flag() {
        let executor = |layers: Vec<Layer>| Settings::resolve(layers).unwrap().runtime.executor;
        assert_eq!(executor(vec![]), None);
        let short = Layer::from_toml("runtime = \"async-std\"", "a.toml").unwrap();
        assert_eq!(executor(vec![short.clone()]), Some("async-std".into()));
        let long = Layer::from_toml(
            "[runtime]\nexecutor = \"tokio\"\nqueue_call_bytes = 9",
            "b.toml",
        )
        .unwrap();
        assert_eq!(executor(vec![short.clone(), long]), Some("tokio".into()));
        let env = Layer::from_env(env(&[("MPREG_RUNTIME", "tokio")])).unwrap();
        assert_eq!(executor(vec![short.clone(), env]), Some("tokio".into()));
        let mut flag = Layer::default();
        flag.set("runtime.executor", "async-std");
        assert_eq!(executor(vec![flag]), Some("async-std".into()));
        for bad in ["runtime = \"smol\"", "[runtime]\nexecutor = \"smol\""] {
            let e = Layer::from_toml(bad, "c.toml").unwrap_err().to_string();
            assert!(e.contains("runtime.executor") && e.contains("smol"), "{e}");
        }
    }

    #[test]
    fn tls_paths_come_from_toml_the_environment_or_a_flag() {
        let tls = |layers: Vec<Layer>| Settings::resolve(layers).unwrap().tls;
        assert_eq!(tls(vec![]), TlsSettings::default());
        let file = Layer::from_toml(
            "[tls]\ncert = \"n.pem\"\nkey = \"n.key\"\nca = \"ca.pem\"",
            "a.toml",
        )
        .unwrap();
        let env = Layer::from_env(env(&[("MPREG_TLS_CA", "env-ca.pem")])).unwrap();
        let mut flag = Layer::default();
        flag.set("tls.cert", "flag.pem");
        let t = tls(vec![file, env, flag]);
        assert_eq!(t.cert, Some(PathBuf::from("flag.pem")));
        assert_eq!(t.key, Some(PathBuf::from("n.key")));
        assert_eq!(t.ca, Some(PathBuf::from("env-ca.pem")));
        let e = Layer::from_toml("[tls]\ncrt = \"x\"", "a.toml").unwrap_err();
        assert!(e.to_string().contains("crt"), "{e}");
        let e = Layer::from_toml("[tls]\nca = \"\"", "a.toml").unwrap_err();
        assert!(e.to_string().contains("tls.ca"), "{e}");
    }

    #[test]
    fn federation_reads_policies_lists_and_bridges() {
        let l = Layer::from_toml(
            "cluster_id = \"A\"\n[federation]\nimport = [\"embed*\"]\n\
             [[federation.bridges]]\ncluster = \"B\"\nseeds = [\"ws://10.0.0.2:7000\"]\n\
             [[federation.bridges]]\ncluster = \"C\"\nseeds = [\"ws://10.0.0.3:7000\"]",
            "f.toml",
        )
        .unwrap();
        let s = Settings::resolve([l]).unwrap();
        let f = &s.protocol.federation;
        // Bridges without a policy: explicit, allowing exactly their
        // clusters, exporting everything, importing what was asked.
        assert_eq!(
            f.policy,
            Policy::Explicit {
                allow: vec!["B".into(), "C".into()],
                export: vec!["*".into()],
                import: vec!["embed*".into()],
            }
        );
        assert_eq!(f.bridges.len(), 2);
        assert_eq!(f.bridges[1].seeds[0].as_str(), "ws://10.0.0.3:7000");

        let mut flags = Layer::default();
        flags.set("federation.policy", "permissive");
        let mut with_import = flags.clone();
        with_import.set("federation.import", Vec::<String>::new());
        let plain = Settings::resolve([with_import]).unwrap_err();
        assert!(plain.to_string().contains("federation.import"), "{plain}");
        let s = Settings::resolve([flags]).unwrap();
        assert_eq!(s.protocol.federation.policy, Policy::Permissive);
        assert_eq!(
            Settings::resolve([]).unwrap().protocol.federation.policy,
            Policy::Strict
        );

        let b = parse_bridge("--bridge", "B=ws://h:1, ws://h:2").unwrap();
        assert_eq!((b.cluster.as_str(), b.seeds.len()), ("B", 2));
        for bad in ["B", "=ws://h:1", "B=", "B=h:1"] {
            assert!(parse_bridge("--bridge", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_federation_values_name_their_key() {
        let cases = [
            ("[federation]\npolicy = \"open\"", "federation.policy"),
            ("[federation]\nallow = [\"\"]", "federation.allow"),
            (
                "[federation]\nbridges = [{ cluster = \"B\", seeds = [] }]",
                "federation.bridges.seeds",
            ),
            (
                "[federation]\nbridges = [{ cluster = \"B\", seeds = [\"B:1\"] }]",
                "federation.bridges.seeds",
            ),
            ("[federation]\nbridge = []", "bridge"),
        ];
        for (toml, key) in cases {
            let e = Layer::from_toml(toml, "a.toml").unwrap_err();
            assert!(e.to_string().contains(key), "{toml}: {e}");
        }
        // Policy and bridges that contradict each other fail at resolve.
        let cases = [
            (
                "cluster_id = \"A\"\n[federation]\npolicy = \"strict\"\nbridges = [{ cluster = \"B\", seeds = [\"ws://h:1\"] }]",
                "federation.policy",
            ),
            (
                "cluster_id = \"A\"\n[federation]\nallow = [\"C\"]\nbridges = [{ cluster = \"B\", seeds = [\"ws://h:1\"] }]",
                "federation.bridges.cluster",
            ),
            (
                "cluster_id = \"A\"\n[federation]\nbridges = [{ cluster = \"A\", seeds = [\"ws://h:1\"] }]",
                "federation.bridges.cluster",
            ),
        ];
        for (toml, key) in cases {
            let l = Layer::from_toml(toml, "a.toml").unwrap();
            let e = Settings::resolve([l]).unwrap_err();
            assert!(e.to_string().contains(key), "{toml}: {e}");
        }
    }
}
