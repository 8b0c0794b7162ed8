//! The bounded overlay (HyParView): a small symmetric *active view* of
//! peers this node keeps connections to, probes and broadcasts over, and a
//! larger *passive view* of candidates to promote when one fails.
//!
//! The active view aims for `⌈log₂ N⌉ + c` peers ([`Config::active_view_target`]
//! (crate::Config::active_view_target)); it accepts up to `slack` more and
//! sheds the excess. Joins take random walks (`ForwardJoin`) so a joiner's
//! links spread beyond its seed. Since every node also knows every member,
//! sampling needs no random walk: a shuffle swaps passive-view samples with
//! one active peer over its open connection (no transient dial), and a view
//! that runs dry refills from the member table, so the overlay cannot stay
//! split.

use super::Node;
use crate::event::TrafficClass;
use crate::id::{Addr, NodeId};
use crate::records::MemberState;
use crate::rtt::Rtt;
use crate::time::Time;
use crate::timers::Timer;
use crate::wire::{ForwardJoin, Message, Neighbor, PeerInfo, Shuffle};
use rand::RngExt;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(super) struct Overlay {
    pub(super) active: Vec<ActivePeer>,
    pub(super) passive: Vec<PeerInfo>,
    /// Neighbor requests awaiting a reply: address and deadline.
    pub(super) pending: BTreeMap<NodeId, (Addr, Time)>,
    /// When the next passive-view shuffle is due.
    next_shuffle: Time,
    /// The ring successor (the next live member by id) when it is not an
    /// active peer: probed like one, so every live member has a prober
    /// whatever shape the overlay is in.
    pub(super) ring: Option<ActivePeer>,
    /// The ring successor last computed.
    ring_succ: Option<NodeId>,
}

#[derive(Debug)]
pub(super) struct ActivePeer {
    pub(super) id: NodeId,
    pub(super) addr: Addr,
    /// Plumtree: eager (tree) link or lazy (announcements only).
    pub(super) eager: bool,
    pub(super) last_heard: Time,
    pub(super) rtt: Rtt,
    /// When this node last sent it an "I have".
    pub(super) announced: Option<Time>,
}

impl Node {
    fn view_target(&self) -> usize {
        self.cfg.active_view_target(self.members.live_count())
    }

    fn view_max(&self) -> usize {
        self.view_target()
            .saturating_add(self.cfg.overlay.active_view_slack)
    }

    pub(super) fn is_active(&self, id: NodeId) -> bool {
        self.overlay.active.iter().any(|p| p.id == id)
    }

    /// A peer this node probes: an active peer or the ring successor.
    pub(super) fn probed_peer(&self, id: NodeId) -> Option<&ActivePeer> {
        self.overlay
            .active
            .iter()
            .chain(self.overlay.ring.iter())
            .find(|p| p.id == id)
    }

    pub(super) fn probed_peer_mut(&mut self, id: NodeId) -> Option<&mut ActivePeer> {
        self.overlay
            .active
            .iter_mut()
            .chain(self.overlay.ring.iter_mut())
            .find(|p| p.id == id)
    }

    /// The next (`forward`) or previous live member by id after `of`,
    /// wrapping.
    fn ring_neighbor_of(&self, of: NodeId, forward: bool) -> Option<(NodeId, Addr)> {
        let x = of.as_u128();
        let live = |(id, m): (&NodeId, &crate::members::Member)| {
            (*id != of && m.state.is_live()).then(|| (*id, m.addr.clone()))
        };
        let (lo, hi) = (NodeId::from_u128(0), NodeId::from_u128(u128::MAX));
        if forward {
            let after = (x < u128::MAX).then(|| NodeId::from_u128(x + 1));
            after
                .and_then(|a| self.members.range(a, hi).find_map(live))
                .or_else(|| self.members.range(lo, of).find_map(live))
        } else {
            let before = (x > 0).then(|| NodeId::from_u128(x - 1));
            before
                .and_then(|b| self.members.range(lo, b).rev().find_map(live))
                .or_else(|| self.members.range(of, hi).rev().find_map(live))
        }
    }

