//! The application API: start a node, register handlers, call functions,
//! read views and events, leave.

use crate::api::{
    CallBuilder, Dispatch, Events, FunctionEntry, Handler, LocalFuture, ManyBuilder, ManyDispatch,
    Observed, Stats, Stopped, decode_args, encode_result,
};
use crate::config::Settings;
use crate::driver::{Command, Driver};
use crate::runtime::{AnyRuntime, DefaultTransport, Runtime};
use crate::transport::{Listener, Transport};
use bytes::Bytes;
use futures_util::future::select;
use mpreg_proto::multistep::{self, ManyError};
use mpreg_proto::{
    Addr, CallError, Config, FunctionSpec, Identity, Keypair, MemberView, Node as Core, NodeId,
    RegisterError, Time,
};
use semver::Version;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::{self, Display};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// The node thread's stack: the core's handlers run on it, and in debug
/// builds their frames are large (2 MiB, the default, once overflowed).
const NODE_THREAD_STACK: usize = 8 << 20;

/// Why a node did not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The settings do not validate.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The listener could not be bound.
    #[error("cannot listen on {host}:{port}: {error}")]
    Bind {
        /// Interface.
        host: String,
        /// Port.
        port: u16,
        /// Why.
        error: std::io::Error,
    },
    /// A configured function could not be registered.
    #[error("cannot register {name:?}: {error}")]
    Register {
        /// The function.
        name: String,
        /// Why.
        error: RegisterError,
    },
    /// The node's thread could not be started.
    #[error("cannot start the node's thread: {0}")]
    Thread(std::io::Error),
    /// The operating system gave no randomness for the node's key.
    #[error("no randomness from the operating system for the node's key")]
    NoEntropy,
}

/// Who a running node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its random id.
    pub id: NodeId,
    /// Its URL (`ws://host:port`).
    pub addr: Addr,
    /// Its name.
    pub name: String,
    /// Its cluster.
    pub cluster_id: String,
    /// Its incarnation (Unix time in seconds at start).
    pub incarnation: u64,
    /// Its resources.
    pub resources: Vec<String>,
}

#[derive(Debug)]
struct Inner {
    cmd: mpsc::Sender<Command>,
    info: NodeInfo,
    config: Config,
    events: broadcast::Sender<Observed>,
    first_events: std::sync::Mutex<Option<broadcast::Receiver<Observed>>>,
    stopped: watch::Receiver<bool>,
    abort: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    tokens: AtomicU64,
}

/// A running node: a cheap handle to a drive loop on its own thread.
///
/// The node runs on a dedicated thread with the executor `Rt` (its drive
/// loop, connections and async handlers; blocking handlers run on that
/// executor's blocking pool). `Rt` only says how the node was started:
/// [`erase`](Node::erase) gives the same handle as a plain `Node`, so
/// nodes of different executors can be held together. When the last
/// handle is dropped the node stops at once, like [`abort`](Node::abort);
/// call [`leave`](Node::leave) for a graceful exit.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use mpreg_tokio::{Node, Settings};
///
/// let a = Node::start(Settings::local()).await?;
/// a.register("add", ["cpu"], |(x, y): (i64, i64)| async move {
///     Ok::<_, String>(x + y)
/// }).await?;
/// let b = Node::start(Settings { seeds: vec![a.addr().clone()], ..Settings::local() }).await?;
/// // Once b's catalog has `add` (see `events()`), from any node:
/// let sum: i64 = b.call("add", &(1, 2)).locs(["cpu"]).await?.json()?;
/// assert_eq!(sum, 3);
/// b.leave().await;
/// # Ok(()) }
/// ```
pub struct Node<Rt = AnyRuntime> {
    inner: Arc<Inner>,
    runtime: PhantomData<fn() -> Rt>,
}

impl<Rt> Clone for Node<Rt> {
    fn clone(&self) -> Self {
        Node {
            inner: self.inner.clone(),
            runtime: PhantomData,
        }
    }
}

impl<Rt> fmt::Debug for Node<Rt> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node").field("inner", &self.inner).finish()
    }
}

fn os_random_u128() -> u128 {
    use rand::TryRng;
    let mut b = [0u8; 16];
    if rand::rngs::SysRng.try_fill_bytes(&mut b).is_err() {
        // No OS entropy: fall back to time and process id, still unique
        // enough to tell processes apart.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return t ^ (u128::from(std::process::id()) << 64);
    }
    u128::from_le_bytes(b)
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().max(1))
}

