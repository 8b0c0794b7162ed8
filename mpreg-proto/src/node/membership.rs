//! SWIM/Lifeguard failure detection over the active view, the member-state
//! merge with its side effects, refutation, joining through seeds.
//!
//! * An active peer silent for a probe period gets a `Ping`; its timeout is
//!   adaptive per peer ([`Rtt`](crate::rtt::Rtt)) and scaled by local
//!   health.
//! * No ack: `k` other members are asked to probe it (`PingReq`); they
//!   answer `IndirectAck` or, failing that, `Nack` — a prober that gets
//!   neither is itself unhealthy (Lifeguard) and slows down.
//! * Still nothing: the peer is Suspect, broadcast and told directly. Each
//!   node times the suspicion itself: `suspicion_timeout(N, confirmations)`
//!   from when it first heard, shortened by distinct accusers. Then Dead.
//! * A node that hears itself Suspect, Dead or Left (or sees a record of
//!   itself with a higher incarnation) refutes with a higher incarnation.

use super::{Node, Status};
use crate::event::{Event, TrafficClass};
use crate::id::{Addr, NodeId};
use crate::members::Merge;
use crate::records::MemberState;
use crate::time::Time;
use crate::timers::Timer;
use crate::wire::{Ack, MemberRecord, Message, PingReq, Update};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(super) struct Probes {
    outstanding: BTreeMap<u32, Probe>,
    next_seq: u32,
    /// Lifeguard local-health score.
    pub(super) health: u32,
    /// Suspicions being timed: incarnation and when first heard.
    suspicions: BTreeMap<NodeId, (u64, Time)>,
    /// When this node last re-broadcast its record against a stale
    /// accusation.
    reasserted: Option<Time>,
}

#[derive(Debug)]
enum Probe {
    Direct {
        target: NodeId,
        sent: Time,
    },
    Indirect {
        target: NodeId,
        expected: u32,
        nacks: u32,
    },
    Forward {
        origin: Addr,
        origin_seq: u32,
        target: Addr,
    },
}

impl Probes {
    fn seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    fn probing(&self, target: NodeId) -> bool {
        self.outstanding.values().any(|p| match p {
            Probe::Direct { target: t, .. } | Probe::Indirect { target: t, .. } => *t == target,
            Probe::Forward { .. } => false,
        })
    }
}

impl Node {
    /// The health multiplier applied to probe timing.
    fn health_scale(&self) -> u32 {
        1 + self.probes.health
    }

    pub(super) fn heard_from(&mut self, now: Time, id: NodeId) {
        if let Some(p) = self.probed_peer_mut(id) {
            p.last_heard = now;
        }
    }

    pub(super) fn on_probe_timer(&mut self, now: Time, peer: NodeId) {
        let period = self.cfg.membership.probe_period * self.health_scale();
        let Some(p) = self.probed_peer(peer) else {
            return;
        };
        let due = p.last_heard + period;
        if now < due || self.probes.probing(peer) {
            // At least a quarter period: `detection_bound` counts the lag.
            self.timers
                .set(Timer::Probe(peer), due.max(now + period / 4));
            return;
        }
        let (addr, timeout) = (
            p.addr.clone(),
            p.rtt.timeout(
                self.cfg.membership.probe_timeout_min,
                self.cfg.membership.probe_timeout_max,
            ) * self.health_scale(),
        );
        let seq = self.probes.seq();
        self.probes.outstanding.insert(
            seq,
            Probe::Direct {
                target: peer,
                sent: now,
            },
        );
        self.timers.set(Timer::ProbeTimeout(seq), now + timeout);
        self.timers.set(Timer::Probe(peer), now + period);
        self.metrics.probes += 1;
        self.send(now, &addr, &Message::Ping(seq), TrafficClass::Control);
    }

    pub(super) fn on_ping(&mut self, now: Time, from: &Addr, seq: u32) {
        let load = u32::try_from(self.calls.running).unwrap_or(u32::MAX);
        self.send(
            now,
            from,
            &Message::Ack(Ack { seq, load }),
            TrafficClass::Control,
        );
    }

