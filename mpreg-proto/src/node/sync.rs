//! Anti-entropy: periodic reconciliation with one peer over the range
//! digest ([`RangeTree`](crate::digest::RangeTree)).
//!
//! ```text
//!  A: SyncRanges(level 0: root)          ──►  B compares;
//!  B: SyncRanges(level 1: differing ..)  ◄──  equal ranges stop here
//!  A: SyncRanges(level 2: ..) or SyncSummaries(per-member hashes)
//!  B: SyncUpdates(what A lacks) + SyncPull(what B lacks)  ──►
//!  A: SyncUpdates(pulled)
//! ```
//!
//! Two nodes that agree exchange one small frame each way. Updates always
//! carry a member's full state (record and complete catalog snapshot), so
//! a node behind the tombstone floor is repaired too. Pages are bounded in
//! bytes and in number per exchange. News a sync brings is relayed along
//! the broadcast tree, so a repair spreads at network speed rather than one
//! interval per hop.

use super::Node;
use super::broadcast::Applied;
use crate::digest::{self, MAX_LEVEL};
use crate::event::TrafficClass;
use crate::id::{Addr, NodeId};
use crate::records::MemberState;
use crate::time::Time;
use crate::timers::Timer;
use crate::wire::{H64, Message, MessageKind, SyncRanges, SyncSummaries, Update};
use rand::RngExt;
use std::collections::BTreeMap;

/// Ranges holding at most this many members (both sides together) are
/// compared member by member instead of expanded.
const SUMMARY_THRESHOLD: u32 = 64;

#[derive(Debug, Default)]
pub(super) struct SyncState {
    /// This node's own tombstones: counter → when written. Collected after
    /// the reconnect window: a member that still held the removed entry
    /// after that long has been forgotten meanwhile.
    pub(super) tombstones: BTreeMap<u64, Time>,
}

/// Whether a kind belongs to anti-entropy (for byte accounting).
pub(super) fn is_sync(kind: MessageKind) -> bool {
    matches!(
        kind,
        MessageKind::SyncRanges
            | MessageKind::SyncSummaries
            | MessageKind::SyncPull
            | MessageKind::SyncUpdates
    )
}

impl Node {
    pub(super) fn start_sync(&mut self, now: Time, to: &Addr) {
        self.metrics.sync_exchanges += 1;
        let msg = Message::SyncRanges(SyncRanges {
            level: 0,
            ranges: vec![self.digest.root()],
        });
        self.send(now, to, &msg, TrafficClass::Broadcast);
    }

    pub(super) fn on_sync_timer(&mut self, now: Time) {
        // Usually an active peer; sometimes any live member, which also
        // repairs a split overlay.
        let partner = if !self.overlay.active.is_empty() && self.rng.random_range(0..10) < 9 {
            let i = self.rng.random_range(0..self.overlay.active.len());
            Some(self.overlay.active[i].addr.clone())
        } else {
            self.random_member(|_, m| m.state == MemberState::Alive)
                .map(|p| p.1)
        };
        if let Some(to) = partner {
            self.start_sync(now, &to);
        }
        // Re-probe one Dead member per interval: this is how the sides of a
        // healed partition find each other again.
        let dead: Vec<NodeId> = self
            .members
            .gone()
            .iter()
            .filter(|id| {
                self.members
                    .get(id)
                    .is_some_and(|m| m.state == MemberState::Dead)
            })
            .copied()
            .collect();
        if !dead.is_empty() {
            let id = dead[self.rng.random_range(0..dead.len())];
            if let Some(m) = self.members.get(&id) {
                let addr = m.addr.clone();
                self.start_sync(now, &addr);
            }
        }
        self.collect_garbage(now);
        let next = self.jitter(self.cfg.sync_interval(self.members.live_count()));
        self.timers.set(Timer::Sync, now + next);
    }

    /// Forgets Dead and Left members older than the reconnect window.
    fn collect_garbage(&mut self, now: Time) {
        let window = self.cfg.membership.reconnect_window;
        let old: Vec<NodeId> = self
            .members
            .gone()
            .iter()
            .filter(|id| {
                **id != self.me
                    && self
                        .members
                        .get(id)
                        .is_some_and(|m| m.since() + window <= now)
            })
            .copied()
            .collect();
        for id in old {
            let leaf = self.leaf(&id);
            self.members.remove(&id);
            self.digest.update(id, leaf, None);
            let changes = self.catalog.remove_owner(&id);
            let _ = changes; // already unroutable: the member was Dead/Left
            self.overlay.passive.retain(|p| p.id != id);
        }
        // Own tombstones older than the window: raise the catalog floor.
        let expired: Vec<u64> = self
            .sync
            .tombstones
            .iter()
            .filter(|(_, t)| **t + window <= now)
            .map(|(c, _)| *c)
            .collect();
        if let Some(&last) = expired.last() {
            for c in &expired {
                self.sync.tombstones.remove(c);
            }
            let floor = self
                .sync
                .tombstones
                .keys()
                .next()
                .map_or(last + 1, |c| (*c).min(last + 1));
            let old = self.leaf(&self.me);
            if self.catalog.collect_own(self.me, floor) {
                let new = self.leaf(&self.me);
                self.digest.update(self.me, old, new);
            }
        }
    }

