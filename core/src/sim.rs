//! A deterministic simulation: many clients on a virtual clock doing random protocol and
//! room-service actions, with faults (dropped transports, reconnects with recovery, late
//! and failed storage answers, duplicated packets), checking invariants after every step
//! and convergence at quiescence.
//!
//! Clients use WebSocket or HTTP long-polling (GET/POST with Engine.IO payload framing,
//! one GET at a time), and polling clients may upgrade to WebSocket mid-session (probe,
//! noop, upgrade). Polling faults: late GETs (a client that stops polling for a while),
//! abandoned GETs, a second GET while one waits, a client that vanishes without a word,
//! probes that are dropped or never finished, POSTs after the session is gone. After
//! every step every queue and map of the core must be inside its configured bound
//! (`Service::check_bounds`).
//!
//! `cargo test -p parlor-core sim` runs `SIM_SEEDS` seeds (default 200) from `SIM_SEED`
//! (default 1). A failing seed prints the command that reruns just it.

use crate::app::ot::{Delta, Op};
use crate::app::ratelimit::Limit;
use crate::app::{AppConfig, RoomService};
use crate::codec::socketio::{decode, PacketType};
use crate::host::{ConnId, Frame, Input, Method, OutFrame, Output, TransportEnd};
use crate::service::Machine;
use crate::testing::{open_sid, Host, Rng, WALL_MS};
use crate::time::Instant;
use crate::{Config, Service};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};

const ROOMS: [&str; 3] = ["a", "b", "c"];
const DOC: &str = "d";
const TYPING_MS: u64 = 300;
const CHAT: Limit = Limit { capacity: 8, window_ms: 2_000 };

/// What a client asked for with an ack, to judge the answer.
#[derive(Clone, Debug)]
enum Asked {
    Send { room: String, content: String },
    Edit,
    Other,
}

/// A client's view of the shared document, as Quill apps keep it.
#[derive(Debug, Default)]
struct DocView {
    text: Vec<u16>,
    version: u64,
    /// Local ops not yet acked; the first is in flight when `sent`.
    pending: VecDeque<Delta>,
    sent: Option<u64>,
}

/// A polling session as the client sees it.
#[derive(Debug)]
struct Polling {
    sid: String,
    /// The GET waiting for packets (one at a time).
    get: Option<ConnId>,
    /// A WebSocket probing an upgrade, and whether `3probe` came back.
    probe: Option<(ConnId, bool)>,
    /// Steps to wait before the next GET (a slow or stalled client).
    lag: u32,
    /// A ping arrived in a GET answer: the next POST carries the pong.
    ping_due: bool,
}

#[derive(Debug, Default)]
struct SimClient {
    /// The WebSocket, when the client is on one.
    conn: Option<ConnId>,
    polling: Option<Polling>,
    /// Sids of polling sessions this client lost, for late POSTs.
    stale_sid: Option<String>,
    /// Socket.IO rooms the client's socket was in since what it received last was queued.
    was_in: BTreeSet<String>,
    /// Between a recovered CONNECT's answer and the end of its delivery: what comes is the
    /// replay of what the client missed, and an old `document-state` in it is not a join
    /// (recovery leaves documents; a client joins them again).
    replaying: bool,
    socket: Option<String>,
    pid: Option<String>,
    offset: Option<String>,
    rooms: BTreeSet<String>,
    next_ack: u64,
    asked: HashMap<u64, Asked>,
    /// Acks asked on a connection that has since dropped: socket.io-client forgets them
    /// and ignores a late answer, but one may still come (once) to a recovered socket.
    forgotten: BTreeSet<u64>,
    doc: Option<DocView>,
}