    pub(super) fn on_ack(&mut self, now: Time, _from: &Addr, peer: Option<NodeId>, ack: Ack) {
        if let Some(p) = peer {
            self.calls.note_load(p, ack.load);
        }
        let Some(probe) = self.probes.outstanding.remove(&ack.seq) else {
            return;
        };
        self.timers.cancel(Timer::ProbeTimeout(ack.seq));
        match probe {
            Probe::Direct { target, sent } => {
                if let Some(p) = self.probed_peer_mut(target) {
                    p.rtt.sample(now.saturating_since(sent));
                }
                self.probes.health = self.probes.health.saturating_sub(1);
            }
            Probe::Indirect { .. } => {
                self.probes.health = self.probes.health.saturating_sub(1);
            }
            Probe::Forward {
                origin, origin_seq, ..
            } => {
                self.send(
                    now,
                    &origin,
                    &Message::IndirectAck(origin_seq),
                    TrafficClass::Control,
                );
            }
        }
    }

    pub(super) fn on_ping_req(&mut self, now: Time, from: &Addr, req: PingReq) {
        if req.target == self.me {
            self.send(
                now,
                from,
                &Message::IndirectAck(req.seq),
                TrafficClass::Control,
            );
            return;
        }
        let seq = self.probes.seq();
        self.probes.outstanding.insert(
            seq,
            Probe::Forward {
                origin: from.clone(),
                origin_seq: req.seq,
                target: req.addr.clone(),
            },
        );
        // Answer (with a nack) before the requester gives up.
        let wait = self.cfg.membership.indirect_timeout * 4 / 5;
        self.timers.set(Timer::ProbeTimeout(seq), now + wait);
        self.send(now, &req.addr, &Message::Ping(seq), TrafficClass::Control);
    }

    pub(super) fn on_indirect_ack(&mut self, _now: Time, seq: u32) {
        if let Some(Probe::Indirect { .. }) = self.probes.outstanding.get(&seq) {
            self.probes.outstanding.remove(&seq);
            self.timers.cancel(Timer::ProbeTimeout(seq));
            self.probes.health = self.probes.health.saturating_sub(1);
        }
    }

    pub(super) fn on_nack(&mut self, now: Time, seq: u32) {
        if let Some(Probe::Indirect {
            nacks, expected, ..
        }) = self.probes.outstanding.get_mut(&seq)
        {
            *nacks += 1;
            // Every helper failed to reach it: no need to wait any longer.
            if *nacks >= *expected {
                self.on_probe_timeout(now, seq);
            }
        }
    }

    pub(super) fn on_probe_timeout(&mut self, now: Time, seq: u32) {
        let Some(probe) = self.probes.outstanding.remove(&seq) else {
            return;
        };
        match probe {
            Probe::Direct { target, .. } => {
                self.metrics.probe_timeouts += 1;
                let Some(m) = self.members.get(&target) else {
                    return;
                };
                if !m.state.is_live() {
                    return;
                }
                let addr = m.addr.clone();
                let helpers = self.probe_helpers(target);
                for h in &helpers {
                    let req = PingReq {
                        seq,
                        target,
                        addr: addr.clone(),
                    };
                    self.send(now, h, &Message::PingReq(req), TrafficClass::Control);
                }
                self.metrics.indirect_probes += helpers.len() as u64;
                self.probes.outstanding.insert(
                    seq,
                    Probe::Indirect {
                        target,
                        expected: helpers.len() as u32,
                        nacks: 0,
                    },
                );
                let wait = self.cfg.membership.indirect_timeout * self.health_scale();
                self.timers.set(Timer::ProbeTimeout(seq), now + wait);
            }
            Probe::Indirect {
                target,
                expected,
                nacks,
            } => {
                if nacks < expected {
                    // Helpers did not even answer: the problem may be ours.
                    self.probes.health =
                        (self.probes.health + 1).min(self.cfg.membership.max_local_health);
                }
                self.suspect(now, target);
            }
            Probe::Forward {
                origin, origin_seq, ..
            } => {
                self.send(
                    now,
                    &origin,
                    &Message::Nack(origin_seq),
                    TrafficClass::Control,
                );
            }
        }
    }

