//! A test harness: a machine driven by a virtual clock that jumps straight to the next
//! deadline, with helpers that speak HTTP-ish and WebSocket-ish to it; and [`nodes`],
//! several machines on one clock joined by a deterministic bus.

pub mod nodes;

use crate::app::records::{RoomAnswer, RoomRequest};
use crate::host::{ConnId, Frame, Input, Method, OutFrame, Output, Request, TransportEnd};
use crate::service::Machine;
use crate::store::{StoreAnswer, StoreRequest};
use crate::time::Instant;
use serde_json::Value;
use std::collections::HashMap;

pub struct Harness<M: Machine> {
    pub machine: M,
    pub now: Instant,
    pub outputs: Vec<Output>,
    /// Answers storage requests at once, in order, when set.
    pub store: Option<MemStore>,
    next_conn: u64,
}

impl<M: Machine> Harness<M> {
    pub fn new(machine: M) -> Self {
        Harness { machine, now: Instant(0), outputs: Vec::new(), store: None, next_conn: 1 }
    }

    /// Like `new`, with an in-memory store answering every request.
    pub fn with_store(machine: M) -> Self {
        let mut h = Harness::new(machine);
        h.store = Some(MemStore::default());
        h
    }

    pub fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    fn drain(&mut self) {
        loop {
            let mut requests = Vec::new();
            while let Some(o) = self.machine.poll_output() {
                match (o, self.store.is_some()) {
                    (Output::Store { id, request }, true) => requests.push((id, request)),
                    (o, _) => self.outputs.push(o),
                }
            }
            if requests.is_empty() {
                return;
            }
            for (id, request) in requests {
                let answer = self.store.as_mut().expect("checked").answer(&request);
                self.machine.handle(Input::Stored { id, answer }, self.now);
            }
        }
    }

    pub fn input(&mut self, input: Input<'_>) {
        self.machine.handle(input, self.now);
        self.drain();
    }

    /// Moves the clock forward to `t` (no earlier than now), firing every deadline on the
    /// way in order.
    pub fn advance_to(&mut self, t: Instant) {
        self.advance(t.since(self.now));
    }

    /// Moves the clock forward by `ms`, firing every deadline on the way in order.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now.plus(ms);
        while let Some(t) = self.machine.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.machine.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
        self.machine.handle_timeout(self.now);
        self.drain();
    }

    pub fn request(&mut self, method: Method, query: &str, body: &[u8], websocket: bool) -> ConnId {
        let conn = self.conn();
        let req = Request { conn, method, query, body, too_large: false, websocket, remote: None };
        self.input(Input::Request(req));
        conn
    }

    pub fn get(&mut self, query: &str) -> ConnId {
        self.request(Method::Get, query, b"", false)
    }

    pub fn post(&mut self, query: &str, body: &[u8]) -> ConnId {
        self.request(Method::Post, query, body, false)
    }

    pub fn ws(&mut self, query: &str) -> ConnId {
        self.request(Method::Get, query, b"", true)
    }

    pub fn text(&mut self, conn: ConnId, text: &str) {
        self.input(Input::Frame { conn, frame: Frame::Text(text) });
    }

    pub fn binary(&mut self, conn: ConnId, bin: &[u8]) {
        self.input(Input::Frame { conn, frame: Frame::Binary(bin) });
    }

    pub fn end(&mut self, conn: ConnId, how: TransportEnd) {
        self.input(Input::Ended { conn, how });
    }

    /// Takes the HTTP answer of `conn`, if it came: (status, body as text).
    pub fn response(&mut self, conn: ConnId) -> Option<(u16, String)> {
        let i = self.outputs.iter().position(|o| matches!(o, Output::Respond { conn: c, .. } if *c == conn))?;
        match self.outputs.remove(i) {
            Output::Respond { status, body, .. } => Some((status, String::from_utf8_lossy(&body).into_owned())),
            _ => unreachable!(),
        }
    }

    /// Takes every frame sent on `conn` so far, text frames as strings, binary as `<bin:..>`.
    pub fn frames(&mut self, conn: ConnId) -> Vec<String> {
        let mut out = Vec::new();
        self.outputs.retain(|o| match o {
            Output::Send { conn: c, frame } if *c == conn => {
                out.push(match frame {
                    OutFrame::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    OutFrame::Binary(b) => format!("<bin:{:?}>", &b[..]),
                });
                false
            }
            _ => true,
        });
        out
    }

    /// Takes the first frame sent on `conn`, leaving the rest.
    pub fn first_frame(&mut self, conn: ConnId) -> Option<String> {
        let i = self.outputs.iter().position(|o| matches!(o, Output::Send { conn: c, .. } if *c == conn))?;
        match self.outputs.remove(i) {
            Output::Send { frame: OutFrame::Text(t), .. } => Some(String::from_utf8_lossy(&t).into_owned()),
            _ => None,
        }
    }

    /// Takes the close of `conn`, if it came: its code.
    pub fn closed(&mut self, conn: ConnId) -> Option<u16> {
        let i = self.outputs.iter().position(|o| matches!(o, Output::Close { conn: c, .. } if *c == conn))?;
        match self.outputs.remove(i) {
            Output::Close { code, .. } => Some(code),
            _ => unreachable!(),
        }
    }

    pub fn accepted(&mut self, conn: ConnId) -> bool {
        let i = self.outputs.iter().position(|o| matches!(o, Output::Accept { conn: c } if *c == conn));
        i.map(|i| self.outputs.remove(i)).is_some()
    }

    /// A polling handshake: returns the sid.
    pub fn open_polling(&mut self, path_query: &str) -> String {
        let c = self.get(path_query);
        let (status, body) = self.response(c).expect("handshake answered");
        assert_eq!(status, 200, "{body}");
        sid_of(&body)
    }

    /// A WebSocket handshake: returns the connection and the sid.
    pub fn open_ws(&mut self) -> (ConnId, String) {
        let c = self.ws("EIO=4&transport=websocket");
        assert!(self.accepted(c));
        let frames = self.frames(c);
        (c, sid_of(&frames[0]))
    }
}

