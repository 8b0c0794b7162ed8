//! The [`Node`]: every concern of the protocol tied into one state machine.
//!
//! The submodules each implement one concern as `impl Node` blocks:
//! `session` (per-address protocol state, sending frames), `membership`
//! (probes, suspicion, refutation, join and leave), `overlay` (the active
//! and passive views), `broadcast` (Plumtree), `sync` (anti-entropy) and
//! `calls` (routing, invocations, deduplication).

mod admission;
mod broadcast;
mod calls;
mod conns;
mod federation;
mod membership;
mod overlay;
mod requests;
mod sync;

pub use calls::Call;
pub use requests::RequestId;

use crate::auth::{Admission, Keypair, Refusal};
use crate::catalog::{Catalog, FunctionSpec};
use crate::config::{Config, ConfigError};
use crate::digest::RangeTree;
use crate::error::{CallError, FrameError, InvocationError, RegisterError};
use crate::event::{Closed, ConnId, Event, Order};
use crate::id::{Addr, CallId, Incarnation, InvocationId, NodeId};
use crate::members::MemberTable;
use crate::metrics::{Limit, Metrics, RejectReason};
use crate::records::MemberState;
use crate::time::Time;
use crate::timers::{Timer, Timers};
use crate::wire::{self, DecodeError, MemberRecord, Message, MessageKind, Role};
use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

/// Who a node is: its key pair, its id, where it listens, and its
/// incarnation.
///
/// A restarting process must use an incarnation above any it used before:
/// the persisted last one + 1, else the Unix time in seconds (a generation
/// number). The core never reads a clock, so the runtime supplies it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Identity {
    /// Stable node id: [`Identity::new`] derives it from the key, as every
    /// cluster with an [`Admission`](crate::Admission) policy requires. An
    /// id of your own choosing works only in open clusters (tests, sims).
    pub id: NodeId,
    /// The node's key pair.
    pub key: Keypair,
    /// Address peers dial.
    pub addr: Addr,
    /// Incarnation of this process.
    pub incarnation: Incarnation,
}

impl Identity {
    /// The identity of `key`'s node at `addr`, its id derived from the key.
    pub fn new(key: Keypair, addr: Addr, incarnation: Incarnation) -> Identity {
        Identity {
            id: key.node_id(),
            key,
            addr,
            incarnation,
        }
    }
}

/// What a `Hello` said.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct PeerHello {
    /// The sender's id.
    pub(crate) node: NodeId,
    /// The key of its connection from now on.
    pub(crate) addr: Addr,
    /// Member or client.
    pub(crate) role: Role,
}

/// Where the node is in its life. A graceful [`leave`](Node::leave) goes
/// through every state in order.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Status {
    /// A member (possibly alone, waiting for others or seeds).
    Active,
    /// Leaving: its functions are withdrawn, new calls are refused (with
    /// an answer saying they did not run), running handlers finish.
    Draining,
    /// Has announced `Left`; its connections flush and close.
    Left,
    /// Done: it sends and answers nothing ([`Order::Stop`] was issued).
    Stopped,
}

/// A connection as the core sees it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConnView {
    /// The runtime's id for it.
    pub id: ConnId,
    /// Its key: the peer's address, or `conn:ID` for an unnamed peer.
    pub addr: Addr,
    /// The peer, once its `Hello` arrived.
    pub node: Option<NodeId>,
    /// The peer's incarnation, from its `Hello` (0 before).
    pub incarnation: u64,
    /// This node dialled it.
    pub outbound: bool,
    /// Frames to `addr` go on it (the other is a duplicate, closing once
    /// quiet).
    pub primary: bool,
    /// Kept open: an active-view, ring or bridge peer.
    pub kept: bool,
    /// A client connection.
    pub client: bool,
    /// A close was ordered.
    pub closing: bool,
}

/// A member as seen by this node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MemberView {
    /// Its id.
    pub id: NodeId,
    /// Its address.
    pub addr: Addr,
    /// Its name.
    pub name: String,
    /// Its incarnation.
    pub incarnation: Incarnation,
    /// Its state.
    pub state: MemberState,
}