    /// Up to `indirect_probes` members to ask: active peers first (their
    /// connections are open), then random live members.
    fn probe_helpers(&mut self, target: NodeId) -> Vec<Addr> {
        use rand::seq::SliceRandom;
        // Any indirect_probes validates: no more helpers than members.
        let k = self.cfg.membership.indirect_probes.min(self.members.len());
        let mut picks: Vec<(NodeId, Addr)> = self
            .overlay
            .active
            .iter()
            .filter(|p| p.id != target)
            .filter(|p| {
                self.members
                    .get(&p.id)
                    .is_some_and(|m| m.state == MemberState::Alive)
            })
            .map(|p| (p.id, p.addr.clone()))
            .collect();
        picks.shuffle(&mut self.rng);
        picks.truncate(k);
        let mut tries = 0;
        while picks.len() < k && tries < k.saturating_mul(4) {
            tries += 1;
            if let Some((id, addr)) =
                self.random_member(|id, m| *id != target && m.state == MemberState::Alive)
                && !picks.iter().any(|p| p.0 == id)
            {
                picks.push((id, addr));
            }
        }
        picks.into_iter().map(|p| p.1).collect()
    }

    /// A random member (not this node) satisfying `pred`: the first member
    /// at or after a random id, so O(log N) per try (ids are random, so
    /// this is close to uniform). Gives up after a few tries: callers use
    /// it for choices that a later tick can retry.
    pub(super) fn random_member(
        &mut self,
        pred: impl Fn(&NodeId, &crate::members::Member) -> bool,
    ) -> Option<(NodeId, Addr)> {
        use rand::RngExt;
        if self.members.len() <= 1 {
            return None;
        }
        // From a random point, the first few members in id order (ids are
        // random, so the start is close to uniform).
        for _ in 0..16 {
            let at = NodeId::from_u128(self.rng.random());
            let found = self
                .members
                .from(at)
                .take(4)
                .find(|(id, m)| **id != self.me && pred(id, m));
            if let Some((id, m)) = found {
                return Some((*id, m.addr.clone()));
            }
        }
        None
    }

    /// This node accuses `target`.
    fn suspect(&mut self, now: Time, target: NodeId) {
        let Some(mut rec) = self.members.record(&target) else {
            return;
        };
        if !rec.state.is_live() {
            return;
        }
        // A suspicion that already carries every confirmation that can
        // shorten it needs no more accusers: one more would only be another
        // cluster-wide wave of the same news.
        let cap = self.cfg.membership.suspicion_confirmations as usize + 1;
        if rec.state == MemberState::Suspect && rec.accusers.len() >= cap {
            return;
        }
        rec.state = MemberState::Suspect;
        rec.accusers.push(self.me);
        self.metrics.suspicions += 1;
        let addr = rec.addr.clone();
        if self.apply_member(now, &rec)
            && let Some(merged) = self.members.record(&target)
        {
            // The first accusation spreads as news; a confirmation stops at
            // nodes that already knew, so the other accusers are told here.
            let me = self.me;
            for a in merged.accusers.iter().filter(|a| **a != me) {
                if let Some(addr) = self.members.get(a).map(|m| m.addr.clone()) {
                    let u = [Update::Member(merged.clone())];
                    self.send_updates(now, &addr, crate::wire::MessageKind::Gossip, &u, 1);
                }
            }
            self.broadcast(Update::Member(merged.clone()));
            // Tell the suspect directly so it can refute at once.
            self.send_updates(
                now,
                &addr,
                crate::wire::MessageKind::Gossip,
                &[Update::Member(merged)],
                1,
            );
        }
    }

    pub(super) fn on_suspicion_timeout(&mut self, now: Time, id: NodeId) {
        let Some(mut rec) = self.members.record(&id) else {
            return;
        };
        if rec.state != MemberState::Suspect {
            return;
        }
        rec.state = MemberState::Dead;
        rec.accusers.clear();
        if self.apply_member(now, &rec) {
            self.metrics.deaths_declared += 1;
            self.broadcast(Update::Member(rec));
        }
    }