fn echo(args: Bytes) -> Result<Bytes, String> {
    match serde_json::from_slice::<serde_json::Value>(&args) {
        Ok(serde_json::Value::Array(mut a)) if a.len() == 1 => serde_json::to_vec(&a.remove(0))
            .map(Bytes::from)
            .map_err(|e| e.to_string()),
        _ => Ok(args),
    }
}

fn echos(args: Bytes) -> Result<Bytes, String> {
    match serde_json::from_slice::<serde_json::Value>(&args) {
        Ok(serde_json::Value::Array(_)) => Ok(args),
        Ok(v) => serde_json::to_vec(&[v])
            .map(Bytes::from)
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("echos takes JSON arguments: {e}")),
    }
}

fn builtin(f: fn(Bytes) -> Result<Bytes, String>) -> Handler {
    Handler::Async(Arc::new(move |args| Box::pin(std::future::ready(f(args)))))
}

fn spec(name: &str, resources: impl IntoIterator<Item = impl AsRef<str>>) -> FunctionSpec {
    FunctionSpec::new(name).resources(resources)
}

impl<Rt: DefaultTransport> Node<Rt> {
    /// Starts a node over its executor's own transport (WebSocket).
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        Self::start_with(Rt::Transport::default(), settings).await
    }
}

impl<Rt: Runtime> Node<Rt> {
    /// Starts a node over any [`Transport`] of this executor.
    pub async fn start_with<T: Transport<Runtime = Rt>>(
        transport: T,
        settings: Settings,
    ) -> Result<Self, StartError> {
        settings.validate()?;
        if let Some(name) = settings
            .runtime
            .executor
            .as_deref()
            .filter(|n| *n != Rt::NAME)
        {
            return Err(StartError::Config(crate::config::ConfigError::Invalid {
                key: "runtime.executor".into(),
                value: name.into(),
                expected: format!("{:?}: this node is started on that executor", Rt::NAME),
            }));
        }
        let scheme = transport.scheme();
        let bridge_seeds = settings
            .protocol
            .federation
            .bridges
            .iter()
            .flat_map(|b| b.seeds.iter().map(|s| ("federation.bridges.seeds", s)));
        if let Some((key, bad)) = settings
            .seeds
            .iter()
            .map(|s| ("seeds", s))
            .chain(bridge_seeds)
            .find(|(_, s)| s.url().is_none_or(|u| u.scheme != scheme))
        {
            return Err(StartError::Config(crate::config::ConfigError::Invalid {
                key: key.into(),
                value: bad.to_string(),
                expected: format!("a {scheme}://host:port URL for this transport"),
            }));
        }
        // One answer: from the node once it listens, or from its thread if
        // the runtime cannot start.
        let (ready_tx, mut ready_rx) = mpsc::channel(1);
        let (cmd_tx, cmd_rx) = mpsc::channel(4096);
        let (events, first) = broadcast::channel(16_384);
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let (abort_tx, abort_rx) = oneshot::channel::<()>();
        let ev = events.clone();
        let thread_name = format!(
            "mpreg-{}",
            if settings.name.is_empty() {
                "node"
            } else {
                &settings.name
            }
        );
        std::thread::Builder::new()
            .name(thread_name)
            .stack_size(NODE_THREAD_STACK)
            .spawn(move || {
                let ready = ready_tx.clone();
                let started = T::Runtime::run_local(async move {
                    // On the heap: executors move the future they run by
                    // value, and the drive loop's is large in debug builds.
                    let node = Box::pin(run_node(transport, settings, cmd_rx, ev, ready));
                    select(node, abort_rx).await;
                });
                if let Err(e) = started {
                    let _ = ready_tx.try_send(Err(StartError::Thread(e)));
                }
                let _ = stopped_tx.send(true);
            })
            .map_err(StartError::Thread)?;
        let (info, config) = ready_rx.recv().await.ok_or_else(|| {
            StartError::Thread(std::io::Error::other(
                "the node's thread ended during start",
            ))
        })??;
        Ok(Node {
            runtime: PhantomData,
            inner: Arc::new(Inner {
                cmd: cmd_tx,
                info,
                config,
                events,
                first_events: std::sync::Mutex::new(Some(first)),
                stopped: stopped_rx,
                abort: std::sync::Mutex::new(Some(abort_tx)),
                tokens: AtomicU64::new(0),
            }),
        })
    }
}

impl<Rt> Node<Rt> {
    /// The same node as a plain [`Node`], whatever its executor.
    pub fn erase(self) -> Node {
        Node {
            inner: self.inner,
            runtime: PhantomData,
        }
    }

