//! Multi-step calls ([`crate::multistep`]) run here, level by level, for the
//! application, for client connections and for upstream MPREG clients
//! ([`crate::upstream`]). The commands of a level are routed each by its
//! own `locs`, concurrently; once all of them answered, the next level's
//! arguments take their results, so a result travels only to the node that
//! needs it (through this one). The first failure ends the request: the
//! other commands of its level are cancelled, and one answer goes back.

use super::calls::{Call, Origin};
use super::{Node, Status};
use crate::error::{CallError, FrameError};
use crate::event::{ConnId, Event, TrafficClass, Transmit};
use crate::id::{Addr, CallId};
use crate::metrics::{Limit, RejectReason};
use crate::multistep::{self, Command, ManyError, References, Request};
use crate::time::Time;
use crate::upstream;
use crate::wire::{ClientMany, ClientManyReply, Message, MessageKind, Role};
use bytes::Bytes;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Identifies a multi-step call the application made
/// ([`Node::call_many`]).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RequestId(pub u64);

/// Multi-step calls being run.
#[derive(Debug, Default)]
pub(super) struct Requests {
    next: u64,
    running: BTreeMap<u64, Running>,
}

impl Requests {
    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

/// Who waits for a request's answer.
#[derive(Debug)]
enum Owner {
    /// The application ([`Event::ManyDone`]).
    Local(RequestId),
    /// A client connection ([`ClientManyReply`]).
    Client { addr: Addr, token: u64 },
    /// An upstream MPREG client (its JSON answer).
    Upstream {
        addr: Addr,
        u: Value,
        intermediate: bool,
        summary: bool,
    },
}

impl Owner {
    fn addr(&self) -> Option<&Addr> {
        match self {
            Owner::Local(_) => None,
            Owner::Client { addr, .. } | Owner::Upstream { addr, .. } => Some(addr),
        }
    }
}

#[derive(Debug)]
struct Running {
    owner: Owner,
    req: Request,
    /// The level whose commands are out.
    level: usize,
    /// Commands of that level not answered yet.
    waiting: usize,
    /// Their calls, by command index.
    inflight: HashMap<usize, CallId>,
    /// Results by command index.
    results: HashMap<usize, Value>,
    started: Time,
    deadline: Time,
}

impl Node {
    /// Starts a multi-step call. Its outcome arrives as [`Event::ManyDone`]
    /// with the returned id (also when it fails at once).
    pub fn call_many(&mut self, now: Time, req: Request) -> RequestId {
        let id = self.requests.next_id();
        self.start_request(now, id, Owner::Local(RequestId(id)), req);
        self.flush(now);
        RequestId(id)
    }

    /// Cancels a multi-step call: the calls it has out are cancelled and no
    /// event follows. Returns whether it was running.
    pub fn cancel_many(&mut self, now: Time, request: RequestId) -> bool {
        let Some(r) = self.requests.running.remove(&request.0) else {
            return false;
        };
        self.cancel_inflight(now, r);
        self.flush(now);
        true
    }

    /// A client connection's multi-step call.
    pub(super) fn on_client_many(&mut self, now: Time, from: &Addr, c: ClientMany) {
        let owner = Owner::Client {
            addr: from.clone(),
            token: c.token,
        };
        let references = if c.explicit {
            References::Explicit
        } else {
            References::Names
        };
        let req = Command::list_from_json(&c.commands)
            .and_then(|cmds| Request::with_references(cmds, references))
            .map(|r| match c.budget_us {
                0 => r,
                us => r.timeout(Duration::from_micros(us)),
            });
        match req {
            Ok(req) => {
                let id = self.requests.next_id();
                self.start_request(now, id, owner, req);
            }
            Err(e) => self.answer_owner(now, owner, Err(e.into())),
        }
    }

    /// A frame on an upstream client's connection `conn` (keyed `from`).
    /// As for native frames: one beyond the peer's rate is answered
    /// Overloaded, and once this node has left it answers nothing (the
    /// client hears the connection close); neither changes the node.
    pub(super) fn upstream_frame(
        &mut self,
        now: Time,
        conn: ConnId,
        from: &Addr,
        frame: &[u8],
    ) -> Result<(), FrameError> {
        if !self.admit(now, conn) {
            self.limit_hit(Limit::PeerRate);
            if self.status < Status::Left {
                let u = upstream::id_of(frame);
                let answer = upstream::failed(&u, "", &CallError::Overloaded);
                self.send_upstream(now, from, &u, answer);
                self.flush(now);
            }
            return Err(FrameError::RateLimited);
        }
        if self.status >= Status::Left {
            return Err(self.reject(RejectReason::Left, FrameError::Left));
        }
        if let Some(c) = self.conns.get_mut(conn) {
            c.upstream = true;
            c.role = Role::Client;
        }
        self.metrics.frames_in[MessageKind::ClientMany.index()] += 1;
        self.metrics.bytes_in[MessageKind::ClientMany.index()] += frame.len() as u64;
        match upstream::parse(frame) {
            Ok(r) => {
                let owner = Owner::Upstream {
                    addr: from.clone(),
                    u: r.u,
                    intermediate: r.intermediate,
                    summary: r.summary,
                };
                let id = self.requests.next_id();
                self.start_request(now, id, owner, r.steps);
            }
            Err(e) => {
                let u = upstream::id_of(frame);
                let answer = upstream::refuse(&u, &e);
                self.send_upstream(now, from, &u, answer);
            }
        }
        self.flush(now);
        Ok(())
    }