    fn ring_neighbor(&self, forward: bool) -> Option<(NodeId, Addr)> {
        self.ring_neighbor_of(self.me, forward)
    }

    /// Whether the link to `peer` is a ring link of either end: such links
    /// are pinned in both active views.
    fn ring_link(&self, peer: NodeId) -> bool {
        let mine = [self.ring_neighbor(true), self.ring_neighbor(false)];
        mine.iter().flatten().any(|(id, _)| *id == peer)
            || [true, false].iter().any(|f| {
                self.ring_neighbor_of(peer, *f)
                    .is_some_and(|(id, _)| id == self.me)
            })
    }

    /// A random active peer that is not on a ring link, if any.
    fn sheddable(&mut self) -> Option<NodeId> {
        let ids: Vec<NodeId> = self
            .overlay
            .active
            .iter()
            .map(|p| p.id)
            .filter(|id| !self.ring_link(*id))
            .collect();
        (!ids.is_empty()).then(|| ids[self.rng.random_range(0..ids.len())])
    }

    pub(super) fn ring_predecessor(&self) -> Option<NodeId> {
        self.ring_neighbor(false).map(|p| p.0)
    }

    /// Whether a change to member `id` can change this node's ring
    /// successor: it is the successor, or no farther along the ring.
    pub(super) fn ring_affected(&self, id: NodeId) -> bool {
        let dist = |x: NodeId| x.as_u128().wrapping_sub(self.me.as_u128());
        match self.overlay.ring_succ {
            Some(s) => dist(id) <= dist(s),
            None => true,
        }
    }

    /// Keeps the ring successor probed: as a probe-only peer unless it is
    /// an active peer already.
    pub(super) fn update_ring(&mut self, now: Time) {
        let succ = self.ring_neighbor(true);
        self.overlay.ring_succ = succ.as_ref().map(|s| s.0);
        let want = succ.filter(|(id, _)| !self.is_active(*id));
        if self.overlay.ring.as_ref().map(|r| r.id) == want.as_ref().map(|w| w.0) {
            return;
        }
        if let Some(old) = self.overlay.ring.take()
            && !self.is_active(old.id)
        {
            self.timers.cancel(Timer::Probe(old.id));
        }
        if let Some((id, addr)) = want {
            // Bring it into the active view too (a ring link is pinned).
            self.schedule_repair(now);
            self.overlay.ring = Some(ActivePeer {
                id,
                addr,
                eager: false,
                last_heard: now,
                rtt: Rtt::default(),
                announced: None,
            });
            let period = self.cfg.membership.probe_period;
            self.timers.set(Timer::Probe(id), now + period);
        }
    }

    /// Adds a peer to the active view; the runtime is asked to keep a
    /// connection, probing starts, and the two sync at once.
    pub(super) fn add_active(&mut self, now: Time, id: NodeId, addr: Addr) -> bool {
        if id == self.me || self.is_active(id) || addr.as_str().is_empty() {
            return false;
        }
        // Only a live member: anything else (unknown, or not admitted by
        // the member cap) would never be probed out of the view.
        if !self.members.get(&id).is_some_and(|m| m.state.is_live()) {
            return false;
        }
        self.overlay.pending.remove(&id);
        self.overlay.passive.retain(|p| p.id != id);
        self.overlay.active.push(ActivePeer {
            id,
            addr: addr.clone(),
            eager: true,
            last_heard: now,
            rtt: Rtt::default(),
            announced: None,
        });
        let period = self.cfg.membership.probe_period;
        self.timers.set(Timer::Probe(id), now + period);
        self.start_sync(now, &addr);
        if self.overlay.active.len() < self.view_target() {
            self.schedule_repair(now);
        }
        self.update_ring(now);
        true
    }