    pub(super) fn on_sync_ranges(&mut self, now: Time, from: &Addr, r: SyncRanges) {
        let level = r.level.min(MAX_LEVEL);
        let width = digest::width(level);
        let (mut expand, mut summarize, mut push) = (Vec::new(), Vec::new(), Vec::new());
        for theirs in r.ranges.iter().filter(|d| usize::from(d.index) < width) {
            let mine = self.digest.digest(level, theirs.index);
            if mine.hash == theirs.hash && mine.count == theirs.count {
                continue;
            }
            if theirs.count == 0 {
                push.push(theirs.index);
            } else if level >= MAX_LEVEL
                || mine.count == 0
                || mine.count + theirs.count <= SUMMARY_THRESHOLD
            {
                summarize.push(theirs.index);
            } else {
                expand.push(theirs.index);
            }
        }
        if !expand.is_empty() {
            let ranges = expand
                .iter()
                .flat_map(|i| self.digest.children(level, *i))
                .collect();
            let msg = Message::SyncRanges(SyncRanges {
                level: level + 1,
                ranges,
            });
            self.send(now, from, &msg, TrafficClass::Broadcast);
        }
        if !summarize.is_empty() {
            let members = self.summaries(level, &summarize);
            let msg = Message::SyncSummaries(SyncSummaries {
                level,
                ranges: summarize,
                members,
            });
            self.send(now, from, &msg, TrafficClass::Broadcast);
        }
        if !push.is_empty() {
            let ids: Vec<NodeId> = push.iter().flat_map(|i| self.ids_in(level, *i)).collect();
            self.send_states(now, from, &ids);
        }
    }

    fn ids_in(&self, level: u8, index: u16) -> Vec<NodeId> {
        let (lo, hi) = digest::bounds(level, index);
        self.members.range(lo, hi).map(|(id, _)| *id).collect()
    }

    fn summaries(&self, level: u8, ranges: &[u16]) -> Vec<(NodeId, H64)> {
        ranges
            .iter()
            .flat_map(|i| self.ids_in(level, *i))
            .filter_map(|id| self.leaf(&id).map(|h| (id, H64(h))))
            .collect()
    }

    pub(super) fn on_sync_summaries(&mut self, now: Time, from: &Addr, s: SyncSummaries) {
        let level = s.level.min(MAX_LEVEL);
        let width = digest::width(level);
        let ranges: Vec<u16> = s
            .ranges
            .into_iter()
            .filter(|i| usize::from(*i) < width)
            .collect();
        let theirs: BTreeMap<NodeId, H64> = s.members.into_iter().collect();
        let mut push = Vec::new();
        for (id, h) in self.summaries(level, &ranges) {
            if theirs.get(&id) != Some(&h) {
                push.push(id);
            }
        }
        let pull: Vec<NodeId> = theirs
            .iter()
            .filter(|(id, h)| {
                let in_range = ranges.iter().any(|i| {
                    let (lo, hi) = digest::bounds(level, *i);
                    **id >= lo && **id <= hi
                });
                in_range && self.leaf(id).map(H64) != Some(**h)
            })
            .map(|(id, _)| *id)
            .collect();
        self.send_states(now, from, &push);
        if !pull.is_empty() {
            self.send(now, from, &Message::SyncPull(pull), TrafficClass::Broadcast);
        }
    }

    pub(super) fn on_sync_pull(&mut self, now: Time, from: &Addr, ids: Vec<NodeId>) {
        self.send_states(now, from, &ids);
    }

    /// Sends members' full state: record and complete catalog snapshot.
    fn send_states(&mut self, now: Time, to: &Addr, ids: &[NodeId]) {
        if ids.is_empty() {
            return;
        }
        let mut updates = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.members.record(id) {
                updates.push(Update::Member(r));
                if let Some(c) = self.catalog.snapshot(id) {
                    updates.push(Update::Catalog(c));
                }
            }
        }
        let pages = self.cfg.dissemination.sync_pages_per_exchange;
        self.send_updates(now, to, MessageKind::SyncUpdates, &updates, pages);
    }

    pub(super) fn on_sync_updates(
        &mut self,
        now: Time,
        _from: &Addr,
        peer: Option<NodeId>,
        updates: Vec<Update>,
    ) {
        let mut news = 0u64;
        for u in updates {
            // News is relayed along the tree like a broadcast: the rest of
            // the cluster may lack it too (a healed partition, a cold start).
            // A joiner learning the whole cluster has no other peer yet, so
            // this costs nothing there.
            match self.apply_update(now, &u) {
                Applied::News => {
                    news += 1;
                    if let Some(changed) = self.relay_form(u) {
                        self.relay(changed, peer);
                    }
                }
                Applied::Quiet => news += 1,
                Applied::Nothing => {}
            }
        }
        self.metrics.sync_updates_applied += news;
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::Net;
    use crate::{Config, FunctionSpec};
    use std::time::Duration;

    #[test]
    fn anti_entropy_brings_back_what_a_node_missed() {
        let cfg = Config::default();
        let mut net = Net::joined(6, |_| cfg.clone());
        // Node 5 misses the broadcast (its frames vanish for a moment).
        net.cut(5);
        net.with(0, |node, now| node.register(now, FunctionSpec::new("late")))
            .unwrap()
            .unwrap();
        net.run_for(Duration::from_millis(200));
        assert_eq!(net.node(5).unwrap().live_providers("late").count(), 0);
        net.uncut(5);
        let took = net
            .run_until_true(cfg.sync_interval(6) * 3, |net| {
                net.node(5).unwrap().live_providers("late").count() == 1
                    && net.node(5).unwrap().state_digest() == net.node(0).unwrap().state_digest()
            })
            .expect("repaired");
        assert!(
            net.node(5).unwrap().metrics().sync_updates_applied >= 1,
            "{took:?}"
        );
    }
}
