//! Time as the host gives it: a monotonic millisecond clock, and the deadline table.
//!
//! The core never reads a clock. Every call carries `now`; the host arms one timer at the
//! minimum of the deadline tables (`poll_timeout`) and calls `handle_timeout` when it fires.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// Milliseconds on the host's monotonic clock. Only differences mean anything.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Instant(pub u64);

impl Instant {
    /// `self + ms`, saturating: a huge configured timeout means "never", not an overflow.
    #[must_use]
    pub fn plus(self, ms: u64) -> Instant {
        Instant(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub fn since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A deadline table: at most one deadline per key, the earliest found in O(log n).
///
/// Keys are small copyable values (an enum of timer kinds with an index) so that cancelling
/// and re-arming a timer costs two tree operations and no allocation beyond the tree node.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Timers<K: Ord + Hash + Copy> {
    by_time: BTreeSet<(Instant, K)>,
    by_key: HashMap<K, Instant>,
}

impl<K: Ord + Hash + Copy> Default for Timers<K> {
    fn default() -> Self {
        Timers { by_time: BTreeSet::new(), by_key: HashMap::new() }
    }
}

impl<K: Ord + Hash + Copy> Timers<K> {
    /// Arms `key` at `at`, replacing any earlier deadline of the same key.
    pub fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.by_key.insert(key, at) {
            self.by_time.remove(&(old, key));
        }
        self.by_time.insert((at, key));
    }

    /// Disarms `key`; a key that is not armed is fine.
    pub fn cancel(&mut self, key: K) {
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&(old, key));
        }
    }

    /// The deadline of `key`, if armed.
    #[must_use]
    pub fn get(&self, key: K) -> Option<Instant> {
        self.by_key.get(&key).copied()
    }

    /// The earliest deadline.
    #[must_use]
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(t, _)| *t)
    }

    /// Removes and returns one key whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<K> {
        let (at, key) = *self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.pop_first();
        self.by_key.remove(&key);
        Some(key)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_deadline_pops_first_and_rearming_replaces() {
        let mut t = Timers::default();
        t.set(1u32, Instant(50));
        t.set(2u32, Instant(10));
        t.set(1u32, Instant(5));
        assert_eq!(t.next(), Some(Instant(5)));
        assert_eq!(t.pop_expired(Instant(4)), None);
        assert_eq!(t.pop_expired(Instant(20)), Some(1));
        assert_eq!(t.pop_expired(Instant(20)), Some(2));
        assert_eq!(t.pop_expired(Instant(100)), None);
        assert!(t.is_empty());
    }

    #[test]
    fn cancel_removes_deadline() {
        let mut t = Timers::default();
        t.set(7u8, Instant(1));
        t.cancel(7);
        t.cancel(8);
        assert_eq!(t.next(), None);
    }
}
