//! Calls: choosing a provider, waiting for the result, failing over, and
//! executing calls for others exactly once.
//!
//! * **Routing** — a live provider whose resources ⊇ `locs`: this node
//!   first; otherwise the power of two choices on in-flight count (soft
//!   state carried on acks and responses plus our own outstanding calls),
//!   then RTT, with hysteresis so near-ties do not flap.
//! * **Ids and budgets** — `(origin, incarnation, sequence)`; requests carry
//!   the time left, never an absolute deadline.
//! * **Exactly once** — the executor remembers every call id and its result
//!   until the budget expires, so a resent request is answered from memory.
//! * **Failover** — when a provider dies (or its connection breaks) with a
//!   call in flight, idempotent calls go to another provider; others fail
//!   with `OutcomeUnknown` once the provider is declared Dead or Left.

use super::{Node, Status};
use crate::catalog::{Provider, ResourceSet};
use crate::error::{CallError, InvocationError};
use crate::event::{Event, Invocation, Order, TrafficClass};
use crate::id::{Addr, CallId, InvocationId, NodeId};
use crate::metrics::Limit;
use crate::records::MemberState;
use crate::time::Time;
use crate::timers::Timer;
use crate::wire::{
    self, CallRequest, CallResponse, ClientCall, ClientReply, Message, MessageKind, Query,
    QueryAnswer,
};
use bytes::Bytes;
use compact_str::CompactString;
use rand::RngExt;
use semver::VersionReq;
use std::collections::BTreeMap;
use std::time::Duration;

/// A call to make: which function, on what resources, with what arguments.
#[derive(Clone, PartialEq, Debug)]
pub struct Call {
    /// Function name.
    pub function: CompactString,
    /// Accepted versions (`None`: any).
    pub version_req: Option<VersionReq>,
    /// Resources the executing node must have.
    pub locs: ResourceSet,
    /// Arguments, opaque to the core.
    pub args: Bytes,
    /// Time budget (`None`: the configured default).
    pub timeout: Option<Duration>,
    /// The cluster that must serve it (`None`: this cluster if it can,
    /// else whichever cluster a bridge route reaches).
    pub target_cluster: Option<CompactString>,
}

impl Call {
    /// A call of `function` with no arguments, any version, no resources.
    pub fn new(function: impl AsRef<str>) -> Call {
        Call {
            function: CompactString::new(function.as_ref()),
            version_req: None,
            locs: ResourceSet::new(),
            args: Bytes::new(),
            timeout: None,
            target_cluster: None,
        }
    }

    /// Sets the arguments.
    pub fn args(mut self, args: impl Into<Bytes>) -> Call {
        self.args = args.into();
        self
    }

    /// Requires resources.
    pub fn locs<I, S>(mut self, locs: I) -> Call
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.locs
            .extend(locs.into_iter().map(|l| CompactString::new(l.as_ref())));
        self
    }

    /// Sets the time budget.
    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = Some(timeout);
        self
    }

    /// Constrains the version.
    pub fn version(mut self, req: VersionReq) -> Call {
        self.version_req = Some(req);
        self
    }

    /// Requires a cluster to serve it (reached over bridges if needed).
    pub fn cluster(mut self, cluster: impl AsRef<str>) -> Call {
        self.target_cluster = Some(CompactString::new(cluster.as_ref()));
        self
    }
}

/// Who waits for a call.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) enum Origin {
    /// The application on this node.
    Local,
    /// A client connection.
    Client { addr: Addr, token: u64 },
    /// Command `command` of multi-step request `request` run here.
    Step { request: u64, command: usize },
    /// A call this node forwards: a member of its cluster (`bridge: false`)
    /// or a bridge peer waits for the outcome.
    Relay { addr: Addr, bridge: bool },
}

/// How the current attempt travels.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Leg {
    /// To a member of this cluster (or run here).
    Local,
    /// Over a bridge to another cluster.
    Bridge,
}

/// Where an attempt goes.
#[derive(Debug)]
struct Hop {
    node: NodeId,
    addr: Addr,
    /// Safe to re-send elsewhere if this one fails.
    idempotent: bool,
    leg: Leg,
    /// The destination cluster, when it is not this one.
    target: Option<CompactString>,
}

#[derive(Debug)]
pub(super) struct Pending {
    call: Call,
    origin: Origin,
    deadline: Time,
    provider: NodeId,
    provider_addr: Addr,
    idempotent: bool,
    tried: Vec<NodeId>,
    tried_addrs: Vec<Addr>,
    leg: Leg,
    target: Option<CompactString>,
    path: Vec<CompactString>,
    hop_budget: u8,
    /// The executor is chosen by rendezvous on the call id (calls entering
    /// this cluster over a bridge): a re-routed copy reaches the same one.
    rendezvous: bool,
    /// Times the request was sent again after its connection broke.
    resends: u32,
}

#[derive(Debug)]
enum ExecState {
    Running(InvocationId),
    /// The outcome, and its place in [`Calls::done`].
    Done(Result<Bytes, CallError>, u64),
}

#[derive(Debug)]
struct Execution {
    state: ExecState,
    /// `None`: this node's own call.
    reply_to: Option<Addr>,
    cancelled: bool,
}

#[derive(Debug, Default)]
struct Load {
    reported: u32,
    outstanding: u32,
}

