//! The whole core: `Arbitrary` sequences of host inputs applied to `Service<RoomService>`
//! with small limits, in dev mode or with signed tokens, recovery on or off.
//!
//! Operations: polling and WebSocket handshakes (some from rate-limited addresses), long
//! polls, POSTs of well-formed packets or raw bytes, upgrades (probe, `2probe`, `5`), WS
//! frames of any text or bytes, well-formed Socket.IO packets for every room-service and
//! admin event with arbitrary JSON arguments (binary attachments, ack requests), transport
//! ends, time advancing through every deadline, store answers (the proper answer, a wrong
//! one, a failure) or never answering, `WallClock`, `Shutdown`, HTTP API requests and raw
//! HTTP requests. The service runs in `parlor_core::testing::Host`, which drains the
//! outputs after every input and checks them (its `Contract`):
//!
//! - `metrics().connections` never exceeds `max_connections`; sockets per namespace never
//!   exceed connections × `max_namespaces_per_connection`;
//! - `Respond` only to a request or API conn, once, never to one that was accepted or that
//!   the host reported ended; every request but a long poll is answered in its own step,
//!   and at most one long poll per session waits;
//! - `Accept` only to a WebSocket request, once; `Send`/`Close` only on an accepted conn
//!   that is not closed or ended; text frames are UTF-8;
//! - store ids are never reused;
//! - after `handle_timeout(t)`, `poll_timeout()` is `None` or later than `t`;
//! - every queue and map of the core stays inside its configured bound
//!   (`Service::check_bounds`);
//! - after `Shutdown`: no connections, every long poll answered, every WebSocket closed,
//!   and it stays so.
//!
//! And this target's own: an ack id is answered at most as many times as the client asked
//! with it, and never one it did not ask.
#![no_main]

use arbitrary::Arbitrary;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use parlor_core::app::records::RoomAnswer;
use parlor_core::app::presence::User;
use parlor_core::app::peers::Shared;
use parlor_core::app::{AppConfig, RoomService};
use parlor_core::cluster::{Body, Broadcast, Envelope, NodeId};
use parlor_core::codec::payload;
use parlor_core::codec::socketio::{self as sio, encode, encode_args, PacketType};
use parlor_core::config::ClusterConfig;
use parlor_core::host::{
    ApiRequest, ClusterInput, ConnId, Frame, Method, OutFrame, Output, Request, StoreAnswer, StoreId, StoreRequest,
    TransportEnd,
};
use parlor_core::testing::{open_sid, Host};
use parlor_core::{Config, Input, Instant, Machine, Service};
use parlor_fuzz::{auth_key, small_app, tokens, MemStore, Str, J, WALL_MS};
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
    /// What a cluster link reports (the node runs in cluster mode when the setup's seed is
    /// odd): another node's broadcast into the node's rooms, raw bytes, the link's state.
    Cluster(ClusterOp),
}

#[derive(Arbitrary, Debug)]
enum ClusterOp {
    Broadcast { seq: u8, rooms: Vec<Str>, except: Vec<Str>, except_socket: Option<Str>, text: Vec<u8>, attachments: u8 },
    Raw(Vec<u8>),
    /// A room service's message from one of three other nodes: news, a question to
    /// answer, or an answer to one of this node's questions (by a small number).
    Shared { from: u8, message: SharedOp },
    Ask { from: u8, query: u8, message: SharedOp },
    Reply { from: u8, query: u8, message: SharedOp },
    /// One of the other nodes stops.
    Leaving { from: u8 },
    /// Bytes on `@socket.io/redis-emitter`'s channel for the namespace.
    Emitter(Vec<u8>),
    Up,
    Down,
}

