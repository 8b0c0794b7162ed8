//! `mpreg`: run a node, call functions and read views as a client, run the
//! README demo.

/// `println!` that ignores a closed standard output (`mpreg ... | head`)
/// instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod bench;
mod demo;
mod net;

use clap::{Args, Parser, Subcommand};
use mpreg_tokio::config::{
    ConfigError, Layer, PolicyKind, check_executor, check_names, parse_bridge, parse_duration,
    parse_seed,
};
use mpreg_tokio::{Command, ManyError, Policy, RequestError, Settings, Topology, VersionReq};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code for invalid configuration or usage (as clap uses).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "mpreg",
    version,
    about = "MPREG federation: run a node, call functions, inspect a cluster",
    long_about = "MPREG federation: nodes find each other by gossip, detect failures, \
replicate a catalog of registered functions and route calls.\n\n\
Start here: `mpreg demo` runs a 6-node cluster on loopback and prints what it measured."
)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
enum Top {
    /// Run a node.
    Server {
        #[command(subcommand)]
        command: ServerCommand,
    },
    /// Talk to a node as a client (not a cluster member).
    Client(Box<ClientArgs>),
    /// Start a 6-node cluster on loopback and measure membership, catalog
    /// propagation, calls, crash detection and leave.
    Demo(demo::DemoArgs),
    /// Measure call throughput and latency on loopback over WebSocket and
    /// QUIC (client here, server in a child process), beside a bare echo
    /// over the same transport measured in the same run.
    Bench(bench::BenchArgs),
    /// The server process of `mpreg bench` (internal).
    #[command(hide = true)]
    BenchServe(bench::ServeArgs),
}

#[derive(Subcommand, Debug)]
enum ServerCommand {
    /// Start a node and run until SIGINT/SIGTERM (then leave gracefully).
    ///
    /// Settings are read from the --config file, then the MPREG_*
    /// environment variables, then these flags; later wins. The transport
    /// is the scheme of --listen (ws://, wss:// or quic://; without
    /// --listen, the seeds' scheme, else ws). On start the node prints
    /// `MPREG_URL=ws://HOST:PORT` (or `wss://`/`quic://HOST:PORT/sha256=…`
    /// with a self-signed certificate) and its other settings as `MPREG_*=`
    /// lines on standard output.
    Start(Box<StartArgs>),
}

#[derive(Args, Debug)]
struct StartArgs {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to listen, and over which transport: ws://HOST:PORT,
    /// wss://HOST:PORT (WebSocket over TLS) or quic://HOST:PORT (port 0
    /// picks a free one); overrides --host and --port.
    #[arg(long, value_name = "URL")]
    listen: Option<String>,
    #[command(flatten)]
    tls: net::TlsArgs,
    /// Interface to listen on [default: 127.0.0.1].
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on; 0 picks a free one [default: 7000].
    #[arg(long)]
    port: Option<u16>,
    /// Host to advertise in this node's URL (when listening on 0.0.0.0).
    #[arg(long)]
    advertise: Option<String>,
    /// Node name [default: node-PORT].
    #[arg(long)]
    name: Option<String>,
    /// Cluster id [default: default].
    #[arg(long)]
    cluster_id: Option<String>,
    /// Seed URL to join through (repeatable).
    #[arg(long = "seed", value_name = "URL")]
    seeds: Vec<String>,
    /// Resource tag of this node (repeatable; also comma-separated).
    #[arg(long = "resource", value_name = "R")]
    resources: Vec<String>,
    /// Protocol period (seconds, or with a unit: 500ms).
    #[arg(long, value_name = "DURATION")]
    gossip_interval: Option<String>,
    /// Configuration template: edge-computing, enterprise,
    /// global-deployment.
    #[arg(long)]
    topology: Option<String>,
    /// Register an idempotent echo function under this name, with this
    /// node's resources (repeatable).
    #[arg(long = "fn-echo", value_name = "NAME")]
    fn_echo: Vec<String>,
    /// The executor the node runs on: tokio or async-std (ws:// only)
    /// [default: tokio]. Nodes of both kinds form one cluster.
    #[arg(long, value_name = "EXECUTOR")]
    runtime: Option<String>,
    #[command(flatten)]
    federation: FederationArgs,
}