#[derive(Debug, Default)]
pub(super) struct Calls {
    next_seq: u64,
    next_invocation: u64,
    pub(super) pending: BTreeMap<CallId, Pending>,
    executions: BTreeMap<CallId, Execution>,
    /// Finished executions in the order they finished: the oldest is
    /// forgotten first when the deduplication memory is full.
    done: BTreeMap<u64, CallId>,
    done_seq: u64,
    /// Bytes of the outcomes remembered in `done`.
    done_bytes: usize,
    invocations: BTreeMap<InvocationId, CallId>,
    pub(super) running: usize,
    loads: BTreeMap<NodeId, Load>,
    last_choice: BTreeMap<CompactString, NodeId>,
    /// Outcomes to report after the current input.
    pub(super) finished: Vec<Event>,
}

impl Calls {
    pub(super) fn note_load(&mut self, node: NodeId, load: u32) {
        if let Some(l) = self.loads.get_mut(&node) {
            l.reported = load;
        } else if self.loads.len() < 65_536 {
            self.loads.insert(
                node,
                Load {
                    reported: load,
                    outstanding: 0,
                },
            );
        }
    }

    fn load_of(&self, node: &NodeId) -> u32 {
        self.loads
            .get(node)
            .map_or(0, |l| l.reported.saturating_add(l.outstanding))
    }

    fn outstanding(&mut self, node: NodeId, delta: i32) {
        let l = self.loads.entry(node).or_default();
        l.outstanding = l.outstanding.saturating_add_signed(delta);
    }

    /// Forgets a finished execution (a running one stays).
    pub(super) fn forget(&mut self, id: &CallId) {
        if let Some(e) = self.executions.get(id)
            && let ExecState::Done(r, seq) = &e.state
        {
            self.done_bytes = self.done_bytes.saturating_sub(outcome_bytes(r));
            self.done.remove(seq);
            self.executions.remove(id);
        }
    }

    /// Records an execution's outcome for answering duplicates.
    fn remember(&mut self, id: CallId, result: Result<Bytes, CallError>) {
        let Some(e) = self.executions.get_mut(&id) else {
            return;
        };
        self.done_seq += 1;
        self.done_bytes += outcome_bytes(&result);
        self.done.insert(self.done_seq, id);
        e.state = ExecState::Done(result, self.done_seq);
    }

    /// Forgets the oldest finished execution; false if none has finished.
    fn forget_oldest(&mut self) -> bool {
        match self.done.first_key_value() {
            Some((_, id)) => {
                let id = *id;
                self.forget(&id);
                true
            }
            None => false,
        }
    }

    pub(super) fn fail_all_pending(&mut self, _now: Time) {
        let ids: Vec<CallId> = self.pending.keys().copied().collect();
        for id in ids {
            if let Some(p) = self.pending.remove(&id)
                && p.origin == Origin::Local
            {
                self.finished.push(Event::CallDone {
                    call: id,
                    result: Err(CallError::Rejected("this node left the cluster".into())),
                });
            }
        }
    }
}

/// Memory an outcome takes in the deduplication table (payload plus a
/// fixed allowance for the entry).
fn outcome_bytes(r: &Result<Bytes, CallError>) -> usize {
    128 + r.as_ref().map_or(0, |b| b.len())
}

/// The answer to a call refused before it was looked at.
pub(super) fn refusal(id: CallId) -> CallResponse {
    CallResponse {
        id,
        result: Err(CallError::Overloaded),
        load: u32::MAX,
    }
}

/// Messages a client connection may send.
pub(super) fn client_may_send(kind: MessageKind) -> bool {
    matches!(
        kind,
        MessageKind::Hello
            | MessageKind::Ping
            | MessageKind::ClientCall
            | MessageKind::ClientMany
            | MessageKind::ClientQuery
    )
}

fn matches(p: &Provider, req: Option<&VersionReq>, locs: &ResourceSet) -> bool {
    req.is_none_or(|r| r.matches(&p.version)) && p.body.satisfies(locs)
}

impl Node {
    fn budget(&self, call: &Call) -> Duration {
        call.timeout
            .unwrap_or(self.cfg.calls.default_timeout)
            .min(self.cfg.calls.max_timeout)
    }

    pub(super) fn start_call(
        &mut self,
        now: Time,
        call: Call,
        origin: Origin,
    ) -> Result<CallId, CallError> {
        if self.status >= Status::Left {
            return Err(CallError::Rejected("this node left the cluster".into()));
        }
        if self.calls.pending.len() >= self.cfg.limits.max_pending_calls {
            self.limit_hit(Limit::PendingCalls);
            return Err(CallError::Rejected("too many pending calls".into()));
        }
        let hop = self.route_call(None, &call, &[], &[])?;
        self.calls.next_seq += 1;
        let id = CallId {
            origin: self.me,
            incarnation: self.incarnation,
            seq: self.calls.next_seq,
        };
        let deadline = now + self.budget(&call);
        self.metrics.calls += 1;
        let hop_budget = self.cfg.calls.hop_budget;
        self.begin(
            now,
            id,
            call,
            origin,
            deadline,
            hop,
            Vec::new(),
            hop_budget,
            false,
        );
        Ok(id)
    }

