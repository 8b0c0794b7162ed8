//! Configuration with documented defaults and validation.
//!
//! Every timing rule of the protocol is derived from these values, including
//! [`Config::detection_bound`], the published worst-case time to detect a
//! crash. Every limit has a cap here and a counter in
//! [`Metrics::limits_hit`](crate::Metrics).

use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// Everything a [`Node`](crate::Node) needs to know before it starts.
///
/// `Config::default()` is a sane production configuration; the sub-structs
/// group the knobs by concern. Call [`Config::validate`] (done by
/// [`Node::new`](crate::Node::new)) to get typed errors instead of surprises.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Config {
    /// The cluster this node belongs to; frames from other clusters are
    /// rejected. Default `"default"`.
    pub cluster_id: String,
    /// A human-readable node name, replicated with the member record.
    pub name: String,
    /// Seed of the node's RNG. The same seed and the same inputs give the
    /// same outputs. Runtimes should draw it from the OS.
    pub rng_seed: u64,
    /// Failure detection.
    pub membership: MembershipConfig,
    /// The bounded overlay of connections.
    pub overlay: OverlayConfig,
    /// Broadcast and anti-entropy.
    pub dissemination: DisseminationConfig,
    /// Calls and invocations.
    pub calls: CallConfig,
    /// Bridges to other clusters and the policy for them.
    pub federation: FederationConfig,
    /// Connections: dialling, backoff, idle close, caps.
    pub connections: ConnectionConfig,
    /// The phases of a graceful leave.
    pub leave: LeaveConfig,
    /// Caps on everything an input can grow.
    pub limits: Limits,
    /// Who may join (cluster secrets, allowed keys); empty admits every
    /// peer of the cluster id. Secrets are never written out with the
    /// rest of the configuration.
    #[cfg_attr(feature = "arbitrary", arbitrary(default))]
    pub admission: crate::Admission,
}

/// Durations in configuration files: a number of seconds (`0.5`, `2`), or
/// a string with units as [`humantime`] reads them (`"500ms"`, `"2s"`,
/// `"1m"`, `"1h 30m"`, `"250us"`). Written back in the second form.
pub mod duration {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

    /// Writes `d` as `"1s 500ms"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    /// Reads seconds or a string with units.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    /// Parses what [`deserialize`] reads from a string: seconds (`"0.5"`)
    /// or units (`"500ms"`).
    pub fn parse(s: &str) -> Result<Duration, String> {
        let t = s.trim();
        match t.parse::<f64>() {
            Ok(secs) => seconds(secs),
            Err(_) => humantime::parse_duration(t).map_err(|e| {
                format!(
                    "invalid duration {t:?} ({e}): expected seconds (0.5) or a duration \
                     with units (500ms, 2s, 1m)"
                )
            }),
        }
    }

    fn seconds(secs: f64) -> Result<Duration, String> {
        Duration::try_from_secs_f64(secs).map_err(|_| "expected a non-negative duration".into())
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("seconds (0.5) or a duration with units (\"500ms\", \"2s\", \"1m\")")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("expected a non-negative duration"))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            seconds(v).map_err(E::custom)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse(v).map_err(E::custom)
        }
    }
}

/// Federation: which other clusters this node talks to, and what crosses.
///
/// Membership never crosses a cluster. Under [`Policy::Strict`] (the
/// default) frames from another cluster are rejected. Otherwise bridge
/// nodes exchange cluster *summaries* (per function, the maximal resource
/// sets single nodes serve) and forward calls between clusters.
#[derive(Clone, Debug, PartialEq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct FederationConfig {
    /// What crosses a bridge.
    pub policy: Policy,
    /// Bridges this node opens: a remote cluster and seed addresses in it.
    pub bridges: Vec<BridgeConfig>,
}

/// A bridge to open.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BridgeConfig {
    /// The remote cluster's id.
    pub cluster: String,
    /// Addresses of nodes in it.
    pub seeds: Vec<crate::Addr>,
}

/// What crosses a bridge.
#[derive(Clone, Debug, PartialEq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Policy {
    /// No bridges: frames of other clusters are rejected.
    #[default]
    Strict,
    /// Only the listed clusters; only functions whose names match an
    /// `export` pattern leave, only those matching an `import` pattern
    /// enter. Patterns are exact names or use `*` as a wildcard.
    Explicit {
        /// Remote clusters allowed.
        allow: Vec<String>,
        /// Functions this cluster offers over bridges.
        export: Vec<String>,
        /// Functions accepted from bridges.
        import: Vec<String>,
    },
    /// Any cluster, every function.
    Permissive,
}