    pub(super) fn schedule_suspicion(&mut self, now: Time, id: NodeId, incarnation: u64) {
        let entry = self
            .probes
            .suspicions
            .entry(id)
            .or_insert((incarnation, now));
        if entry.0 != incarnation {
            *entry = (incarnation, now);
        }
        let started = entry.1;
        let accusers = self.members.accusers(&id);
        let confirmations = accusers.len().saturating_sub(1) as u32;
        let mut timeout = self
            .cfg
            .suspicion_timeout(self.members.live_count(), confirmations);
        // Accusers declare the verdict; everyone else gives their broadcast
        // the dissemination allowance to arrive, and declares only if it
        // does not (otherwise every node would broadcast its own verdict).
        if !accusers.contains(&self.me) {
            timeout += self.cfg.membership.dissemination_allowance;
        }
        self.timers.set(Timer::Suspicion(id), started + timeout);
    }

    /// The digest leaf of a member: its record's hash plus its catalog's.
    pub(super) fn leaf(&self, id: &NodeId) -> Option<u64> {
        let m = self.members.get(id)?;
        let h = crate::hash::canonical(&(
            id,
            m.addr.as_str(),
            m.incarnation,
            m.state,
            self.members.accusers(id),
            self.members.name(id),
        ));
        Some(h.wrapping_add(self.catalog.owner_hash(id)))
    }

    /// Merges a member record and reacts to the change. Returns whether
    /// anything changed (and so whether the record is worth relaying).
    pub(super) fn apply_member(&mut self, now: Time, rec: &MemberRecord) -> bool {
        self.merge_member(now, rec)
            .is_some_and(|m| m != Merge::Unchanged)
    }

    /// As [`apply_member`](Node::apply_member), telling how it changed.
    pub(super) fn merge_member(&mut self, now: Time, rec: &MemberRecord) -> Option<Merge> {
        if rec.id == self.me && self.members.contains(&self.me) {
            self.on_self_record(now, rec);
            return None;
        }
        let id = rec.id;
        let old_leaf = self.leaf(&id);
        if old_leaf.is_none() && self.members.len() >= self.cfg.limits.max_members {
            self.limit_hit(crate::metrics::Limit::Members);
            return None;
        }
        let cap = self.cfg.membership.suspicion_confirmations as usize + 1;
        let merge = self.members.merge(rec, cap, now);
        if merge == Merge::Unchanged {
            return Some(merge);
        }
        let new_leaf = self.leaf(&id);
        self.digest.update(id, old_leaf, new_leaf);
        if id != self.me && !self.importing {
            self.react(now, id, &merge);
        }
        Some(merge)
    }

    fn react(&mut self, now: Time, id: NodeId, merge: &Merge) {
        if self.ring_affected(id) {
            self.update_ring(now);
        }
        let Some(m) = self.members.get(&id) else {
            return;
        };
        let (state, inc, addr) = (m.state, m.incarnation, m.addr.clone());
        let old = match merge {
            Merge::Changed { old_state, .. } => Some(*old_state),
            _ => None,
        };
        if state != MemberState::Suspect {
            self.probes.suspicions.remove(&id);
            self.timers.cancel(Timer::Suspicion(id));
        }
        match state {
            MemberState::Alive => {
                if old != Some(MemberState::Alive) {
                    self.events.push_back(Event::MemberUp {
                        id,
                        addr: addr.clone(),
                    });
                }
                if old.is_none() || old.is_some_and(|s| !s.is_live()) {
                    self.consider_passive(id, addr);
                }
            }
            MemberState::Suspect => {
                if old != Some(MemberState::Suspect) {
                    self.events.push_back(Event::MemberSuspect { id });
                }
                self.schedule_suspicion(now, id, inc);
            }
            MemberState::Dead | MemberState::Left => {
                if old != Some(state) {
                    self.events.push_back(if state == MemberState::Dead {
                        Event::MemberDown { id }
                    } else {
                        Event::MemberLeft { id }
                    });
                    self.member_gone(now, id);
                }
            }
        }
    }

    /// A member is Dead or Left: out of the views. Calls to a Dead one fail
    /// over; calls to one that left wait for its answers, which it sends
    /// before closing its connections (see `peer_closed`).
    pub(super) fn member_gone(&mut self, now: Time, id: NodeId) {
        self.remove_active(now, id, false);
        self.overlay.passive.retain(|p| p.id != id);
        if self.member_state(&id) != Some(MemberState::Left) {
            self.provider_gone(now, id, true);
        }
    }

