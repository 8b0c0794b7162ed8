//! Plumtree broadcast over the active view.
//!
//! The first receipt of an update is relayed at once to *eager* peers (the
//! spanning tree, ≈ N − 1 payload copies per update) and announced by id to
//! *lazy* peers. A duplicate prunes its sender to lazy; an announced update
//! that does not arrive within `graft_timeout` is grafted from the
//! announcer, whose link becomes eager again.
//!
//! Deduplication needs no message cache: an update is "new" exactly when it
//! changes the replicated state, and a graft is served from current state.
//! Updates are encoded once and the bytes reused for every peer.

use super::Node;
use crate::event::TrafficClass;
use crate::id::{Addr, NodeId};
use crate::members::Merge;
use crate::metrics::Limit;
use crate::records::MemberState;
use crate::time::Time;
use crate::timers::Timer;
use crate::wire::{CatalogDelta, Message, MessageKind, Update, UpdateId};
use bytes::Bytes;
use std::collections::BTreeMap;

/// Ids per `IHave` frame.
const IHAVE_BATCH: usize = 2048;
/// Announcers remembered per missing update.
const MAX_ANNOUNCERS: usize = 4;

#[derive(Debug, Default)]
pub(super) struct Plumtree {
    outbox: Vec<Outgoing>,
    missing: BTreeMap<UpdateId, Missing>,
    /// Announcements waiting for the announce timer, per lazy peer.
    announce: BTreeMap<NodeId, Vec<UpdateId>>,
}

#[derive(Debug)]
struct Outgoing {
    id: UpdateId,
    bytes: Bytes,
    /// The peer it came from (not sent back).
    except: Option<NodeId>,
    /// How to send it to each peer.
    mode: Mode,
    /// Originated by this node (not relayed).
    local: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Mode {
    /// Eager to eager peers, announced to lazy ones.
    Tree,
    /// Eager to every active peer (a leaving node cannot serve grafts).
    All,
}

#[derive(Debug)]
struct Missing {
    announcers: Vec<NodeId>,
    deadline: Time,
}

/// What applying an update did.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(super) enum Applied {
    /// Nothing: it was known.
    Nothing,
    /// The state changed, but not in a way worth a broadcast wave.
    Quiet,
    /// News, to relay.
    News,
}

/// The id an update is announced by.
pub(super) fn update_id(u: &Update) -> UpdateId {
    match u {
        Update::Member(r) => UpdateId::Member {
            id: r.id,
            incarnation: r.incarnation,
            state: r.state,
        },
        Update::Catalog(d) => UpdateId::Catalog {
            owner: d.owner,
            epoch: d.epoch,
            counter: delta_counter(d),
        },
    }
}

fn delta_counter(d: &CatalogDelta) -> u64 {
    d.entries
        .iter()
        .map(|e| e.counter)
        .max()
        .unwrap_or(0)
        .max(d.floor.saturating_sub(1))
}

fn encode_update(u: &Update) -> Bytes {
    Bytes::from(postcard::to_stdvec(u).unwrap_or_default())
}

impl Node {
    /// Broadcasts an update this node originated.
    pub(super) fn broadcast(&mut self, u: Update) {
        self.metrics.broadcasts_originated += 1;
        self.enqueue(u, None, Mode::Tree, true);
    }

    /// Sends an update to every active peer eagerly.
    pub(super) fn broadcast_to_all(&mut self, u: Update) {
        self.metrics.broadcasts_originated += 1;
        self.enqueue(u, None, Mode::All, true);
    }

    pub(super) fn relay(&mut self, u: Update, from: Option<NodeId>) {
        self.metrics.broadcasts_relayed += 1;
        self.enqueue(u, from, Mode::Tree, false);
    }

    fn enqueue(&mut self, u: Update, except: Option<NodeId>, mode: Mode, local: bool) {
        let id = update_id(&u);
        let bytes = encode_update(&u);
        self.plumtree.outbox.push(Outgoing {
            id,
            bytes,
            except,
            mode,
            local,
        });
    }

    /// How long to wait for the eager copy of an update `announcer`
    /// announced before grafting it: a few round trips to the announcer
    /// (the eager copy is usually a hop or two behind the announcement),
    /// within `[graft_timeout_min, graft_timeout]`.
    fn graft_wait(&self, announcer: NodeId) -> std::time::Duration {
        let d = &self.cfg.dissemination;
        self.overlay
            .active
            .iter()
            .find(|p| p.id == announcer)
            .and_then(|p| p.rtt.estimate())
            .map_or(d.graft_timeout, |rtt| {
                (rtt * 3).clamp(d.graft_timeout_min, d.graft_timeout)
            })
    }