    /// Records a pending call and sends its first attempt.
    #[allow(clippy::too_many_arguments)]
    fn begin(
        &mut self,
        now: Time,
        id: CallId,
        call: Call,
        origin: Origin,
        deadline: Time,
        hop: Hop,
        path: Vec<CompactString>,
        hop_budget: u8,
        rendezvous: bool,
    ) {
        self.timers.set(Timer::Call(id), deadline);
        self.calls.pending.insert(
            id,
            Pending {
                call,
                origin,
                deadline,
                provider: hop.node,
                provider_addr: hop.addr.clone(),
                idempotent: hop.idempotent,
                tried: vec![hop.node],
                tried_addrs: vec![hop.addr],
                leg: hop.leg,
                target: hop.target,
                path,
                hop_budget,
                rendezvous,
                resends: 0,
            },
        );
        self.dispatch_call(now, id);
    }

    /// Forwards a call for someone else (a member asking for another
    /// cluster, or a bridge peer): same id, the remaining budget and path.
    fn start_relay(&mut self, now: Time, req: CallRequest, origin: Origin, rendezvous: bool) {
        if let Some(p) = self.calls.pending.get_mut(&req.id) {
            // A re-routed copy: the newest path waits for the answer.
            p.origin = origin;
            return;
        }
        if self.calls.pending.len() >= self.cfg.limits.max_pending_calls {
            self.limit_hit(Limit::PendingCalls);
            return self.answer(now, &origin, req.id, Err(CallError::Overloaded));
        }
        let budget = Duration::from_micros(req.budget_us).min(self.cfg.calls.max_timeout);
        let call = Call {
            function: req.function,
            version_req: req.version_req,
            locs: req.locs,
            args: req.args,
            timeout: Some(budget),
            target_cluster: req.target_cluster,
        };
        let fixed = rendezvous.then_some(req.id);
        match self.route_call(fixed, &call, &[], &[]) {
            Ok(hop) => {
                self.metrics.calls_relayed += 1;
                self.begin(
                    now,
                    req.id,
                    call,
                    origin,
                    now + budget,
                    hop,
                    req.path,
                    req.hop_budget,
                    rendezvous,
                )
            }
            Err(e) => self.answer(now, &origin, req.id, Err(e)),
        }
    }

    /// Picks where an attempt goes: a provider in this cluster (this node
    /// first, then the power of two choices; or by rendezvous on `fixed`),
    /// else a bridge route to another cluster (fewest cluster hops, then
    /// RTT) — its bridge node, or, on that node, the bridge itself.
    fn route_call(
        &mut self,
        fixed: Option<CallId>,
        call: &Call,
        exclude: &[NodeId],
        exclude_addrs: &[Addr],
    ) -> Result<Hop, CallError> {
        let own: CompactString = self.cfg.cluster_id.as_str().into();
        let explicit = call.target_cluster.clone();
        let mut local_err = None;
        if explicit.as_ref().is_none_or(|t| *t == own) {
            match self.choose_provider(call, exclude, fixed) {
                Ok((node, addr, idempotent)) => {
                    return Ok(Hop {
                        node,
                        addr,
                        idempotent,
                        leg: Leg::Local,
                        target: None,
                    });
                }
                Err(e) if explicit.is_some() => return Err(e),
                Err(e) => local_err = Some(e),
            }
        }
        let req = call.version_req.as_ref();
        let far = Duration::from_secs(3600);
        let mut routes: Vec<(usize, Duration, NodeId, CompactString)> = self
            .catalog
            .providers(&call.function)
            .iter()
            .filter_map(|p| {
                let r = p.body.route.as_ref()?;
                let ok = r.cluster != own
                    && explicit.as_ref().is_none_or(|t| *t == r.cluster)
                    && matches(p, req, &call.locs)
                    && !exclude.contains(&p.node)
                    && self.is_routable(&p.node);
                ok.then(|| {
                    let rtt = if p.node == self.me {
                        Duration::ZERO
                    } else {
                        self.rtt_of(p.node).unwrap_or(far)
                    };
                    (r.path.len(), rtt, p.node, r.cluster.clone())
                })
            })
            .collect();
        routes.sort();
        for (_, _, owner, dest) in routes {
            if owner == self.me {
                if let Some((addr, node)) =
                    self.next_hop(&dest, &call.function, &call.locs, exclude_addrs)
                {
                    return Ok(Hop {
                        node,
                        addr,
                        idempotent: true,
                        leg: Leg::Bridge,
                        target: Some(dest),
                    });
                }
                continue;
            }
            let addr = self
                .members
                .get(&owner)
                .map(|m| m.addr.clone())
                .unwrap_or_default();
            // A federated call keeps its executor (rendezvous at the
            // destination), so re-sending it through another bridge is safe.
            return Ok(Hop {
                node: owner,
                addr,
                idempotent: true,
                leg: Leg::Local,
                target: Some(dest),
            });
        }
        Err(match explicit {
            Some(t) => CallError::NoRoute(t),
            None => local_err.unwrap_or_else(|| CallError::NotFound(call.function.clone())),
        })
    }

    /// Sends an outcome to whoever waits for a call that never became
    /// pending here.
    fn answer(&mut self, now: Time, origin: &Origin, id: CallId, result: Result<Bytes, CallError>) {
        match origin {
            Origin::Local => self
                .calls
                .finished
                .push(Event::CallDone { call: id, result }),
            Origin::Client { addr, token } => {
                let msg = Message::ClientReply(ClientReply {
                    token: *token,
                    result,
                });
                self.send(now, addr, &msg, TrafficClass::Call);
            }
            Origin::Step { request, command } => self.step_done(now, *request, *command, result),
            Origin::Relay { addr, bridge } => {
                let load = u32::try_from(self.calls.running).unwrap_or(u32::MAX);
                let resp = CallResponse { id, result, load };
                let msg = if *bridge {
                    Message::FedResponse(resp)
                } else {
                    Message::Response(resp)
                };
                self.send(now, addr, &msg, TrafficClass::Call);
            }
        }
    }