struct Sim {
    rng: Rng,
    seed: u64,
    /// The service, its clock, its store and the storage requests it waits on; it checks
    /// the output contract, the connection limits and the bounds after every input.
    host: Host<Service<RoomService>>,
    clients: Vec<SimClient>,
    /// Every message id that got a success ack.
    acked_messages: Vec<(String, String)>,
    /// Successful chat sends per socket id, with when.
    sends: HashMap<String, Vec<Instant>>,
    /// A polling handshake in flight: its request and client.
    handshake: Option<(ConnId, usize)>,
    /// POSTs in flight, by request: the client and whether the session must be gone.
    posts: HashMap<ConnId, (usize, bool)>,
    /// Acks that reached a client through a long poll.
    acks_over_polling: usize,
    log: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let config =
            Config { recovery_window_ms: 5_000, ping_interval_ms: 2_000, ping_timeout_ms: 1_000, ..Config::default() };
        let app =
            AppConfig { typing_timeout_ms: TYPING_MS, chat_limit: CHAT, doc_log_limit: 50, ..AppConfig::default() };
        let mut rng = Rng::new(seed);
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        let n = 3 + rng.below(5);
        let mut sim = Sim {
            rng,
            seed,
            host: Host::new(Service::new(config.clone(), s, Instant(0), RoomService::new(app)))
                .limits(&config)
                .bounds(Service::check_bounds),
            clients: (0..n).map(|_| SimClient::default()).collect(),
            acked_messages: Vec::new(),
            sends: HashMap::new(),
            handshake: None,
            posts: HashMap::new(),
            acks_over_polling: 0,
            log: Vec::new(),
        };
        sim.input(Input::WallClock { unix_ms: WALL_MS });
        sim
    }

    fn fail(&self, what: &str) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(12).collect();
        panic!(
            "simulation seed {} failed: {what}\nlast steps (newest first): {tail:#?}\nrerun: SIM_SEED={} SIM_SEEDS=1 cargo test -p parlor-core sim -- --nocapture",
            self.seed, self.seed
        );
    }

    fn input(&mut self, input: Input<'_>) {
        self.step_host(|h| h.input(input));
    }

    /// One step of the host, with what the clients learn from it.
    fn step_host(&mut self, step: impl FnOnce(&mut Host<Service<RoomService>>)) {
        self.note_rooms();
        step(&mut self.host);
        self.note_rooms();
        self.route();
        self.delivered_on_websockets();
    }

    /// Remembers the rooms each client's socket is in now: a long poll (or the WebSocket
    /// an upgrade ends on) delivers packets queued while it was in them.
    fn note_rooms(&mut self) {
        for c in 0..self.clients.len() {
            if let Some(s) = &self.clients[c].socket {
                let rooms = self.host.machine.sockets().rooms_of(&s.as_str().into());
                self.clients[c].was_in.extend(rooms);
            }
        }
    }

    /// What a WebSocket client was sent has arrived: only its rooms from now on count.
    fn delivered_on_websockets(&mut self) {
        for cl in &mut self.clients {
            if cl.conn.is_some() {
                cl.was_in.clear();
                cl.replaying = false;
            }
        }
    }

    /// Routes every output to its client (the host keeps the storage requests).
    fn route(&mut self) {
        for o in std::mem::take(&mut self.host.outputs) {
            match o {
                Output::Send { conn, frame: OutFrame::Text(t) } => {
                    if let Some(c) = self.client_of(conn) {
                        self.on_frame(c, &String::from_utf8_lossy(&t));
                    } else if let Some(c) = self.prober_of(conn) {
                        if &t[..] == b"3probe" {
                            if let Some(Polling { probe: Some((_, probed)), .. }) = &mut self.clients[c].polling {
                                *probed = true;
                            }
                        }
                    }
                }
                Output::Close { conn, .. } => {
                    if let Some(c) = self.client_of(conn) {
                        self.lost(c);
                    } else if let Some(c) = self.prober_of(conn) {
                        // The probe failed: the client stays on polling.
                        if let Some(p) = &mut self.clients[c].polling {
                            p.probe = None;
                        }
                    }
                }
                Output::Respond { conn, status, body, .. } => self.on_response(conn, status, &body),
                _ => {}
            }
        }
    }

    fn client_of(&self, conn: ConnId) -> Option<usize> {
        self.clients.iter().position(|c| c.conn == Some(conn))
    }

    fn prober_of(&self, conn: ConnId) -> Option<usize> {
        self.clients.iter().position(|c| c.polling.as_ref().is_some_and(|p| p.probe.is_some_and(|(w, _)| w == conn)))
    }

    /// An HTTP answer: a handshake, a long poll's packets, or a POST's `ok`.
    fn on_response(&mut self, conn: ConnId, status: u16, body: &[u8]) {
        let body = String::from_utf8_lossy(body).into_owned();
        if let Some((h, c)) = self.handshake {
            if h == conn {
                self.handshake = None;
                if let (200, Some(sid)) = (status, open_sid(body.as_bytes())) {
                    self.clients[c].polling = Some(Polling { sid, get: None, probe: None, lag: 0, ping_due: false });
                }
                return;
            }
        }
        if let Some((c, gone)) = self.posts.remove(&conn) {
            if gone && status == 200 {
                self.fail(&format!("client {c}: a POST to a closed session was accepted"));
            }
            if status != 200 && !gone && self.clients[c].polling.is_some() {
                self.lost(c);
            }
            return;
        }
        let Some(c) = self.clients.iter().position(|cl| cl.polling.as_ref().is_some_and(|p| p.get == Some(conn)))
        else {
            return;
        };
        if let Some(p) = &mut self.clients[c].polling {
            p.get = None;
        }
        if status != 200 {
            return self.lost(c);
        }
        let packets: Vec<&str> = body.split('\x1e').collect();
        for packet in packets {
            match packet {
                "1" => return self.lost(c),
                "2" => {
                    if let Some(p) = &mut self.clients[c].polling {
                        p.ping_due = true;
                    }
                }
                p if p.starts_with('4') => {
                    self.on_frame(c, p);
                    // An event may have ended the session (a kick): nothing more for it.
                    if self.clients[c].polling.is_none() {
                        return;
                    }
                }
                _ => {}
            }
        }
        self.clients[c].was_in.clear();
        self.clients[c].replaying = false;
    }

    /// Sends Engine.IO packet text on the client's transport: a WebSocket frame, or a POST.
    fn transmit(&mut self, c: usize, text: &str) {
        if let Some(conn) = self.clients[c].conn {
            return self.input(Input::Frame { conn, frame: Frame::Text(text) });
        }
        let Some(p) = &self.clients[c].polling else { return };
        if p.probe.is_some_and(|(_, probed)| probed) {
            // Upgrading: socket.io-client holds its writes until the WebSocket takes over.
            return;
        }
        let query = format!("EIO=4&transport=polling&sid={}", p.sid);
        self.post(c, &query, text.as_bytes(), false);
    }

    fn post(&mut self, c: usize, query: &str, body: &[u8], gone: bool) {
        let conn = self.host.conn();
        self.posts.insert(conn, (c, gone));
        self.request(conn, Method::Post, query, body, false);
        self.posts.remove(&conn);
    }

    fn request(&mut self, conn: ConnId, method: Method, query: &str, body: &[u8], websocket: bool) {
        self.step_host(|h| h.request_on(conn, method, query, body, websocket));
    }

    /// A long-poll GET, as socket.io-client keeps one waiting at all times.
    fn poll(&mut self, c: usize) {
        let Some(p) = &mut self.clients[c].polling else { return };
        if p.get.is_some() || p.probe.is_some_and(|(_, probed)| probed) {
            return;
        }
        if p.lag > 0 {
            p.lag -= 1;
            return;
        }
        let conn = self.host.conn();
        p.get = Some(conn);
        let query = format!("EIO=4&transport=polling&sid={}", p.sid);
        self.request(conn, Method::Get, &query, b"", false);
    }

    /// `5` on a probe that answered: the WebSocket carries the session from now on.
    fn finish_upgrade(&mut self, c: usize) {
        let Some(Polling { probe: Some((conn, true)), .. }) = self.clients[c].polling else { return };
        self.log.push(format!("t={} c{c} upgrades", self.host.now.0));
        // Frames on the WebSocket (the buffered ones first) belong to the client now.
        let cl = &mut self.clients[c];
        cl.conn = Some(conn);
        cl.polling = None;
        self.input(Input::Frame { conn, frame: Frame::Text("5") });
    }

    /// Polling clients answer the pings they got, then poll again; most clients whose
    /// probe answered finish the upgrade.
    fn poll_all(&mut self) {
        for c in 0..self.clients.len() {
            if self.clients[c].polling.as_ref().is_some_and(|p| p.probe.is_some_and(|(_, probed)| probed))
                && self.rng.chance(60)
            {
                self.finish_upgrade(c);
                continue;
            }
            if self.clients[c].polling.as_ref().is_some_and(|p| p.ping_due && p.lag == 0) {
                if let Some(p) = &mut self.clients[c].polling {
                    p.ping_due = false;
                }
                self.transmit(c, "3");
            }
            self.poll(c);
        }
    }

    fn lost(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        if let Some(p) = cl.polling.take() {
            cl.stale_sid = Some(p.sid);
        }
        cl.conn = None;
        cl.socket = None;
        cl.rooms.clear();
        cl.doc = None;
        let asked: Vec<u64> = cl.asked.drain().map(|(id, _)| id).collect();
        cl.forgotten.extend(asked);
    }

    fn emit(&mut self, c: usize, event: &str, arg: Value, asked: Option<Asked>) {
        if !self.writable(c) || self.clients[c].socket.is_none() {
            return;
        }
        let ack = asked.map(|a| {
            let cl = &mut self.clients[c];
            cl.next_ack += 1;
            cl.asked.insert(cl.next_ack, a);
            cl.next_ack
        });
        let text = format!("42{}{}", ack.map(|a| a.to_string()).unwrap_or_default(), json!([event, arg]));
        self.log.push(format!("t={} c{c} {text}", self.host.now.0));
        self.transmit(c, &text);
    }

    /// Whether the client has a transport it can write on now.
    fn writable(&self, c: usize) -> bool {
        let cl = &self.clients[c];
        cl.conn.is_some() || cl.polling.as_ref().is_some_and(|p| !p.probe.is_some_and(|(_, probed)| probed))
    }

    fn online(&self, c: usize) -> bool {
        self.clients[c].conn.is_some() || self.clients[c].polling.is_some()
    }

    fn on_frame(&mut self, c: usize, frame: &str) {
        if let Some(rest) = frame.strip_prefix("40") {
            let reply: Value = serde_json::from_str(rest).unwrap_or(Value::Null);
            let cl = &mut self.clients[c];
            cl.socket = reply["sid"].as_str().map(str::to_owned);
            cl.pid = reply["pid"].as_str().map(str::to_owned);
            cl.replaying = true;
            return;
        }
        if frame == "41" {
            let cl = &mut self.clients[c];
            cl.socket = None;
            cl.rooms.clear();
            cl.doc = None;
            let asked: Vec<u64> = cl.asked.drain().map(|(id, _)| id).collect();
            cl.forgotten.extend(asked);
            return;
        }
        let Some(p) = frame.strip_prefix('4').and_then(|f| decode(f, 10).ok()) else { return };
        let Some(Value::Array(mut items)) = p.data else { return };
        match p.kind {
            PacketType::Ack => self.on_ack(c, p.id.unwrap_or(0), items.into_iter().next().unwrap_or(Value::Null)),
            PacketType::Event => {
                let name = items.remove(0).as_str().unwrap_or_default().to_owned();
                if let Some(Value::String(o)) = items.last() {
                    self.clients[c].offset = Some(o.clone());
                }
                self.on_event(c, &name, items.into_iter().next().unwrap_or(Value::Null));
            }
            _ => {}
        }
    }

    /// The server's view: is client `c`'s socket in chat room `room`?
    fn server_has(&self, c: usize, room: &str) -> bool {
        let Some(s) = &self.clients[c].socket else { return false };
        self.host.machine.sockets().rooms_of(&s.as_str().into()).contains(&format!("chat:{room}"))
    }

    fn on_event(&mut self, c: usize, name: &str, arg: Value) {
        match name {
            "new-message" | "user-typing" | "user-joined" | "user-left" => {
                let room = if name == "new-message" { arg["room"].as_str().map(str::to_owned) } else { None };
                if let Some(room) = room {
                    if !self.server_has(c, &room) && !self.clients[c].was_in.contains(&format!("chat:{room}")) {
                        self.fail(&format!("client {c} got a message of room {room} it is not in"));
                    }
                }
            }
            "room-info" => {
                if let Some(r) = arg["room"].as_str() {
                    self.clients[c].rooms.insert(r.to_owned());
                }
            }
            "document-state" if self.clients[c].replaying => {}
            "document-state" => {
                self.clients[c].doc = Some(DocView {
                    text: arg["content"].as_str().unwrap_or_default().encode_utf16().collect(),
                    version: arg["version"].as_u64().unwrap_or(0),
                    pending: VecDeque::new(),
                    sent: None,
                });
            }
            "text-change" => {
                let Some(mut view) = self.clients[c].doc.take() else { return };
                let Ok(mut r) = Delta::from_json(&arg["delta"], 10_000) else { self.fail("bad delta from the server") };
                for p in &mut view.pending {
                    let p2 = r.transform(p, true);
                    r = p.transform(&r, false);
                    *p = p2;
                }
                match r.apply(&view.text) {
                    Ok(t) => view.text = t,
                    Err(e) => self.fail(&format!("client {c} cannot apply a server op: {e}")),
                }
                view.version += 1;
                if arg["version"].as_u64() != Some(view.version) {
                    self.fail(&format!("client {c} at version {} got op {}", view.version, arg["version"]));
                }
                self.clients[c].doc = Some(view);
            }
            _ => {}
        }
    }

    fn on_ack(&mut self, c: usize, id: u64, body: Value) {
        self.acks_over_polling += usize::from(self.clients[c].polling.is_some());
        let Some(asked) = self.clients[c].asked.remove(&id) else {
            if self.clients[c].forgotten.remove(&id) {
                return;
            }
            self.fail(&format!("client {c} got ack {id} twice or unasked"));
        };
        match asked {
            Asked::Send { room, content } => {
                if body["success"] == json!(true) {
                    let mid = body["id"].as_str().unwrap_or_default().to_owned();
                    self.acked_messages.push((mid, content));
                    let who = self.clients[c].socket.clone().unwrap_or_default();
                    self.sends.entry(who).or_default().push(self.host.now);
                    let _ = room;
                }
            }
            Asked::Edit => {
                let view = self.clients[c].doc.as_mut();
                match (view, body.get("version").and_then(Value::as_u64)) {
                    (Some(v), Some(version)) => {
                        v.pending.pop_front();
                        v.sent = None;
                        v.version = version;
                    }
                    // Refused or not stored: resync the way a client does, by re-joining.
                    (Some(_), None) => {
                        self.clients[c].doc = None;
                        self.emit(c, "join-document", json!(DOC), None);
                    }
                    (None, _) => {}
                }
            }
            Asked::Other => {}
        }
    }

    /// Answers the oldest storage requests: all of them, or some, a few as failures.
    fn answer_store(&mut self, all: bool) {
        let held = self.host.held().len();
        let n = if all { held } else { self.rng.below(held + 1) };
        for _ in 0..n {
            if self.host.held().is_empty() {
                break;
            }
            let fail = !all && self.rng.chance(5);
            self.step_host(|h| {
                h.answer_held(0, fail);
            });
        }
    }

    fn connect(&mut self, c: usize) {
        let conn = self.host.conn();
        let polling = self.rng.chance(50);
        if polling {
            self.handshake = Some((conn, c));
        } else {
            self.clients[c].conn = Some(conn);
        }
        let query = if polling { "EIO=4&transport=polling" } else { "EIO=4&transport=websocket" };
        self.request(conn, Method::Get, query, b"", !polling);
        if !self.online(c) {
            return;
        }
        let cl = &self.clients[c];
        let auth = match (&cl.pid, self.rng.chance(70)) {
            (Some(pid), true) => json!({"pid": pid, "offset": cl.offset, "username": format!("u{c}")}),
            _ => json!({"username": format!("u{c}")}),
        };
        self.clients[c].pid = None;
        let text = format!("40{auth}");
        let how = if polling { "polling" } else { "websocket" };
        self.log.push(format!("t={} c{c} connects over {how} {text}", self.host.now.0));
        self.transmit(c, &text);
        self.poll(c);
    }

    /// A polling client's faults and its upgrade, one action at a time.
    fn polling_action(&mut self, c: usize) {
        let Some(p) = &self.clients[c].polling else {
            // A POST for a session this client lost: refused, never taken.
            if let (Some(sid), true) = (self.clients[c].stale_sid.clone(), self.rng.chance(20)) {
                self.log.push(format!("t={} c{c} posts to its old session", self.host.now.0));
                let query = format!("EIO=4&transport=polling&sid={sid}");
                self.post(c, &query, b"42[\"send-message\",{\"content\":\"late\",\"room\":\"a\"}]", true);
            }
            return;
        };
        let (sid, get, probe) = (p.sid.clone(), p.get, p.probe);
        match (probe, self.rng.below(10)) {
            // The upgrade: a probe, then (an action later) `5`.
            (None, 0..=3) => {
                let conn = self.host.conn();
                if let Some(p) = &mut self.clients[c].polling {
                    p.probe = Some((conn, false));
                }
                self.log.push(format!("t={} c{c} probes a WebSocket", self.host.now.0));
                let query = format!("EIO=4&transport=websocket&sid={sid}");
                self.request(conn, Method::Get, &query, b"", true);
                if self.clients[c].polling.as_ref().is_some_and(|p| p.probe.is_some()) {
                    self.input(Input::Frame { conn, frame: Frame::Text("2probe") });
                }
            }
            (Some((_, true)), 0..=5) => self.finish_upgrade(c),
            (Some((conn, _)), 6) => {
                self.log.push(format!("t={} c{c} drops its probe", self.host.now.0));
                if let Some(p) = &mut self.clients[c].polling {
                    p.probe = None;
                }
                self.input(Input::Ended { conn, how: TransportEnd::Error });
            }
            (_, 7) => {
                let lag = 1 + self.rng.below(20) as u32;
                self.log.push(format!("t={} c{c} stops polling for {lag} steps", self.host.now.0));
                if let Some(p) = &mut self.clients[c].polling {
                    p.lag = lag;
                }
            }
            (_, 8) if get.is_some() && probe.is_none() => {
                // Two GETs at once: the server closes the session, answering both.
                self.log.push(format!("t={} c{c} sends a second GET", self.host.now.0));
                let conn = self.host.conn();
                let query = format!("EIO=4&transport=polling&sid={sid}");
                self.request(conn, Method::Get, &query, b"", false);
                if self.clients[c].polling.is_some() {
                    self.fail(&format!("client {c}: a second GET did not end the session"));
                }
            }
            (_, 9) => {
                // Vanishes: no close, no more requests; the heartbeat must end it.
                self.log.push(format!("t={} c{c} vanishes", self.host.now.0));
                self.lost(c);
                self.clients[c].stale_sid = None;
            }
            _ => {}
        }
    }

    fn edit(&mut self, c: usize) {
        let Some(view) = self.clients[c].doc.as_mut() else { return };
        let len = view.text.len();
        let at = self.rng.below(len + 1);
        let boundary = |i: usize, t: &[u16]| i == 0 || i >= t.len() || !(0xDC00..0xE000).contains(&t[i]);
        let mut d = Delta::default();
        d.push(Op::Retain(at));
        if self.rng.chance(40) && at < len {
            let n = 1 + self.rng.below((len - at).min(4));
            if !boundary(at, &view.text) || !boundary(at + n, &view.text) {
                return;
            }
            d.push(Op::Delete(n));
        } else {
            if !boundary(at, &view.text) {
                return;
            }
            d.push(Op::Insert(["x", "é", "😀", "ab"][self.rng.below(4)].encode_utf16().collect()));
        }
        let Ok(t) = d.apply(&view.text) else { return };
        view.text = t;
        view.pending.push_back(d);
        self.flush_edit(c);
    }

    fn flush_edit(&mut self, c: usize) {
        if !self.writable(c) {
            return;
        }
        let Some(view) = self.clients[c].doc.as_mut() else { return };
        if view.sent.is_some() {
            return;
        }
        let Some(p) = view.pending.front() else { return };
        let arg = json!({"docId": DOC, "delta": p.to_json(), "version": view.version});
        view.sent = Some(view.version);
        self.emit(c, "text-change", arg, Some(Asked::Edit));
    }

    fn step(&mut self) {
        let c = self.rng.below(self.clients.len());
        let room = ROOMS[self.rng.below(ROOMS.len())].to_owned();
        let live = self.clients[c].socket.is_some();
        match self.rng.below(16) {
            0 if !self.online(c) => self.connect(c),
            0 | 1 if live => self.emit(c, "join", json!({"username": format!("u{c}"), "room": room}), None),
            2 if live => self.emit(c, "leave-room", json!(room), Some(Asked::Other)),
            3 | 4 if live => {
                let content = format!("m{}", self.rng.next_u64() % 1000);
                self.emit(
                    c,
                    "send-message",
                    json!({"content": content, "room": room}),
                    Some(Asked::Send { room, content }),
                );
            }
            5 if live => self.emit(c, "typing-start", json!({"room": room}), None),
            6 if live => self.emit(c, "typing-stop", json!({"room": room}), None),
            7 if live && self.clients[c].doc.is_none() => self.emit(c, "join-document", json!(DOC), None),
            7 | 8 if live => self.edit(c),
            9 => {
                let how = if self.rng.chance(50) { TransportEnd::Closed } else { TransportEnd::Error };
                if let Some(conn) = self.clients[c].conn {
                    self.log.push(format!("t={} c{c} drops", self.host.now.0));
                    self.lost(c);
                    self.input(Input::Ended { conn, how });
                } else if let Some(get) = self.clients[c].polling.as_ref().and_then(|p| p.get) {
                    // An abandoned long poll ends the session.
                    self.log.push(format!("t={} c{c} abandons its GET", self.host.now.0));
                    self.lost(c);
                    self.input(Input::Ended { conn: get, how });
                } else if self.clients[c].polling.is_some() && self.writable(c) {
                    self.log.push(format!("t={} c{c} closes its polling session", self.host.now.0));
                    self.transmit(c, "1");
                    self.lost(c);
                }
            }
            15 if self.rng.chance(50) => self.polling_action(c),
            10 | 11 => self.answer_store(false),
            12 if live => {
                let to = self.rng.below(self.clients.len());
                let to = self.clients[to].socket.clone().unwrap_or_else(|| "nobody".into());
                self.emit(c, "private-message", json!({"to": to, "content": "psst"}), Some(Asked::Other));
            }
            14 if self.rng.chance(10) => {
                // Live swap: the service continues from its own snapshot, as after a
                // component reload. Nothing a client can see may change.
                self.log.push(format!("t={} snapshot swap", self.host.now.0));
                let snap = self.host.machine.snapshot().unwrap_or_else(|e| self.fail(&format!("snapshot: {e}")));
                self.host.machine =
                    Service::restore(&snap, self.host.now).unwrap_or_else(|e| self.fail(&format!("restore: {e}")));
            }
            13 => {
                // A packet sent twice: the server must treat both as packets, nothing more.
                if live {
                    let content = "dup".to_string();
                    for _ in 0..2 {
                        let asked = Asked::Send { room: room.clone(), content: content.clone() };
                        self.emit(c, "send-message", json!({"content": content, "room": room}), Some(asked));
                    }
                }
            }
            _ => {
                let ms = [1, 10, 100, TYPING_MS, 1_000][self.rng.below(5)];
                self.advance(ms);
            }
        }
        for c in 0..self.clients.len() {
            self.flush_edit(c);
        }
        self.poll_all();
        self.check();
    }

    fn advance(&mut self, ms: u64) {
        let end = self.host.now.plus(ms);
        while let Some(t) = self.host.next_timer(end) {
            self.host.timeout_at(t);
            self.route();
            // Clients answer pings, as real ones do, unless their transport is gone.
            self.pong_all();
        }
        self.host.timeout_at(end);
        self.route();
    }

    fn pong_all(&mut self) {
        for c in 0..self.clients.len() {
            if let Some(conn) = self.clients[c].conn {
                self.input(Input::Frame { conn, frame: Frame::Text("3") });
            }
        }
        self.poll_all();
    }

    /// The room service's invariants (the host checks the contract and the bounds).
    fn check(&mut self) {
        let svc = &self.host.machine;
        if let Err(e) = svc.handler().check_invariants(svc.sockets(), self.host.now) {
            self.fail(&e);
        }
        // A token bucket admits at most its capacity plus one window's refill in a window.
        for (who, times) in &self.sends {
            for (i, t) in times.iter().enumerate() {
                let in_window = times[i..].iter().take_while(|u| u.since(*t) < CHAT.window_ms).count();
                if in_window > 2 * CHAT.capacity as usize {
                    let what = format!("{who} got {in_window} sends through in one window");
                    self.fail(&what);
                }
            }
        }
    }

    /// Quiescence: every store answered, every edit flushed; then everything must agree.
    fn settle(&mut self) {
        // Every polling client polls again and every upgrade ends, one way or the other.
        for c in 0..self.clients.len() {
            let probe = self.clients[c].polling.as_mut().and_then(|p| {
                p.lag = 0;
                p.probe
            });
            match probe {
                Some((_, true)) => self.finish_upgrade(c),
                Some((conn, false)) => {
                    if let Some(p) = &mut self.clients[c].polling {
                        p.probe = None;
                    }
                    self.input(Input::Ended { conn, how: TransportEnd::Closed });
                }
                None => {}
            }
        }
        for round in 0..50 {
            self.poll_all();
            self.answer_store(true);
            for c in 0..self.clients.len() {
                self.flush_edit(c);
            }
            // A few rounds at least: a polling client hears an answer one GET later.
            if round >= 5 && self.host.held().is_empty() {
                break;
            }
        }
        self.advance(TYPING_MS);
        self.check();
        let stored = self.host.store.messages_json();
        for (id, content) in &self.acked_messages {
            if !stored.iter().any(|m| m["id"].as_str() == Some(id) && m["content"].as_str() == Some(content)) {
                self.fail(&format!("acked message {id} ({content}) is not in the store"));
            }
        }
        let server = self.host.machine.handler().document_text("/", DOC);
        for (i, c) in self.clients.iter().enumerate() {
            if let (Some(view), Some(server)) = (&c.doc, &server) {
                if view.pending.is_empty() && String::from_utf16_lossy(&view.text) != *server {
                    let what = format!(
                        "client {i} has {:?}, the server {server:?} (websocket {:?}, polling {:?})",
                        String::from_utf16_lossy(&view.text),
                        c.conn,
                        c.polling
                    );
                    self.fail(&what);
                }
            }
        }
    }
}

