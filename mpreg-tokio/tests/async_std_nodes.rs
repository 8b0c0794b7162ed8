//! The drive loop on another executor: an async-std [`Runtime`] and a
//! WebSocket transport over async-tungstenite, written here against the
//! crate's two seams only, run in one cluster with tokio nodes. (This is
//! the seed of `mpreg-async-std`.)

use async_std::net::{TcpListener, TcpStream};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mpreg_testkit::{alive_count, eventually, state_of};
use mpreg_tokio::transport::{Listener, MessageSink, MessageStream};
use mpreg_tokio::{Addr, FunctionSpec, MemberState, Node, Runtime, Settings, Transport};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// async-std: a node's thread runs `block_on`, which also runs the
/// thread's local executor (`spawn_local`); timers are async-io's.
struct AsyncStd;

impl Runtime for AsyncStd {
    fn run_local(fut: impl Future<Output = ()> + 'static) -> io::Result<()> {
        async_std::task::block_on(fut);
        Ok(())
    }

    fn spawn_local(fut: impl Future<Output = ()> + 'static) {
        async_std::task::spawn_local(fut);
    }

    fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
        async_std::task::spawn(fut);
    }

    fn spawn_blocking(f: impl FnOnce() + Send + 'static) {
        async_std::task::spawn_blocking(f);
    }

    async fn sleep_until(deadline: Instant) {
        async_io::Timer::at(deadline).await;
    }
}

/// WebSocket (`ws://`) on async-std sockets: the same wire as
/// `WsTransport`.
#[derive(Clone, Copy, Debug)]
struct AsWs;

struct AsSink(WebSocketSender<TcpStream>);
struct AsStream(WebSocketReceiver<TcpStream>);
struct AsListener(TcpListener);

fn config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

fn io_err(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
}

fn halves(ws: WebSocketStream<TcpStream>) -> (AsSink, AsStream) {
    let (sink, stream) = ws.split();
    (AsSink(sink), AsStream(stream))
}

impl Transport for AsWs {
    type Runtime = AsyncStd;
    type Sink = AsSink;
    type Stream = AsStream;
    type Listener = AsListener;
    type Accepting = TcpStream;

    fn scheme(&self) -> &'static str {
        "ws"
    }

    async fn bind(&self, host: &str, port: u16) -> io::Result<AsListener> {
        Ok(AsListener(TcpListener::bind((host, port)).await?))
    }

    async fn dial(&self, addr: &Addr, max: usize) -> io::Result<(AsSink, AsStream)> {
        let auth = addr
            .url()
            .map(|u| u.authority)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, addr.to_string()))?;
        let tcp = TcpStream::connect(auth).await?;
        tcp.set_nodelay(true)?;
        let (ws, _) =
            async_tungstenite::client_async_with_config(addr.as_str(), tcp, Some(config(max)))
                .await
                .map_err(io_err)?;
        Ok(halves(ws))
    }

    async fn handshake(&self, tcp: TcpStream, max: usize) -> io::Result<(AsSink, AsStream)> {
        tcp.set_nodelay(true)?;
        let ws = async_tungstenite::accept_async_with_config(tcp, Some(config(max)))
            .await
            .map_err(io_err)?;
        Ok(halves(ws))
    }
}

impl Listener for AsListener {
    type Accepting = TcpStream;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        self.0.accept().await
    }
}

impl MessageSink for AsSink {
    async fn feed(&mut self, message: Bytes) -> io::Result<()> {
        self.0.feed(Message::Binary(message)).await.map_err(io_err)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.0.flush().await.map_err(io_err)
    }

    async fn close(&mut self) -> io::Result<()> {
        match SinkExt::close(&mut self.0).await {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }
}

impl MessageStream for AsStream {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.0.next().await {
                None | Some(Err(WsError::ConnectionClosed) | Ok(Message::Close(_))) => {
                    return Ok(None);
                }
                Some(Ok(Message::Binary(b))) => return Ok(Some(b)),
                Some(Ok(Message::Text(_))) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "text message"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(io_err(e)),
            }
        }
    }
}

/// Three tokio nodes and three async-std nodes, alternating, in a chain:
/// full membership, a function on each kind called from the other, one of
/// each kind killed and marked Dead everywhere within the detection bound,
/// one leave seen everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_and_async_std_nodes_form_one_cluster() {
    let n = 6;
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let mut s = Settings::local();
        s.name = format!("{}{i}", if i % 2 == 0 { "tokio" } else { "astd" });
        s.seeds = nodes
            .last()
            .map(|p| vec![p.addr().clone()])
            .unwrap_or_default();
        let node = if i % 2 == 0 {
            Node::start(s).await
        } else {
            Node::start_with(AsWs, s).await
        };
        nodes.push(node.expect("node starts"));
    }
    for node in &nodes {
        eventually(Duration::from_secs(10), "full membership", || async {
            alive_count(node).await == n
        })
        .await;
    }
    // A function on an async-std node, called from a tokio node; and the
    // reverse.
    for (server, name) in [(1, "on_astd"), (2, "on_tokio")] {
        nodes[server]
            .register_spec(FunctionSpec::new(name), move |(x,): (i64,)| async move {
                Ok::<_, String>(x + server as i64)
            })
            .await
            .unwrap();
    }
    for (caller, name, want) in [(0, "on_astd", 11), (3, "on_tokio", 12)] {
        eventually(Duration::from_secs(5), "the function", || async {
            nodes[caller]
                .call(name, &(10,))
                .await
                .is_ok_and(|r| r.json::<i64>().ok() == Some(want))
        })
        .await;
    }
    // Kill one of each kind.
    let bound = nodes[0].config().detection_bound(n);
    let killed = [nodes[4].id(), nodes[5].id()];
    nodes[4].abort().await;
    nodes[5].abort().await;
    let took = eventually(bound, "both killed nodes Dead everywhere", || async {
        for node in &nodes[..4] {
            for id in killed {
                if state_of(node, id).await != Some(MemberState::Dead) {
                    return false;
                }
            }
        }
        true
    })
    .await;
    eprintln!("killed tokio and async-std nodes Dead everywhere in {took:?} (bound {bound:?})");
    // An async-std node leaves.
    let left = nodes[3].id();
    nodes[3].leave().await;
    eventually(
        Duration::from_secs(5),
        "the leave seen everywhere",
        || async {
            for node in &nodes[..3] {
                if state_of(node, left).await != Some(MemberState::Left) {
                    return false;
                }
            }
            true
        },
    )
    .await;
}
