//! The drive loop (DESIGN §5): frames in → `handle_frame`, deadlines →
//! `handle_timeout`, transmits → connection outboxes, events → the
//! application and handlers. It is the only owner of the core and of the
//! connection table; every other task talks to it through channels, and it
//! never awaits anything but its next input.
//!
//! Connection management lives here and is reported to the core only as
//! reachability (`handle_connected`, `handle_closed`, `handle_unreachable`).

use crate::chunk::MAX_CHUNK;
use crate::config::RuntimeSettings;
use crate::conn::{self, ConnEvent, Outbox};
use crate::node::{FunctionEntry, Handler, NodeEvent, Observed, Stats};
use crate::transport::{Listener, Transport};
use bytes::Bytes;
use futures_util::FutureExt;
use mpreg_proto::{
    Addr, Call, CallError, CallId, Event, FunctionSpec, InvocationId, MemberView, Node as Core,
    RegisterError, Role, Time, Transmit,
};
use semver::Version;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::{AbortHandle, spawn_local};

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
    Leave {
        grace: Duration,
        reply: oneshot::Sender<()>,
    },
}

/// Connections opened or accepted by helper tasks.
pub(crate) enum NetEvent<T: Transport> {
    Dialed {
        conn: u64,
        result: io::Result<(T::Sink, T::Stream)>,
    },
    Accepted {
        sink: T::Sink,
        stream: T::Stream,
        peer: SocketAddr,
    },
}

struct Conn {
    /// The address frames from it are attributed to: the peer's advertised
    /// address once its `Hello` arrived, a unique `inbound://` key before
    /// (and for clients).
    key: Addr,
    outbound: bool,
    open: bool,
    client: bool,
    outbox: std::sync::Arc<Outbox>,
    last_activity: Instant,
    tasks: Vec<AbortHandle>,
    /// Close requested at this instant.
    closing: Option<Instant>,
    reader_done: bool,
    writer_done: bool,
}

#[derive(Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
}

enum LeavePhase {
    /// Functions withdrawn, new calls refused; waiting for in-flight ones.
    Draining(Instant),
    /// `Left` sent; waiting for outboxes to flush.
    Flushing(Instant),
    /// Connections asked to close.
    Closing(Instant),
}

pub(crate) struct Driver<T: Transport> {
    transport: T,
    core: Core,
    epoch: Instant,
    rt: RuntimeSettings,
    max_frame: usize,
    conn_tx: mpsc::Sender<(u64, ConnEvent)>,
    net_tx: mpsc::UnboundedSender<NetEvent<T>>,
    inv_tx: mpsc::UnboundedSender<(InvocationId, Result<Bytes, String>)>,
    conns: HashMap<u64, Conn>,
    by_addr: HashMap<Addr, u64>,
    keep: HashSet<Addr>,
    backoff: HashMap<Addr, Backoff>,
    next_conn: u64,
    handlers: HashMap<(String, Version), Handler>,
    running: HashMap<InvocationId, Option<AbortHandle>>,
    calls: HashMap<CallId, (u64, oneshot::Sender<Result<Bytes, CallError>>)>,
    tokens: HashMap<u64, CallId>,
    events: broadcast::Sender<Observed>,
    unreachable: Vec<Addr>,
    stats: Stats,
    leaving: Option<(LeavePhase, Vec<oneshot::Sender<()>>)>,
    finished: bool,
}

/// Channels the driver reads.
pub(crate) struct Inputs<T: Transport> {
    pub(crate) cmd: mpsc::Receiver<Command>,
    conn: mpsc::Receiver<(u64, ConnEvent)>,
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
            by_addr: HashMap::new(),
            keep: HashSet::new(),
            backoff: HashMap::new(),
            next_conn: 0,
            handlers: HashMap::new(),
            running: HashMap::new(),
            calls: HashMap::new(),
            tokens: HashMap::new(),
            events,
            unreachable: Vec::new(),
            stats: Stats::default(),
            leaving: None,
            finished: false,
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

    fn instant_of(&self, t: Time) -> Instant {
        self.epoch + t.since_epoch()
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
        self.drain(now);
        Ok(())
    }

    pub(crate) fn join_now(&mut self, seeds: Vec<Addr>) {
        let now = self.now();
        if !seeds.is_empty() {
            self.core.join(now, seeds);
        }
        self.drain(now);
    }