impl Policy {
    /// Whether bridges with `cluster` are allowed.
    pub fn allows(&self, cluster: &str) -> bool {
        match self {
            Policy::Strict => false,
            Policy::Explicit { allow, .. } => allow.iter().any(|a| a == cluster),
            Policy::Permissive => true,
        }
    }

    /// Whether a function may be offered to other clusters.
    pub fn exports(&self, function: &str) -> bool {
        match self {
            Policy::Strict => false,
            Policy::Explicit { export, .. } => export.iter().any(|p| glob(p, function)),
            Policy::Permissive => true,
        }
    }

    /// Whether a function offered by another cluster is accepted.
    pub fn imports(&self, function: &str) -> bool {
        match self {
            Policy::Strict => false,
            Policy::Explicit { import, .. } => import.iter().any(|p| glob(p, function)),
            Policy::Permissive => true,
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// SWIM/Lifeguard failure detection over the active view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct MembershipConfig {
    /// The protocol period: an active peer silent for this long is pinged.
    /// Default 1 s.
    #[serde(with = "duration")]
    pub probe_period: Duration,
    /// Floor of the adaptive probe timeout (smoothed RTT + 4 × variance).
    /// Default 100 ms.
    #[serde(with = "duration")]
    pub probe_timeout_min: Duration,
    /// Cap of the adaptive probe timeout, also used before any RTT sample.
    /// Default 500 ms.
    #[serde(with = "duration")]
    pub probe_timeout_max: Duration,
    /// Members asked to probe a peer that missed its direct ack. Default 3.
    pub indirect_probes: usize,
    /// How long indirect probes may take. Default 500 ms.
    #[serde(with = "duration")]
    pub indirect_timeout: Duration,
    /// Suspicion timeout per decade of cluster size: the longest suspicion
    /// lasts `suspicion_per_decade × max(1, log10 N)`. Default 900 ms.
    #[serde(with = "duration")]
    pub suspicion_per_decade: Duration,
    /// Independent confirmations that shorten a suspicion to its minimum
    /// (Lifeguard's K). Default 3.
    pub suspicion_confirmations: u32,
    /// The shortest suspicion is the longest divided by this. Default 3.
    pub suspicion_speedup: u32,
    /// Lifeguard local-health ceiling: a node that itself misses acks and
    /// nacks scales its probe timeouts by up to `1 + max_local_health`.
    /// Default 8.
    pub max_local_health: u32,
    /// Allowance for a broadcast to reach every node, used only in
    /// [`Config::detection_bound`]. Default 250 ms.
    #[serde(with = "duration")]
    pub dissemination_allowance: Duration,
    /// How long Dead and Left members are remembered (and Dead ones
    /// re-probed) before being forgotten. Default 24 h.
    #[serde(with = "duration")]
    pub reconnect_window: Duration,
    /// While no member but this node is Alive, seeds are re-dialled at this
    /// pace. Default 1 s.
    #[serde(with = "duration")]
    pub join_retry_interval: Duration,
    /// While joined but no seed is Alive, seeds are re-dialled at this pace.
    /// Default 10 s.
    #[serde(with = "duration")]
    pub seed_redial_interval: Duration,
}

/// HyParView-style bounded overlay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct OverlayConfig {
    /// The active view aims for `⌈log₂ N⌉ + active_view_extra` peers.
    /// Default 1.
    pub active_view_extra: usize,
    /// Lower bound of the active-view target. Default 3.
    pub active_view_min: usize,
    /// Upper bound of the active-view target. Default 16.
    pub active_view_max: usize,
    /// Peers accepted above the target before the view sheds one.
    /// Default 2.
    pub active_view_slack: usize,
    /// Size of the passive view of candidates. Default 32.
    pub passive_view_size: usize,
    /// Length of the random walk a join takes (HyParView's ARWL). Default 5.
    pub join_walk_ttl: u8,
    /// Where on the walk the joiner is added to passive views (PRWL).
    /// Default 2.
    pub passive_walk_ttl: u8,
    /// Period of passive-view shuffles. Default 30 s.
    #[serde(with = "duration")]
    pub shuffle_period: Duration,
    /// Peers exchanged per shuffle. Default 4.
    pub shuffle_size: usize,
}

/// Plumtree broadcast and anti-entropy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct DisseminationConfig {
    /// Longest a node waits after an "I have" for the eager copy before
    /// grafting the announcer into the tree; the wait is three round trips
    /// to the announcer within `[graft_timeout_min, graft_timeout]`.
    /// Default 100 ms.
    #[serde(with = "duration")]
    pub graft_timeout: Duration,
    /// Shortest graft wait. Default 5 ms.
    #[serde(with = "duration")]
    pub graft_timeout_min: Duration,
    /// How long lazy announcements wait to be batched per peer. Default
    /// 10 ms.
    #[serde(with = "duration")]
    pub ihave_delay: Duration,
    /// Anti-entropy interval for clusters up to 32 nodes; it grows with
    /// `1 + log₂(N / 32)` above that so bytes per node stay flat.
    /// Default 2 s.
    #[serde(with = "duration")]
    pub sync_interval: Duration,
    /// Byte budget of one page of anti-entropy updates. Default 64 KiB.
    pub sync_page_bytes: usize,
    /// Pages sent per exchange before the rest waits for the next.
    /// Default 16.
    pub sync_pages_per_exchange: usize,
}