    fn start_request(&mut self, now: Time, id: u64, owner: Owner, req: Request) {
        let timeout = req.timeout.unwrap_or(self.cfg.calls.default_timeout);
        let deadline = now + timeout.min(self.cfg.calls.max_timeout);
        let running = Running {
            owner,
            req,
            level: 0,
            waiting: 0,
            inflight: HashMap::new(),
            results: HashMap::new(),
            started: now,
            deadline,
        };
        self.requests.running.insert(id, running);
        self.run_level(now, id);
    }

    /// Starts the commands of request `id`'s current level, one by one:
    /// the arguments of a command are built only once the ones before it
    /// started, so a failure stops the level before more is built.
    fn run_level(&mut self, now: Time, id: u64) {
        let Some(r) = self.requests.running.get_mut(&id) else {
            return;
        };
        let level = r.req.levels[r.level].clone();
        r.waiting = level.len();
        let budget = r.deadline.saturating_since(now);
        for i in level {
            // A command that failed at once has ended the request.
            let Some(r) = self.requests.running.get(&id) else {
                return;
            };
            let args = match r.req.arguments(i, &r.results) {
                Ok(a) if a.len() > self.cfg.limits.max_frame_size => {
                    let error = CallError::Rejected(
                        "the arguments are larger than limits.max_frame_size".into(),
                    );
                    let command = r.req.commands[i].name.clone();
                    return self.end_request(now, id, Err(ManyError::Failed { command, error }));
                }
                Ok(a) => a,
                Err(e) => return self.end_request(now, id, Err(e.into())),
            };
            let c = &r.req.commands[i];
            let call = Call {
                function: c.function.clone(),
                version_req: c.version_req.clone(),
                locs: c.locs.clone(),
                args: Bytes::from(args),
                timeout: Some(budget),
                target_cluster: c.target_cluster.clone(),
            };
            let origin = Origin::Step {
                request: id,
                command: i,
            };
            match self.start_call(now, call, origin) {
                Ok(call) => {
                    if let Some(r) = self.requests.running.get_mut(&id)
                        && !r.results.contains_key(&i)
                    {
                        r.inflight.insert(i, call);
                    }
                }
                Err(e) => self.step_done(now, id, i, Err(e)),
            }
        }
    }

    /// Command `i` of request `id` finished.
    pub(super) fn step_done(
        &mut self,
        now: Time,
        id: u64,
        i: usize,
        result: Result<Bytes, CallError>,
    ) {
        let Some(r) = self.requests.running.get_mut(&id) else {
            return; // the request has ended already
        };
        r.inflight.remove(&i);
        let value = match result {
            Ok(b) => multistep::result_value(&b),
            Err(error) => {
                let command = r.req.commands[i].name.clone();
                return self.end_request(now, id, Err(ManyError::Failed { command, error }));
            }
        };
        r.results.insert(i, value);
        r.waiting -= 1;
        if r.waiting > 0 {
            return;
        }
        r.level += 1;
        if r.level < r.req.levels.len() {
            return self.run_level(now, id);
        }
        self.end_request(now, id, Ok(()));
    }

    /// Request `id` ends: its owner is answered, what it still has out is
    /// cancelled.
    fn end_request(&mut self, now: Time, id: u64, outcome: Result<(), ManyError>) {
        let Some(r) = self.requests.running.remove(&id) else {
            return;
        };
        let mut r = self.cancel_inflight(now, r);
        let owner = std::mem::replace(&mut r.owner, Owner::Local(RequestId(id)));
        self.answer_owner(now, owner, outcome.map(|()| &r));
    }

    fn cancel_inflight(&mut self, now: Time, mut r: Running) -> Running {
        for (_, call) in r.inflight.drain() {
            self.cancel_call(now, call);
        }
        r
    }