    /// Runs until every handle is gone, the node left, or it was aborted.
    pub(crate) async fn run(mut self, mut inputs: Inputs<T>, listener: T::Listener) {
        let accept = spawn_local(accept_loop(
            self.transport.clone(),
            listener,
            self.net_tx.clone(),
            self.rt.dial_timeout,
        ));
        let mut sweep = tokio::time::interval(self.rt.idle_timeout.min(Duration::from_secs(4)) / 4);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let wake = self.next_wake().unwrap_or(far);
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
                _ = sweep.tick() => self.sweep(),
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            self.after_input();
            if self.finished {
                break;
            }
        }
        accept.abort();
        for c in self.conns.values() {
            for t in &c.tasks {
                t.abort();
            }
        }
        if let Some((_, replies)) = self.leaving.take() {
            for r in replies {
                let _ = r.send(());
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let core = self.core.poll_timeout().map(|t| self.instant_of(t));
        let leave = self
            .leaving
            .as_ref()
            .map(|_| Instant::now() + Duration::from_millis(5));
        match (core, leave) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// After every input: fire due timers (checked here first, so the
    /// adapter and the core agree on whether a deadline passed), drain the
    /// outputs, advance a graceful leave.
    fn after_input(&mut self) {
        let now = self.now();
        if let Some(deadline) = self.core.poll_timeout()
            && now >= deadline
        {
            self.core.handle_timeout(now);
        }
        self.drain(now);
        self.progress_leave(now);
    }

    /// Rule 1 of the run loop: drain transmits, then events; report
    /// addresses that could not be served, and drain again.
    fn drain(&mut self, now: Time) {
        let mut reported: HashSet<Addr> = HashSet::new();
        loop {
            while let Some(t) = self.core.poll_transmit() {
                self.route(t);
            }
            if let Some(e) = self.core.poll_event() {
                self.on_event(now, e);
                continue;
            }
            let pending: Vec<Addr> = std::mem::take(&mut self.unreachable)
                .into_iter()
                .filter(|a| reported.insert(a.clone()))
                .collect();
            if pending.is_empty() {
                break;
            }
            for a in pending {
                self.core.handle_unreachable(now, &a);
            }
        }
        self.unreachable.clear();
    }

    fn report_unreachable(&mut self, addr: Addr) {
        if !self.unreachable.contains(&addr) {
            self.unreachable.push(addr);
        }
    }

    // ----- outgoing frames ----------------------------------------------------

    fn route(&mut self, t: Transmit) {
        if let Some(&id) = self.by_addr.get(&t.to)
            && let Some(c) = self.conns.get_mut(&id)
        {
            c.last_activity = Instant::now();
            if c.outbox.push(t.class, t.frame).is_err() {
                // The peer stopped reading: drop its queue and connection,
                // never block the loop.
                self.stats.queue_overflows += 1;
                tracing::warn!(peer = %t.to, queued = c.outbox.queued_bytes(), "outbox full: dropping the connection");
                self.end_conn(id, false);
            }
            return;
        }
        if !self.dialable(&t.to) {
            self.report_unreachable(t.to);
            return;
        }
        if let Some(b) = self.backoff.get(&t.to)
            && Instant::now() < b.until
        {
            self.report_unreachable(t.to);
            return;
        }
        let id = self.new_conn(t.to.clone(), true);
        if let Some(c) = self.conns.get(&id) {
            // An empty lane always takes a frame.
            let _ = c.outbox.push(t.class, t.frame);
        }
        self.stats.dials += 1;
        let (transport, addr, tx, timeout) = (
            self.transport.clone(),
            t.to,
            self.net_tx.clone(),
            self.rt.dial_timeout,
        );
        let task = spawn_local(async move {
            let result = match tokio::time::timeout(timeout, transport.dial(&addr, MAX_CHUNK)).await
            {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "dial timed out")),
            };
            let _ = tx.send(NetEvent::Dialed { conn: id, result });
        });
        if let Some(c) = self.conns.get_mut(&id) {
            c.tasks.push(task.abort_handle());
        }
    }

    fn dialable(&self, addr: &Addr) -> bool {
        addr.as_str()
            .strip_prefix(self.transport.scheme())
            .is_some_and(|r| r.starts_with("://"))
            && *addr != *self.core.addr()
    }