/// An MPREG node as a pure state machine.
///
/// # Using it
///
/// Methods fall into four groups (as in quinn-proto):
///
/// * **getters** — [`id`](Node::id), [`members`](Node::members),
///   [`catalog`](Node::catalog), [`metrics`](Node::metrics), …;
/// * **`handle_*`** — inputs from the network and the clock:
///   [`handle_frame`](Node::handle_frame),
///   [`handle_timeout`](Node::handle_timeout), and the connections' news
///   by the runtime's ids: [`handle_dialed`](Node::handle_dialed),
///   [`handle_dial_failed`](Node::handle_dial_failed),
///   [`handle_accepted`](Node::handle_accepted),
///   [`handle_closed`](Node::handle_closed);
/// * **commands** from the application: [`join`](Node::join),
///   [`leave`](Node::leave), [`register`](Node::register),
///   [`unregister`](Node::unregister), [`call`](Node::call),
///   [`cancel`](Node::cancel),
///   [`complete_invocation`](Node::complete_invocation);
/// * **`poll_*`** — outputs: orders to the runtime
///   ([`poll_order`](Node::poll_order)), news for the application
///   ([`poll_event`](Node::poll_event)) and the next deadline
///   ([`poll_timeout`](Node::poll_timeout)).
///
/// After **every** input or command, drain `poll_order` and `poll_event`
/// until both return `None`, then ask `poll_timeout` for the next deadline
/// and call `handle_timeout` when it passes. See the crate docs for the
/// complete loop.
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    me: NodeId,
    key: Keypair,
    addr: Addr,
    incarnation: Incarnation,
    /// Catalog epoch: the incarnation this process started with.
    epoch: u64,
    cluster_tag: u16,
    rng: ChaCha8Rng,
    status: Status,
    /// Seed addresses, each with the member that answered there.
    seeds: Vec<(Addr, Option<NodeId>)>,
    members: MemberTable,
    catalog: Catalog,
    digest: RangeTree,
    conns: conns::Conns,
    overlay: overlay::Overlay,
    probes: membership::Probes,
    plumtree: broadcast::Plumtree,
    sync: sync::SyncState,
    calls: calls::Calls,
    fed: federation::Federation,
    requests: requests::Requests,
    timers: Timers,
    orders: VecDeque<Order>,
    /// `Send`s among `orders`.
    queued_sends: usize,
    events: VecDeque<Event>,
    metrics: Metrics,
    limits_reported: u32,
    /// Set while [`import`](Node::import) runs.
    importing: bool,
    /// The catalog changed since the last summary export.
    fed_dirty: bool,
}

