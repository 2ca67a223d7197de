//! Snapshot restore, from both ends.
//!
//! First byte even — any bytes into every restore entry point (`Service<RoomService>`,
//! `Service<ConformanceApp>`, `EngineEcho`). None may panic. A machine that restores
//! must then take requests for every sid it knows, frames on every connection, store
//! answers, transport ends, every timer (each `handle_timeout(t)` leaves a
//! `poll_timeout` later than `t`) and a shutdown without panicking; after all that it
//! must snapshot, and that snapshot must restore to a machine whose snapshot holds the
//! same bytes, up to order (snapshot.rs promises a restored machine that answers alike,
//! not equal bytes: hash maps may list their entries in another order). With
//! `PARLOR_FUZZ_STRICT=1`, a restored machine that starts inside its bounds
//! (`check_bounds`) must also stay inside them after every input — off by default,
//! since mutated bytes decode to cross references no run makes, which the bounds check
//! does not all look at.
//!
//! First byte odd — a real service driven by an `Arbitrary` script of client actions
//! (WebSocket and polling clients, upgrades, recovery, chat, typing, documents, store
//! answers or failures, time), in `parlor_core::testing::Host`, which holds it to the
//! output contract and its bounds after every input. Each `Swap` snapshots the service
//! and restores a twin (in a host that starts where the first one is); from then on both
//! get every input and must answer exactly alike on every connection and to the store
//! (per connection and in order; across connections the order is not part of the
//! contract), with the same next timeout.
//!
//! `PARLOR_FUZZ_SNAPSHOTS=DIR` writes each swap's snapshot to DIR as a seed for the
//! first mode (how the committed `snap_*` seeds were made from the `script_*` ones).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use parlor_core::app::RoomService;
use parlor_core::conformance::{ConformanceApp, EngineEcho};
use parlor_core::engineio::{Engine, SessionId};
use parlor_core::host::{Frame, Method, OutFrame, Request, StoreAnswer, StoreId, TransportEnd};
use parlor_core::snapshot::SnapshotError;
use parlor_core::testing::host::Bounds;
use parlor_core::testing::{open_sid, per_conn, Host, WALL_MS};
use parlor_core::{Config, ConnId, Input, Instant, Machine, Output, Service};
use parlor_fuzz::small_app;
use serde_json::{json, Value};

// ---- any bytes ----

fn sids_of(engine: &Engine) -> Vec<String> {
    (0..16).filter_map(|i| engine.sid(SessionId(i)).map(str::to_owned)).collect()
}