    /// Someone sent a record of this node. Refute anything but the truth.
    pub(super) fn on_self_record(&mut self, now: Time, rec: &MemberRecord) {
        if self.status >= Status::Left {
            return;
        }
        let own = self.own_record(MemberState::Alive);
        let newer = rec.incarnation > self.incarnation;
        let differs = rec.incarnation == self.incarnation
            && (rec.state != MemberState::Alive || rec.addr != own.addr || rec.name != own.name);
        if !newer && !differs {
            // An accusation of an older incarnation: whoever sent it missed
            // our refutation, and others may have too. Say it again, at
            // most once per probe period.
            let again = self
                .probes
                .reasserted
                .is_none_or(|t| now >= t + self.cfg.membership.probe_period);
            if rec.state != MemberState::Alive && again {
                self.probes.reasserted = Some(now);
                self.broadcast(Update::Member(own));
            }
            return;
        }
        if rec.state != MemberState::Alive {
            self.metrics.refutations += 1;
        }
        // Saturating: a peer may send any incarnation, up to u64::MAX.
        self.incarnation = self.incarnation.max(rec.incarnation).saturating_add(1);
        let me = self.own_record(MemberState::Alive);
        self.write_own_record(now, &me);
        self.broadcast(Update::Member(me));
    }

    /// Stores this node's own record (its single writer).
    pub(super) fn write_own_record(&mut self, now: Time, me: &MemberRecord) {
        let old = self.leaf(&self.me);
        let cap = self.cfg.membership.suspicion_confirmations as usize + 1;
        self.members.merge(me, cap, now);
        let new = self.leaf(&self.me);
        self.digest.update(self.me, old, new);
    }

    // ----- joining -------------------------------------------------------

    pub(super) fn send_joins(&mut self, now: Time) {
        let me = self.own_record(MemberState::Alive);
        for (seed, _) in self.seeds.clone() {
            self.send(
                now,
                &seed,
                &Message::Join(me.clone()),
                TrafficClass::Control,
            );
        }
    }

    pub(super) fn on_join_timer(&mut self, now: Time) {
        let m = &self.cfg.membership;
        let (retry, redial) = (m.join_retry_interval, m.seed_redial_interval);
        if self.seeds.is_empty() {
            return;
        }
        if self.members.live_count() <= 1 {
            self.send_joins(now);
            self.timers.set(Timer::Join, now + retry);
            return;
        }
        // Seeds are known by address; who answered there is remembered.
        let seed_alive = self.seeds.iter().any(|(_, id)| {
            id.and_then(|id| self.members.get(&id))
                .is_some_and(|m| m.state == MemberState::Alive)
        });
        if !seed_alive {
            self.send_joins(now);
        }
        self.timers.set(Timer::Join, now + redial);
    }

    /// A member said hello on a connection dialled to `addr`: if that is
    /// a seed, remember who answers there.
    pub(super) fn note_seed(&mut self, addr: &Addr, node: NodeId) {
        for (a, id) in &mut self.seeds {
            if a == addr {
                *id = Some(node);
            }
        }
    }

    /// A node joins through us.
    pub(super) fn on_join(&mut self, now: Time, from: &Addr, rec: MemberRecord) {
        if rec.id == self.me {
            return;
        }
        let id = rec.id;
        let addr = if rec.addr.as_str().is_empty() {
            from.clone()
        } else {
            rec.addr.clone()
        };
        if self.apply_member(now, &rec)
            && let Some(r) = self.members.record(&id)
        {
            self.broadcast(Update::Member(r));
        }
        // A joiner is always accepted into the active view (HyParView).
        self.accept_neighbor(now, id, addr.clone(), true);
        let fj = crate::wire::ForwardJoin {
            joiner: match self.members.record(&id) {
                Some(r) => r,
                None => return,
            },
            ttl: self.cfg.overlay.join_walk_ttl,
        };
        let others: Vec<Addr> = self
            .overlay
            .active
            .iter()
            .filter(|p| p.id != id)
            .map(|p| p.addr.clone())
            .collect();
        for a in others {
            self.send(
                now,
                &a,
                &Message::ForwardJoin(fj.clone()),
                TrafficClass::Control,
            );
        }
    }

