//! The replicated member table and its merge rule.
//!
//! A record is ordered by `(incarnation, state)` with
//! `Alive < Suspect < Dead < Left`; the higher wins. Two Suspect records of
//! the same incarnation merge their accuser sets (the smallest `cap` ids of
//! the union), so confirmations from distinct members spread like any other
//! state. Equal versions that differ otherwise (which only a faulty node
//! produces) are resolved by a deterministic tie-break, so every node
//! converges on the same record. The merge is a join: commutative,
//! associative and idempotent.

use crate::id::{Addr, Incarnation, NodeId};
use crate::records::{MemberRecord, MemberState};
use crate::time::Time;
use compact_str::CompactString;
use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// One member as stored: compact, since every node stores every member.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Member {
    pub(crate) addr: Addr,
    pub(crate) incarnation: Incarnation,
    pub(crate) state: MemberState,
    /// Local time (whole seconds) of the last state change.
    since_s: u32,
}

impl Member {
    fn of(rec: &MemberRecord, since_s: u32) -> Member {
        Member {
            addr: rec.addr.clone(),
            incarnation: rec.incarnation,
            state: rec.state,
            since_s,
        }
    }

    pub(crate) fn since(&self) -> Time {
        Time::from_secs(u64::from(self.since_s))
    }
}

/// What a merge did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Merge {
    /// The record was older or equal: nothing changed.
    Unchanged,
    /// A member not known before.
    New,
    /// Replaced or extended an existing record.
    Changed {
        /// The state before.
        old_state: MemberState,
        /// The incarnation before.
        old_incarnation: Incarnation,
    },
}

/// The member table.
#[derive(Clone, Debug, Default)]
pub(crate) struct MemberTable {
    map: BTreeMap<NodeId, Member>,
    /// Names, only for members that have one.
    names: BTreeMap<NodeId, CompactString>,
    /// Accusers of Suspect members, sorted, at most `cap`.
    accusers: BTreeMap<NodeId, Vec<NodeId>>,
    /// Dead and Left members (usually few): re-probing and collection look
    /// here instead of scanning the table.
    gone: BTreeSet<NodeId>,
    live: usize,
}

fn version(m: &Member) -> (Incarnation, MemberState) {
    (m.incarnation, m.state)
}

impl MemberTable {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Alive and Suspect members (the cluster size used by every formula).
    pub(crate) fn live_count(&self) -> usize {
        self.live
    }

    pub(crate) fn get(&self, id: &NodeId) -> Option<&Member> {
        self.map.get(id)
    }

    pub(crate) fn contains(&self, id: &NodeId) -> bool {
        self.map.contains_key(id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&NodeId, &Member)> {
        self.map.iter()
    }

    pub(crate) fn range(
        &self,
        lo: NodeId,
        hi: NodeId,
    ) -> std::collections::btree_map::Range<'_, NodeId, Member> {
        self.map.range(lo..=hi)
    }

    /// Dead and Left members.
    pub(crate) fn gone(&self) -> &BTreeSet<NodeId> {
        &self.gone
    }

    /// The first member at or after `from` in id order, wrapping around.
    /// Members from `from` on in id order, wrapping once around.
    pub(crate) fn from(&self, from: NodeId) -> impl Iterator<Item = (&NodeId, &Member)> {
        self.map.range(from..).chain(self.map.range(..from))
    }

    pub(crate) fn name(&self, id: &NodeId) -> &str {
        self.names.get(id).map_or("", |n| n.as_str())
    }

    pub(crate) fn accusers(&self, id: &NodeId) -> &[NodeId] {
        self.accusers.get(id).map_or(&[], |a| a.as_slice())
    }

    /// The full record of a member.
    pub(crate) fn record(&self, id: &NodeId) -> Option<MemberRecord> {
        let m = self.map.get(id)?;
        Some(MemberRecord {
            id: *id,
            addr: m.addr.clone(),
            incarnation: m.incarnation,
            state: m.state,
            accusers: self.accusers(id).to_vec(),
            name: self.names.get(id).cloned().unwrap_or_default(),
        })
    }

