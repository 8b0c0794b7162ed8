//! The [`Node`]: every concern of the protocol tied into one state machine.
//!
//! The submodules each implement one concern as `impl Node` blocks:
//! `session` (per-address protocol state, sending frames), `membership`
//! (probes, suspicion, refutation, join and leave), `overlay` (the active
//! and passive views), `broadcast` (Plumtree), `sync` (anti-entropy) and
//! `calls` (routing, invocations, deduplication).

mod broadcast;
mod calls;
mod federation;
mod membership;
mod overlay;
mod session;
mod sync;

pub use calls::Call;

use crate::catalog::{Catalog, FunctionSpec};
use crate::config::{Config, ConfigError};
use crate::digest::RangeTree;
use crate::error::{CallError, FrameError, InvocationError, RegisterError};
use crate::event::{Event, Transmit};
use crate::id::{Addr, CallId, Incarnation, InvocationId, NodeId};
use crate::members::{MemberState, MemberTable};
use crate::metrics::{Limit, Metrics, RejectReason};
use crate::time::Time;
use crate::timers::{Timer, Timers};
use crate::wire::{self, DecodeError, MemberRecord, Message, MessageKind, Role};
use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

/// Who a node is: a stable id, where it listens, and its incarnation.
///
/// A restarting process must use an incarnation above any it used before:
/// the persisted last one + 1, else the Unix time in seconds (a generation
/// number). The core never reads a clock, so the runtime supplies it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Identity {
    /// Stable node id.
    pub id: NodeId,
    /// Address peers dial.
    pub addr: Addr,
    /// Incarnation of this process.
    pub incarnation: Incarnation,
}

/// The result of a frame that was accepted.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[must_use]
pub struct Received {
    /// Set when the frame was a `Hello`: the sender's identity and
    /// advertised address. A runtime that accepted the connection should
    /// from now on key it by `addr` (and pass `addr` as `from`), so that
    /// one connection serves both directions.
    pub hello: Option<PeerHello>,
}

/// What a `Hello` said.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PeerHello {
    /// The sender's id.
    pub node: NodeId,
    /// The address the sender listens on (empty for clients).
    pub addr: Addr,
    /// Member or client.
    pub role: Role,
}

