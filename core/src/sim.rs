//! A deterministic simulation: many clients on a virtual clock doing random protocol and
//! room-service actions, with faults (dropped transports, reconnects with recovery, late
//! and failed storage answers, duplicated packets), checking invariants after every step
//! and convergence at quiescence.
//!
//! `cargo test -p parlor-core sim` runs `SIM_SEEDS` seeds (default 200) from `SIM_SEED`
//! (default 1). A failing seed prints the command that reruns just it.

use crate::app::ot::{Delta, Op};
use crate::app::ratelimit::Limit;
use crate::app::{AppConfig, RoomService};
use crate::codec::socketio::{decode, PacketType};
use crate::host::{ConnId, Frame, Input, Method, OutFrame, Output, Request, TransportEnd};
use crate::service::Machine;
use crate::store::{StoreId, StoreRequest};
use crate::testing::MemStore;
use crate::time::Instant;
use crate::{Config, Service};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};

const ROOMS: [&str; 3] = ["a", "b", "c"];
const DOC: &str = "d";
const TYPING_MS: u64 = 300;
const CHAT: Limit = Limit { capacity: 8, window_ms: 2_000 };

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: plenty for choosing actions, and exactly repeatable.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

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

#[derive(Debug, Default)]
struct Client {
    conn: Option<ConnId>,
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
    svc: Service<RoomService>,
    now: Instant,
    next_conn: u64,
    clients: Vec<Client>,
    store: MemStore,
    /// Storage requests not answered yet, in the order made.
    store_queue: VecDeque<(StoreId, StoreRequest)>,
    /// Every message id that got a success ack.
    acked_messages: Vec<(String, String)>,
    /// Successful chat sends per socket id, with when.
    sends: HashMap<String, Vec<Instant>>,
    log: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let config =
            Config { recovery_window_ms: 5_000, ping_interval_ms: 2_000, ping_timeout_ms: 1_000, ..Config::default() };
        let app =
            AppConfig { typing_timeout_ms: TYPING_MS, chat_limit: CHAT, doc_log_limit: 50, ..AppConfig::default() };
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&rng.next().to_le_bytes());
        let n = 3 + rng.below(5);
        let mut sim = Sim {
            rng,
            seed,
            svc: Service::new(config, s, Instant(0), RoomService::new(app)),
            now: Instant(0),
            next_conn: 0,
            clients: (0..n).map(|_| Client::default()).collect(),
            store: MemStore::default(),
            store_queue: VecDeque::new(),
            acked_messages: Vec::new(),
            sends: HashMap::new(),
            log: Vec::new(),
        };
        sim.input(Input::WallClock { unix_ms: 1_795_624_800_000 });
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
        self.svc.handle(input, self.now);
        self.drain();
    }

    /// Routes every output: frames to their clients, storage requests to the queue.
    fn drain(&mut self) {
        while let Some(o) = self.svc.poll_output() {
            match o {
                Output::Store { id, request } => self.store_queue.push_back((id, request)),
                Output::Send { conn, frame: OutFrame::Text(t) } => {
                    if let Some(c) = self.client_of(conn) {
                        self.on_frame(c, &String::from_utf8_lossy(&t));
                    }
                }
                Output::Close { conn, .. } => {
                    if let Some(c) = self.client_of(conn) {
                        self.lost(c);
                    }
                }
                _ => {}
            }
        }
    }

    fn client_of(&self, conn: ConnId) -> Option<usize> {
        self.clients.iter().position(|c| c.conn == Some(conn))
    }

    fn lost(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        cl.conn = None;
        cl.socket = None;
        cl.rooms.clear();
        cl.doc = None;
        let asked: Vec<u64> = cl.asked.drain().map(|(id, _)| id).collect();
        cl.forgotten.extend(asked);
    }

    fn emit(&mut self, c: usize, event: &str, arg: Value, asked: Option<Asked>) {
        let Some(conn) = self.clients[c].conn else { return };
        if self.clients[c].socket.is_none() {
            return;
        }
        let ack = asked.map(|a| {
            let cl = &mut self.clients[c];
            cl.next_ack += 1;
            cl.asked.insert(cl.next_ack, a);
            cl.next_ack
        });
        let text = format!("42{}{}", ack.map(|a| a.to_string()).unwrap_or_default(), json!([event, arg]));
        self.log.push(format!("t={} c{c} {text}", self.now.0));
        self.input(Input::Frame { conn, frame: Frame::Text(&text) });
    }

    fn on_frame(&mut self, c: usize, frame: &str) {
        if let Some(rest) = frame.strip_prefix("40") {
            let reply: Value = serde_json::from_str(rest).unwrap_or(Value::Null);
            let cl = &mut self.clients[c];
            cl.socket = reply["sid"].as_str().map(str::to_owned);
            cl.pid = reply["pid"].as_str().map(str::to_owned);
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
        self.svc.io().rooms_of(&s.as_str().into()).contains(&format!("chat:{room}"))
    }

    fn on_event(&mut self, c: usize, name: &str, arg: Value) {
        match name {
            "new-message" | "user-typing" | "user-joined" | "user-left" => {
                let room = if name == "new-message" { arg["room"].as_str().map(str::to_owned) } else { None };
                if let Some(room) = room {
                    if !self.server_has(c, &room) {
                        self.fail(&format!("client {c} got a message of room {room} it is not in"));
                    }
                }
            }
            "room-info" => {
                if let Some(r) = arg["room"].as_str() {
                    self.clients[c].rooms.insert(r.to_owned());
                }
            }
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
                    self.sends.entry(who).or_default().push(self.now);
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

    fn answer_store(&mut self, all: bool) {
        let n = if all { self.store_queue.len() } else { self.rng.below(self.store_queue.len() + 1) };
        for _ in 0..n {
            let Some((id, req)) = self.store_queue.pop_front() else { break };
            self.store.failing = !all && self.rng.chance(5);
            let answer = self.store.answer(&req);
            self.input(Input::Stored { id, answer });
        }
        self.store.failing = false;
    }

    fn connect(&mut self, c: usize) {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        let req = Request {
            conn,
            method: Method::Get,
            query: "EIO=4&transport=websocket",
            body: b"",
            too_large: false,
            websocket: true,
            remote: None,
        };
        self.clients[c].conn = Some(conn);
        self.input(Input::Request(req));
        let cl = &self.clients[c];
        let auth = match (&cl.pid, self.rng.chance(70)) {
            (Some(pid), true) => json!({"pid": pid, "offset": cl.offset, "username": format!("u{c}")}),
            _ => json!({"username": format!("u{c}")}),
        };
        self.clients[c].pid = None;
        let text = format!("40{auth}");
        self.log.push(format!("t={} c{c} connects {text}", self.now.0));
        self.input(Input::Frame { conn, frame: Frame::Text(&text) });
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
            0 if self.clients[c].conn.is_none() => self.connect(c),
            0 | 1 if live => self.emit(c, "join", json!({"username": format!("u{c}"), "room": room}), None),
            2 if live => self.emit(c, "leave-room", json!(room), Some(Asked::Other)),
            3 | 4 if live => {
                let content = format!("m{}", self.rng.next() % 1000);
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
                if let Some(conn) = self.clients[c].conn {
                    let how = if self.rng.chance(50) { TransportEnd::Closed } else { TransportEnd::Error };
                    self.log.push(format!("t={} c{c} drops", self.now.0));
                    self.lost(c);
                    self.input(Input::Ended { conn, how });
                }
            }
            10 | 11 => self.answer_store(false),
            12 if live => {
                let to = self.rng.below(self.clients.len());
                let to = self.clients[to].socket.clone().unwrap_or_else(|| "nobody".into());
                self.emit(c, "private-message", json!({"to": to, "content": "psst"}), Some(Asked::Other));
            }
            14 if self.rng.chance(10) => {
                // Live swap: the service continues from its own snapshot, as after a
                // component reload. Nothing a client can see may change.
                self.log.push(format!("t={} snapshot swap", self.now.0));
                let snap = self.svc.snapshot().unwrap_or_else(|e| self.fail(&format!("snapshot: {e}")));
                self.svc = Service::restore(&snap, self.now).unwrap_or_else(|e| self.fail(&format!("restore: {e}")));
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
        self.check();
    }

    fn advance(&mut self, ms: u64) {
        let end = self.now.plus(ms);
        while let Some(t) = self.svc.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.svc.handle_timeout(self.now);
            self.drain();
            // Clients answer pings, as real ones do, unless their transport is gone.
            self.pong_all();
        }
        self.now = end;
        self.svc.handle_timeout(end);
        self.drain();
    }

    fn pong_all(&mut self) {
        for c in 0..self.clients.len() {
            if let Some(conn) = self.clients[c].conn {
                self.input(Input::Frame { conn, frame: Frame::Text("3") });
            }
        }
    }

    fn check(&mut self) {
        if let Err(e) = self.svc.handler().check_invariants(self.svc.io(), self.now) {
            self.fail(&e);
        }
        let m = self.svc.metrics();
        let config = self.svc.io().config();
        if m.connections > config.max_connections {
            self.fail("more sessions than allowed");
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
        for _ in 0..50 {
            self.answer_store(true);
            for c in 0..self.clients.len() {
                self.flush_edit(c);
            }
            if self.store_queue.is_empty() {
                break;
            }
        }
        self.advance(TYPING_MS);
        self.check();
        let stored = self.store.messages_json();
        for (id, content) in &self.acked_messages {
            if !stored.iter().any(|m| m["id"].as_str() == Some(id) && m["content"].as_str() == Some(content)) {
                self.fail(&format!("acked message {id} ({content}) is not in the store"));
            }
        }
        let server = self.svc.handler().document_text("/", DOC);
        for (i, c) in self.clients.iter().enumerate() {
            if let (Some(view), Some(server)) = (&c.doc, &server) {
                if view.pending.is_empty() && String::from_utf16_lossy(&view.text) != *server {
                    let what =
                        format!("client {i} has {:?}, the server {server:?}", String::from_utf16_lossy(&view.text));
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
    for seed in first..first + seeds {
        let mut sim = Sim::new(seed);
        for c in 0..sim.clients.len() {
            sim.connect(c);
        }
        for _ in 0..steps {
            sim.step();
        }
        sim.settle();
        totals.0 += sim.acked_messages.len();
        totals.1 += sim.svc.handler().document_text("/", DOC).map_or(0, |t| t.len());
        totals.2 += sim.log.iter().filter(|l| l.contains("pid")).count();
        totals.3 += sim.log.iter().filter(|l| l.contains("snapshot swap")).count();
    }
    // A run that exercised nothing would pass trivially: make sure it did not.
    eprintln!(
        "simulated {seeds} seeds: {} messages acked, {} document bytes, {} recovery attempts, {} snapshot swaps",
        totals.0, totals.1, totals.2, totals.3
    );
    assert!(totals.0 > seeds as usize && totals.2 > 0 && totals.3 > 0);
}