    /// Answers `owner` with the results of `outcome`'s request, or why not.
    fn answer_owner(&mut self, now: Time, owner: Owner, outcome: Result<&Running, ManyError>) {
        let all = |r: &Running| -> multistep::Results {
            r.req
                .named(0..r.req.commands.len(), &r.results)
                .into_iter()
                .collect()
        };
        match owner {
            Owner::Local(request) => {
                let result = outcome.map(all);
                self.calls
                    .finished
                    .push(Event::ManyDone { request, result });
            }
            Owner::Client { addr, token } => {
                // Strings and JSON values always serialise.
                let result =
                    outcome.map(|r| Bytes::from(serde_json::to_vec(&all(r)).unwrap_or_default()));
                let msg = Message::ClientManyReply(ClientManyReply { token, result });
                self.send(now, &addr, &msg, TrafficClass::Call);
            }
            Owner::Upstream {
                addr,
                u,
                intermediate,
                summary,
            } => {
                let answer = match outcome {
                    Ok(r) => {
                        let elapsed = now.saturating_since(r.started);
                        upstream::respond(&u, &r.req, &r.results, intermediate, summary, elapsed)
                    }
                    Err(ManyError::Invalid(e)) => upstream::refuse(&u, &e),
                    Err(ManyError::Failed { command, error }) => {
                        upstream::failed(&u, &command, &error)
                    }
                    Err(ManyError::Request(error)) => upstream::failed(&u, "", &error),
                };
                self.send_upstream(now, &addr, &u, answer);
            }
        }
    }

    /// The client at `addr` is gone: its requests end unanswered.
    pub(super) fn requests_gone(&mut self, now: Time, addr: &Addr) {
        let ids: Vec<u64> = self
            .requests
            .running
            .iter()
            .filter(|(_, r)| r.owner.addr() == Some(addr))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(r) = self.requests.running.remove(&id) {
                self.cancel_inflight(now, r);
            }
        }
    }

    /// This node left: the application's requests fail, the others end
    /// unanswered (their clients hear the connections close).
    pub(super) fn fail_requests(&mut self) {
        for r in std::mem::take(&mut self.requests.running).into_values() {
            if let Owner::Local(request) = r.owner {
                let error = CallError::Rejected("this node left the cluster".into());
                self.calls.finished.push(Event::ManyDone {
                    request,
                    result: Err(ManyError::Request(error)),
                });
            }
        }
    }