/// Whether the node takes part in the cluster.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Status {
    /// A member (possibly alone, waiting for others or seeds).
    Active,
    /// Leaving soon: its functions are withdrawn and it takes no new calls.
    Draining,
    /// Has left: answers nothing, sends nothing new.
    Left,
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
///   [`handle_timeout`](Node::handle_timeout),
///   [`handle_connected`](Node::handle_connected),
///   [`handle_unreachable`](Node::handle_unreachable);
/// * **commands** from the application: [`join`](Node::join),
///   [`leave`](Node::leave), [`register`](Node::register),
///   [`unregister`](Node::unregister), [`call`](Node::call),
///   [`cancel`](Node::cancel),
///   [`complete_invocation`](Node::complete_invocation);
/// * **`poll_*`** — outputs: [`poll_transmit`](Node::poll_transmit),
///   [`poll_event`](Node::poll_event), [`poll_timeout`](Node::poll_timeout).
///
/// After **every** input or command, drain `poll_transmit` and `poll_event`
/// until they return `None`, then ask `poll_timeout` for the next deadline
/// and call `handle_timeout` when it passes. See the crate docs for the
/// complete loop.
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    me: NodeId,
    addr: Addr,
    incarnation: Incarnation,
    /// Catalog epoch: the incarnation this process started with.
    epoch: u64,
    cluster_tag: u16,
    rng: ChaCha8Rng,
    status: Status,
    seeds: Vec<Addr>,
    members: MemberTable,
    catalog: Catalog,
    digest: RangeTree,
    sessions: session::Sessions,
    overlay: overlay::Overlay,
    probes: membership::Probes,
    plumtree: broadcast::Plumtree,
    sync: sync::SyncState,
    calls: calls::Calls,
    fed: federation::Federation,
    timers: Timers,
    transmits: VecDeque<Transmit>,
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
        let sessions = session::Sessions::new(rand::RngExt::random(&mut rng));
        let mut node = Node {
            cluster_tag: wire::cluster_tag(&config.cluster_id),
            rng,
            me: identity.id,
            addr: identity.addr,
            incarnation: identity.incarnation,
            epoch: identity.incarnation,
            status: Status::Active,
            seeds: Vec::new(),
            members: MemberTable::default(),
            catalog: Catalog::default(),
            digest: RangeTree::default(),
            sessions,
            overlay: overlay::Overlay::default(),
            probes: membership::Probes::default(),
            plumtree: broadcast::Plumtree::default(),
            sync: sync::SyncState::default(),
            calls: calls::Calls::default(),
            fed: federation::Federation::default(),
            timers: Timers::default(),
            transmits: VecDeque::new(),
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

    /// Active or Left.
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

    /// Addresses with protocol state (bounded by `limits.max_sessions`).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Armed timers.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Frames waiting in `poll_transmit`.
    pub fn queued_transmits(&self) -> usize {
        self.transmits.len()
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

    /// A frame arrived from `from` (the address the runtime keys the
    /// connection by). On `Err` the node is unchanged but for counters.
    pub fn handle_frame(
        &mut self,
        now: Time,
        from: &Addr,
        frame: &[u8],
    ) -> Result<Received, FrameError> {
        let admitted = self.sessions.admit(now, from, &self.cfg.limits);
        let (header, msg) = match wire::decode(frame, self.cfg.limits.max_frame_size, None) {
            Ok((_, msg)) if !admitted => return Err(self.rate_limited(now, from, Some(msg))),
            Err(_) if !admitted => return Err(self.rate_limited(now, from, None)),
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
        let bridged = self.bridge_cluster(from).map(wire::cluster_tag) == Some(header.cluster);
        let federated = match kind {
            MessageKind::BridgeHello => self.cfg.federation.policy != crate::Policy::Strict,
            MessageKind::BridgeReject => self.is_bridge_session(from),
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
        let role = self.sessions.role(from);
        if role == Some(Role::Client) && !calls::client_may_send(kind) {
            return Err(self.reject(RejectReason::NotAllowed, FrameError::NotAllowed(kind)));
        }
        if self.status == Status::Left && !matches!(msg, Message::Hello(_)) {
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
        self.metrics.frames_in[kind.index()] += 1;
        self.metrics.bytes_in[kind.index()] += frame.len() as u64;
        if sync::is_sync(kind) {
            self.metrics.sync_bytes += frame.len() as u64;
        }
        self.note_sender(now, from);
        let mut received = Received::default();
        match msg {
            Message::Hello(h) => received.hello = Some(self.on_hello(now, from, h)),
            other => self.dispatch(now, from, other),
        }
        self.flush(now);
        Ok(received)
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
            Some(Message::Call(r)) => Some(Message::Response(calls::refusal(r.id))),
            Some(Message::FedCall(r)) => Some(Message::FedResponse(calls::refusal(r.id))),
            _ => None,
        };
        if let Some(m) = answer {
            self.send(now, from, &m, crate::TrafficClass::Call);
            self.flush(now);
        }
        self.reject(RejectReason::RateLimited, FrameError::RateLimited)
    }

    fn dispatch(&mut self, now: Time, from: &Addr, msg: Message) {
        let peer = self.sessions.node_of(from);
        if let Some(p) = peer {
            self.heard_from(now, p);
        }
        self.heard_from_bridge(now, from, None);
        match msg {
            Message::Hello(_) => {}
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
            Message::Cancel(id) => self.on_cancel(id),
            Message::ClientCall(c) => self.on_client_call(now, from, c),
            Message::ClientQuery((token, q)) => self.on_client_query(now, from, token, q),
            Message::ClientReply(_) | Message::ClientAnswer(_) => {}
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
            if self.status == Status::Left && !matches!(t, Timer::Call(_) | Timer::Dedup(_)) {
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
            }
        }
        self.flush(now);
    }

    /// The runtime opened a connection to `addr`. Informational: the core
    /// already queued its `Hello` ahead of the first frame.
    pub fn handle_connected(&mut self, now: Time, addr: &Addr) {
        let _ = (now, addr);
        self.metrics.connections_opened += 1;
    }

    /// The connection to `addr` was closed cleanly (idle, or after
    /// [`Event::Disconnect`]): nothing was lost, but the next frame opens a
    /// new connection, which starts with a fresh `Hello`.
    pub fn handle_closed(&mut self, now: Time, addr: &Addr) {
        let _ = now;
        self.sessions.reset(addr);
    }

    /// The runtime could not deliver to `addr`, or lost the connection
    /// (frames queued for it are gone). The next frame to `addr` opens a new
    /// connection with a fresh `Hello`.
    pub fn handle_unreachable(&mut self, now: Time, addr: &Addr) {
        self.sessions.reset(addr);
        self.on_unreachable(now, addr);
        self.flush(now);
    }

    // ----- commands ------------------------------------------------------

    /// Joins the cluster through seed addresses. They are re-dialled
    /// whenever none of them is Alive.
    pub fn join(&mut self, now: Time, seeds: impl IntoIterator<Item = Addr>) {
        for s in seeds {
            if s != self.addr && !self.seeds.contains(&s) {
                self.seeds.push(s);
            }
        }
        self.send_joins(now);
        self.timers
            .set(Timer::Join, now + self.cfg.membership.join_retry_interval);
        self.flush(now);
    }

    /// Leaves gracefully: the Left state is sent to every active peer and
    /// broadcast; afterwards the node ignores member traffic. Drain the
    /// transmits before closing connections.
    pub fn leave(&mut self, now: Time) {
        if self.status == Status::Left {
            return;
        }
        self.status = Status::Left;
        let rec = self.own_record(MemberState::Left);
        self.write_own_record(now, &rec);
        self.broadcast_to_all(wire::Update::Member(rec.clone()));
        // The active view can be thin or empty (just joined, or mid-repair):
        // a few members outside it hear the news directly too.
        let told = self.direct_targets(DIRECT_FANOUT);
        let u = [wire::Update::Member(rec)];
        for a in told {
            self.send_updates(now, &a, MessageKind::Gossip, &u, 1);
        }
        self.flush(now);
        self.calls.fail_all_pending(now);
        for c in std::mem::take(&mut self.calls.finished) {
            self.events.push_back(c);
        }
    }

    /// Starts a graceful shutdown: every function of this node is withdrawn
    /// from the catalog (so callers route elsewhere) and new calls arriving
    /// here are answered `Overloaded` (the handler did not run, so any
    /// caller may retry elsewhere). Calls already running finish normally;
    /// wait for [`running_invocations`](Node::running_invocations) to reach
    /// zero (or a grace period), then [`leave`](Node::leave).
    pub fn drain(&mut self, now: Time) {
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
        self.flush(now);
    }

    /// Restores replicated state — a snapshot persisted before a restart,
    /// or [`replicated_state`](Node::replicated_state) taken from a peer —
    /// as if anti-entropy had delivered it, but without relaying anything:
    /// the usual reconciliation brings in whatever changed since. Records of
    /// this node itself are handled as usual (an older life is refuted).
    pub fn import(&mut self, now: Time, state: &[wire::Update]) {
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

    /// Removes a function from this node. Returns whether it was registered.
    pub fn unregister(&mut self, now: Time, name: &str, version: &semver::Version) -> bool {
        if self.status == Status::Left {
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

    /// The result of a handler started by [`Event::Invoke`]. An `Err` is the
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

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        if t.is_none() {
            shrink(&mut self.transmits);
        }
        t
    }

    /// The next event.
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
        if std::mem::take(&mut self.fed_dirty) {
            // Catalog changes reach the bridges shortly, in one export.
            let soon = now + self.cfg.dissemination.graft_timeout_min;
            self.timers.set_if_earlier(Timer::Bridge, soon);
        }
        self.flush_broadcasts(now);
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
