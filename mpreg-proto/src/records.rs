//! The records every other module shares — what a member, a catalog entry
//! and a call outcome are — with no dependency on the codec, the tables or
//! the node: the leaf of the crate's module graph. `wire` encodes them,
//! `members` and `catalog` store them, `node` acts on them.

use crate::id::{Addr, Incarnation, NodeId};
use compact_str::CompactString;
use semver::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// A member's liveness, in merge order.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum MemberState {
    /// Answers probes.
    Alive,
    /// Missed direct and indirect probes; may refute.
    Suspect,
    /// Declared failed; kept for the reconnect window and re-probed.
    Dead,
    /// Left gracefully; final for this incarnation.
    Left,
}

impl MemberState {
    /// Alive or Suspect: counted in the cluster size, routable.
    pub fn is_live(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }
}

/// A set of resource tags, such as `{"gpu", "model-a"}`.
pub type ResourceSet = BTreeSet<CompactString>;

/// What a catalog entry says about a function beyond its name and version.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct FnBody {
    /// Resources the serving node has.
    pub resources: ResourceSet,
    /// Safe to run twice: retried on another provider if one dies mid-call.
    pub idempotent: bool,
    /// Set on a route entry: the function is served in another cluster,
    /// reached through the owning bridge node.
    pub route: Option<Route>,
}

impl FnBody {
    /// The scope an entry is keyed by: its destination cluster, or empty
    /// for a function served in this cluster.
    pub fn scope(&self) -> &str {
        self.route.as_ref().map_or("", |r| r.cluster.as_str())
    }

    /// Whether a node serving this entry has every resource in `locs`
    /// (for a route: some single node of the destination cluster).
    pub fn satisfies(&self, locs: &ResourceSet) -> bool {
        match &self.route {
            None => locs.is_subset(&self.resources),
            Some(r) => r.sets.iter().any(|s| locs.is_subset(s)),
        }
    }
}

/// How a function served in another cluster is reached: the clusters on
/// the way (the next one first, the destination last) and the maximal
/// resource sets single nodes there serve it with.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Route {
    /// The destination cluster.
    pub cluster: CompactString,
    /// Clusters from the next to the destination (path vector).
    pub path: Vec<CompactString>,
    /// Maximal resource sets, each served by one node there (never a union
    /// across nodes).
    pub sets: Vec<ResourceSet>,
}

/// A member's replicated record. Ordered by `(incarnation, state)`; see
/// [`MemberState`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct MemberRecord {
    /// Whose record.
    pub id: NodeId,
    /// Where it listens.
    pub addr: Addr,
    /// Its incarnation.
    pub incarnation: Incarnation,
    /// Alive, Suspect, Dead or Left.
    pub state: MemberState,
    /// For a Suspect: the distinct members that accused it (bounded).
    pub accusers: Vec<NodeId>,
    /// Its human-readable name.
    pub name: CompactString,
}

/// One catalog entry of an owner, or its tombstone.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct CatalogEntry {
    /// Function name.
    pub name: CompactString,
    /// Function version.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arb_version))]
    pub version: Version,
    /// Empty for a function served in the owner's cluster; the destination
    /// cluster for a route entry.
    pub scope: CompactString,
    /// The owner's counter when it wrote this entry.
    pub counter: u64,
    /// `None` for a tombstone.
    pub body: Option<FnBody>,
}

/// Changes to one owner's catalog. `complete` marks a full snapshot: any
/// entry below `floor` that it does not list has been removed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct CatalogDelta {
    /// The node whose functions these are (the only writer).
    pub owner: NodeId,
    /// The owner's catalog epoch (its incarnation when it started).
    pub epoch: u64,
    /// Tombstones below this counter have been collected.
    pub floor: u64,
    /// Whether this lists every entry at or above `floor` and every live one.
    pub complete: bool,
    /// The entries.
    pub entries: Vec<CatalogEntry>,
}

/// Why a call produced no result. One set for every path: returned by
/// [`Node::call`](crate::Node::call) when the call cannot start, delivered
/// in [`Event::CallDone`](crate::Event::CallDone) otherwise, and carried on
/// the wire to callers on other nodes.
#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum CallError {
    /// No node has registered a function of this name (and version).
    #[error("no function {0:?} is registered")]
    NotFound(CompactString),
    /// The function exists, but no live node serving it has every resource
    /// in `locs`.
    #[error("no live provider of {function:?} has resources {locs:?}")]
    NoProvider {
        /// The function.
        function: CompactString,
        /// The resources asked for.
        locs: Vec<CompactString>,
    },
    /// The time budget ran out.
    #[error("the call timed out")]
    Timeout,
    /// No provider could be reached.
    #[error("no provider could be reached")]
    Unreachable,
    /// The provider is at its concurrency cap; the handler did not run.
    #[error("the provider is overloaded")]
    Overloaded,
    /// The provider failed with the call in flight. The handler may or may
    /// not have run; the function is not idempotent, so it was not retried.
    #[error("the provider failed with the call in flight; it may or may not have run")]
    OutcomeUnknown,
    /// The call was forwarded more often than its hop budget allows.
    #[error("the call's hop budget is exhausted")]
    HopBudgetExhausted,
    /// No bridge leads to the target cluster (or none serves the function).
    #[error("no route to cluster {0:?}")]
    NoRoute(CompactString),
    /// The call came back to a cluster it had already crossed.
    #[error("the call looped back to a cluster it crossed")]
    Loop,
    /// The handler ran and returned an error.
    #[error("the handler failed: {0}")]
    HandlerFailed(String),
    /// Refused by policy or a limit (too large, too many pending, leaving).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The caller cancelled the call.
    #[error("the call was cancelled")]
    Cancelled,
    /// The request reached a node other than the member it was sent to (a
    /// process restarted at that address); the handler did not run. The
    /// caller's node handles this itself: applications never see it.
    #[error("the call reached a node other than the one it was sent to")]
    NotHere,
}

/// `Arbitrary` for a version (semver has none).
#[cfg(feature = "arbitrary")]
pub(crate) fn arb_version(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Version> {
    let mut v = Version::new(u.arbitrary()?, u.arbitrary()?, u.arbitrary()?);
    if u.ratio(1, 8)? {
        v.pre = semver::Prerelease::new(u.choose(&["alpha", "rc.1", "0.3.7"])?).unwrap_or_default();
    }
    Ok(v)
}