    /// Whether this node's state already includes an update.
    pub(super) fn have(&self, id: &UpdateId) -> bool {
        match id {
            UpdateId::Member {
                id,
                incarnation,
                state,
            } => {
                *id == self.me
                    || self
                        .members
                        .get(id)
                        .is_some_and(|m| (m.incarnation, m.state) >= (*incarnation, *state))
            }
            UpdateId::Catalog {
                owner,
                epoch,
                counter,
            } => {
                *owner == self.me
                    || self
                        .catalog
                        .version_of(owner)
                        .is_some_and(|(e, c)| e > *epoch || (e == *epoch && c >= *counter))
            }
        }
    }

    /// Sends this input's updates: one `Gossip` frame (or a few, if large)
    /// and one `IHave` per peer.
    pub(super) fn flush_broadcasts(&mut self, now: Time) {
        if self.plumtree.outbox.is_empty() {
            return;
        }
        let outbox = std::mem::take(&mut self.plumtree.outbox);
        if self.overlay.active.is_empty() {
            // No tree to push along (just joined, or mid-repair): this
            // node's own updates go straight to a few members, who relay
            // them, rather than wait for an anti-entropy round. (Relayed
            // ones are not: the sender has them, and a joining node relays
            // a whole member table.)
            let all: Vec<&Bytes> = outbox
                .iter()
                .filter(|o| o.local)
                .map(|o| &o.bytes)
                .collect();
            if all.is_empty() {
                return;
            }
            for a in self.direct_targets(super::DIRECT_FANOUT) {
                self.metrics.broadcast_copies += all.len() as u64;
                self.send_encoded(now, &a, MessageKind::Gossip, &all, usize::MAX);
            }
            return;
        }
        let peers: Vec<(NodeId, Addr, bool)> = self
            .overlay
            .active
            .iter()
            .map(|p| (p.id, p.addr.clone(), p.eager))
            .collect();
        for (id, addr, eager) in peers {
            let mut push: Vec<&Bytes> = Vec::new();
            let mut ids: Vec<UpdateId> = Vec::new();
            for o in outbox.iter().filter(|o| o.except != Some(id)) {
                match o.mode {
                    Mode::All => push.push(&o.bytes),
                    Mode::Tree if eager => push.push(&o.bytes),
                    Mode::Tree => ids.push(o.id),
                }
            }
            self.metrics.broadcast_copies += push.len() as u64;
            self.send_encoded(now, &addr, MessageKind::Gossip, &push, usize::MAX);
            if ids.is_empty() {
                continue;
            }
            // An announcement goes at once unless one went to this peer
            // within `ihave_delay`: then it waits, so that a burst of
            // updates leaves as one frame per peer.
            let delay = self.cfg.dissemination.ihave_delay;
            let recent = self
                .overlay
                .active
                .iter()
                .find(|p| p.id == id)
                .and_then(|p| p.announced)
                .is_some_and(|t| now < t + delay);
            if recent || self.plumtree.announce.contains_key(&id) {
                let queue = self.plumtree.announce.entry(id).or_default();
                queue.extend(ids);
                if queue.len() >= self.cfg.limits.max_pending_announcements {
                    // The batch is full: it leaves now.
                    let full = std::mem::take(queue);
                    self.plumtree.announce.remove(&id);
                    self.limit_hit(Limit::Announcements);
                    self.send_ihave(now, id, full);
                    continue;
                }
                self.timers.set_if_earlier(Timer::Announce, now + delay);
            } else {
                self.send_ihave(now, id, ids);
            }
        }
    }

    fn send_ihave(&mut self, now: Time, peer: NodeId, mut ids: Vec<UpdateId>) {
        let Some(p) = self.overlay.active.iter_mut().find(|p| p.id == peer) else {
            return;
        };
        p.announced = Some(now);
        let addr = p.addr.clone();
        ids.sort_unstable();
        ids.dedup();
        self.metrics.ihaves += ids.len() as u64;
        for chunk in ids.chunks(IHAVE_BATCH) {
            self.send(
                now,
                &addr,
                &Message::IHave(chunk.to_vec()),
                TrafficClass::Broadcast,
            );
        }
    }

    /// Sends the announcements that waited.
    pub(super) fn on_announce_timer(&mut self, now: Time) {
        for (id, ids) in std::mem::take(&mut self.plumtree.announce) {
            self.send_ihave(now, id, ids);
        }
    }

