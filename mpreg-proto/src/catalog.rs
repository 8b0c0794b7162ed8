//! The function catalog: every node's registered functions, replicated.
//!
//! Each node is the single writer of its own entries. An entry's key is
//! `(owner, name, version)`; it carries the owner's counter, and the higher
//! counter wins. Removals are tombstones with a counter of their own. A
//! catalog *epoch* (the owner's incarnation when its process started)
//! orders restarts: a newer epoch replaces everything the owner had.
//! Tombstones below an owner's *floor* have been collected; a complete
//! snapshot (as anti-entropy sends) lets a node that missed them drop the
//! entries they removed.
//!
//! The *funtimes* view — function → resource set → nodes — is kept as an
//! index by function name, so routing a call never scans the catalog.

use crate::error::RegisterError;
use crate::id::NodeId;
pub use crate::records::{CatalogDelta, CatalogEntry, FnBody, ResourceSet, Route};
use compact_str::CompactString;
use semver::Version;
use std::collections::{BTreeMap, BTreeSet};

/// A function an application registers on its node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FunctionSpec {
    /// Name callers use.
    pub name: CompactString,
    /// Version callers may constrain with a requirement.
    pub version: Version,
    /// Resources this node offers for it.
    pub resources: ResourceSet,
    /// Whether a call may be retried on another provider.
    pub idempotent: bool,
}

impl FunctionSpec {
    /// A function `name`, version 1.0.0, no resources, not idempotent.
    pub fn new(name: impl AsRef<str>) -> FunctionSpec {
        FunctionSpec {
            name: CompactString::new(name.as_ref()),
            version: Version::new(1, 0, 0),
            resources: ResourceSet::new(),
            idempotent: false,
        }
    }

    /// Sets the version.
    pub fn version(mut self, version: Version) -> FunctionSpec {
        self.version = version;
        self
    }

    /// Adds resource tags.
    pub fn resources<I, S>(mut self, tags: I) -> FunctionSpec
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.resources
            .extend(tags.into_iter().map(|t| CompactString::new(t.as_ref())));
        self
    }

    /// Marks the function idempotent.
    pub fn idempotent(mut self, idempotent: bool) -> FunctionSpec {
        self.idempotent = idempotent;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), RegisterError> {
        if self.name.is_empty() || self.name.len() > 255 {
            return Err(RegisterError::InvalidName(self.name.to_string()));
        }
        if self.resources.len() > 64 {
            return Err(RegisterError::InvalidResources(format!(
                "{} tags, at most 64 allowed",
                self.resources.len()
            )));
        }
        if let Some(bad) = self
            .resources
            .iter()
            .find(|r| r.is_empty() || r.len() > 255)
        {
            return Err(RegisterError::InvalidResources(format!(
                "tag {bad:?} must be 1 to 255 bytes"
            )));
        }
        Ok(())
    }
}

/// One node serving a function, as the funtimes index holds it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Provider {
    /// The serving node.
    pub node: NodeId,
    /// The version it serves.
    pub version: Version,
    /// Its resources and idempotence.
    pub body: FnBody,
}

/// Name, version and scope (destination cluster, or empty).
type FnKey = (CompactString, Version, CompactString);

#[derive(Clone, Debug)]
struct Entry {
    counter: u64,
    body: Option<FnBody>,
}

#[derive(Clone, Debug, Default)]
struct OwnerCatalog {
    epoch: u64,
    floor: u64,
    /// Highest counter seen at this epoch.
    counter: u64,
    entries: BTreeMap<FnKey, Entry>,
    /// Sum of entry hashes.
    sum: u64,
}

impl OwnerCatalog {
    fn hash(&self, owner: &NodeId) -> u64 {
        self.sum
            .wrapping_add(crate::hash::canonical(&(owner, self.epoch, self.floor)))
    }
}

/// A change to the routable catalog, reported as an event.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Change {
    pub(crate) owner: NodeId,
    pub(crate) name: CompactString,
    pub(crate) version: Version,
    pub(crate) added: bool,
}

