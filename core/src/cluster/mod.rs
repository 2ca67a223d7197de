//! The cluster layer's parts that know no transport (DESIGN.md §8): what nodes say to each
//! other ([`envelope`]), on which channels ([`channels`]), which channels a node needs while
//! it has members of a room ([`subscriptions`]), and the broadcasts it has already
//! delivered ([`seen`]). The layer that drives them beside the Socket.IO layer, and its
//! effects in the host contract, build on these.

pub mod channels;
pub mod envelope;
pub mod seen;
pub mod subscriptions;

pub use channels::Channels;
pub use envelope::{Body, Broadcast, Envelope, EnvelopeError, NodeId};
pub use seen::Seen;
pub use subscriptions::Subscriptions;