impl Node {
    /// Creates a node. It is a cluster of one until it [`join`](Node::join)s
    /// seeds or others join it. Fails if the config does not validate; no
    /// node is created then.
    pub fn new(config: Config, identity: Identity, now: Time) -> Result<Node, ConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.rng_seed);
        let conns = conns::Conns::new(rand::RngExt::random(&mut rng));
        let mut node = Node {
            cluster_tag: wire::cluster_tag(&config.cluster_id),
            rng,
            me: identity.id,
            key: identity.key,
            addr: identity.addr,
            incarnation: identity.incarnation,
            epoch: identity.incarnation,
            status: Status::Active,
            seeds: Vec::new(),
            members: MemberTable::default(),
            catalog: Catalog::default(),
            digest: RangeTree::default(),
            conns,
            overlay: overlay::Overlay::default(),
            probes: membership::Probes::default(),
            plumtree: broadcast::Plumtree::default(),
            sync: sync::SyncState::default(),
            calls: calls::Calls::default(),
            fed: federation::Federation::default(),
            requests: requests::Requests::default(),
            timers: Timers::default(),
            orders: VecDeque::new(),
            queued_sends: 0,
            events: VecDeque::new(),
            metrics: Metrics::default(),
            limits_reported: 0,
            importing: false,
            fed_dirty: false,
            cfg: config,
        };
        let me = node.own_record(MemberState::Alive);
        node.apply_member(now, &me);
        node.schedule_periodic(now);
        node.fed.configured = node.cfg.federation.bridges.clone();
        if !node.fed.configured.is_empty() {
            node.dial_bridges(now);
            node.timers
                .set(Timer::Bridge, now + node.cfg.membership.probe_period / 2);
        }
        Ok(node)
    }

    // ----- getters -------------------------------------------------------

    /// This node's public key (its id derives from it).
    pub fn public_key(&self) -> crate::PublicKey {
        self.key.public()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// This node's address.
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// This node's current incarnation.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Where the node is in its life.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Every member this node knows, itself included, in id order.
    pub fn members(&self) -> impl Iterator<Item = MemberView> + '_ {
        self.members.iter().map(|(id, m)| MemberView {
            id: *id,
            addr: m.addr.clone(),
            name: self.members.name(id).to_string(),
            incarnation: m.incarnation,
            state: m.state,
        })
    }

    /// One member's state.
    pub fn member_state(&self, id: &NodeId) -> Option<MemberState> {
        self.members.get(id).map(|m| m.state)
    }

    /// Members known in each state: `[alive, suspect, dead, left]`.
    pub fn member_counts(&self) -> [usize; 4] {
        let mut c = [0; 4];
        for (_, m) in self.members.iter() {
            c[m.state as usize] += 1;
        }
        c
    }

    /// Alive and Suspect members, this node included.
    pub fn live_members(&self) -> usize {
        self.members.live_count()
    }

    /// The replicated catalog (the funtimes view).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Providers of `function` that can be routed to now (live members).
    pub fn live_providers(&self, function: &str) -> impl Iterator<Item = &crate::Provider> + '_ {
        self.catalog
            .providers(function)
            .iter()
            .filter(|p| self.is_routable(&p.node))
    }

    /// The funtimes view of what can be called now: function → resource
    /// set → live nodes serving it. (The raw [`catalog`](Node::catalog) also
    /// keeps the entries of Dead and Left members, for as long as they are
    /// remembered.)
    pub fn funtimes(&self) -> BTreeMap<String, BTreeMap<crate::ResourceSet, Vec<NodeId>>> {
        let mut out: BTreeMap<String, BTreeMap<crate::ResourceSet, Vec<NodeId>>> = BTreeMap::new();
        for (name, providers) in self.catalog.functions() {
            for p in providers.iter().filter(|p| self.is_routable(&p.node)) {
                out.entry(name.to_string())
                    .or_default()
                    .entry(p.body.resources.clone())
                    .or_default()
                    .push(p.node);
            }
        }
        out
    }

    fn is_routable(&self, node: &NodeId) -> bool {
        if *node == self.me {
            return self.status == Status::Active;
        }
        self.members.get(node).is_some_and(|m| m.state.is_live())
    }

    /// Counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Ids of the active view: the peers this node keeps connections to.
    pub fn active_view(&self) -> Vec<NodeId> {
        self.overlay.active.iter().map(|p| p.id).collect()
    }

    /// Size of the passive view.
    pub fn passive_view_len(&self) -> usize {
        self.overlay.passive.len()
    }

    /// Lifeguard local-health score: 0 is healthy.
    pub fn local_health(&self) -> u32 {
        self.probes.health
    }

    /// Connections open (or closing), bounded with the dials by
    /// `connections.max_connections`.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Addresses being dialled (their frames held).
    pub fn dialing_count(&self) -> usize {
        self.conns.dialing()
    }

    /// Every connection, in id order.
    pub fn connections(&self) -> impl Iterator<Item = ConnView> + '_ {
        self.conn_views()
    }

    /// Armed timers.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Orders waiting in `poll_order`.
    pub fn queued_orders(&self) -> usize {
        self.orders.len()
    }

    /// [`Order::Send`]s waiting in `poll_order` (bounded by
    /// `limits.max_queued_transmits`).
    pub fn queued_transmits(&self) -> usize {
        self.queued_sends
    }

    /// Calls this node is waiting on.
    pub fn pending_calls(&self) -> usize {
        self.calls.pending.len()
    }

    /// Handlers running on this node.
    pub fn running_invocations(&self) -> usize {
        self.calls.running
    }

    /// Every piece of replicated state this node holds: each member's
    /// record followed by its complete catalog. Two nodes hold the same
    /// state exactly when these are equal.
    pub fn replicated_state(&self) -> Vec<wire::Update> {
        let mut out = Vec::with_capacity(self.members.len());
        for (id, _) in self.members.iter() {
            out.extend(self.members.record(id).map(wire::Update::Member));
            out.extend(self.catalog.snapshot(id).map(wire::Update::Catalog));
        }
        out
    }

    /// The combined anti-entropy digest of this node's state: equal on two
    /// nodes exactly when their member tables and catalogs are equal.
    pub fn state_digest(&self) -> (u64, u32) {
        let r = self.digest.root();
        (r.hash.0, r.count)
    }

    // ----- handle_* ------------------------------------------------------

    /// The runtime accepted a connection and gave it an id. The core may
    /// refuse it at once with [`Order::Close`] (at the connection cap, or
    /// leaving).
    pub fn handle_accepted(&mut self, now: Time, conn: ConnId) {
        if self.status == Status::Stopped {
            return;
        }
        self.on_accepted(now, conn);
        self.flush(now);
    }

    /// A connection to `addr` opened (as ordered by [`Order::Dial`], or on
    /// the runtime's own initiative) and got id `conn`. Frames held for
    /// `addr` go out on it now, after this node's `Hello`. A connectionless
    /// transport may answer with the id of a connection it already has to
    /// that address.
    pub fn handle_dialed(&mut self, now: Time, addr: &Addr, conn: ConnId) {
        if self.status == Status::Stopped {
            return;
        }
        self.on_dialed(now, addr, conn);
        self.flush(now);
    }

    /// A dial of `addr` failed. The frames held for it are dropped and the
    /// next dial backs off.
    pub fn handle_dial_failed(&mut self, now: Time, addr: &Addr) {
        if self.status == Status::Stopped {
            return;
        }
        self.on_dial_failed(now, addr);
        self.flush(now);
    }

    /// Connection `conn` closed (or broke); see [`Closed`]. Its id may be
    /// reused afterwards.
    pub fn handle_closed(&mut self, now: Time, conn: ConnId, how: Closed) {
        if self.status == Status::Stopped {
            return;
        }
        self.on_closed(now, conn, how);
        self.flush(now);
    }

    /// A frame arrived on connection `conn`. On `Err` the node is
    /// unchanged but for counters; the connection stays usable.
    pub fn handle_frame(
        &mut self,
        now: Time,
        conn: ConnId,
        frame: &[u8],
    ) -> Result<(), FrameError> {
        let Some(c) = self.conns.get(conn) else {
            return Err(FrameError::UnknownConnection);
        };
        let (from, role, bridge, peer) = (c.key.clone(), c.role, c.bridge, c.node);
        // An upstream MPREG client: an accepted connection whose first
        // frame is JSON (see `chunk` for how its messages stay whole).
        if c.upstream || (!c.outbound && c.node.is_none() && crate::upstream::is_request(frame)) {
            return self.upstream_frame(now, conn, &from, frame);
        }
        let admitted = self.admit(now, conn);
        let (header, msg) = match wire::decode(frame, self.cfg.limits.max_frame_size, None) {
            Ok((_, msg)) if !admitted => return Err(self.rate_limited(now, &from, Some(msg))),
            Err(_) if !admitted => return Err(self.rate_limited(now, &from, None)),
            Ok(m) => m,
            Err(e) => {
                if matches!(e, DecodeError::TooLarge { .. }) {
                    self.limit_hit(Limit::FrameSize);
                }
                let reason = reject_reason(&e);
                return Err(self.reject(reason, FrameError::Decode(e)));
            }
        };
        let kind = msg.kind();
        // Clients may not know the cluster id: they send the wildcard tag,
        // accepted for client messages only.
        let wildcard = header.cluster == wire::ANY_CLUSTER && calls::client_may_send(kind);
        // Other clusters speak only over bridges the policy allows.
        let bridged = self.bridge_cluster(&from).map(wire::cluster_tag) == Some(header.cluster);
        let federated = match kind {
            MessageKind::BridgeHello => self.cfg.federation.policy != crate::Policy::Strict,
            MessageKind::BridgeReject => bridge,
            MessageKind::Summary | MessageKind::FedCall | MessageKind::FedResponse => bridged,
            MessageKind::Ping | MessageKind::Ack => bridged,
            _ => false,
        };
        if matches!(
            kind,
            MessageKind::Summary | MessageKind::FedCall | MessageKind::FedResponse
        ) && !bridged
        {
            let e = DecodeError::WrongCluster(header.cluster);
            return Err(self.reject(RejectReason::WrongCluster, FrameError::Decode(e)));
        }
        if header.cluster != self.cluster_tag && !wildcard && !federated {
            let e = DecodeError::WrongCluster(header.cluster);
            return Err(self.reject(RejectReason::WrongCluster, FrameError::Decode(e)));
        }
        // The header tag is a 16-bit filter; a member's Hello carries the
        // full cluster id, which must match.
        if let Message::Hello(h) = &msg
            && h.role != Role::Client
            && (header.cluster != self.cluster_tag || h.cluster_id != self.cfg.cluster_id.as_str())
        {
            let e = DecodeError::WrongCluster(header.cluster);
            return Err(self.reject(RejectReason::WrongCluster, FrameError::Decode(e)));
        }
        if role == Role::Client && !calls::client_may_send(kind) {
            return Err(self.reject(RejectReason::NotAllowed, FrameError::NotAllowed(kind)));
        }
        // A node that has left answers nothing: its callers retry once its
        // connections close (it told them it left on each of them).
        if self.status >= Status::Left {
            return Err(self.reject(RejectReason::Left, FrameError::Left));
        }
        if let Message::Hello(h) = &msg
            && (h.max_version < wire::MIN_PROTOCOL_VERSION
                || h.min_version > wire::PROTOCOL_VERSION)
        {
            let (min, max) = (h.min_version, h.max_version);
            return Err(self.reject(
                RejectReason::IncompatibleVersion,
                FrameError::IncompatibleVersion { min, max },
            ));
        }
        match self.gate_in(now, conn, kind, federated, frame) {
            admission::Entry::Pass => {}
            admission::Entry::Held => return Ok(()),
            admission::Entry::Refused => {
                let e = FrameError::NotAdmitted(Refusal::Incomplete);
                return Err(self.reject(RejectReason::NotAdmitted, e));
            }
        }
        self.metrics.frames_in[kind.index()] += 1;
        self.metrics.bytes_in[kind.index()] += frame.len() as u64;
        if sync::is_sync(kind) {
            self.metrics.sync_bytes += frame.len() as u64;
        }
        match msg {
            Message::Hello(h) => {
                self.on_hello(now, conn, h);
            }
            Message::Identify(i) => self.on_identify(conn, i),
            Message::Prove(p) => self.on_prove(now, conn, p),
            Message::Refused(r) => self.on_refused(now, conn, r),
            other => self.dispatch(now, &from, peer, other),
        }
        self.flush(now);
        Ok(())
    }

    /// A frame beyond the sender's rate: dropped, except that a call gets
    /// an `Overloaded` answer (a typed error for the caller, never a call
    /// silently lost). The answer is one frame per refused frame.
    fn rate_limited(&mut self, now: Time, from: &Addr, msg: Option<Message>) -> FrameError {
        self.limit_hit(Limit::PeerRate);
        let answer = match msg {
            Some(Message::ClientCall(c)) => Some(Message::ClientReply(wire::ClientReply {
                token: c.token,
                result: Err(CallError::Overloaded),
            })),
            Some(Message::ClientMany(c)) => Some(Message::ClientManyReply(wire::ClientManyReply {
                token: c.token,
                result: Err(crate::multistep::ManyError::Request(CallError::Overloaded)),
            })),
            Some(Message::Call(r)) => Some(Message::Response(calls::refusal(r.id))),
            Some(Message::FedCall(r)) => Some(Message::FedResponse(calls::refusal(r.id))),
            _ => None,
        };
        if let Some(m) = answer
            && self.status < Status::Left
        {
            self.send(now, from, &m, crate::TrafficClass::Call);
            self.flush(now);
        }
        self.reject(RejectReason::RateLimited, FrameError::RateLimited)
    }

    fn dispatch(&mut self, now: Time, from: &Addr, peer: Option<NodeId>, msg: Message) {
        if let Some(p) = peer {
            self.heard_from(now, p);
        }
        self.heard_from_bridge(now, from, None);
        match msg {
            Message::Hello(_) | Message::Identify(_) | Message::Prove(_) | Message::Refused(_) => {}
            Message::Ping(seq) => {
                self.on_ping(now, from, seq);
                // Active peers ping each other every period: a ping from a
                // live member outside our view (other than our ring
                // predecessor) means its view holds us and ours does not.
                // (An indirect probe's intermediary gets the same answer, and
                // ignores it.)
                if let Some(p) = peer
                    && !self.is_active(p)
                    && Some(p) != self.ring_predecessor()
                {
                    self.check_symmetric(now, from, peer);
                }
            }
            Message::Ack(ack) => {
                self.heard_from_bridge(now, from, Some(ack.seq));
                self.on_ack(now, from, peer, ack)
            }
            Message::PingReq(req) => self.on_ping_req(now, from, req),
            Message::IndirectAck(seq) => self.on_indirect_ack(now, seq),
            Message::Nack(seq) => self.on_nack(now, seq),
            Message::Join(rec) => self.on_join(now, from, rec),
            Message::ForwardJoin(fj) => self.on_forward_join(now, peer, fj),
            Message::Neighbor(n) => self.on_neighbor(now, from, n),
            Message::NeighborReply(ok) => self.on_neighbor_reply(now, from, peer, ok),
            Message::Disconnect => self.on_disconnect(now, peer),
            Message::Shuffle(s) => self.on_shuffle(now, from, s),
            Message::ShuffleReply(sample) => self.integrate_passive(sample),
            Message::Gossip(updates) => self.on_gossip(now, peer, updates),
            Message::IHave(ids) => {
                self.check_symmetric(now, from, peer);
                self.on_ihave(now, peer, ids)
            }
            Message::Graft(ids) => self.on_graft(now, from, peer, ids),
            Message::Prune => {
                self.check_symmetric(now, from, peer);
                self.on_prune(peer)
            }
            Message::SyncRanges(r) => self.on_sync_ranges(now, from, r),
            Message::SyncSummaries(s) => self.on_sync_summaries(now, from, s),
            Message::SyncPull(ids) => self.on_sync_pull(now, from, ids),
            Message::SyncUpdates(u) => self.on_sync_updates(now, from, peer, u),
            Message::Call(req) => self.on_call(now, from, req),
            Message::Response(resp) => self.on_response(now, peer, resp),
            Message::Cancel(id) => self.on_cancel(now, id),
            Message::ClientCall(c) => self.on_client_call(now, from, c),
            Message::ClientQuery((token, q)) => self.on_client_query(now, from, token, q),
            Message::ClientMany(c) => self.on_client_many(now, from, c),
            Message::ClientReply(_) | Message::ClientAnswer(_) | Message::ClientManyReply(_) => {}
            Message::BridgeHello(h) => self.on_bridge_hello(now, from, h),
            Message::BridgeReject(_) => self.on_bridge_reject(now, from),
            Message::Summary(s) => self.on_summary(now, from, s),
            Message::FedCall(req) => self.on_fed_call(now, from, req),
            Message::FedResponse(resp) => self.on_fed_response(now, from, resp),
        }
    }

    /// Fires every timer due at `now`. Calling it early does nothing. A
    /// timer that the handlers set again for `now` or earlier is left for
    /// the next call ([`poll_timeout`](Self::poll_timeout) reports it), so
    /// one call always returns.
    pub fn handle_timeout(&mut self, now: Time) {
        let mark = self.timers.mark();
        while let Some(t) = self.timers.pop_due(now, mark) {
            if self.status == Status::Stopped {
                break;
            }
            // Once left, only what finishes the leave still runs.
            let leaving = matches!(
                t,
                Timer::Call(_)
                    | Timer::Dedup(_)
                    | Timer::Dial
                    | Timer::Idle
                    | Timer::Leave
                    | Timer::Budget(_)
            );
            if self.status == Status::Left && !leaving {
                continue;
            }
            match t {
                Timer::Probe(peer) => self.on_probe_timer(now, peer),
                Timer::ProbeTimeout(seq) => self.on_probe_timeout(now, seq),
                Timer::Suspicion(id) => self.on_suspicion_timeout(now, id),
                Timer::Graft => self.on_graft_timer(now),
                Timer::Announce => self.on_announce_timer(now),
                Timer::Bridge => self.on_bridge_timer(now),
                Timer::Sync => self.on_sync_timer(now),
                Timer::Shuffle => self.on_shuffle_timer(now),
                Timer::Join => self.on_join_timer(now),
                Timer::Call(id) => self.on_call_timeout(now, id),
                Timer::Dedup(id) => self.calls.forget(&id),
                Timer::Resend(id) => self.on_resend_timer(now, id),
                Timer::Dial => self.on_dial_timer(now),
                Timer::Idle => self.on_idle_timer(now),
                Timer::Leave => self.on_leave_timer(now),
                Timer::Budget(inv) => self.on_budget_timeout(now, inv),
            }
        }
        self.flush(now);
    }

    // ----- commands ------------------------------------------------------

    /// Joins the cluster through seed addresses. They are re-dialled
    /// whenever none of them is Alive.
    pub fn join(&mut self, now: Time, seeds: impl IntoIterator<Item = Addr>) {
        if self.status != Status::Active {
            return; // leaving: no new seeds
        }
        for s in seeds {
            if s != self.addr && !self.seeds.iter().any(|(a, _)| *a == s) {
                self.seeds.push((s, None));
            }
        }
        self.send_joins(now);
        self.timers
            .set(Timer::Join, now + self.cfg.membership.join_retry_interval);
        self.flush(now);
    }

    /// Leaves gracefully, in phases ([`LeaveConfig`](crate::config::LeaveConfig)):
    ///
    /// 1. **drain** — every function of this node is withdrawn from the
    ///    catalog (callers route elsewhere); calls arriving here are
    ///    answered `Overloaded` (they did not run, so any caller may go
    ///    elsewhere); running handlers have `leave.grace` to finish, then
    ///    are cancelled and answered `OutcomeUnknown`;
    /// 2. **flush** — `Left` is broadcast, told to a few members directly
    ///    and sent on every connection, each of which then closes once its
    ///    queue is written: a caller that sees a connection of a node that
    ///    left close cleanly knows every call still pending there did not
    ///    run, and sends it elsewhere;
    /// 3. [`Order::Stop`] once every connection is closed, or after
    ///    `leave.flush_timeout`.
    ///
    /// This node's own pending calls fail with `Rejected` at step 2.
    pub fn leave(&mut self, now: Time) {
        if self.status != Status::Active {
            return;
        }
        self.status = Status::Draining;
        // Local functions and any routes this node offers as a bridge.
        let own: Vec<(
            compact_str::CompactString,
            semver::Version,
            compact_str::CompactString,
        )> = self
            .catalog
            .entries_of(&self.me)
            .chain(self.catalog.routes_of(&self.me))
            .map(|(n, v, b)| (n.into(), v.clone(), b.scope().into()))
            .collect();
        for (name, version, scope) in own {
            self.write_own_catalog(now, name, version, scope, None);
        }
        if self.calls.running == 0 {
            self.announce_left(now);
        } else {
            self.timers.set(Timer::Leave, now + self.cfg.leave.grace);
        }
        self.flush(now);
    }

    /// The end of the drain: remaining handlers are cancelled, `Left` goes
    /// out, every connection closes.
    pub(super) fn announce_left(&mut self, now: Time) {
        if self.status != Status::Draining {
            return;
        }
        self.cancel_running(now);
        // Answers to what ran go out before the news.
        self.flush_broadcasts(now);
        self.status = Status::Left;
        let rec = self.own_record(MemberState::Left);
        self.write_own_record(now, &rec);
        self.broadcast_to_all(wire::Update::Member(rec.clone()));
        // The active view can be thin or empty (just joined, or mid-repair):
        // a few members outside it hear the news directly too, and every
        // peer with a connection hears it on that connection.
        let mut told = self.direct_targets(DIRECT_FANOUT);
        for c in self.conn_views() {
            if !c.client && !c.closing && !told.contains(&c.addr) {
                told.push(c.addr);
            }
        }
        let u = [wire::Update::Member(rec)];
        for a in told {
            self.send_updates(now, &a, MessageKind::Gossip, &u, 1);
        }
        self.flush_broadcasts(now);
        self.calls.fail_all_pending(now);
        self.fail_requests();
        self.close_all(now);
        self.timers
            .set(Timer::Leave, now + self.cfg.leave.flush_timeout);
        self.check_stopped(now);
    }

    fn on_leave_timer(&mut self, now: Time) {
        match self.status {
            Status::Draining => self.announce_left(now),
            Status::Left => self.stop(now),
            Status::Active | Status::Stopped => {}
        }
    }

    /// The last step: nothing more is sent or answered.
    pub(super) fn stop(&mut self, _now: Time) {
        if self.status == Status::Stopped {
            return;
        }
        self.status = Status::Stopped;
        self.timers = Timers::default();
        self.orders.push_back(Order::Stop);
    }

    /// Restores replicated state — a snapshot persisted before a restart,
    /// or [`replicated_state`](Node::replicated_state) taken from a peer —
    /// as if anti-entropy had delivered it, but without relaying anything:
    /// the usual reconciliation brings in whatever changed since. Records of
    /// this node itself are handled as usual (an older life is refuted).
    pub fn import(&mut self, now: Time, state: &[wire::Update]) {
        if self.status == Status::Stopped {
            return;
        }
        // Restored state is not news: no member or function events (read
        // `members()` and `catalog()` afterwards).
        self.importing = true;
        for u in state {
            let _ = self.apply_update(now, u);
        }
        self.importing = false;
        self.events.retain(|e| {
            !matches!(
                e,
                Event::FunctionAdded { .. } | Event::FunctionRemoved { .. }
            )
        });
        // Imported suspicions still run their course.
        let suspects: Vec<(NodeId, Incarnation)> = self
            .members
            .iter()
            .filter(|(id, m)| **id != self.me && m.state == MemberState::Suspect)
            .map(|(id, m)| (*id, m.incarnation))
            .collect();
        for (id, inc) in suspects {
            self.schedule_suspicion(now, id, inc);
        }
        // Imported deaths and departures still leave the active view.
        let gone: Vec<NodeId> = self
            .overlay
            .active
            .iter()
            .map(|p| p.id)
            .filter(|id| !self.members.get(id).is_some_and(|m| m.state.is_live()))
            .collect();
        for id in gone {
            self.member_gone(now, id);
        }
        self.update_ring(now);
        self.schedule_repair(now);
        self.flush(now);
    }

    /// Registers (or updates) a function on this node and broadcasts it.
    pub fn register(&mut self, now: Time, spec: FunctionSpec) -> Result<(), RegisterError> {
        spec.validate()?;
        if self.status != Status::Active {
            return Err(RegisterError::Left);
        }
        if let Err(limit) = self.own_room(&spec.name, &spec.version, "") {
            self.limit_hit(limit);
            let l = &self.cfg.limits;
            let cap = match limit {
                Limit::CatalogEntries => l.max_catalog_entries,
                _ => l.max_functions_per_node,
            };
            return Err(RegisterError::Limit(cap));
        }
        let body = crate::catalog::FnBody {
            resources: spec.resources,
            idempotent: spec.idempotent,
            route: None,
        };
        self.write_own_catalog(now, spec.name, spec.version, Default::default(), Some(body));
        self.flush(now);
        Ok(())
    }

    /// Replaces the admission policy (a reloaded secret or allow-list file).
    /// New connections follow it at once; admitted peers stay, except that
    /// a peer whose key left the allow-list is disconnected.
    pub fn set_admission(&mut self, now: Time, admission: Admission) {
        self.cfg.admission = admission;
        self.drop_disallowed(now);
        self.flush(now);
    }

    /// Removes a function from this node. Returns whether it was registered.
    pub fn unregister(&mut self, now: Time, name: &str, version: &semver::Version) -> bool {
        if self.status >= Status::Left {
            return false;
        }
        let done =
            self.write_own_catalog(now, name.into(), version.clone(), Default::default(), None);
        self.flush(now);
        done
    }

    /// Starts a call. Fails at once when no provider can serve it (the
    /// error is then not also reported as an event); otherwise its outcome
    /// arrives as [`Event::CallDone`] with the returned id.
    pub fn call(&mut self, now: Time, call: Call) -> Result<CallId, CallError> {
        let r = self.start_call(now, call, calls::Origin::Local);
        self.flush(now);
        r
    }

    /// Cancels a call: [`Event::CallDone`] with `Cancelled` follows, and the
    /// executor is told to drop the result. Returns whether it was pending.
    pub fn cancel(&mut self, now: Time, call: CallId) -> bool {
        let r = self.cancel_call(now, call);
        self.flush(now);
        r
    }

    /// The result of a handler started by [`Order::Invoke`]. An `Err` is the
    /// handler's error message, delivered as `HandlerFailed`.
    pub fn complete_invocation(
        &mut self,
        now: Time,
        id: InvocationId,
        result: Result<Bytes, String>,
    ) -> Result<(), InvocationError> {
        let r = self.finish_invocation(now, id, result);
        self.flush(now);
        r
    }

    // ----- poll_* --------------------------------------------------------

    /// The next order for the runtime. Drain these first, then the
    /// events, then ask for the deadline.
    pub fn poll_order(&mut self) -> Option<Order> {
        let o = self.orders.pop_front();
        match o {
            Some(Order::Send(_)) => self.queued_sends -= 1,
            None => shrink(&mut self.orders),
            Some(_) => {}
        }
        o
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_none() {
            shrink(&mut self.events);
        }
        e
    }

    /// When to call [`handle_timeout`](Node::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    // ----- shared helpers ------------------------------------------------

    fn own_record(&self, state: MemberState) -> MemberRecord {
        MemberRecord {
            id: self.me,
            addr: self.addr.clone(),
            incarnation: self.incarnation,
            state,
            accusers: Vec::new(),
            name: self.cfg.name.as_str().into(),
        }
    }

    fn schedule_periodic(&mut self, now: Time) {
        let n = self.members.live_count();
        let sync = self.jitter(self.cfg.sync_interval(n));
        self.timers.set(Timer::Sync, now + sync);
        let repair = self.jitter(self.cfg.membership.probe_period / 2);
        self.timers.set(Timer::Shuffle, now + repair);
        let idle = self.idle_period();
        self.timers.set(Timer::Idle, now + idle);
    }

    /// `d` scaled by a random factor in [0.75, 1.25), so periodic work of
    /// many nodes does not synchronise.
    fn jitter(&mut self, d: std::time::Duration) -> std::time::Duration {
        use rand::RngExt;
        crate::time::scale(d, self.rng.random_range(0.75..1.25))
    }

    fn reject(&mut self, reason: RejectReason, e: FrameError) -> FrameError {
        self.metrics.rejected[reason as usize] += 1;
        e
    }

    fn limit_hit(&mut self, limit: Limit) {
        self.metrics.limits_hit[limit as usize] += 1;
        let bit = 1 << (limit as u32);
        if self.limits_reported & bit == 0 {
            self.limits_reported |= bit;
            self.events.push_back(Event::LimitHit(limit));
        }
    }

    /// Sends everything the last input produced.
    fn flush(&mut self, now: Time) {
        // Reactions to lost frames first: they may send more.
        self.handle_lost(now);
        if std::mem::take(&mut self.fed_dirty) {
            // Catalog changes reach the bridges shortly, in one export.
            let soon = now + self.cfg.dissemination.graft_timeout_min;
            self.timers.set_if_earlier(Timer::Bridge, soon);
        }
        self.flush_broadcasts(now);
        self.handle_lost(now);
        for e in std::mem::take(&mut self.calls.finished) {
            self.events.push_back(e);
        }
    }
}

