//! parlor-core: the whole logic of parlor as a deterministic, sans-IO state machine.
//!
//! It speaks Engine.IO v4 and Socket.IO v5 and runs applications (the room service, the
//! conformance handlers) on top. It has no networking, reads no clock, starts no thread
//! and touches no file: hosts (the native server, the WebAssembly component) feed it
//! inputs and carry out its outputs.
//!
//! # Layout
//!
//! - [`time`]: the host's clock as a value ([`Instant`]) and the deadline table.
//! - [`host`]: what crosses the boundary: [`Input`], [`Output`], connection ids.
//! - [`config`]: every limit and timing.
//! - [`errors`]: the error codes clients see, and the one place their JSON is built.
//! - [`codec`]: wire formats, pure (Engine.IO packets, polling payloads, Socket.IO packets).
//! - [`engineio`]: Engine.IO sessions (handshake, heartbeat, polling slots, upgrade).
//! - [`socketio`]: namespaces, sockets, rooms, acks, recovery, and the application API
//!   ([`Handler`], [`Io`]); [`Sockets`] is the layer, [`Io`] the handle applications act
//!   through.
//! - [`store`]: storage as an effect: an application's records, encoded, in requests and
//!   answers that know no application (the room service's records are `app::records`).
//! - [`cluster`]: the cluster layer the Socket.IO layer drives: envelopes between nodes,
//!   channel names, reference-counted subscriptions, duplicate suppression, and
//!   [`cluster::ClusterNode`] (publish, receive, the registry of live nodes by heartbeat),
//!   whose effects are `Output::Cluster` and whose inputs `Input::Cluster`.
//! - [`outbox`]: the one ordered queue of effects every layer writes to, and its ids.
//! - [`service`]: [`Service`], the layers wired into one [`Machine`].
//! - [`app`]: the room service. [`conformance`]: the handlers the official suites expect.
//! - [`kinds`]: those machines by name, for both hosts.
//! - [`snapshot`]: the whole state as versioned bytes, and back (a live component swap).
//! - [`idhash`]: hash maps for server-chosen ids; [`rng`]: the seeded random stream.
//! - `testing` (tests and fuzz targets only): `testing::Host`, the one host model (a
//!   virtual clock, the output contract, an in-memory store) every test, the simulation
//!   and the fuzz targets drive a machine through, and `testing::nodes`, several nodes
//!   joined by a deterministic bus; `sim` (tests only): the randomized simulation of many
//!   clients.
//!
//! Layers only look down: codec ← engineio ← socketio ← app.
//!
//! # The run loop
//!
//! The four kinds of calls: getters, `handle*` (inputs), the application's actions (through
//! [`Io`] inside handler callbacks), and `poll_*` (outputs). The drain rule: after every
//! `handle*` call, drain [`Machine::poll_output`] until it returns `None`, then arm one
//! timer at [`Machine::poll_timeout`]; when it fires, call [`Machine::handle_timeout`].
//!
//! ```
//! use parlor_core::{conformance::ConformanceApp, Config, Input, Instant, Machine, Service};
//! use parlor_core::host::{ConnId, Method, Request};
//!
//! let mut core = Service::new(Config::default(), [7; 32], Instant(0), ConformanceApp::new());
//! let req = Request { conn: ConnId(1), method: Method::Get, query: "EIO=4&transport=polling",
//!                     body: b"", too_large: false, websocket: false, remote: None };
//! core.handle(Input::Request(req), Instant(0));
//! while let Some(output) = core.poll_output() {
//!     // carry it out: answer the request, send the frame, close the socket...
//!     println!("{output:?}");
//! }
//! let next_wakeup = core.poll_timeout(); // the first heartbeat
//! assert_eq!(next_wakeup, Some(Instant(25_000)));
//! ```
//!
//! # The time rule
//!
//! Time is an input: every call carries `now` (milliseconds on the host's monotonic clock)
//! and the core never goes backwards (an earlier `now` is clamped). Wall-clock timestamps
//! come in as inputs too. Randomness comes only from the seed given to [`Service::new`].
//! Bad input never panics: every decode error becomes a defined close or error packet, and
//! every buffer a client can grow is bounded by [`Config`].

#![forbid(unsafe_code)]

pub mod app;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod conformance;
pub mod engineio;
pub mod errors;
pub mod host;
pub mod idhash;
pub mod kinds;
pub mod outbox;
pub mod rng;
pub mod service;
pub mod snapshot;
pub mod socketio;
pub mod store;
pub mod time;

#[cfg(test)]
mod sim;
/// Test helpers (the host model, an in-memory store, a bus of nodes), also for the fuzz targets.
#[cfg(any(test, fuzzing))]
pub mod testing;

pub use config::Config;
pub use host::{ConnId, Input, Output};
pub use service::{Machine, Metrics, Service};
pub use socketio::{Handler, Io, Sockets};
pub use time::Instant;
