//! Effects: what the machine asks of the world besides its connections. Today that is the
//! store; the cluster link becomes one more sink here.

use super::Driver;
use parlor_core::host::{ClusterOutput, StoreId, StoreRequest};

impl Driver {
    /// Hands a storage request to the mount's store; its answer comes back on `answers`
    /// and is fed as `Input::Stored`. Never waits: the store queues it. Without a store
    /// the request fails cleanly after this drain, so the core never waits forever.
    pub(super) fn store(&mut self, id: StoreId, request: StoreRequest) {
        match &self.store {
            Some(store) => {
                let answers = self.answers.clone();
                store.submit(request, move |answer| {
                    // The driver is gone only when the server is stopping.
                    let _ = answers.send((id, answer));
                });
            }
            None => self.unstored.push(id),
        }
    }

    /// A cluster effect. A node runs alone until the Redis link is wired in (issue 14):
    /// its core is configured without a cluster and emits none, so one arriving here is
    /// a machine's mistake, dropped with a log line.
    pub(super) fn cluster(&mut self, op: &ClusterOutput) {
        tracing::debug!(?op, mount = %self.mount, "cluster effect without a cluster link; dropped");
    }
}
