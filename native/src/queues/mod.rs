//! The queues that tasks share, and everything loom checks: the driver's [`inbox`]
//! (connections → driver), the per-WebSocket [`outbound`] queue (driver → writer), the
//! [`inflow`] credit that paces one connection's reader, and the [`sync`] facade they are
//! built on. Under `--cfg loom` the crate builds only this module, so the models run over
//! the real code (see `sync`'s docs for the command).

pub(crate) mod inbox;
pub(crate) mod inflow;
pub mod outbound;
pub(crate) mod sync;
