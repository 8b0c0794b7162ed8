//! `mpreg bench`: call throughput and latency on loopback, beside a bare
//! echo over the same transport, with the client in another process.
//!
//! The parent process is the client. For each transport and server
//! executor it starts a child (`mpreg bench-serve`) that runs one mpreg
//! node serving `bench.echo` (a raw-bytes echo) and, on another port, a
//! bare echo server over the same [`Transport`] on the same executor (no
//! mpreg framing, no core: messages straight back). The client (always on
//! tokio) measures both with the same payloads and calls in flight, cell
//! by cell, in one run; `--runs N` repeats the whole table and reports
//! medians. On WebSocket it also sends upstream MPREG's JSON requests to
//! the same node (payloads up to 16 KiB), beside native calls.

use crate::net::Kind;
use bytes::Bytes;
use clap::Args;
use mpreg_drive::Runtime;
use mpreg_tokio::transport::{Listener, MessageSink, MessageStream, Transport};
use mpreg_tokio::{Addr, Client, FunctionSpec, Settings, Tokio, WsTransport};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Largest bare-echo message accepted.
const ECHO_MAX: usize = 1 << 20;

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// Transports to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Kind::Ws, Kind::Quic])]
    transport: Vec<Kind>,
    /// Executors of the server process (async-std serves WebSocket only).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Executor::Tokio, Executor::AsyncStd])]
    runtime: Vec<Executor>,
    /// Payload sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [16usize, 65_536])]
    payload: Vec<usize>,
    /// Requests in flight.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64])]
    inflight: Vec<usize>,
    /// Seconds measured per cell (after a warm-up of a fifth of it).
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
    /// Times the whole table is measured; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Print every run's figures too.
    #[arg(long)]
    verbose: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Transport.
    #[arg(long, value_enum)]
    transport: Kind,
    /// Executor.
    #[arg(long, value_enum, default_value_t = Executor::Tokio)]
    runtime: Executor,
}

/// An executor the server process can run on.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Executor {
    /// tokio (mpreg-tokio).
    Tokio,
    /// async-std (mpreg-async-std).
    AsyncStd,
}

impl Executor {
    fn name(self) -> &'static str {
        match self {
            Executor::Tokio => "tokio",
            Executor::AsyncStd => "async-std",
        }
    }
}

