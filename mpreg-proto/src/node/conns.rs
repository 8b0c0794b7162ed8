//! Connections, which the core owns (DESIGN §5). The runtime gives every
//! socket an id and reports it opened (dialled or accepted), its frames and
//! its close; the core decides what to dial, how to key each connection,
//! which of two to one peer survives, when to back off, when to close, and
//! encodes every frame it sends.
//!
//! * **Keys.** Frames are attributed to a connection's *key*: the dialled
//!   address, or for an accepted connection `conn:ID` until the peer's
//!   `Hello` names its address (clients keep `conn:ID`). Sending to an
//!   address uses its *primary* connection.
//! * **Dials.** Frames for an address with no connection are *held* (in
//!   order, up to `connections.max_held_bytes`) while it is dialled, and go
//!   out when it opens, after this node's `Hello`. A failed dial drops them
//!   and backs off: the next frames wait `backoff_min × 2^(failures − 1)`
//!   (capped at `backoff_max`, equal jitter) before the next dial.
//! * **Tie-break.** Two connections to one peer (a simultaneous dial):
//!   both ends keep the one dialled by the lower address, or, both dialled
//!   the same way, the newer; the other is demoted (read, never written)
//!   and closes once quiet. A `Hello` from another node or a higher
//!   incarnation at a known address (a restart) replaces the old
//!   connection at once.
//! * **Idle close.** A connection this node does not keep (active view,
//!   ring, bridges, pending neighbours) closes after `idle_timeout` without
//!   traffic; clients after `client_idle_timeout`.

use super::admission::Gate;
use super::{Node, PeerHello, Status};
use crate::event::{Closed, ConnId, Order, TrafficClass, Transmit};
use crate::id::{Addr, NodeId};
use crate::metrics::Limit;
use crate::time::Time;
use crate::timers::Timer;
use crate::wire::{self, Hello, Message, MessageKind, Role};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

/// Token-bucket unit: millionths of a frame.
const TOKEN: u64 = 1_000_000;
/// Prefix of the keys of connections whose peer has not named an address:
/// never dialled, and refused as an advertised address.
const UNNAMED: &str = "conn:";

/// One open (or closing) connection.
#[derive(Debug)]
pub(super) struct Conn {
    /// Where its frames are attributed: see the module docs.
    pub(super) key: Addr,
    /// This node dialled it.
    pub(super) outbound: bool,
    pub(super) opened: Time,
    last_activity: Time,
    /// Who spoke on it (from its `Hello` or `BridgeHello`).
    pub(super) node: Option<NodeId>,
    incarnation: u64,
    pub(super) role: Role,
    version: u8,
    hello_sent: bool,
    /// A bridge to another cluster: no member `Hello` goes on it.
    pub(super) bridge: bool,
    /// An upstream MPREG client's (JSON, whole messages).
    pub(super) upstream: bool,
    /// Rate limit: tokens in millionths of a frame.
    tokens: u64,
    refilled: Time,
    /// When this node last told the peer that it holds it Suspect/Dead.
    told: Option<Time>,
    /// When this node ordered it closed.
    pub(super) closing: Option<Time>,
    /// Admission: see `node::admission`.
    pub(super) gate: Gate,
}

/// Frames held for an address while it is dialled (or backing off).
#[derive(Debug, Default)]
struct Dialing {
    frames: VecDeque<(Bytes, TrafficClass)>,
    bytes: usize,
    bridge: bool,
    /// The deadline of the dial, once ordered; `None` while backing off.
    deadline: Option<Time>,
}

#[derive(Clone, Copy, Debug)]
struct Backoff {
    failures: u32,
    until: Time,
}

/// The connection table.
#[derive(Debug)]
pub(super) struct Conns {
    map: BTreeMap<ConnId, Conn>,
    /// The primary connection of each key.
    by_addr: HashMap<Addr, ConnId, foldhash::fast::FixedState>,
    dialing: BTreeMap<Addr, Dialing>,
    backoff: BTreeMap<Addr, Backoff>,
    /// Addresses whose frames were lost by this input; handled in `flush`.
    lost: Vec<Addr>,
}

impl Conns {
    /// Addresses are hashed with a per-node seed (from the node's RNG:
    /// deterministic, not predictable by peers choosing addresses).
    pub(super) fn new(seed: u64) -> Conns {
        Conns {
            map: BTreeMap::new(),
            by_addr: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(seed)),
            dialing: BTreeMap::new(),
            backoff: BTreeMap::new(),
            lost: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn dialing(&self) -> usize {
        self.dialing.len()
    }

    pub(super) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.map.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.map.get_mut(&id)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.map.iter().map(|(id, c)| (*id, c))
    }