/// Everything a host could send a restored machine, on every id it might know.
fn exercise<M: Machine>(
    m: M,
    sids: &[String],
    bounds: Bounds<M>,
    restore: impl Fn(&[u8], Instant) -> Result<M, SnapshotError>,
) {
    let now = Instant(50_000);
    let again = |m: &M, what: &str| {
        let snap = m.snapshot().unwrap_or_else(|e| panic!("{what}: no snapshot: {e}"));
        // At the snapshot's own clock (a later `now` would be a different state).
        let twin =
            restore(&snap, Instant(0)).unwrap_or_else(|e| panic!("{what}: its own snapshot does not restore: {e}"));
        let snap2 = twin.snapshot().expect("a twin snapshots");
        assert!(same_up_to_order(&snap, &snap2), "{what}: the twin's snapshot holds other bytes");
        if let Err(e) = bounds(&twin) {
            panic!("{what}: twin out of bounds: {e}");
        }
    };
    // Bytes can decode to a state no run reaches (a socket its session does not list, a
    // buffer over its bound): such a machine must still never panic, but only one that
    // starts inside its bounds is held to them.
    // (Telling the two apart in full would mean checking every cross reference; the
    // script mode holds real states to their bounds after every input instead.)
    let consistent = bounds(&m).is_ok() && std::env::var_os("PARLOR_FUZZ_STRICT").is_some();
    if consistent {
        again(&m, "restored");
    }
    // The host cannot hold a machine from any bytes to the contract (it may know conns the
    // host never made), only to the clock rule and, when consistent, its bounds.
    let mut m = Host::adopt(m, now);
    m.trace = std::env::var_os("PARLOR_FUZZ_TRACE").is_some();
    if consistent {
        m = m.bounds(bounds);
    }
    m.input(Input::WallClock { unix_ms: WALL_MS });
    let mut next = 1_000_000u64;
    for sid in sids {
        let queries = [
            (format!("EIO=4&transport=polling&sid={sid}"), Method::Get, false, &b""[..]),
            (format!("EIO=4&transport=polling&sid={sid}"), Method::Post, false, &b"40\x1e42[\"message\",1]"[..]),
            (format!("EIO=4&transport=websocket&sid={sid}"), Method::Get, true, &b""[..]),
        ];
        for (q, method, ws, body) in &queries {
            next += 1;
            m.request_on(ConnId(next), *method, q, body, *ws);
        }
    }
    next += 1;
    m.request_on(ConnId(next), Method::Get, "EIO=4&transport=websocket", b"", true);
    for c in (0..24).chain(1_000_001..=next) {
        let conn = ConnId(c);
        for text in [
            "2probe",
            "5",
            "3",
            "40",
            "40/chat,",
            "451-[\"message\",{\"_placeholder\":true,\"num\":0}]",
            "42[\"join\",{\"room\":\"r\",\"username\":\"u\"}]",
            "41",
        ] {
            m.text(conn, text);
        }
        m.binary(conn, b"\x01\x02");
    }
    for i in 0..8 {
        m.input(Input::Stored { id: StoreId(i), answer: StoreAnswer::Failed("down".into()) });
    }
    for c in (0..24).chain(1_000_001..=next) {
        m.end(ConnId(c), TransportEnd::Error);
    }
    // Every timer, in order; each fires once (the host checks each leaves a later one).
    for _ in 0..200 {
        let Some(t) = m.machine.poll_timeout() else { break };
        m.timeout_at(t);
    }
    if consistent {
        again(&m.machine, "driven");
    }
    m.input(Input::Shutdown);
    // Whatever it restored from, a machine snapshots, and that snapshot restores.
    let snap = m.machine.snapshot().expect("a restored machine snapshots");
    let twin = restore(&snap, Instant(0)).expect("a restored machine's snapshot restores");
    assert!(same_up_to_order(&twin.snapshot().expect("and snapshots again"), &snap), "a twin holds other bytes");
    if consistent {
        again(&m.machine, "shut down");
    }
}

fn any_bytes(data: &[u8]) {
    let now = Instant(1_000);
    if let Ok(m) = Service::<RoomService>::restore(data, now) {
        let sids = sids_of(m.sockets().engine());
        exercise(m, &sids, Service::check_bounds, Service::<RoomService>::restore);
    }
    if let Ok(m) = Service::<ConformanceApp>::restore(data, now) {
        let sids = sids_of(m.sockets().engine());
        exercise(m, &sids, Service::check_bounds, Service::<ConformanceApp>::restore);
    }
    if let Ok(m) = EngineEcho::restore(data, now) {
        let sids = sids_of(m.engine());
        exercise(m, &sids, |m: &EngineEcho| m.engine().check_bounds(), EngineEcho::restore);
    }
}

// ---- a script, with live swaps ----

#[derive(Arbitrary, Debug)]
struct Script {
    seed: u8,
    recovery: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A new client: a WebSocket, or a polling session (which may upgrade later).
    Open {
        polling: bool,
    },
    /// CONNECT to a namespace, resuming the client's last session when `resume`.
    Connect {
        c: u8,
        chat: bool,
        resume: bool,
    },
    Join {
        c: u8,
        room: u8,
    },
    Leave {
        c: u8,
        room: u8,
    },
    Send {
        c: u8,
        room: u8,
        ack: bool,
    },
    Typing {
        c: u8,
        room: u8,
        start: bool,
    },
    Private {
        c: u8,
        to: u8,
    },
    JoinDoc {
        c: u8,
        ack: bool,
    },
    Edit {
        c: u8,
        at: u8,
        delete: bool,
        version: u8,
    },
    Cursor {
        c: u8,
        at: u8,
    },
    Raw {
        c: u8,
        text: String,
    },
    /// A polling client's GET (long poll) — a second one while one waits is a protocol error.
    Poll {
        c: u8,
    },
    /// A polling client opens a WebSocket probe (`2probe`), and finishes with `5` if `finish`.
    Upgrade {
        c: u8,
        finish: bool,
    },
    Pong {
        c: u8,
    },
    Drop {
        c: u8,
        error: bool,
    },
    Advance {
        ms: u16,
    },
    Store {
        i: u8,
        fail: bool,
    },
    /// Snapshot, restore a twin, and from now on run both.
    Swap,
}