    /// Drops a peer from the active view (telling it when `notify`).
    pub(super) fn remove_active(&mut self, now: Time, id: NodeId, notify: bool) {
        let Some(i) = self.overlay.active.iter().position(|p| p.id == id) else {
            return;
        };
        let p = self.overlay.active.remove(i);
        if notify {
            self.send(now, &p.addr, &Message::Disconnect, TrafficClass::Control);
        }
        self.timers.cancel(Timer::Probe(id));
        if self.members.get(&id).is_some_and(|m| m.state.is_live()) {
            self.consider_passive(id, p.addr);
        }
        self.schedule_repair(now);
        self.update_ring(now);
    }

    /// Accepts a neighbor, making room by shedding a random peer when
    /// `force`d into a full view. Replies to the requester.
    pub(super) fn accept_neighbor(
        &mut self,
        now: Time,
        id: NodeId,
        addr: Addr,
        force: bool,
    ) -> bool {
        if id == self.me {
            return false;
        }
        if !self.is_active(id) {
            if self.overlay.active.len() >= self.view_max() {
                if !force {
                    self.send(
                        now,
                        &addr,
                        &Message::NeighborReply(false),
                        TrafficClass::Control,
                    );
                    return false;
                }
                if let Some(vid) = self.sheddable() {
                    self.remove_active(now, vid, true);
                }
            }
            self.add_active(now, id, addr.clone());
        }
        self.send(
            now,
            &addr,
            &Message::NeighborReply(true),
            TrafficClass::Control,
        );
        true
    }

    pub(super) fn consider_passive(&mut self, id: NodeId, addr: Addr) {
        if id == self.me
            || self.is_active(id)
            || self.overlay.passive.iter().any(|p| p.id == id)
            || self.cfg.overlay.passive_view_size == 0
        {
            return;
        }
        if self.overlay.passive.len() >= self.cfg.overlay.passive_view_size {
            let i = self.rng.random_range(0..self.overlay.passive.len());
            self.overlay.passive.swap_remove(i);
        }
        self.overlay.passive.push(PeerInfo { id, addr });
    }

    pub(super) fn integrate_passive(&mut self, sample: Vec<PeerInfo>) {
        for p in sample
            .into_iter()
            .take(self.cfg.overlay.shuffle_size.saturating_mul(2))
        {
            let dead = self.members.get(&p.id).is_some_and(|m| !m.state.is_live());
            if !dead {
                self.consider_passive(p.id, p.addr);
            }
        }
    }

    fn request_neighbor(&mut self, now: Time, id: NodeId, addr: Addr, high: bool) {
        if id == self.me || self.is_active(id) || self.overlay.pending.contains_key(&id) {
            return;
        }
        let deadline = now + self.cfg.membership.probe_period;
        self.overlay.pending.insert(id, (addr.clone(), deadline));
        let sender = self.own_record(MemberState::Alive);
        let msg = Message::Neighbor(Neighbor {
            sender,
            high_priority: high,
        });
        self.send(now, &addr, &msg, TrafficClass::Control);
    }

    pub(super) fn on_neighbor(&mut self, now: Time, from: &Addr, n: Neighbor) {
        let (id, addr) = (n.sender.id, n.sender.addr.clone());
        if id == self.me {
            return;
        }
        self.apply_member(now, &n.sender);
        if self.members.get(&id).is_some_and(|m| !m.state.is_live()) {
            // We hold it Dead at its incarnation: it must refute first.
            self.send(
                now,
                from,
                &Message::NeighborReply(false),
                TrafficClass::Control,
            );
            return;
        }
        self.accept_neighbor(now, id, addr, n.high_priority);
    }

    pub(super) fn on_neighbor_reply(
        &mut self,
        now: Time,
        from: &Addr,
        peer: Option<NodeId>,
        ok: bool,
    ) {
        let id = peer.or_else(|| {
            self.overlay
                .pending
                .iter()
                .find(|(_, (a, _))| a == from)
                .map(|(id, _)| *id)
        });
        let Some(id) = id else {
            return;
        };
        let was_pending = self.overlay.pending.remove(&id).is_some();
        if !ok {
            if self.is_active(id) {
                self.remove_active(now, id, false);
            }
            return;
        }
        if self.is_active(id) {
            return;
        }
        if was_pending || self.overlay.active.is_empty() {
            self.add_active(now, id, from.clone());
        } else {
            // We gave up on this request: keep the views symmetric.
            self.send(now, from, &Message::Disconnect, TrafficClass::Control);
        }
    }