    /// The primary connection of `addr`.
    pub(super) fn primary(&self, addr: &Addr) -> Option<ConnId> {
        self.by_addr.get(addr).copied()
    }

    fn is_primary(&self, id: ConnId) -> bool {
        self.map
            .get(&id)
            .is_some_and(|c| self.by_addr.get(&c.key) == Some(&id))
    }

    /// Removes a connection; another open one with the same key, if any,
    /// becomes primary. Returns it and whether it was primary.
    fn remove(&mut self, id: ConnId) -> Option<(Conn, bool)> {
        let c = self.map.remove(&id)?;
        let primary = self.by_addr.get(&c.key) == Some(&id);
        if primary {
            self.by_addr.remove(&c.key);
            let next = self
                .map
                .iter()
                .filter(|(_, o)| o.key == c.key && o.closing.is_none())
                .max_by_key(|(i, o)| (o.opened, **i))
                .map(|(i, _)| *i);
            if let Some(n) = next {
                self.by_addr.insert(c.key.clone(), n);
            }
        }
        Some((c, primary))
    }
}

/// Whether `addr` is a key this node made up (never dialled).
fn unnamed(addr: &Addr) -> bool {
    addr.as_str().starts_with(UNNAMED)
}

/// The dial backoff after `failures` failures, `r` in [0, 1) drawing the
/// jitter: a random point in the upper half of the capped exponential.
pub(super) fn backoff_delay(failures: u32, min: Duration, max: Duration, r: f64) -> Duration {
    let full = min
        .saturating_mul(1 << failures.saturating_sub(1).min(20))
        .min(max);
    full / 2 + crate::time::scale(full / 2, r.clamp(0.0, 1.0))
}

/// Of two connections with the same key, whether `a` should be the
/// primary rather than `b` — the same answer at both ends. `me` is this
/// node's address, `peer` the key.
pub(super) fn prefer(me: &Addr, peer: &Addr, a: &Conn, b: &Conn) -> bool {
    // A different process answered at that address: its connection is the
    // live one.
    if let (Some(na), Some(nb)) = (a.node, b.node)
        && (na != nb || a.incarnation != b.incarnation)
    {
        return (a.incarnation, a.opened) > (b.incarnation, b.opened);
    }
    if a.outbound != b.outbound {
        // Keep the one dialled by the lower address.
        let i_dial_lower = me < peer;
        return a.outbound == i_dial_lower;
    }
    a.opened > b.opened
}

/// Whether two connections carry different processes (a restart).
fn replaced(a: &Conn, b: &Conn) -> bool {
    matches!((a.node, b.node), (Some(na), Some(nb)) if na != nb || a.incarnation != b.incarnation)
}

impl Node {
    fn new_conn(&self, now: Time, key: Addr, outbound: bool) -> Conn {
        Conn {
            key,
            outbound,
            opened: now,
            last_activity: now,
            node: None,
            incarnation: 0,
            role: Role::Member,
            version: wire::MIN_PROTOCOL_VERSION,
            hello_sent: false,
            bridge: false,
            upstream: false,
            tokens: u64::from(self.cfg.limits.peer_frame_burst) * TOKEN,
            refilled: now,
            told: None,
            closing: None,
            gate: Gate::new(self.cfg.admission.is_open()),
        }
    }

    /// Connections open or opening.
    fn conn_count(&self) -> usize {
        self.conns.map.len() + self.conns.dialing.len()
    }

    /// Whether this node keeps a connection to `addr` open: an active or
    /// ring peer, an up bridge, a pending neighbour request.
    pub(super) fn kept(&self, addr: &Addr) -> bool {
        self.overlay
            .active
            .iter()
            .chain(self.overlay.ring.iter())
            .any(|p| p.addr == *addr)
            || self.overlay.pending.values().any(|(a, _)| a == addr)
            || self.fed.peers.get(addr).is_some_and(|p| p.up)
    }

    // ----- runtime inputs ---------------------------------------------------

