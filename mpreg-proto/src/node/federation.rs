//! Federation: bridges between clusters.
//!
//! Membership never crosses a cluster. A *bridge* is a session between two
//! nodes of different clusters, opened with `BridgeHello` when both sides'
//! policies allow it. Over it flow only:
//!
//! * keepalives (`Ping`/`Ack`), which measure the bridge's RTT; a bridge
//!   silent for [`BRIDGE_TIMEOUT_PERIODS`] probe periods is down, and the
//!   routes learned over it are withdrawn (and re-learned when it is back);
//! * cluster summaries: for each cluster reachable through the sender, the
//!   path of cluster ids (a path vector — a route through the receiver's own
//!   cluster is dropped, so routes are loop-free) and, per function, the
//!   maximal resource sets that *single* nodes there serve, never a union
//!   across nodes;
//! * calls (`FedCall`) and their outcomes (`FedResponse`).
//!
//! A bridge node turns what it learns into *route entries* of its own in
//! its cluster's catalog: it is their single writer, so the usual broadcast
//! and anti-entropy spread them and every member can route to another
//! cluster through it. A cluster's state grows with the number of clusters
//! it can reach, not with their nodes.

use super::Node;
use crate::catalog::{FnBody, ResourceSet, Route};
use crate::config::BridgeConfig;
use crate::event::TrafficClass;
use crate::id::{Addr, NodeId};
use crate::rtt::Rtt;
use crate::time::Time;
use crate::timers::Timer;
use crate::wire::{BridgeHello, ClusterSummary, FnAd, Message, RouteAd};
use compact_str::CompactString;
use semver::Version;
use std::collections::BTreeMap;

/// Probe periods without a word from a bridge peer before it is down.
pub(crate) const BRIDGE_TIMEOUT_PERIODS: u32 = 3;
/// Resource sets kept per function in a summary.
const MAX_SETS: usize = 8;

#[derive(Debug, Default)]
pub(super) struct Federation {
    /// Bridge peers by address.
    pub(super) peers: BTreeMap<Addr, BridgePeer>,
    /// Bridges this node opens (config and [`Node::bridge`]).
    pub(super) configured: Vec<BridgeConfig>,
    /// Version of the summaries this node exports.
    version: u64,
    /// Hash of what was last exported to each peer.
    exported: BTreeMap<Addr, u64>,
    /// The next hop last chosen per destination cluster (hysteresis).
    last_hop: BTreeMap<CompactString, Addr>,
    seq: u32,
}

#[derive(Debug)]
pub(super) struct BridgePeer {
    pub(super) cluster: CompactString,
    pub(super) node: NodeId,
    pub(super) up: bool,
    pub(super) last_heard: Time,
    pub(super) rtt: Rtt,
    /// A keepalive in flight: its sequence number and when it left.
    ping: Option<(u32, Time)>,
    /// The latest summary received.
    summary: Option<ClusterSummary>,
}

impl Node {
    /// Opens a bridge to another cluster through seed addresses in it.
    /// Requires a policy that allows that cluster.
    pub fn bridge(&mut self, now: Time, bridge: BridgeConfig) -> Result<(), crate::ConfigError> {
        if self.status != super::Status::Active {
            return Ok(()); // leaving: no new bridges
        }
        let f = &self.cfg.federation;
        if bridge.cluster == self.cfg.cluster_id || !f.policy.allows(&bridge.cluster) {
            return Err(crate::ConfigError::Range {
                key: "federation.bridges.cluster",
                value: format!("{:?}", bridge.cluster),
                why: "must be another cluster the policy allows",
            });
        }
        self.fed.configured.push(bridge);
        self.dial_bridges(now);
        self.timers
            .set_if_earlier(Timer::Bridge, now + self.cfg.membership.probe_period);
        self.flush(now);
        Ok(())
    }

    /// The clusters this node has an open bridge to.
    pub fn bridges(&self) -> Vec<(Addr, String, bool)> {
        self.fed
            .peers
            .iter()
            .map(|(a, p)| (a.clone(), p.cluster.to_string(), p.up))
            .collect()
    }

    fn bridge_hello(&self) -> Message {
        Message::BridgeHello(BridgeHello {
            node: self.me,
            addr: self.addr.clone(),
            cluster_id: self.cfg.cluster_id.as_str().into(),
        })
    }