    /// Sends (or runs locally) the current attempt of a pending call.
    fn dispatch_call(&mut self, now: Time, id: CallId) {
        let Some(p) = self.calls.pending.get(&id) else {
            return;
        };
        if p.provider == self.me && p.leg == Leg::Local {
            let req = self.request_of(now, id, p);
            self.execute(now, req, None);
            return;
        }
        let (to, provider, leg) = (p.provider_addr.clone(), p.provider, p.leg);
        let mut req = self.request_of(now, id, p);
        if leg == Leg::Bridge {
            // Crossing a bridge: this cluster joins the path; a hop is spent.
            let Some(left) = req.hop_budget.checked_sub(1) else {
                return self.finish_call(now, id, Err(CallError::HopBudgetExhausted));
            };
            req.hop_budget = left;
            req.path.push(self.cfg.cluster_id.as_str().into());
        }
        let frame_len = req.args.len() + req.function.len() + 128;
        if frame_len > self.cfg.limits.max_frame_size {
            self.limit_hit(Limit::FrameSize);
            self.finish_call(
                now,
                id,
                Err(CallError::Rejected(format!(
                    "arguments of {} bytes exceed the frame limit of {}",
                    req.args.len(),
                    self.cfg.limits.max_frame_size
                ))),
            );
            return;
        }
        self.calls.outstanding(provider, 1);
        let msg = match leg {
            Leg::Local => Message::Call(req),
            Leg::Bridge => Message::FedCall(req),
        };
        self.send(now, &to, &msg, TrafficClass::Call);
    }

    fn request_of(&self, now: Time, id: CallId, p: &Pending) -> CallRequest {
        CallRequest {
            id,
            function: p.call.function.clone(),
            version_req: p.call.version_req.clone(),
            locs: p.call.locs.clone(),
            args: p.call.args.clone(),
            budget_us: p.deadline.saturating_since(now).as_micros() as u64,
            hop_budget: p.hop_budget,
            target_cluster: p.target.clone(),
            path: p.path.clone(),
            executor: (p.leg == Leg::Local).then_some(p.provider),
        }
    }

    /// Picks a provider, excluding some; returns it with its address and
    /// whether the function is idempotent there.
    fn choose_provider(
        &mut self,
        call: &Call,
        exclude: &[NodeId],
        fixed: Option<CallId>,
    ) -> Result<(NodeId, Addr, bool), CallError> {
        let req = call.version_req.as_ref();
        // Functions served in this cluster (route entries are not).
        let providers: Vec<&Provider> = self
            .catalog
            .providers(&call.function)
            .iter()
            .filter(|p| p.body.route.is_none())
            .collect();
        if !providers
            .iter()
            .any(|p| req.is_none_or(|r| r.matches(&p.version)))
        {
            return Err(CallError::NotFound(call.function.clone()));
        }
        let me = self.me;
        let live = |id: &NodeId, members: &crate::members::MemberTable| {
            *id == me || members.get(id).is_some_and(|m| m.state.is_live())
        };
        let mut candidates: Vec<(NodeId, bool, bool)> = Vec::new(); // id, idempotent, alive
        for p in providers {
            if exclude.contains(&p.node)
                || !matches(p, req, &call.locs)
                || !live(&p.node, &self.members)
            {
                continue;
            }
            if p.node == me && fixed.is_none() {
                return Ok((me, self.addr.clone(), p.body.idempotent));
            }
            let alive = self
                .members
                .get(&p.node)
                .is_some_and(|m| m.state == MemberState::Alive);
            if let Some(c) = candidates.iter_mut().find(|c| c.0 == p.node) {
                c.1 |= p.body.idempotent;
            } else {
                candidates.push((p.node, p.body.idempotent, alive));
            }
        }
        if candidates.iter().any(|c| c.2) {
            candidates.retain(|c| c.2);
        }
        if candidates.is_empty() {
            return Err(if exclude.is_empty() {
                CallError::NoProvider {
                    function: call.function.clone(),
                    locs: call.locs.iter().cloned().collect(),
                }
            } else {
                CallError::Unreachable
            });
        }
        let pick = if let Some(id) = fixed {
            // Rendezvous: every node with the same view picks the same one.
            let score = |n: &NodeId| crate::hash::canonical(&(id, n));
            candidates
                .iter()
                .copied()
                .max_by_key(|c| score(&c.0))
                .unwrap_or(candidates[0])
        } else if candidates.len() == 1 {
            candidates[0]
        } else {
            let a = self.rng.random_range(0..candidates.len());
            let mut b = self.rng.random_range(0..candidates.len() - 1);
            if b >= a {
                b += 1;
            }
            let (ca, cb) = (candidates[a], candidates[b]);
            let better = self.better(ca.0, cb.0);
            let mut pick = if better { ca } else { cb };
            // Hysteresis: keep the previous choice unless clearly worse.
            if let Some(prev) = self.calls.last_choice.get(&call.function).copied()
                && let Some(c) = candidates.iter().find(|c| c.0 == prev)
                && !self.clearly_better(pick.0, prev)
            {
                pick = *c;
            }
            pick
        };
        self.calls.last_choice.insert(call.function.clone(), pick.0);
        let addr = if pick.0 == me {
            self.addr.clone()
        } else {
            self.members
                .get(&pick.0)
                .map(|m| m.addr.clone())
                .unwrap_or_default()
        };
        Ok((pick.0, addr, pick.1))
    }