/// Federation with other clusters (the `[federation]` config section).
#[derive(Args, Debug)]
#[command(next_help_heading = "Federation")]
struct FederationArgs {
    /// What crosses clusters: strict (nothing; the default), explicit (the
    /// --allow-cluster list, --export/--import patterns) or permissive.
    #[arg(long, value_name = "POLICY")]
    policy: Option<String>,
    /// A remote cluster that may bridge with this one (repeatable; also
    /// comma-separated); implies --policy explicit.
    #[arg(long = "allow-cluster", value_name = "CLUSTER")]
    allow: Vec<String>,
    /// Functions offered to other clusters: names or `*` patterns
    /// (repeatable; explicit policy; default `*`).
    #[arg(long = "export", value_name = "PATTERN")]
    export: Vec<String>,
    /// Functions taken from other clusters: names or `*` patterns
    /// (repeatable; explicit policy; default `*`).
    #[arg(long = "import", value_name = "PATTERN")]
    import: Vec<String>,
    /// Open a bridge to a node of another cluster:
    /// CLUSTER=URL[,URL…] (repeatable). Without --policy, implies
    /// explicit with the bridges' clusters allowed.
    #[arg(long = "bridge", value_name = "CLUSTER=URL")]
    bridges: Vec<String>,
}

#[derive(Args, Debug)]
struct ClientArgs {
    /// The node to talk to (ws://HOST:PORT, or wss:// or
    /// quic://HOST:PORT/sha256=… as the node printed it).
    #[arg(long, default_value = "ws://127.0.0.1:7000", global = true)]
    url: String,
    #[command(flatten)]
    tls: net::TlsArgs,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Subcommand, Debug)]