    pub(super) fn on_accepted(&mut self, now: Time, id: ConnId) {
        if self.conns.map.contains_key(&id) {
            return;
        }
        let key = Addr::new(format!("{UNNAMED}{}", id.0));
        let mut c = self.new_conn(now, key.clone(), false);
        self.metrics.connections_accepted += 1;
        let full = self.conn_count() >= self.cfg.connections.max_connections;
        if full {
            self.limit_hit(Limit::Connections);
        }
        if full || self.status >= Status::Left {
            self.metrics.connections_refused += 1;
            c.closing = Some(now);
            self.conns.map.insert(id, c);
            self.orders.push_back(Order::Close(id));
            return;
        }
        self.metrics.connections_opened += 1;
        self.conns.map.insert(id, c);
        self.conns.by_addr.insert(key, id);
    }

    pub(super) fn on_dialed(&mut self, now: Time, addr: &Addr, id: ConnId) {
        if *addr == self.addr || unnamed(addr) {
            // Never ordered: this node does not talk to itself.
            let mut c = self.new_conn(now, addr.clone(), true);
            c.closing = Some(now);
            self.conns.map.entry(id).or_insert(c);
            self.orders.push_back(Order::Close(id));
            return;
        }
        let ordered = self.conns.dialing.contains_key(addr);
        if !ordered
            && !self.conns.map.contains_key(&id)
            && self.conn_count() >= self.cfg.connections.max_connections
        {
            // A connection this node did not ask for, beyond the cap.
            self.limit_hit(Limit::Connections);
            self.metrics.connections_refused += 1;
            let mut c = self.new_conn(now, addr.clone(), true);
            c.closing = Some(now);
            self.conns.map.insert(id, c);
            self.orders.push_back(Order::Close(id));
            return;
        }
        let held = self.conns.dialing.remove(addr).unwrap_or_default();
        self.conns.backoff.remove(addr);
        if let Some(c) = self.conns.map.get(&id) {
            // A connectionless transport answered with the connection it
            // already has to that address (not one this node is closing).
            if unnamed(&c.key) && c.closing.is_none() {
                self.rekey(now, id, addr.clone());
            }
        } else {
            let mut c = self.new_conn(now, addr.clone(), true);
            c.bridge = held.bridge;
            self.metrics.connections_opened += 1;
            self.conns.map.insert(id, c);
            match self.conns.primary(addr) {
                None => {
                    self.conns.by_addr.insert(addr.clone(), id);
                }
                Some(other) => self.settle(now, id, other, addr),
            }
            if !held.bridge {
                self.send_hello_on(id);
            }
        }
        let to = self.conns.primary(addr).unwrap_or(id);
        for (frame, class) in held.frames {
            self.emit(now, to, frame, class);
        }
        if self.status >= Status::Left {
            self.close_conn(now, id);
        }
        self.arm_dial_timer();
    }

    pub(super) fn on_dial_failed(&mut self, now: Time, addr: &Addr) {
        let Some(held) = self.conns.dialing.remove(addr) else {
            return;
        };
        if let Some(id) = self.conns.primary(addr) {
            // The peer dialled in meanwhile: its connection serves.
            for (frame, class) in held.frames {
                self.emit(now, id, frame, class);
            }
            self.arm_dial_timer();
            return;
        }
        self.metrics.dial_failures += 1;
        let failures = self.conns.backoff.get(addr).map_or(0, |b| b.failures) + 1;
        let r: f64 = rand::RngExt::random(&mut self.rng);
        let c = &self.cfg.connections;
        let delay = backoff_delay(failures, c.backoff_min, c.backoff_max, r);
        self.conns.backoff.insert(
            addr.clone(),
            Backoff {
                failures,
                until: now + delay,
            },
        );
        self.conns.lost.push(addr.clone());
        self.arm_dial_timer();
    }

    pub(super) fn on_closed(&mut self, now: Time, id: ConnId, how: Closed) {
        let Some((c, primary)) = self.conns.remove(id) else {
            return;
        };
        if c.role == Role::Client {
            self.client_gone(now, &c.key);
        }
        // Closes this node asked for say nothing about the peer.
        let ours = c.closing.is_some();
        if how == Closed::Lost && !ours {
            self.metrics.connections_lost += 1;
        }
        if !ours && (primary || how != Closed::Clean) {
            if how != Closed::Lost {
                self.peer_closed(now, &c.key);
            }
            if how != Closed::Clean {
                self.conns.lost.push(c.key.clone());
            }
        }
        self.check_stopped(now);
    }

    // ----- sending ----------------------------------------------------------

    /// Encodes and sends a message, preceded by this node's `Hello` if the
    /// connection has not had it.
    pub(super) fn send(&mut self, now: Time, to: &Addr, msg: &Message, class: TrafficClass) {
        self.send_frame(now, to, msg.kind(), class, true, |v, tag| {
            wire::encode(msg, v, tag)
        });
    }