    /// Sends a `BridgeHello` to every configured seed not bridged already.
    pub(super) fn dial_bridges(&mut self, now: Time) {
        let seeds: Vec<Addr> = self
            .fed
            .configured
            .iter()
            .flat_map(|b| b.seeds.iter().cloned())
            .filter(|a| self.fed.peers.get(a).is_none_or(|p| !p.up))
            .collect();
        for a in seeds {
            let hello = self.bridge_hello();
            self.send_bridge(now, &a, &hello);
        }
    }

    pub(super) fn on_bridge_hello(&mut self, now: Time, from: &Addr, h: BridgeHello) {
        let cluster = h.cluster_id.clone();
        if cluster == self.cfg.cluster_id.as_str() || !self.cfg.federation.policy.allows(&cluster) {
            let why =
                Message::BridgeReject("this cluster's policy does not allow the bridge".into());
            self.send_bridge(now, from, &why);
            return;
        }
        self.set_conn_node(from, h.node, true);
        let fresh = self.fed.peers.get(from).is_none_or(|p| !p.up);
        let peer = self
            .fed
            .peers
            .entry(from.clone())
            .or_insert_with(|| BridgePeer {
                cluster: cluster.clone(),
                node: h.node,
                up: false,
                last_heard: now,
                rtt: Rtt::default(),
                ping: None,
                summary: None,
            });
        peer.cluster = cluster;
        peer.node = h.node;
        peer.up = true;
        peer.last_heard = now;
        if fresh {
            // Answer the hello once, keep the connection, and tell it what
            // can be reached through this cluster.
            let hello = self.bridge_hello();
            self.send_bridge(now, from, &hello);
            self.fed.exported.remove(from);
            self.export_summaries(now);
        }
        self.timers
            .set_if_earlier(Timer::Bridge, now + self.cfg.membership.probe_period);
    }

    pub(super) fn on_bridge_reject(&mut self, now: Time, from: &Addr) {
        self.bridge_down(now, from);
    }

    /// Any frame from a bridge peer shows it is alive.
    pub(super) fn heard_from_bridge(&mut self, now: Time, from: &Addr, ack: Option<u32>) {
        if let Some(p) = self.fed.peers.get_mut(from) {
            p.last_heard = now;
            if let (Some(seq), Some((s, sent))) = (ack, p.ping)
                && seq == s
            {
                p.rtt.sample(now.saturating_since(sent));
                p.ping = None;
            }
        }
    }

    /// Keepalives, failure detection of bridges, re-dials and summary
    /// refresh; once per probe period.
    pub(super) fn on_bridge_timer(&mut self, now: Time) {
        let period = self.cfg.membership.probe_period;
        let down_after = period * BRIDGE_TIMEOUT_PERIODS;
        let mut down = Vec::new();
        let mut pings = Vec::new();
        for (a, p) in self.fed.peers.iter_mut().filter(|(_, p)| p.up) {
            if now >= p.last_heard + down_after {
                down.push(a.clone());
            } else if now >= p.last_heard + period / 2 && p.ping.is_none() {
                self.fed.seq = self.fed.seq.wrapping_add(1);
                p.ping = Some((self.fed.seq, now));
                pings.push((a.clone(), self.fed.seq));
            } else if p.ping.is_some_and(|(_, sent)| now >= sent + period) {
                p.ping = None;
            }
        }
        for (a, seq) in pings {
            self.send(now, &a, &Message::Ping(seq), TrafficClass::Control);
        }
        for a in down {
            self.bridge_down(now, &a);
        }
        self.dial_bridges(now);
        self.export_summaries(now);
        if !self.fed.peers.is_empty() || !self.fed.configured.is_empty() {
            self.timers.set(Timer::Bridge, now + period / 2);
        }
    }

    /// A bridge failed (or refused): its routes are withdrawn, calls over it
    /// re-routed.
    pub(super) fn bridge_down(&mut self, now: Time, addr: &Addr) {
        let Some(p) = self.fed.peers.get_mut(addr) else {
            return;
        };
        let was_up = p.up;
        p.up = false;
        p.summary = None;
        p.ping = None;
        self.fed.exported.remove(addr);
        if was_up {
            self.sync_routes(now);
            self.bridge_gone(now, addr);
        }
    }