/// Calls and invocations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct CallConfig {
    /// Budget of a call that does not set one. Default 30 s.
    #[serde(with = "duration")]
    pub default_timeout: Duration,
    /// Longest budget a call may carry. Default 1 h.
    #[serde(with = "duration")]
    pub max_timeout: Duration,
    /// Maximum forwarding hops of a call. Default 8.
    pub hop_budget: u8,
    /// Pause before sending a call again when its connection broke a
    /// second time; it doubles up to 32 ×. Default 50 ms.
    #[serde(with = "duration")]
    pub resend_backoff: Duration,
}

/// Connections, which the core owns: the runtime opens one when told
/// ([`Order::Dial`](crate::Order::Dial)), reports what it accepted, and
/// closes one when told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ConnectionConfig {
    /// A connection this node does not keep (outside its active view, ring
    /// and bridges) is closed after this long without traffic. A duplicate
    /// connection (the loser of a simultaneous dial) is closed once it has
    /// been quiet for the shorter of this and a probe period. Default 10 s.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// The same for client connections. Default 1 h.
    #[serde(with = "duration")]
    pub client_idle_timeout: Duration,
    /// A dial that has not connected by then has failed. Default 5 s.
    #[serde(with = "duration")]
    pub dial_timeout: Duration,
    /// A close that has not finished by then is turned into an abort.
    /// Default 5 s.
    #[serde(with = "duration")]
    pub close_timeout: Duration,
    /// After a failed dial, frames to that address wait (held, not lost)
    /// before the next dial: `backoff_min × 2^(failures − 1)`, capped at
    /// `backoff_max`, each with equal jitter (a random half of it). The
    /// wait never delays failure detection: probes time out on their own
    /// timers and go indirect through other members. Default 100 ms.
    #[serde(with = "duration")]
    pub backoff_min: Duration,
    /// Cap of the dial backoff. Default 2 s.
    #[serde(with = "duration")]
    pub backoff_max: Duration,
    /// Connections open or opening at once; more accepted ones are closed
    /// at once, and a dial beyond it first closes the quietest connection
    /// this node does not keep. Default 4,096.
    pub max_connections: usize,
    /// Bytes held for one address while its connection opens or its dial
    /// backs off; beyond it the held frames are dropped and the address is
    /// treated as unreachable. At least `limits.max_frame_size`. Default
    /// 32 MiB.
    pub max_held_bytes: usize,
}

/// A graceful leave, in three phases: **drain** — functions withdrawn, new
/// calls refused with an answer saying they did not run, running handlers
/// given up to `grace` to finish (the rest are cancelled and answered);
/// **flush** — `Left` announced, every connection closed once its queue is
/// written, for up to `flush_timeout`; then [`Order::Stop`](crate::Order::Stop).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct LeaveConfig {
    /// How long running handlers may finish. Default 5 s.
    #[serde(with = "duration")]
    pub grace: Duration,
    /// How long connections may take to flush and close. Default 2 s.
    #[serde(with = "duration")]
    pub flush_timeout: Duration,
}