    /// Sends a message on a bridge: no member `Hello` on its connection.
    pub(super) fn send_bridge(&mut self, now: Time, to: &Addr, msg: &Message) {
        if let Some(c) = self
            .conns
            .primary(to)
            .and_then(|id| self.conns.map.get_mut(&id))
        {
            c.bridge = true;
        }
        self.send_frame(
            now,
            to,
            msg.kind(),
            TrafficClass::Control,
            false,
            |v, tag| wire::encode(msg, v, tag),
        );
    }

    /// Sends a frame whose body was encoded elsewhere.
    pub(super) fn send_body(
        &mut self,
        now: Time,
        to: &Addr,
        kind: MessageKind,
        body: &[u8],
        class: TrafficClass,
    ) {
        self.send_frame(now, to, kind, class, true, |v, tag| {
            wire::encode_raw(kind.tag(), body, v, tag)
        });
    }

    /// The one place frames are made: on the primary connection of `to`,
    /// or held while `to` is dialled.
    fn send_frame(
        &mut self,
        now: Time,
        to: &Addr,
        kind: MessageKind,
        class: TrafficClass,
        member: bool,
        encode: impl FnOnce(u8, u16) -> Vec<u8>,
    ) {
        if *to == self.addr || to.as_str().is_empty() || self.status == Status::Stopped {
            return;
        }
        let tag = self.cluster_tag;
        if let Some(id) = self.conns.primary(to) {
            let Some(c) = self.conns.map.get_mut(&id) else {
                return;
            };
            c.last_activity = now;
            let (version, hello) = (c.version, member && !c.hello_sent && !c.bridge);
            if hello {
                self.send_hello_on(id);
            }
            let frame = encode(version, tag);
            if self.count_out(kind, frame.len()) {
                self.emit(now, id, Bytes::from(frame), class);
            }
            return;
        }
        if unnamed(to) {
            return; // an unnamed peer whose connection is gone
        }
        let frame = encode(wire::MIN_PROTOCOL_VERSION, tag);
        if self.count_out(kind, frame.len()) {
            self.hold(now, to, Bytes::from(frame), class, !member);
        }
    }

    /// Counts an outgoing frame; false if it may not be sent.
    fn count_out(&mut self, kind: MessageKind, len: usize) -> bool {
        if len > self.cfg.limits.max_frame_size {
            self.limit_hit(Limit::FrameSize);
            return false;
        }
        self.metrics.frames_out[kind.index()] += 1;
        self.metrics.bytes_out[kind.index()] += len as u64;
        if super::sync::is_sync(kind) {
            self.metrics.sync_bytes += len as u64;
        }
        true
    }

    /// Traffic on `conn` now (it is not idle).
    pub(super) fn touch(&mut self, now: Time, conn: ConnId) {
        if let Some(c) = self.conns.map.get_mut(&conn) {
            c.last_activity = now;
        }
    }

    /// Queues a `Send` order, or holds the frame while the connection's
    /// peer is not admitted.
    pub(super) fn emit(&mut self, now: Time, conn: ConnId, frame: Bytes, class: TrafficClass) {
        if self.gate_out(now, conn, &frame, class) {
            return;
        }
        self.emit_transmit(Transmit {
            conn,
            frame,
            class,
            whole: false,
        });
    }

    pub(super) fn emit_transmit(&mut self, t: Transmit) {
        if self.queued_sends >= self.cfg.limits.max_queued_transmits {
            self.limit_hit(Limit::QueuedTransmits);
            return;
        }
        self.queued_sends += 1;
        self.orders.push_back(Order::Send(t));
    }

    /// This node's `Hello` on `id`, and its challenge if it has a policy.
    fn send_hello_on(&mut self, id: ConnId) {
        let Some(c) = self.conns.map.get_mut(&id) else {
            return;
        };
        c.hello_sent = true;
        self.emit_control(id, &Message::Hello(self.hello()));
        self.challenge(id);
    }

    /// Sends a handshake message on `id` (never held by the gate).
    pub(super) fn emit_control(&mut self, id: ConnId, msg: &Message) {
        let frame = wire::encode(msg, wire::MIN_PROTOCOL_VERSION, self.cluster_tag);
        if self.count_out(msg.kind(), frame.len()) {
            self.emit_transmit(Transmit {
                conn: id,
                frame: Bytes::from(frame),
                class: TrafficClass::Control,
                whole: false,
            });
        }
    }

