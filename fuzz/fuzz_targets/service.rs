//! The whole core: `Arbitrary` sequences of host inputs applied to `Service<RoomService>`
//! with small limits, in dev mode or with signed tokens, recovery on or off.
//!
//! Operations: polling and WebSocket handshakes (some from rate-limited addresses), long
//! polls, POSTs of well-formed packets or raw bytes, upgrades (probe, `2probe`, `5`), WS
//! frames of any text or bytes, well-formed Socket.IO packets for every room-service and
//! admin event with arbitrary JSON arguments (binary attachments, ack requests), transport
//! ends, time advancing through every deadline, store answers (the proper answer, a wrong
//! one, a failure) or never answering, `WallClock`, `Shutdown`, HTTP API requests and raw
//! HTTP requests. After every input the outputs are drained and checked:
//!
//! - `metrics().connections` never exceeds `max_connections`; sockets per namespace never
//!   exceed connections × `max_namespaces_per_connection`;
//! - `Respond` only to a request or API conn, once, never to one that was accepted or that
//!   the host reported ended; every request but a long poll is answered in its own step,
//!   and at most one long poll per session waits;
//! - `Accept` only to a WebSocket request, once; `Send`/`Close` only on an accepted conn
//!   that is not closed or ended;
//! - store ids are never reused;
//! - after `handle_timeout(t)`, `poll_timeout()` is `None` or later than `t`;
//! - an ack id is answered at most as many times as the client asked with it, and never
//!   one it did not ask;
//! - every queue and map of the core stays inside its configured bound
//!   (`Service::check_bounds`);
//! - after `Shutdown`: no connections, every long poll answered, every WebSocket closed,
//!   and it stays so.
#![no_main]

use arbitrary::Arbitrary;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use parlor_core::app::ratelimit::Limit;
use parlor_core::app::records::RoomAnswer;
use parlor_core::app::{AppConfig, RoomService};
use parlor_core::codec::payload;
use parlor_core::codec::socketio::{self as sio, encode, encode_args, PacketType};
use parlor_core::host::{
    ApiRequest, ConnId, Frame, Method, OutFrame, Output, Request, StoreAnswer, StoreId, StoreRequest, TransportEnd,
};
use parlor_core::{Config, Input, Instant, Machine, Service};
use parlor_fuzz::{auth_key, tokens, MemStore, Str, J, WALL_MS};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

/// `PARLOR_FUZZ_TRACE=1` prints every operation and output (to read a crash or a seed:
/// `PARLOR_FUZZ_TRACE=1 cargo +nightly fuzz run service FILE`).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("PARLOR_FUZZ_TRACE").is_some())
}

#[derive(Arbitrary, Debug)]
struct Setup {
    authed: bool,
    recovery: bool,
    per_ip_limit: bool,
    tight: bool,
    seed: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    OpenPolling {
        ip: u8,
    },
    OpenWs {
        ip: u8,
    },
    Poll {
        s: u8,
    },
    /// A POST of Engine.IO items for session `s`.
    Post {
        s: u8,
        items: Vec<PostItem>,
    },
    PostRaw {
        s: u8,
        body: Vec<u8>,
        too_large: bool,
    },
    /// A Socket.IO packet on session `s`'s transport (frames on its WebSocket, or a POST).
    Sio {
        s: u8,
        packet: SioPacket,
    },
    Pong {
        s: u8,
    },
    /// Starts an upgrade of session `s` to a new WebSocket.
    Probe {
        s: u8,
    },
    ProbeStep {
        c: u8,
        step: ProbeStep,
    },
    WsText {
        c: u8,
        text: String,
    },
    WsBinary {
        c: u8,
        data: Vec<u8>,
    },
    End {
        c: u8,
        how: How,
    },
    Advance {
        ms: Ms,
    },
    Store {
        i: u8,
        answer: Answer,
    },
    /// An answer for an id that is not (or no longer) outstanding.
    StaleStore {
        id: u16,
    },
    Wall {
        at: Wall,
    },
    Shutdown,
    Api {
        path: ApiPath,
        post: bool,
        auth: ApiAuth,
        body: J,
    },
    Raw {
        get: Option<bool>,
        query: String,
        body: Vec<u8>,
        websocket: bool,
        too_large: bool,
    },
}

