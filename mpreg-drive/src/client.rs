//! A client: one connection to one node, not a cluster member. It calls
//! functions (the node routes them) and reads the node's views. The CLI and
//! applications that only call functions use it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = mpreg_tokio::Client::connect("ws://127.0.0.1:7000").await?;
//! let hi: String = client.call("echo", &("hi",)).await?.json()?;
//! assert_eq!(hi, "hi");
//! for m in client.members().await? {
//!     println!("{} {} {:?}", m.name, m.addr, m.state);
//! }
//! # Ok(()) }
//! ```

use crate::api::{CallBuilder, Dispatch, FunctionEntry, ManyBuilder};
use crate::conn::{self, ConnEvent, Outbox};
use crate::runtime::{self, DefaultTransport, Runtime, Task};
use crate::transport::Transport;
use bytes::Bytes;
use mpreg_proto::chunk::MAX_CHUNK;
use mpreg_proto::multistep::{Command, ManyError, Request, Results};
use mpreg_proto::wire::{Query, QueryAnswer};
use mpreg_proto::{
    Addr, Call, CallError, ClientConn, ClientEvent, MemberState, MemberView, NodeId, TrafficClass,
};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Largest frame a client accepts from its node (16 MiB).
const CLIENT_MAX_FRAME: usize = 16 << 20;
/// How long a client waits beyond a call's budget before giving up on the
/// node's answer.
const REPLY_SLACK: Duration = Duration::from_secs(5);
/// Budget of a call that sets none (the node's default is usually 30 s).
const DEFAULT_BUDGET: Duration = Duration::from_secs(30);

/// Why a client operation failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The URL is not one the transport dials.
    #[error(
        "invalid node URL {0:?} (expected SCHEME://host:port for this transport, e.g. ws://127.0.0.1:7000)"
    )]
    Url(String),
    /// The connection could not be opened.
    #[error("cannot connect to {url}: {error}")]
    Connect {
        /// The node.
        url: String,
        /// Why.
        error: std::io::Error,
    },
    /// The node did not say hello in time.
    #[error("{0} did not answer in time")]
    Timeout(String),
    /// The connection closed.
    #[error("the connection to the node closed")]
    Closed,
}

enum ClientCommand {
    Call {
        call: Call,
        reply: oneshot::Sender<Result<Bytes, CallError>>,
    },
    CallMany {
        request: Request,
        reply: oneshot::Sender<Result<Results, ManyError>>,
    },
    Query {
        query: Query,
        reply: oneshot::Sender<QueryAnswer>,
    },
}

/// A connection to one node, whose tasks run on the executor `Rt` (the
/// caller's).
pub struct Client<Rt> {
    tx: mpsc::Sender<ClientCommand>,
    node: NodeId,
    cluster_id: String,
    url: Addr,
    runtime: PhantomData<fn() -> Rt>,
}

impl<Rt> Clone for Client<Rt> {
    fn clone(&self) -> Self {
        Client {
            tx: self.tx.clone(),
            node: self.node,
            cluster_id: self.cluster_id.clone(),
            url: self.url.clone(),
            runtime: PhantomData,
        }
    }
}

impl<Rt> fmt::Debug for Client<Rt> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("node", &self.node)
            .field("cluster_id", &self.cluster_id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl<Rt: DefaultTransport> Client<Rt> {
    /// Connects over the executor's own transport (WebSocket), from a task
    /// of that executor.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_with(Rt::Transport::default(), url, Duration::from_secs(5)).await
    }
}

impl<Rt: Runtime> Client<Rt> {
    /// Connects over any transport of this executor; `timeout` bounds the
    /// dial and the node's hello.
    pub async fn connect_with<T: Transport<Runtime = Rt>>(
        transport: T,
        url: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let addr = Addr::new(url.trim());
        if addr.url().is_none_or(|u| u.scheme != transport.scheme()) {
            return Err(ClientError::Url(url.to_string()));
        }
        let (sink, stream) = runtime::timeout::<Rt, _>(timeout, transport.dial(&addr, MAX_CHUNK))
            .await
            .ok_or_else(|| ClientError::Timeout(url.to_string()))?
            .map_err(|error| ClientError::Connect {
                url: url.to_string(),
                error,
            })?;
        let proto = ClientConn::new(None, CLIENT_MAX_FRAME);
        let outbox = Outbox::new([4 << 20, 4 << 20, 64 << 20]);
        let _ = outbox.push(TrafficClass::Control, Bytes::from(proto.hello()), false);
        let (ev_tx, mut ev_rx) = mpsc::channel(256);
        let writer =
            runtime::spawn::<Rt>(conn::run_writer((), sink, outbox.clone(), ev_tx.clone()));
        let reader = runtime::spawn::<Rt>(conn::run_reader((), stream, CLIENT_MAX_FRAME, ev_tx));
        // Wait for the node's hello.
        let mut proto = proto;
        let hello = runtime::timeout::<Rt, _>(timeout, async {
            while let Some(((), ev)) = ev_rx.recv().await {
                match ev {
                    ConnEvent::Frame(f) => {
                        if let Ok(Some(ClientEvent::Hello { node, cluster_id })) =
                            proto.handle_frame(&f)
                        {
                            return Ok((node, cluster_id));
                        }
                    }
                    ConnEvent::TooLarge(_) => {}
                    ConnEvent::ReaderDone(_) | ConnEvent::WriterDone(_) => {
                        return Err(ClientError::Closed);
                    }
                }
            }
            Err(ClientError::Closed)
        })
        .await;
        let (node, cluster_id) = match hello {
            Some(Ok(h)) => h,
            Some(Err(e)) => {
                writer.abort();
                reader.abort();
                return Err(e);
            }
            None => {
                writer.abort();
                reader.abort();
                return Err(ClientError::Timeout(url.to_string()));
            }
        };
        let (tx, rx) = mpsc::channel(1024);
        Rt::spawn(run_client::<Rt>(proto, outbox, rx, ev_rx, writer, reader));
        Ok(Client {
            tx,
            node,
            cluster_id,
            url: addr,
            runtime: PhantomData,
        })
    }