    /// Up to `n` live members outside the active view, ring neighbours
    /// first, then random ones.
    pub(super) fn direct_targets(&mut self, n: usize) -> Vec<Addr> {
        let active: Vec<NodeId> = self.overlay.active.iter().map(|p| p.id).collect();
        let mut told: Vec<(NodeId, Addr)> = self
            .overlay
            .ring
            .iter()
            .filter(|p| !active.contains(&p.id))
            .map(|p| (p.id, p.addr.clone()))
            .collect();
        told.dedup_by_key(|t| t.0);
        told.truncate(n);
        for _ in 0..2 * n {
            if told.len() >= n {
                break;
            }
            let skip: Vec<NodeId> = told
                .iter()
                .map(|t| t.0)
                .chain(active.iter().copied())
                .collect();
            if let Some(pick) = self.random_member(|id, m| m.state.is_live() && !skip.contains(id))
            {
                told.push(pick);
            }
        }
        told.into_iter().map(|(_, a)| a).collect()
    }

    /// Sends updates as `kind` frames (a `Vec<Update>` body), packing them
    /// into pages of at most `sync_page_bytes`, at most `max_pages` pages.
    /// Returns how many updates went out.
    pub(super) fn send_updates(
        &mut self,
        now: Time,
        to: &Addr,
        kind: MessageKind,
        updates: &[Update],
        max_pages: usize,
    ) -> usize {
        let encoded: Vec<Bytes> = updates.iter().map(encode_update).collect();
        let refs: Vec<&Bytes> = encoded.iter().collect();
        self.send_encoded(now, to, kind, &refs, max_pages)
    }

    fn send_encoded(
        &mut self,
        now: Time,
        to: &Addr,
        kind: MessageKind,
        items: &[&Bytes],
        max_pages: usize,
    ) -> usize {
        let page = self.cfg.dissemination.sync_page_bytes;
        let mut sent = 0;
        let mut pages = 0;
        let mut i = 0;
        while i < items.len() && pages < max_pages {
            let mut size = 0;
            let mut j = i;
            while j < items.len() && (j == i || size + items[j].len() <= page) {
                size += items[j].len();
                j += 1;
            }
            let mut body = Vec::with_capacity(size + 5);
            // A postcard sequence: varint length, then the elements.
            body.extend(postcard::to_stdvec(&(j - i)).unwrap_or_default());
            for b in &items[i..j] {
                body.extend_from_slice(b);
            }
            self.send_body(now, to, kind, &body, TrafficClass::Broadcast);
            self.metrics.updates_sent += (j - i) as u64;
            sent += j - i;
            pages += 1;
            i = j;
        }
        if i < items.len() {
            self.limit_hit(Limit::SyncPages);
        }
        sent
    }

    /// Applies an update; returns whether it changed the replicated state.
    pub(super) fn apply_update(&mut self, now: Time, u: &Update) -> Applied {
        let changed = match u {
            Update::Member(r) => match self.merge_member(now, r) {
                None | Some(Merge::Unchanged) => Applied::Nothing,
                // A suspicion that only gained accusers is kept, not
                // relayed: confirmations matter to the accusers, which tell
                // each other directly; everyone else needs only the first
                // Suspect and the verdict. Anti-entropy reconciles the
                // exact sets.
                Some(Merge::Changed {
                    old_state: MemberState::Suspect,
                    old_incarnation,
                }) if r.state == MemberState::Suspect && r.incarnation == old_incarnation => {
                    Applied::Quiet
                }
                Some(_) => Applied::News,
            },
            Update::Catalog(d) => {
                if self.apply_catalog(now, d) {
                    Applied::News
                } else {
                    Applied::Nothing
                }
            }
        };
        // An announced update that arrived is no longer missing.
        if !self.plumtree.missing.is_empty() {
            let id = update_id(u);
            if self.have(&id) {
                self.plumtree.missing.remove(&id);
            }
        }
        changed
    }

    /// What to relay after `u` changed the state: a member's merged record
    /// (it may hold more accusers than `u`), or the delta as received.
    pub(super) fn relay_form(&self, u: Update) -> Option<Update> {
        match u {
            Update::Member(r) => self.members.record(&r.id).map(Update::Member),
            c @ Update::Catalog(_) => Some(c),
        }
    }

    pub(super) fn on_gossip(&mut self, now: Time, peer: Option<NodeId>, updates: Vec<Update>) {
        let mut fresh = false;
        for u in updates {
            match self.apply_update(now, &u) {
                Applied::News => {
                    fresh = true;
                    if let Some(relay) = self.relay_form(u) {
                        self.relay(relay, peer);
                    }
                }
                Applied::Quiet => fresh = true,
                Applied::Nothing => self.metrics.duplicate_updates += 1,
            }
        }
        let Some(id) = peer else {
            return;
        };
        let Some(p) = self.overlay.active.iter_mut().find(|p| p.id == id) else {
            return;
        };
        if fresh {
            p.eager = true;
        } else if p.eager {
            p.eager = false;
            let addr = p.addr.clone();
            self.metrics.prunes += 1;
            self.send(now, &addr, &Message::Prune, TrafficClass::Broadcast);
        }
    }