    /// Merges a record; `cap` bounds accuser sets. `now` stamps changes.
    pub(crate) fn merge(&mut self, rec: &MemberRecord, cap: usize, now: Time) -> Merge {
        let since_s = u32::try_from(now.as_micros() / 1_000_000).unwrap_or(u32::MAX);
        let mut accusers = if rec.state == MemberState::Suspect {
            normalize(rec.accusers.clone(), cap)
        } else {
            Vec::new()
        };
        let cur = match self.map.entry(rec.id) {
            Entry::Vacant(v) => {
                v.insert(Member::of(rec, since_s));
                self.index(rec, accusers);
                return Merge::New;
            }
            Entry::Occupied(o) => o.into_mut(),
        };
        let old_state = cur.state;
        let old_incarnation = cur.incarnation;
        match (rec.incarnation, rec.state).cmp(&version(cur)) {
            Ordering::Less => return Merge::Unchanged,
            Ordering::Greater => {}
            Ordering::Equal => {
                // The side tables are read field by field: `cur` borrows
                // the map.
                let cur_accusers = self.accusers.get(&rec.id).map_or(&[][..], Vec::as_slice);
                let cur_name = self.names.get(&rec.id).map_or("", |n| n.as_str());
                if rec.state == MemberState::Suspect {
                    accusers = normalize(
                        accusers
                            .into_iter()
                            .chain(cur_accusers.iter().copied())
                            .collect(),
                        cap,
                    );
                }
                let same_accusers = accusers.as_slice() == cur_accusers;
                // Tie-break between equal versions: the smaller (addr, name).
                let tie =
                    (rec.addr.as_str(), rec.name.as_str()).cmp(&(cur.addr.as_str(), cur_name));
                if same_accusers && tie != Ordering::Less {
                    return Merge::Unchanged;
                }
                if tie != Ordering::Less {
                    // Only the accusers grow.
                    self.accusers.insert(rec.id, accusers);
                    return Merge::Changed {
                        old_state,
                        old_incarnation,
                    };
                }
            }
        }
        if old_state.is_live() {
            self.live -= 1;
        }
        *cur = Member::of(rec, since_s);
        self.index(rec, accusers);
        Merge::Changed {
            old_state,
            old_incarnation,
        }
    }

    /// Brings the side tables in line with a record just stored.
    fn index(&mut self, rec: &MemberRecord, accusers: Vec<NodeId>) {
        if rec.state.is_live() {
            self.live += 1;
            self.gone.remove(&rec.id);
        } else {
            self.gone.insert(rec.id);
        }
        if rec.name.is_empty() {
            self.names.remove(&rec.id);
        } else {
            self.names.insert(rec.id, rec.name.clone());
        }
        if accusers.is_empty() {
            self.accusers.remove(&rec.id);
        } else {
            self.accusers.insert(rec.id, accusers);
        }
    }

    /// Forgets a member entirely.
    pub(crate) fn remove(&mut self, id: &NodeId) -> Option<Member> {
        let m = self.map.remove(id)?;
        if m.state.is_live() {
            self.live -= 1;
        }
        self.gone.remove(id);
        self.names.remove(id);
        self.accusers.remove(id);
        Some(m)
    }
}