#[derive(Arbitrary, Debug)]
enum PostItem {
    Sio(SioPacket),
    Pong,
    Ping,
    Noop,
    Close,
    Binary(Vec<u8>),
    Text(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ProbeStep {
    Ping,
    Upgrade,
    Other,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum How {
    Closed,
    Error,
    Backpressure,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Ms {
    Small(u8),
    Seconds(u8),
    NextDeadline,
    Long(u16),
}

#[derive(Arbitrary, Debug)]
enum Answer {
    Proper,
    Done,
    Failed,
    Updated(u8),
    Records(Vec<J>),
    Notifications(Vec<(J, bool)>),
    Document(Option<(Str, u8)>),
    /// Bytes that are no room-service answer.
    Garbage(Vec<u8>),
    /// Never answer it.
    Drop,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Wall {
    Start,
    Later(u16),
    Epoch,
    Any(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ApiPath {
    Notifications,
    Broadcast,
    Slash,
    Other,
}

#[derive(Arbitrary, Debug)]
enum ApiAuth {
    None,
    Token(u8),
    Any(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Nsp {
    Root,
    Chat,
    Admin,
    Unknown,
}

impl Nsp {
    fn name(self) -> &'static str {
        match self {
            Nsp::Root => "/",
            Nsp::Chat => "/chat",
            Nsp::Admin => "/admin",
            Nsp::Unknown => "/nope",
        }
    }
}

const EVENTS: &[&str] = &[
    "message",
    "join",
    "join-room",
    "send-message",
    "typing-start",
    "typing-stop",
    "leave-room",
    "private-message",
    "notification-read",
    "notifications-read-all",
    "join-document",
    "leave-document",
    "text-change",
    "cursor-move",
    "selection-change",
    "stats",
    "kick",
    "notify",
    "broadcast",
    "unknown-event",
];

#[derive(Arbitrary, Debug)]
enum SioPacket {
    Connect {
        nsp: Nsp,
        auth: ConnAuth,
    },
    Disconnect {
        nsp: Nsp,
    },
    Event {
        nsp: Nsp,
        event: u8,
        args: Vec<Arg>,
        ack: bool,
        binary: Vec<Vec<u8>>,
    },
    /// An ack for a server-to-client ack id (the room service asks none, so: ignored).
    Ack {
        nsp: Nsp,
        id: u8,
        args: Vec<J>,
    },
}

#[derive(Arbitrary, Debug)]
enum ConnAuth {
    None,
    Username(Str),
    Token(u8),
    /// Recover the k-th pid the run has seen, with some offset.
    Recover {
        pid: u8,
        offset: Option<Str>,
    },
    Any(J),
}

/// An event argument shaped like what the handler reads, or anything.
#[derive(Arbitrary, Debug)]
enum Arg {
    Any(J),
    Str(Str),
    Join { username: Str, room: Str },
    Room { room: Str },
    Content { room: Str, content: Str },
    Private { to: Str, content: Str },
    Doc { doc: Str },
    TextChange { doc: Str, version: Version, delta: J },
    Cursor { doc: Str, position: u16 },
    Selection { doc: Str, selection: J },
    NotificationId { id: Str },
    Kick { user: Option<Str>, socket: Str },
    Notify { user: Str, title: Str, message: Str },
    Broadcast { event: Str, room: Option<Str>, data: J },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Version {
    Small(u8),
    Any(u64),
}

impl Arg {
    fn render(&self, seen: &[String]) -> Value {
        let s = |x: &Str| x.render(seen);
        match self {
            Arg::Any(j) => j.render(seen),
            Arg::Str(x) => json!(s(x)),
            Arg::Join { username, room } => json!({"username": s(username), "room": s(room)}),
            Arg::Room { room } => json!({"room": s(room)}),
            Arg::Content { room, content } => json!({"room": s(room), "content": s(content)}),
            Arg::Private { to, content } => json!({"to": s(to), "content": s(content)}),
            Arg::Doc { doc } => json!({"docId": s(doc)}),
            Arg::TextChange { doc, version, delta } => {
                let v = match version {
                    Version::Small(v) => u64::from(*v % 8),
                    Version::Any(v) => *v,
                };
                json!({"docId": s(doc), "version": v, "delta": delta.render(seen)})
            }
            Arg::Cursor { doc, position } => json!({"docId": s(doc), "position": position}),
            Arg::Selection { doc, selection } => json!({"docId": s(doc), "selection": selection.render(seen)}),
            Arg::NotificationId { id } => json!(s(id)),
            Arg::Kick { user: Some(u), .. } => json!({"userId": s(u)}),
            Arg::Kick { user: None, socket } => json!({"socketId": s(socket)}),
            Arg::Notify { user, title, message } => {
                json!({"userId": s(user), "title": s(title), "message": s(message)})
            }
            Arg::Broadcast { event, room, data } => match room {
                Some(r) => json!({"event": s(event), "room": s(r), "data": data.render(seen)}),
                None => json!({"event": s(event), "data": data.render(seen)}),
            },
        }
    }
}

/// What the harness knows of a session it opened.
#[derive(Debug)]
struct Session {
    sid: String,
    /// The WebSocket carrying it, once it has one.
    ws: Option<ConnId>,
    /// Ack ids for the harness's own requests, fresh for each.
    next_ack: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum ConnKind {
    /// A request; `ws` if it asked to upgrade, `long_poll` if it may wait for packets.
    Request {
        ws: bool,
        long_poll: bool,
    },
    Api,
}

#[derive(Debug, Default)]
struct ConnState {
    responded: bool,
    accepted: bool,
    closed: bool,
    ended: bool,
}

struct Run {
    core: Service<RoomService>,
    config: Config,
    now: Instant,
    next_conn: u64,
    sessions: Vec<Session>,
    /// Every conn the harness made, with what it is and what happened to it.
    conns: HashMap<ConnId, (ConnKind, ConnState)>,
    /// Conn → index in `sessions`, for conns carrying one (long polls, WebSockets, probes).
    conn_session: HashMap<ConnId, usize>,
    /// Conns a transport end or a frame can be aimed at, in order of creation.
    live: Vec<ConnId>,
    store: MemStore,
    outstanding: Vec<(StoreId, StoreRequest)>,
    store_ids: HashSet<StoreId>,
    /// Socket ids (and user ids) seen in CONNECT answers; pids for recovery.
    seen: Vec<String>,
    pids: Vec<String>,
    /// (session, nsp, ack id) → times asked, times answered.
    acks: HashMap<(usize, String, u64), (u32, u32)>,
    shut_down: bool,
}

fn limit(capacity: u32, window_ms: u64) -> Limit {
    Limit { capacity, window_ms }
}

impl Run {
    fn new(setup: &Setup) -> Run {
        let config = Config {
            ping_interval_ms: 2_000,
            ping_timeout_ms: 1_000,
            upgrade_timeout_ms: 500,
            connect_timeout_ms: 3_000,
            max_payload: if setup.tight { 300 } else { 4_000 },
            max_attachments: 3,
            // Held attachments pass the budget or the deadline within a few inputs.
            attachment_timeout_ms: 1_500,
            attachment_budget_bytes: if setup.tight { 200 } else { 3_000 },
            max_buffered_bytes: if setup.tight { 400 } else { 8_000 },
            max_rooms_per_socket: 4,
            max_namespaces_per_connection: 2,
            max_connections: 4,
            max_new_connections_per_ip_per_min: if setup.per_ip_limit { 2 } else { 0 },
            max_sessions_per_ip: if setup.per_ip_limit { 2 } else { 0 },
            max_pending_acks: 4,
            recovery_window_ms: if setup.recovery { 5_000 } else { 0 },
            recovery_max_packets: 8,
            recovery_max_bytes: 2_000,
            recovery_max_sessions: 3,
        };
        let app = AppConfig {
            auth_keys: if setup.authed { vec![auth_key()] } else { Vec::new() },
            auth_leeway_secs: 0,
            typing_timeout_ms: 700,
            chat_limit: limit(4, 2_000),
            typing_limit: limit(6, 1_000),
            event_limit: Limit { capacity: 12, window_ms: 1_000 },
            recent_limit: 3,
            doc_log_limit: 3,
            max_doc_len: 64,
            // Small enough that logs give way and late edits run out of work budget.
            doc_log_bytes: 600,
            doc_log_total_bytes: 1_000,
            doc_transform_work: 40,
        };
        let mut seen = Vec::new();
        if setup.authed {
            seen.extend(["alice", "bob", "root"].map(str::to_owned));
        }
        let mut run = Run {
            core: Service::new(config.clone(), [setup.seed; 32], Instant(0), RoomService::new(app)),
            config,
            now: Instant(0),
            next_conn: 0,
            sessions: Vec::new(),
            conns: HashMap::new(),
            conn_session: HashMap::new(),
            live: Vec::new(),
            store: MemStore::default(),
            outstanding: Vec::new(),
            store_ids: HashSet::new(),
            seen,
            pids: Vec::new(),
            acks: HashMap::new(),
            shut_down: false,
        };
        run.input(Input::WallClock { unix_ms: WALL_MS });
        run
    }

    fn conn(&mut self, kind: ConnKind) -> ConnId {
        self.next_conn += 1;
        let c = ConnId(self.next_conn);
        self.conns.insert(c, (kind, ConnState::default()));
        c
    }

    fn session(&self, s: u8) -> Option<usize> {
        (!self.sessions.is_empty()).then(|| usize::from(s) % self.sessions.len())
    }

    /// One of the conns still open on both sides (long polls, WebSockets, probes).
    fn pick_live(&mut self, c: u8) -> Option<ConnId> {
        let conns = &self.conns;
        self.live.retain(|c| conns.get(c).is_some_and(|(_, st)| !st.closed && !st.ended && !st.responded));
        (!self.live.is_empty()).then(|| self.live[usize::from(c) % self.live.len()])
    }

    // ---- driving ----

    fn input(&mut self, input: Input<'_>) {
        self.core.handle(input, self.now);
        self.drain();
        self.check();
    }

    fn request(
        &mut self,
        method: Method,
        query: &str,
        body: &[u8],
        websocket: bool,
        too_large: bool,
        ip: u8,
    ) -> ConnId {
        let long_poll = !websocket && method == Method::Get && query.contains("sid=");
        let c = self.conn(ConnKind::Request { ws: websocket, long_poll });
        let remote = (!ip.is_multiple_of(4)).then(|| IpAddr::V4(Ipv4Addr::new(10, 0, 0, ip % 4)));
        let req = Request { conn: c, method, query, body, too_large, websocket, remote };
        self.input(Input::Request(req));
        let (_, st) = &self.conns[&c];
        assert!(st.responded || st.accepted || long_poll, "request {query:?} not answered in its step");
        if !st.responded {
            self.live.push(c);
        }
        c
    }

    fn frame(&mut self, conn: ConnId, frame: Frame<'_>) {
        self.input(Input::Frame { conn, frame });
    }

    fn advance(&mut self, ms: u64) {
        let end = self.now.plus(ms);
        while let Some(t) = self.core.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.timeout();
        }
        self.now = end;
        self.timeout();
    }

    fn timeout(&mut self) {
        self.core.handle_timeout(self.now);
        self.drain();
        self.check();
        if let Some(t) = self.core.poll_timeout() {
            assert!(t > self.now, "poll_timeout {t:?} not after handle_timeout({:?})", self.now);
        }
    }

    fn answer(&mut self, i: u8, answer: &Answer) {
        if self.outstanding.is_empty() {
            return;
        }
        let (id, request) = self.outstanding.remove(usize::from(i) % self.outstanding.len());
        let answer = match answer {
            Answer::Proper => self.store.answer(&request),
            Answer::Done => RoomAnswer::Done.into(),
            Answer::Failed => StoreAnswer::Failed("store is down".into()),
            Answer::Updated(n) => RoomAnswer::Updated(u64::from(*n)).into(),
            Answer::Records(r) => {
                RoomAnswer::Messages(r.iter().map(|j| j.render(&self.seen).to_string()).collect()).into()
            }
            Answer::Notifications(r) => {
                RoomAnswer::Notifications(r.iter().map(|(j, read)| (j.render(&self.seen).to_string(), *read)).collect())
                    .into()
            }
            Answer::Document(None) => RoomAnswer::Document(None).into(),
            Answer::Document(Some((text, v))) => {
                RoomAnswer::Document(Some((text.render(&self.seen), u64::from(*v)))).into()
            }
            Answer::Garbage(bytes) => StoreAnswer::Done(bytes.clone().into()),
            Answer::Drop => return,
        };
        self.input(Input::Stored { id, answer });
    }

    // ---- outputs and invariants ----

    fn drain(&mut self) {
        while let Some(o) = self.core.poll_output() {
            self.output(o);
        }
    }

    fn output(&mut self, o: Output) {
        if trace() {
            eprintln!("  <- {o:?}");
        }
        match o {
            Output::Store { id, request } => {
                assert!(self.store_ids.insert(id), "store id {id:?} reused");
                self.outstanding.push((id, request));
            }
            Output::Respond { conn, body, .. } => {
                let (kind, st) = self.conns.get_mut(&conn).unwrap_or_else(|| panic!("Respond to unknown {conn:?}"));
                assert!(!st.responded, "{conn:?} answered twice");
                assert!(!st.accepted, "{conn:?} answered after being accepted");
                assert!(!st.ended, "{conn:?} answered after the host said it ended");
                st.responded = true;
                if *kind == ConnKind::Api {
                    return;
                }
                // A handshake answer: learn the sid. A long-poll answer: read its packets.
                if body.first() == Some(&b'0') {
                    if let Some(sid) = sid_of(&body) {
                        self.sessions.push(Session { sid, ws: None, next_ack: 1_000_000 });
                    }
                } else if let Some(&s) = self.conn_session.get(&conn) {
                    if let Ok(text) = std::str::from_utf8(&body) {
                        for part in text.split('\u{1e}') {
                            self.server_packet(s, part);
                        }
                    }
                }
            }
            Output::Accept { conn } => {
                let (kind, st) = self.conns.get_mut(&conn).unwrap_or_else(|| panic!("Accept of unknown {conn:?}"));
                assert!(matches!(kind, ConnKind::Request { ws: true, .. }), "Accept of a non-WebSocket {conn:?}");
                assert!(!st.accepted && !st.responded && !st.ended, "{conn:?} accepted twice or late");
                st.accepted = true;
            }
            Output::Send { conn, frame } => {
                let st = self.ws_state(conn, "Send");
                assert!(!st.closed, "Send on {conn:?} after its Close");
                if let OutFrame::Text(t) = frame {
                    let Ok(text) = std::str::from_utf8(&t) else { panic!("text frame not UTF-8") };
                    if text.starts_with('0') && !self.conn_session.contains_key(&conn) {
                        if let Some(sid) = sid_of(text.as_bytes()) {
                            self.conn_session.insert(conn, self.sessions.len());
                            self.sessions.push(Session { sid, ws: Some(conn), next_ack: 1_000_000 });
                        }
                    } else if let Some(&s) = self.conn_session.get(&conn) {
                        self.server_packet(s, text);
                    }
                }
            }
            Output::Close { conn, .. } => {
                let st = self.ws_state(conn, "Close");
                assert!(!st.closed, "{conn:?} closed twice");
                st.closed = true;
            }
        }
    }

    fn ws_state(&mut self, conn: ConnId, what: &str) -> &mut ConnState {
        let (_, st) = self.conns.get_mut(&conn).unwrap_or_else(|| panic!("{what} on unknown {conn:?}"));
        assert!(st.accepted, "{what} on {conn:?}, never accepted");
        assert!(!st.ended, "{what} on {conn:?} after the host said it ended");
        st
    }

    /// One Engine.IO packet from the server on session `s`: learn ids, count ack answers.
    fn server_packet(&mut self, s: usize, text: &str) {
        let Some(p) = text.strip_prefix('4') else { return };
        let Ok(p) = sio::decode(p, usize::MAX) else {
            // CONNECT_ERROR is not a client packet; the decoder refuses it. Nothing to learn.
            return;
        };
        match p.kind {
            PacketType::Connect => {
                if let Some(d) = &p.data {
                    if let Some(sid) = d.get("sid").and_then(Value::as_str) {
                        self.seen.push(sid.to_owned());
                    }
                    if let Some(pid) = d.get("pid").and_then(Value::as_str) {
                        self.pids.push(pid.to_owned());
                    }
                }
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let id = p.id.expect("an ack carries its id");
                let e = self.acks.entry((s, p.nsp.clone(), id)).or_default();
                e.1 += 1;
                assert!(e.1 <= e.0, "ack {id} on {} of session {s} answered {} times, asked {}", p.nsp, e.1, e.0);
            }
            _ => {}
        }
    }

    /// Records the ack requests in what the harness sends on session `s`.
    fn client_text(&mut self, s: usize, text: &str) {
        let Some(p) = text.strip_prefix('4') else { return };
        if let Ok(p) = sio::decode(p, usize::MAX) {
            if let (PacketType::Event | PacketType::BinaryEvent, Some(id)) = (p.kind, p.id) {
                self.acks.entry((s, p.nsp, id)).or_default().0 += 1;
            }
        }
    }

    fn check(&self) {
        if let Err(e) = self.core.check_bounds() {
            panic!("out of bounds: {e}");
        }
        let m = self.core.metrics();
        assert!(m.connections <= self.config.max_connections, "{} connections", m.connections);
        for (nsp, sockets, _) in &m.namespaces {
            assert!(
                *sockets <= m.connections * self.config.max_namespaces_per_connection,
                "{sockets} sockets in {nsp} over {} connections",
                m.connections
            );
        }
        let mut waiting = 0;
        for (kind, st) in self.conns.values() {
            if let ConnKind::Request { long_poll: true, .. } = kind {
                waiting += usize::from(!st.responded && !st.ended);
            }
        }
        assert!(waiting <= m.connections, "{waiting} long polls wait on {} sessions", m.connections);
        if self.shut_down {
            assert_eq!(m.connections, 0, "connections after shutdown");
            for (c, (kind, st)) in &self.conns {
                if let ConnKind::Request { .. } = kind {
                    let open = if st.accepted { !st.closed } else { !st.responded };
                    assert!(!open || st.ended, "{c:?} still open after shutdown: {kind:?} {st:?}");
                }
            }
        }
    }

    // ---- operations ----

    fn apply(&mut self, op: &Op) {
        if trace() {
            eprintln!("[{}ms] {op:?}", self.now.0);
        }
        match op {
            Op::OpenPolling { ip } => {
                self.request(Method::Get, "EIO=4&transport=polling", b"", false, false, *ip);
            }
            Op::OpenWs { ip } => {
                self.request(Method::Get, "EIO=4&transport=websocket", b"", true, false, *ip);
            }
            Op::Poll { s } => {
                let Some(s) = self.session(*s) else { return };
                let q = format!("EIO=4&transport=polling&sid={}", self.sessions[s].sid);
                let c = self.next_conn + 1;
                self.conn_session.insert(ConnId(c), s);
                self.request(Method::Get, &q, b"", false, false, 0);
            }
            Op::Post { s, items } => {
                let Some(s) = self.session(*s) else { return };
                let mut parts: Vec<String> = Vec::new();
                for item in items {
                    match item {
                        PostItem::Sio(p) => {
                            for (text, bin) in self.render(s, p) {
                                match bin {
                                    None => parts.push(format!("4{text}")),
                                    Some(b) => parts.push(format!("b{}", STANDARD.encode(b))),
                                }
                            }
                        }
                        PostItem::Pong => parts.push("3".into()),
                        PostItem::Ping => parts.push("2".into()),
                        PostItem::Noop => parts.push("6".into()),
                        PostItem::Close => parts.push("1".into()),
                        PostItem::Binary(b) => parts.push(format!("b{}", STANDARD.encode(b))),
                        PostItem::Text(t) => parts.push(t.clone()),
                    }
                }
                let body = parts.join("\u{1e}");
                self.post(s, body.as_bytes(), false);
            }
            Op::PostRaw { s, body, too_large } => {
                let Some(s) = self.session(*s) else { return };
                self.post(s, body, *too_large);
            }
            Op::Sio { s, packet } => {
                let Some(s) = self.session(*s) else { return };
                let frames = self.render(s, packet);
                match self.sessions[s].ws {
                    Some(ws) => {
                        for (text, bin) in frames {
                            match bin {
                                None => {
                                    let text = format!("4{text}");
                                    self.client_text(s, &text);
                                    self.frame(ws, Frame::Text(&text));
                                }
                                Some(b) => self.frame(ws, Frame::Binary(&b)),
                            }
                        }
                    }
                    None => {
                        let body: Vec<String> = frames
                            .into_iter()
                            .map(|(text, bin)| match bin {
                                None => format!("4{text}"),
                                Some(b) => format!("b{}", STANDARD.encode(b)),
                            })
                            .collect();
                        self.post(s, body.join("\u{1e}").as_bytes(), false);
                    }
                }
            }
            Op::Pong { s } => {
                let Some(s) = self.session(*s) else { return };
                match self.sessions[s].ws {
                    Some(ws) => self.frame(ws, Frame::Text("3")),
                    None => self.post(s, b"3", false),
                }
            }
            Op::Probe { s } => {
                let Some(s) = self.session(*s) else { return };
                let q = format!("EIO=4&transport=websocket&sid={}", self.sessions[s].sid);
                let c = self.next_conn + 1;
                self.conn_session.insert(ConnId(c), s);
                self.request(Method::Get, &q, b"", true, false, 0);
            }
            Op::ProbeStep { c, step } => {
                let Some(conn) = self.pick_live(*c) else { return };
                let text = match step {
                    ProbeStep::Ping => "2probe",
                    ProbeStep::Upgrade => "5",
                    ProbeStep::Other => "2",
                };
                self.frame(conn, Frame::Text(text));
                // After `5` on a live probe the session rides this WebSocket.
                if let (ProbeStep::Upgrade, Some(&s)) = (step, self.conn_session.get(&conn)) {
                    if self.conns.get(&conn).is_some_and(|(_, st)| st.accepted && !st.closed) {
                        self.sessions[s].ws = Some(conn);
                    }
                }
            }
            Op::WsText { c, text } => {
                let Some(conn) = self.pick_live(*c) else { return };
                if let Some(&s) = self.conn_session.get(&conn) {
                    self.client_text(s, text);
                }
                self.frame(conn, Frame::Text(text));
            }
            Op::WsBinary { c, data } => {
                let Some(conn) = self.pick_live(*c) else { return };
                self.frame(conn, Frame::Binary(data));
            }
            Op::End { c, how } => {
                let Some(conn) = self.pick_live(*c) else { return };
                let how = match how {
                    How::Closed => TransportEnd::Closed,
                    How::Error => TransportEnd::Error,
                    How::Backpressure => TransportEnd::Backpressure,
                };
                if let Some((_, st)) = self.conns.get_mut(&conn) {
                    st.ended = true;
                }
                self.input(Input::Ended { conn, how });
            }
            Op::Advance { ms } => {
                let ms = match ms {
                    Ms::Small(n) => u64::from(*n),
                    Ms::Seconds(n) => u64::from(*n % 16) * 1_000,
                    Ms::NextDeadline => self.core.poll_timeout().map_or(1, |t| t.since(self.now)),
                    Ms::Long(n) => u64::from(*n) * 10,
                };
                self.advance(ms);
            }
            Op::Store { i, answer } => self.answer(*i, answer),
            Op::StaleStore { id } => {
                let id = StoreId(u64::from(*id) + 1_000_000);
                self.input(Input::Stored { id, answer: RoomAnswer::Done.into() });
            }
            Op::Wall { at } => {
                let unix_ms = match at {
                    Wall::Start => WALL_MS,
                    Wall::Later(s) => WALL_MS + u64::from(*s) * 1_000,
                    Wall::Epoch => 0,
                    Wall::Any(n) => *n,
                };
                self.input(Input::WallClock { unix_ms });
            }
            Op::Shutdown => {
                self.shut_down = true;
                self.input(Input::Shutdown);
            }
            Op::Api { path, post, auth, body } => {
                let c = self.conn(ConnKind::Api);
                let path = match path {
                    ApiPath::Notifications => "notifications",
                    ApiPath::Broadcast => "broadcast",
                    ApiPath::Slash => "notifications/",
                    ApiPath::Other => "other",
                };
                let t = tokens();
                let header = match auth {
                    ApiAuth::None => None,
                    ApiAuth::Token(i) => Some(format!("Bearer {}", t[usize::from(*i) % t.len()])),
                    ApiAuth::Any(s) => Some(s.clone()),
                };
                let body = body.render(&self.seen).to_string();
                let method = if *post { Method::Post } else { Method::Get };
                let req = ApiRequest { conn: c, method, path, authorization: header.as_deref(), body: body.as_bytes() };
                self.input(Input::Api(req));
            }
            Op::Raw { get, query, body, websocket, too_large } => {
                let method = match get {
                    Some(true) => Method::Get,
                    Some(false) => Method::Post,
                    None => Method::Other,
                };
                self.request(method, query, body, *websocket, *too_large, 1);
            }
        }
    }

    fn post(&mut self, s: usize, body: &[u8], too_large: bool) {
        if let Ok(items) = payload::decode(body) {
            for item in items {
                if let payload::Item::Packet(parlor_core::codec::engineio::Packet::Message(m)) = item {
                    self.client_text(s, &format!("4{m}"));
                }
            }
        }
        let q = format!("EIO=4&transport=polling&sid={}", self.sessions[s].sid);
        self.request(Method::Post, &q, body, false, too_large, 0);
    }

    /// A Socket.IO packet as the frames a client sends: (text without the Engine.IO `4`,
    /// or a binary attachment).
    fn render(&mut self, s: usize, p: &SioPacket) -> Vec<(String, Option<Vec<u8>>)> {
        let seen = self.seen.clone();
        let text = |b: Vec<u8>| String::from_utf8(b).expect("the encoder writes UTF-8");
        match p {
            SioPacket::Connect { nsp, auth } => {
                let t = tokens();
                let data = match auth {
                    ConnAuth::None => None,
                    ConnAuth::Username(u) => Some(json!({"username": u.render(&seen)})),
                    ConnAuth::Token(i) => Some(json!({"token": t[usize::from(*i) % t.len()]})),
                    ConnAuth::Recover { pid, offset } => {
                        let pid = if self.pids.is_empty() {
                            "unknown".to_owned()
                        } else {
                            self.pids[usize::from(*pid) % self.pids.len()].clone()
                        };
                        let mut d = json!({"pid": pid, "token": t[0]});
                        if let Some(o) = offset {
                            d["offset"] = json!(o.render(&seen));
                        }
                        Some(d)
                    }
                    ConnAuth::Any(j) => Some(j.render(&seen)).filter(Value::is_object),
                };
                vec![(text(encode(PacketType::Connect, nsp.name(), None, data.as_ref(), 0)[1..].to_vec()), None)]
            }
            SioPacket::Disconnect { nsp } => {
                vec![(text(encode(PacketType::Disconnect, nsp.name(), None, None, 0)[1..].to_vec()), None)]
            }
            SioPacket::Event { nsp, event, args, ack, binary } => {
                let name = EVENTS[usize::from(*event) % EVENTS.len()];
                let binary = &binary[..binary.len().min(self.config.max_attachments)];
                let mut args: Vec<Value> = args.iter().take(3).map(|a| a.render(&seen)).collect();
                args.extend((0..binary.len()).map(|i| json!({"_placeholder": true, "num": i})));
                let id = ack.then(|| {
                    let sess = &mut self.sessions[s];
                    sess.next_ack += 1;
                    sess.next_ack
                });
                let t = encode_args(PacketType::Event, nsp.name(), id, Some(name), &args, None, binary.len());
                let mut out = vec![(text(t[1..].to_vec()), None)];
                out.extend(binary.iter().map(|b| (String::new(), Some(b.clone()))));
                out
            }
            SioPacket::Ack { nsp, id, args } => {
                let args: Vec<Value> = args.iter().take(3).map(|a| a.render(&seen)).collect();
                let t = encode_args(PacketType::Ack, nsp.name(), Some(u64::from(*id)), None, &args, None, 0);
                vec![(text(t[1..].to_vec()), None)]
            }
        }
    }
}

fn sid_of(open: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(open.get(1..)?).ok()?;
    Some(v.get("sid")?.as_str()?.to_owned())
}

fuzz_target!(|input: (Setup, Vec<Op>)| {
    let (setup, ops) = input;
    let mut run = Run::new(&setup);
    for op in ops.iter().take(64) {
        run.apply(op);
    }
    // Let every timer run out: heartbeats end the sessions nobody answers.
    run.advance(10_000);
    run.advance(10_000);
});