    /// The node this client is connected to.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// That node's cluster.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The node's URL.
    pub fn url(&self) -> &Addr {
        &self.url
    }

    /// A call with JSON arguments (a tuple is a list of positional
    /// arguments).
    pub fn call<A: Serialize + ?Sized>(&self, function: &str, args: &A) -> CallBuilder {
        CallBuilder::new(self.dispatch(), function, serde_json::to_vec(args))
    }

    /// A call with raw-bytes arguments.
    pub fn call_raw(&self, function: &str, args: impl Into<Bytes>) -> CallBuilder {
        CallBuilder::new(self.dispatch(), function, Ok(args.into().to_vec()))
    }

    /// A multi-step call run by the node ([`Node::call_many`](crate::Node::call_many)).
    pub fn call_many(&self, commands: impl IntoIterator<Item = Command>) -> ManyBuilder {
        let tx = self.tx.clone();
        ManyBuilder::new(
            Box::new(move |r| Box::pin(call_many::<Rt>(tx, r))),
            commands,
        )
    }

    fn dispatch(&self) -> Dispatch {
        let tx = self.tx.clone();
        Box::new(move |c| Box::pin(call::<Rt>(tx, c)))
    }

    async fn query(&self, query: Query) -> Result<QueryAnswer, ClientError> {
        let make = |reply| ClientCommand::Query { query, reply };
        ask::<Rt, _>(&self.tx, REPLY_SLACK * 2, make)
            .await
            .map_err(|u| match u {
                Unanswered::Closed => ClientError::Closed,
                Unanswered::Late => ClientError::Timeout(self.url.to_string()),
            })
    }

    /// The node's member table.
    pub async fn members(&self) -> Result<Vec<MemberView>, ClientError> {
        match self.query(Query::Members).await? {
            QueryAnswer::Members(records) => Ok(records
                .into_iter()
                .map(|r| MemberView {
                    id: r.id,
                    addr: r.addr,
                    name: r.name.to_string(),
                    incarnation: r.incarnation,
                    state: r.state,
                })
                .collect()),
            QueryAnswer::Catalog(_) => Err(ClientError::Closed),
        }
    }

    /// The catalog entries of the node's live members.
    pub async fn catalog(&self) -> Result<Vec<FunctionEntry>, ClientError> {
        // CORE-GAP: `QueryAnswer::Catalog` also lists the entries of Dead
        // and Left owners (kept until garbage collection, unroutable); the
        // client filters them out with a second, `Members` query.
        let live: HashMap<NodeId, MemberState> = self
            .members()
            .await?
            .into_iter()
            .map(|m| (m.id, m.state))
            .collect();
        match self.query(Query::Catalog).await? {
            QueryAnswer::Catalog(entries) => Ok(entries
                .into_iter()
                .filter(|(node, ..)| live.get(node).is_some_and(|s| s.is_live()))
                .flat_map(|(node, name, version, body)| {
                    FunctionEntry::of(&name, node, &version, &body)
                })
                .collect()),
            QueryAnswer::Members(_) => Err(ClientError::Closed),
        }
    }
}

/// Why the connection's task gave no reply.
enum Unanswered {
    /// The connection closed.
    Closed,
    /// None came within the wait.
    Late,
}

