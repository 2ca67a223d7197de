//! The cluster layer (DESIGN.md §8), beside the Socket.IO layer, which resolves broadcast
//! targets and drives it: what nodes say to each other ([`envelope`]), on which channels
//! ([`channels`]), which channels a node needs while it has members of a room
//! ([`subscriptions`]), the broadcasts it has already delivered ([`seen`]), the questions it
//! asked the other nodes ([`queries`]), broadcasts from `@socket.io/redis-emitter`
//! ([`emitter`]), and one node's state and effects ([`node`]). The host carries `Output::Cluster` to a link (Redis) and
//! reports back with `Input::Cluster`; `testing::cluster` puts a model of Redis pub/sub
//! on the deterministic bus.

pub mod channels;
pub mod emitter;
pub mod envelope;
pub mod node;
pub mod queries;
pub mod seen;
#[cfg(test)]
mod sim;
pub mod subscriptions;

pub use channels::Channels;
pub use envelope::{Body, Broadcast, Envelope, EnvelopeError, NodeId};
pub use node::{ClusterNode, ClusterStats};
pub use queries::QueryId;
pub use seen::Seen;
pub use subscriptions::Subscriptions;