    /// The runtime lost the connection to `addr`, or could not open it.
    pub(super) fn on_unreachable(&mut self, now: Time, addr: &Addr) {
        self.provider_unreachable(now, addr);
        // A refused or broken connection answers a probe early: a direct
        // probe of that address moves on to indirect probes at once, and a
        // probe forwarded for someone else is nacked at once.
        let early: Vec<u32> = self
            .probes
            .outstanding
            .iter()
            .filter(|(_, p)| match p {
                Probe::Direct { target, .. } => {
                    self.members.get(target).is_some_and(|m| m.addr == *addr)
                }
                Probe::Forward { target, .. } => target == addr,
                Probe::Indirect { .. } => false,
            })
            .map(|(seq, _)| *seq)
            .collect();
        for seq in early {
            self.timers.cancel(Timer::ProbeTimeout(seq));
            self.on_probe_timeout(now, seq);
        }
        // An active peer whose connection broke is probed at once (the
        // ping opens a new connection); if it is gone, the usual probe
        // path suspects it. Once per time we heard from it: the probes of a
        // peer that refuses connections break connections too, and must
        // not start more probes (nodes would chase each other's probes).
        let probed = self
            .overlay
            .active
            .iter()
            .chain(self.overlay.ring.iter())
            .find(|p| p.addr == *addr && p.last_heard != Time::ZERO)
            .map(|p| p.id);
        if let Some(id) = probed
            && !self.probes.probing(id)
            && self.member_state(&id) == Some(MemberState::Alive)
        {
            if let Some(p) = self.probed_peer_mut(id) {
                p.last_heard = Time::ZERO;
            }
            self.timers.set(Timer::Probe(id), now);
        }
        self.overlay.pending.retain(|_, (a, _)| a != addr);
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::Net;
    use crate::{Config, Event, MemberState, NodeId};
    use std::time::Duration;

    #[test]
    fn a_silent_member_is_suspected_then_dead_within_the_bound() {
        let cfg = Config::default();
        let mut net = Net::joined(5, |_| cfg.clone());
        let victim = NodeId::from_u128(4);
        net.cut(4);
        let took = net
            .run_until_true(Duration::from_secs(10), |net| {
                (0..4)
                    .all(|i| net.node(i).unwrap().member_state(&victim) == Some(MemberState::Dead))
            })
            .expect("declared Dead");
        assert!(took <= cfg.detection_bound(5), "{took:?}");
        // Suspected first, everywhere.
        for i in 0..4 {
            let seen: Vec<&Event> = net
                .events
                .iter()
                .filter(|(o, _)| *o == i)
                .map(|(_, e)| e)
                .filter(|e| matches!(e, Event::MemberSuspect { id } | Event::MemberDown { id } if *id == victim))
                .collect();
            assert!(
                matches!(
                    seen[..],
                    [Event::MemberSuspect { .. }, .., Event::MemberDown { .. }]
                ),
                "{seen:?}"
            );
        }
    }

    #[test]
    fn a_suspected_member_that_answers_refutes_and_is_never_dead() {
        let mut net = Net::joined(4, |_| Config::default());
        let target = NodeId::from_u128(3);
        net.cut(3);
        net.run_until_true(Duration::from_secs(5), |net| {
            net.node(0).unwrap().member_state(&target) == Some(MemberState::Suspect)
        })
        .expect("suspected");
        net.uncut(3);
        net.run_until_true(Duration::from_secs(5), |net| {
            (0..4).all(|i| {
                net.node(i)
                    .unwrap()
                    .members()
                    .any(|m| m.id == target && m.state == MemberState::Alive && m.incarnation >= 2)
            })
        })
        .expect("refuted with a higher incarnation");
        assert!(net.node(3).unwrap().metrics().refutations >= 1);
        assert!(
            !net.events
                .iter()
                .any(|(_, e)| *e == Event::MemberDown { id: target }),
            "a live member was declared Dead"
        );
    }
}