/// One measurement.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn figures(mut lat: Vec<Duration>, elapsed: Duration) -> Figures {
    if lat.is_empty() {
        return Figures::default();
    }
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6;
    Figures {
        per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_us: q(0.50),
        p99_us: q(0.99),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn payload(n: usize) -> Bytes {
    // First byte 0: on a transport with lanes, the control lane.
    let mut v = vec![b'x'; n.max(1)];
    v[0] = 0;
    Bytes::from(v)
}

// ----- the server process ----------------------------------------------------

pub(crate) async fn serve(a: ServeArgs) -> ExitCode {
    // Exit with the parent: it holds our standard input.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
    let r = match (a.transport, a.runtime) {
        (Kind::Ws, Executor::AsyncStd) => {
            let t = mpreg_async_std::WsTransport;
            serve_with(t, t).await
        }
        (Kind::Quic, Executor::AsyncStd) => Err("QUIC runs on tokio only".into()),
        (Kind::Wss, Executor::AsyncStd) => Err("wss:// runs on tokio only".into()),
        (Kind::Wss, Executor::Tokio) => match (
            mpreg_tokio::WssTransport::self_signed(),
            mpreg_tokio::WssTransport::self_signed(),
        ) {
            (Ok(a), Ok(b)) => serve_with(a, b).await,
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
        },
        (Kind::Ws, Executor::Tokio) => serve_with(WsTransport, WsTransport).await,
        (Kind::Quic, Executor::Tokio) => match (
            mpreg_quic::QuicTransport::self_signed(),
            mpreg_quic::QuicTransport::self_signed(),
        ) {
            (Ok(a), Ok(b)) => serve_with(a, b).await,
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
        },
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpreg bench-serve: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_with<T: Transport>(node_t: T, echo_t: T) -> Result<(), String> {
    let node = mpreg_drive::Node::<T::Runtime>::start_with(node_t, Settings::local())
        .await
        .map_err(|e| e.to_string())?;
    node.register_raw(
        FunctionSpec::new("bench.echo"),
        |args| async move { Ok(args) },
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut listener = echo_t
        .bind("127.0.0.1", 0)
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    say!("NODE={}", node.addr());
    say!("ECHO={}", echo_t.url(&format!("127.0.0.1:{port}")));
    loop {
        let Ok((accepting, _)) = listener.accept().await else {
            continue;
        };
        let t = echo_t.clone();
        // On the transport's own executor, like the node's connections.
        T::Runtime::spawn(async move {
            let Ok((mut sink, mut stream)) = t.handshake(accepting, ECHO_MAX).await else {
                return;
            };
            while let Ok(Some(m)) = stream.recv().await {
                if sink.feed(m).await.is_err() || sink.flush().await.is_err() {
                    break;
                }
            }
        });
    }
}

// ----- the client process ----------------------------------------------------

/// A running `bench-serve` child; killed when dropped.
struct Server {
    child: Child,
    node: String,
    echo: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(kind: Kind, runtime: Executor) -> Result<Server, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let t = match kind {
        Kind::Ws => "ws",
        Kind::Wss => "wss",
        Kind::Quic => "quic",
    };
    let mut child = Command::new(exe)
        .args(["bench-serve", "--transport", t, "--runtime", runtime.name()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the server process: {e}"))?;
    let out = child.stdout.take().ok_or("no server output")?;
    let mut server = Server {
        child,
        node: String::new(),
        echo: String::new(),
    };
    for line in BufReader::new(out).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Some(u) = line.strip_prefix("NODE=") {
            server.node = u.to_string();
        } else if let Some(u) = line.strip_prefix("ECHO=") {
            server.echo = u.to_string();
            return Ok(server);
        }
    }
    Err("the server process ended before printing its URLs".into())
}

/// Round trips of `size`-byte messages with `inflight` outstanding.
async fn bare_echo<T: Transport>(
    t: &T,
    url: &str,
    size: usize,
    inflight: usize,
    warm: Duration,
    measure: Duration,
) -> Result<Figures, String> {
    let (mut sink, mut stream) = t
        .dial(&Addr::new(url), ECHO_MAX)
        .await
        .map_err(|e| format!("bare echo: {e}"))?;
    let msg = payload(size);
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(inflight);
    let mut lat = Vec::new();
    let start = Instant::now();
    let (measure_from, end) = (start + warm, start + warm + measure);
    let io = |e: std::io::Error| format!("bare echo: {e}");
    loop {
        let now = Instant::now();
        if now < end {
            while sent.len() < inflight {
                sink.feed(msg.clone()).await.map_err(io)?;
                sent.push_back(Instant::now());
            }
            sink.flush().await.map_err(io)?;
        } else if sent.is_empty() {
            break;
        }
        match stream.recv().await.map_err(io)? {
            Some(m) if m.len() == msg.len() => {
                let t0 = sent.pop_front().ok_or("bare echo: an unexpected reply")?;
                if t0 >= measure_from && t0 < end {
                    lat.push(t0.elapsed());
                }
            }
            _ => return Err("bare echo: the server closed or altered a message".into()),
        }
    }
    Ok(figures(lat, measure))
}

/// Calls of `bench.echo` with `size`-byte arguments, `inflight` at once.
async fn calls(
    client: &Client,
    size: usize,
    inflight: usize,
    warm: Duration,
    measure: Duration,
) -> Result<Figures, String> {
    let start = Instant::now();
    let (measure_from, end) = (start + warm, start + warm + measure);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..inflight {
        let (c, msg) = (client.clone(), payload(size));
        tasks.spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < end {
                let t0 = Instant::now();
                let r = c.call_raw("bench.echo", msg.clone()).await;
                match r {
                    Ok(reply) if reply.0.len() == msg.len() => {}
                    Ok(_) => return Err("a call came back altered".to_string()),
                    Err(e) => return Err(format!("a call failed: {e}")),
                }
                if t0 >= measure_from && t0 < end {
                    lat.push(t0.elapsed());
                }
            }
            Ok(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.map_err(|e| e.to_string())??);
    }
    Ok(figures(all, measure))
}

/// How the client calls: this project's frames, or upstream MPREG's JSON
/// requests (on WebSocket, for payloads that fit one 64 KiB request).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Api {
    Native,
    Upstream,
}

/// Largest payload measured with upstream requests.
const UPSTREAM_MAX_PAYLOAD: usize = 16 * 1024;

type Cell = (Kind, Api, Executor, usize, usize);

/// Upstream MPREG requests of one `bench.echo` command with a `size`-byte
/// string argument, `inflight` outstanding on one connection, matched by
/// `u` (answers may come in any order).
async fn upstream_calls(
    url: &str,
    size: usize,
    inflight: usize,
    warm: Duration,
    measure: Duration,
) -> Result<Figures, String> {
    let io = |e: std::io::Error| format!("upstream calls: {e}");
    let (mut sink, mut stream) = WsTransport
        .dial(&Addr::new(url), ECHO_MAX)
        .await
        .map_err(io)?;
    let arg = "x".repeat(size);
    let request = |u: u64| {
        let r = serde_json::json!({"role": "rpc", "u": u.to_string(),
            "cmds": [{"name": "e", "fun": "bench.echo", "args": [arg], "kwargs": {}, "locs": []}]});
        Bytes::from(r.to_string())
    };
    let mut sent: std::collections::HashMap<u64, Instant> = std::collections::HashMap::new();
    let mut next = 0u64;
    let mut lat = Vec::new();
    let start = Instant::now();
    let (measure_from, end) = (start + warm, start + warm + measure);
    loop {
        if Instant::now() < end {
            while sent.len() < inflight {
                sink.feed(request(next)).await.map_err(io)?;
                sent.insert(next, Instant::now());
                next += 1;
            }
            sink.flush().await.map_err(io)?;
        } else if sent.is_empty() {
            break;
        }
        let m = stream
            .recv()
            .await
            .map_err(io)?
            .ok_or("upstream calls: the node closed the connection")?;
        let answer: serde_json::Value =
            serde_json::from_slice(&m).map_err(|e| format!("upstream calls: {e}"))?;
        if answer["r"]["e"][0].as_str().map(str::len) != Some(size) {
            return Err(format!("upstream calls: a wrong answer: {answer}"));
        }
        let u: u64 = answer["u"]
            .as_str()
            .and_then(|u| u.parse().ok())
            .ok_or("upstream calls: no u")?;
        let t0 = sent
            .remove(&u)
            .ok_or("upstream calls: an unexpected answer")?;
        if t0 >= measure_from && t0 < end {
            lat.push(t0.elapsed());
        }
    }
    Ok(figures(lat, measure))
}

async fn run_once<T: Transport<Runtime = Tokio>>(
    kind: Kind,
    runtime: Executor,
    t: T,
    a: &BenchArgs,
) -> Result<Vec<(Cell, Figures, Figures)>, String> {
    let server = spawn_server(kind, runtime)?;
    let client = Client::connect_with(t.clone(), &server.node, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let measure = Duration::from_secs_f64(a.seconds);
    let warm = measure / 5;
    let mut out = Vec::new();
    for &size in &a.payload {
        for &inflight in &a.inflight {
            let echo = bare_echo(&t, &server.echo, size, inflight, warm, measure).await?;
            let call = calls(&client, size, inflight, warm, measure).await?;
            out.push(((kind, Api::Native, runtime, size, inflight), echo, call));
            if kind == Kind::Ws && size <= UPSTREAM_MAX_PAYLOAD {
                let up = upstream_calls(&server.node, size, inflight, warm, measure).await?;
                out.push(((kind, Api::Upstream, runtime, size, inflight), echo, up));
            }
        }
    }
    Ok(out)
}

fn size_label(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

pub(crate) async fn run(a: BenchArgs) -> ExitCode {
    match bench(a).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpreg bench FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(a: BenchArgs) -> Result<(), String> {
    if a.runs == 0 || !(a.seconds > 0.0 && a.seconds <= 60.0) {
        return Err("--runs must be at least 1 and --seconds in (0, 60]".into());
    }
    say!(
        "mpreg bench: loopback, client in this process, server in a child process; \
         {} run(s) of {:.1} s per cell; medians over runs",
        a.runs,
        a.seconds
    );
    let mut runs: Vec<Vec<(Cell, Figures, Figures)>> = Vec::new();
    for r in 0..a.runs {
        let mut this = Vec::new();
        for &kind in &a.transport {
            for &runtime in &a.runtime {
                let cells = match (kind, runtime) {
                    (Kind::Quic | Kind::Wss, Executor::AsyncStd) => continue,
                    (Kind::Wss, _) => {
                        let t =
                            mpreg_tokio::WssTransport::self_signed().map_err(|e| e.to_string())?;
                        run_once(kind, runtime, t, &a).await?
                    }
                    (Kind::Ws, _) => run_once(kind, runtime, WsTransport, &a).await?,
                    (Kind::Quic, _) => {
                        let t =
                            mpreg_quic::QuicTransport::self_signed().map_err(|e| e.to_string())?;
                        run_once(kind, runtime, t, &a).await?
                    }
                };
                this.extend(cells);
            }
        }
        if this.is_empty() {
            return Err("nothing to measure: async-std serves WebSocket only".into());
        }
        if a.verbose {
            say!("run {}:", r + 1);
            print_table(
                &this
                    .iter()
                    .map(|(c, e, k)| (*c, *e, *k))
                    .collect::<Vec<_>>(),
            );
        }
        runs.push(this);
    }
    let mut table = Vec::new();
    for (i, (cell, _, _)) in runs[0].iter().enumerate() {
        let pick = |f: &dyn Fn(&(Cell, Figures, Figures)) -> f64| {
            median(runs.iter().map(|r| f(&r[i])).collect())
        };
        let echo = Figures {
            per_sec: pick(&|c| c.1.per_sec),
            p50_us: pick(&|c| c.1.p50_us),
            p99_us: pick(&|c| c.1.p99_us),
        };
        let call = Figures {
            per_sec: pick(&|c| c.2.per_sec),
            p50_us: pick(&|c| c.2.p50_us),
            p99_us: pick(&|c| c.2.p99_us),
        };
        table.push((*cell, echo, call));
    }
    say!("medians of {} run(s):", a.runs);
    print_table(&table);
    Ok(())
}

fn print_table(rows: &[(Cell, Figures, Figures)]) {
    say!(
        "| transport | server | payload | in flight | bare echo /s | echo p50 µs | echo p99 µs | mpreg calls /s | call p50 µs | call p99 µs | calls/echo |"
    );
    say!("|---|---|---|---|---|---|---|---|---|---|---|");
    for ((kind, api, runtime, size, inflight), e, c) in rows {
        let t = match (kind, api) {
            (Kind::Ws, Api::Native) => "WebSocket",
            (Kind::Ws, Api::Upstream) => "WebSocket, upstream JSON",
            (Kind::Wss, _) => "WebSocket over TLS",
            (Kind::Quic, _) => "QUIC",
        };
        say!(
            "| {t} | {} | {} | {inflight} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            runtime.name(),
            size_label(*size),
            e.per_sec,
            e.p50_us,
            e.p99_us,
            c.per_sec,
            c.p50_us,
            c.p99_us,
            if e.per_sec > 0.0 {
                c.per_sec / e.per_sec
            } else {
                0.0
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let lat: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let f = figures(lat, Duration::from_secs(1));
        assert_eq!(f.per_sec, 100.0);
        assert_eq!(f.p50_us.round(), 51.0);
        assert_eq!(f.p99_us.round(), 99.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(figures(Vec::new(), Duration::from_secs(1)).per_sec, 0.0);
    }
}
