//! A test harness: a machine driven by a virtual clock that jumps straight to the next
//! deadline, with helpers that speak HTTP-ish and WebSocket-ish to it.

use crate::host::{ConnId, Frame, Input, Method, OutFrame, Output, Request, TransportEnd};
use crate::service::Machine;
use crate::time::Instant;

pub struct Harness<M: Machine> {
    pub machine: M,
    pub now: Instant,
    pub outputs: Vec<Output>,
    next_conn: u64,
}

impl<M: Machine> Harness<M> {
    pub fn new(machine: M) -> Self {
        Harness { machine, now: Instant(0), outputs: Vec::new(), next_conn: 1 }
    }

    pub fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    fn drain(&mut self) {
        while let Some(o) = self.machine.poll_output() {
            self.outputs.push(o);
        }
    }

    pub fn input(&mut self, input: Input<'_>) {
        self.machine.handle(input, self.now);
        self.drain();
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