/// Caps on state an input can grow. Hitting one is counted in
/// [`Metrics::limits_hit`](crate::Metrics) — never a panic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Limits {
    /// Largest frame accepted or produced. Default 16 MiB.
    pub max_frame_size: usize,
    /// Members in the table. Default 200,000.
    pub max_members: usize,
    /// Catalog entries (functions, tombstones included) per node.
    /// Default 4,096.
    pub max_functions_per_node: usize,
    /// Catalog entries in total. Default 1,000,000.
    pub max_catalog_entries: usize,
    /// Calls this node waits on. Default 65,536.
    pub max_pending_calls: usize,
    /// Handlers running at once on this node; more answer `Overloaded`.
    /// Default 4,096.
    pub max_invocations: usize,
    /// Calls remembered for deduplication (running ones and finished ones
    /// within their budget). When full, the oldest finished one is
    /// forgotten; only when all are running does a call get `Overloaded`.
    /// Default 65,536.
    pub max_dedup_entries: usize,
    /// Bytes of remembered outcomes; beyond it the oldest are forgotten.
    /// Default 64 MiB.
    pub max_dedup_bytes: usize,
    /// Announced-but-missing updates awaiting a graft. Default 65,536.
    pub max_missing_updates: usize,
    /// `Send` orders waiting in `poll_order`. Default 1,000,000.
    pub max_queued_transmits: usize,
    /// Lazy announcements ("I have") waiting for one peer's batch; more
    /// send the batch at once. Default 65,536.
    pub max_pending_announcements: usize,
    /// Sustained frames per second accepted from one address (beyond it,
    /// frames are dropped and calls answered `Overloaded`). Default
    /// 200,000: well above what one busy client sends.
    pub peer_frames_per_sec: u32,
    /// Burst of frames accepted from one address. Default 400,000.
    pub peer_frame_burst: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster_id: "default".into(),
            name: String::new(),
            rng_seed: 0,
            membership: MembershipConfig::default(),
            overlay: OverlayConfig::default(),
            dissemination: DisseminationConfig::default(),
            calls: CallConfig::default(),
            federation: FederationConfig::default(),
            connections: ConnectionConfig::default(),
            leave: LeaveConfig::default(),
            limits: Limits::default(),
            admission: crate::Admission::default(),
        }
    }
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            probe_period: Duration::from_secs(1),
            probe_timeout_min: Duration::from_millis(100),
            probe_timeout_max: Duration::from_millis(500),
            indirect_probes: 3,
            indirect_timeout: Duration::from_millis(500),
            suspicion_per_decade: Duration::from_millis(900),
            suspicion_confirmations: 3,
            suspicion_speedup: 3,
            max_local_health: 8,
            dissemination_allowance: Duration::from_millis(250),
            reconnect_window: Duration::from_secs(24 * 3600),
            join_retry_interval: Duration::from_secs(1),
            seed_redial_interval: Duration::from_secs(10),
        }
    }
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            active_view_extra: 1,
            active_view_min: 3,
            active_view_max: 16,
            active_view_slack: 2,
            passive_view_size: 32,
            join_walk_ttl: 5,
            passive_walk_ttl: 2,
            shuffle_period: Duration::from_secs(30),
            shuffle_size: 4,
        }
    }
}

impl Default for DisseminationConfig {
    fn default() -> Self {
        DisseminationConfig {
            graft_timeout: Duration::from_millis(100),
            graft_timeout_min: Duration::from_millis(5),
            ihave_delay: Duration::from_millis(10),
            sync_interval: Duration::from_secs(2),
            sync_page_bytes: 64 * 1024,
            sync_pages_per_exchange: 16,
        }
    }
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(3600),
            hop_budget: 8,
            resend_backoff: Duration::from_millis(50),
        }
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            idle_timeout: Duration::from_secs(10),
            client_idle_timeout: Duration::from_secs(3600),
            dial_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            max_connections: 4_096,
            max_held_bytes: 32 << 20,
        }
    }
}

