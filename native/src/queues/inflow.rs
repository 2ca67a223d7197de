//! Per-connection inbound credit: how much of one WebSocket's input sits in the driver's
//! inbox, not yet handled.
//!
//! The inbox is bounded for the whole mount, so without a per-connection share one fast
//! sender could fill it and every other client's frame would wait behind its backlog.
//! With a [`Credit`] per forwarded frame, a connection holds at most its budget (plus one
//! frame) in the inbox: each driver batch takes a bounded amount of work from any one
//! connection, and connections take turns in the order they send. A reader over its
//! budget waits for the driver; its socket is not read meanwhile, so TCP slows the peer.
//!
//! A credit is returned when it is dropped: after the driver handled the frame, or when
//! the inbox is dropped with it (the server stopping) — never lost, so a reader can never
//! wait for credit that will not come back.

// The loom models exercise the queues, not the credit (the reader's wait needs tokio).
#![cfg_attr(loom, allow(dead_code))]

use crate::queues::outbound::Outbound;
use crate::queues::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::queues::sync::{Arc, Wake};

/// What a forwarded frame costs beyond its payload: the command, its queue slot and the
/// allocation it lives in. Without it, empty frames would be free.
pub(crate) const FRAME_OVERHEAD: usize = 64;

/// One connection's inbound account; lives in the connection's shared queue
/// ([`crate::queues::outbound::Outbound`]), so it costs no allocation of its own.
pub(crate) struct Inflow {
    /// Bytes forwarded to the driver and not yet handled.
    held: AtomicUsize,
    /// Set while the reader waits for credit, so that giving back wakes it only then:
    /// most frames are handled long before the budget is reached, and an unconditional
    /// wake-up per frame cost a contended read-modify-write on every echo.
    waiting: AtomicBool,
    /// Wakes the reader when credit comes back.
    reader: Wake,
}

// By hand: loom's atomics need not implement these.
impl Default for Inflow {
    fn default() -> Self {
        Inflow { held: AtomicUsize::new(0), waiting: AtomicBool::new(false), reader: Wake::default() }
    }
}

impl std::fmt::Debug for Inflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inflow({})", self.held())
    }
}

impl Inflow {
    /// Bytes forwarded and not yet handled.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    fn take(&self, cost: usize) {
        self.held.fetch_add(cost, Ordering::AcqRel);
    }

    fn give_back(&self, cost: usize) {
        // SeqCst with the reader's flag-then-check in `room`: either this sees `waiting`,
        // or the reader sees the credit back (store-load order both ways).
        self.held.fetch_sub(cost, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) && self.waiting.swap(false, Ordering::SeqCst) {
            // A stored permit if the reader is not in its wait yet: it re-checks and goes on.
            self.reader.wake_one();
        }
    }

    /// Waits until less than `budget` bytes are held. Only the connection's reader calls
    /// this; a wake-up between its check and its wait is stored, not lost.
    #[cfg(not(loom))]
    pub(crate) async fn room(&self, budget: usize) {
        loop {
            self.waiting.store(true, Ordering::SeqCst);
            if self.held.load(Ordering::SeqCst) < budget {
                self.waiting.store(false, Ordering::SeqCst);
                return;
            }
            self.reader.notify().notified().await;
        }
    }
}

/// `cost` bytes of one connection's credit, handed back when dropped.
pub(crate) struct Credit {
    owner: Arc<Outbound>,
    cost: usize,
}

impl Credit {
    /// Takes `cost` bytes of `owner`'s credit.
    pub(crate) fn take(owner: Arc<Outbound>, cost: usize) -> Credit {
        owner.inflow().take(cost);
        Credit { owner, cost }
    }

    /// What this credit counts against the inbox's byte bound.
    pub(crate) fn cost(&self) -> usize {
        self.cost
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.owner.inflow().give_back(self.cost);
    }
}

impl std::fmt::Debug for Credit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credit({})", self.cost)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reader_over_budget_waits_until_credit_comes_back() {
        let owner = Arc::new(Outbound::new(100));
        let a = Credit::take(owner.clone(), 60);
        let b = Credit::take(owner.clone(), 60);
        assert_eq!(owner.inflow().held(), 120);
        let waiter = {
            let owner = owner.clone();
            tokio::spawn(async move { owner.inflow().room(100).await })
        };
        tokio::task::yield_now().await;
        drop(a);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(owner.inflow().held(), 60);
        drop(b);
        assert_eq!(owner.inflow().held(), 0);
    }

    /// The reader's flag-then-check against credit given back on another thread: however
    /// the two interleave, a reader over its budget is woken once the credit is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_wake_up_is_lost_between_threads() {
        let owner = Arc::new(Outbound::new(100));
        let (tx, rx) = std::sync::mpsc::channel::<Credit>();
        // The "driver": hands credit back on its own thread as frames arrive.
        let driver = std::thread::spawn(move || {
            while let Ok(credit) = rx.recv() {
                drop(credit);
            }
        });
        let reader = async {
            for _ in 0..20_000 {
                owner.inflow().room(100).await;
                tx.send(Credit::take(owner.clone(), 60)).unwrap();
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), reader).await.expect("a wake-up was lost");
        drop(tx);
        driver.join().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), owner.inflow().room(1)).await.unwrap();
    }
}