    fn new_conn(&mut self, key: Addr, outbound: bool) -> u64 {
        self.next_conn += 1;
        let id = self.next_conn;
        self.conns.insert(
            id,
            Conn {
                key: key.clone(),
                outbound,
                open: !outbound,
                client: false,
                outbox: Outbox::new(self.rt.queue_caps()),
                last_activity: Instant::now(),
                tasks: Vec::new(),
                closing: None,
                reader_done: false,
                writer_done: false,
            },
        );
        self.by_addr.insert(key, id);
        id
    }

    fn start_io(&mut self, id: u64, sink: T::Sink, stream: T::Stream) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let w = spawn_local(conn::run_writer(
            id,
            sink,
            c.outbox.clone(),
            self.conn_tx.clone(),
        ));
        let r = spawn_local(conn::run_reader(
            id,
            stream,
            self.max_frame,
            self.conn_tx.clone(),
        ));
        c.tasks.push(w.abort_handle());
        c.tasks.push(r.abort_handle());
    }

    // ----- connection events ----------------------------------------------------

    fn on_net(&mut self, ev: NetEvent<T>) {
        let now = self.now();
        match ev {
            NetEvent::Dialed { conn, result } => match result {
                Ok((sink, stream)) => {
                    let Some(c) = self.conns.get_mut(&conn) else {
                        return; // dropped while dialling
                    };
                    c.open = true;
                    c.last_activity = Instant::now();
                    let key = c.key.clone();
                    self.backoff.remove(&key);
                    self.start_io(conn, sink, stream);
                    self.core.handle_connected(now, &key);
                }
                Err(e) => {
                    self.stats.dial_failures += 1;
                    let Some(c) = self.conns.get(&conn) else {
                        return;
                    };
                    let key = c.key.clone();
                    tracing::debug!(peer = %key, error = %e, "dial failed");
                    let failures = self.backoff.get(&key).map_or(0, |b| b.failures) + 1;
                    let delay = self
                        .rt
                        .backoff_min
                        .saturating_mul(1 << (failures - 1).min(16))
                        .min(self.rt.backoff_max);
                    self.backoff.insert(
                        key,
                        Backoff {
                            failures,
                            until: Instant::now() + delay,
                        },
                    );
                    self.end_conn(conn, false);
                }
            },
            NetEvent::Accepted { sink, stream, peer } => {
                let closing = matches!(
                    self.leaving,
                    Some((LeavePhase::Flushing(_) | LeavePhase::Closing(_), _))
                );
                if self.conns.len() >= self.rt.max_connections || closing {
                    self.stats.refused += 1;
                    return; // dropping the halves closes it
                }
                self.stats.accepted += 1;
                let key = Addr::new(format!("inbound://{peer}/{}", self.next_conn + 1));
                let id = self.new_conn(key, false);
                self.start_io(id, sink, stream);
            }
        }
    }

    fn on_conn_event(&mut self, id: u64, ev: ConnEvent) {
        let now = self.now();
        match ev {
            ConnEvent::Frame(frame) => {
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                c.last_activity = Instant::now();
                let key = c.key.clone();
                match self.core.handle_frame(now, &key, &frame) {
                    Ok(r) => {
                        if let Some(h) = r.hello {
                            match h.role {
                                Role::Client => {
                                    if let Some(c) = self.conns.get_mut(&id) {
                                        c.client = true;
                                    }
                                }
                                Role::Member if h.addr != key => self.rekey(id, h.addr),
                                Role::Member => {}
                            }
                        }
                    }
                    Err(e) => {
                        self.stats.frames_rejected += 1;
                        tracing::debug!(peer = %key, error = %e, "frame rejected");
                    }
                }
            }
            ConnEvent::TooLarge(n) => {
                self.stats.frames_too_large += 1;
                tracing::warn!(
                    conn = id,
                    size = n,
                    limit = self.max_frame,
                    "oversized frame skipped"
                );
            }
            ConnEvent::ReaderDone(err) => {
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                c.reader_done = true;
                if err.is_some() || c.closing.is_none() || c.writer_done {
                    if let Some(e) = &err {
                        tracing::debug!(peer = %c.key, error = %e, "connection broke");
                    }
                    self.end_conn(id, err.is_none());
                }
            }
            ConnEvent::WriterDone(err) => {
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                c.writer_done = true;
                if err.is_some() || c.reader_done {
                    self.end_conn(id, err.is_none());
                }
            }
        }
    }

    /// An accepted connection said who it is: key it by the peer's address.
    /// If there is already a connection to that address, both ends keep the
    /// one dialled by the lower address (or, both in the same direction,
    /// the newer); the other stays open for reading and idles out.
    fn rekey(&mut self, id: u64, key: Addr) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut c.key, key.clone());
        if self.by_addr.get(&old) == Some(&id) {
            self.by_addr.remove(&old);
        }
        match self.by_addr.get(&key).copied() {
            Some(other) if other != id => {
                if self.prefer(id, other) {
                    self.by_addr.insert(key, id);
                }
            }
            _ => {
                self.by_addr.insert(key, id);
            }
        }
    }

    fn prefer(&self, a: u64, b: u64) -> bool {
        let (Some(ca), Some(cb)) = (self.conns.get(&a), self.conns.get(&b)) else {
            return true;
        };
        if ca.outbound != cb.outbound {
            let dial_wins = self.core.addr() < &ca.key;
            ca.outbound == dial_wins
        } else {
            a > b
        }
    }

    /// Removes a connection and tells the core what it means: a clean close
    /// of the connection it used, or frames lost.
    fn end_conn(&mut self, id: u64, clean: bool) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        for t in &c.tasks {
            t.abort();
        }
        let lost = !c.open || !c.outbox.is_idle();
        let primary = self.by_addr.get(&c.key) == Some(&id);
        if primary {
            self.by_addr.remove(&c.key);
            // Promote another open connection to the same peer, if any.
            if let Some((&other, _)) = self
                .conns
                .iter()
                .filter(|(_, o)| o.key == c.key && o.closing.is_none())
                .max_by_key(|(i, o)| (o.open, **i))
            {
                self.by_addr.insert(c.key.clone(), other);
            }
        }
        if self.leaving.is_some() || self.core.status() == mpreg_proto::Status::Left {
            return;
        }
        if lost || (primary && !clean) {
            self.report_unreachable(c.key);
        } else if primary {
            self.core.handle_closed(self.now(), &c.key);
        }
    }

    /// Closes connections idle for the idle timeout: duplicates always,
    /// others unless the core keeps them (active view) or a client waits on
    /// them; drops connections whose close takes too long.
    fn sweep(&mut self) {
        let now = Instant::now();
        let idle = self.rt.idle_timeout;
        let client_idle = self.rt.client_idle_timeout;
        let mut close = Vec::new();
        let mut kill = Vec::new();
        for (&id, c) in &self.conns {
            if let Some(t) = c.closing {
                if now.duration_since(t) > self.rt.dial_timeout {
                    kill.push(id);
                }
                continue;
            }
            let quiet = now.duration_since(c.last_activity);
            let primary = self.by_addr.get(&c.key) == Some(&id);
            let limit = if c.client { client_idle } else { idle };
            if c.open
                && quiet >= limit
                && c.outbox.is_idle()
                && (!primary || !self.keep.contains(&c.key))
            {
                close.push(id);
            }
        }
        for id in kill {
            self.end_conn(id, true);
        }
        // Forget failures long past, so the table stays bounded.
        let forget = self.rt.backoff_max * 8;
        self.backoff.retain(|_, b| now < b.until + forget);
        let t = self.now();
        for id in close {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            c.closing = Some(now);
            c.outbox.close();
            let key = c.key.clone();
            self.stats.idle_closed += 1;
            if self.by_addr.get(&key) == Some(&id) {
                self.by_addr.remove(&key);
                self.core.handle_closed(t, &key);
            }
        }
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
            Command::Cancel { token } => {
                if let Some(id) = self.tokens.remove(&token) {
                    self.calls.remove(&id);
                    let _ = self.core.cancel(now, id);
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
                let mut s = self.stats.clone();
                s.connections = self.conns.len();
                s.kept = self.keep.len();
                s.running_invocations = self.core.running_invocations();
                s.pending_calls = self.core.pending_calls();
                s.live_members = self.core.live_members();
                s.local_health = self.core.local_health();
                let _ = reply.send(s);
            }
            Command::Metrics { reply } => {
                let _ = reply.send(self.core.metrics().clone());
            }
            Command::Leave { grace, reply } => match &mut self.leaving {
                Some((_, replies)) => replies.push(reply),
                None => {
                    self.core.drain(now);
                    self.leaving =
                        Some((LeavePhase::Draining(Instant::now() + grace), vec![reply]));
                }
            },
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

    fn on_event(&mut self, now: Time, e: Event) {
        let app = match e {
            Event::Invoke(inv) => {
                self.invoke(now, inv);
                return;
            }
            Event::InvocationCancelled(id) => {
                if let Some(Some(h)) = self.running.remove(&id) {
                    h.abort();
                    let _ = self
                        .core
                        .complete_invocation(now, id, Err("cancelled".into()));
                } else if self.running.contains_key(&id) {
                    // A blocking handler cannot be stopped; its result is
                    // dropped by the core when it arrives.
                }
                return;
            }
            Event::CallDone { call, result } => {
                if let Some((token, reply)) = self.calls.remove(&call) {
                    self.tokens.remove(&token);
                    let _ = reply.send(result);
                }
                return;
            }
            Event::Connect(addr) => {
                self.keep.insert(addr);
                return;
            }
            Event::Disconnect(addr) => {
                self.keep.remove(&addr);
                return;
            }
            Event::MemberUp { id, addr } => NodeEvent::MemberUp { id, addr },
            Event::MemberSuspect { id } => NodeEvent::MemberSuspect { id },
            Event::MemberDown { id } => NodeEvent::MemberDown { id },
            Event::MemberLeft { id } => NodeEvent::MemberLeft { id },
            Event::FunctionAdded {
                node,
                name,
                version,
            } => NodeEvent::FunctionAdded {
                node,
                name: name.to_string(),
                version,
            },
            Event::FunctionRemoved {
                node,
                name,
                version,
            } => NodeEvent::FunctionRemoved {
                node,
                name: name.to_string(),
                version,
            },
            Event::LimitHit(l) => {
                tracing::warn!(limit = ?l, "a configured limit was hit");
                NodeEvent::LimitHit(l)
            }
        };
        let _ = self.events.send(Observed {
            at: Instant::now(),
            event: app,
        });
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
                let budget = inv.budget.max(Duration::from_millis(1));
                let task = spawn_local(async move {
                    let r = match tokio::time::timeout(budget, AssertUnwindSafe(fut).catch_unwind())
                        .await
                    {
                        Ok(Ok(r)) => r,
                        Ok(Err(_)) => Err("the handler panicked".to_string()),
                        Err(_) => Err("the handler outlived the call's budget".to_string()),
                    };
                    let _ = tx.send((id, r));
                });
                self.running.insert(id, Some(task.abort_handle()));
            }
            Handler::Blocking(f) => {
                let args = inv.args;
                tokio::task::spawn_blocking(move || {
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

    // ----- graceful leave ---------------------------------------------------------

    fn progress_leave(&mut self, now: Time) {
        let Some((phase, _)) = &self.leaving else {
            return;
        };
        let at = Instant::now();
        let next = match phase {
            LeavePhase::Draining(deadline) => {
                if self.core.running_invocations() > 0 && at < *deadline {
                    return;
                }
                self.core.leave(now);
                self.drain(now);
                Some(LeavePhase::Flushing(at + self.rt.flush_timeout))
            }
            LeavePhase::Flushing(deadline) => {
                let flushed = self.conns.values().all(|c| c.outbox.is_idle());
                if !flushed && at < *deadline {
                    return;
                }
                for c in self.conns.values_mut() {
                    c.closing.get_or_insert(at);
                    c.outbox.close();
                }
                Some(LeavePhase::Closing(at + Duration::from_secs(1)))
            }
            LeavePhase::Closing(deadline) => {
                let open = self.conns.values().any(|c| c.open && !c.writer_done);
                if open && at < *deadline {
                    return;
                }
                self.finished = true;
                None
            }
        };
        if let (Some(next), Some((phase, _))) = (next, self.leaving.as_mut()) {
            *phase = next;
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
                spawn_local(async move {
                    match tokio::time::timeout(timeout, transport.handshake(accepting, MAX_CHUNK))
                        .await
                    {
                        Ok(Ok((sink, stream))) => {
                            let _ = tx.send(NetEvent::Accepted { sink, stream, peer });
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "handshake failed"),
                        Err(_) => tracing::debug!(%peer, "handshake timed out"),
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