    pub(super) fn on_ihave(&mut self, now: Time, peer: Option<NodeId>, ids: Vec<UpdateId>) {
        let Some(peer) = peer else {
            return;
        };
        let deadline = now + self.graft_wait(peer);
        for id in ids {
            if let UpdateId::Member {
                id: who,
                incarnation,
                state,
            } = id
                && who == self.me
                && state != crate::records::MemberState::Alive
            {
                // An accusation of this node: the announcement says enough
                // to refute it; no need to fetch it.
                let mut rec = self.own_record(state);
                rec.incarnation = incarnation;
                self.on_self_record(now, &rec);
                continue;
            }
            if self.have(&id) {
                continue;
            }
            if let Some(m) = self.plumtree.missing.get_mut(&id) {
                if m.announcers.len() < MAX_ANNOUNCERS && !m.announcers.contains(&peer) {
                    m.announcers.push(peer);
                }
                continue;
            }
            if self.plumtree.missing.len() >= self.cfg.limits.max_missing_updates {
                self.limit_hit(Limit::MissingUpdates);
                continue;
            }
            self.plumtree.missing.insert(
                id,
                Missing {
                    announcers: vec![peer],
                    deadline,
                },
            );
            self.timers.set_if_earlier(Timer::Graft, deadline);
        }
    }