/// Members outside the active view told directly when the view cannot
/// carry news: a leave, or updates while the view is empty.
const DIRECT_FANOUT: usize = 3;

/// A drained queue gives back memory a burst made it take (a node that
/// imported or learned N members at once queued N events).
fn shrink<T>(q: &mut VecDeque<T>) {
    if q.capacity() > 64 {
        q.shrink_to(8);
    }
}

fn reject_reason(e: &DecodeError) -> RejectReason {
    match e {
        DecodeError::TooLarge { .. } => RejectReason::TooLarge,
        DecodeError::TooShort(_) => RejectReason::TooShort,
        DecodeError::BadMagic => RejectReason::BadMagic,
        DecodeError::UnsupportedVersion(_) => RejectReason::UnsupportedVersion,
        DecodeError::UnsupportedFlags(_) => RejectReason::UnsupportedFlags,
        DecodeError::WrongCluster(_) => RejectReason::WrongCluster,
        DecodeError::UnknownKind(_) => RejectReason::UnknownKind,
        DecodeError::Malformed { .. } => RejectReason::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::Net;
    use crate::{Call, Config, Event, FunctionSpec, MemberState, NodeId, Status};
    use std::time::Duration;

    #[test]
    fn a_leave_runs_its_phases_in_order_and_answers_what_ran() {
        let mut net = Net::joined(3, |_| Config::default());
        net.set_handler(Box::new(|_, inv| {
            (Duration::from_millis(300), Ok(inv.args.clone()))
        }));
        net.with(1, |n, now| n.register(now, FunctionSpec::new("f")))
            .unwrap()
            .unwrap();
        net.run_for(Duration::from_millis(200));
        net.with(0, |n, now| n.call(now, Call::new("f").args("x")))
            .unwrap()
            .unwrap();
        net.run_for(Duration::from_millis(50));
        net.with(1, |n, now| n.leave(now));
        // Draining: withdrawn, refusing, the handler still running.
        let n1 = net.node(1).unwrap();
        assert_eq!(
            (n1.status(), n1.running_invocations()),
            (Status::Draining, 1)
        );
        net.run_until_true(Duration::from_secs(3), |net| net.node(1).is_none())
            .expect("stopped");
        let id = NodeId::from_u128(1);
        let answered = net
            .events
            .iter()
            .position(|(_, e)| matches!(e, Event::CallDone { result: Ok(_), .. }))
            .expect("the running call was answered");
        let left = net
            .events
            .iter()
            .position(|(o, e)| *o == 0 && *e == (Event::MemberLeft { id }))
            .expect("Left seen");
        assert!(answered < left, "the answer went before the news");
        assert_eq!(
            net.node(0).unwrap().member_state(&id),
            Some(MemberState::Left)
        );
    }
}
