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