    pub(super) fn on_graft_timer(&mut self, now: Time) {
        let due: Vec<UpdateId> = self
            .plumtree
            .missing
            .iter()
            .filter(|(_, m)| m.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut grafts: BTreeMap<NodeId, Vec<UpdateId>> = BTreeMap::new();
        for id in due {
            if self.have(&id) {
                self.plumtree.missing.remove(&id);
                continue;
            }
            let Some(m) = self.plumtree.missing.get_mut(&id) else {
                continue;
            };
            let active = &self.overlay.active;
            m.announcers.retain(|a| active.iter().any(|p| p.id == *a));
            if m.announcers.is_empty() {
                // Anti-entropy will repair it.
                self.plumtree.missing.remove(&id);
                continue;
            }
            let a = m.announcers.remove(0);
            grafts.entry(a).or_default().push(id);
        }
        for (a, ids) in grafts {
            // Retry with the next announcer if this graft is not answered.
            let retry = now + self.graft_wait(a) * 2;
            for id in &ids {
                if let Some(m) = self.plumtree.missing.get_mut(id) {
                    m.deadline = retry;
                }
            }
            let Some(p) = self.overlay.active.iter_mut().find(|p| p.id == a) else {
                continue;
            };
            p.eager = true;
            let addr = p.addr.clone();
            self.metrics.grafts += 1;
            self.send(now, &addr, &Message::Graft(ids), TrafficClass::Broadcast);
        }
        if let Some(next) = self.plumtree.missing.values().map(|m| m.deadline).min() {
            self.timers.set_if_earlier(Timer::Graft, next);
        }
    }

    pub(super) fn on_graft(
        &mut self,
        now: Time,
        from: &Addr,
        peer: Option<NodeId>,
        ids: Vec<UpdateId>,
    ) {
        if let Some(p) = peer.and_then(|id| self.overlay.active.iter_mut().find(|p| p.id == id)) {
            p.eager = true;
        }
        let mut updates = Vec::new();
        for id in ids.into_iter().take(IHAVE_BATCH) {
            match id {
                UpdateId::Member { id, .. } => {
                    updates.extend(self.members.record(&id).map(Update::Member));
                }
                UpdateId::Catalog { owner, .. } => {
                    updates.extend(self.catalog.snapshot(&owner).map(Update::Catalog));
                }
            }
        }
        let pages = self.cfg.dissemination.sync_pages_per_exchange;
        self.send_updates(now, from, MessageKind::Gossip, &updates, pages);
    }

    pub(super) fn on_prune(&mut self, peer: Option<NodeId>) {
        if let Some(p) = peer.and_then(|id| self.overlay.active.iter_mut().find(|p| p.id == id)) {
            p.eager = false;
        }
    }

    /// Merges a catalog delta of another node.
    pub(super) fn apply_catalog(&mut self, now: Time, d: &CatalogDelta) -> bool {
        // This node is the only writer of its entries; and the catalog holds
        // only members (an early delta is repaired by graft or anti-entropy
        // once the member record arrives).
        if d.owner == self.me || !self.members.contains(&d.owner) {
            return false;
        }
        let _ = now;
        let old = self.leaf(&d.owner);
        let l = &self.cfg.limits;
        let applied = self
            .catalog
            .apply(d, l.max_functions_per_node, l.max_catalog_entries);
        if applied.limited > 0 {
            let per_node = self.catalog.entries_of(&d.owner).count() >= l.max_functions_per_node;
            self.limit_hit(if per_node {
                Limit::FunctionsPerNode
            } else {
                Limit::CatalogEntries
            });
        }
        if !applied.changed {
            return false;
        }
        let new = self.leaf(&d.owner);
        self.digest.update(d.owner, old, new);
        self.catalog_events(applied.changes);
        true
    }

    fn catalog_events(&mut self, changes: Vec<crate::catalog::Change>) {
        // What this cluster offers over its bridges may have changed.
        if !changes.is_empty() && self.fed.peers.values().any(|p| p.up) {
            self.fed_dirty = true;
        }
        for c in changes {
            self.events.push_back(if c.added {
                crate::event::Event::FunctionAdded {
                    node: c.owner,
                    name: c.name,
                    version: c.version,
                }
            } else {
                crate::event::Event::FunctionRemoved {
                    node: c.owner,
                    name: c.name,
                    version: c.version,
                }
            });
        }
    }

    /// Whether this node may store one more entry of its own under this key:
    /// its entries (tombstones and routes included) obey the same caps as
    /// every other node's, or peers could not hold them all.
    pub(super) fn own_room(
        &self,
        name: &str,
        version: &semver::Version,
        scope: &str,
    ) -> Result<(), Limit> {
        let own = self
            .catalog
            .snapshot(&self.me)
            .map(|d| d.entries)
            .unwrap_or_default();
        let l = &self.cfg.limits;
        if own
            .iter()
            .any(|e| e.name == name && e.version == *version && e.scope == scope)
        {
            return Ok(());
        }
        if own.len() >= l.max_functions_per_node {
            return Err(Limit::FunctionsPerNode);
        }
        if self.catalog.total_entries() >= l.max_catalog_entries {
            return Err(Limit::CatalogEntries);
        }
        Ok(())
    }

    /// Writes one of this node's own catalog entries and broadcasts it.
    pub(super) fn write_own_catalog(
        &mut self,
        now: Time,
        name: compact_str::CompactString,
        version: semver::Version,
        scope: compact_str::CompactString,
        body: Option<crate::catalog::FnBody>,
    ) -> bool {
        if body.is_some()
            && let Err(limit) = self.own_room(&name, &version, &scope)
        {
            self.limit_hit(limit);
            return false;
        }
        let old = self.leaf(&self.me);
        let removal = body.is_none();
        let Some((delta, applied)) = self
            .catalog
            .write_own(self.me, self.epoch, name, version, scope, body)
        else {
            return false;
        };
        if removal {
            let counter = delta.entries.first().map_or(0, |e| e.counter);
            self.sync.tombstones.insert(counter, now);
        }
        let new = self.leaf(&self.me);
        self.digest.update(self.me, old, new);
        self.catalog_events(applied.changes);
        self.broadcast(Update::Catalog(delta));
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::Net;
    use crate::{Config, Event, FunctionSpec};
    use std::time::Duration;

    #[test]
    fn an_update_reaches_every_node_once_with_at_most_two_copies_per_node() {
        let n = 16;
        let mut net = Net::joined(n, |_| Config::default());
        net.run_for(Duration::from_secs(10));
        let copies = |net: &Net| -> u64 {
            (0..n)
                .map(|i| net.node(i).unwrap().metrics().updates_sent)
                .sum()
        };
        let (before, events) = (copies(&net), net.events.len());
        net.with(3, |node, now| node.register(now, FunctionSpec::new("f")))
            .unwrap()
            .unwrap();
        net.run_until_true(Duration::from_secs(1), |net| {
            (0..n).all(|i| net.node(i).unwrap().live_providers("f").count() == 1)
        })
        .expect("propagated");
        let sent = copies(&net) - before;
        assert!(sent <= 2 * n as u64, "{sent} copies for {n} nodes");
        let added = net.events[events..]
            .iter()
            .filter(|(_, e)| matches!(e, Event::FunctionAdded { name, .. } if name == "f"))
            .count();
        assert_eq!(added, n, "every node learned it exactly once");
    }
}
