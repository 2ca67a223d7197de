//! Engine.IO v4 sessions: handshake, heartbeat, the polling slots, the upgrade to
//! WebSocket, and why a session ended.
//!
//! The engine turns transport inputs ([`TransportInput`]) into [`Event`]s for the layer
//! above (a session opened, a message arrived, a session closed) and turns that layer's
//! sends into host [`Output`]s, which it puts in the core's one [`Outbox`].
//! It knows nothing of namespaces.

#[cfg(any(test, fuzzing))]
mod invariants;
pub mod query;
mod ratelimit;

use crate::codec::engineio::{self as packet, out as canned, Packet};
use crate::codec::payload::{self, Item, OutPacket};
use crate::config::Config;
use crate::host::{ConnId, Frame, Method, OutFrame, Output, Request, TransportEnd, TEXT_PLAIN};
use crate::idhash::IdMap;
use crate::outbox::Outbox;
use crate::rng::Rng;
use crate::time::{Instant, Timers};
use bytes::Bytes;
use query::{Query, Refusal};
use std::collections::{HashMap, VecDeque};

/// What the engine is told: the host's inputs about transports, and nothing else (the
/// layers above take the store's answers, API requests and the wall clock).
#[derive(Clone, Debug)]
pub enum TransportInput<'a> {
    Request(Request<'a>),
    Frame { conn: ConnId, frame: Frame<'a> },
    Ended { conn: ConnId, how: TransportEnd },
    Shutdown,
}

/// The engine's handle for a session (the `sid` string is only for the wire).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct SessionId(pub u64);

/// Why a session ended, with the name Socket.IO gives that reason.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum CloseReason {
    /// The client closed the transport or sent a close packet.
    TransportClose,
    /// The transport failed: an aborted poll, a broken socket, a client that does not read.
    TransportError,
    PingTimeout,
    /// The client sent something that is not Engine.IO.
    ParseError,
    /// The server closed it (an invalid Socket.IO packet, a connect timeout).
    ForcedClose,
    ServerShuttingDown,
}

impl CloseReason {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShuttingDown => "server shutting down",
        }
    }
}