impl Default for LeaveConfig {
    fn default() -> Self {
        LeaveConfig {
            grace: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(2),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 16 * 1024 * 1024,
            max_members: 200_000,
            max_functions_per_node: 4_096,
            max_catalog_entries: 1_000_000,
            max_pending_calls: 65_536,
            max_invocations: 4_096,
            max_dedup_entries: 65_536,
            max_dedup_bytes: 64 << 20,
            max_missing_updates: 65_536,
            max_queued_transmits: 1_000_000,
            max_pending_announcements: 65_536,
            peer_frames_per_sec: 200_000,
            peer_frame_burst: 400_000,
        }
    }
}

/// A configuration value that cannot work. The node was not created.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
    /// Two values contradict each other.
    #[error("`{low}` ({low_value}) must not exceed `{high}` ({high_value})")]
    Order {
        /// The value that should be the smaller.
        low: &'static str,
        /// Its value.
        low_value: String,
        /// The value that should be the larger.
        high: &'static str,
        /// Its value.
        high_value: String,
    },
    /// A value outside its allowed range.
    #[error("`{key}` = {value} is out of range: {why}")]
    Range {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        why: &'static str,
    },
}

/// The smallest frame limit that still fits every control message.
pub const MIN_FRAME_SIZE: usize = 4 * 1024;

/// The longest any configured duration may be (365 days): timers scale
/// them (by the local health, by the cluster size, by backoff) and must not
/// overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

