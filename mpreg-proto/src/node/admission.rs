//! Admission on each connection ([`crate::auth`] has the handshake). With
//! a policy, a member connection is *gated* until the peer proves itself:
//! this node's frames to it wait in the gate, and the peer's frames other
//! than the handshake (its `Hello`, `Identify`, `Prove`) are held unread,
//! so nothing it says changes state before it is admitted. Both queues
//! share `connections.max_held_bytes`. A peer that fails the policy gets
//! one typed `Refused` and the connection closes; one that has not
//! finished within `connections.dial_timeout` is refused the same way.
//!
//! Clients and bridges are not gated here (clients are limited to client
//! messages; bridges to federation messages under the federation policy).

use super::Node;
use crate::auth::{self, Identify, NONCE_LEN, Proof, PublicKey, Refusal};
use crate::error::FrameError;
use crate::event::{ConnId, TrafficClass};
use crate::metrics::{Limit, RejectReason};
use crate::time::Time;
use crate::wire::{self, Hello, Message, MessageKind};
use bytes::Bytes;
use std::collections::VecDeque;

/// A connection's admission state.
#[derive(Debug)]
pub(super) struct Gate {
    /// Frames flow: no policy, or the peer proved itself.
    pub(super) open: bool,
    /// This node sent its `Identify` (with this challenge if it has a
    /// policy).
    identified: bool,
    nonce: Option<[u8; NONCE_LEN]>,
    /// The peer's key, from its `Identify`.
    peer_key: Option<PublicKey>,
    /// The peer's member `Hello`, applied once it is admitted.
    pub(super) hello: Option<Hello>,
    /// Frames for the peer, sent once it is admitted.
    out: VecDeque<(Bytes, TrafficClass)>,
    /// Frames from the peer, read once it is admitted.
    held_in: VecDeque<Bytes>,
    bytes: usize,
    /// Refused: nothing more is read.
    refused: bool,
}

impl Gate {
    pub(super) fn new(open: bool) -> Gate {
        Gate {
            open,
            identified: false,
            nonce: None,
            peer_key: None,
            hello: None,
            out: VecDeque::new(),
            held_in: VecDeque::new(),
            bytes: 0,
            refused: false,
        }
    }
}

/// What the gate does with an incoming frame.
pub(super) enum Entry {
    /// Read it now.
    Pass,
    /// Held until the peer is admitted.
    Held,
    /// Dropped: the peer was refused.
    Refused,
}

/// Messages read before admission: the handshake.
fn handshake(kind: MessageKind) -> bool {
    matches!(
        kind,
        MessageKind::Hello | MessageKind::Identify | MessageKind::Prove | MessageKind::Refused
    )
}

impl Node {
    /// Whether connection `id` is admitted; a gated frame that is not part
    /// of the handshake is held (or dropped, if the peer was refused).
    /// `federated`: a federation message the federation policy governs.
    pub(super) fn gate_in(
        &mut self,
        now: Time,
        id: ConnId,
        kind: MessageKind,
        federated: bool,
        frame: &[u8],
    ) -> Entry {
        let max = self.cfg.connections.max_held_bytes;
        let Some(c) = self.conns.get_mut(id) else {
            return Entry::Pass;
        };
        if c.gate.open || handshake(kind) || federated || c.role == wire::Role::Client {
            return Entry::Pass;
        }
        if c.gate.refused {
            return Entry::Refused;
        }
        if c.gate.bytes + frame.len() > max {
            self.limit_hit(Limit::HeldBytes);
            self.refuse(now, id, Refusal::Incomplete);
            return Entry::Refused;
        }
        c.gate.bytes += frame.len();
        c.gate.held_in.push_back(Bytes::copy_from_slice(frame));
        Entry::Held
    }

    /// Queues a frame for connection `id` if it is gated; false if it may
    /// go now.
    pub(super) fn gate_out(
        &mut self,
        now: Time,
        id: ConnId,
        frame: &Bytes,
        class: TrafficClass,
    ) -> bool {
        let max = self.cfg.connections.max_held_bytes;
        let Some(c) = self.conns.get_mut(id) else {
            return false;
        };
        if c.gate.open || c.bridge || c.role == wire::Role::Client {
            return false;
        }
        if c.gate.refused {
            return true;
        }
        if c.gate.bytes + frame.len() > max {
            self.limit_hit(Limit::HeldBytes);
            self.refuse(now, id, Refusal::Incomplete);
            return true;
        }
        c.gate.bytes += frame.len();
        c.gate.out.push_back((frame.clone(), class));
        true
    }