pub fn sid_of(open: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&open[1..]).expect("open packet JSON");
    v["sid"].as_str().expect("sid").to_owned()
}

/// A store in memory with the semantics the host's store has for the room service's
/// records (see `app/records.rs`): it decodes each request, as the SQLite store does.
#[derive(Debug, Default)]
pub struct MemStore {
    /// (scope, room, message JSON) in the order stored.
    messages: Vec<(String, String, String)>,
    /// (user, id, notification JSON, read) in the order first stored.
    notifications: Vec<(String, String, String, bool)>,
    documents: HashMap<(String, String), (String, u64)>,
    /// Makes every request fail.
    pub failing: bool,
}

impl MemStore {
    /// Every stored chat message, in order.
    pub fn messages_json(&self) -> Vec<Value> {
        self.messages.iter().map(|(_, _, m)| serde_json::from_str(m).expect("stored JSON")).collect()
    }

    pub fn answer(&mut self, request: &StoreRequest) -> StoreAnswer {
        if self.failing {
            return StoreAnswer::Failed("store is down".into());
        }
        match RoomRequest::from_store(request) {
            Ok(request) => self.run(request).into(),
            Err(why) => StoreAnswer::Failed(why),
        }
    }

    fn run(&mut self, request: RoomRequest) -> RoomAnswer {
        let limit = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        match request {
            RoomRequest::AppendMessage { scope, room, message } => {
                self.messages.push((scope, room, message));
                RoomAnswer::Done
            }
            RoomRequest::LoadHistory { scope, room, limit: n } => {
                let all: Vec<String> = self
                    .messages
                    .iter()
                    .filter(|(s, r, _)| *s == scope && *r == room)
                    .map(|(_, _, m)| m.clone())
                    .collect();
                RoomAnswer::Messages(all[all.len().saturating_sub(limit(n))..].to_vec())
            }
            RoomRequest::PutNotification { user, id, notification } => {
                match self.notifications.iter_mut().find(|(u, i, _, _)| *u == user && *i == id) {
                    Some(kept) => kept.2 = notification,
                    None => self.notifications.push((user, id, notification, false)),
                }
                RoomAnswer::Done
            }
            RoomRequest::LoadNotifications { user, limit: n } => RoomAnswer::Notifications(
                self.notifications
                    .iter()
                    .rev()
                    .filter(|(u, ..)| *u == user)
                    .take(limit(n))
                    .map(|(_, _, json, read)| (json.clone(), *read))
                    .collect(),
            ),
            RoomRequest::MarkRead { user, id } => {
                let mut n = 0;
                for (u, i, _, read) in &mut self.notifications {
                    if *u == user && *i == id {
                        *read = true;
                        n += 1;
                    }
                }
                RoomAnswer::Updated(n)
            }
            RoomRequest::MarkAllRead { user } => {
                let mut n = 0;
                for (u, _, _, read) in &mut self.notifications {
                    if *u == user && !*read {
                        *read = true;
                        n += 1;
                    }
                }
                RoomAnswer::Updated(n)
            }
            RoomRequest::SaveDocument { scope, doc, content, version } => {
                self.documents.insert((scope, doc), (content, version));
                RoomAnswer::Done
            }
            RoomRequest::LoadDocument { scope, doc } => {
                RoomAnswer::Document(self.documents.get(&(scope, doc)).cloned())
            }
        }
    }
}