fn normalize(mut v: Vec<NodeId>, cap: usize) -> Vec<NodeId> {
    v.sort_unstable();
    v.dedup();
    v.truncate(cap);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(id: u128, inc: u64, state: MemberState, accusers: &[u128]) -> MemberRecord {
        MemberRecord {
            id: NodeId::from_u128(id),
            addr: Addr::new(format!("sim://{id}")),
            incarnation: inc,
            state,
            accusers: accusers.iter().map(|a| NodeId::from_u128(*a)).collect(),
            name: CompactString::default(),
        }
    }

    #[test]
    fn higher_version_wins_and_live_count_follows() {
        let mut t = MemberTable::default();
        assert_eq!(
            t.merge(&rec(1, 1, MemberState::Alive, &[]), 4, Time::ZERO),
            Merge::New
        );
        assert_eq!(t.live_count(), 1);
        assert!(matches!(
            t.merge(&rec(1, 1, MemberState::Dead, &[]), 4, Time::ZERO),
            Merge::Changed {
                old_state: MemberState::Alive,
                ..
            }
        ));
        assert_eq!(t.live_count(), 0);
        assert_eq!(
            t.merge(&rec(1, 1, MemberState::Alive, &[]), 4, Time::ZERO),
            Merge::Unchanged
        );
        assert!(matches!(
            t.merge(&rec(1, 2, MemberState::Alive, &[]), 4, Time::ZERO),
            Merge::Changed { .. }
        ));
        assert_eq!(t.live_count(), 1);
        t.remove(&NodeId::from_u128(1));
        assert_eq!(t.live_count(), 0);
    }

    #[test]
    fn suspicions_accumulate_distinct_accusers_up_to_the_cap() {
        let mut t = MemberTable::default();
        t.merge(&rec(1, 1, MemberState::Suspect, &[5]), 2, Time::ZERO);
        assert!(matches!(
            t.merge(&rec(1, 1, MemberState::Suspect, &[3]), 2, Time::ZERO),
            Merge::Changed { .. }
        ));
        assert_eq!(t.accusers(&NodeId::from_u128(1)).len(), 2);
        assert_eq!(
            t.merge(&rec(1, 1, MemberState::Suspect, &[5, 3]), 2, Time::ZERO),
            Merge::Unchanged
        );
        // The cap keeps the smallest ids: a new smaller accuser replaces 5.
        assert!(matches!(
            t.merge(&rec(1, 1, MemberState::Suspect, &[2]), 2, Time::ZERO),
            Merge::Changed { .. }
        ));
        assert_eq!(
            t.accusers(&NodeId::from_u128(1)),
            &[NodeId::from_u128(2), NodeId::from_u128(3)]
        );
        t.merge(&rec(1, 2, MemberState::Alive, &[]), 2, Time::ZERO);
        assert!(t.accusers(&NodeId::from_u128(1)).is_empty());
    }

    fn arb_record() -> impl Strategy<Value = MemberRecord> {
        (
            0u128..3,
            0u64..3,
            prop_oneof![
                Just(MemberState::Alive),
                Just(MemberState::Suspect),
                Just(MemberState::Dead),
                Just(MemberState::Left)
            ],
            proptest::collection::vec(0u128..6, 0..4),
            0u8..2,
        )
            .prop_map(|(id, inc, st, acc, a)| {
                let mut r = rec(id, inc, st, &acc);
                r.addr = Addr::new(format!("sim://{id}/{a}"));
                r
            })
    }

    fn state(t: &MemberTable) -> Vec<MemberRecord> {
        t.map.keys().filter_map(|id| t.record(id)).collect()
    }

    proptest! {
        #[test]
        fn merge_is_order_insensitive_and_idempotent(
            mut recs in proptest::collection::vec(arb_record(), 0..24),
            seed in any::<u64>(),
        ) {
            let mut a = MemberTable::default();
            for r in &recs { a.merge(r, 3, Time::ZERO); }
            // Another order, with duplicates.
            let mut rng = seed;
            for i in (1..recs.len()).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                recs.swap(i, (rng >> 33) as usize % (i + 1));
            }
            let mut b = MemberTable::default();
            for r in recs.iter().chain(recs.iter().take(5)) { b.merge(r, 3, Time::ZERO); }
            prop_assert_eq!(state(&a), state(&b));
            prop_assert_eq!(a.live_count(), b.live_count());
            prop_assert_eq!(
                a.live_count(),
                a.map.values().filter(|m| m.state.is_live()).count()
            );
        }
    }
}