    /// After this node's `Hello` on `id`: with a policy, challenge the peer.
    pub(super) fn challenge(&mut self, id: ConnId) {
        if self.cfg.admission.is_open() {
            return;
        }
        let nonce: [u8; NONCE_LEN] = rand::RngExt::random(&mut self.rng);
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.gate.identified {
            return;
        }
        c.gate.identified = true;
        c.gate.nonce = Some(nonce);
        let msg = Message::Identify(Identify {
            key: self.key.public(),
            nonce,
        });
        self.emit_control(id, &msg);
    }

    /// The peer's key and challenge: answer it, whatever our policy (a zero
    /// nonce challenges nothing).
    pub(super) fn on_identify(&mut self, id: ConnId, who: Identify) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.gate.peer_key.is_some() || c.gate.refused {
            return; // one handshake per connection
        }
        c.gate.peer_key = Some(who.key);
        let identified = c.gate.identified;
        if !identified && self.cfg.admission.is_open() {
            // Our key, so the peer can check the proof; no challenge.
            if let Some(c) = self.conns.get_mut(id) {
                c.gate.identified = true;
            }
            let msg = Message::Identify(Identify {
                key: self.key.public(),
                nonce: [0; NONCE_LEN],
            });
            self.emit_control(id, &msg);
        } else if !identified {
            self.challenge(id);
        }
        if who.nonce == [0; NONCE_LEN] {
            return;
        }
        let proof = auth::prove(
            &self.key,
            self.cfg.admission.secrets.first(),
            &self.cfg.cluster_id,
            &who.nonce,
        );
        self.emit_control(id, &Message::Prove(proof));
    }

    /// The peer's answer to our challenge.
    pub(super) fn on_prove(&mut self, now: Time, id: ConnId, proof: Proof) {
        let Some(c) = self.conns.get(id) else {
            return;
        };
        if c.gate.open || c.gate.refused {
            return;
        }
        let (Some(nonce), Some(key)) = (c.gate.nonce, c.gate.peer_key) else {
            return self.refuse(now, id, Refusal::Incomplete);
        };
        let Some(claimed) = c.gate.hello.as_ref().map(|h| h.node) else {
            return self.refuse(now, id, Refusal::Incomplete);
        };
        let checked = auth::check(
            &self.cfg.admission,
            &self.cfg.cluster_id,
            &nonce,
            &key,
            claimed,
            &proof,
        );
        match checked {
            Ok(()) => self.admit_peer(now, id),
            Err(r) => self.refuse(now, id, r),
        }
    }

    /// The peer refused us: nothing more goes to it.
    pub(super) fn on_refused(&mut self, now: Time, id: ConnId, why: Refusal) {
        self.metrics.refused_by_peers += 1;
        self.events.push_back(crate::Event::RefusedByPeer {
            addr: self
                .conns
                .get(id)
                .map(|c| c.key.clone())
                .unwrap_or_default(),
            reason: why,
        });
        if let Some(c) = self.conns.get_mut(id) {
            c.gate.refused = true;
            c.gate.out.clear();
        }
        self.close_conn(now, id);
    }

    /// The peer passed: apply its `Hello`, read what it sent meanwhile,
    /// send what waited for it.
    fn admit_peer(&mut self, now: Time, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.gate.open = true;
        c.gate.bytes = 0;
        let hello = c.gate.hello.take();
        let out = std::mem::take(&mut c.gate.out);
        let held = std::mem::take(&mut c.gate.held_in);
        self.metrics.peers_admitted += 1;
        if let Some(h) = hello {
            self.on_hello(now, id, h);
        }
        for (frame, class) in out {
            self.emit(now, id, frame, class);
        }
        for frame in held {
            // Each was decoded once already; errors were counted then.
            let _ = self.handle_frame(now, id, &frame);
        }
    }

    /// Refuses the peer on `id`: one `Refused`, then the connection closes.
    fn refuse(&mut self, now: Time, id: ConnId, why: Refusal) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.gate.refused {
            return;
        }
        c.gate.refused = true;
        c.gate.out.clear();
        c.gate.held_in.clear();
        c.gate.bytes = 0;
        let addr = c.key.clone();
        self.metrics.peers_refused += 1;
        self.reject(RejectReason::NotAdmitted, FrameError::NotAdmitted(why));
        self.events
            .push_back(crate::Event::PeerRefused { addr, reason: why });
        self.emit_control(id, &Message::Refused(why));
        self.close_conn(now, id);
    }

    /// Disconnects admitted peers whose key the allow-list no longer holds.
    pub(super) fn drop_disallowed(&mut self, now: Time) {
        let Some(allowed) = &self.cfg.admission.allow_keys else {
            return;
        };
        let gone: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.gate.peer_key.is_some_and(|k| !allowed.contains(&k)))
            .map(|(id, _)| id)
            .collect();
        for id in gone {
            self.close_conn(now, id);
        }
    }

    /// Refuses peers whose handshake did not finish in time.
    pub(super) fn refuse_slow(&mut self, now: Time) {
        let timeout = self.cfg.connections.dial_timeout;
        let slow: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                !c.gate.open && !c.gate.refused && c.closing.is_none() && now >= c.opened + timeout
            })
            .map(|(id, _)| id)
            .collect();
        for id in slow {
            self.refuse(now, id, Refusal::Incomplete);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::{Admission, ClusterSecret, Refusal};
    use crate::testing::{Lone, Net, addr, identity, keyed_identity};
    use crate::wire::{self, Hello, Message, MessageKind, Role, Update};
    use crate::{Config, Event, FunctionSpec, MemberState, NodeId};
    use std::time::Duration;

    fn secret(s: &str) -> ClusterSecret {
        ClusterSecret::new(s.as_bytes()).unwrap()
    }

    fn with_secret(s: &str) -> Config {
        let mut c = Config::default();
        c.admission.secrets = vec![secret(s)];
        c
    }

    const S: &str = "the cluster secret";

    fn refused(net: &Net, node: usize) -> Vec<Refusal> {
        net.events
            .iter()
            .filter(|(i, _)| *i == node)
            .filter_map(|(_, e)| match e {
                Event::PeerRefused { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn knows(net: &Net, i: usize, j: usize) -> bool {
        let id = net.node(j).unwrap().id();
        net.node(i).unwrap().member_state(&id).is_some()
    }

    #[test]
    fn nodes_sharing_a_secret_join_and_spread_their_catalogs() {
        let mut net = Net::with_identities(4, |_| with_secret(S), |i| keyed_identity(i as u128));
        for i in 1..4 {
            net.join(i, i - 1);
        }
        net.run_until_true(Duration::from_secs(10), Net::converged)
            .expect("a cluster with one secret converges");
        net.with(3, |n, now| n.register(now, FunctionSpec::new("f")))
            .unwrap()
            .unwrap();
        net.run_until_true(Duration::from_secs(5), |net| {
            net.node(0).unwrap().live_providers("f").count() == 1
        })
        .expect("the function reaches node 0");
        assert!(net.node(0).unwrap().metrics().peers_admitted >= 1);
        assert!((0..4).all(|i| refused(&net, i).is_empty()));
    }

    #[test]
    fn a_node_without_the_secret_learns_nothing_and_is_learnt_by_nobody() {
        for (joiner, why) in [
            (with_secret("another secret!!"), Refusal::WrongSecret),
            (Config::default(), Refusal::WrongSecret),
        ] {
            let mut net = Net::with_identities(
                3,
                |i| {
                    if i < 2 {
                        with_secret(S)
                    } else {
                        joiner.clone()
                    }
                },
                |i| keyed_identity(i as u128),
            );
            net.join(1, 0);
            net.join(2, 0);
            net.run_for(Duration::from_secs(5));
            assert!(knows(&net, 0, 1) && knows(&net, 1, 0));
            for i in 0..2 {
                assert!(!knows(&net, i, 2), "node {i} took the outsider in");
                assert!(!knows(&net, 2, i), "the outsider learnt node {i}");
            }
            assert!(refused(&net, 0).contains(&why), "{:?}", refused(&net, 0));
            let n0 = net.node(0).unwrap().metrics();
            assert!(
                n0.peers_refused >= 1 && n0.rejected_for(crate::RejectReason::NotAdmitted) >= 1
            );
        }
    }

    #[test]
    fn an_allow_list_admits_its_keys_only() {
        let allowed: std::collections::BTreeSet<_> = [0, 1]
            .iter()
            .map(|i| crate::testing::key(*i).public())
            .collect();
        let cfg = |_| {
            let mut c = Config::default();
            c.admission.allow_keys = Some(allowed.clone());
            c
        };
        let mut net = Net::with_identities(3, cfg, |i| keyed_identity(i as u128));
        net.join(1, 0);
        net.join(2, 0);
        net.run_for(Duration::from_secs(5));
        assert!(knows(&net, 0, 1) && knows(&net, 1, 0));
        assert!(!knows(&net, 0, 2) && !knows(&net, 2, 0));
        assert!(refused(&net, 0).contains(&Refusal::NotAllowed));
    }

    #[test]
    fn an_id_not_derived_from_the_key_is_refused() {
        let ids = |i: usize| {
            if i == 2 {
                identity(77) // an id of its own choosing, not its key's
            } else {
                keyed_identity(i as u128)
            }
        };
        let mut net = Net::with_identities(3, |_| with_secret(S), ids);
        net.join(1, 0);
        net.join(2, 0);
        net.run_for(Duration::from_secs(5));
        assert!(knows(&net, 0, 1));
        assert!(!knows(&net, 0, 2));
        assert!(refused(&net, 0).contains(&Refusal::KeyMismatch));
    }

    #[test]
    fn frames_before_admission_change_nothing_and_a_silent_peer_is_refused() {
        let mut lone = Lone::with_identity(with_secret(S), keyed_identity(1));
        let peer = addr(9);
        let c = lone.accept(&peer);
        let intruder = NodeId::from_u128(9);
        let hello = Message::Hello(Hello {
            node: intruder,
            incarnation: 1,
            addr: peer.clone(),
            min_version: wire::MIN_PROTOCOL_VERSION,
            max_version: wire::PROTOCOL_VERSION,
            cluster_id: "default".into(),
            role: Role::Member,
        });
        let tag = wire::cluster_tag("default");
        lone.frame_on(c, &wire::encode(&hello, 1, tag)).unwrap();
        // Its own record and a forged one for a third node, unproven.
        let forged = crate::wire::MemberRecord {
            id: NodeId::from_u128(5),
            addr: addr(5),
            incarnation: 3,
            state: MemberState::Alive,
            name: "forged".into(),
            accusers: Default::default(),
        };
        let gossip = Message::Gossip(vec![Update::Member(forged)]);
        lone.frame_on(c, &wire::encode(&gossip, 1, tag)).unwrap();
        assert_eq!(lone.node.live_members(), 1, "nothing was learnt");
        assert!(lone.sent_to(&peer, MessageKind::Gossip).is_empty());
        assert_eq!(lone.sent_to(&peer, MessageKind::Identify).len(), 1);
        // It never proves itself: refused once the dial timeout passes.
        let t = lone.now + Duration::from_secs(30);
        lone.run_until(t);
        let r = lone.sent_to(&peer, MessageKind::Refused);
        assert_eq!(r, vec![Message::Refused(Refusal::Incomplete)]);
        assert_eq!(lone.node.live_members(), 1);
        assert!(lone.node.connections().all(|v| v.closing || v.id != c));
    }

    #[test]
    fn a_reloaded_allow_list_disconnects_a_removed_key() {
        let keys = |ks: &[u128]| {
            Some(
                ks.iter()
                    .map(|i| crate::testing::key(*i).public())
                    .collect(),
            )
        };
        let cfg = |_| {
            let mut c = Config::default();
            c.admission.allow_keys = keys(&[0, 1, 2]);
            c
        };
        let mut net = Net::with_identities(3, cfg, |i| keyed_identity(i as u128));
        net.join(1, 0);
        net.join(2, 0);
        net.run_until_true(Duration::from_secs(10), Net::converged)
            .expect("converged");
        for i in 0..2 {
            let a = Admission {
                secrets: vec![],
                allow_keys: keys(&[0, 1]),
            };
            net.with(i, |n, now| n.set_admission(now, a));
        }
        let id2 = net.node(2).unwrap().id();
        net.run_until_true(Duration::from_secs(30), |net| {
            (0..2).all(|i| net.node(i).unwrap().member_state(&id2) == Some(MemberState::Dead))
        })
        .expect("the removed node is disconnected and found Dead");
    }
}
