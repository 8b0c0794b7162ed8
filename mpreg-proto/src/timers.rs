//! Timers are data: a key per thing that can expire, one deadline each.
//! Setting a key again moves its deadline; a stale deadline never fires.
//! The node reports the earliest one through `poll_timeout`, and an early
//! `handle_timeout` finds nothing due and does nothing.

use crate::id::{CallId, InvocationId, NodeId};
use crate::time::Time;
use std::collections::BTreeMap;

#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Timer {
    /// Check whether an active peer has been silent for a probe period.
    Probe(NodeId),
    /// A probe (or a probe forwarded for another node) ran out of time.
    ProbeTimeout(u32),
    /// A suspicion ran its course.
    Suspicion(NodeId),
    /// Announced updates are still missing.
    Graft,
    /// Lazy announcements are due.
    Announce,
    /// Bridge keepalives, re-dials and summary exports.
    Bridge,
    /// Anti-entropy, dead-member re-probe and garbage collection.
    Sync,
    /// Overlay repair and passive-view shuffle.
    Shuffle,
    /// Join retry and seed re-dial.
    Join,
    /// A call's budget ran out.
    Call(CallId),
    /// An executor may forget a call's result.
    Dedup(CallId),
    /// A call whose connection broke is sent again.
    Resend(CallId),
    /// A dial timed out, or a dial backoff ended.
    Dial,
    /// Idle connections close; slow closes are aborted.
    Idle,
    /// The next phase of a graceful leave.
    Leave,
    /// A handler outlived its call's budget.
    Budget(InvocationId),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    by_time: BTreeMap<(Time, u64), Timer>,
    by_key: BTreeMap<Timer, (Time, u64)>,
    seq: u64,
}

impl Timers {
    /// Sets `key` to fire at `at`, replacing any earlier setting.
    pub(crate) fn set(&mut self, key: Timer, at: Time) {
        let slot = (at, self.seq);
        self.seq += 1;
        if let Some(old) = self.by_key.insert(key, slot) {
            self.by_time.remove(&old);
        }
        self.by_time.insert(slot, key);
    }

    /// Sets `key` unless it is already set to fire no later than `at`.
    pub(crate) fn set_if_earlier(&mut self, key: Timer, at: Time) {
        if self.get(key).is_none_or(|t| at < t) {
            self.set(key, at);
        }
    }

    pub(crate) fn cancel(&mut self, key: Timer) {
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&old);
        }
    }

    pub(crate) fn get(&self, key: Timer) -> Option<Time> {
        self.by_key.get(&key).map(|s| s.0)
    }

    pub(crate) fn next(&self) -> Option<Time> {
        self.by_time.first_key_value().map(|(k, _)| k.0)
    }

    /// A mark for [`pop_due`](Self::pop_due): timers set after it was
    /// taken are not returned.
    pub(crate) fn mark(&self) -> u64 {
        self.seq
    }

    /// Removes and returns one timer due at `now` and set before `mark`,
    /// earliest first. A handler that re-arms its timer at `now` (a period
    /// below the clock's resolution, a deadline already passed) leaves it
    /// for the next call instead of firing it forever.
    pub(crate) fn pop_due(&mut self, now: Time, mark: u64) -> Option<Timer> {
        let (&slot, &key) = self
            .by_time
            .range(..=(now, u64::MAX))
            .find(|(slot, _)| slot.1 < mark)?;
        self.by_time.remove(&slot);
        self.by_key.remove(&key);
        Some(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fire_in_order_and_moves_replace() {
        let mut t = Timers::default();
        t.set(Timer::Sync, Time::from_millis(30));
        t.set(Timer::Graft, Time::from_millis(10));
        t.set(Timer::Join, Time::from_millis(10));
        t.set(Timer::Graft, Time::from_millis(40));
        t.set_if_earlier(Timer::Sync, Time::from_millis(50));
        assert_eq!(t.next(), Some(Time::from_millis(10)));
        let m = t.mark();
        assert_eq!(t.pop_due(Time::from_millis(5), m), None);
        assert_eq!(t.pop_due(Time::from_millis(100), m), Some(Timer::Join));
        assert_eq!(t.pop_due(Time::from_millis(100), m), Some(Timer::Sync));
        t.cancel(Timer::Graft);
        assert_eq!(t.pop_due(Time::MAX, t.mark()), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_timer_set_after_the_mark_waits_for_the_next_one() {
        let mut t = Timers::default();
        t.set(Timer::Sync, Time::from_millis(10));
        t.set(Timer::Join, Time::from_millis(20));
        let m = t.mark();
        assert_eq!(t.pop_due(Time::from_millis(30), m), Some(Timer::Sync));
        // Re-armed at (or before) now: skipped, older due timers still fire.
        t.set(Timer::Sync, Time::from_millis(5));
        assert_eq!(t.pop_due(Time::from_millis(30), m), Some(Timer::Join));
        assert_eq!(t.pop_due(Time::from_millis(30), m), None);
        assert_eq!(
            t.pop_due(Time::from_millis(30), t.mark()),
            Some(Timer::Sync)
        );
    }
}
