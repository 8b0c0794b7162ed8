//! Per-address protocol state (negotiated version, whether our `Hello`
//! went out on the current connection, rate limit) and the one place that
//! encodes and queues frames.

use super::{Node, PeerHello};
use crate::config::Limits;
use crate::event::{TrafficClass, Transmit};
use crate::id::{Addr, NodeId};
use crate::metrics::Limit;
use crate::time::Time;
use crate::wire::{self, Hello, Message, MessageKind, Role};
use bytes::Bytes;
use std::collections::HashMap;

const TOKEN: u64 = 1_000_000;

#[derive(Debug)]
struct Session {
    node: Option<NodeId>,
    role: Role,
    version: u8,
    hello_sent: bool,
    /// Token bucket in millionths of a frame.
    tokens: u64,
    refilled: Time,
    /// When we last told this peer that we hold it Suspect/Dead.
    told: Option<Time>,
    /// A bridge to another cluster: no member `Hello` goes on it.
    bridge: bool,
}

/// Keyed by address, hashed with a per-node seed (from the node's own RNG:
/// deterministic, yet not predictable by peers choosing addresses).
#[derive(Debug)]
pub(super) struct Sessions {
    map: HashMap<Addr, Session, foldhash::fast::FixedState>,
}

impl Sessions {
    pub(super) fn new(seed: u64) -> Sessions {
        Sessions {
            map: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(seed)),
        }
    }
}

impl Sessions {
    /// Charges one frame to `from`'s bucket; unknown senders have none yet.
    pub(super) fn admit(&mut self, now: Time, from: &Addr, limits: &Limits) -> bool {
        let Some(s) = self.map.get_mut(from) else {
            return true;
        };
        let burst = u64::from(limits.peer_frame_burst) * TOKEN;
        let elapsed = now.saturating_since(s.refilled).as_micros() as u64;
        s.tokens = s
            .tokens
            .saturating_add(elapsed.saturating_mul(u64::from(limits.peer_frames_per_sec)))
            .min(burst);
        s.refilled = now;
        if s.tokens < TOKEN {
            return false;
        }
        s.tokens -= TOKEN;
        true
    }

    pub(super) fn role(&self, from: &Addr) -> Option<Role> {
        self.map.get(from).map(|s| s.role)
    }

    pub(super) fn node_of(&self, from: &Addr) -> Option<NodeId> {
        self.map.get(from).and_then(|s| s.node)
    }