    pub(super) fn on_summary(&mut self, now: Time, from: &Addr, s: ClusterSummary) {
        let Some(p) = self.fed.peers.get_mut(from).filter(|p| p.up) else {
            return;
        };
        if p.summary
            .as_ref()
            .is_some_and(|old| old.version >= s.version)
        {
            return;
        }
        p.summary = Some(s);
        self.sync_routes(now);
    }

    /// Makes this node's route entries match what its bridges offer: for
    /// each (function, version, destination) the shortest loop-free path.
    pub(super) fn sync_routes(&mut self, now: Time) {
        let own = self.cfg.cluster_id.as_str();
        let policy = &self.cfg.federation.policy;
        let mut want: BTreeMap<(CompactString, Version, CompactString), FnBody> = BTreeMap::new();
        for p in self.fed.peers.values().filter(|p| p.up) {
            let Some(s) = &p.summary else { continue };
            for ad in &s.routes {
                let Some(dest) = ad.path.last() else { continue };
                if ad.path.iter().any(|c| c == own) || ad.path.first() != Some(&p.cluster) {
                    continue; // a loop, or not through this peer's cluster
                }
                for f in ad.functions.iter().filter(|f| policy.imports(&f.name)) {
                    let key = (f.name.clone(), f.version.clone(), dest.clone());
                    let better = want.get(&key).is_none_or(|cur| {
                        cur.route
                            .as_ref()
                            .is_some_and(|r| ad.path.len() < r.path.len())
                    });
                    if better {
                        want.insert(
                            key,
                            FnBody {
                                resources: ResourceSet::new(),
                                idempotent: f.idempotent,
                                route: Some(Route {
                                    cluster: dest.clone(),
                                    path: ad.path.clone(),
                                    sets: f.sets.clone(),
                                }),
                            },
                        );
                    }
                }
            }
        }
        let have: BTreeMap<(CompactString, Version, CompactString), FnBody> = self
            .catalog
            .routes_of(&self.me)
            .map(|(n, v, b)| ((n.into(), v.clone(), b.scope().into()), b.clone()))
            .collect();
        for (key, body) in &want {
            if have.get(key) != Some(body) {
                self.write_own_catalog(
                    now,
                    key.0.clone(),
                    key.1.clone(),
                    key.2.clone(),
                    Some(body.clone()),
                );
            }
        }
        for key in have.keys().filter(|k| !want.contains_key(*k)) {
            self.write_own_catalog(now, key.0.clone(), key.1.clone(), key.2.clone(), None);
        }
    }