#[test]
fn simulation_keeps_every_invariant() {
    let first: u64 = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let seeds: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let steps: usize = std::env::var("SIM_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(400);
    let mut totals = (0, 0, 0, 0);
    let mut polling = (0, 0, 0, 0);
    for seed in first..first + seeds {
        let mut sim = Sim::new(seed);
        // The host's checks panic on their own: report those with the seed too.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for c in 0..sim.clients.len() {
                sim.connect(c);
            }
            for _ in 0..steps {
                sim.step();
            }
            sim.settle();
        }));
        if let Err(panic) = run {
            let what = panic.downcast_ref::<String>().map(String::as_str).or(panic.downcast_ref::<&str>().copied());
            match what {
                Some(w) if !w.starts_with("simulation seed") => sim.fail(w),
                _ => std::panic::resume_unwind(panic),
            }
        }
        totals.0 += sim.acked_messages.len();
        totals.1 += sim.host.machine.handler().document_text("/", DOC).map_or(0, |t| t.len());
        totals.2 += sim.log.iter().filter(|l| l.contains("pid")).count();
        totals.3 += sim.log.iter().filter(|l| l.contains("snapshot swap")).count();
        polling.0 += sim.log.iter().filter(|l| l.contains("connects over polling")).count();
        polling.1 += sim.log.iter().filter(|l| l.ends_with(" upgrades")).count();
        polling.2 += sim.log.iter().filter(|l| l.contains("stops polling") || l.contains("abandons")).count();
        polling.3 += sim.acks_over_polling;
    }
    // A run that exercised nothing would pass trivially: make sure it did not.
    eprintln!(
        "simulated {seeds} seeds: {} messages acked, {} document bytes, {} recovery attempts, {} snapshot swaps, \
         {} polling sessions, {} upgrades, {} late or abandoned GETs, {} acks over long polls",
        totals.0, totals.1, totals.2, totals.3, polling.0, polling.1, polling.2, polling.3
    );
    assert!(totals.0 > seeds as usize && totals.2 > 0 && totals.3 > 0);
    assert!(polling.0 > 0 && polling.1 > 0 && polling.2 > 0 && polling.3 > 0);
}
