//! The node-wide budget of bytes held in partly read HTTP request bodies: a client that
//! sends a body slowly holds what it sent until the body deadline; many of them together
//! may hold this much, and a body that would go past it is answered 503.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A request body must arrive whole within this time (by default), or the request is
/// answered 408 and the connection closed.
pub(crate) const BODY_TIMEOUT_MS: u64 = 10_000;
/// Bytes of partly read request bodies the whole node holds at most.
pub(crate) const BODY_BUDGET: usize = 64 << 20;
/// After [`BODY_GRACE`], a body must keep arriving at this many bytes per second on
/// average (by default), or the request is answered 408 at once: a client trickling a
/// body holds its connection for a few seconds, not the whole body deadline.
pub(crate) const BODY_MIN_RATE: u64 = 1024;
/// How long a body may arrive at any rate before [`BODY_MIN_RATE`] applies: a small
/// body sent whole never meets the rate check, and a slow link gets its first round trips.
pub(crate) const BODY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// When the next chunk of a body that started at `start` and has `received` bytes so far
/// must have arrived to keep `min_rate` bytes per second after [`BODY_GRACE`]; `None`:
/// no rate is asked (`min_rate` 0).
pub(crate) fn rate_deadline(
    start: tokio::time::Instant,
    received: usize,
    min_rate: u64,
) -> Option<tokio::time::Instant> {
    if min_rate == 0 {
        return None;
    }
    // Whole milliseconds of credit the bytes so far bought; saturating, so a huge count
    // cannot overflow (the body deadline still ends the request).
    let earned_ms = (received as u64).saturating_mul(1000) / min_rate;
    Some(start + BODY_GRACE + std::time::Duration::from_millis(earned_ms))
}

/// The node-wide account of bytes in partly read bodies.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    held: AtomicUsize,
    limit: usize,
}

impl BodyBudget {
    pub(crate) fn new(limit: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget { held: AtomicUsize::new(0), limit })
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// An empty share, growing with [`BodyShare::grow`]; what it holds is given back when
    /// it is dropped.
    pub(crate) fn share(self: &Arc<Self>) -> BodyShare {
        BodyShare { budget: self.clone(), held: 0 }
    }
}

/// One body's part of the [`BodyBudget`].
#[derive(Debug)]
pub(crate) struct BodyShare {
    budget: Arc<BodyBudget>,
    held: usize,
}

impl BodyShare {
    /// Counts `n` more bytes; `false` (and nothing counted) when the node would go past
    /// its budget.
    pub(crate) fn grow(&mut self, n: usize) -> bool {
        let b = &self.budget;
        let mut now = b.held.load(Ordering::Acquire);
        loop {
            let next = now.saturating_add(n);
            if next > b.limit {
                return false;
            }
            match b.held.compare_exchange_weak(now, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.held += n;
                    return true;
                }
                Err(seen) => now = seen,
            }
        }
    }
}

impl Drop for BodyShare {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_deadline_moves_with_the_bytes_received() {
        let start = tokio::time::Instant::now();
        assert_eq!(rate_deadline(start, 0, 0), None, "0 is off");
        assert_eq!(rate_deadline(start, 0, 1024), Some(start + BODY_GRACE));
        let at = rate_deadline(start, 2048, 1024).unwrap();
        assert_eq!(at, start + BODY_GRACE + std::time::Duration::from_secs(2));
        assert!(rate_deadline(start, usize::MAX, 1).is_some(), "no overflow");
    }

    #[test]
    fn shares_stay_within_the_budget_and_give_back_on_drop() {
        let budget = BodyBudget::new(100);
        let mut a = budget.share();
        let mut b = budget.share();
        assert!(a.grow(60));
        assert!(!b.grow(41), "past the budget");
        assert!(b.grow(40));
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 40);
        assert!(b.grow(60));
        drop(b);
        assert_eq!(budget.held(), 0);
    }
}
