//! One configuration type, [`Settings`], read in layers: a named topology
//! template, then a TOML file, then the environment, then command-line
//! flags — each later layer overrides the earlier ones.
//!
//! ```
//! use mpreg_tokio::config::{Layer, Settings};
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
//! Federation with other clusters is the `[federation]` section (see
//! [`FederationLayer`]); without it nothing crosses clusters:
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
//! Durations are written as seconds (`0.5`, `"2"`) or with a unit
//! (`"500ms"`, `"2s"`, `"1m"`, `"1h"`, `"250us"`). Every invalid value is a
//! [`ConfigError`] naming the key (or environment variable) and the value.

use mpreg_proto::{Addr, BridgeConfig, Config, FederationConfig, Policy};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// Environment variables read by [`Layer::from_env`].
pub const ENV_VARS: [&str; 8] = [
    "MPREG_HOST",
    "MPREG_PORT",
    "MPREG_NAME",
    "MPREG_CLUSTER_ID",
    "MPREG_SEEDS",
    "MPREG_RESOURCES",
    "MPREG_GOSSIP_INTERVAL",
    "MPREG_TOPOLOGY",
];

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
    /// names the key and line).
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

/// Parses `0.5`, `2`, `500ms`, `2s`, `1.5m`, `1h`, `250us`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix("us").or_else(|| t.strip_suffix("µs")) {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| "expected seconds (0.5) or a duration with a unit (500ms, 2s, 1m)")?;
    let secs = v * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err("expected a non-negative duration".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn duration_value(key: &str, v: &str) -> Result<Duration, ConfigError> {
    parse_duration(v).map_err(|e| invalid(key, v, &e))
}

/// A duration as written in TOML: a number of seconds or a string.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum RawDur {
    Secs(f64),
    Text(String),
}

impl RawDur {
    fn resolve(&self, key: &str) -> Result<Duration, ConfigError> {
        match self {
            RawDur::Secs(s) => duration_value(key, &s.to_string()),
            RawDur::Text(t) => duration_value(key, t),
        }
    }
}

/// Declares a TOML section: its raw (as written) and typed forms, how the
/// raw form resolves (naming keys in errors), how layers merge and how the
/// values apply to their target.
macro_rules! section {
    ($raw:ident, $typed:ident, $prefix:literal, $target:ty,
     dur: [$($d:ident),* $(,)?], num: [$($n:ident : $t:ty),* $(,)?]) => {
        #[derive(Deserialize, Debug, Default, Clone)]
        #[serde(deny_unknown_fields)]
        struct $raw {
            $( $d: Option<RawDur>, )*
            $( $n: Option<$t>, )*
        }

        #[doc = concat!("The `[", $prefix, "]` section of a [`Layer`].")]
        #[derive(Debug, Default, Clone, PartialEq)]
        #[allow(missing_docs)]
        pub struct $typed {
            $( pub $d: Option<Duration>, )*
            $( pub $n: Option<$t>, )*
        }

        impl $raw {
            fn resolve(&self, origin: &str) -> Result<$typed, ConfigError> {
                let _ = origin;
                Ok($typed {
                    $( $d: match &self.$d {
                        Some(v) => Some(v.resolve(&format!(
                            "{}.{} in {}", $prefix, stringify!($d), origin))?),
                        None => None,
                    }, )*
                    $( $n: self.$n, )*
                })
            }
        }

        impl $typed {
            fn over(self, top: $typed) -> $typed {
                $typed {
                    $( $d: top.$d.or(self.$d), )*
                    $( $n: top.$n.or(self.$n), )*
                }
            }

            fn apply(&self, t: &mut $target) {
                $( if let Some(v) = self.$d { t.$d = v; } )*
                $( if let Some(v) = self.$n { t.$n = v; } )*
            }
        }
    };
}

section!(RawMembership, MembershipLayer, "membership", mpreg_proto::MembershipConfig,
    dur: [probe_period, probe_timeout_min, probe_timeout_max, indirect_timeout,
          suspicion_per_decade, dissemination_allowance, reconnect_window,
          join_retry_interval, seed_redial_interval],
    num: [indirect_probes: usize, suspicion_confirmations: u32, suspicion_speedup: u32,
          max_local_health: u32]);

