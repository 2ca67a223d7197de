//! The servers the official conformance suites expect: a raw Engine.IO echo, and the
//! Socket.IO test handlers (PROTOCOL.md, "Conformance settings").

use crate::codec::payload::OutPacket;
use crate::config::Config;
use crate::engineio::{Engine, Event as EngineEvent, TransportInput};
use crate::host::{Input, Output};
use crate::outbox::Outbox;
use crate::rng::Rng;
use crate::service::{Machine, Metrics};
use crate::snapshot::{self, SnapshotError};
use crate::socketio::{Event, Handler, Io, Message, SocketId};
use crate::time::Instant;
use bytes::{BufMut, BytesMut};
use serde_json::Value;

/// Engine.IO with no Socket.IO on top: every message goes back as it came.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct EngineEcho {
    engine: Engine,
    now: Instant,
    /// Drained by the host after every step, so empty in a snapshot.
    #[serde(skip)]
    out: Outbox,
}

impl EngineEcho {
    #[must_use]
    pub fn new(config: Config, seed: [u8; 32], now: Instant) -> Self {
        EngineEcho { engine: Engine::new(&config, Rng::new(seed)), now, out: Outbox::default() }
    }

    /// An echo machine from its [`Machine::snapshot`].
    pub fn restore(bytes: &[u8], now: Instant) -> Result<Self, SnapshotError> {
        let mut echo: EngineEcho = snapshot::decode(ECHO_KIND, bytes)?;
        echo.now = echo.now.max(now);
        Ok(echo)
    }

    /// The engine inside, for checks in tests and fuzz targets.
    #[cfg(any(test, fuzzing))]
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn echo(&mut self) {
        while let Some(ev) = self.engine.poll_event() {
            match ev {
                EngineEvent::Text(s, text) => {
                    let mut b = BytesMut::with_capacity(text.len() + 1);
                    b.put_u8(b'4');
                    b.extend_from_slice(text.as_bytes());
                    self.engine.send(&mut self.out, s, OutPacket::Text(b.freeze()));
                }
                EngineEvent::Binary(s, bin) => self.engine.send(&mut self.out, s, OutPacket::Binary(bin)),
                EngineEvent::Opened(_) | EngineEvent::Closed(..) => {}
            }
        }
        self.engine.flush(&mut self.out);
    }
}

impl Machine for EngineEcho {
    fn handle(&mut self, input: Input<'_>, now: Instant) {
        self.now = self.now.max(now);
        let transport = match input {
            Input::Request(req) => TransportInput::Request(req),
            Input::Frame { conn, frame } => TransportInput::Frame { conn, frame },
            Input::Ended { conn, how } => TransportInput::Ended { conn, how },
            Input::Shutdown => TransportInput::Shutdown,
            // An engine alone has no HTTP API.
            Input::Api(req) => {
                let body = crate::errors::ErrorCode::NotFound.body("not found").to_string();
                return self.out.respond_json(req.conn, 404, body);
            }
            // The layers above handle these; an engine alone ignores them.
            Input::WallClock { .. } | Input::Stored { .. } | Input::Cluster(_) => return,
        };
        self.engine.handle(&mut self.out, transport, self.now);
        self.echo();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.engine.handle_timeout(&mut self.out, self.now);
        self.echo();
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.engine.poll_timeout()
    }

    fn metrics(&self) -> Metrics {
        Metrics { connections: self.engine.session_count(), traffic: self.engine.traffic(), ..Metrics::default() }
    }

    fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        Ok(snapshot::encode(ECHO_KIND, self))
    }
}

const ECHO_KIND: &str = "echo";

/// Namespaces `/` and `/custom`: `auth` on connect, `message` → `message-back`,
/// `message-with-ack` → an ack with the same arguments.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ConformanceApp;

impl ConformanceApp {
    #[must_use]
    pub fn new() -> Self {
        ConformanceApp
    }
}

impl Handler for ConformanceApp {
    type Auth = ();

    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == "/" || nsp == "/custom"
    }

    fn on_connect(&mut self, io: &mut Io<'_>, socket: &SocketId, auth: &Value, (): (), _recovered: bool, now: Instant) {
        io.emit_to(socket, &Message::new("auth", vec![auth.clone()]), now);
    }

    fn kind(&self) -> &'static str {
        "conformance"
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(snapshot::encode("conformance", self))
    }

    fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        snapshot::decode("conformance", bytes)
    }

    fn on_event(&mut self, io: &mut Io<'_>, socket: &SocketId, event: Event, now: Instant) {
        match (event.name.as_str(), event.ack) {
            ("message", _) => {
                let msg = Message::new("message-back", event.args).with_binary(event.binary);
                io.emit_to(socket, &msg, now);
            }
            ("message-with-ack", Some(id)) => io.ack(socket, id, &event.args, &event.binary),
            _ => {}
        }
    }
}