impl Config {
    /// Every duration with its key, to change (tools that sweep them:
    /// fuzzing, tests).
    pub fn durations_mut(&mut self) -> [(&'static str, &mut Duration); 25] {
        let (m, o, d, c) = (
            &mut self.membership,
            &mut self.overlay,
            &mut self.dissemination,
            &mut self.calls,
        );
        let (n, l) = (&mut self.connections, &mut self.leave);
        [
            ("connections.idle_timeout", &mut n.idle_timeout),
            (
                "connections.client_idle_timeout",
                &mut n.client_idle_timeout,
            ),
            ("connections.dial_timeout", &mut n.dial_timeout),
            ("connections.close_timeout", &mut n.close_timeout),
            ("connections.backoff_min", &mut n.backoff_min),
            ("connections.backoff_max", &mut n.backoff_max),
            ("leave.grace", &mut l.grace),
            ("leave.flush_timeout", &mut l.flush_timeout),
            ("membership.probe_period", &mut m.probe_period),
            ("membership.probe_timeout_min", &mut m.probe_timeout_min),
            ("membership.probe_timeout_max", &mut m.probe_timeout_max),
            ("membership.indirect_timeout", &mut m.indirect_timeout),
            (
                "membership.suspicion_per_decade",
                &mut m.suspicion_per_decade,
            ),
            (
                "membership.dissemination_allowance",
                &mut m.dissemination_allowance,
            ),
            ("membership.reconnect_window", &mut m.reconnect_window),
            ("membership.join_retry_interval", &mut m.join_retry_interval),
            (
                "membership.seed_redial_interval",
                &mut m.seed_redial_interval,
            ),
            ("overlay.shuffle_period", &mut o.shuffle_period),
            ("dissemination.graft_timeout", &mut d.graft_timeout),
            ("dissemination.graft_timeout_min", &mut d.graft_timeout_min),
            ("dissemination.ihave_delay", &mut d.ihave_delay),
            ("dissemination.sync_interval", &mut d.sync_interval),
            ("calls.default_timeout", &mut c.default_timeout),
            ("calls.max_timeout", &mut c.max_timeout),
            ("calls.resend_backoff", &mut c.resend_backoff),
        ]
    }

    /// Checks every value; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = &self.membership;
        for (key, d) in [
            ("membership.probe_period", m.probe_period),
            ("membership.probe_timeout_min", m.probe_timeout_min),
            ("membership.probe_timeout_max", m.probe_timeout_max),
            ("membership.indirect_timeout", m.indirect_timeout),
            ("membership.suspicion_per_decade", m.suspicion_per_decade),
            ("membership.join_retry_interval", m.join_retry_interval),
            ("membership.seed_redial_interval", m.seed_redial_interval),
            ("overlay.shuffle_period", self.overlay.shuffle_period),
            (
                "dissemination.graft_timeout",
                self.dissemination.graft_timeout,
            ),
            (
                "dissemination.sync_interval",
                self.dissemination.sync_interval,
            ),
            ("calls.default_timeout", self.calls.default_timeout),
            ("calls.resend_backoff", self.calls.resend_backoff),
            ("connections.idle_timeout", self.connections.idle_timeout),
            (
                "connections.client_idle_timeout",
                self.connections.client_idle_timeout,
            ),
            ("connections.dial_timeout", self.connections.dial_timeout),
            ("connections.close_timeout", self.connections.close_timeout),
            ("connections.backoff_min", self.connections.backoff_min),
            ("leave.flush_timeout", self.leave.flush_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Zero(key));
            }
            // Time counts microseconds: a shorter period is zero to the
            // core, and a timer re-armed at `now + 0` would fire forever.
            if d < Duration::from_micros(1) {
                return Err(range(key, format!("{d:?}"), "must be at least 1µs"));
            }
        }
        let mut all = self.clone();
        for (key, d) in all.durations_mut() {
            let d = *d;
            if d > MAX_DURATION {
                return Err(range(key, format!("{d:?}"), "must be at most 365 days"));
            }
        }
        order(
            "membership.probe_timeout_min",
            m.probe_timeout_min,
            "membership.probe_timeout_max",
            m.probe_timeout_max,
        )?;
        order(
            "membership.probe_timeout_max",
            m.probe_timeout_max,
            "membership.probe_period",
            m.probe_period,
        )?;
        order(
            "dissemination.graft_timeout_min",
            self.dissemination.graft_timeout_min,
            "dissemination.graft_timeout",
            self.dissemination.graft_timeout,
        )?;
        order(
            "connections.backoff_min",
            self.connections.backoff_min,
            "connections.backoff_max",
            self.connections.backoff_max,
        )?;
        if self.connections.max_connections < 2 {
            return Err(range(
                "connections.max_connections",
                self.connections.max_connections,
                "must be at least 2",
            ));
        }
        if self.connections.max_held_bytes < self.limits.max_frame_size {
            return Err(range(
                "connections.max_held_bytes",
                self.connections.max_held_bytes,
                "must be at least limits.max_frame_size",
            ));
        }
        order(
            "calls.default_timeout",
            self.calls.default_timeout,
            "calls.max_timeout",
            self.calls.max_timeout,
        )?;
        if m.suspicion_speedup == 0 {
            return Err(range(
                "membership.suspicion_speedup",
                m.suspicion_speedup,
                "must be at least 1",
            ));
        }
        if m.max_local_health > 64 {
            return Err(range(
                "membership.max_local_health",
                m.max_local_health,
                "must be at most 64",
            ));
        }
        if m.reconnect_window < m.probe_period {
            return Err(range(
                "membership.reconnect_window",
                format!("{:?}", m.reconnect_window),
                "must be at least one probe period",
            ));
        }
        let o = &self.overlay;
        if o.active_view_min == 0 {
            return Err(range("overlay.active_view_min", 0, "must be at least 1"));
        }
        if o.active_view_min > o.active_view_max {
            return Err(ConfigError::Order {
                low: "overlay.active_view_min",
                low_value: o.active_view_min.to_string(),
                high: "overlay.active_view_max",
                high_value: o.active_view_max.to_string(),
            });
        }
        if o.active_view_max > 256 {
            return Err(range(
                "overlay.active_view_max",
                o.active_view_max,
                "must be at most 256",
            ));
        }
        if o.passive_walk_ttl > o.join_walk_ttl {
            return Err(ConfigError::Order {
                low: "overlay.passive_walk_ttl",
                low_value: o.passive_walk_ttl.to_string(),
                high: "overlay.join_walk_ttl",
                high_value: o.join_walk_ttl.to_string(),
            });
        }
        let l = &self.limits;
        if l.max_frame_size < MIN_FRAME_SIZE {
            return Err(range(
                "limits.max_frame_size",
                l.max_frame_size,
                "must be at least 4096 bytes",
            ));
        }
        let d = &self.dissemination;
        if d.sync_page_bytes < 1024 || d.sync_page_bytes > l.max_frame_size / 2 {
            return Err(range(
                "dissemination.sync_page_bytes",
                d.sync_page_bytes,
                "must be between 1 KiB and half of limits.max_frame_size",
            ));
        }
        if d.sync_pages_per_exchange == 0 {
            return Err(range(
                "dissemination.sync_pages_per_exchange",
                0,
                "must be at least 1",
            ));
        }
        for (key, v) in [
            ("limits.max_members", l.max_members),
            ("limits.max_functions_per_node", l.max_functions_per_node),
            ("limits.max_catalog_entries", l.max_catalog_entries),
            ("limits.max_pending_calls", l.max_pending_calls),
            ("limits.max_invocations", l.max_invocations),
            ("limits.max_dedup_entries", l.max_dedup_entries),
            ("limits.max_dedup_bytes", l.max_dedup_bytes),
            ("limits.max_missing_updates", l.max_missing_updates),
            ("limits.max_queued_transmits", l.max_queued_transmits),
            (
                "limits.max_pending_announcements",
                l.max_pending_announcements,
            ),
        ] {
            if v == 0 {
                return Err(range(key, 0, "must be at least 1"));
            }
        }
        if l.max_members < 2 {
            return Err(range(
                "limits.max_members",
                l.max_members,
                "must be at least 2",
            ));
        }
        if l.peer_frames_per_sec == 0 || l.peer_frame_burst < l.peer_frames_per_sec {
            return Err(range(
                "limits.peer_frame_burst",
                l.peer_frame_burst,
                "must be at least limits.peer_frames_per_sec, which must be positive",
            ));
        }
        let f = &self.federation;
        if !f.bridges.is_empty() && f.policy == Policy::Strict {
            return Err(range(
                "federation.policy",
                "strict",
                "bridges need an explicit or permissive policy",
            ));
        }
        if let Some(b) = f.bridges.iter().find(|b| {
            b.cluster.is_empty() || b.cluster == self.cluster_id || !f.policy.allows(&b.cluster)
        }) {
            return Err(range(
                "federation.bridges.cluster",
                format!("{:?}", b.cluster),
                "must be another cluster the policy allows",
            ));
        }
        if self.cluster_id.is_empty() || self.cluster_id.len() > 255 {
            return Err(range(
                "cluster_id",
                format!("{:?}", self.cluster_id),
                "must be 1 to 255 bytes",
            ));
        }
        if self.name.len() > 255 {
            return Err(range("name", self.name.len(), "must be at most 255 bytes"));
        }
        Ok(())
    }

    /// The active-view size this node aims for in a cluster of `n` members.
    pub fn active_view_target(&self, n: usize) -> usize {
        let o = &self.overlay;
        let log = usize::BITS - n.saturating_sub(1).leading_zeros(); // ⌈log₂ n⌉
        (log as usize)
            .saturating_add(o.active_view_extra)
            .clamp(o.active_view_min, o.active_view_max)
    }

    /// The longest a suspicion of a member of an `n`-node cluster lasts
    /// before it is declared Dead (no independent confirmations).
    pub fn suspicion_max(&self, n: usize) -> Duration {
        let decades = (n.max(10) as f64).log10();
        crate::time::scale(self.membership.suspicion_per_decade, decades)
    }

    /// The shortest suspicion: with `suspicion_confirmations` independent
    /// confirmations.
    pub fn suspicion_min(&self, n: usize) -> Duration {
        self.suspicion_max(n) / self.membership.suspicion_speedup
    }

    /// The suspicion timeout after `confirmations` independent
    /// confirmations (Lifeguard: shrinks logarithmically from max to min).
    pub fn suspicion_timeout(&self, n: usize, confirmations: u32) -> Duration {
        let (max, min) = (self.suspicion_max(n), self.suspicion_min(n));
        let k = self.membership.suspicion_confirmations;
        if k == 0 || confirmations >= k {
            return min;
        }
        let frac = (f64::from(confirmations) + 1.0).ln() / (f64::from(k) + 1.0).ln();
        max.saturating_sub(crate::time::scale(max - min, frac))
            .max(min)
    }

    /// The anti-entropy interval in a cluster of `n` members.
    pub fn sync_interval(&self, n: usize) -> Duration {
        let scale = 1.0 + ((n.max(32) as f64) / 32.0).log2();
        crate::time::scale(self.dissemination.sync_interval, scale)
    }

    /// The published worst case, at 0% loss and with a healthy prober, from
    /// a member crashing to every live member of an `n`-node cluster marking
    /// it Dead: the crashed peer is probed at most a probe period and a
    /// quarter after it was last heard from (a probe timer that finds the
    /// peer heard from recently sleeps at least a quarter period, so a
    /// talking peer costs at most four wake-ups a period); the direct probe
    /// and the indirect probes time out; the suspicion runs its longest
    /// course (no confirmations); the Dead verdict is broadcast. Connection
    /// handling adds nothing: a dial backoff holds frames to the crashed
    /// peer, but the probe and indirect-probe timeouts run on their own
    /// timers, and the indirect probes and the verdict travel over other
    /// members' connections.
    pub fn detection_bound(&self, n: usize) -> Duration {
        let m = &self.membership;
        m.probe_period
            + m.probe_period / 4
            + m.probe_timeout_max
            + m.indirect_timeout
            + self.suspicion_max(n)
            + m.dissemination_allowance
    }
}