/// The room service's presence messages between nodes, with names from the run.
#[derive(Arbitrary, Debug)]
enum SharedOp {
    Roster { nsp: bool, room: Str, version: u8, users: Vec<(Str, Str, u8)> },
    Joined { nsp: bool, room: Str, version: u8, user: (Str, Str, u8) },
    Left { nsp: bool, room: Str, version: u8, user: Str },
    RosterWanted { nsp: bool, room: Str },
    Holding { nsp: bool, rooms: Vec<Str> },
    Find { nsp: bool, to: Str },
    Found { socket: bool, user: bool },
    Stats,
    NodeStats { json: J },
    Kick { user: Option<Str>, socket: Option<Str> },
    Kicked { count: u8 },
    Sockets { nsp: bool, room: Str },
    SocketList { sockets: Vec<(Str, (Str, Str, u8))> },
    Rooms { nsp: bool },
    RoomList { rooms: Vec<(Str, u8)> },
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

struct Run {
    /// The service, its clock, conns, store and held storage requests, and the contract.
    host: Host<Service<RoomService>>,
    config: Config,
    sessions: Vec<Session>,
    /// Conn → index in `sessions`, for conns carrying one (long polls, WebSockets, probes).
    conn_session: HashMap<ConnId, usize>,
    /// Conns of API requests (their answers are not Engine.IO).
    api: HashSet<ConnId>,
    /// Socket ids (and user ids) seen in CONNECT answers; pids for recovery.
    seen: Vec<String>,
    pids: Vec<String>,
    /// (session, nsp, ack id) → times asked, times answered.
    acks: HashMap<(usize, String, u64), (u32, u32)>,
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
            cluster: (setup.seed % 2 == 1).then(|| ClusterConfig {
                node_id: "here".into(),
                prefix: "f".into(),
                heartbeat_ms: 1_000,
                node_expiry_ms: 3_000,
                query_timeout_ms: 500,
                emitter_key: Some("sio".into()),
            }),
        };
        let app = AppConfig {
            auth_keys: if setup.authed { vec![auth_key()] } else { Vec::new() },
            auth_leeway_secs: 0,
            ..small_app()
        };
        let mut seen = Vec::new();
        if setup.authed {
            seen.extend(["alice", "bob", "root"].map(str::to_owned));
        }
        let service = Service::new(config.clone(), [setup.seed; 32], Instant(0), RoomService::new(app));
        let mut host = Host::new(service).limits(&config).bounds(Service::check_bounds);
        host.trace = trace();
        let mut run = Run {
            host,
            config,
            sessions: Vec::new(),
            conn_session: HashMap::new(),
            api: HashSet::new(),
            seen,
            pids: Vec::new(),
            acks: HashMap::new(),
        };
        run.input(Input::WallClock { unix_ms: WALL_MS });
        run
    }

    fn session(&self, s: u8) -> Option<usize> {
        (!self.sessions.is_empty()).then(|| usize::from(s) % self.sessions.len())
    }

    /// One of the conns still open on both sides (long polls, WebSockets, probes).
    fn pick_live(&self, c: u8) -> Option<ConnId> {
        let live: Vec<ConnId> = self.host.open_conns().collect();
        (!live.is_empty()).then(|| live[usize::from(c) % live.len()])
    }

    // ---- driving ----

    fn input(&mut self, input: Input<'_>) {
        self.host.input(input);
        self.learn();
    }

    /// A request on a fresh conn, carrying session `session` if it is a long poll or a probe.
    #[allow(clippy::too_many_arguments)] // a request's own fields, and whose it is
    fn request(
        &mut self,
        method: Method,
        query: &str,
        body: &[u8],
        websocket: bool,
        too_large: bool,
        ip: u8,
        session: Option<usize>,
    ) {
        let conn = self.host.conn();
        if let Some(s) = session {
            self.conn_session.insert(conn, s);
        }
        let remote = (!ip.is_multiple_of(4)).then(|| IpAddr::V4(Ipv4Addr::new(10, 0, 0, ip % 4)));
        let req = Request { conn, method, query, body, too_large, websocket, remote };
        self.input(Input::Request(req));
    }

    fn frame(&mut self, conn: ConnId, frame: Frame<'_>) {
        self.input(Input::Frame { conn, frame });
    }

    fn advance(&mut self, ms: u64) {
        self.host.advance(ms);
        self.learn();
    }

    fn cluster(&mut self, op: &ClusterOp) {
        let channel = "f:any";
        match op {
            ClusterOp::Up => self.input(Input::Cluster(ClusterInput::Up)),
            ClusterOp::Down => self.input(Input::Cluster(ClusterInput::Down)),
            ClusterOp::Raw(bytes) => self.input(Input::Cluster(ClusterInput::Message { channel, payload: bytes })),
            ClusterOp::Shared { from, message } => {
                let body = Body::App(self.shared(message).encode());
                let payload = Envelope { from: peer(*from), incarnation: 1, body }.encode();
                self.input(Input::Cluster(ClusterInput::Message { channel, payload: &payload }));
            }
            ClusterOp::Ask { from, query, message } => {
                let body = Body::Ask { query: u64::from(*query), payload: self.shared(message).encode() };
                let payload = Envelope { from: peer(*from), incarnation: 1, body }.encode();
                self.input(Input::Cluster(ClusterInput::Message { channel, payload: &payload }));
            }
            ClusterOp::Reply { from, query, message } => {
                let body = Body::Reply { query: u64::from(*query % 8), payload: self.shared(message).encode() };
                let payload = Envelope { from: peer(*from), incarnation: 1, body }.encode();
                self.input(Input::Cluster(ClusterInput::Message { channel, payload: &payload }));
            }
            ClusterOp::Emitter(bytes) => {
                self.input(Input::Cluster(ClusterInput::Message { channel: "sio#/#", payload: bytes }));
            }
            ClusterOp::Leaving { from } => {
                let payload = Envelope { from: peer(*from), incarnation: 1, body: Body::Leaving }.encode();
                self.input(Input::Cluster(ClusterInput::Message { channel, payload: &payload }));
            }
            ClusterOp::Broadcast { seq, rooms, except, except_socket, text, attachments } => {
                let render = |v: &[Str]| v.iter().take(4).map(|r| r.render(&self.seen)).collect::<Vec<_>>();
                let broadcast = Broadcast {
                    seq: u64::from(*seq),
                    nsp: "/".into(),
                    rooms: render(rooms),
                    except_rooms: render(except),
                    except_socket: except_socket.as_ref().map(|s| s.render(&self.seen)),
                    volatile: false,
                    text: text.clone().into(),
                    binary: (0..*attachments % 3).map(|i| vec![i; 3].into()).collect(),
                };
                let payload = Envelope { from: peer(0), incarnation: u64::from(*seq % 2), body: Body::Broadcast(broadcast) }
                    .encode();
                self.input(Input::Cluster(ClusterInput::Message { channel, payload: &payload }));
            }
        }
    }

    /// A presence message with the run's names (rooms as clients named them).
    fn shared(&self, op: &SharedOp) -> Shared {
        let seen = &self.seen;
        let nsp = |chat: &bool| if *chat { "/chat" } else { "/" }.to_owned();
        let user = |(id, name, since): &(Str, Str, u8)| {
            (User { id: id.render(seen), username: name.render(seen) }, u64::from(*since))
        };
        match op {
            SharedOp::Roster { nsp: n, room, version, users } => Shared::Roster {
                nsp: nsp(n),
                room: room.render(seen),
                version: u64::from(*version),
                users: users.iter().take(8).map(user).collect(),
            },
            SharedOp::Joined { nsp: n, room, version, user: u } => {
                let (user, since) = user(u);
                Shared::Joined { nsp: nsp(n), room: room.render(seen), version: u64::from(*version), user, since }
            }
            SharedOp::Left { nsp: n, room, version, user } => Shared::Left {
                nsp: nsp(n),
                room: room.render(seen),
                version: u64::from(*version),
                user: user.render(seen),
            },
            SharedOp::RosterWanted { nsp: n, room } => Shared::RosterWanted { nsp: nsp(n), room: room.render(seen) },
            SharedOp::Holding { nsp: n, rooms } => {
                Shared::Holding { nsp: nsp(n), rooms: rooms.iter().take(4).map(|r| r.render(seen)).collect() }
            }
            SharedOp::Find { nsp: n, to } => Shared::Find { nsp: nsp(n), to: to.render(seen) },
            SharedOp::Found { socket, user } => Shared::Found { socket: *socket, user: *user },
            SharedOp::Stats => Shared::Stats,
            SharedOp::NodeStats { json } => Shared::NodeStats { json: json.render(seen).to_string() },
            SharedOp::Kick { user, socket } => Shared::Kick {
                user: user.as_ref().map(|u| u.render(seen)),
                socket: socket.as_ref().map(|s| s.render(seen)),
            },
            SharedOp::Kicked { count } => Shared::Kicked { count: u64::from(*count) },
            SharedOp::Sockets { nsp: n, room } => Shared::Sockets { nsp: nsp(n), room: room.render(seen) },
            SharedOp::SocketList { sockets } => Shared::SocketList {
                sockets: sockets.iter().take(8).map(|(id, u)| (id.render(seen), user(u).0)).collect(),
            },
            SharedOp::Rooms { nsp: n } => Shared::Rooms { nsp: nsp(n) },
            SharedOp::RoomList { rooms } => {
                Shared::RoomList { rooms: rooms.iter().take(8).map(|(r, n)| (r.render(seen), u64::from(*n))).collect() }
            }
        }
    }

    fn answer(&mut self, i: u8, answer: &Answer) {
        let Some((id, request)) = self.host.take_held(usize::from(i)) else { return };
        let Some(answer) = store_answer(&mut self.host.store, &request, answer, &self.seen) else { return };
        self.input(Input::Stored { id, answer });
    }

    // ---- outputs ----

    /// What the harness learns from the outputs (the host has checked them): sids, and
    /// the packets on each session.
    fn learn(&mut self) {
        for o in std::mem::take(&mut self.host.outputs) {
            self.output(o);
        }
    }

    fn output(&mut self, o: Output) {
        match o {
            Output::Respond { conn, body, .. } => {
                if self.api.contains(&conn) {
                    return;
                }
                // A handshake answer: learn the sid. A long-poll answer: read its packets.
                if body.first() == Some(&b'0') {
                    if let Some(sid) = open_sid(&body) {
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
            Output::Send { conn, frame: OutFrame::Text(t) } => {
                if let Ok(text) = std::str::from_utf8(&t) {
                    if text.starts_with('0') && !self.conn_session.contains_key(&conn) {
                        if let Some(sid) = open_sid(text.as_bytes()) {
                            self.conn_session.insert(conn, self.sessions.len());
                            self.sessions.push(Session { sid, ws: Some(conn), next_ack: 1_000_000 });
                        }
                    } else if let Some(&s) = self.conn_session.get(&conn) {
                        self.server_packet(s, text);
                    }
                }
            }
            _ => {}
        }
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

    // ---- operations ----

    fn apply(&mut self, op: &Op) {
        if trace() {
            eprintln!("[{}ms] {op:?}", self.host.now.0);
        }
        match op {
            Op::OpenPolling { ip } => {
                self.request(Method::Get, "EIO=4&transport=polling", b"", false, false, *ip, None);
            }
            Op::OpenWs { ip } => {
                self.request(Method::Get, "EIO=4&transport=websocket", b"", true, false, *ip, None);
            }
            Op::Poll { s } => {
                let Some(s) = self.session(*s) else { return };
                let q = format!("EIO=4&transport=polling&sid={}", self.sessions[s].sid);
                self.request(Method::Get, &q, b"", false, false, 0, Some(s));
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
                self.request(Method::Get, &q, b"", true, false, 0, Some(s));
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
                    if self.host.websocket_open(conn) {
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
                self.input(Input::Ended { conn, how });
            }
            Op::Advance { ms } => {
                let ms = match ms {
                    Ms::Small(n) => u64::from(*n),
                    Ms::Seconds(n) => u64::from(*n % 16) * 1_000,
                    Ms::NextDeadline => self.host.machine.poll_timeout().map_or(1, |t| t.since(self.host.now)),
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
            Op::Shutdown => self.input(Input::Shutdown),
            Op::Cluster(op) => self.cluster(op),
            Op::Api { path, post, auth, body } => {
                let c = self.host.conn();
                self.api.insert(c);
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
                self.request(method, query, body, *websocket, *too_large, 1, None);
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
        self.request(Method::Post, &q, body, false, too_large, 0, None);
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

/// The fuzzer's answer to a storage request; `None`: it is never answered.
fn store_answer(store: &mut MemStore, request: &StoreRequest, answer: &Answer, seen: &[String]) -> Option<StoreAnswer> {
    Some(match answer {
        Answer::Proper => store.answer(request),
        Answer::Done => RoomAnswer::Done.into(),
        Answer::Failed => StoreAnswer::Failed("store is down".into()),
        Answer::Updated(n) => RoomAnswer::Updated(u64::from(*n)).into(),
        Answer::Records(r) => RoomAnswer::Messages(r.iter().map(|j| j.render(seen).to_string()).collect()).into(),
        Answer::Notifications(r) => {
            RoomAnswer::Notifications(r.iter().map(|(j, read)| (j.render(seen).to_string(), *read)).collect()).into()
        }
        Answer::Document(None) => RoomAnswer::Document(None).into(),
        Answer::Document(Some((text, v))) => RoomAnswer::Document(Some((text.render(seen), u64::from(*v)))).into(),
        Answer::Garbage(bytes) => StoreAnswer::Done(bytes.clone().into()),
        Answer::Drop => return None,
    })
}

/// One of three other nodes.
fn peer(i: u8) -> NodeId {
    NodeId::new(["there", "yonder", "beyond"][usize::from(i % 3)]).expect("valid ids")
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