/// Sends the command `make` builds to the connection's task and waits up
/// to `wait` for its reply.
async fn ask<Rt: Runtime, T>(
    tx: &mpsc::Sender<ClientCommand>,
    wait: Duration,
    make: impl FnOnce(oneshot::Sender<T>) -> ClientCommand,
) -> Result<T, Unanswered> {
    let (reply, rx) = oneshot::channel();
    tx.send(make(reply)).await.map_err(|_| Unanswered::Closed)?;
    match runtime::timeout::<Rt, _>(wait, rx).await {
        Some(r) => r.map_err(|_| Unanswered::Closed),
        None => Err(Unanswered::Late),
    }
}

/// A call's error when the connection gave no answer.
fn unanswered(u: Unanswered) -> CallError {
    match u {
        Unanswered::Closed => CallError::Unreachable,
        Unanswered::Late => CallError::Timeout,
    }
}

async fn call<Rt: Runtime>(
    tx: mpsc::Sender<ClientCommand>,
    call: Call,
) -> Result<Bytes, CallError> {
    let wait = call.timeout.unwrap_or(DEFAULT_BUDGET) + REPLY_SLACK;
    let make = |reply| ClientCommand::Call { call, reply };
    ask::<Rt, _>(&tx, wait, make)
        .await
        .unwrap_or_else(|u| Err(unanswered(u)))
}

async fn call_many<Rt: Runtime>(
    tx: mpsc::Sender<ClientCommand>,
    request: Request,
) -> Result<Results, ManyError> {
    let wait = request.timeout.unwrap_or(DEFAULT_BUDGET) + REPLY_SLACK;
    let make = |reply| ClientCommand::CallMany { request, reply };
    ask::<Rt, _>(&tx, wait, make)
        .await
        .unwrap_or_else(|u| Err(ManyError::Request(unanswered(u))))
}

enum Waiting {
    Call(oneshot::Sender<Result<Bytes, CallError>>),
    Many(oneshot::Sender<Result<Results, ManyError>>),
    Query(oneshot::Sender<QueryAnswer>),
}

async fn run_client<R: Runtime>(
    mut proto: ClientConn,
    outbox: std::sync::Arc<Outbox>,
    mut cmds: mpsc::Receiver<ClientCommand>,
    mut events: mpsc::Receiver<((), ConnEvent)>,
    writer: Task,
    reader: Task,
) {
    let mut waiting: HashMap<u64, Waiting> = HashMap::new();
    // Whether the writer is still running when the loop ends.
    let mut writing = true;
    loop {
        tokio::select! {
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { break };
                let (token, frame, w) = match cmd {
                    ClientCommand::Call { call, reply } => {
                        let (t, f) = proto.call(&call);
                        (t, f, Waiting::Call(reply))
                    }
                    ClientCommand::CallMany { request, reply } => {
                        let (t, f) = proto.call_many(&request);
                        (t, f, Waiting::Many(reply))
                    }
                    ClientCommand::Query { query, reply } => {
                        let (t, f) = proto.query(query);
                        (t, f, Waiting::Query(reply))
                    }
                };
                if outbox.push(TrafficClass::Call, Bytes::from(frame), false).is_err() {
                    let full = || CallError::Rejected("the client's queue is full".into());
                    match w {
                        Waiting::Call(r) => drop(r.send(Err(full()))),
                        Waiting::Many(r) => drop(r.send(Err(ManyError::Request(full())))),
                        Waiting::Query(_) => {}
                    }
                    continue;
                }
                waiting.insert(token, w);
            }
            ev = events.recv() => {
                match ev {
                    Some(((), ConnEvent::Frame(f))) => match proto.handle_frame(&f) {
                        Ok(Some(ClientEvent::Reply { token, result })) => {
                            if let Some(Waiting::Call(r)) = waiting.remove(&token) {
                                let _ = r.send(result);
                            }
                        }
                        Ok(Some(ClientEvent::ManyReply { token, result })) => {
                            if let Some(Waiting::Many(r)) = waiting.remove(&token) {
                                let _ = r.send(result);
                            }
                        }
                        Ok(Some(ClientEvent::Answer { token, answer })) => {
                            if let Some(Waiting::Query(r)) = waiting.remove(&token) {
                                let _ = r.send(answer);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "undecodable frame from the node"),
                    },
                    Some(((), ConnEvent::TooLarge(n))) => {
                        tracing::warn!(size = n, "the node sent a frame above the client's limit");
                    }
                    Some(((), ConnEvent::ReaderDone(_))) => break,
                    Some(((), ConnEvent::WriterDone(_))) | None => {
                        writing = false;
                        break;
                    }
                }
            }
        }
    }
    // Pending calls fail as their senders drop (Unreachable).
    drop(waiting);
    outbox.close();
    if writing {
        // Let the writer send what is queued and the close, for a while.
        let written = async {
            while let Some(((), ev)) = events.recv().await {
                if matches!(ev, ConnEvent::WriterDone(_)) {
                    return;
                }
            }
        };
        let _ = runtime::timeout::<R, _>(Duration::from_secs(1), written).await;
    }
    writer.abort();
    reader.abort();
}