section!(RawOverlay, OverlayLayer, "overlay", mpreg_proto::OverlayConfig,
    dur: [shuffle_period],
    num: [active_view_extra: usize, active_view_min: usize, active_view_max: usize,
          active_view_slack: usize, passive_view_size: usize, shuffle_size: usize]);

section!(RawDissemination, DisseminationLayer, "dissemination", mpreg_proto::DisseminationConfig,
    dur: [graft_timeout, sync_interval],
    num: [sync_page_bytes: usize, sync_pages_per_exchange: usize]);

section!(RawCalls, CallsLayer, "calls", mpreg_proto::CallConfig,
    dur: [default_timeout, max_timeout, resend_backoff],
    num: [hop_budget: u8]);

section!(RawLimits, LimitsLayer, "limits", mpreg_proto::Limits,
    dur: [],
    num: [max_frame_size: usize, max_members: usize, max_functions_per_node: usize,
          max_catalog_entries: usize, max_pending_calls: usize, max_invocations: usize,
          max_dedup_entries: usize, max_dedup_bytes: usize, peer_frames_per_sec: u32,
          peer_frame_burst: u32]);

section!(RawConnections, ConnectionsLayer, "connections", mpreg_proto::ConnectionConfig,
    dur: [idle_timeout, client_idle_timeout, dial_timeout, close_timeout, backoff_min,
          backoff_max],
    num: [max_connections: usize, max_held_bytes: usize]);

section!(RawLeave, LeaveLayer, "leave", mpreg_proto::LeaveConfig,
    dur: [grace, flush_timeout],
    num: []);

section!(RawRuntime, RuntimeLayer, "runtime", RuntimeSettings,
    dur: [],
    num: [queue_control_bytes: usize, queue_broadcast_bytes: usize, queue_call_bytes: usize]);

/// What only the runtime decides: how much a connection may queue. Every
/// rule of the protocol, connections and leave included, is the core's
/// ([`Config`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeSettings {
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

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    host: Option<String>,
    port: Option<u16>,
    advertise: Option<String>,
    name: Option<String>,
    cluster_id: Option<String>,
    resources: Option<Vec<String>>,
    seeds: Option<Vec<String>>,
    /// The guide's `connect`: one more seed.
    connect: Option<String>,
    gossip_interval: Option<RawDur>,
    topology: Option<String>,
    echo_functions: Option<Vec<String>>,
    membership: Option<RawMembership>,
    overlay: Option<RawOverlay>,
    dissemination: Option<RawDissemination>,
    calls: Option<RawCalls>,
    limits: Option<RawLimits>,
    connections: Option<RawConnections>,
    leave: Option<RawLeave>,
    runtime: Option<RawRuntime>,
    federation: Option<RawFederation>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    policy: Option<String>,
    allow: Option<Vec<String>>,
    export: Option<Vec<String>>,
    import: Option<Vec<String>>,
    bridges: Option<Vec<RawBridge>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawBridge {
    cluster: String,
    seeds: Vec<String>,
}

impl RawFederation {
    fn resolve(self, origin: &str) -> Result<FederationLayer, ConfigError> {
        let key = |k: &str| format!("federation.{k} in {origin}");
        let policy = match &self.policy {
            Some(p) => {
                Some(PolicyKind::parse(p).ok_or_else(|| invalid(key("policy"), p, POLICY_NAMES))?)
            }
            None => None,
        };
        for (k, list) in [
            ("allow", &self.allow),
            ("export", &self.export),
            ("import", &self.import),
        ] {
            if let Some(l) = list {
                check_names(&key(k), l)?;
            }
        }
        let bridges = match self.bridges {
            Some(raw) => {
                let mut out = Vec::with_capacity(raw.len());
                for b in raw {
                    check_text(&key("bridges.cluster"), &b.cluster, false)?;
                    let seeds = b
                        .seeds
                        .iter()
                        .map(|u| parse_seed(&key("bridges.seeds"), u))
                        .collect::<Result<Vec<_>, _>>()?;
                    if seeds.is_empty() {
                        return Err(invalid(
                            key("bridges.seeds"),
                            "[]",
                            "at least one seed URL in the remote cluster",
                        ));
                    }
                    out.push(BridgeConfig {
                        cluster: b.cluster,
                        seeds,
                    });
                }
                Some(out)
            }
            None => None,
        };
        Ok(FederationLayer {
            policy,
            allow: self.allow,
            export: self.export,
            import: self.import,
            bridges,
        })
    }
}

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