    /// The connection to `addr` is gone: the next frame opens a new one.
    pub(super) fn reset(&mut self, addr: &Addr) {
        if let Some(s) = self.map.get_mut(addr) {
            s.hello_sent = false;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

impl Node {
    /// The session for `addr`, created (evicting another if full) when new.
    fn session(&mut self, now: Time, addr: &Addr) -> &mut Session {
        if !self.sessions.map.contains_key(addr) {
            if self.sessions.map.len() >= self.cfg.limits.max_sessions {
                self.limit_hit(Limit::Sessions);
                self.evict_session();
            }
            let burst = u64::from(self.cfg.limits.peer_frame_burst) * TOKEN;
            self.sessions.map.insert(
                addr.clone(),
                Session {
                    node: None,
                    role: Role::Member,
                    version: wire::MIN_PROTOCOL_VERSION,
                    hello_sent: false,
                    tokens: burst,
                    refilled: now,
                    told: None,
                    bridge: false,
                },
            );
        }
        // Just inserted if it was missing.
        self.sessions
            .map
            .get_mut(addr)
            .unwrap_or_else(|| unreachable!("session inserted above"))
    }

    /// Evicts a random session, one that is not an active peer's if there
    /// is one. The cap holds even when active peers fill it (a view that
    /// force-accepted neighbours, or `max_sessions` below the view size):
    /// an evicted peer's session starts again with its next frame.
    fn evict_session(&mut self) {
        use rand::RngExt;
        let active: Vec<&Addr> = self.overlay.active.iter().map(|p| &p.addr).collect();
        let mut candidates: Vec<Addr> = self
            .sessions
            .map
            .keys()
            .filter(|a| !active.contains(a))
            .cloned()
            .collect();
        if candidates.is_empty() {
            candidates = self.sessions.map.keys().cloned().collect();
        }
        if candidates.is_empty() {
            return;
        }
        let victim = &candidates[self.rng.random_range(0..candidates.len())];
        self.sessions.map.remove(victim);
    }

    /// Records that a frame decoded from `from`, creating its session.
    pub(super) fn note_sender(&mut self, now: Time, from: &Addr) {
        self.session(now, from);
    }

    /// A `Hello`: learn who is on this connection and which version to use.
    /// Returns the address the connection is keyed by from now on.
    pub(super) fn on_hello(&mut self, now: Time, from: &Addr, h: Hello) -> PeerHello {
        let key = if h.role == Role::Client || h.addr.as_str().is_empty() {
            from.clone()
        } else {
            h.addr.clone()
        };
        // An accepted connection is re-keyed by the advertised address; it
        // is a new connection, so our own Hello must go out on it.
        let rekeyed = key != *from;
        if rekeyed && let Some(old) = self.sessions.map.remove(from) {
            self.sessions.map.entry(key.clone()).or_insert(old);
        }
        let s = self.session(now, &key);
        s.node = Some(h.node);
        s.role = h.role;
        s.version = h.max_version.min(wire::PROTOCOL_VERSION);
        if rekeyed {
            s.hello_sent = false;
        }
        if !s.hello_sent {
            self.send_hello(now, &key);
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

    fn send_hello(&mut self, now: Time, to: &Addr) {
        if *to == self.addr || to.as_str().is_empty() {
            return;
        }
        let frame = wire::encode(
            &Message::Hello(self.hello()),
            wire::MIN_PROTOCOL_VERSION,
            self.cluster_tag,
        );
        self.session(now, to).hello_sent = true;
        self.push_frame(to, frame, MessageKind::Hello, TrafficClass::Control);
    }

    /// If we hold `node` Suspect or Dead at an incarnation it has not
    /// refuted, send it its record so it can refute (rate-limited).
    pub(super) fn tell_if_accused(&mut self, now: Time, to: &Addr, node: NodeId, incarnation: u64) {
        let Some(m) = self.members.get(&node) else {
            return;
        };
        if m.state == crate::members::MemberState::Alive || m.incarnation < incarnation {
            return;
        }
        let period = self.cfg.membership.probe_period;
        let s = self.session(now, to);
        if s.told.is_some_and(|t| now < t + period) {
            return;
        }
        s.told = Some(now);
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

    /// Encodes and queues a message, preceded by our `Hello` if the
    /// connection has not had it.
    pub(super) fn send(&mut self, now: Time, to: &Addr, msg: &Message, class: TrafficClass) {
        if *to == self.addr || to.as_str().is_empty() {
            return;
        }
        let version = self.prepare(now, to);
        let frame = wire::encode(msg, version, self.cluster_tag);
        self.push_frame(to, frame, msg.kind(), class);
    }

    /// Queues a frame whose body was encoded elsewhere.
    pub(super) fn send_body(
        &mut self,
        now: Time,
        to: &Addr,
        kind: MessageKind,
        body: &[u8],
        class: TrafficClass,
    ) {
        if *to == self.addr || to.as_str().is_empty() {
            return;
        }
        let version = self.prepare(now, to);
        let frame = wire::encode_raw(kind.tag(), body, version, self.cluster_tag);
        self.push_frame(to, frame, kind, class);
    }

    /// Sends our Hello first on a new connection; returns the version to
    /// encode with.
    fn prepare(&mut self, now: Time, to: &Addr) -> u8 {
        let s = self.session(now, to);
        if !s.hello_sent && !s.bridge {
            self.send_hello(now, to);
        }
        self.session(now, to).version
    }

    /// Marks the session with `addr` as a bridge to another cluster.
    pub(super) fn mark_bridge_session(&mut self, now: Time, addr: &Addr) {
        self.session(now, addr).bridge = true;
    }

    pub(super) fn is_bridge_session(&self, addr: &Addr) -> bool {
        self.sessions.map.get(addr).is_some_and(|s| s.bridge)
    }

    pub(super) fn sessions_set_node(&mut self, addr: &Addr, node: NodeId) {
        if let Some(s) = self.sessions.map.get_mut(addr) {
            s.node = Some(node);
        }
    }

    fn push_frame(&mut self, to: &Addr, frame: Vec<u8>, kind: MessageKind, class: TrafficClass) {
        if frame.len() > self.cfg.limits.max_frame_size {
            self.limit_hit(Limit::FrameSize);
            return;
        }
        if self.transmits.len() >= self.cfg.limits.max_queued_transmits {
            self.limit_hit(Limit::QueuedTransmits);
            return;
        }
        self.metrics.frames_out[kind.index()] += 1;
        self.metrics.bytes_out[kind.index()] += frame.len() as u64;
        if super::sync::is_sync(kind) {
            self.metrics.sync_bytes += frame.len() as u64;
        }
        self.transmits.push_back(Transmit {
            to: to.clone(),
            frame: Bytes::from(frame),
            class,
        });
    }
}