    /// Sends the answer to request `u` as one whole message on `to`'s
    /// connection.
    fn send_upstream(&mut self, now: Time, to: &Addr, u: &Value, answer: Vec<u8>) {
        let Some(conn) = self.conns.primary(to) else {
            return;
        };
        let answer = if answer.len() > self.cfg.limits.max_frame_size {
            self.limit_hit(Limit::FrameSize);
            let e = CallError::Rejected("the answer is larger than limits.max_frame_size".into());
            upstream::failed(u, "", &e)
        } else {
            answer
        };
        let kind = MessageKind::ClientManyReply.index();
        self.metrics.frames_out[kind] += 1;
        self.metrics.bytes_out[kind] += answer.len() as u64;
        self.touch(now, conn);
        self.emit_transmit(Transmit {
            conn,
            frame: Bytes::from(answer),
            class: TrafficClass::Call,
            whole: true,
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::multistep::{Command, ManyError, Request, Results};
    use crate::testing::Net;
    use crate::{CallError, Config, Event, FunctionSpec, RequestId};
    use bytes::Bytes;
    use serde_json::json;
    use std::time::Duration;

    /// Nodes 1..=3 serve `f` with resources r1..r3; handlers: `slow` takes
    /// 5 s, `fail` fails, everything else echoes its arguments' first value.
    fn cluster() -> Net {
        let mut net = Net::joined(4, |_| Config::default());
        net.set_handler(Box::new(|_, inv| {
            let args: Vec<serde_json::Value> = serde_json::from_slice(&inv.args).unwrap();
            let first = Bytes::from(serde_json::to_vec(&args.first()).unwrap());
            match inv.function.as_str() {
                "slow" => (Duration::from_secs(5), Ok(first)),
                "fail" => (Duration::from_millis(5), Err("boom".into())),
                _ => (Duration::from_millis(5), Ok(first)),
            }
        }));
        for i in 1..=3 {
            for f in ["f", "slow", "fail"] {
                let spec = FunctionSpec::new(f).resources([format!("r{i}")]);
                net.with(i, |n, now| n.register(now, spec))
                    .unwrap()
                    .unwrap();
            }
        }
        net.run_for(Duration::from_millis(300));
        net
    }

    fn done(net: &Net) -> Vec<(RequestId, Result<Results, ManyError>)> {
        net.events
            .iter()
            .filter_map(|(i, e)| match e {
                Event::ManyDone { request, result } if *i == 0 => Some((*request, result.clone())),
                _ => None,
            })
            .collect()
    }

    fn ran_on(net: &Net) -> Vec<usize> {
        net.invocations.iter().map(|(i, _)| *i).collect()
    }

    #[test]
    fn each_step_runs_on_its_own_provider_and_every_result_comes_back() {
        let mut net = cluster();
        let req = Request::new(vec![
            Command::new("a", "f")
                .arg(json!({"x": [7, 8]}))
                .locs(["r1"]),
            Command::new("b", "f").arg("a.x.1").locs(["r2"]),
            Command::new("c", "f").kwarg("k", "a").locs(["r3"]),
            Command::new("d", "f").arg(json!(["b", "c"])).locs(["r1"]),
        ])
        .unwrap();
        let id = net.with(0, |n, now| n.call_many(now, req)).unwrap();
        net.run_for(Duration::from_millis(200));
        let want = Results::from([
            ("a".into(), json!({"x": [7, 8]})),
            ("b".into(), json!(8)),
            ("c".into(), json!({"k": {"x": [7, 8]}})),
            ("d".into(), json!([8, {"k": {"x": [7, 8]}}])),
        ]);
        assert_eq!(done(&net), vec![(id, Ok(want))]);
        let mut ran = ran_on(&net);
        ran[1..3].sort();
        assert_eq!(
            ran,
            vec![1, 2, 3, 1],
            "level by level, each where its locs say"
        );
    }

    #[test]
    fn a_failure_ends_the_request_and_cancels_its_level() {
        let mut net = cluster();
        let req = Request::new(vec![
            Command::new("s", "slow").locs(["r1"]).arg(1),
            Command::new("x", "fail").locs(["r2"]).arg(2),
            Command::new("after", "f").arg("s"),
        ])
        .unwrap();
        let id = net.with(0, |n, now| n.call_many(now, req)).unwrap();
        net.run_for(Duration::from_millis(200));
        let failed = ManyError::Failed {
            command: "x".into(),
            error: CallError::HandlerFailed("boom".into()),
        };
        assert_eq!(done(&net), vec![(id, Err(failed))]);
        let slow = net.invocations.iter().find(|(_, i)| i.function == "slow");
        assert_eq!(net.cancelled, vec![(1, slow.unwrap().1.id)]);
        net.run_for(Duration::from_secs(6));
        assert_eq!(done(&net).len(), 1, "nothing more");
        assert_eq!(ran_on(&net).len(), 2, "the next level never ran");
    }

    #[test]
    fn the_request_budget_bounds_every_step_and_cancel_stops_it() {
        let mut net = cluster();
        let budget = Duration::from_millis(250);
        let req = Request::new(vec![Command::new("s", "slow").locs(["r3"])]).unwrap();
        let start = net.now;
        let id = net
            .with(0, |n, now| n.call_many(now, req.timeout(budget)))
            .unwrap();
        let took = net.run_until_true(Duration::from_secs(2), |net| !done(net).is_empty());
        let took = took.unwrap();
        assert!(took >= budget && took < budget * 2, "{took:?}");
        let timeout = ManyError::Failed {
            command: "s".into(),
            error: CallError::Timeout,
        };
        assert_eq!(done(&net), vec![(id, Err(timeout))]);
        assert!(net.now >= start + budget);

        let req = Request::new(vec![Command::new("s", "slow").locs(["r2"])]).unwrap();
        let id = net.with(0, |n, now| n.call_many(now, req)).unwrap();
        net.run_for(Duration::from_millis(50));
        assert!(net.with(0, |n, now| n.cancel_many(now, id)).unwrap());
        net.run_for(Duration::from_secs(6));
        assert_eq!(done(&net).len(), 1, "a cancelled request reports nothing");
        assert_eq!(
            net.cancelled.len(),
            2,
            "its step was cancelled where it ran"
        );
    }

    #[test]
    fn a_step_nobody_serves_fails_with_its_name() {
        let mut net = cluster();
        let req = Request::new(vec![
            Command::new("a", "f"),
            Command::new("b", "f").arg("a").locs(["nowhere"]),
        ])
        .unwrap();
        let id = net.with(0, |n, now| n.call_many(now, req)).unwrap();
        net.run_for(Duration::from_millis(100));
        let [(got, Err(ManyError::Failed { command, error }))] = &done(&net)[..] else {
            panic!("{:?}", done(&net));
        };
        assert_eq!((*got, command.as_str()), (id, "b"));
        assert!(matches!(error, CallError::NoProvider { .. }), "{error:?}");
    }
}