    /// Broadcast traffic only flows between active peers; from anyone else
    /// it means their view holds us and ours does not: tell them.
    pub(super) fn check_symmetric(&mut self, now: Time, from: &Addr, peer: Option<NodeId>) {
        if let Some(id) = peer
            && !self.is_active(id)
            && !self.overlay.pending.contains_key(&id)
            && self.members.get(&id).is_some_and(|m| m.state.is_live())
        {
            self.send(now, from, &Message::Disconnect, TrafficClass::Control);
        }
    }

    pub(super) fn on_disconnect(&mut self, now: Time, peer: Option<NodeId>) {
        if let Some(id) = peer {
            self.remove_active(now, id, false);
        }
    }

    pub(super) fn on_forward_join(&mut self, now: Time, peer: Option<NodeId>, fj: ForwardJoin) {
        let (id, addr) = (fj.joiner.id, fj.joiner.addr.clone());
        if id == self.me {
            return;
        }
        self.apply_member(now, &fj.joiner);
        if fj.ttl == 0 || self.overlay.active.len() <= 1 {
            self.request_neighbor(now, id, addr, false);
            return;
        }
        if fj.ttl == self.cfg.overlay.passive_walk_ttl {
            self.consider_passive(id, addr.clone());
        }
        let next: Vec<Addr> = self
            .overlay
            .active
            .iter()
            .filter(|p| Some(p.id) != peer && p.id != id)
            .map(|p| p.addr.clone())
            .collect();
        if next.is_empty() {
            self.request_neighbor(now, id, addr, false);
            return;
        }
        let to = next[self.rng.random_range(0..next.len())].clone();
        let fwd = ForwardJoin {
            joiner: fj.joiner,
            ttl: fj.ttl - 1,
        };
        self.send(now, &to, &Message::ForwardJoin(fwd), TrafficClass::Control);
    }

    pub(super) fn schedule_repair(&mut self, now: Time) {
        self.timers
            .set_if_earlier(Timer::Shuffle, now + self.cfg.membership.probe_timeout_min);
    }

    /// Sheds peers above the maximum and asks candidates to fill the view
    /// up to its target: passive ones first, then random live members.
    fn repair_overlay(&mut self, now: Time) {
        self.overlay
            .pending
            .retain(|_, (_, deadline)| *deadline > now);
        while self.overlay.active.len() > self.view_max() {
            let Some(id) = self.sheddable() else { break };
            self.remove_active(now, id, true);
        }
        // Ring links first: they must not be refused.
        for forward in [true, false] {
            if let Some((id, addr)) = self.ring_neighbor(forward)
                && !self.is_active(id)
            {
                self.request_neighbor(now, id, addr, true);
            }
        }
        let target = self.view_target();
        let have = self.overlay.active.len() + self.overlay.pending.len();
        let mut deficit = target.saturating_sub(have);
        let high = self.overlay.active.is_empty();
        while deficit > 0 && !self.overlay.passive.is_empty() {
            let i = self.rng.random_range(0..self.overlay.passive.len());
            let p = self.overlay.passive.swap_remove(i);
            if self
                .members
                .get(&p.id)
                .is_some_and(|m| m.state == MemberState::Alive)
            {
                self.request_neighbor(now, p.id, p.addr, high);
                deficit -= 1;
            }
        }
        let mut tries = 0;
        while deficit > 0 && tries < 2 * target {
            tries += 1;
            let me = self.me;
            let pick = self.random_member(|id, m| *id != me && m.state == MemberState::Alive);
            let Some((id, addr)) = pick else {
                break;
            };
            if !self.is_active(id) && !self.overlay.pending.contains_key(&id) {
                self.request_neighbor(now, id, addr, high);
                deficit -= 1;
            }
        }
    }