#[derive(Debug, Default)]
struct Client {
    /// The WebSocket (after an upgrade too), or `None` while polling.
    ws: Option<ConnId>,
    sid: Option<String>,
    probe: Option<ConnId>,
    pid: Option<String>,
    offset: Option<String>,
    open: bool,
}

/// One input, owned, so that both twins get the same.
enum In {
    Req { conn: ConnId, method: Method, query: String, body: Vec<u8>, ws: bool },
    Text(ConnId, String),
    Ended(ConnId, TransportEnd),
    Stored(StoreId, StoreAnswer),
}

impl In {
    fn input(&self) -> Input<'_> {
        match self {
            In::Req { conn, method, query, body, ws } => Input::Request(Request {
                conn: *conn,
                method: *method,
                query,
                body,
                too_large: false,
                websocket: *ws,
                remote: None,
            }),
            In::Text(conn, t) => Input::Frame { conn: *conn, frame: Frame::Text(t) },
            In::Ended(conn, how) => Input::Ended { conn: *conn, how: *how },
            In::Stored(id, answer) => Input::Stored { id: *id, answer: answer.clone() },
        }
    }
}

struct Run {
    /// The service in its host (clock, conns, store, held storage requests, contract).
    a: Host<Service<RoomService>>,
    /// Since the last `Swap`: a service restored from a snapshot, in a host of its own.
    twin: Option<Host<Service<RoomService>>>,
    clients: Vec<Client>,
    version: u64,
    swaps: usize,
}

impl Run {
    fn new(s: &Script) -> Run {
        let config = Config {
            ping_interval_ms: 2_000,
            ping_timeout_ms: 1_000,
            upgrade_timeout_ms: 500,
            max_payload: 4_000,
            max_buffered_bytes: 2_000,
            max_rooms_per_socket: 4,
            max_connections: 6,
            max_pending_acks: 4,
            recovery_window_ms: if s.recovery { 5_000 } else { 0 },
            recovery_max_packets: 8,
            recovery_max_bytes: 1_000,
            recovery_max_sessions: 3,
            ..Config::default()
        };
        let service = Service::new(config.clone(), [s.seed; 32], Instant(0), RoomService::new(small_app()));
        let mut a = Host::new(service).limits(&config).bounds(Service::check_bounds);
        a.input(Input::WallClock { unix_ms: WALL_MS });
        a.outputs.clear();
        Run { a, twin: None, clients: Vec::new(), version: 0, swaps: 0 }
    }

    fn conn(&mut self) -> ConnId {
        self.a.conn()
    }

    /// Both twins take the input; what they answer must be the same.
    fn feed(&mut self, input: In) -> Vec<Output> {
        let outs = self.a.handle(input.input());
        if let Some(b) = self.twin.as_mut() {
            let outs_b = b.handle(input.input());
            assert_eq!(per_conn(&outs), per_conn(&outs_b), "the restored twin answered differently");
            assert_eq!(self.a.machine.poll_timeout(), b.machine.poll_timeout(), "the twins' next timeouts differ");
        }
        self.observe(&outs);
        outs
    }

    /// Both twins move their clock to `t`.
    fn timeout(&mut self, t: Instant) {
        self.a.timeout_at(t);
        let outs = std::mem::take(&mut self.a.outputs);
        if let Some(b) = self.twin.as_mut() {
            b.timeout_at(t);
            let outs_b = std::mem::take(&mut b.outputs);
            assert_eq!(per_conn(&outs), per_conn(&outs_b), "the restored twin answered a timeout differently");
        }
        self.observe(&outs);
    }

