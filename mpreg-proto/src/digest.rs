//! The range digest anti-entropy compares: a fixed tree over the NodeId
//! space (the whole space, 16 ranges by the top 4 bits, 256 by the top 8),
//! each range holding the wrapping sum of its members' state hashes and
//! their count. Sums update in O(1) when one member changes, and two nodes
//! that agree exchange only the root.

use crate::id::NodeId;
use crate::wire::{H64, RangeDigest};

/// Deepest level; ranges at it are compared member by member.
pub(crate) const MAX_LEVEL: u8 = 2;
const FANOUT_BITS: u32 = 4;

#[derive(Clone, Debug)]
pub(crate) struct RangeTree {
    /// `levels[l]` has `16^l` (sum, count) pairs.
    levels: [Vec<(u64, u32)>; MAX_LEVEL as usize + 1],
}

impl Default for RangeTree {
    fn default() -> Self {
        RangeTree {
            levels: std::array::from_fn(|l| vec![(0, 0); 1 << (FANOUT_BITS * l as u32)]),
        }
    }
}

/// Number of ranges at a level.
pub(crate) fn width(level: u8) -> usize {
    1 << (FANOUT_BITS * u32::from(level.min(MAX_LEVEL)))
}

/// The inclusive NodeId bounds of a range.
pub(crate) fn bounds(level: u8, index: u16) -> (NodeId, NodeId) {
    let bits = FANOUT_BITS * u32::from(level.min(MAX_LEVEL));
    if bits == 0 {
        return (NodeId::from_u128(0), NodeId::from_u128(u128::MAX));
    }
    let shift = 128 - bits;
    let lo = u128::from(index) << shift;
    let hi = lo | ((1u128 << shift) - 1);
    (NodeId::from_u128(lo), NodeId::from_u128(hi))
}

impl RangeTree {
    fn apply(&mut self, id: NodeId, sub: u64, add: u64, count_delta: i32) {
        for (l, level) in self.levels.iter_mut().enumerate() {
            let slot = &mut level[id.prefix(FANOUT_BITS * l as u32)];
            slot.0 = slot.0.wrapping_sub(sub).wrapping_add(add);
            slot.1 = slot.1.saturating_add_signed(count_delta);
        }
    }

    /// A member's hash changed from `old` to `new` (`None` = absent).
    pub(crate) fn update(&mut self, id: NodeId, old: Option<u64>, new: Option<u64>) {
        let delta = i32::from(new.is_some()) - i32::from(old.is_some());
        if old != new {
            self.apply(id, old.unwrap_or(0), new.unwrap_or(0), delta);
        }
    }

    pub(crate) fn root(&self) -> RangeDigest {
        self.digest(0, 0)
    }

    pub(crate) fn digest(&self, level: u8, index: u16) -> RangeDigest {
        let (hash, count) = self
            .levels
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .unwrap_or((0, 0));
        RangeDigest {
            index,
            hash: H64(hash),
            count,
        }
    }

    /// Digests of the children of a range, one level down.
    pub(crate) fn children(&self, level: u8, index: u16) -> Vec<RangeDigest> {
        let first = usize::from(index) << FANOUT_BITS;
        (first..first + (1 << FANOUT_BITS))
            .filter_map(|i| u16::try_from(i).ok())
            .map(|i| self.digest(level + 1, i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_counts_follow_updates() {
        let mut t = RangeTree::default();
        let a = NodeId::from_u128(1);
        let b = NodeId::from_u128(u128::MAX);
        t.update(a, None, Some(10));
        t.update(b, None, Some(20));
        assert_eq!(t.root().hash, H64(30));
        assert_eq!(t.root().count, 2);
        assert_eq!(t.digest(1, 0).count, 1);
        assert_eq!(t.digest(2, 255).hash, H64(20));
        t.update(b, Some(20), Some(5));
        assert_eq!(t.root().hash, H64(15));
        t.update(a, Some(10), None);
        assert_eq!(
            t.root(),
            RangeDigest {
                index: 0,
                hash: H64(5),
                count: 1
            }
        );
        assert_eq!(t.children(1, 15).len(), 16);
        assert_eq!(t.children(1, 15)[15].hash, H64(5));
    }

    #[test]
    fn bounds_cover_the_space_exactly() {
        assert_eq!(bounds(0, 0).1.as_u128(), u128::MAX);
        let (lo, hi) = bounds(1, 3);
        assert_eq!(lo.prefix(4), 3);
        assert_eq!(hi.prefix(4), 3);
        assert_eq!(NodeId::from_u128(hi.as_u128() + 1).prefix(4), 4);
        let (lo, hi) = bounds(2, 255);
        assert_eq!(lo.prefix(8), 255);
        assert_eq!(hi.as_u128(), u128::MAX);
        assert_eq!(width(2), 256);
    }
}