    /// Who this node is.
    pub fn info(&self) -> &NodeInfo {
        &self.inner.info
    }

    /// Its id.
    pub fn id(&self) -> NodeId {
        self.inner.info.id
    }

    /// Its URL, which other nodes use as a seed.
    pub fn addr(&self) -> &Addr {
        &self.inner.info.addr
    }

    /// The protocol configuration it runs with (e.g. for
    /// [`Config::detection_bound`]).
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    async fn ask<R>(&self, make: impl FnOnce(oneshot::Sender<R>) -> Command) -> Result<R, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.inner.cmd.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Registers an async handler taking and returning JSON values (the
    /// arguments are the JSON array of positional arguments, so take a
    /// tuple). It runs on the node's thread: it must not block (use
    /// [`register_blocking`](Node::register_blocking) for that).
    pub async fn register<A, R, E, F, Fut>(
        &self,
        name: &str,
        resources: impl IntoIterator<Item = impl AsRef<str>>,
        handler: F,
    ) -> Result<(), RegisterError>
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Display + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + 'static,
    {
        self.register_spec(spec(name, resources), handler).await
    }

    /// Like [`register`](Node::register), with a full [`FunctionSpec`]
    /// (version, idempotence).
    pub async fn register_spec<A, R, E, F, Fut>(
        &self,
        spec: FunctionSpec,
        handler: F,
    ) -> Result<(), RegisterError>
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Display + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + 'static,
    {
        let h = Handler::Async(Arc::new(move |args: Bytes| -> LocalFuture {
            match decode_args::<A>(&args) {
                Ok(a) => {
                    let fut = handler(a);
                    Box::pin(async move { encode_result(fut.await) })
                }
                Err(e) => Box::pin(std::future::ready(Err(e))),
            }
        }));
        self.register_handler(spec, h).await
    }

    /// Registers an async handler on raw bytes.
    pub async fn register_raw<F, Fut>(
        &self,
        spec: FunctionSpec,
        handler: F,
    ) -> Result<(), RegisterError>
    where
        F: Fn(Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, String>> + 'static,
    {
        let h = Handler::Async(Arc::new(move |args: Bytes| -> LocalFuture {
            Box::pin(handler(args))
        }));
        self.register_handler(spec, h).await
    }

    /// Registers a synchronous (possibly blocking) handler on JSON values;
    /// it runs on the blocking pool, never on the drive loop.
    pub async fn register_blocking<A, R, E, F>(
        &self,
        name: &str,
        resources: impl IntoIterator<Item = impl AsRef<str>>,
        handler: F,
    ) -> Result<(), RegisterError>
    where
        A: DeserializeOwned,
        R: Serialize,
        E: Display,
        F: Fn(A) -> Result<R, E> + Send + Sync + 'static,
    {
        self.register_blocking_spec(spec(name, resources), handler)
            .await
    }

    /// Like [`register_blocking`](Node::register_blocking), with a full
    /// [`FunctionSpec`].
    pub async fn register_blocking_spec<A, R, E, F>(
        &self,
        spec: FunctionSpec,
        handler: F,
    ) -> Result<(), RegisterError>
    where
        A: DeserializeOwned,
        R: Serialize,
        E: Display,
        F: Fn(A) -> Result<R, E> + Send + Sync + 'static,
    {
        let h = Handler::Blocking(Arc::new(move |args: Bytes| {
            encode_result(
                decode_args::<A>(&args).and_then(|a| handler(a).map_err(|e| e.to_string())),
            )
        }));
        self.register_handler(spec, h).await
    }

    async fn register_handler(
        &self,
        spec: FunctionSpec,
        handler: Handler,
    ) -> Result<(), RegisterError> {
        self.ask(|reply| Command::Register {
            spec,
            handler,
            reply,
        })
        .await
        .unwrap_or(Err(RegisterError::Left))
    }

    /// Withdraws a function; returns whether it was registered.
    pub async fn unregister(&self, name: &str, version: &Version) -> Result<bool, Stopped> {
        let (name, version) = (name.to_string(), version.clone());
        self.ask(|reply| Command::Unregister {
            name,
            version,
            reply,
        })
        .await
    }

    /// A call with JSON arguments (a tuple is a list of positional
    /// arguments). Await it for the [`Reply`](crate::Reply).
    pub fn call<A: Serialize + ?Sized>(&self, function: &str, args: &A) -> CallBuilder {
        CallBuilder::new(self.dispatch(), function, serde_json::to_vec(args))
    }

    /// A call with raw-bytes arguments.
    pub fn call_raw(&self, function: &str, args: impl Into<Bytes>) -> CallBuilder {
        CallBuilder::new(self.dispatch(), function, Ok(args.into().to_vec()))
    }

    /// A multi-step call ([`mpreg_proto::multistep`]): commands whose
    /// arguments take other commands' results, run level by level from
    /// this node, each on a provider its `locs` choose. Await the
    /// [`ManyBuilder`](crate::ManyBuilder) for every command's result by
    /// name; dropping it cancels what is still running.
    pub fn call_many(&self, commands: impl IntoIterator<Item = multistep::Command>) -> ManyBuilder {
        let cmd = self.inner.cmd.clone();
        let token = self.inner.tokens.fetch_add(1, Ordering::Relaxed);
        let dispatch: ManyDispatch = Box::new(move |request| {
            Box::pin(async move {
                let make = |reply| Command::CallMany {
                    token,
                    request,
                    reply,
                };
                match cancellable(cmd, token, make).await {
                    Some(r) => r,
                    None => Err(ManyError::Request(stopped())),
                }
            })
        });
        ManyBuilder::new(dispatch, commands)
    }

    /// Sends a call to the drive loop; dropping the future cancels it.
    fn dispatch(&self) -> Dispatch {
        let cmd = self.inner.cmd.clone();
        let token = self.inner.tokens.fetch_add(1, Ordering::Relaxed);
        Box::new(move |call| {
            Box::pin(async move {
                let make = |reply| Command::Call { token, call, reply };
                cancellable(cmd, token, make)
                    .await
                    .unwrap_or_else(|| Err(stopped()))
            })
        })
    }

    /// Every member this node knows, itself included.
    pub async fn members(&self) -> Result<Vec<MemberView>, Stopped> {
        self.ask(|reply| Command::Members { reply }).await
    }

    /// The catalog entries of live members.
    pub async fn catalog(&self) -> Result<Vec<FunctionEntry>, Stopped> {
        self.ask(|reply| Command::Catalog { reply }).await
    }

    /// Runtime counters.
    pub async fn stats(&self) -> Result<Stats, Stopped> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// The core's protocol counters (frames by kind, rejected frames by
    /// reason, probes, suspicions, calls, …).
    pub async fn metrics(&self) -> Result<mpreg_proto::Metrics, Stopped> {
        self.ask(|reply| Command::Metrics { reply }).await
    }

    /// The connections the core holds, with their peers and whether it
    /// keeps them.
    pub async fn connections(&self) -> Result<Vec<mpreg_proto::ConnView>, Stopped> {
        self.ask(|reply| Command::Connections { reply }).await
    }

    /// Adds seeds to join through.
    pub async fn join(&self, seeds: Vec<Addr>) -> Result<(), Stopped> {
        self.inner
            .cmd
            .send(Command::Join { seeds })
            .await
            .map_err(|_| Stopped)
    }

    /// Membership and catalog events. The first call returns a stream that
    /// starts when the node started; later calls start now. A receiver
    /// that falls more than 16,384 events behind skips the oldest.
    pub fn events(&self) -> Events {
        let first = self
            .inner
            .first_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Events {
            rx: first.unwrap_or_else(|| self.inner.events.subscribe()),
            skipped: 0,
        }
    }

    /// Leaves gracefully, as the core runs it ([`Config::leave`]):
    /// withdraws this node's functions and refuses new calls with an answer
    /// saying they did not run (callers go elsewhere), lets running
    /// handlers finish within `leave.grace`, announces `Left`, flushes and
    /// closes every connection, and stops.
    pub async fn leave(&self) {
        let _ = self.ask(|reply| Command::Leave { reply }).await;
        self.stopped().await;
    }

    /// Stops at once, like a killed process: no `Left`, connections reset,
    /// running handlers dropped. Others detect it as a failure.
    pub async fn abort(&self) {
        if let Some(tx) = self
            .inner
            .abort
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = tx.send(());
        }
        self.stopped().await;
    }

    /// Waits until the node has stopped.
    pub async fn stopped(&self) {
        let mut rx = self.inner.stopped.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Whether the node has stopped.
    pub fn is_stopped(&self) -> bool {
        *self.inner.stopped.borrow()
    }
}

type Ready = Result<(NodeInfo, Config), StartError>;

async fn run_node<T: Transport>(
    transport: T,
    settings: Settings,
    cmd: mpsc::Receiver<Command>,
    events: broadcast::Sender<Observed>,
    ready: mpsc::Sender<Ready>,
) {
    let listener = match transport.bind(&settings.host, settings.port).await {
        Ok(l) => l,
        Err(error) => {
            let _ = ready.try_send(Err(StartError::Bind {
                host: settings.host.clone(),
                port: settings.port,
                error,
            }));
            return;
        }
    };
    let port = match listener.local_addr() {
        Ok(a) => a.port(),
        Err(error) => {
            let _ = ready.try_send(Err(StartError::Bind {
                host: settings.host.clone(),
                port: settings.port,
                error,
            }));
            return;
        }
    };
    let authority = match &settings.advertise {
        Some(a) if a.contains(':') && !a.starts_with('[') => a.clone(),
        Some(a) => format!("{a}:{port}"),
        None if settings.host.contains(':') => format!("[{}]:{port}", settings.host),
        None => format!("{}:{port}", settings.host),
    };
    let addr = transport.url(&authority);
    let name = if settings.name.is_empty() {
        format!("node-{port}")
    } else {
        settings.name.clone()
    };
    let mut config = settings.protocol.clone();
    config.cluster_id = settings.cluster_id.clone();
    config.name = name.clone();
    config.rng_seed = os_random_u128() as u64;
    // A fresh key pair per start; the id derives from it.
    let mut seed = [0; 32];
    if rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut seed).is_err() {
        let _ = ready.try_send(Err(StartError::NoEntropy));
        return;
    }
    let identity = Identity::new(Keypair::from_seed(seed), addr.clone(), unix_seconds());
    let info = NodeInfo {
        id: identity.id,
        addr,
        name,
        cluster_id: settings.cluster_id.clone(),
        incarnation: identity.incarnation,
        resources: settings.resources.clone(),
    };
    let epoch = Instant::now();
    let core = match Core::new(config.clone(), identity, Time::ZERO) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.try_send(Err(StartError::Config(e.into())));
            return;
        }
    };
    let (mut driver, inputs) = Driver::new(
        transport,
        core,
        epoch,
        settings.runtime.clone(),
        events,
        cmd,
    );
    let res = &settings.resources;
    let mut functions = vec![
        ("echo".to_string(), builtin(echo)),
        ("echos".to_string(), builtin(echos)),
    ];
    functions.extend(
        settings
            .echo_functions
            .iter()
            .map(|n| (n.clone(), builtin(echo))),
    );
    for (name, h) in functions {
        let spec = spec(&name, res).idempotent(true);
        if let Err(error) = driver.register_now(spec, h) {
            let _ = ready.try_send(Err(StartError::Register { name, error }));
            return;
        }
    }
    driver.join_now(settings.seeds.clone());
    if ready.try_send(Ok((info, config))).is_err() {
        return;
    }
    driver.run(inputs, listener).await;
}