fn order(
    low: &'static str,
    a: Duration,
    high: &'static str,
    b: Duration,
) -> Result<(), ConfigError> {
    if a > b {
        return Err(ConfigError::Order {
            low,
            low_value: format!("{a:?}"),
            high,
            high_value: format!("{b:?}"),
        });
    }
    Ok(())
}

fn range(key: &'static str, value: impl ToString, why: &'static str) -> ConfigError {
    ConfigError::Range {
        key,
        value: value.to_string(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_detect_within_5_2_seconds_up_to_1000_nodes() {
        let c = Config::default();
        c.validate().unwrap();
        for n in [1, 2, 10, 50, 100, 500, 1000] {
            assert!(
                c.detection_bound(n) <= Duration::from_millis(5200),
                "n={n}: {:?}",
                c.detection_bound(n)
            );
        }
        assert!(c.detection_bound(10_000) > c.detection_bound(1000));
    }

    #[test]
    fn active_view_grows_with_log_n_and_is_clamped() {
        let c = Config::default();
        assert_eq!(c.active_view_target(1), 3);
        assert_eq!(c.active_view_target(8), 4);
        assert_eq!(c.active_view_target(1000), 11);
        assert_eq!(c.active_view_target(10_000), 15);
        assert_eq!(c.active_view_target(usize::MAX), 16);
    }

    #[test]
    fn suspicion_shrinks_with_confirmations() {
        let c = Config::default();
        let n = 100;
        let mut last = c.suspicion_timeout(n, 0);
        assert_eq!(last, c.suspicion_max(n));
        for k in 1..=3 {
            let t = c.suspicion_timeout(n, k);
            assert!(t < last);
            last = t;
        }
        assert_eq!(last, c.suspicion_min(n));
        assert_eq!(c.suspicion_timeout(n, 99), c.suspicion_min(n));
    }

    #[test]
    fn sync_interval_scales_with_n() {
        let c = Config::default();
        assert_eq!(c.sync_interval(10), c.dissemination.sync_interval);
        assert!(c.sync_interval(1000) > c.sync_interval(100));
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("*", "anything"));
        assert!(glob("embed", "embed"));
        assert!(!glob("embed", "embedx"));
        assert!(glob("embed*", "embed-v2"));
        assert!(glob("*-gpu", "train-gpu"));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-c"));
        assert!(!glob("gpu-*", "cpu-x"));
    }

    #[test]
    fn bridges_need_a_policy_that_allows_them() {
        let mut c = Config::default();
        c.federation.bridges.push(BridgeConfig {
            cluster: "b".into(),
            seeds: vec![crate::Addr::new("sim://9")],
        });
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("federation.policy")
        );
        c.federation.policy = Policy::Explicit {
            allow: vec!["c".into()],
            export: vec!["*".into()],
            import: vec!["*".into()],
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("federation.bridges")
        );
        c.federation.policy = Policy::Permissive;
        c.validate().unwrap();
    }

    #[test]
    fn invalid_values_are_named() {
        let mut c = Config::default();
        c.membership.probe_period = Duration::ZERO;
        assert_eq!(
            c.validate(),
            Err(ConfigError::Zero("membership.probe_period"))
        );
        let mut c = Config::default();
        c.membership.probe_timeout_max = Duration::from_secs(5);
        assert!(matches!(c.validate(), Err(ConfigError::Order { .. })));
        let mut c = Config::default();
        c.limits.max_frame_size = 10;
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("limits.max_frame_size"), "{e}");
        let mut c = Config::default();
        c.cluster_id.clear();
        assert!(c.validate().unwrap_err().to_string().contains("cluster_id"));
    }
}