    fn hello(&self) -> Hello {
        Hello {
            node: self.me,
            incarnation: self.incarnation,
            addr: self.addr.clone(),
            min_version: wire::MIN_PROTOCOL_VERSION,
            max_version: wire::PROTOCOL_VERSION,
            cluster_id: self.cfg.cluster_id.as_str().into(),
            role: Role::Member,
        }
    }

    /// Holds a frame for `to`, dialling it unless a dial is out or backing
    /// off.
    fn hold(&mut self, now: Time, to: &Addr, frame: Bytes, class: TrafficClass, bridge: bool) {
        if !self.conns.dialing.contains_key(to) {
            if self.conn_count() >= self.cfg.connections.max_connections && !self.make_room(now) {
                self.limit_hit(Limit::Connections);
                self.conns.lost.push(to.clone());
                return;
            }
            let backing_off = self.conns.backoff.get(to).is_some_and(|b| now < b.until);
            if backing_off && self.status >= Status::Left {
                return; // a node that left does not wait to dial again
            }
            let mut d = Dialing::default();
            if !backing_off {
                d.deadline = Some(now + self.cfg.connections.dial_timeout);
                self.metrics.dials += 1;
                self.orders.push_back(Order::Dial(to.clone()));
            }
            self.conns.dialing.insert(to.clone(), d);
            self.arm_dial_timer();
        }
        let max = self.cfg.connections.max_held_bytes;
        let Some(d) = self.conns.dialing.get_mut(to) else {
            return;
        };
        d.bridge |= bridge;
        if d.bytes + frame.len() > max {
            // The peer does not come up and frames pile up: give them up.
            d.frames.clear();
            d.bytes = 0;
            self.limit_hit(Limit::HeldBytes);
            self.conns.lost.push(to.clone());
            return;
        }
        d.bytes += frame.len();
        d.frames.push_back((frame, class));
    }

    /// Closes the quietest connection this node does not keep, to make
    /// room for a dial. False if every connection is kept.
    fn make_room(&mut self, now: Time) -> bool {
        let victim = self
            .conns
            .map
            .iter()
            .filter(|(_, c)| c.closing.is_none() && !self.kept(&c.key))
            .min_by_key(|(id, c)| (c.last_activity, **id))
            .map(|(id, _)| *id);
        match victim {
            Some(id) => {
                self.limit_hit(Limit::Connections);
                self.close_conn(now, id);
                // Closing connections still count until the runtime reports
                // them; the cap bounds what this node opens, so one more
                // dial is allowed while the victim closes.
                true
            }
            None => false,
        }
    }

    /// Orders a connection closed after its queue is written.
    pub(super) fn close_conn(&mut self, now: Time, id: ConnId) {
        let Some(c) = self.conns.map.get_mut(&id) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        c.closing = Some(now);
        let key = c.key.clone();
        if self.conns.by_addr.get(&key) == Some(&id) {
            self.conns.by_addr.remove(&key);
        }
        self.orders.push_back(Order::Close(id));
    }

    // ----- hello and keys ---------------------------------------------------

    /// A `Hello`: learn who is on this connection and which version to use;
    /// key it by the peer's address from now on.
    pub(super) fn on_hello(&mut self, now: Time, id: ConnId, h: Hello) -> PeerHello {
        let Some(c) = self.conns.map.get_mut(&id).filter(|c| c.closing.is_none()) else {
            // Gone, or closing: nothing more goes on it.
            return PeerHello {
                node: h.node,
                addr: Addr::default(),
                role: h.role,
            };
        };
        if !c.gate.open && h.role == Role::Member {
            // Applied once the peer is admitted (see `node::admission`).
            let key = c.key.clone();
            let hello_sent = c.hello_sent;
            let node = h.node;
            c.gate.hello = Some(h);
            if !hello_sent {
                self.send_hello_on(id);
            }
            return PeerHello {
                node,
                addr: key,
                role: Role::Member,
            };
        }
        c.node = Some(h.node);
        c.incarnation = h.incarnation;
        c.role = h.role;
        c.version = h.max_version.min(wire::PROTOCOL_VERSION);
        // Keyed by the advertised address, unless it is empty, made up, or
        // this node's own (an impostor or a misconfigured peer).
        let rekey = h.role == Role::Member
            && !h.addr.as_str().is_empty()
            && !unnamed(&h.addr)
            && h.addr != self.addr
            && c.key != h.addr;
        let mut key = c.key.clone();
        let hello_sent = c.hello_sent;
        if h.role == Role::Member {
            self.note_seed(&key, h.node);
        }
        if !hello_sent {
            self.send_hello_on(id);
        }
        if rekey {
            key = h.addr.clone();
            self.rekey(now, id, h.addr.clone());
        }
        if h.role == Role::Member {
            self.heard_from(now, h.node);
            self.tell_if_accused(now, &key, h.node, h.incarnation);
        }
        PeerHello {
            node: h.node,
            addr: key,
            role: h.role,
        }
    }