/// What the engine tells the layer above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Opened(SessionId),
    /// The payload of a text message packet (after the `4`).
    Text(SessionId, String),
    Binary(SessionId, Bytes),
    Closed(SessionId, CloseReason),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Transport {
    Polling,
    WebSocket(ConnId),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Role {
    /// A long-poll GET waiting for packets.
    PollGet,
    /// The session's WebSocket.
    WebSocket,
    /// A WebSocket probing an upgrade.
    Probe,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
enum Timer {
    Ping,
    PongTimeout,
    Upgrade,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Probe {
    conn: ConnId,
    /// `2probe` arrived and was answered: polling is paused until `5`.
    probed: bool,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Session {
    sid: String,
    transport: Transport,
    pending_get: Option<ConnId>,
    probe: Option<Probe>,
    /// Packets waiting for a GET (or for the upgrade to finish).
    buffer: VecDeque<OutPacket>,
    buffered_bytes: usize,
    awaiting_pong: bool,
}

/// Counters for metrics, by direction.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
}

/// All Engine.IO sessions of a node.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Engine {
    ping_interval: u64,
    ping_timeout: u64,
    upgrade_timeout: u64,
    max_payload: usize,
    max_buffered: usize,
    max_sessions: usize,
    rng: Rng,
    next_session: u64,
    sessions: IdMap<SessionId, Session>,
    by_sid: HashMap<String, SessionId>,
    conns: IdMap<ConnId, (SessionId, Role)>,
    timers: Timers<(SessionId, Timer)>,
    // Drained by the layer above after every step, so empty in a snapshot.
    #[serde(skip)]
    events: VecDeque<Event>,
    /// Polling sessions that got packets during this step; answered by [`Engine::flush`].
    #[serde(skip)]
    dirty: Vec<SessionId>,
    shutting_down: bool,
    traffic: Traffic,
    handshakes: ratelimit::PerIp,
    #[serde(default)]
    open_per_ip: ratelimit::OpenPerIp,
}

impl Engine {
    #[must_use]
    pub fn new(config: &Config, rng: Rng) -> Self {
        Engine {
            ping_interval: config.ping_interval_ms,
            ping_timeout: config.ping_timeout_ms,
            upgrade_timeout: config.upgrade_timeout_ms,
            max_payload: config.max_payload,
            max_buffered: config.max_buffered_bytes,
            max_sessions: config.max_connections,
            rng,
            next_session: 0,
            sessions: IdMap::default(),
            by_sid: HashMap::new(),
            conns: IdMap::default(),
            timers: Timers::default(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            shutting_down: false,
            traffic: Traffic::default(),
            handshakes: ratelimit::PerIp::new(config.max_new_connections_per_ip_per_min),
            open_per_ip: ratelimit::OpenPerIp::new(config.max_sessions_per_ip),
        }
    }

    // ---- getters ----

    #[must_use]
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    #[must_use]
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// The wire `sid` of a session.
    #[must_use]
    pub fn sid(&self, s: SessionId) -> Option<&str> {
        self.sessions.get(&s).map(|x| x.sid.as_str())
    }

    /// True once the session's WebSocket carries its packets.
    #[must_use]
    pub fn is_websocket(&self, s: SessionId) -> bool {
        matches!(self.sessions.get(&s).map(|x| x.transport), Some(Transport::WebSocket(_)))
    }

    // ---- inputs ----

    /// One transport input; what it causes goes into `out`, in order.
    pub fn handle(&mut self, out: &mut Outbox, input: TransportInput<'_>, now: Instant) {
        match input {
            TransportInput::Request(req) => self.on_request(out, &req, now),
            TransportInput::Frame { conn, frame } => self.on_frame(out, conn, frame, now),
            TransportInput::Ended { conn, how } => self.on_ended(out, conn, how),
            TransportInput::Shutdown => self.shutdown(out),
        }
    }

    pub fn handle_timeout(&mut self, out: &mut Outbox, now: Instant) {
        while let Some((s, timer)) = self.timers.pop_expired(now) {
            match timer {
                Timer::Ping => {
                    if let Some(sess) = self.sessions.get_mut(&s) {
                        sess.awaiting_pong = true;
                        self.timers.set((s, Timer::PongTimeout), now.plus(self.ping_timeout));
                        self.send(out, s, OutPacket::Text(Bytes::from_static(canned::PING)));
                    }
                }
                Timer::PongTimeout => self.close(out, s, CloseReason::PingTimeout),
                Timer::Upgrade => self.abort_upgrade(out, s),
            }
        }
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- commands from the layer above ----

    /// Queues a packet: straight onto the WebSocket, or into the buffer for the next GET.
    pub fn send(&mut self, out: &mut Outbox, s: SessionId, packet: OutPacket) {
        let Some(sess) = self.sessions.get_mut(&s) else { return };
        match sess.transport {
            Transport::WebSocket(conn) => {
                self.traffic.packets_out += 1;
                self.traffic.bytes_out += packet.len() as u64;
                let frame = match packet {
                    OutPacket::Text(b) => OutFrame::Text(b),
                    OutPacket::Binary(b) => OutFrame::Binary(b),
                };
                out.push(Output::Send { conn, frame });
            }
            Transport::Polling => {
                sess.buffered_bytes += packet.len();
                sess.buffer.push_back(packet);
                if sess.buffered_bytes > self.max_buffered {
                    // A client that stops polling must not grow our memory; recovery can
                    // replay what it missed.
                    self.close(out, s, CloseReason::TransportError);
                    return;
                }
                if sess.pending_get.is_some() && sess.buffer.len() == 1 {
                    self.dirty.push(s);
                }
            }
        }
    }

    /// Closes a session from the server side.
    pub fn close(&mut self, out: &mut Outbox, s: SessionId, reason: CloseReason) {
        let answer = match reason {
            // The client asked; its pending GET ends with a noop (what the suites expect).
            CloseReason::TransportClose => Some(canned::NOOP),
            CloseReason::PingTimeout | CloseReason::TransportError => None,
            _ => Some(canned::CLOSE),
        };
        self.end_session(out, s, reason, answer);
    }

    /// Answers the GETs that have packets waiting. The host's step calls this once after
    /// all events are handled, so the packets of one step share one response.
    pub fn flush(&mut self, out: &mut Outbox) {
        for s in std::mem::take(&mut self.dirty) {
            let Some(sess) = self.sessions.get_mut(&s) else { continue };
            if sess.transport != Transport::Polling || sess.probe.as_ref().is_some_and(|p| p.probed) {
                continue;
            }
            if sess.buffer.is_empty() {
                continue;
            }
            if let Some(conn) = sess.pending_get.take() {
                self.conns.remove(&conn);
                let body = Self::drain_buffer(&mut self.traffic, sess);
                out.push(respond_text(conn, body));
            }
        }
    }

    /// Closes every session, telling each client, and refuses new ones.
    pub fn shutdown(&mut self, out: &mut Outbox) {
        self.shutting_down = true;
        let all: Vec<SessionId> = self.sessions.keys().copied().collect();
        for s in all {
            self.close(out, s, CloseReason::ServerShuttingDown);
        }
    }

    // ---- internals ----

    fn drain_buffer(traffic: &mut Traffic, sess: &mut Session) -> Bytes {
        traffic.packets_out += sess.buffer.len() as u64;
        let body = payload::encode(&sess.buffer);
        traffic.bytes_out += body.len() as u64;
        sess.buffer.clear();
        sess.buffered_bytes = 0;
        body
    }

    fn on_request(&mut self, out: &mut Outbox, req: &Request<'_>, now: Instant) {
        let q = Query::parse(req.query);
        let conn = req.conn;
        match q.transport {
            Some("polling") if !req.websocket => {}
            Some("websocket") => {}
            Some("polling") => return self.refuse(out, conn, Refusal::BadRequest),
            _ => return self.refuse(out, conn, Refusal::UnknownTransport),
        }
        if q.eio != Some("4") {
            return self.refuse(out, conn, Refusal::UnsupportedProtocolVersion);
        }
        let websocket = q.transport == Some("websocket");
        match q.sid {
            None => {
                if req.method != Method::Get {
                    return self.refuse(out, conn, Refusal::BadHandshakeMethod);
                }
                if websocket && !req.websocket {
                    return self.refuse(out, conn, Refusal::BadRequest);
                }
                if self.shutting_down || self.sessions.len() >= self.max_sessions {
                    return self.refuse(out, conn, Refusal::TooManyConnections);
                }
                if let Some(ip) = req.remote {
                    if !self.open_per_ip.has_room(ip) || !self.handshakes.allow(ip, now) {
                        return self.refuse(out, conn, Refusal::Forbidden);
                    }
                    self.open_per_ip.open(self.next_session, ip);
                }
                self.handshake(out, conn, websocket, now);
            }
            Some(sid) => {
                // A sid whose session is missing can only come from a damaged snapshot;
                // it is unknown, not a panic.
                let Some(s) = self.by_sid.get(sid).copied().filter(|s| self.sessions.contains_key(s)) else {
                    return self.refuse(out, conn, Refusal::UnknownSid);
                };
                if websocket {
                    if !req.websocket {
                        return self.refuse(out, conn, Refusal::BadRequest);
                    }
                    self.start_upgrade(out, s, conn, now);
                } else if req.method == Method::Get {
                    self.poll(out, s, conn);
                } else if req.method == Method::Post {
                    if req.too_large || req.body.len() > self.max_payload {
                        self.refuse(out, conn, Refusal::PayloadTooLarge);
                        return self.close(out, s, CloseReason::TransportError);
                    }
                    self.post(out, s, conn, req.body, now);
                } else {
                    self.refuse(out, conn, Refusal::BadRequest);
                }
            }
        }
    }

    fn refuse(&mut self, out: &mut Outbox, conn: ConnId, why: Refusal) {
        out.push(why.response(conn));
    }

    fn handshake(&mut self, out: &mut Outbox, conn: ConnId, websocket: bool, now: Instant) {
        let s = SessionId(self.next_session);
        self.next_session += 1;
        let mut sid = self.rng.id();
        while self.by_sid.contains_key(&sid) {
            sid = self.rng.id();
        }
        let open = format!(
            r#"0{{"sid":"{sid}","upgrades":[{}],"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
            if websocket { "" } else { "\"websocket\"" },
            self.ping_interval,
            self.ping_timeout,
            self.max_payload
        );
        let transport = if websocket {
            self.conns.insert(conn, (s, Role::WebSocket));
            out.push(Output::Accept { conn });
            out.push(Output::Send { conn, frame: OutFrame::Text(Bytes::from(open)) });
            Transport::WebSocket(conn)
        } else {
            out.push(respond_text(conn, Bytes::from(open)));
            Transport::Polling
        };
        self.by_sid.insert(sid.clone(), s);
        self.sessions.insert(
            s,
            Session {
                sid,
                transport,
                pending_get: None,
                probe: None,
                buffer: VecDeque::new(),
                buffered_bytes: 0,
                awaiting_pong: false,
            },
        );
        self.timers.set((s, Timer::Ping), now.plus(self.ping_interval));
        self.events.push_back(Event::Opened(s));
    }

    fn poll(&mut self, out: &mut Outbox, s: SessionId, conn: ConnId) {
        let sess = self.sessions.get_mut(&s).expect("looked up by the caller");
        if sess.transport != Transport::Polling {
            return self.refuse(out, conn, Refusal::BadRequest);
        }
        if let Some(old) = sess.pending_get {
            // Two GETs at once: the protocol's answer is to close the session.
            self.conns.remove(&old);
            sess.pending_get = None;
            out.push(respond_text(old, Bytes::from_static(canned::CLOSE)));
            self.refuse(out, conn, Refusal::BadRequest);
            return self.end_session(out, s, CloseReason::TransportError, None);
        }
        if sess.probe.as_ref().is_some_and(|p| p.probed) {
            // Upgrading: release the client's poll so it can finish the upgrade.
            return out.push(respond_text(conn, Bytes::from_static(canned::NOOP)));
        }
        if sess.buffer.is_empty() {
            sess.pending_get = Some(conn);
            self.conns.insert(conn, (s, Role::PollGet));
        } else {
            let body = Self::drain_buffer(&mut self.traffic, sess);
            out.push(respond_text(conn, body));
        }
    }

    fn post(&mut self, out: &mut Outbox, s: SessionId, conn: ConnId, body: &[u8], now: Instant) {
        if self.sessions.get(&s).map(|x| x.transport) != Some(Transport::Polling) {
            return self.refuse(out, conn, Refusal::BadRequest);
        }
        let items = match payload::decode(body) {
            Ok(items) => items,
            Err(_) => {
                self.refuse(out, conn, Refusal::BadRequest);
                return self.close(out, s, CloseReason::ParseError);
            }
        };
        out.push(respond_text(conn, Bytes::from_static(b"ok")));
        self.traffic.bytes_in += body.len() as u64;
        for item in items {
            if !self.sessions.contains_key(&s) {
                break;
            }
            match item {
                Item::Packet(p) => self.on_packet(out, s, p, now),
                Item::Binary(b) => {
                    self.traffic.packets_in += 1;
                    self.events.push_back(Event::Binary(s, Bytes::from(b)));
                }
            }
        }
    }

    /// A packet on the session's own transport (polling or its WebSocket).
    fn on_packet(&mut self, out: &mut Outbox, s: SessionId, p: Packet<'_>, now: Instant) {
        self.traffic.packets_in += 1;
        match p {
            Packet::Close => self.close(out, s, CloseReason::TransportClose),
            Packet::Pong(_) => {
                if let Some(sess) = self.sessions.get_mut(&s) {
                    if std::mem::take(&mut sess.awaiting_pong) {
                        self.timers.cancel((s, Timer::PongTimeout));
                        self.timers.set((s, Timer::Ping), now.plus(self.ping_interval));
                    }
                }
            }
            Packet::Message(text) => self.events.push_back(Event::Text(s, text.to_owned())),
            // v4 clients do not ping outside an upgrade; upgrade and noop carry nothing here.
            Packet::Ping(_) | Packet::Upgrade | Packet::Noop => {}
        }
    }

    fn start_upgrade(&mut self, out: &mut Outbox, s: SessionId, conn: ConnId, now: Instant) {
        let sess = self.sessions.get_mut(&s).expect("looked up by the caller");
        if sess.transport != Transport::Polling || sess.probe.is_some() {
            // Already upgraded (or upgrading): the reference server completes the
            // handshake and closes at once, which WebSocket clients report as a plain
            // close rather than a failed connection.
            out.push(Output::Accept { conn });
            out.push(Output::Close { conn, code: 1008, reason: "session already upgraded" });
            return;
        }
        sess.probe = Some(Probe { conn, probed: false });
        self.conns.insert(conn, (s, Role::Probe));
        out.push(Output::Accept { conn });
        self.timers.set((s, Timer::Upgrade), now.plus(self.upgrade_timeout));
    }

    fn abort_upgrade(&mut self, out: &mut Outbox, s: SessionId) {
        let Some(sess) = self.sessions.get_mut(&s) else { return };
        if let Some(probe) = sess.probe.take() {
            self.conns.remove(&probe.conn);
            out.push(Output::Close { conn: probe.conn, code: 1000, reason: "upgrade timeout" });
            if !sess.buffer.is_empty() {
                self.dirty.push(s);
            }
        }
        self.timers.cancel((s, Timer::Upgrade));
    }

    fn on_frame(&mut self, out: &mut Outbox, conn: ConnId, frame: Frame<'_>, now: Instant) {
        let Some(&(s, role)) = self.conns.get(&conn) else { return };
        match role {
            Role::WebSocket => match frame {
                Frame::Text(text) => {
                    self.traffic.bytes_in += text.len() as u64;
                    match packet::decode(text) {
                        Ok(p) => self.on_packet(out, s, p, now),
                        Err(_) => self.close(out, s, CloseReason::ParseError),
                    }
                }
                Frame::Binary(bin) => {
                    self.traffic.packets_in += 1;
                    self.traffic.bytes_in += bin.len() as u64;
                    self.events.push_back(Event::Binary(s, Bytes::copy_from_slice(bin)));
                }
            },
            Role::Probe => self.on_probe_frame(out, s, conn, frame),
            Role::PollGet => {}
        }
    }

    fn on_probe_frame(&mut self, out: &mut Outbox, s: SessionId, conn: ConnId, frame: Frame<'_>) {
        let Some(sess) = self.sessions.get_mut(&s) else { return };
        let Some(probe) = sess.probe.as_mut() else { return };
        match frame {
            Frame::Text("2probe") if !probe.probed => {
                probe.probed = true;
                out.push(Output::Send { conn, frame: OutFrame::Text(Bytes::from_static(canned::PONG_PROBE)) });
                if let Some(get) = sess.pending_get.take() {
                    self.conns.remove(&get);
                    out.push(respond_text(get, Bytes::from_static(canned::NOOP)));
                }
            }
            Frame::Text("5") if probe.probed => {
                sess.probe = None;
                sess.transport = Transport::WebSocket(conn);
                self.conns.insert(conn, (s, Role::WebSocket));
                self.timers.cancel((s, Timer::Upgrade));
                if let Some(get) = sess.pending_get.take() {
                    self.conns.remove(&get);
                    out.push(respond_text(get, Bytes::from_static(canned::NOOP)));
                }
                let waiting: Vec<OutPacket> = sess.buffer.drain(..).collect();
                sess.buffered_bytes = 0;
                for p in waiting {
                    self.send(out, s, p);
                }
            }
            // Anything else on a probe is not an upgrade: drop the probe, keep the session.
            _ => self.abort_upgrade(out, s),
        }
    }

    fn on_ended(&mut self, out: &mut Outbox, conn: ConnId, how: TransportEnd) {
        let Some(&(s, role)) = self.conns.get(&conn) else { return };
        match role {
            Role::Probe => {
                if let Some(sess) = self.sessions.get_mut(&s) {
                    sess.probe = None;
                    if !sess.buffer.is_empty() {
                        self.dirty.push(s);
                    }
                }
                self.conns.remove(&conn);
                self.timers.cancel((s, Timer::Upgrade));
            }
            Role::PollGet => {
                // An aborted long poll ends the session (the protocol says so).
                if let Some(sess) = self.sessions.get_mut(&s) {
                    sess.pending_get = None;
                }
                self.conns.remove(&conn);
                self.end_session(out, s, CloseReason::TransportError, None);
            }
            Role::WebSocket => {
                self.conns.remove(&conn);
                let reason = match how {
                    TransportEnd::Closed => CloseReason::TransportClose,
                    TransportEnd::Error | TransportEnd::Backpressure => CloseReason::TransportError,
                };
                self.end_session(out, s, reason, None);
            }
        }
    }

    /// Forgets a session at once (a later request with its sid gets 400), answers a
    /// pending GET with `answer`, closes its WebSockets and tells the layer above.
    fn end_session(&mut self, out: &mut Outbox, s: SessionId, reason: CloseReason, answer: Option<&'static [u8]>) {
        let Some(sess) = self.sessions.remove(&s) else { return };
        self.open_per_ip.close(s.0);
        self.by_sid.remove(&sess.sid);
        for t in [Timer::Ping, Timer::PongTimeout, Timer::Upgrade] {
            self.timers.cancel((s, t));
        }
        if let Some(get) = sess.pending_get {
            self.conns.remove(&get);
            let body = answer.unwrap_or(canned::CLOSE);
            out.push(respond_text(get, Bytes::from_static(body)));
        }
        if let Some(probe) = sess.probe {
            self.conns.remove(&probe.conn);
            out.push(Output::Close { conn: probe.conn, code: 1000, reason: reason.as_str() });
        }
        if let Transport::WebSocket(conn) = sess.transport {
            if self.conns.remove(&conn).is_some() {
                let code = match reason {
                    CloseReason::ServerShuttingDown => 1001,
                    CloseReason::ParseError => 1002,
                    _ => 1000,
                };
                out.push(Output::Close { conn, code, reason: reason.as_str() });
            }
        }
        self.events.push_back(Event::Closed(s, reason));
    }
}

fn respond_text(conn: ConnId, body: Bytes) -> Output {
    Output::Respond { conn, status: 200, content_type: TEXT_PLAIN, body }
}

#[cfg(test)]
mod tests;