    fn rtt_of(&self, id: NodeId) -> Option<Duration> {
        self.overlay
            .active
            .iter()
            .find(|p| p.id == id)
            .and_then(|p| p.rtt.estimate())
    }

    /// Whether `a` is at least as good as `b`: fewer in flight, then RTT.
    fn better(&self, a: NodeId, b: NodeId) -> bool {
        let (la, lb) = (self.calls.load_of(&a), self.calls.load_of(&b));
        if la != lb {
            return la < lb;
        }
        let far = Duration::from_secs(3600);
        self.rtt_of(a).unwrap_or(far) <= self.rtt_of(b).unwrap_or(far)
    }

    /// Whether `a` beats `b` by a margin: two fewer calls in flight, or a
    /// third less RTT at equal load.
    fn clearly_better(&self, a: NodeId, b: NodeId) -> bool {
        let (la, lb) = (self.calls.load_of(&a), self.calls.load_of(&b));
        if la + 2 <= lb {
            return true;
        }
        if la > lb {
            return false;
        }
        match (self.rtt_of(a), self.rtt_of(b)) {
            (Some(ra), Some(rb)) => crate::time::scale(ra, 1.5) < rb,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// Completes a pending call and reports it.
    fn finish_call(&mut self, now: Time, id: CallId, result: Result<Bytes, CallError>) {
        let Some(p) = self.calls.pending.remove(&id) else {
            return;
        };
        self.timers.cancel(Timer::Call(id));
        self.timers.cancel(Timer::Resend(id));
        if result.is_ok() {
            self.metrics.calls_ok += 1;
        } else {
            self.metrics.calls_failed += 1;
        }
        self.answer(now, &p.origin, id, result);
    }

    /// Tries the next provider of an idempotent (or never-started) call;
    /// fails it with `error` when there is none.
    fn retry_call(&mut self, now: Time, id: CallId, error: CallError) {
        if !self.reroute(now, id) {
            self.finish_call(now, id, Err(error));
        }
    }

    /// Sends the call to a provider it has not tried yet, if there is one.
    fn reroute(&mut self, now: Time, id: CallId) -> bool {
        let Some(p) = self.calls.pending.get(&id) else {
            return false;
        };
        let (call, tried, tried_addrs) = (p.call.clone(), p.tried.clone(), p.tried_addrs.clone());
        let fixed = p.rendezvous.then_some(id);
        let Ok(hop) = self.route_call(fixed, &call, &tried, &tried_addrs) else {
            return false;
        };
        if let Some(p) = self.calls.pending.get_mut(&id) {
            p.provider = hop.node;
            p.provider_addr = hop.addr.clone();
            p.idempotent = hop.idempotent;
            p.leg = hop.leg;
            p.target = hop.target;
            p.tried.push(hop.node);
            p.tried_addrs.push(hop.addr);
            p.resends = 0;
        }
        self.metrics.calls_retried += 1;
        self.dispatch_call(now, id);
        true
    }

    /// The connection to the call's provider broke, so the request (or its
    /// answer) may be lost: send it to the same provider again. The
    /// executor remembers call ids, so this never runs the call twice. The
    /// first resend goes at once (a new connection), later ones back off.
    fn resend_call(&mut self, now: Time, id: CallId) {
        let Some(p) = self.calls.pending.get_mut(&id) else {
            return;
        };
        p.resends = p.resends.saturating_add(1);
        self.metrics.calls_resent += 1;
        match p.resends {
            1 => self.dispatch_call(now, id),
            n => {
                let base = self.cfg.calls.resend_backoff;
                let delay = base
                    .saturating_mul(1 << (n - 2).min(5))
                    .min(base.saturating_mul(32));
                self.timers.set(Timer::Resend(id), now + delay);
            }
        }
    }

    pub(super) fn on_resend_timer(&mut self, now: Time, id: CallId) {
        if self.calls.pending.contains_key(&id) {
            self.dispatch_call(now, id);
        }
    }

    pub(super) fn on_call_timeout(&mut self, now: Time, id: CallId) {
        if let Some(p) = self.calls.pending.get(&id) {
            let provider = p.provider;
            self.calls.outstanding(provider, -1);
        }
        self.finish_call(now, id, Err(CallError::Timeout));
    }

    pub(super) fn cancel_call(&mut self, now: Time, id: CallId) -> bool {
        let Some(p) = self.calls.pending.get(&id) else {
            return false;
        };
        let (provider, addr) = (p.provider, p.provider_addr.clone());
        if provider == self.me {
            self.on_cancel(now, id);
        } else {
            self.calls.outstanding(provider, -1);
            self.send(now, &addr, &Message::Cancel(id), TrafficClass::Call);
        }
        self.finish_call(now, id, Err(CallError::Cancelled));
        true
    }

    /// A provider is Dead or Left (`gone`), or unreachable: fail over.
    pub(super) fn provider_gone(&mut self, now: Time, node: NodeId, gone: bool) {
        let affected: Vec<(CallId, bool)> = self
            .calls
            .pending
            .iter()
            .filter(|(_, p)| p.provider == node)
            .map(|(id, p)| (*id, p.idempotent))
            .collect();
        for (id, idempotent) in affected {
            self.calls.outstanding(node, -1);
            if gone && idempotent {
                self.retry_call(now, id, CallError::Unreachable);
            } else if gone {
                self.finish_call(now, id, Err(CallError::OutcomeUnknown));
            } else if !(idempotent && self.reroute(now, id)) {
                self.resend_call(now, id);
            }
        }
    }

    /// A bridge went down: calls that crossed it go another way (their
    /// executor is fixed, so re-sending is safe).
    pub(super) fn bridge_gone(&mut self, now: Time, addr: &Addr) {
        let affected: Vec<CallId> = self
            .calls
            .pending
            .iter()
            .filter(|(_, p)| p.leg == Leg::Bridge && p.provider_addr == *addr)
            .map(|(id, _)| *id)
            .collect();
        for id in affected {
            self.retry_call(now, id, CallError::Unreachable);
        }
    }

    /// Frames to `addr` were lost: calls to it are sent again, or, if it
    /// left, treated as if it had failed.
    pub(super) fn provider_unreachable(&mut self, now: Time, addr: &Addr) {
        let mut nodes: Vec<NodeId> = self
            .calls
            .pending
            .values()
            .filter(|p| p.provider_addr == *addr)
            .map(|p| p.provider)
            .collect();
        nodes.sort();
        nodes.dedup();
        for n in nodes {
            let left = self.member_state(&n) == Some(MemberState::Left);
            self.provider_gone(now, n, left);
        }
        self.client_gone(now, addr);
    }

    /// A client's connection is gone: its calls get nothing more.
    pub(super) fn client_gone(&mut self, now: Time, addr: &Addr) {
        self.calls.pending.retain(|_, p| match &p.origin {
            Origin::Client { addr: a, .. } => a != addr,
            _ => true,
        });
        self.requests_gone(now, addr);
    }

    /// The peer at `addr` closed its connection cleanly: everything it sent
    /// arrived. A member that left answers every call it accepted before it
    /// closes, so a call still pending there did not run: it goes elsewhere,
    /// idempotent or not.
    pub(super) fn peer_closed(&mut self, now: Time, addr: &Addr) {
        let stranded: Vec<CallId> = self
            .calls
            .pending
            .iter()
            .filter(|(_, p)| {
                p.provider_addr == *addr
                    && p.leg == Leg::Local
                    && self.member_state(&p.provider) == Some(MemberState::Left)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stranded {
            if let Some(p) = self.calls.pending.get(&id) {
                let provider = p.provider;
                self.calls.outstanding(provider, -1);
            }
            self.retry_call(now, id, CallError::Unreachable);
        }
        self.client_gone(now, addr);
    }

    pub(super) fn on_response(&mut self, now: Time, peer: Option<NodeId>, resp: CallResponse) {
        if let Some(p) = peer {
            self.calls.note_load(p, resp.load);
        }
        let Some(p) = self.calls.pending.get(&resp.id) else {
            return;
        };
        if peer.is_some_and(|n| n != p.provider) {
            return; // a late answer from a provider we already left
        }
        let (provider, resent, idempotent) = (p.provider, p.resends > 0, p.idempotent);
        self.calls.outstanding(provider, -1);
        match resp.result {
            // The handler did not run there: any call may go elsewhere.
            Err(CallError::Overloaded) => self.retry_call(now, resp.id, CallError::Overloaded),
            // Stopped part way (the provider left): only an idempotent call
            // may run again.
            Err(CallError::OutcomeUnknown) if idempotent => {
                self.retry_call(now, resp.id, CallError::OutcomeUnknown)
            }
            // The provider restarted: a resend may have found the new
            // process after the old one ran it.
            Err(CallError::NotHere) if resent => {
                self.finish_call(now, resp.id, Err(CallError::OutcomeUnknown))
            }
            Err(CallError::NotHere) => self.retry_call(now, resp.id, CallError::Unreachable),
            result => self.finish_call(now, resp.id, result),
        }
    }

    // ----- executing -------------------------------------------------------

    pub(super) fn on_call(&mut self, now: Time, from: &Addr, req: CallRequest) {
        if req.executor.is_some_and(|e| e != self.me) {
            let to = Some(from.clone());
            return self.send_outcome(now, req.id, to, Err(CallError::NotHere));
        }
        let own = self.cfg.cluster_id.as_str();
        if req.target_cluster.as_ref().is_some_and(|t| t != own) {
            // This node is a bridge towards the target: forward it.
            let origin = Origin::Relay {
                addr: from.clone(),
                bridge: false,
            };
            return self.start_relay(now, req, origin, false);
        }
        self.execute(now, req, Some(from.clone()));
    }

    /// A call arriving over a bridge: refused if it loops, served here if
    /// this cluster is its target (executor by rendezvous), else forwarded.
    pub(super) fn on_fed_call(&mut self, now: Time, from: &Addr, req: CallRequest) {
        let origin = Origin::Relay {
            addr: from.clone(),
            bridge: true,
        };
        let own = self.cfg.cluster_id.as_str();
        if req.path.iter().any(|c| c == own) {
            return self.answer(now, &origin, req.id, Err(CallError::Loop));
        }
        let entering = req.target_cluster.as_ref().is_none_or(|t| t == own);
        self.start_relay(now, req, origin, entering);
    }

    pub(super) fn on_fed_response(&mut self, now: Time, from: &Addr, resp: CallResponse) {
        let peer = self.fed.peers.get(from).map(|p| p.node);
        self.on_response(now, peer, resp);
    }

    /// Runs a call here exactly once; `reply_to` is `None` for own calls.
    fn execute(&mut self, now: Time, req: CallRequest, reply_to: Option<Addr>) {
        if let Some(e) = self.calls.executions.get_mut(&req.id) {
            self.metrics.invocations_deduplicated += 1;
            e.reply_to = reply_to;
            if let ExecState::Done(result, _) = &e.state {
                let result = result.clone();
                self.reply(now, req.id, result);
            }
            return;
        }
        let refuse = if self.status >= Status::Left {
            Some(CallError::Rejected("the node has left".into()))
        } else if self.status == Status::Draining {
            // Not run here: the caller may go elsewhere.
            Some(CallError::Overloaded)
        } else if self.calls.running >= self.cfg.limits.max_invocations {
            self.limit_hit(Limit::Invocations);
            Some(CallError::Overloaded)
        } else if self.calls.executions.len() >= self.cfg.limits.max_dedup_entries
            && !self.calls.forget_oldest()
        {
            // Every remembered call is still running.
            self.limit_hit(Limit::DedupEntries);
            Some(CallError::Overloaded)
        } else {
            None
        };
        let version = self
            .catalog
            .entries_of(&self.me)
            .filter(|(n, v, b)| {
                *n == req.function
                    && req.version_req.as_ref().is_none_or(|r| r.matches(v))
                    && req.locs.is_subset(&b.resources)
            })
            .map(|(_, v, _)| v.clone())
            .max();
        let refuse = refuse.or_else(|| {
            version.is_none().then(|| CallError::NoProvider {
                function: req.function.clone(),
                locs: req.locs.iter().cloned().collect(),
            })
        });
        if let Some(err) = refuse {
            self.send_outcome(now, req.id, reply_to, Err(err));
            return;
        }
        let Some(version) = version else { return };
        let budget = Duration::from_micros(req.budget_us).min(self.cfg.calls.max_timeout);
        self.calls.next_invocation += 1;
        let inv = InvocationId(self.calls.next_invocation);
        self.calls.executions.insert(
            req.id,
            Execution {
                state: ExecState::Running(inv),
                reply_to,
                cancelled: false,
            },
        );
        self.calls.invocations.insert(inv, req.id);
        self.calls.running += 1;
        self.metrics.invocations += 1;
        self.orders.push_back(Order::Invoke(Box::new(Invocation {
            id: inv,
            call: req.id,
            function: req.function,
            version,
            args: req.args,
            budget,
        })));
        // The handler gets the budget; the result is remembered as long.
        self.timers.set(Timer::Budget(inv), now + budget);
        self.timers.set(Timer::Dedup(req.id), now + budget);
    }

    pub(super) fn finish_invocation(
        &mut self,
        now: Time,
        id: InvocationId,
        result: Result<Bytes, String>,
    ) -> Result<(), InvocationError> {
        self.complete(now, id, result.map_err(CallError::HandlerFailed))
    }

    /// A handler ran past its call's budget: it is stopped and the call
    /// answered `Timeout`.
    pub(super) fn on_budget_timeout(&mut self, now: Time, id: InvocationId) {
        if self.calls.invocations.contains_key(&id) {
            self.metrics.invocations_timed_out += 1;
            self.orders.push_back(Order::Cancel(id));
            let _ = self.complete(now, id, Err(CallError::Timeout));
        }
    }

    /// The drain of a leave is over: handlers still running are stopped,
    /// their callers told the outcome is unknown.
    pub(super) fn cancel_running(&mut self, now: Time) {
        let running: Vec<InvocationId> = self.calls.invocations.keys().copied().collect();
        for id in running {
            self.orders.push_back(Order::Cancel(id));
            let _ = self.complete(now, id, Err(CallError::OutcomeUnknown));
        }
    }

    /// An invocation ended (returned, failed, was cancelled or timed out).
    fn complete(
        &mut self,
        now: Time,
        id: InvocationId,
        result: Result<Bytes, CallError>,
    ) -> Result<(), InvocationError> {
        let call = self
            .calls
            .invocations
            .remove(&id)
            .ok_or(InvocationError::Unknown)?;
        self.calls.running = self.calls.running.saturating_sub(1);
        self.timers.cancel(Timer::Budget(id));
        if self.status == Status::Draining && self.calls.running == 0 {
            // The last answer goes out before the leave's news.
            self.timers.set(Timer::Leave, now);
        }
        let Some(e) = self.calls.executions.get_mut(&call) else {
            return Ok(());
        };
        let (cancelled, reply_to) = (e.cancelled, e.reply_to.clone());
        self.calls.remember(call, result.clone());
        if self.timers.get(Timer::Dedup(call)).is_none() {
            self.calls.forget(&call);
        }
        // Remembered outcomes are capped in bytes too: the oldest go first.
        while self.calls.done_bytes > self.cfg.limits.max_dedup_bytes && self.calls.done.len() > 1 {
            self.limit_hit(Limit::DedupBytes);
            self.calls.forget_oldest();
        }
        if !cancelled {
            self.send_outcome(now, call, reply_to, result);
        }
        Ok(())
    }

    fn reply(&mut self, now: Time, call: CallId, result: Result<Bytes, CallError>) {
        let reply_to = self
            .calls
            .executions
            .get(&call)
            .and_then(|e| e.reply_to.clone());
        self.send_outcome(now, call, reply_to, result);
    }

    fn send_outcome(
        &mut self,
        now: Time,
        call: CallId,
        reply_to: Option<Addr>,
        result: Result<Bytes, CallError>,
    ) {
        match reply_to {
            None => match result {
                // Our own call found this node overloaded: try another.
                Err(CallError::Overloaded) => self.retry_call(now, call, CallError::Overloaded),
                r => self.finish_call(now, call, r),
            },
            Some(addr) => {
                let load = u32::try_from(self.calls.running).unwrap_or(u32::MAX);
                let msg = Message::Response(CallResponse {
                    id: call,
                    result,
                    load,
                });
                self.send(now, &addr, &msg, TrafficClass::Call);
            }
        }
    }

    /// The caller gave up: the handler is stopped and its result will not
    /// be sent.
    pub(super) fn on_cancel(&mut self, now: Time, id: CallId) {
        let Some(e) = self.calls.executions.get_mut(&id) else {
            return;
        };
        e.cancelled = true;
        if let ExecState::Running(inv) = e.state {
            self.orders.push_back(Order::Cancel(inv));
            let _ = self.complete(now, inv, Err(CallError::Cancelled));
        }
    }

    // ----- clients ---------------------------------------------------------

    pub(super) fn on_client_call(&mut self, now: Time, from: &Addr, c: ClientCall) {
        let call = Call {
            function: c.function,
            version_req: c.version_req,
            locs: c.locs,
            args: c.args,
            timeout: (c.budget_us > 0).then(|| Duration::from_micros(c.budget_us)),
            target_cluster: c.target_cluster,
        };
        let origin = Origin::Client {
            addr: from.clone(),
            token: c.token,
        };
        if let Err(e) = self.start_call(now, call, origin) {
            let msg = Message::ClientReply(ClientReply {
                token: c.token,
                result: Err(e),
            });
            self.send(now, from, &msg, TrafficClass::Call);
        }
    }

    pub(super) fn on_client_query(&mut self, now: Time, from: &Addr, token: u64, q: Query) {
        let answer = match q {
            Query::Members => QueryAnswer::Members(
                self.members
                    .iter()
                    .filter_map(|(id, _)| self.members.record(id))
                    .collect(),
            ),
            // What can be called now: entries of Dead and Left members are
            // left out.
            Query::Catalog => {
                let mut entries = Vec::new();
                for (name, _) in self.catalog.functions() {
                    for p in self.live_providers(name) {
                        entries.push((
                            p.node,
                            CompactString::new(name),
                            p.version.clone(),
                            p.body.clone(),
                        ));
                    }
                }
                QueryAnswer::Catalog(entries)
            }
        };
        let msg = Message::ClientAnswer((token, answer));
        let frame = wire::encode(&msg, wire::MIN_PROTOCOL_VERSION, self.cluster_tag);
        if frame.len() > self.cfg.limits.max_frame_size {
            self.limit_hit(Limit::FrameSize);
            return;
        }
        self.send(now, from, &msg, TrafficClass::Call);
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::Net;
    use crate::{Call, CallError, Config, Event, FunctionSpec};
    use bytes::Bytes;
    use std::time::Duration;

    fn outcomes(net: &Net) -> Vec<Result<Bytes, CallError>> {
        net.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::CallDone { result, .. } => Some(result.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_call_goes_to_the_provider_with_the_resources_and_runs_once() {
        let mut net = Net::joined(4, |_| Config::default());
        net.with(2, |n, now| {
            n.register(now, FunctionSpec::new("f").resources(["gpu"]))
        })
        .unwrap()
        .unwrap();
        net.with(3, |n, now| {
            n.register(now, FunctionSpec::new("f").resources(["cpu"]))
        })
        .unwrap()
        .unwrap();
        net.run_for(Duration::from_millis(200));
        net.with(0, |n, now| {
            n.call(now, Call::new("f").locs(["gpu"]).args("x"))
        })
        .unwrap()
        .unwrap();
        net.run_for(Duration::from_millis(100));
        assert_eq!(outcomes(&net), vec![Ok(Bytes::from("x"))]);
        let ran: Vec<usize> = net.invocations.iter().map(|(i, _)| *i).collect();
        assert_eq!(ran, vec![2]);
    }

    #[test]
    fn a_handler_past_its_budget_is_cancelled_and_the_call_times_out() {
        let mut net = Net::joined(2, |_| Config::default());
        net.set_handler(Box::new(|_, inv| {
            (Duration::from_secs(5), Ok(inv.args.clone()))
        }));
        net.with(1, |n, now| n.register(now, FunctionSpec::new("slow")))
            .unwrap()
            .unwrap();
        net.run_for(Duration::from_millis(200));
        let budget = Duration::from_millis(300);
        net.with(0, |n, now| n.call(now, Call::new("slow").timeout(budget)))
            .unwrap()
            .unwrap();
        net.run_for(Duration::from_secs(1));
        assert_eq!(outcomes(&net), vec![Err(CallError::Timeout)]);
        let inv = net.invocations[0].1.id;
        assert_eq!(
            net.cancelled,
            vec![(1, inv)],
            "the core stopped the handler"
        );
        let node = net.node(1).unwrap();
        assert_eq!(node.running_invocations(), 0);
        assert_eq!(node.metrics().invocations_timed_out, 1);
        // Its late result changes nothing.
        net.run_for(Duration::from_secs(5));
        assert_eq!(outcomes(&net).len(), 1);
    }
}
