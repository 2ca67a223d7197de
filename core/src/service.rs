//! [`Service`]: the whole core as one state machine, Engine.IO → Socket.IO → an application,
//! and the [`Machine`] trait every host drives.

use crate::config::Config;
use crate::engineio::{Engine, Traffic, TransportInput};
use crate::host::{Input, Output};
use crate::outbox::Outbox;
use crate::rng::Rng;
use crate::snapshot::{self, SnapshotError};
use crate::socketio::{Handler, Io, Sockets};
use crate::time::Instant;

/// What a host drives: the four kinds of calls of the core contract.
///
/// After every `handle*` call the host drains [`Machine::poll_output`] until `None`, then
/// arms one timer at [`Machine::poll_timeout`]. Nothing else moves the state.
pub trait Machine {
    fn handle(&mut self, input: Input<'_>, now: Instant);
    /// Fires expired timers; an early call does nothing.
    fn handle_timeout(&mut self, now: Instant);
    fn poll_output(&mut self) -> Option<Output>;
    fn poll_timeout(&self) -> Option<Instant>;
    /// Gauges and counters for `/metrics`.
    fn metrics(&self) -> Metrics;
    /// The whole state as a versioned snapshot, taken between steps (see
    /// [`crate::snapshot`]); each machine type has a `restore` constructor for it.
    fn snapshot(&self) -> Result<Vec<u8>, SnapshotError>;
}

/// Numbers a host exports as metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Open Engine.IO sessions.
    pub connections: usize,
    /// Per namespace: (name, sockets, rooms other than the sockets' own-id rooms).
    pub namespaces: Vec<(String, usize, usize)>,
    pub traffic: Traffic,
    /// Socket disconnects so far, by Socket.IO reason.
    pub disconnects: Vec<(&'static str, u64)>,
    /// The cluster layer's counts, in cluster mode.
    pub cluster: Option<crate::cluster::ClusterStats>,
}

/// The core: an Engine.IO engine, the Socket.IO layer over it, and an application, with
/// the one outbox all of them write their effects to.
pub struct Service<H: Handler> {
    pub(crate) sockets: Sockets,
    out: Outbox,
    handler: H,
    /// The last `now` seen: time never goes backwards inside the core.
    now: Instant,
}

impl<H: Handler> Service<H> {
    /// `rng_seed` is the only source of randomness (session ids, socket ids, pids).
    pub fn new(config: Config, rng_seed: [u8; 32], now: Instant, handler: H) -> Self {
        let mut rng = Rng::new(rng_seed);
        let engine = Engine::new(&config, rng.fork());
        Service { sockets: Sockets::new(config, engine, rng), out: Outbox::default(), handler, now }
    }

    /// The Socket.IO layer, to read.
    #[must_use]
    pub fn sockets(&self) -> &Sockets {
        &self.sockets
    }

    #[must_use]
    pub fn handler(&self) -> &H {
        &self.handler
    }

    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// A service from a [`Machine::snapshot`] of one with the same kind of handler.
    /// `now` must not be earlier than the snapshot's clock (it is clamped if it is).
    pub fn restore(bytes: &[u8], now: Instant) -> Result<Self, SnapshotError> {
        let (sockets, then, app, next_store): (Sockets, Instant, Vec<u8>, u64) = snapshot::decode(SERVICE_KIND, bytes)?;
        let handler = H::restore(&app)?;
        let mut sockets = sockets;
        sockets.restored();
        Ok(Service { sockets, out: Outbox::starting_at(next_store), handler, now: then.max(now) })
    }

    /// Checks that every queue and map of the whole core (engine, Socket.IO layer,
    /// recovery, application) is inside its configured bound; for simulations and fuzz
    /// targets, between steps. The first violation, described.
    #[cfg(any(test, fuzzing))]
    pub fn check_bounds(&self) -> Result<(), String> {
        self.sockets.check_bounds()?;
        self.handler.check_bounds(&self.sockets)
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }
}

impl<H: Handler> Machine for Service<H> {
    fn handle(&mut self, input: Input<'_>, now: Instant) {
        let now = self.clamp(now);
        let (sockets, out) = (&mut self.sockets, &mut self.out);
        let transport = match input {
            Input::WallClock { unix_ms } => {
                sockets.set_wall_clock(unix_ms, now);
                None
            }
            Input::Stored { id, answer } => {
                self.handler.on_store(&mut Io::new(sockets, out), id, answer, now);
                None
            }
            Input::Api(req) => {
                self.handler.on_api(&mut Io::new(sockets, out), &req, now);
                None
            }
            Input::Request(req) => Some(TransportInput::Request(req)),
            Input::Frame { conn, frame } => Some(TransportInput::Frame { conn, frame }),
            Input::Ended { conn, how } => Some(TransportInput::Ended { conn, how }),
            Input::Shutdown => {
                sockets.leave_cluster();
                Some(TransportInput::Shutdown)
            }
            Input::Cluster(input) => {
                sockets.on_cluster(out, input, now);
                None
            }
        };
        if let Some(input) = transport {
            sockets.engine_mut().handle(out, input, now);
        }
        sockets.run(out, &mut self.handler, now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        let (sockets, out) = (&mut self.sockets, &mut self.out);
        sockets.engine_mut().handle_timeout(out, now);
        sockets.handle_timeout(out, &mut self.handler, now);
        if self.handler.poll_timeout().is_some_and(|t| t <= now) {
            self.handler.handle_timeout(&mut Io::new(sockets, out), now);
        }
        sockets.run(out, &mut self.handler, now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.sockets.engine().poll_timeout(), self.sockets.poll_timeout(), self.handler.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    fn metrics(&self) -> Metrics {
        self.sockets.metrics()
    }

    fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let app = self.handler.snapshot().ok_or(SnapshotError::Unsupported)?;
        Ok(snapshot::encode(SERVICE_KIND, &(&self.sockets, self.now, app, self.out.next_store())))
    }
}

/// The kind of every [`Service`] snapshot; the handler's own bytes carry its kind inside.
const SERVICE_KIND: &str = "service";