/// What applying a delta did.
#[derive(Clone, Debug, Default)]
pub(crate) struct Applied {
    /// State changed (so the delta is worth relaying).
    pub(crate) changed: bool,
    /// Live entries added or removed.
    pub(crate) changes: Vec<Change>,
    /// Entries skipped because a limit was reached.
    pub(crate) limited: usize,
}

/// The replicated catalog and its funtimes index.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    owners: BTreeMap<NodeId, OwnerCatalog>,
    index: BTreeMap<CompactString, Vec<Provider>>,
    /// Entries in total, tombstones included.
    total: usize,
}

/// Removes an entry, keeping the owner's hash sum right.
fn take(oc: &mut OwnerCatalog, owner: &NodeId, k: &FnKey, removed: &mut Vec<(FnKey, Entry)>) {
    if let Some(e) = oc.entries.remove(k) {
        oc.sum = oc.sum.wrapping_sub(entry_hash(owner, k, &e));
        removed.push((k.clone(), e));
    }
}

/// An entry's digest leaf: owner, name, version, scope, counter, body.
fn entry_hash(owner: &NodeId, key: &FnKey, e: &Entry) -> u64 {
    crate::hash::canonical(&(owner, &key.0, &key.1, &key.2, e.counter, &e.body))
}

impl Catalog {
    /// Providers of a function, any version; liveness is not filtered here.
    pub fn providers(&self, function: &str) -> &[Provider] {
        self.index.get(function).map_or(&[], Vec::as_slice)
    }

