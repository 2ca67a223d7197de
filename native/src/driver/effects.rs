//! Effects: what the machine asks of the world besides its connections: the store, and
//! in cluster mode the cluster link.

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

    /// A cluster effect goes to the link, which never waits: what its bounded queue cannot
    /// take it drops and counts. Without a link (a mount outside the cluster) there is
    /// nothing to do: such a machine was configured without a cluster and emits none.
    pub(super) fn cluster(&mut self, op: ClusterOutput) {
        let Some(link) = &self.link else {
            tracing::debug!(?op, mount = %self.mount, "cluster effect without a cluster link; dropped");
            return;
        };
        match op {
            ClusterOutput::Publish { channel, payload } => {
                link.publish(channel, payload);
            }
            ClusterOutput::Subscribe { channel } => {
                link.subscribe(channel);
            }
            ClusterOutput::Unsubscribe { channel } => {
                link.unsubscribe(&channel);
            }
            ClusterOutput::SetExpiring { key, value, ttl_ms } => {
                link.set_expiring(key, value, ttl_ms);
            }
            ClusterOutput::Delete { key } => {
                link.delete(key);
            }
        }
    }
}
