//! Configuration files and environment values for `mpreg_tokio::config`,
//! generated from a structured description so that most inputs are TOML
//! the parser gets past.

use arbitrary::{Arbitrary, Result, Unstructured};
use mpreg_tokio::config::{ENV_VARS, Layer, Settings};

/// Every key a config file may set, section by section (`""` is the top).
pub const KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "host",
            "port",
            "advertise",
            "name",
            "cluster_id",
            "resources",
            "seeds",
            "connect",
            "gossip_interval",
            "topology",
            "echo_functions",
            "unknown_key",
        ],
    ),
    (
        "membership",
        &[
            "probe_period",
            "probe_timeout_min",
            "probe_timeout_max",
            "indirect_timeout",
            "suspicion_per_decade",
            "dissemination_allowance",
            "reconnect_window",
            "join_retry_interval",
            "seed_redial_interval",
            "indirect_probes",
            "suspicion_confirmations",
            "suspicion_speedup",
            "max_local_health",
        ],
    ),
    (
        "overlay",
        &[
            "shuffle_period",
            "active_view_extra",
            "active_view_min",
            "active_view_max",
            "active_view_slack",
            "passive_view_size",
            "shuffle_size",
        ],
    ),
    (
        "dissemination",
        &[
            "graft_timeout",
            "sync_interval",
            "sync_page_bytes",
            "sync_pages_per_exchange",
        ],
    ),
    (
        "calls",
        &[
            "default_timeout",
            "max_timeout",
            "resend_backoff",
            "hop_budget",
        ],
    ),
    (
        "limits",
        &[
            "max_frame_size",
            "max_members",
            "max_functions_per_node",
            "max_catalog_entries",
            "max_pending_calls",
            "max_invocations",
            "max_dedup_entries",
            "max_dedup_bytes",
            "peer_frames_per_sec",
            "peer_frame_burst",
        ],
    ),
    (
        "connections",
        &[
            "idle_timeout",
            "client_idle_timeout",
            "dial_timeout",
            "close_timeout",
            "backoff_min",
            "backoff_max",
            "max_connections",
            "max_held_bytes",
        ],
    ),
    ("leave", &["grace", "flush_timeout"]),
    (
        "runtime",
        &[
            "queue_control_bytes",
            "queue_broadcast_bytes",
            "queue_call_bytes",
        ],
    ),
];

/// A value as it might be written.
#[derive(Arbitrary, Debug)]
pub enum Value {
    /// A small integer.
    Small(u8),
    /// Any integer.
    Int(i64),
    /// A float (seconds, for durations).
    Float(f64),
    /// A duration with a unit.
    Dur(u16, u8),
    /// Any string.
    Str(String),
    /// One of a few meaningful strings.
    Word(u8),
    /// A list of strings.
    List(Vec<String>),
    /// A list of seed URLs.
    Seeds(Vec<u8>),
    /// A boolean.
    Bool(bool),
}

const WORDS: &[&str] = &[
    "edge-computing",
    "enterprise",
    "global",
    "ws://127.0.0.1:7000",
    "quic://h:1",
    "0.0.0.0",
    "",
    "2s",
    "1e400",
    "-1",
    "nan",
    "inf",
    "500ms",
    "1h",
    "250us",
    "µs",
];

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Value {
    fn toml(&self) -> String {
        let list = |v: Vec<String>| format!("[{}]", v.join(", "));
        match self {
            Value::Small(n) => n.to_string(),
            Value::Int(n) => n.to_string(),
            Value::Float(f) if f.is_finite() => format!("{f:?}"),
            Value::Float(f) if f.is_nan() => "nan".into(),
            Value::Float(f) => if *f > 0.0 { "inf" } else { "-inf" }.into(),
            Value::Dur(n, unit) => {
                let u = ["ms", "s", "m", "h", "us", "", "µs", "d"][usize::from(*unit) % 8];
                quote(&format!("{n}{u}"))
            }
            Value::Str(s) => quote(s),
            Value::Word(w) => quote(WORDS[usize::from(*w) % WORDS.len()]),
            Value::List(v) => list(v.iter().map(|s| quote(s)).collect()),
            Value::Seeds(v) => list(
                v.iter()
                    .map(|p| quote(&format!("ws://127.0.0.1:{}", u16::from(*p) * 257)))
                    .collect(),
            ),
            Value::Bool(b) => b.to_string(),
        }
    }

    fn env(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Word(w) => WORDS[usize::from(*w) % WORDS.len()].into(),
            Value::List(v) => v.join(","),
            Value::Seeds(v) => v
                .iter()
                .map(|p| format!("ws://127.0.0.1:{}", u16::from(*p) * 257))
                .collect::<Vec<_>>()
                .join(","),
            other => other.toml().trim_matches('"').to_string(),
        }
    }
}

/// A config file, environment and flags, as fuzzed.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// (section, key, value) settings of the file.
    pub file: Vec<(u8, u8, Value)>,
    /// Raw text appended to the file.
    pub raw: Option<String>,
    /// (variable, value) of the environment.
    pub env: Vec<(u8, Value)>,
}

impl Input {
    /// The config file's text, grouped by section.
    pub fn toml(&self) -> String {
        let mut sections: Vec<(usize, Vec<String>)> = Vec::new();
        for (s, k, v) in &self.file {
            let si = usize::from(*s) % KEYS.len();
            let keys = KEYS[si].1;
            let line = format!("{} = {}", keys[usize::from(*k) % keys.len()], v.toml());
            match sections.iter_mut().find(|(i, _)| *i == si) {
                Some((_, lines)) => lines.push(line),
                None => sections.push((si, vec![line])),
            }
        }
        sections.sort_by_key(|(i, _)| *i);
        let mut text = String::new();
        for (si, lines) in sections {
            if si > 0 {
                text.push_str(&format!("[{}]\n", KEYS[si].0));
            }
            for l in lines {
                text.push_str(&l);
                text.push('\n');
            }
        }
        if let Some(raw) = &self.raw {
            text.push_str(raw);
        }
        text
    }
}

/// Parses the file and environment of `u`, resolves them, and checks the
/// result: errors are typed; settings that resolve hold a protocol
/// configuration that validates and makes working nodes.
pub fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let input: Input = u.arbitrary()?;
    let text = input.toml();
    let file = match Layer::from_toml(&text, "fuzz.toml") {
        Ok(l) => l,
        Err(e) => {
            let _ = e.to_string();
            return Ok(());
        }
    };
    let env: Vec<(&str, String)> = input
        .env
        .iter()
        .map(|(k, v)| (ENV_VARS[usize::from(*k) % ENV_VARS.len()], v.env()))
        .collect();
    let get = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    };
    let env = match Layer::from_env(get) {
        Ok(l) => l,
        Err(e) => {
            let _ = e.to_string();
            return Ok(());
        }
    };
    match Settings::resolve([file, env]) {
        Ok(s) => {
            s.protocol
                .validate()
                .expect("resolved settings hold a valid protocol config");
            crate::harness::exercise(&s.protocol);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    Ok(())
}