    /// The funtimes view: every function name with its providers.
    pub fn functions(&self) -> impl Iterator<Item = (&str, &[Provider])> {
        self.index.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The funtimes view grouped: function → resource set → nodes.
    pub fn funtimes(&self) -> BTreeMap<&str, BTreeMap<&ResourceSet, Vec<NodeId>>> {
        let mut out: BTreeMap<&str, BTreeMap<&ResourceSet, Vec<NodeId>>> = BTreeMap::new();
        for (name, providers) in &self.index {
            let by_res = out.entry(name.as_str()).or_default();
            for p in providers {
                by_res.entry(&p.body.resources).or_default().push(p.node);
            }
        }
        out
    }

    /// Live entries of one node: (name, version, body).
    pub fn entries_of(&self, node: &NodeId) -> impl Iterator<Item = (&str, &Version, &FnBody)> {
        self.owners.get(node).into_iter().flat_map(|oc| {
            oc.entries
                .iter()
                .filter(|(k, _)| k.2.is_empty())
                .filter_map(|(k, e)| e.body.as_ref().map(|b| (k.0.as_str(), &k.1, b)))
        })
    }

    /// Route entries a (bridge) node owns: (name, version, body).
    pub fn routes_of(&self, node: &NodeId) -> impl Iterator<Item = (&str, &Version, &FnBody)> {
        self.owners.get(node).into_iter().flat_map(|oc| {
            oc.entries
                .iter()
                .filter(|(k, _)| !k.2.is_empty())
                .filter_map(|(k, e)| e.body.as_ref().map(|b| (k.0.as_str(), &k.1, b)))
        })
    }

    /// Live entries in total.
    pub fn len(&self) -> usize {
        self.index.values().map(Vec::len).sum()
    }

    /// Whether no function is registered anywhere.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Entries in total, tombstones included.
    pub fn total_entries(&self) -> usize {
        self.total
    }

    /// The digest contribution of one owner (0 if it has no catalog).
    pub(crate) fn owner_hash(&self, owner: &NodeId) -> u64 {
        self.owners.get(owner).map_or(0, |oc| oc.hash(owner))
    }

    /// `(epoch, highest counter)` of an owner.
    pub(crate) fn version_of(&self, owner: &NodeId) -> Option<(u64, u64)> {
        self.owners.get(owner).map(|oc| (oc.epoch, oc.counter))
    }

    /// A complete snapshot of an owner's catalog.
    pub(crate) fn snapshot(&self, owner: &NodeId) -> Option<CatalogDelta> {
        let oc = self.owners.get(owner)?;
        Some(CatalogDelta {
            owner: *owner,
            epoch: oc.epoch,
            floor: oc.floor,
            complete: true,
            entries: oc
                .entries
                .iter()
                .map(|(k, e)| CatalogEntry {
                    name: k.0.clone(),
                    version: k.1.clone(),
                    scope: k.2.clone(),
                    counter: e.counter,
                    body: e.body.clone(),
                })
                .collect(),
        })
    }

    /// The owner writes one of its own entries (`None` removes it).
    /// Returns the delta to broadcast, or `None` if nothing changed.
    pub(crate) fn write_own(
        &mut self,
        owner: NodeId,
        epoch: u64,
        name: CompactString,
        version: Version,
        scope: CompactString,
        body: Option<FnBody>,
    ) -> Option<(CatalogDelta, Applied)> {
        let oc = self.owners.get(&owner);
        let key = (name, version, scope);
        let current = oc.and_then(|oc| oc.entries.get(&key));
        if current.is_none_or(|e| e.body.is_none()) && body.is_none() {
            return None; // removing what is not there
        }
        if current.is_some_and(|e| e.body == body) {
            return None; // re-registering the same thing
        }
        let counter = oc.map_or(0, |oc| oc.counter) + 1;
        let delta = CatalogDelta {
            owner,
            epoch,
            floor: oc.map_or(0, |oc| oc.floor),
            complete: false,
            entries: vec![CatalogEntry {
                name: key.0,
                version: key.1,
                scope: key.2,
                counter,
                body,
            }],
        };
        let applied = self.apply(&delta, usize::MAX, usize::MAX);
        Some((delta, applied))
    }

    /// The owner collects its tombstones below `floor`.
    pub(crate) fn collect_own(&mut self, owner: NodeId, floor: u64) -> bool {
        let Some(oc) = self.owners.get(&owner) else {
            return false;
        };
        if floor <= oc.floor {
            return false;
        }
        let mut snapshot = self
            .snapshot(&owner)
            .unwrap_or_else(|| unreachable!("owner present"));
        snapshot.floor = floor;
        snapshot
            .entries
            .retain(|e| e.body.is_some() || e.counter >= floor);
        self.apply(&snapshot, usize::MAX, usize::MAX).changed
    }

    /// Merges a delta. Entries beyond `per_node` for its owner or `total`
    /// overall are skipped and counted in `limited`.
    pub(crate) fn apply(&mut self, d: &CatalogDelta, per_node: usize, total: usize) -> Applied {
        let mut out = Applied::default();
        let owner = d.owner;
        if !self.owners.contains_key(&owner) {
            // Even an empty catalog is state: it records the owner's epoch.
            out.changed = true;
        }
        let oc = self.owners.entry(owner).or_insert_with(|| OwnerCatalog {
            epoch: d.epoch,
            ..OwnerCatalog::default()
        });
        if d.epoch < oc.epoch {
            return out;
        }
        // Entries leaving the store (their hash already subtracted) and keys
        // that gained a live or tombstone entry.
        let mut removed: Vec<(FnKey, Entry)> = Vec::new();
        let mut added: Vec<FnKey> = Vec::new();
        if d.epoch > oc.epoch {
            // A restart: everything of the old epoch goes.
            let keys: Vec<FnKey> = oc.entries.keys().cloned().collect();
            for k in &keys {
                take(oc, &owner, k, &mut removed);
            }
            *oc = OwnerCatalog {
                epoch: d.epoch,
                ..OwnerCatalog::default()
            };
            out.changed = true;
        }
        // A complete snapshot at least as collected as ours is authoritative
        // below the floor too; anything else below the floor may be stale.
        // Only complete snapshots move the floor: a node's floor then
        // vouches that it holds every live entry below it.
        let authoritative = d.complete && d.floor >= oc.floor;
        if authoritative && d.floor > oc.floor {
            oc.floor = d.floor;
            out.changed = true;
            let floor = oc.floor;
            let gone: Vec<FnKey> = oc
                .entries
                .iter()
                .filter(|(_, e)| e.body.is_none() && e.counter < floor)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &gone {
                take(oc, &owner, k, &mut removed);
            }
        }
        if d.complete {
            let listed: BTreeSet<(&str, &Version, &str)> = d
                .entries
                .iter()
                .map(|e| (e.name.as_str(), &e.version, e.scope.as_str()))
                .collect();
            let gone: Vec<FnKey> = oc
                .entries
                .iter()
                .filter(|(k, e)| {
                    e.counter < d.floor && !listed.contains(&(k.0.as_str(), &k.1, k.2.as_str()))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in &gone {
                take(oc, &owner, k, &mut removed);
                out.changed = true;
            }
        }
        for e in &d.entries {
            oc.counter = oc.counter.max(e.counter);
            if e.counter < oc.floor && !(authoritative && e.body.is_some()) {
                continue;
            }
            // An entry's scope is its route's destination: a body that says
            // otherwise is malformed.
            if e.body.as_ref().is_some_and(|b| b.scope() != e.scope) {
                continue;
            }
            let key = (e.name.clone(), e.version.clone(), e.scope.clone());
            let new = Entry {
                counter: e.counter,
                body: e.body.clone(),
            };
            match oc.entries.get(&key) {
                Some(cur) => {
                    let newer = new.counter > cur.counter
                        || (new.counter == cur.counter
                            && new.body != cur.body
                            && entry_hash(&owner, &key, &new) < entry_hash(&owner, &key, cur));
                    if !newer {
                        continue;
                    }
                    take(oc, &owner, &key, &mut removed);
                }
                None => {
                    let stored = self.total + added.len() - removed.len();
                    if oc.entries.len() >= per_node || stored >= total {
                        out.limited += 1;
                        continue;
                    }
                }
            }
            oc.sum = oc.sum.wrapping_add(entry_hash(&owner, &key, &new));
            oc.entries.insert(key.clone(), new);
            added.push(key);
            out.changed = true;
        }
        if d.complete {
            oc.counter = oc.counter.max(d.floor.saturating_sub(1));
        }
        self.total = self.total + added.len() - removed.len();
        // Settle the index; a key removed and re-added is one net change.
        let mut changes: BTreeMap<FnKey, bool> = BTreeMap::new();
        for (k, e) in removed {
            if e.body.is_some() && self.unindex(&owner, &k) {
                changes.insert(k, false);
            }
        }
        for k in added {
            let body = self
                .owners
                .get(&owner)
                .and_then(|oc| oc.entries.get(&k))
                .and_then(|e| e.body.clone());
            if let Some(body) = body {
                self.index.entry(k.0.clone()).or_default().push(Provider {
                    node: owner,
                    version: k.1.clone(),
                    body,
                });
                if changes.remove(&k).is_none() {
                    changes.insert(k, true);
                }
            }
        }
        out.changes = changes
            .into_iter()
            .map(|(k, added)| Change {
                owner,
                name: k.0,
                version: k.1,
                added,
            })
            .collect();
        out
    }

    fn unindex(&mut self, owner: &NodeId, key: &FnKey) -> bool {
        let Some(v) = self.index.get_mut(&key.0) else {
            return false;
        };
        let before = v.len();
        v.retain(|p| !(p.node == *owner && p.version == key.1 && p.body.scope() == key.2));
        let removed = v.len() != before;
        if v.is_empty() {
            self.index.remove(&key.0);
        }
        removed
    }

    /// Forgets an owner entirely (its member record was collected).
    pub(crate) fn remove_owner(&mut self, owner: &NodeId) -> Vec<Change> {
        let Some(oc) = self.owners.remove(owner) else {
            return Vec::new();
        };
        self.total -= oc.entries.len();
        let mut changes = Vec::new();
        for (k, e) in oc.entries {
            if e.body.is_some() && self.unindex(owner, &k) {
                changes.push(Change {
                    owner: *owner,
                    name: k.0,
                    version: k.1,
                    added: false,
                });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body(res: &[&str], idem: bool) -> FnBody {
        FnBody {
            resources: res.iter().map(|r| CompactString::new(r)).collect(),
            idempotent: idem,
            route: None,
        }
    }

    fn owner(n: u128) -> NodeId {
        NodeId::from_u128(n)
    }

    #[test]
    fn register_unregister_and_index() {
        let mut c = Catalog::default();
        let (d, a) = c
            .write_own(
                owner(1),
                7,
                "embed".into(),
                Version::new(1, 0, 0),
                "".into(),
                Some(body(&["gpu"], false)),
            )
            .unwrap();
        assert!(a.changed);
        assert_eq!(a.changes.len(), 1);
        assert_eq!(d.entries[0].counter, 1);
        assert_eq!(c.providers("embed").len(), 1);
        assert!(
            c.write_own(
                owner(1),
                7,
                "embed".into(),
                Version::new(1, 0, 0),
                "".into(),
                Some(body(&["gpu"], false))
            )
            .is_none()
        );
        let (d2, a2) = c
            .write_own(
                owner(1),
                7,
                "embed".into(),
                Version::new(1, 0, 0),
                "".into(),
                None,
            )
            .unwrap();
        assert_eq!(d2.entries[0].counter, 2);
        assert!(!a2.changes[0].added);
        assert!(c.providers("embed").is_empty());
        assert_eq!(c.total_entries(), 1, "the tombstone stays");
    }

    #[test]
    fn newer_epoch_replaces_everything() {
        let mut c = Catalog::default();
        c.write_own(
            owner(1),
            1,
            "a".into(),
            Version::new(1, 0, 0),
            "".into(),
            Some(body(&[], false)),
        );
        c.write_own(
            owner(1),
            1,
            "b".into(),
            Version::new(1, 0, 0),
            "".into(),
            Some(body(&[], false)),
        );
        let d = CatalogDelta {
            owner: owner(1),
            epoch: 2,
            floor: 0,
            complete: false,
            entries: vec![CatalogEntry {
                name: "c".into(),
                version: Version::new(1, 0, 0),
                scope: "".into(),
                counter: 1,
                body: Some(body(&[], true)),
            }],
        };
        let a = c.apply(&d, 100, 100);
        assert_eq!(a.changes.iter().filter(|c| !c.added).count(), 2);
        assert_eq!(c.len(), 1);
        assert!(c.providers("a").is_empty());
        // The old epoch no longer applies.
        let old = CatalogDelta {
            epoch: 1,
            ..d.clone()
        };
        assert!(!c.apply(&old, 100, 100).changed);
    }

    #[test]
    fn complete_snapshot_drops_entries_removed_below_the_floor() {
        let mut behind = Catalog::default();
        behind.write_own(
            owner(1),
            1,
            "a".into(),
            Version::new(1, 0, 0),
            "".into(),
            Some(body(&[], false)),
        );
        // The owner removed `a` (counter 2), then collected the tombstone.
        let snapshot = CatalogDelta {
            owner: owner(1),
            epoch: 1,
            floor: 3,
            complete: true,
            entries: vec![],
        };
        behind.apply(&snapshot, 100, 100);
        assert!(behind.is_empty());
        assert_eq!(behind.total_entries(), 0);
    }

    #[test]
    fn limits_are_enforced_and_reported() {
        let mut c = Catalog::default();
        let d = CatalogDelta {
            owner: owner(1),
            epoch: 1,
            floor: 0,
            complete: false,
            entries: (0..5)
                .map(|i| CatalogEntry {
                    name: format!("f{i}").into(),
                    version: Version::new(1, 0, 0),
                    scope: "".into(),
                    counter: i + 1,
                    body: Some(body(&[], false)),
                })
                .collect(),
        };
        let a = c.apply(&d, 3, 100);
        assert_eq!(a.limited, 2);
        assert_eq!(c.len(), 3);
        assert_eq!(c.total_entries(), 3);
    }

    /// The observable state: every stored entry and every owner hash.
    type OwnerState = (NodeId, u64, u64, Vec<(FnKey, u64, Option<FnBody>)>);

    fn state(c: &Catalog) -> Vec<OwnerState> {
        let mut funtimes: Vec<_> = c
            .index
            .iter()
            .flat_map(|(n, ps)| {
                ps.iter()
                    .map(move |p| (n.clone(), p.node, p.version.clone()))
            })
            .collect();
        funtimes.sort();
        let live: Vec<_> = c
            .owners
            .iter()
            .flat_map(|(o, oc)| {
                oc.entries
                    .iter()
                    .filter(|(_, e)| e.body.is_some())
                    .map(move |(k, _)| (k.0.clone(), *o, k.1.clone()))
            })
            .collect();
        let mut live_sorted = live.clone();
        live_sorted.sort();
        assert_eq!(funtimes, live_sorted, "index out of sync with entries");
        c.owners
            .iter()
            .map(|(o, oc)| {
                (
                    *o,
                    oc.epoch,
                    oc.hash(o),
                    oc.entries
                        .iter()
                        .map(|(k, e)| (k.clone(), e.counter, e.body.clone()))
                        .collect(),
                )
            })
            .collect()
    }

    #[derive(Clone, Debug)]
    enum Op {
        Register(u8, u8),
        Unregister(u8),
        Collect,
        Snapshot,
        Restart,
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4, 0u8..3).prop_map(|(n, b)| Op::Register(n, b)),
            3 => (0u8..4).prop_map(Op::Unregister),
            1 => Just(Op::Collect),
            2 => Just(Op::Snapshot),
            1 => Just(Op::Restart),
        ]
    }

    /// Plays an owner's history and returns every delta it could have sent
    /// (broadcast deltas and anti-entropy snapshots), plus its final state.
    fn history(ops: &[Op]) -> (Vec<CatalogDelta>, Catalog) {
        let me = owner(1);
        let mut own = Catalog::default();
        let mut epoch = 1;
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Register(n, b) => {
                    let res = [["gpu"], ["cpu"], ["tpu"]][*b as usize];
                    let body = Some(body(&res, *b == 0));
                    out.extend(
                        own.write_own(
                            me,
                            epoch,
                            format!("f{n}").into(),
                            Version::new(1, 0, 0),
                            "".into(),
                            body,
                        )
                        .map(|x| x.0),
                    );
                }
                Op::Unregister(n) => {
                    out.extend(
                        own.write_own(
                            me,
                            epoch,
                            format!("f{n}").into(),
                            Version::new(1, 0, 0),
                            "".into(),
                            None,
                        )
                        .map(|x| x.0),
                    );
                }
                Op::Collect => {
                    let floor = own.version_of(&me).map_or(0, |v| v.1) + 1;
                    own.collect_own(me, floor);
                }
                Op::Snapshot => out.extend(own.snapshot(&me)),
                Op::Restart => {
                    epoch += 1;
                    own.apply(
                        &CatalogDelta {
                            owner: me,
                            epoch,
                            floor: 0,
                            complete: true,
                            entries: vec![],
                        },
                        1000,
                        1000,
                    );
                }
            }
        }
        out.extend(own.snapshot(&me));
        (out, own)
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_and_idempotent(
            ops in proptest::collection::vec(arb_op(), 0..24),
            seed in any::<u64>(),
        ) {
            let (mut deltas, truth) = history(&ops);
            let mut a = Catalog::default();
            for d in &deltas { a.apply(d, 1000, 100_000); }
            // In order, ending with the final snapshot: the owner's state.
            prop_assert_eq!(state(&a), state(&truth));
            let mut rng = seed;
            for i in (1..deltas.len()).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                deltas.swap(i, (rng >> 33) as usize % (i + 1));
            }
            // Any order, every delta twice, in two halves merged separately
            // then together (associativity): the same state.
            let mid = deltas.len() / 2;
            let mut b1 = Catalog::default();
            let mut b2 = Catalog::default();
            for d in deltas[..mid].iter().chain(deltas[..mid].iter()) { b1.apply(d, 1000, 100_000); }
            for d in deltas[mid..].iter().chain(deltas[mid..].iter()) { b2.apply(d, 1000, 100_000); }
            for o in b2.owners.keys().copied().collect::<Vec<_>>() {
                if let Some(s) = b2.snapshot(&o) { b1.apply(&s, 1000, 100_000); }
            }
            prop_assert_eq!(state(&b1), state(&truth));
            prop_assert_eq!(b1.total_entries(), truth.total_entries());
        }
    }
}