    pub(super) fn on_shuffle_timer(&mut self, now: Time) {
        self.repair_overlay(now);
        if now >= self.overlay.next_shuffle {
            self.shuffle(now);
            self.overlay.next_shuffle = now + self.jitter(self.cfg.overlay.shuffle_period);
        }
        let mut next = self.overlay.next_shuffle;
        if self.overlay.active.len() < self.view_target() {
            next = next.min(now + self.cfg.membership.probe_period / 2);
        }
        self.timers.set(
            Timer::Shuffle,
            next.max(now + self.cfg.membership.probe_timeout_min),
        );
    }

    fn shuffle(&mut self, now: Time) {
        if self.overlay.active.is_empty() {
            return;
        }
        let k = self.cfg.overlay.shuffle_size;
        // Any shuffle_size validates: reserve only what the views can fill.
        let most = 1 + self.overlay.active.len() + self.overlay.passive.len();
        let mut sample: Vec<PeerInfo> = Vec::with_capacity(k.min(most));
        sample.push(PeerInfo {
            id: self.me,
            addr: self.addr.clone(),
        });
        for p in self.overlay.active.iter().take(k / 2) {
            sample.push(PeerInfo {
                id: p.id,
                addr: p.addr.clone(),
            });
        }
        let room = k.saturating_sub(sample.len());
        for p in self.overlay.passive.iter().take(room) {
            sample.push(p.clone());
        }
        let i = self.rng.random_range(0..self.overlay.active.len());
        let to = self.overlay.active[i].addr.clone();
        let msg = Message::Shuffle(Shuffle {
            origin: PeerInfo {
                id: self.me,
                addr: self.addr.clone(),
            },
            ttl: 0,
            sample,
        });
        self.send(now, &to, &msg, TrafficClass::Control);
    }

    pub(super) fn on_shuffle(&mut self, now: Time, from: &Addr, s: Shuffle) {
        if s.origin.id == self.me {
            return;
        }
        // Answer over the connection the shuffle came on: no new dial.
        let reply: Vec<PeerInfo> = self
            .overlay
            .passive
            .iter()
            .take(s.sample.len())
            .cloned()
            .collect();
        self.send(
            now,
            from,
            &Message::ShuffleReply(reply),
            TrafficClass::Control,
        );
        self.integrate_passive(s.sample);
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::testing::{Net, addr};
    use std::time::Duration;

    #[test]
    fn active_views_are_symmetric_bounded_and_kept_connected() {
        let cfg = Config::default();
        let n = 12;
        let mut net = Net::joined(n, |_| cfg.clone());
        net.run_for(Duration::from_secs(10));
        let max = cfg.active_view_target(n) + cfg.overlay.active_view_slack;
        for i in 0..n {
            let node = net.node(i).unwrap();
            let view = node.active_view();
            assert!(!view.is_empty() && view.len() <= max, "node {i}: {view:?}");
            for p in view {
                let j = p.as_u128() as usize;
                assert!(
                    net.node(j).unwrap().active_view().contains(&node.id()),
                    "{i} holds {j}, not the reverse"
                );
                assert!(
                    node.connections()
                        .any(|c| c.addr == addr(j as u128) && c.kept),
                    "{i} keeps no connection to its peer {j}"
                );
            }
        }
    }

    #[test]
    fn a_view_refills_when_a_peer_dies() {
        let mut net = Net::joined(8, |_| Config::default());
        net.run_for(Duration::from_secs(5));
        let victim = net.node(0).unwrap().active_view()[0].as_u128() as usize;
        net.kill(victim);
        let took = net.run_until_true(Duration::from_secs(10), |net| {
            (0..8).filter(|i| *i != victim).all(|i| {
                let n = net.node(i).unwrap();
                let v = n.active_view();
                !v.contains(&crate::NodeId::from_u128(victim as u128)) && v.len() >= 3
            })
        });
        assert!(took.is_some(), "views did not refill");
    }
}