enum ClientCommand {
    /// Call a function; prints its result as JSON.
    ///
    /// Each ARG is parsed as JSON when it parses (42, true, {"a":1}, a
    /// list, "quoted"), else taken as a string; the function receives the
    /// list of arguments. Put `--` before arguments that start with `-`.
    #[command(allow_negative_numbers = true)]
    Call {
        /// Function name.
        function: String,
        /// Arguments.
        args: Vec<String>,
        /// Resources the executing node must have (comma-separated).
        #[arg(long, value_delimiter = ',')]
        locs: Vec<String>,
        /// Time budget in seconds (or with a unit).
        #[arg(long)]
        timeout: Option<String>,
        /// Version requirement, e.g. ^1.2.
        #[arg(long = "version-req", value_name = "REQ")]
        version: Option<String>,
        /// Serve the call in this cluster, reached over bridges.
        #[arg(long, value_name = "CLUSTER")]
        cluster: Option<String>,
    },
    /// Run a multi-step call; prints one JSON object mapping every
    /// command's name to its result.
    ///
    /// FILE (`-` for standard input) holds a JSON list of commands in
    /// upstream MPREG's shape: `{"name", "fun", "args", "kwargs", "locs",
    /// "version_constraint", "target_cluster"}` (only `name` and `fun` are
    /// required; upstream's `function_id` may stand for `fun`). An argument
    /// equal to another command's name takes its result, `"name.field.0"` a
    /// part of it; commands run level by level, each on a node its `locs`
    /// choose. A refused request (a cycle, a
    /// duplicate name, no commands, bad JSON) exits 2, a failed command 1.
    CallMany {
        /// The commands (`-` reads standard input).
        file: String,
        /// Time budget of the whole request, in seconds (or with a unit).
        #[arg(long)]
        timeout: Option<String>,
        /// Only `{"$ref": "name.field"}` refers; plain strings stay strings.
        #[arg(long)]
        explicit_references: bool,
    },
    /// List the node's members.
    Members {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the functions of live members (the funtimes view).
    Catalog {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn flags_layer(a: &StartArgs) -> Result<(Layer, Option<net::Kind>), ConfigError> {
    let mut kind = None;
    let mut l = Layer::default();
    for (key, v) in [
        ("host", &a.host),
        ("advertise", &a.advertise),
        ("name", &a.name),
        ("cluster_id", &a.cluster_id),
    ] {
        if let Some(v) = v {
            l.set(key, v.as_str());
        }
    }
    if let Some(p) = a.port {
        l.set("port", i64::from(p));
    }
    if !a.seeds.is_empty() {
        for s in &a.seeds {
            parse_seed("--seed", s)?;
        }
        l.set("seeds", a.seeds.clone());
    }
    if !a.resources.is_empty() {
        let list: Vec<String> = a
            .resources
            .iter()
            .flat_map(|r| r.split(','))
            .map(|r| r.trim().to_string())
            .collect();
        if list.iter().any(|r| r.is_empty() || r.len() > 255) {
            return Err(ConfigError::Invalid {
                key: "--resource".into(),
                value: a.resources.join(","),
                expected: "resource tags of 1 to 255 bytes".into(),
            });
        }
        l.set("resources", list);
    }
    if let Some(g) = &a.gossip_interval {
        parse_duration(g)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| ConfigError::Invalid {
                key: "--gossip-interval".into(),
                value: g.clone(),
                expected: "a positive duration such as 0.5 or 500ms".into(),
            })?;
        l.set("gossip_interval", g.as_str());
    }
    if let Some(t) = &a.topology {
        let t = Topology::parse(t).ok_or_else(|| ConfigError::Invalid {
            key: "--topology".into(),
            value: t.clone(),
            expected: "edge-computing, enterprise or global-deployment".into(),
        })?;
        l.set("topology", t.name());
    }
    if !a.fn_echo.is_empty() {
        l.set("echo_functions", a.fn_echo.clone());
    }
    if let Some(r) = &a.runtime {
        check_executor("--runtime", r)?;
        l.set("runtime.executor", r.as_str());
    }
    a.tls.set_in(&mut l);
    federation_flags(&a.federation, &mut l)?;
    if let Some(url) = &a.listen {
        let (k, host, port) = net::parse_listen(url).ok_or_else(|| ConfigError::Invalid {
            key: "--listen".into(),
            value: url.clone(),
            expected: "ws://HOST:PORT, wss://HOST:PORT or quic://HOST:PORT".into(),
        })?;
        kind = Some(k);
        l.set("host", host).set("port", i64::from(port));
    }
    Ok((l, kind))
}

fn federation_flags(a: &FederationArgs, l: &mut Layer) -> Result<(), ConfigError> {
    if let Some(p) = &a.policy {
        PolicyKind::parse(p).ok_or_else(|| ConfigError::Invalid {
            key: "--policy".into(),
            value: p.clone(),
            expected: "strict, explicit or permissive".into(),
        })?;
        l.set("federation.policy", p.trim());
    }
    for (key, flag, v) in [
        ("federation.allow", "--allow-cluster", &a.allow),
        ("federation.export", "--export", &a.export),
        ("federation.import", "--import", &a.import),
    ] {
        if v.is_empty() {
            continue;
        }
        let items: Vec<String> = v
            .iter()
            .flat_map(|x| x.split(','))
            .map(|x| x.trim().to_string())
            .collect();
        check_names(flag, &items)?;
        l.set(key, items);
    }
    if !a.bridges.is_empty() {
        let bridges = a
            .bridges
            .iter()
            .map(|b| parse_bridge("--bridge", b))
            .collect::<Result<Vec<_>, _>>()?;
        l.set_bridges(&bridges);
    }
    Ok(())
}

/// A positive duration for the flag `flag`, or the exit of a bad one.
fn positive_duration(flag: &str, t: &str) -> Result<Duration, ExitCode> {
    match parse_duration(t) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(fail(
            EXIT_CONFIG,
            format!("invalid value for {flag}: {t:?} (a positive duration)"),
        )),
    }
}

/// A multi-step request the node would not run: exit 2 with its kind.
fn refused(e: &RequestError) -> ExitCode {
    fail(EXIT_CONFIG, format!("request refused ({}): {e}", e.kind()))
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("mpreg: {msg}");
    ExitCode::from(code)
}

async fn server_start(a: StartArgs) -> ExitCode {
    let (settings, kind) = match flags_layer(&a)
        .and_then(|(f, kind)| Ok((Settings::load(a.config.as_deref(), f)?, kind)))
    {
        Ok(s) => s,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    // Without --listen, the seeds say which transport the cluster speaks.
    let kind = kind
        .or_else(|| {
            settings
                .seeds
                .first()
                .and_then(|s| net::Kind::of_url(s.as_str()))
        })
        .unwrap_or(net::Kind::Ws);
    let node = match net::start(kind, settings.clone()).await {
        Ok(n) => n,
        Err(net::Failure::Config(e)) => return fail(EXIT_CONFIG, e),
        Err(net::Failure::Other(e)) => return fail(1, e),
    };
    let info = node.info().clone();
    let m = &node.config().membership;
    say!("MPREG_URL={}", info.addr);
    say!("MPREG_RUNTIME={}", net::executor(&settings));
    say!("MPREG_NODE_ID={}", info.id);
    say!("MPREG_NAME={}", info.name);
    say!("MPREG_CLUSTER_ID={}", info.cluster_id);
    say!("MPREG_RESOURCES={}", info.resources.join(","));
    say!(
        "MPREG_SEEDS={}",
        settings
            .seeds
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    say!("MPREG_GOSSIP_INTERVAL={:?}", m.probe_period);
    let fed = &node.config().federation;
    say!(
        "MPREG_POLICY={}",
        match &fed.policy {
            Policy::Strict => "strict".to_string(),
            Policy::Permissive => "permissive".to_string(),
            Policy::Explicit { allow, .. } => format!("explicit:{}", allow.join(",")),
        }
    );
    say!(
        "MPREG_BRIDGES={}",
        fed.bridges
            .iter()
            .map(|b| format!(
                "{}={}",
                b.cluster,
                b.seeds
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ))
            .collect::<Vec<_>>()
            .join(";")
    );
    say!(
        "MPREG_TOPOLOGY={}",
        settings.topology.map_or("none", |t| t.name())
    );
    say!(
        "MPREG_DETECTION_BOUND_10={:?}",
        node.config().detection_bound(10)
    );
    eprintln!(
        "mpreg: node {:?} ({}) of cluster {:?} listening on {} ({}); SIGINT/SIGTERM to leave",
        info.name,
        info.id,
        info.cluster_id,
        info.addr,
        net::executor(&settings)
    );
    wait_for_signal().await;
    eprintln!("mpreg: leaving");
    node.leave().await;
    eprintln!("mpreg: left");
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

fn parse_arg(a: &str) -> serde_json::Value {
    serde_json::from_str(a).unwrap_or_else(|_| serde_json::Value::String(a.to_string()))
}

fn print_result(bytes: &[u8]) {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => say!("{v}"),
        Err(_) => say!(
            "{}",
            serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
        ),
    }
}

async fn client(a: ClientArgs) -> ExitCode {
    let client = match net::connect(&a.url, &a.tls.config()).await {
        Ok(c) => c,
        Err(net::Failure::Config(e)) => return fail(EXIT_CONFIG, e),
        Err(net::Failure::Other(e)) => return fail(1, e),
    };
    match a.command {
        ClientCommand::Call {
            function,
            args,
            locs,
            timeout,
            version,
            cluster,
        } => {
            let args: Vec<serde_json::Value> = args.iter().map(|s| parse_arg(s)).collect();
            let mut call = client.call(&function, &args).locs(locs);
            if let Some(c) = cluster {
                if c.is_empty() || c.len() > 255 {
                    return fail(
                        EXIT_CONFIG,
                        format!("invalid value for --cluster: {c:?} (1 to 255 bytes)"),
                    );
                }
                call = call.cluster(c);
            }
            if let Some(t) = timeout {
                match positive_duration("--timeout", &t) {
                    Ok(d) => call = call.timeout(d),
                    Err(e) => return e,
                }
            }
            if let Some(v) = version {
                match VersionReq::parse(&v) {
                    Ok(r) => call = call.version(r),
                    Err(e) => {
                        return fail(
                            EXIT_CONFIG,
                            format!("invalid value for --version-req: {v:?} ({e})"),
                        );
                    }
                }
            }
            match call.await {
                Ok(r) => {
                    print_result(r.bytes());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, format!("call failed: {e}")),
            }
        }
        ClientCommand::CallMany {
            file,
            timeout,
            explicit_references,
        } => {
            let read = if file == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
            } else {
                std::fs::read(&file)
            };
            let json = match read {
                Ok(j) => j,
                Err(e) => return fail(EXIT_CONFIG, format!("cannot read {file}: {e}")),
            };
            let commands = match Command::list_from_json(&json) {
                Ok(c) => c,
                Err(e) => return refused(&e),
            };
            let mut call = client.call_many(commands);
            if explicit_references {
                call = call.explicit_references();
            }
            if let Some(t) = timeout {
                match positive_duration("--timeout", &t) {
                    Ok(d) => call = call.timeout(d),
                    Err(e) => return e,
                }
            }
            match call.await {
                Ok(results) => {
                    say!(
                        "{}",
                        serde_json::Value::Object(results.into_iter().collect())
                    );
                    ExitCode::SUCCESS
                }
                Err(ManyError::Invalid(e)) => refused(&e),
                Err(e) => fail(1, e),
            }
        }
        ClientCommand::Members { json } => match client.members().await {
            Ok(ms) => {
                if json {
                    let list: Vec<serde_json::Value> = ms
                        .iter()
                        .map(|m| {
                            serde_json::json!({
                                "id": m.id.to_string(),
                                "name": m.name,
                                "addr": m.addr.as_str(),
                                "incarnation": m.incarnation,
                                "state": format!("{:?}", m.state),
                            })
                        })
                        .collect();
                    say!(
                        "{}",
                        serde_json::json!({
                            "node": client.node_id().to_string(),
                            "cluster_id": client.cluster_id(),
                            "members": list,
                        })
                    );
                } else {
                    say!("cluster {}", client.cluster_id());
                    for m in ms {
                        say!(
                            "{:<20} {:<8} {:<28} {}",
                            m.name,
                            format!("{:?}", m.state),
                            m.addr,
                            m.id
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(1, e),
        },
        ClientCommand::Catalog { json } => match client.catalog().await {
            Ok(entries) => {
                if json {
                    say!(
                        "{}",
                        serde_json::json!({
                            "node": client.node_id().to_string(),
                            "cluster_id": client.cluster_id(),
                            "functions": entries,
                        })
                    );
                } else {
                    for (name, by_res) in mpreg_tokio::funtimes(&entries) {
                        for (res, nodes) in by_res {
                            say!(
                                "{:<20} [{}] on {} node(s): {}",
                                name,
                                res.join(","),
                                nodes.len(),
                                nodes
                                    .iter()
                                    .map(|n| format!("{n:?}"))
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            );
                        }
                    }
                    for e in entries.iter().filter(|e| e.cluster.is_some()) {
                        say!(
                            "{:<20} [{}] in cluster {} via {} through {:?}",
                            e.name,
                            e.resources.join(","),
                            e.cluster.as_deref().unwrap_or_default(),
                            e.via.join(" > "),
                            e.node
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(1, e),
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MPREG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(1, format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async move {
        match cli.command {
            Top::Server {
                command: ServerCommand::Start(a),
            } => server_start(*a).await,
            Top::Client(a) => client(*a).await,
            Top::Demo(a) => demo::run(a).await,
            Top::Bench(a) => bench::run(a).await,
            Top::BenchServe(a) => bench::serve(a).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn args_parse_as_json_or_strings() {
        assert_eq!(parse_arg("42"), serde_json::json!(42));
        assert_eq!(parse_arg("[1,2]"), serde_json::json!([1, 2]));
        assert_eq!(parse_arg("hello"), serde_json::json!("hello"));
        assert_eq!(parse_arg("\"q\""), serde_json::json!("q"));
    }
}