/// The `[federation]` section of a [`Layer`]: bridges to other clusters
/// and what may cross them.
///
/// When `policy` is unset but `allow` or `bridges` are given, the policy is
/// `explicit`. Under `explicit`, `allow` defaults to the bridges' clusters
/// and `export`/`import` to every function (`*`).
#[derive(Debug, Default, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct FederationLayer {
    pub policy: Option<PolicyKind>,
    pub allow: Option<Vec<String>>,
    pub export: Option<Vec<String>>,
    pub import: Option<Vec<String>>,
    pub bridges: Option<Vec<BridgeConfig>>,
}

impl FederationLayer {
    fn over(self, top: FederationLayer) -> FederationLayer {
        FederationLayer {
            policy: top.policy.or(self.policy),
            allow: top.allow.or(self.allow),
            export: top.export.or(self.export),
            import: top.import.or(self.import),
            bridges: top.bridges.or(self.bridges),
        }
    }

    /// The protocol's federation settings.
    fn resolve(&self) -> Result<FederationConfig, ConfigError> {
        let bridges = self.bridges.clone().unwrap_or_default();
        let kind = self
            .policy
            .unwrap_or(if self.allow.is_some() || !bridges.is_empty() {
                PolicyKind::Explicit
            } else {
                PolicyKind::Strict
            });
        let policy = match kind {
            PolicyKind::Explicit => Policy::Explicit {
                allow: self.allow.clone().unwrap_or_else(|| {
                    let mut a: Vec<String> = bridges.iter().map(|b| b.cluster.clone()).collect();
                    a.sort();
                    a.dedup();
                    a
                }),
                export: self.export.clone().unwrap_or_else(|| vec!["*".into()]),
                import: self.import.clone().unwrap_or_else(|| vec!["*".into()]),
            },
            other => {
                for (key, set) in [
                    ("federation.allow", self.allow.is_some()),
                    ("federation.export", self.export.is_some()),
                    ("federation.import", self.import.is_some()),
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

/// Parses a bridge given as `CLUSTER=URL[,URL…]` (the CLI's `--bridge`).
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

/// One layer of settings: every value optional, already checked and typed.
#[derive(Debug, Default, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct Layer {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub advertise: Option<String>,
    pub name: Option<String>,
    pub cluster_id: Option<String>,
    pub resources: Option<Vec<String>>,
    pub seeds: Option<Vec<Addr>>,
    pub gossip_interval: Option<Duration>,
    pub topology: Option<Topology>,
    pub echo_functions: Option<Vec<String>>,
    pub membership: MembershipLayer,
    pub overlay: OverlayLayer,
    pub dissemination: DisseminationLayer,
    pub calls: CallsLayer,
    pub limits: LimitsLayer,
    pub connections: ConnectionsLayer,
    pub leave: LeaveLayer,
    pub runtime: RuntimeLayer,
    pub federation: FederationLayer,
}

/// Checks a seed URL (`ws://host:port[/path]`; another transport's scheme,
/// such as `quic://`, is accepted here and checked against the transport
/// when the node starts).
pub fn parse_seed(key: &str, s: &str) -> Result<Addr, ConfigError> {
    let t = s.trim();
    let expected = "a URL such as ws://host:port";
    let (scheme, rest) = t
        .split_once("://")
        .ok_or_else(|| invalid(key, s, expected))?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
        && scheme
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
    let auth = rest.split('/').next().unwrap_or_default();
    let (host, port) = auth
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, s, expected))?;
    if !scheme_ok || host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(invalid(key, s, expected));
    }
    Ok(Addr::new(t))
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

fn split_list(v: &str) -> Vec<String> {
    if v.trim().is_empty() {
        return Vec::new();
    }
    v.split(',').map(|s| s.trim().to_string()).collect()
}

impl Layer {
    /// Parses a TOML document; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Layer, ConfigError> {
        let raw: RawLayer = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let key = |k: &str| format!("{k} in {origin}");
        let mut seeds = Vec::new();
        for s in raw.seeds.iter().flatten().chain(raw.connect.iter()) {
            seeds.push(parse_seed(&key("seeds"), s)?);
        }
        if let Some(r) = &raw.resources {
            check_resources(&key("resources"), r)?;
        }
        if let Some(h) = &raw.host {
            check_text(&key("host"), h, false)?;
        }
        if let Some(n) = &raw.name {
            check_text(&key("name"), n, true)?;
        }
        if let Some(c) = &raw.cluster_id {
            check_text(&key("cluster_id"), c, false)?;
        }
        let gossip_interval = match &raw.gossip_interval {
            Some(d) => Some(positive(
                &key("gossip_interval"),
                d.resolve(&key("gossip_interval"))?,
            )?),
            None => None,
        };
        let topology = match &raw.topology {
            Some(t) => Some(
                Topology::parse(t).ok_or_else(|| invalid(key("topology"), t, TOPOLOGY_NAMES))?,
            ),
            None => None,
        };
        Ok(Layer {
            host: raw.host,
            port: raw.port,
            advertise: raw.advertise,
            name: raw.name,
            cluster_id: raw.cluster_id,
            resources: raw.resources,
            seeds: (raw.seeds.is_some() || raw.connect.is_some()).then_some(seeds),
            gossip_interval,
            topology,
            echo_functions: raw.echo_functions,
            membership: raw.membership.unwrap_or_default().resolve(origin)?,
            overlay: raw.overlay.unwrap_or_default().resolve(origin)?,
            dissemination: raw.dissemination.unwrap_or_default().resolve(origin)?,
            calls: raw.calls.unwrap_or_default().resolve(origin)?,
            limits: raw.limits.unwrap_or_default().resolve(origin)?,
            connections: raw.connections.unwrap_or_default().resolve(origin)?,
            leave: raw.leave.unwrap_or_default().resolve(origin)?,
            runtime: raw.runtime.unwrap_or_default().resolve(origin)?,
            federation: raw
                .federation
                .map_or(Ok(FederationLayer::default()), |f| f.resolve(origin))?,
        })
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
            l.host = Some(v.trim().to_string());
        }
        if let Some(v) = var("MPREG_PORT") {
            l.port = Some(
                v.trim()
                    .parse()
                    .map_err(|_| invalid("MPREG_PORT", &v, "a port number from 0 to 65535"))?,
            );
        }
        if let Some(v) = var("MPREG_NAME") {
            check_text("MPREG_NAME", &v, true)?;
            l.name = Some(v);
        }
        if let Some(v) = var("MPREG_CLUSTER_ID") {
            check_text("MPREG_CLUSTER_ID", &v, false)?;
            l.cluster_id = Some(v);
        }
        if let Some(v) = var("MPREG_SEEDS") {
            let mut seeds = Vec::new();
            for s in split_list(&v) {
                seeds.push(parse_seed("MPREG_SEEDS", &s)?);
            }
            l.seeds = Some(seeds);
        }
        if let Some(v) = var("MPREG_RESOURCES") {
            let list = split_list(&v);
            check_resources("MPREG_RESOURCES", &list)?;
            l.resources = Some(list);
        }
        if let Some(v) = var("MPREG_GOSSIP_INTERVAL") {
            let d = duration_value("MPREG_GOSSIP_INTERVAL", &v)?;
            l.gossip_interval = Some(positive("MPREG_GOSSIP_INTERVAL", d).map_err(|_| {
                invalid(
                    "MPREG_GOSSIP_INTERVAL",
                    &v,
                    "a positive duration such as 0.5 or 500ms",
                )
            })?);
        }
        if let Some(v) = var("MPREG_TOPOLOGY") {
            l.topology = Some(
                Topology::parse(&v).ok_or_else(|| invalid("MPREG_TOPOLOGY", &v, TOPOLOGY_NAMES))?,
            );
        }
        Ok(l)
    }

