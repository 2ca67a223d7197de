//! The native side of the cluster (DESIGN.md §8): the [`link`] to Redis that carries the core's
//! cluster traffic.
//!
//! The cluster's logic (envelopes, routing, the node registry, what to subscribe to and when)
//! is the core's; this module only moves bytes. [`link`] connects, subscribes, publishes,
//! reconnects with backoff and reports up/down, with every queue bounded and every drop
//! counted, so that a Redis outage costs counted messages, never unbounded memory.
//!
//! - [`link`]: the [`LinkHandle`] the driver calls (never blocking), the task behind it, the
//!   [`Event`]s it reports and the [`LinkStats`] it keeps.
//! - `backoff`: the reconnect delays (exponential, jittered, capped).

mod backoff;
pub mod link;

pub use self::link::{spawn, Event, Events, LinkConfig, LinkError, LinkHandle, LinkStats};