/// Cancels a call whose future was dropped before its outcome.
fn stopped() -> CallError {
    CallError::Rejected("the node has stopped".into())
}

/// Sends the command `make` builds to the drive loop and waits for its
/// reply; `None` once the node has stopped. Dropping the future before the
/// reply cancels the work of `token`.
async fn cancellable<T>(
    cmd: mpsc::Sender<Command>,
    token: u64,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Option<T> {
    let (reply, rx) = oneshot::channel();
    cmd.send(make(reply)).await.ok()?;
    let mut guard = CancelGuard {
        cmd,
        token,
        armed: true,
    };
    let r = rx.await;
    guard.armed = false;
    r.ok()
}

struct CancelGuard {
    cmd: mpsc::Sender<Command>,
    token: u64,
    armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.cmd.try_send(Command::Cancel { token: self.token });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_echo_their_arguments() {
        assert_eq!(echo(Bytes::from_static(b"[\"hi\"]")).unwrap(), "\"hi\"");
        assert_eq!(echo(Bytes::from_static(b"[1,2]")).unwrap(), "[1,2]");
        assert_eq!(
            echo(Bytes::from_static(b"raw\xff")).unwrap(),
            &b"raw\xff"[..]
        );
        assert_eq!(
            echos(Bytes::from_static(b"[1,\"a\"]")).unwrap(),
            "[1,\"a\"]"
        );
        assert_eq!(echos(Bytes::from_static(b"7")).unwrap(), "[7]");
        assert!(echos(Bytes::from_static(b"\xff")).is_err());
    }
}