    /// This layer with `top`'s values overriding.
    pub fn over(self, top: Layer) -> Layer {
        Layer {
            host: top.host.or(self.host),
            port: top.port.or(self.port),
            advertise: top.advertise.or(self.advertise),
            name: top.name.or(self.name),
            cluster_id: top.cluster_id.or(self.cluster_id),
            resources: top.resources.or(self.resources),
            seeds: top.seeds.or(self.seeds),
            gossip_interval: top.gossip_interval.or(self.gossip_interval),
            topology: top.topology.or(self.topology),
            echo_functions: top.echo_functions.or(self.echo_functions),
            membership: self.membership.over(top.membership),
            overlay: self.overlay.over(top.overlay),
            dissemination: self.dissemination.over(top.dissemination),
            calls: self.calls.over(top.calls),
            limits: self.limits.over(top.limits),
            connections: self.connections.over(top.connections),
            leave: self.leave.over(top.leave),
            runtime: self.runtime.over(top.runtime),
            federation: self.federation.over(top.federation),
        }
    }
}

fn positive(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(invalid(key, "0", "a positive duration"));
    }
    Ok(d)
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
        let base = match merged.topology {
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
        let mut s = Settings::default();
        s.host = l.host.unwrap_or(s.host);
        s.port = l.port.unwrap_or(s.port);
        s.advertise = l.advertise;
        s.name = l.name.unwrap_or_default();
        s.cluster_id = l.cluster_id.unwrap_or(s.cluster_id);
        s.resources = l.resources.unwrap_or_default();
        s.seeds = l.seeds.unwrap_or_default();
        s.topology = l.topology;
        s.echo_functions = l.echo_functions.unwrap_or_default();
        let m = &mut s.protocol.membership;
        let period = l.membership.probe_period.or(l.gossip_interval);
        l.membership.apply(m);
        if let Some(p) = l.gossip_interval {
            m.probe_period = p;
        }
        // A shorter protocol period shortens the probe timeouts with it
        // unless they were set explicitly (they may not exceed it).
        if let Some(p) = period {
            if l.membership.probe_timeout_max.is_none() {
                m.probe_timeout_max = m.probe_timeout_max.min(p);
            }
            if l.membership.probe_timeout_min.is_none() {
                m.probe_timeout_min = m.probe_timeout_min.min(m.probe_timeout_max);
            }
        }
        l.overlay.apply(&mut s.protocol.overlay);
        l.dissemination.apply(&mut s.protocol.dissemination);
        l.calls.apply(&mut s.protocol.calls);
        l.limits.apply(&mut s.protocol.limits);
        l.connections.apply(&mut s.protocol.connections);
        l.leave.apply(&mut s.protocol.leave);
        l.runtime.apply(&mut s.runtime);
        s.protocol.federation = l.federation.resolve()?;
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
        let flags = Layer {
            name: Some("flag".into()),
            ..Layer::default()
        };
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
            let s = Settings::resolve([Layer {
                topology: Some(t),
                ..Layer::default()
            }])
            .unwrap_or_else(|e| panic!("{}: {e}", t.name()));
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

        let flags = Layer {
            federation: FederationLayer {
                policy: Some(PolicyKind::Permissive),
                import: Some(Vec::new()),
                ..FederationLayer::default()
            },
            ..Layer::default()
        };
        let plain = Settings::resolve([flags.clone()]).unwrap_err();
        assert!(plain.to_string().contains("federation.import"), "{plain}");
        let mut flags = flags;
        flags.federation.import = None;
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
