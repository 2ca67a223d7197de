//! Effects: what the machine asks of the world besides its connections. Today that is the
//! store; the cluster link becomes one more sink here.

use super::Driver;
use parlor_core::host::{StoreId, StoreRequest};

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
}
