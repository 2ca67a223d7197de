//! [`Outbox`]: the core's one ordered queue of effects for the host, and the allocators of
//! the ids those effects carry.
//!
//! Every layer writes here: the engine its frames, closes and HTTP answers, the
//! application (through [`crate::socketio::Io`]) its storage requests and API responses.
//! One queue keeps their order: a storage request made after a frame was sent comes out
//! after it. The host drains it with [`crate::Machine::poll_output`] after every step, so
//! it is empty between steps; only the id allocators outlive a step (and a snapshot).

use crate::host::{ClusterOutput, ConnId, Output, StoreId, StoreRequest, APPLICATION_JSON};
use bytes::Bytes;
use std::collections::VecDeque;

/// Effects waiting for the host, in the order they arose.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Output>,
    /// The next [`StoreId`]: ids are unique over the life of the service, snapshots included.
    next_store: u64,
}

impl Outbox {
    /// An empty outbox whose next storage request gets `next_store` (from a snapshot).
    #[must_use]
    pub(crate) fn starting_at(next_store: u64) -> Self {
        Outbox { queue: VecDeque::new(), next_store }
    }

    /// The id the next storage request will get.
    #[must_use]
    pub(crate) fn next_store(&self) -> u64 {
        self.next_store
    }

    pub(crate) fn push(&mut self, output: Output) {
        self.queue.push_back(output);
    }

    /// Queues a storage request under a fresh id; the answer comes back with that id.
    pub(crate) fn store(&mut self, request: StoreRequest) -> StoreId {
        let id = StoreId(self.next_store);
        self.next_store += 1;
        self.push(Output::Store { id, request });
        id
    }

    /// Answers an HTTP request with a JSON body.
    pub(crate) fn respond_json(&mut self, conn: ConnId, status: u16, body: String) {
        self.push(Output::Respond { conn, status, content_type: APPLICATION_JSON, body: Bytes::from(body) });
    }

    /// Queues an effect for the cluster link.
    pub(crate) fn cluster(&mut self, op: ClusterOutput) {
        self.push(Output::Cluster(op));
    }

    /// The oldest effect not yet taken.
    pub fn pop(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }
}
