//! A test harness: a machine driven by a virtual clock that jumps straight to the next
//! deadline, with helpers that speak HTTP-ish and WebSocket-ish to it; and [`nodes`],
//! several machines on one clock joined by a deterministic bus.

pub mod nodes;

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

/// A store in memory with the semantics the host's store has (see `store.rs`).
#[derive(Debug, Default)]
pub struct MemStore {
    messages: Vec<(String, String, Value)>,
    /// (user, notification) in the order stored.
    notifications: Vec<(String, Value)>,
    documents: HashMap<(String, String), (String, u64)>,
    /// Makes every request fail.
    pub failing: bool,
}

impl MemStore {
    /// Every stored chat message, in order.
    pub fn messages_json(&self) -> Vec<Value> {
        self.messages.iter().map(|(_, _, m)| m.clone()).collect()
    }

    pub fn answer(&mut self, request: &StoreRequest) -> StoreAnswer {
        if self.failing {
            return StoreAnswer::Failed("store is down".into());
        }
        match request {
            StoreRequest::AppendMessage { scope, room, message } => {
                self.messages.push((scope.clone(), room.clone(), message.clone()));
                StoreAnswer::Done
            }
            StoreRequest::LoadHistory { scope, room, limit } => {
                let all: Vec<Value> = self
                    .messages
                    .iter()
                    .filter(|(s, r, _)| s == scope && r == room)
                    .map(|(_, _, m)| m.clone())
                    .collect();
                StoreAnswer::Records(all[all.len().saturating_sub(*limit)..].to_vec())
            }
            StoreRequest::PutNotification { user, notification } => {
                self.notifications.push((user.clone(), notification.clone()));
                StoreAnswer::Done
            }
            StoreRequest::LoadNotifications { user, limit } => StoreAnswer::Records(
                self.notifications
                    .iter()
                    .rev()
                    .filter(|(u, _)| u == user)
                    .take(*limit)
                    .map(|(_, n)| n.clone())
                    .collect(),
            ),
            StoreRequest::MarkRead { user, id } => {
                let mut n = 0;
                for (u, notif) in &mut self.notifications {
                    if u == user && notif["id"].as_str() == Some(id) {
                        notif["read"] = Value::Bool(true);
                        n += 1;
                    }
                }
                StoreAnswer::Updated(n)
            }
            StoreRequest::MarkAllRead { user } => {
                let mut n = 0;
                for (u, notif) in &mut self.notifications {
                    if u == user && notif["read"] == Value::Bool(false) {
                        notif["read"] = Value::Bool(true);
                        n += 1;
                    }
                }
                StoreAnswer::Updated(n)
            }
            StoreRequest::SaveDocument { scope, doc, content, version } => {
                self.documents.insert((scope.clone(), doc.clone()), (content.clone(), *version));
                StoreAnswer::Done
            }
            StoreRequest::LoadDocument { scope, doc } => {
                StoreAnswer::Document(self.documents.get(&(scope.clone(), doc.clone())).cloned())
            }
        }
    }
}