    /// Keys connection `id` by `to`, settling which connection is primary.
    fn rekey(&mut self, now: Time, id: ConnId, to: Addr) {
        let Some(c) = self.conns.map.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut c.key, to.clone());
        if self.conns.by_addr.get(&old) == Some(&id) {
            self.conns.by_addr.remove(&old);
        }
        match self.conns.primary(&to) {
            None => {
                self.conns.by_addr.insert(to.clone(), id);
                // Frames held for a dial to that address go now.
                let held = match self.conns.dialing.get_mut(&to) {
                    Some(d) => {
                        d.bytes = 0;
                        std::mem::take(&mut d.frames)
                    }
                    None => VecDeque::new(),
                };
                for (frame, class) in held {
                    self.emit(now, id, frame, class);
                }
            }
            Some(other) if other == id => {}
            Some(other) => self.settle(now, id, other, &to),
        }
    }

    /// Two connections `a` (new) and `b` (primary) share key `to`: keep the
    /// preferred one. A stale process's connection closes at once, and its
    /// frames count as lost; a duplicate is only demoted.
    fn settle(&mut self, now: Time, a: ConnId, b: ConnId, to: &Addr) {
        let (Some(ca), Some(cb)) = (self.conns.map.get(&a), self.conns.map.get(&b)) else {
            return;
        };
        let a_wins = prefer(&self.addr, to, ca, cb);
        let stale = replaced(ca, cb);
        let (winner, loser) = if a_wins { (a, b) } else { (b, a) };
        self.conns.by_addr.insert(to.clone(), winner);
        if stale {
            self.close_conn(now, loser);
            self.conns.lost.push(to.clone());
        }
    }

    /// The peer of connection `from` says who it is (a bridge hello).
    pub(super) fn set_conn_node(&mut self, from: &Addr, node: NodeId, bridge: bool) {
        if let Some(c) = self
            .conns
            .primary(from)
            .and_then(|id| self.conns.map.get_mut(&id))
        {
            c.node = Some(node);
            c.bridge |= bridge;
        }
    }

    /// Charges one frame to connection `id`'s rate; false when over it.
    pub(super) fn admit(&mut self, now: Time, id: ConnId) -> bool {
        let l = &self.cfg.limits;
        let (rate, burst) = (
            u64::from(l.peer_frames_per_sec),
            u64::from(l.peer_frame_burst) * TOKEN,
        );
        let Some(c) = self.conns.map.get_mut(&id) else {
            return true;
        };
        c.last_activity = now;
        let elapsed = now.saturating_since(c.refilled).as_micros() as u64;
        c.tokens = c
            .tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(burst);
        c.refilled = now;
        if c.tokens < TOKEN {
            return false;
        }
        c.tokens -= TOKEN;
        true
    }

    /// If we hold `node` Suspect or Dead at an incarnation it has not
    /// refuted, send it its record so it can refute (rate-limited).
    pub(super) fn tell_if_accused(&mut self, now: Time, to: &Addr, node: NodeId, incarnation: u64) {
        let Some(m) = self.members.get(&node) else {
            return;
        };
        if m.state == crate::records::MemberState::Alive || m.incarnation < incarnation {
            return;
        }
        let period = self.cfg.membership.probe_period;
        let Some(c) = self
            .conns
            .primary(to)
            .and_then(|id| self.conns.map.get_mut(&id))
        else {
            return;
        };
        if c.told.is_some_and(|t| now < t + period) {
            return;
        }
        c.told = Some(now);
        if let Some(rec) = self.members.record(&node) {
            self.send_updates(
                now,
                to,
                MessageKind::Gossip,
                &[crate::wire::Update::Member(rec)],
                1,
            );
        }
    }

    // ----- timers -----------------------------------------------------------

    /// The dial timer: the earliest dial deadline or backoff end.
    fn arm_dial_timer(&mut self) {
        let next = self
            .conns
            .dialing
            .iter()
            .map(|(a, d)| {
                d.deadline
                    .unwrap_or_else(|| self.conns.backoff.get(a).map_or(Time::ZERO, |b| b.until))
            })
            .min();
        match next {
            Some(t) => self.timers.set(Timer::Dial, t),
            None => self.timers.cancel(Timer::Dial),
        }
    }

    /// Dials that timed out fail; held frames whose backoff ended are
    /// dialled.
    pub(super) fn on_dial_timer(&mut self, now: Time) {
        let mut failed = Vec::new();
        let mut redial = Vec::new();
        for (a, d) in &self.conns.dialing {
            match d.deadline {
                Some(t) if t <= now => failed.push(a.clone()),
                Some(_) => {}
                None if self.conns.backoff.get(a).is_none_or(|b| b.until <= now) => {
                    redial.push(a.clone())
                }
                None => {}
            }
        }
        for a in redial {
            if let Some(d) = self.conns.dialing.get_mut(&a) {
                d.deadline = Some(now + self.cfg.connections.dial_timeout);
                self.metrics.dials += 1;
                self.orders.push_back(Order::Dial(a));
            }
        }
        for a in failed {
            self.on_dial_failed(now, &a);
        }
        self.arm_dial_timer();
    }

    /// How often idle connections are looked for: the shortest idle limit
    /// (a connection closes within one more period of it).
    pub(super) fn idle_period(&self) -> Duration {
        let c = &self.cfg.connections;
        (c.idle_timeout.min(self.cfg.membership.probe_period)).max(Duration::from_millis(1))
    }

    /// Closes idle connections, aborts closes that take too long, forgets
    /// old backoffs.
    pub(super) fn on_idle_timer(&mut self, now: Time) {
        let c = &self.cfg.connections;
        let (idle, client_idle, close_timeout) =
            (c.idle_timeout, c.client_idle_timeout, c.close_timeout);
        let linger = idle.min(self.cfg.membership.probe_period);
        if !self.cfg.admission.is_open() {
            self.refuse_slow(now);
        }
        let mut close = Vec::new();
        let mut abort = Vec::new();
        for (id, c) in &self.conns.map {
            if let Some(t) = c.closing {
                if now >= t + close_timeout {
                    abort.push(*id);
                }
                continue;
            }
            let quiet = now.saturating_since(c.last_activity);
            if quiet < linger.min(client_idle) {
                continue; // busy: the common case, decided without lookups
            }
            let primary = self.conns.by_addr.get(&c.key) == Some(id);
            if primary && self.kept(&c.key) {
                continue;
            }
            let limit = match (c.role, primary) {
                (Role::Client, _) => client_idle,
                (_, true) => idle,
                (_, false) => linger,
            };
            if quiet >= limit {
                close.push(*id);
            }
        }
        for id in close {
            self.metrics.connections_idle_closed += 1;
            self.close_conn(now, id);
        }
        for id in abort {
            self.conns.remove(id);
            self.orders.push_back(Order::Abort(id));
        }
        let forget = self.cfg.connections.backoff_max.saturating_mul(8);
        self.conns
            .backoff
            .retain(|a, b| now < b.until + forget || self.conns.dialing.contains_key(a));
        self.timers.set(Timer::Idle, now + self.idle_period());
        self.check_stopped(now);
    }

    /// Addresses whose frames were lost during this input: every reaction
    /// (probes, resends) happens here, once per address.
    pub(super) fn handle_lost(&mut self, now: Time) {
        let mut done: Vec<Addr> = Vec::new();
        while let Some(a) = self.conns.lost.pop() {
            if done.contains(&a) {
                continue;
            }
            done.push(a.clone());
            self.on_unreachable(now, &a);
        }
    }

    // ----- leaving ----------------------------------------------------------

    /// Once left: every connection is closed. Dials in flight to Alive
    /// members still deliver what they hold (the news of the leave); the
    /// rest — frames waiting out a backoff, dials to members not Alive,
    /// which may never answer — are given up.
    pub(super) fn close_all(&mut self, now: Time) {
        let ids: Vec<ConnId> = self.conns.map.keys().copied().collect();
        for id in ids {
            self.close_conn(now, id);
        }
        let alive: Vec<Addr> = self
            .conns
            .dialing
            .keys()
            .filter(|a| {
                self.members
                    .iter()
                    .any(|(_, m)| m.addr == **a && m.state == crate::records::MemberState::Alive)
            })
            .cloned()
            .collect();
        self.conns
            .dialing
            .retain(|a, d| d.deadline.is_some() && alive.contains(a));
        self.arm_dial_timer();
    }

    /// A left node stops once nothing is open or opening (or the flush
    /// timer gave up).
    pub(super) fn check_stopped(&mut self, now: Time) {
        if self.status == Status::Left && self.conns.dialing.is_empty() && self.conns.map.is_empty()
        {
            self.stop(now);
        }
    }

    /// Every connection, as seen by the core.
    pub(super) fn conn_views(&self) -> impl Iterator<Item = super::ConnView> + '_ {
        self.conns.iter().map(|(id, c)| super::ConnView {
            id,
            addr: c.key.clone(),
            node: c.node,
            incarnation: c.incarnation,
            outbound: c.outbound,
            primary: self.conns.is_primary(id),
            kept: self.conns.is_primary(id) && self.kept(&c.key),
            client: c.role == Role::Client,
            closing: c.closing.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(outbound: bool, opened: u64, node: Option<(u128, u64)>) -> Conn {
        Conn {
            key: Addr::new("sim://2"),
            outbound,
            opened: Time::from_millis(opened),
            last_activity: Time::ZERO,
            node: node.map(|(n, _)| NodeId::from_u128(n)),
            incarnation: node.map_or(0, |(_, i)| i),
            role: Role::Member,
            version: 1,
            hello_sent: true,
            bridge: false,
            upstream: false,
            tokens: 0,
            refilled: Time::ZERO,
            told: None,
            closing: None,
            gate: Gate::new(true),
        }
    }

    #[test]
    fn both_ends_keep_the_connection_dialled_by_the_lower_address() {
        let (lo, hi) = (Addr::new("sim://1"), Addr::new("sim://2"));
        // At the lower address: its own dial wins.
        let (out, inb) = (conn(true, 5, Some((2, 1))), conn(false, 3, Some((2, 1))));
        assert!(prefer(&lo, &hi, &out, &inb));
        assert!(!prefer(&lo, &hi, &inb, &out));
        // At the higher address: the accepted one (the lower's dial) wins.
        assert!(!prefer(&hi, &lo, &out, &inb));
        assert!(prefer(&hi, &lo, &inb, &out));
        // Before the peer's Hello arrives on one of them, the same.
        let fresh = conn(true, 9, None);
        assert!(prefer(&lo, &hi, &fresh, &inb));
        // Same direction: the newer.
        assert!(prefer(&lo, &hi, &conn(false, 7, None), &inb));
    }

    #[test]
    fn a_restarted_peer_replaces_the_old_connection() {
        let (lo, hi) = (Addr::new("sim://1"), Addr::new("sim://2"));
        let old = conn(true, 1, Some((2, 1)));
        let new = conn(false, 5, Some((2, 2)));
        // The direction rule would keep `old`; the new incarnation wins.
        assert!(prefer(&lo, &hi, &new, &old));
        assert!(replaced(&new, &old));
        let other_node = conn(false, 6, Some((3, 1)));
        assert!(prefer(&lo, &hi, &other_node, &old));
        assert!(!replaced(&old, &conn(false, 2, Some((2, 1)))));
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_in_its_upper_half() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(backoff_delay(1, min, max, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(1, min, max, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(3, min, max, 0.5), Duration::from_millis(300));
        assert_eq!(backoff_delay(10, min, max, 1.0), max);
        assert_eq!(backoff_delay(u32::MAX, min, max, 0.0), max / 2);
        for f in 1..12 {
            let d = backoff_delay(f, min, max, 0.3);
            assert!(d <= max && d >= backoff_delay(f, min, max, 0.0));
        }
    }

    #[test]
    fn removing_the_primary_promotes_another_open_connection() {
        let mut t = Conns::new(1);
        let key = Addr::new("sim://2");
        t.map.insert(ConnId(1), conn(true, 1, None));
        t.map.insert(ConnId(2), conn(false, 2, None));
        t.by_addr.insert(key.clone(), ConnId(1));
        assert!(t.is_primary(ConnId(1)));
        let (_, primary) = t.remove(ConnId(1)).unwrap();
        assert!(primary);
        assert_eq!(t.primary(&key), Some(ConnId(2)));
        assert!(t.remove(ConnId(9)).is_none());
        let (_, primary) = t.remove(ConnId(2)).unwrap();
        assert!(primary);
        assert_eq!(t.primary(&key), None);
    }
}
