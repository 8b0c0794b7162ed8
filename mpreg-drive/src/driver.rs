//! The drive loop (DESIGN §5): the only owner of the core. Frames in →
//! `handle_frame`, deadlines → `handle_timeout`, the core's orders carried
//! out (dial, send, close, run or cancel a handler, stop), its events to the
//! application. Every other task talks to it through channels, and it never
//! awaits anything but its next input.
//!
//! Every rule is the core's: which address to dial, when to back off, which
//! connection to keep, when to close one, when a leave moves on. This loop
//! gives sockets ids and reports what happened to them.

use crate::api::{FunctionEntry, Handler, Observed, Stats};
use crate::config::RuntimeSettings;
use crate::conn::{self, ConnEvent, Outbox};
use crate::runtime::{self, Runtime, Task};
use crate::transport::{Listener, Transport};
use bytes::Bytes;
use futures_util::FutureExt;
use mpreg_proto::chunk::MAX_CHUNK;
use mpreg_proto::multistep::{ManyError, Request, Results};
use mpreg_proto::{
    Addr, Call, CallError, CallId, Closed, ConnId, Event, FunctionSpec, InvocationId, MemberView,
    Node as Core, Order, RegisterError, RequestId, Time,
};
use semver::Version;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

/// How long a closing connection waits for the other half: after this
/// node's close is written, for the peer's close (reading what it still
/// sends); after the peer's close, for this node's reply to be written;
/// after a failed write, for the reader to tell whether the peer closed
/// cleanly (frames were only unsent) or the connection broke.
const LINGER: Duration = Duration::from_millis(500);

