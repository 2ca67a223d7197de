//! The sync primitives that connection tasks and the driver share, behind one facade.
//!
//! Under `--cfg loom` they are loom's, so the models in `outbound.rs` explore every
//! interleaving of the real queue code; otherwise they are `std`'s. Run the models with
//! their own target directory (loom compiles tokio's networking out, so only the library
//! builds under it):
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p parlor --lib --release loom
//! ```

#[cfg(loom)]
pub(crate) use loom::sync::{atomic, Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{atomic, Arc, Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: every critical section here leaves the state consistent
/// before anything that could panic, so a poisoned lock still guards valid data.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Wakes the task waiting on a queue. Under loom it is a no-op: the models drive the
/// queue's non-blocking half (`try_take`) and never park a task.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    #[cfg(not(loom))]
    notify: tokio::sync::Notify,
}

impl Wake {
    /// Wakes the single waiter, or the next one to wait if none is waiting now (the permit
    /// is stored, so a wake between "saw nothing" and "started waiting" is not lost).
    pub(crate) fn wake_one(&self) {
        #[cfg(not(loom))]
        self.notify.notify_one();
    }

    /// Wakes every current waiter; callers re-check their condition after `enabled`.
    pub(crate) fn wake_all(&self) {
        #[cfg(not(loom))]
        self.notify.notify_waiters();
    }

    #[cfg(not(loom))]
    pub(crate) fn notify(&self) -> &tokio::sync::Notify {
        &self.notify
    }
}
