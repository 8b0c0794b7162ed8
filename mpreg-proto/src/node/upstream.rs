//! Upstream MPREG clients on this node ([`crate::upstream`]): each request
//! runs here, level by level. The commands of a level are routed each by
//! its own `locs`, concurrently; once all of them answered, the next
//! level's arguments take their results. The first failure answers the
//! whole request; the answer goes back as one whole message.

use super::calls::{Call, Origin};
use super::{Node, Status};
use crate::error::{CallError, FrameError};
use crate::event::{ConnId, TrafficClass, Transmit};
use crate::id::Addr;
use crate::metrics::{Limit, RejectReason};
use crate::time::Time;
use crate::upstream::{self, Request, RequestError};
use crate::wire::MessageKind;
use crate::wire::Role;
use bytes::Bytes;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Requests of upstream clients being run.
#[derive(Debug, Default)]
pub(super) struct Upstream {
    next: u64,
    running: BTreeMap<u64, Running>,
}

#[derive(Debug)]
struct Running {
    /// The client's connection.
    addr: Addr,
    req: Request,
    /// The level whose commands are out.
    level: usize,
    /// Commands of that level not answered yet.
    waiting: usize,
    /// Results by command index.
    results: HashMap<usize, Value>,
    started: Time,
    deadline: Time,
}

impl Node {
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
        self.on_upstream(now, from, frame);
        self.flush(now);
        Ok(())
    }

    /// A whole message from the upstream client at `from`.
    fn on_upstream(&mut self, now: Time, from: &Addr, message: &[u8]) {
        self.metrics.frames_in[MessageKind::ClientCall.index()] += 1;
        self.metrics.bytes_in[MessageKind::ClientCall.index()] += message.len() as u64;
        let req = match upstream::parse(message) {
            Ok(r) => r,
            Err(e) => {
                let u = upstream::id_of(message);
                let answer = upstream::refuse(&u, &e);
                return self.send_upstream(now, from, &u, answer);
            }
        };
        let id = self.upstream.next;
        self.upstream.next += 1;
        let deadline = now + req.timeout;
        self.upstream.running.insert(
            id,
            Running {
                addr: from.clone(),
                req,
                level: 0,
                waiting: 0,
                results: HashMap::new(),
                started: now,
                deadline,
            },
        );
        self.run_level(now, id);
    }

    /// Starts the commands of request `id`'s current level.
    fn run_level(&mut self, now: Time, id: u64) {
        let Some(r) = self.upstream.running.get_mut(&id) else {
            return;
        };
        let level = r.req.levels[r.level].clone();
        r.waiting = level.len();
        let budget = r.deadline.saturating_since(now);
        let mut calls = Vec::with_capacity(level.len());
        for i in level {
            let args = match r.req.arguments(i, &r.results) {
                Ok(a) => a,
                Err(e) => return self.refuse_running(now, id, &e),
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
            let origin = Origin::Upstream {
                addr: r.addr.clone(),
                request: id,
                command: i,
            };
            calls.push((i, call, origin));
        }
        for (i, call, origin) in calls {
            // A command that failed at once may have answered the request.
            if !self.upstream.running.contains_key(&id) {
                return;
            }
            if let Err(e) = self.start_call(now, call, origin) {
                self.upstream_done(now, id, i, Err(e));
            }
        }
    }

    /// Command `i` of request `id` finished.
    pub(super) fn upstream_done(
        &mut self,
        now: Time,
        id: u64,
        i: usize,
        result: Result<Bytes, CallError>,
    ) {
        let Some(r) = self.upstream.running.get_mut(&id) else {
            return; // the request was answered already
        };
        let value = match result {
            Ok(b) => upstream::result_value(&b),
            Err(e) => {
                let answer = upstream::failed(&r.req.u, &r.req.commands[i].name, &e);
                return self.answer_running(now, id, answer);
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
        let answer = upstream::respond(&r.req, &r.results, now.saturating_since(r.started));
        self.answer_running(now, id, answer);
    }

    fn refuse_running(&mut self, now: Time, id: u64, e: &RequestError) {
        if let Some(r) = self.upstream.running.get(&id) {
            let answer = upstream::refuse(&r.req.u, e);
            self.answer_running(now, id, answer);
        }
    }

    /// Request `id` is answered: it ends here.
    fn answer_running(&mut self, now: Time, id: u64, answer: Vec<u8>) {
        if let Some(r) = self.upstream.running.remove(&id) {
            self.send_upstream(now, &r.addr, &r.req.u, answer);
        }
    }

    /// The upstream client at `addr` is gone: its requests are dropped.
    pub(super) fn upstream_gone(&mut self, addr: &Addr) {
        self.upstream.running.retain(|_, r| r.addr != *addr);
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
        let kind = MessageKind::ClientReply.index();
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