/// Requests from the application handles.
pub(crate) enum Command {
    Register {
        spec: FunctionSpec,
        handler: Handler,
        reply: oneshot::Sender<Result<(), RegisterError>>,
    },
    Unregister {
        name: String,
        version: Version,
        reply: oneshot::Sender<bool>,
    },
    Call {
        token: u64,
        call: Call,
        reply: oneshot::Sender<Result<Bytes, CallError>>,
    },
    CallMany {
        token: u64,
        request: Request,
        reply: oneshot::Sender<Result<Results, ManyError>>,
    },
    Cancel {
        token: u64,
    },
    Join {
        seeds: Vec<Addr>,
    },
    Members {
        reply: oneshot::Sender<Vec<MemberView>>,
    },
    Catalog {
        reply: oneshot::Sender<Vec<FunctionEntry>>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
    Metrics {
        reply: oneshot::Sender<mpreg_proto::Metrics>,
    },
    Connections {
        reply: oneshot::Sender<Vec<mpreg_proto::ConnView>>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
}

/// Connections opened or accepted by helper tasks.
pub(crate) enum NetEvent<T: Transport> {
    Dialed {
        addr: Addr,
        result: io::Result<(T::Sink, T::Stream)>,
    },
    Accepted {
        sink: T::Sink,
        stream: T::Stream,
        peer: SocketAddr,
    },
}

struct Conn {
    outbox: Arc<Outbox>,
    tasks: Vec<Task>,
    /// The peer closed: how it ends once this side's close is written.
    peer_closed: Option<Closed>,
    /// This node's close is written.
    writer_done: bool,
    /// Since when this connection waits for its other half (see
    /// [`LINGER`]), and how it ends if the wait runs out.
    linger: Option<(Instant, Closed)>,
}

pub(crate) struct Driver<T: Transport> {
    transport: T,
    core: Core,
    epoch: Instant,
    rt: RuntimeSettings,
    max_frame: usize,
    conn_tx: mpsc::Sender<(ConnId, ConnEvent)>,
    net_tx: mpsc::UnboundedSender<NetEvent<T>>,
    inv_tx: mpsc::UnboundedSender<(InvocationId, Result<Bytes, String>)>,
    conns: HashMap<ConnId, Conn>,
    /// When each lingering connection's wait runs out, earliest first (the
    /// wait is the same for all; an entry of a connection that ended
    /// meanwhile is skipped).
    lingering: VecDeque<(Instant, ConnId)>,
    next_conn: u64,
    dials: HashMap<Addr, Task>,
    handlers: HashMap<(String, Version), Handler>,
    running: HashMap<InvocationId, Option<Task>>,
    calls: HashMap<CallId, (u64, oneshot::Sender<Result<Bytes, CallError>>)>,
    tokens: HashMap<u64, CallId>,
    requests: HashMap<RequestId, (u64, oneshot::Sender<Result<Results, ManyError>>)>,
    request_tokens: HashMap<u64, RequestId>,
    events: broadcast::Sender<Observed>,
    stats: Stats,
    leaving: Vec<oneshot::Sender<()>>,
    stopped: bool,
}

/// Channels the driver reads.
pub(crate) struct Inputs<T: Transport> {
    pub(crate) cmd: mpsc::Receiver<Command>,
    conn: mpsc::Receiver<(ConnId, ConnEvent)>,
    net: mpsc::UnboundedReceiver<NetEvent<T>>,
    inv: mpsc::UnboundedReceiver<(InvocationId, Result<Bytes, String>)>,
}

impl<T: Transport> Driver<T> {
    pub(crate) fn new(
        transport: T,
        core: Core,
        epoch: Instant,
        rt: RuntimeSettings,
        events: broadcast::Sender<Observed>,
        cmd: mpsc::Receiver<Command>,
    ) -> (Driver<T>, Inputs<T>) {
        let (conn_tx, conn_rx) = mpsc::channel(1024);
        let (net_tx, net_rx) = mpsc::unbounded_channel();
        let (inv_tx, inv_rx) = mpsc::unbounded_channel();
        let max_frame = core.config().limits.max_frame_size;
        let d = Driver {
            transport,
            core,
            epoch,
            rt,
            max_frame,
            conn_tx,
            net_tx,
            inv_tx,
            conns: HashMap::new(),
            lingering: VecDeque::new(),
            next_conn: 0,
            dials: HashMap::new(),
            handlers: HashMap::new(),
            running: HashMap::new(),
            calls: HashMap::new(),
            tokens: HashMap::new(),
            requests: HashMap::new(),
            request_tokens: HashMap::new(),
            events,
            stats: Stats::default(),
            leaving: Vec::new(),
            stopped: false,
        };
        let inputs = Inputs {
            cmd,
            conn: conn_rx,
            net: net_rx,
            inv: inv_rx,
        };
        (d, inputs)
    }

    fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Registers a function before the loop starts (built-ins, configured
    /// functions).
    pub(crate) fn register_now(
        &mut self,
        spec: FunctionSpec,
        handler: Handler,
    ) -> Result<(), RegisterError> {
        let now = self.now();
        let key = (spec.name.to_string(), spec.version.clone());
        self.core.register(now, spec)?;
        self.handlers.insert(key, handler);
        self.drain();
        Ok(())
    }

    pub(crate) fn join_now(&mut self, seeds: Vec<Addr>) {
        let now = self.now();
        if !seeds.is_empty() {
            self.core.join(now, seeds);
        }
        self.drain();
    }

    /// Runs until every handle is gone or the core ordered a stop.
    pub(crate) async fn run(mut self, mut inputs: Inputs<T>, listener: T::Listener) {
        let accept = runtime::spawn_local::<T::Runtime>(accept_loop(
            self.transport.clone(),
            listener,
            self.net_tx.clone(),
            self.core.config().connections.dial_timeout,
        ));
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        while !self.stopped {
            let core_wake = self
                .core
                .poll_timeout()
                .map_or(far, |t| self.epoch + t.since_epoch());
            let linger = self.lingering.front().map(|(t, _)| *t);
            let wake = linger.map_or(core_wake, |l| l.min(core_wake));
            // Unbiased: a flood of application commands must not starve
            // incoming frames (probe acks), nor the reverse.
            tokio::select! {
                cmd = inputs.cmd.recv() => match cmd {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                Some((id, ev)) = inputs.conn.recv() => self.on_conn_event(id, ev),
                Some(ev) = inputs.net.recv() => self.on_net(ev),
                Some((inv, r)) = inputs.inv.recv() => self.on_invocation_done(inv, r),
                _ = T::Runtime::sleep_until(wake) => {}
            }
            if linger.is_some_and(|t| Instant::now() >= t) {
                self.sweep();
            }
            // Fire due timers (checked here first, so the runtime and the
            // core agree on whether a deadline passed), then drain.
            let now = self.now();
            if self.core.poll_timeout().is_some_and(|d| now >= d) {
                self.core.handle_timeout(now);
            }
            self.drain();
        }
        accept.abort();
        for c in self.conns.values() {
            for t in &c.tasks {
                t.abort();
            }
        }
        for d in self.dials.values() {
            d.abort();
        }
        for r in self.leaving.drain(..) {
            let _ = r.send(());
        }
    }

    /// Rule 1 of the run loop: carry out every order, then hand out every
    /// event. Carrying out an order may feed the core (a dial that cannot
    /// start, a full queue), so this loops until both are empty.
    fn drain(&mut self) {
        loop {
            if let Some(o) = self.core.poll_order() {
                self.carry_out(o);
            } else if let Some(e) = self.core.poll_event() {
                self.on_event(e);
            } else {
                return;
            }
        }
    }

    fn carry_out(&mut self, o: Order) {
        let now = self.now();
        match o {
            Order::Send(t) => {
                let Some(c) = self.conns.get(&t.conn) else {
                    return; // closed meanwhile; the core hears it
                };
                if c.outbox.push(t.class, t.frame, t.whole).is_err() {
                    // The peer stopped reading: drop its connection, never
                    // block the loop.
                    self.stats.queue_overflows += 1;
                    tracing::warn!(
                        conn = t.conn.0,
                        queued = c.outbox.queued_bytes(),
                        "outbox full: dropping the connection"
                    );
                    self.end_conn(t.conn, Closed::Lost);
                }
            }
            Order::Dial(addr) => self.dial(now, addr),
            Order::Close(id) => {
                if let Some(c) = self.conns.get(&id) {
                    c.outbox.close();
                }
            }
            Order::Abort(id) => self.end_conn(id, Closed::Lost),
            Order::Invoke(inv) => self.invoke(now, *inv),
            Order::Cancel(id) => {
                // A blocking handler cannot be stopped; its late result is
                // ignored by the core.
                if let Some(Some(h)) = self.running.remove(&id) {
                    h.abort();
                }
            }
            Order::Stop => {
                tracing::debug!(connections = self.conns.len(), "stopped");
                self.stopped = true;
            }
        }
    }

    // ----- connections ----------------------------------------------------------

    fn dial(&mut self, now: Time, addr: Addr) {
        let dialable = addr
            .url()
            .is_some_and(|u| u.scheme == self.transport.scheme());
        if !dialable {
            self.core.handle_dial_failed(now, &addr);
            return;
        }
        let (transport, tx, a) = (self.transport.clone(), self.net_tx.clone(), addr.clone());
        // The core gives up on the dial by itself; this bounds the task.
        let timeout = self.core.config().connections.dial_timeout;
        let task = runtime::spawn_local::<T::Runtime>(async move {
            let result = runtime::timeout::<T::Runtime, _>(timeout, transport.dial(&a, MAX_CHUNK))
                .await
                .unwrap_or_else(|| Err(io::Error::new(io::ErrorKind::TimedOut, "dial timed out")));
            let _ = tx.send(NetEvent::Dialed { addr: a, result });
        });
        if let Some(old) = self.dials.insert(addr, task) {
            old.abort();
        }
    }

    fn open(&mut self, sink: T::Sink, stream: T::Stream) -> ConnId {
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        let outbox = Outbox::new(self.rt.queue_caps());
        let w = runtime::spawn_local::<T::Runtime>(conn::run_writer(
            id,
            sink,
            outbox.clone(),
            self.conn_tx.clone(),
        ));
        let r = runtime::spawn_local::<T::Runtime>(conn::run_reader(
            id,
            stream,
            self.max_frame,
            self.conn_tx.clone(),
        ));
        self.conns.insert(
            id,
            Conn {
                outbox,
                tasks: vec![w, r],
                peer_closed: None,
                writer_done: false,
                linger: None,
            },
        );
        id
    }

    fn on_net(&mut self, ev: NetEvent<T>) {
        let now = self.now();
        match ev {
            NetEvent::Dialed { addr, result } => {
                self.dials.remove(&addr);
                match result {
                    Ok((sink, stream)) => {
                        let id = self.open(sink, stream);
                        self.core.handle_dialed(now, &addr, id);
                    }
                    Err(e) => {
                        tracing::debug!(peer = %addr, error = %e, "dial failed");
                        self.core.handle_dial_failed(now, &addr);
                    }
                }
            }
            NetEvent::Accepted { sink, stream, peer } => {
                let id = self.open(sink, stream);
                tracing::trace!(%peer, conn = id.0, "accepted");
                self.core.handle_accepted(now, id);
            }
        }
    }

    fn on_conn_event(&mut self, id: ConnId, ev: ConnEvent) {
        let now = self.now();
        let Some(c) = self.conns.get_mut(&id) else {
            return; // ended already (a late frame of a lingering reader)
        };
        let was_lingering = c.linger.is_some();
        match ev {
            ConnEvent::Frame(frame) => {
                if let Err(e) = self.core.handle_frame(now, id, &frame) {
                    self.stats.frames_rejected += 1;
                    tracing::debug!(conn = id.0, error = %e, "frame rejected");
                }
            }
            ConnEvent::TooLarge(n) => {
                self.stats.frames_too_large += 1;
                tracing::warn!(
                    conn = id.0,
                    size = n,
                    limit = self.max_frame,
                    "oversized frame skipped"
                );
            }
            ConnEvent::ReaderDone(Some(e)) => {
                tracing::debug!(conn = id.0, error = %e, "connection broke");
                self.end_conn(id, Closed::Lost);
            }
            ConnEvent::ReaderDone(None) if c.writer_done => self.end_conn(id, Closed::Clean),
            ConnEvent::ReaderDone(None) => {
                // The peer closed cleanly: everything it sent arrived. What
                // this side still had queued did not.
                let failed = c.linger.is_some();
                let how = if failed || !c.outbox.is_idle() {
                    Closed::Unsent
                } else {
                    Closed::Clean
                };
                if failed {
                    return self.end_conn(id, how);
                }
                // Answer the close, then end.
                c.peer_closed = Some(how);
                c.linger = Some((Instant::now(), how));
                c.outbox.close();
            }
            ConnEvent::WriterDone(None) => match c.peer_closed {
                Some(how) => self.end_conn(id, how),
                None => {
                    // This node's close is written: read what the peer still
                    // sends until its close arrives, or for a while.
                    c.writer_done = true;
                    c.linger = Some((Instant::now(), Closed::Clean));
                }
            },
            ConnEvent::WriterDone(Some(e)) => {
                tracing::debug!(conn = id.0, error = %e, "write failed");
                match c.peer_closed {
                    Some(_) => self.end_conn(id, Closed::Unsent),
                    None => c.linger = Some((Instant::now(), Closed::Lost)),
                }
            }
        }
        if !was_lingering && let Some((since, _)) = self.conns.get(&id).and_then(|c| c.linger) {
            self.lingering.push_back((since + LINGER, id));
        }
    }

    /// Ends connections that waited [`LINGER`] for their other half.
    fn sweep(&mut self) {
        let now = Instant::now();
        while let Some(&(ends, id)) = self.lingering.front()
            && ends <= now
        {
            self.lingering.pop_front();
            if let Some((_, how)) = self.conns.get(&id).and_then(|c| c.linger) {
                self.end_conn(id, how);
            }
        }
    }

    /// Drops a connection's tasks and tells the core.
    fn end_conn(&mut self, id: ConnId, how: Closed) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        for t in &c.tasks {
            t.abort();
        }
        tracing::trace!(conn = id.0, ?how, "closed");
        let now = self.now();
        self.core.handle_closed(now, id, how);
    }

    // ----- commands and events ---------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::Register {
                spec,
                handler,
                reply,
            } => {
                let _ = reply.send(self.register_now(spec, handler));
            }
            Command::Unregister {
                name,
                version,
                reply,
            } => {
                let done = self.core.unregister(now, &name, &version);
                self.handlers.remove(&(name, version));
                let _ = reply.send(done);
            }
            Command::Call { token, call, reply } => match self.core.call(now, call) {
                Ok(id) => {
                    self.tokens.insert(token, id);
                    self.calls.insert(id, (token, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::CallMany {
                token,
                request,
                reply,
            } => {
                let id = self.core.call_many(now, request);
                self.request_tokens.insert(token, id);
                self.requests.insert(id, (token, reply));
            }
            Command::Cancel { token } => {
                if let Some(id) = self.tokens.remove(&token) {
                    self.calls.remove(&id);
                    let _ = self.core.cancel(now, id);
                }
                if let Some(id) = self.request_tokens.remove(&token) {
                    self.requests.remove(&id);
                    let _ = self.core.cancel_many(now, id);
                }
            }
            Command::Join { seeds } => self.core.join(now, seeds),
            Command::Members { reply } => {
                let _ = reply.send(self.core.members().collect());
            }
            Command::Catalog { reply } => {
                let _ = reply.send(self.catalog());
            }
            Command::Stats { reply } => {
                let m = self.core.metrics();
                let mut s = self.stats.clone();
                s.connections = self.conns.len();
                s.kept = self.core.connections().filter(|c| c.kept).count();
                s.dials = m.dials;
                s.dial_failures = m.dial_failures;
                s.accepted = m.connections_accepted;
                s.refused = m.connections_refused;
                s.idle_closed = m.connections_idle_closed;
                s.running_invocations = self.core.running_invocations();
                s.pending_calls = self.core.pending_calls();
                s.live_members = self.core.live_members();
                s.local_health = self.core.local_health();
                let _ = reply.send(s);
            }
            Command::Metrics { reply } => {
                let _ = reply.send(self.core.metrics().clone());
            }
            Command::Connections { reply } => {
                let _ = reply.send(self.core.connections().collect());
            }
            Command::Leave { reply } => {
                tracing::debug!(connections = self.conns.len(), "leaving");
                for c in self.core.connections() {
                    tracing::trace!(conn = c.id.0, addr = %c.addr, client = c.client, "open at leave");
                }
                self.leaving.push(reply);
                self.core.leave(now);
            }
        }
    }

    fn catalog(&self) -> Vec<FunctionEntry> {
        let mut out = Vec::new();
        for (name, _) in self.core.catalog().functions() {
            for p in self.core.live_providers(name) {
                out.extend(FunctionEntry::of(name, p.node, &p.version, &p.body));
            }
        }
        out
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::CallDone { call, result } => {
                if let Some((token, reply)) = self.calls.remove(&call) {
                    self.tokens.remove(&token);
                    let _ = reply.send(result);
                }
            }
            Event::ManyDone { request, result } => {
                if let Some((token, reply)) = self.requests.remove(&request) {
                    self.request_tokens.remove(&token);
                    let _ = reply.send(result);
                }
            }
            event => {
                if let Event::LimitHit(l) = &event {
                    tracing::warn!(limit = ?l, "a configured limit was hit");
                }
                let _ = self.events.send(Observed {
                    at: Instant::now(),
                    event,
                });
            }
        }
    }

    fn invoke(&mut self, now: Time, inv: mpreg_proto::Invocation) {
        let key = (inv.function.to_string(), inv.version.clone());
        let Some(handler) = self.handlers.get(&key).cloned() else {
            let _ = self.core.complete_invocation(
                now,
                inv.id,
                Err(format!("no handler for {} {}", inv.function, inv.version)),
            );
            return;
        };
        let (id, tx) = (inv.id, self.inv_tx.clone());
        match handler {
            Handler::Async(f) => {
                let fut = f(inv.args);
                let task = runtime::spawn_local::<T::Runtime>(async move {
                    let r = AssertUnwindSafe(fut)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err("the handler panicked".to_string()));
                    let _ = tx.send((id, r));
                });
                self.running.insert(id, Some(task));
            }
            Handler::Blocking(f) => {
                let args = inv.args;
                T::Runtime::spawn_blocking(move || {
                    let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(args)))
                        .unwrap_or_else(|_| Err("the handler panicked".to_string()));
                    let _ = tx.send((id, r));
                });
                self.running.insert(id, None);
            }
        }
    }

    fn on_invocation_done(&mut self, id: InvocationId, r: Result<Bytes, String>) {
        if self.running.remove(&id).is_some() {
            let now = self.now();
            let _ = self.core.complete_invocation(now, id, r);
        }
    }
}

async fn accept_loop<T: Transport>(
    transport: T,
    mut listener: T::Listener,
    tx: mpsc::UnboundedSender<NetEvent<T>>,
    timeout: Duration,
) {
    loop {
        match listener.accept().await {
            Ok((accepting, peer)) => {
                let (transport, tx) = (transport.clone(), tx.clone());
                T::Runtime::spawn_local(async move {
                    let handshake = transport.handshake(accepting, MAX_CHUNK);
                    match runtime::timeout::<T::Runtime, _>(timeout, handshake).await {
                        Some(Ok((sink, stream))) => {
                            let _ = tx.send(NetEvent::Accepted { sink, stream, peer });
                        }
                        Some(Err(e)) => tracing::debug!(%peer, error = %e, "handshake failed"),
                        None => tracing::debug!(%peer, "handshake timed out"),
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(error = %e, "accept failed");
                T::Runtime::sleep_until(Instant::now() + Duration::from_millis(50)).await;
            }
        }
    }
}