    /// What this cluster offers to a peer in `peer_cluster`: its own
    /// functions, and the routes its bridge nodes hold that do not lead
    /// back through the peer.
    fn summary_for(&self, peer_cluster: &str) -> Vec<RouteAd> {
        let own: CompactString = self.cfg.cluster_id.as_str().into();
        let policy = &self.cfg.federation.policy;
        // destination → (path, (name, version) → (sets, idempotent))
        type Fns = BTreeMap<(CompactString, Version), (Vec<ResourceSet>, bool)>;
        let mut by_dest: BTreeMap<CompactString, (Vec<CompactString>, Fns)> = BTreeMap::new();
        for (name, providers) in self.catalog.functions() {
            if !policy.exports(name) {
                continue;
            }
            for p in providers.iter().filter(|p| self.is_routable(&p.node)) {
                let (path, sets): (Vec<CompactString>, Vec<ResourceSet>) = match &p.body.route {
                    None => (vec![own.clone()], vec![p.body.resources.clone()]),
                    Some(r)
                        if r.path.iter().any(|c| c == peer_cluster)
                            || r.cluster == peer_cluster =>
                    {
                        continue;
                    }
                    Some(r) => {
                        let mut path = vec![own.clone()];
                        path.extend(r.path.iter().cloned());
                        (path, r.sets.clone())
                    }
                };
                let dest = path.last().cloned().unwrap_or_default();
                let entry = by_dest
                    .entry(dest)
                    .or_insert_with(|| (path.clone(), Fns::new()));
                if path.len() < entry.0.len() {
                    *entry = (path.clone(), Fns::new());
                } else if path.len() > entry.0.len() {
                    continue;
                }
                let f = entry
                    .1
                    .entry((name.into(), p.version.clone()))
                    .or_insert_with(|| (Vec::new(), true));
                f.0.extend(sets);
                f.1 &= p.body.idempotent;
            }
        }
        by_dest
            .into_values()
            .map(|(path, fns)| RouteAd {
                path,
                functions: fns
                    .into_iter()
                    .map(|((name, version), (sets, idempotent))| FnAd {
                        name,
                        version,
                        sets: maximal(sets),
                        idempotent,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Sends each up peer its summary if it changed since the last export.
    pub(super) fn export_summaries(&mut self, now: Time) {
        let peers: Vec<(Addr, CompactString)> = self
            .fed
            .peers
            .iter()
            .filter(|(_, p)| p.up)
            .map(|(a, p)| (a.clone(), p.cluster.clone()))
            .collect();
        for (addr, cluster) in peers {
            let routes = self.summary_for(&cluster);
            let hash = crate::hash::canonical(&routes);
            if self.fed.exported.get(&addr) == Some(&hash) {
                continue;
            }
            self.fed.exported.insert(addr.clone(), hash);
            self.fed.version += 1;
            let msg = Message::Summary(ClusterSummary {
                version: self.fed.version,
                routes,
            });
            self.send(now, &addr, &msg, TrafficClass::Broadcast);
        }
    }

    /// The best bridge peer towards `dest` for a function (fewest cluster
    /// hops, then lowest RTT), skipping `exclude`. The previous choice for
    /// `dest` is kept unless another is clearly better (fewer hops, or a
    /// third less RTT), so near-ties do not flap.
    pub(super) fn next_hop(
        &mut self,
        dest: &str,
        function: &str,
        locs: &ResourceSet,
        exclude: &[Addr],
    ) -> Option<(Addr, NodeId)> {
        let own = self.cfg.cluster_id.as_str();
        let far = std::time::Duration::from_secs(3600);
        let options: Vec<(usize, std::time::Duration, Addr, NodeId)> = self
            .fed
            .peers
            .iter()
            .filter(|(a, p)| p.up && !exclude.contains(a))
            .filter_map(|(a, p)| {
                let s = p.summary.as_ref()?;
                let hops = s
                    .routes
                    .iter()
                    .filter(|ad| {
                        ad.path.last().is_some_and(|d| d == dest)
                            && !ad.path.iter().any(|c| c == own)
                    })
                    .filter(|ad| {
                        ad.functions
                            .iter()
                            .any(|f| f.name == function && f.sets.iter().any(|s| locs.is_subset(s)))
                    })
                    .map(|ad| ad.path.len())
                    .min()?;
                Some((hops, p.rtt.estimate().unwrap_or(far), a.clone(), p.node))
            })
            .collect();
        let best = options
            .iter()
            .min_by(|x, y| (x.0, x.1).cmp(&(y.0, y.1)))?
            .clone();
        let keep = self
            .fed
            .last_hop
            .get(dest)
            .and_then(|prev| options.iter().find(|o| o.2 == *prev))
            .filter(|prev| {
                !(best.0 < prev.0 || (best.0 == prev.0 && crate::time::scale(best.1, 1.5) < prev.1))
            })
            .cloned();
        let pick = keep.unwrap_or(best);
        self.fed.last_hop.insert(dest.into(), pick.2.clone());
        Some((pick.2, pick.3))
    }

    /// Whether `addr` is an up bridge peer, and its cluster's tag.
    pub(super) fn bridge_cluster(&self, addr: &Addr) -> Option<&str> {
        self.fed
            .peers
            .get(addr)
            .filter(|p| p.up)
            .map(|p| p.cluster.as_str())
    }
}

/// Drops every set contained in another; keeps at most [`MAX_SETS`] of
/// the largest.
fn maximal(mut sets: Vec<ResourceSet>) -> Vec<ResourceSet> {
    sets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    sets.dedup();
    let mut out: Vec<ResourceSet> = Vec::new();
    for s in sets {
        if !out.iter().any(|o| s.is_subset(o)) {
            out.push(s);
        }
    }
    out.truncate(MAX_SETS);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(tags: &[&str]) -> ResourceSet {
        tags.iter().map(|t| CompactString::new(t)).collect()
    }

    #[test]
    fn maximal_sets_never_union_across_nodes() {
        let m = maximal(vec![
            set(&["gpu"]),
            set(&["model-a"]),
            set(&["gpu", "cpu"]),
            set(&[]),
        ]);
        assert_eq!(m, vec![set(&["gpu", "cpu"]), set(&["model-a"])]);
        assert!(!m.iter().any(|s| set(&["gpu", "model-a"]).is_subset(s)));
    }
}