    /// What the clients learn: sids, socket pids and offsets, closes.
    fn observe(&mut self, outs: &[Output]) {
        for o in outs {
            match o {
                Output::Respond { body, .. } => self.packets(o.conn(), &String::from_utf8_lossy(body)),
                Output::Send { conn, frame: OutFrame::Text(t) } => {
                    self.packets(Some(*conn), &format!("{}", String::from_utf8_lossy(t)))
                }
                Output::Close { conn, .. } => {
                    for cl in &mut self.clients {
                        if cl.ws == Some(*conn) {
                            *cl = Client { pid: cl.pid.take(), offset: cl.offset.take(), ..Client::default() };
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn packets(&mut self, _conn: Option<ConnId>, body: &str) {
        for p in body.split('\x1e') {
            if p.starts_with("0{") {
                // A handshake answer: the newest client without a sid takes it.
                if let Some(cl) = self.clients.iter_mut().rev().find(|c| c.open && c.sid.is_none()) {
                    cl.sid = open_sid(p.as_bytes());
                }
            } else if let Some(rest) = p.strip_prefix("40") {
                let v: Value = serde_json::from_str(rest.trim_start_matches("/chat,")).unwrap_or(Value::Null);
                if let (Some(pid), Some(cl)) = (v["pid"].as_str(), self.clients.last_mut()) {
                    cl.pid = Some(pid.to_owned());
                }
            } else if p.starts_with("42") {
                if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(p.trim_start_matches(|c: char| c != '['))
                {
                    if let (Some(Value::String(o)), Some(cl)) = (items.last(), self.clients.last_mut()) {
                        cl.offset = Some(o.clone());
                    }
                    if items.first() == Some(&json!("document-state")) {
                        self.version = items[1]["version"].as_u64().unwrap_or(0);
                    }
                }
            }
        }
    }

    fn client(&self, c: u8) -> Option<usize> {
        (!self.clients.is_empty()).then(|| usize::from(c) % self.clients.len())
    }

    /// Sends Socket.IO packet text on the client's transport: its WebSocket, or a POST.
    fn send(&mut self, c: u8, text: String) {
        let Some(i) = self.client(c) else { return };
        let cl = &self.clients[i];
        if let Some(ws) = cl.ws {
            self.feed(In::Text(ws, text));
        } else if let Some(sid) = cl.sid.clone() {
            let conn = self.conn();
            let query = format!("EIO=4&transport=polling&sid={sid}");
            self.feed(In::Req { conn, method: Method::Post, query, body: text.into_bytes(), ws: false });
        }
    }

    fn emit(&mut self, c: u8, ack: bool, event: &str, arg: Value) {
        let ack = if ack { "7" } else { "" };
        self.send(c, format!("42{ack}{}", json!([event, arg])));
    }

    fn apply(&mut self, op: &Op) {
        let room = |r: &u8| ["r", "s", "t"][usize::from(*r) % 3];
        match op {
            Op::Open { polling } => {
                let conn = self.conn();
                let ws = !polling;
                let transport = if ws { "websocket" } else { "polling" };
                self.clients.push(Client { ws: ws.then_some(conn), open: true, ..Client::default() });
                let query = format!("EIO=4&transport={transport}");
                self.feed(In::Req { conn, method: Method::Get, query, body: Vec::new(), ws });
            }
            Op::Connect { c, chat, resume } => {
                let Some(i) = self.client(*c) else { return };
                let cl = &self.clients[i];
                let auth = match (resume, &cl.pid) {
                    (true, Some(pid)) => json!({"pid": pid, "offset": cl.offset, "username": format!("u{i}")}),
                    _ => json!({"username": format!("u{i}")}),
                };
                let nsp = if *chat { "/chat," } else { "" };
                self.send(*c, format!("40{nsp}{auth}"));
            }
            Op::Join { c, room: r } => {
                self.emit(*c, false, "join", json!({"username": format!("u{c}"), "room": room(r)}))
            }
            Op::Leave { c, room: r } => self.emit(*c, true, "leave-room", json!(room(r))),
            Op::Send { c, room: r, ack } => {
                self.emit(*c, *ack, "send-message", json!({"content": format!("m{c}"), "room": room(r)}))
            }
            Op::Typing { c, room: r, start } => {
                let ev = if *start { "typing-start" } else { "typing-stop" };
                self.emit(*c, false, ev, json!({"room": room(r)}));
            }
            Op::Private { c, to } => {
                self.emit(*c, true, "private-message", json!({"to": format!("u{to}"), "content": "psst"}))
            }
            Op::JoinDoc { c, ack } => self.emit(*c, *ack, "join-document", json!({"docId": "d"})),
            Op::Edit { c, at, delete, version } => {
                let op = if *delete { json!({"delete": 1}) } else { json!({"insert": "é"}) };
                let delta = json!([{"retain": at % 4}, op]);
                let version = self.version.saturating_sub(u64::from(version % 3));
                self.emit(*c, true, "text-change", json!({"docId": "d", "delta": delta, "version": version}));
            }
            Op::Cursor { c, at } => self.emit(*c, false, "cursor-move", json!({"docId": "d", "position": at})),
            Op::Raw { c, text } => self.send(*c, text.clone()),
            Op::Poll { c } => {
                let Some(i) = self.client(*c) else { return };
                let Some(sid) = self.clients[i].sid.clone() else { return };
                let conn = self.conn();
                let query = format!("EIO=4&transport=polling&sid={sid}");
                self.feed(In::Req { conn, method: Method::Get, query, body: Vec::new(), ws: false });
            }
            Op::Upgrade { c, finish } => {
                let Some(i) = self.client(*c) else { return };
                let Some(sid) = self.clients[i].sid.clone() else { return };
                if self.clients[i].ws.is_some() {
                    return;
                }
                let probe = match self.clients[i].probe {
                    Some(p) => p,
                    None => {
                        let conn = self.conn();
                        let query = format!("EIO=4&transport=websocket&sid={sid}");
                        self.feed(In::Req { conn, method: Method::Get, query, body: Vec::new(), ws: true });
                        self.feed(In::Text(conn, "2probe".into()));
                        self.clients[i].probe = Some(conn);
                        conn
                    }
                };
                if *finish {
                    self.feed(In::Text(probe, "5".into()));
                    let cl = &mut self.clients[i];
                    cl.probe = None;
                    cl.ws = Some(probe);
                }
            }
            Op::Pong { c } => self.send(*c, "3".into()),
            Op::Drop { c, error } => {
                let Some(i) = self.client(*c) else { return };
                let how = if *error { TransportEnd::Error } else { TransportEnd::Closed };
                let cl = &mut self.clients[i];
                let conns: Vec<ConnId> = cl.ws.into_iter().chain(cl.probe).collect();
                cl.ws = None;
                cl.probe = None;
                cl.sid = None;
                cl.open = false;
                for conn in conns {
                    self.feed(In::Ended(conn, how));
                }
            }
            Op::Advance { ms } => {
                let end = self.a.now.plus(u64::from(*ms) % 8_000);
                while let Some(t) = self.a.next_timer(end) {
                    self.timeout(t);
                    // Live WebSocket clients answer pings.
                    let ws: Vec<ConnId> = self.clients.iter().filter_map(|c| c.ws).collect();
                    for conn in ws {
                        self.feed(In::Text(conn, "3".into()));
                    }
                }
                self.timeout(end);
            }
            Op::Store { i, fail } => {
                let Some((id, answer)) = self.a.take_answered(usize::from(*i), *fail) else { return };
                self.feed(In::Stored(id, answer));
            }
            Op::Swap => {
                let from = self.twin.as_ref().unwrap_or(&self.a);
                let snap = from.machine.snapshot().expect("a room service snapshots");
                if let Some(dir) = std::env::var_os("PARLOR_FUZZ_SNAPSHOTS") {
                    let name = format!("snap_{:016x}", fxhash(&snap));
                    let mut seed = vec![0u8];
                    seed.extend_from_slice(&snap);
                    let _ = std::fs::write(std::path::Path::new(&dir).join(name), seed);
                }
                let twin = Service::<RoomService>::restore(&snap, from.now).expect("a snapshot restores");
                let again = twin.snapshot().expect("a restored service snapshots");
                assert!(same_up_to_order(&snap, &again), "a restored service snapshots to other bytes");
                self.twin = Some(from.twin(twin));
                self.swaps += 1;
            }
        }
    }
}

/// snapshot(restore(s)) against s: hash maps may list their entries in another order, so
/// the bytes may be permuted, but not changed: the same length and the same bytes.
fn same_up_to_order(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        return any_bytes(rest);
    }
    let Ok(script) = Script::arbitrary_take_rest(arbitrary::Unstructured::new(rest)) else { return };
    let mut run = Run::new(&script);
    for op in script.ops.iter().take(96) {
        run.apply(op);
    }
    run.apply(&Op::Advance { ms: 7_999 });
    run.apply(&Op::Swap);
    run.apply(&Op::Advance { ms: 7_999 });
});
