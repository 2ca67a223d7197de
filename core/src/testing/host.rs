//! [`Host`]: the one host model that the unit tests, the simulation and the fuzz targets
//! drive a machine through.
//!
//! It does what a real host does, in memory and on a virtual clock: it feeds inputs,
//! drains every output after each of them (the drain rule), fires deadlines in order, and
//! keeps the storage requests the machine made in an in-memory store ([`MemStore`]), either
//! answered at once or held for the test to answer later, wrongly, or never.
//!
//! On the way it holds the machine to the output contract of [`crate::host`] (see
//! [`Contract`]), so that no test has to write it again: every scenario keeps only its own
//! actions and its own invariants.

use super::MemStore;
use crate::config::Config;
use crate::host::{
    ClusterOutput, ConnId, Frame, Input, Method, OutFrame, Output, Request, StoreAnswer, StoreId, StoreRequest,
    TransportEnd,
};
use crate::service::Machine;
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// 2026-11-25T16:40:00.000Z: the wall clock every simulated host starts from.
pub const WALL_MS: u64 = 1_795_624_800_000;

/// The tests' random stream: xorshift64*, plenty for choosing actions and exactly
/// repeatable from its seed. (The core's own ids come from [`crate::rng::Rng`].)
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        // Spread small seeds over the state; xorshift needs a state that is not zero.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// What the host knows of one transport it handed the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// An Engine.IO request; `ws` if it asked to upgrade, `long_poll` if it may wait.
    Request {
        ws: bool,
        long_poll: bool,
    },
    Api,
}

#[derive(Clone, Copy, Debug)]
struct Conn {
    kind: Kind,
    responded: bool,
    accepted: bool,
    closed: bool,
    /// The host said it ended (`Input::Ended`).
    ended: bool,
}

/// The output contract, checked on every output and after every step:
///
/// - `Respond` only to a request or API conn the host handed in, once, never to one that was
///   accepted or that the host reported ended; every request but a long poll is answered
///   (or accepted) in its own step, and no more long polls wait than there are sessions;
/// - `Accept` only to a WebSocket request, once, before any answer; `Send`/`Close` only
///   on an accepted conn that is not closed or ended, `Close` once; text frames are UTF-8;
/// - storage ids are never reused;
/// - after `handle_timeout(t)`, `poll_timeout()` is `None` or later than `t`;
/// - with [`Host::limits`]: sessions within `max_connections`, sockets per namespace
///   within sessions × `max_namespaces_per_connection`;
/// - after `Shutdown`: no sessions, every request answered, every WebSocket closed, and it
///   stays so.
#[derive(Clone, Debug, Default)]
pub struct Contract {
    conns: HashMap<ConnId, Conn>,
    /// Request conns still open on both sides, in the order made (ids only grow).
    open: BTreeSet<ConnId>,
    /// Long polls waiting for packets.
    waiting: BTreeSet<ConnId>,
    store_ids: HashSet<StoreId>,
    /// Cluster channels subscribed and not unsubscribed since.
    pub subscribed: BTreeSet<String>,
    /// (max_connections, max_namespaces_per_connection).
    limits: Option<(usize, usize)>,
    shut_down: bool,
}

impl Contract {
    /// What an input tells the host about its transports, before the machine sees it.
    fn input(&mut self, input: &Input<'_>) {
        match input {
            Input::Request(r) => {
                let long_poll = !r.websocket && r.method == Method::Get && r.query.contains("sid=");
                let kind = Kind::Request { ws: r.websocket, long_poll };
                self.conns
                    .insert(r.conn, Conn { kind, responded: false, accepted: false, closed: false, ended: false });
                self.open.insert(r.conn);
                if long_poll {
                    self.waiting.insert(r.conn);
                }
            }
            Input::Api(r) => {
                let conn = Conn { kind: Kind::Api, responded: false, accepted: false, closed: false, ended: false };
                self.conns.insert(r.conn, conn);
            }
            Input::Ended { conn, .. } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.ended = true;
                }
                self.open.remove(conn);
                self.waiting.remove(conn);
            }
            Input::Shutdown => self.shut_down = true,
            _ => {}
        }
    }

    fn conn(&mut self, conn: ConnId, what: &str) -> &mut Conn {
        self.conns.get_mut(&conn).unwrap_or_else(|| panic!("{what} on unknown {conn:?}"))
    }

    fn websocket(&mut self, conn: ConnId, what: &str) -> &mut Conn {
        let c = self.conn(conn, what);
        assert!(c.accepted, "{what} on {conn:?}, never accepted");
        assert!(!c.ended, "{what} on {conn:?} after the host said it ended");
        assert!(!c.closed, "{what} on {conn:?} after its Close");
        c
    }

    fn output(&mut self, o: &Output) {
        match o {
            Output::Respond { conn, .. } => {
                let c = self.conn(*conn, "Respond");
                assert!(!c.responded, "{conn:?} answered twice");
                assert!(!c.accepted, "{conn:?} answered after being accepted");
                assert!(!c.ended, "{conn:?} answered after the host said it ended");
                c.responded = true;
                self.open.remove(conn);
                self.waiting.remove(conn);
            }
            Output::Accept { conn } => {
                let c = self.conn(*conn, "Accept");
                assert!(matches!(c.kind, Kind::Request { ws: true, .. }), "Accept of a non-WebSocket {conn:?}");
                assert!(!c.accepted && !c.responded && !c.ended, "{conn:?} accepted twice or late");
                c.accepted = true;
            }
            Output::Send { conn, frame } => {
                self.websocket(*conn, "Send");
                if let OutFrame::Text(t) = frame {
                    assert!(std::str::from_utf8(t).is_ok(), "text frame on {conn:?} not UTF-8");
                }
            }
            Output::Close { conn, .. } => {
                self.websocket(*conn, "Close").closed = true;
                self.open.remove(conn);
            }
            Output::Store { id, .. } => assert!(self.store_ids.insert(*id), "store id {id:?} reused"),
            Output::Cluster(ClusterOutput::Subscribe { channel }) => {
                assert!(self.subscribed.insert(channel.clone()), "{channel} subscribed twice");
            }
            Output::Cluster(ClusterOutput::Unsubscribe { channel }) => {
                assert!(self.subscribed.remove(channel), "{channel} unsubscribed, never subscribed");
            }
            Output::Cluster(ClusterOutput::Publish { payload, .. }) => {
                assert!(!payload.is_empty(), "an empty cluster message");
            }
            Output::Cluster(ClusterOutput::SetExpiring { ttl_ms, .. }) => {
                assert!(*ttl_ms > 0, "a key that never expires")
            }
            Output::Cluster(ClusterOutput::Delete { .. }) => {}
        }
    }

    /// The checks that hold between steps; `request` is the step's request, if it was one.
    fn after_step<M: Machine>(&self, machine: &M, request: Option<(ConnId, &str)>) {
        if let Some((conn, query)) = request {
            let c = &self.conns[&conn];
            let answered = c.responded || c.accepted || matches!(c.kind, Kind::Request { long_poll: true, .. });
            assert!(answered, "request {query:?} not answered in its step");
        }
        let m = machine.metrics();
        if let Some((max_connections, max_namespaces)) = self.limits {
            assert!(m.connections <= max_connections, "{} connections", m.connections);
            for (nsp, sockets, _) in &m.namespaces {
                assert!(
                    *sockets <= m.connections * max_namespaces,
                    "{sockets} sockets in {nsp} over {} connections",
                    m.connections
                );
            }
        }
        let waiting = self.waiting.len();
        assert!(waiting <= m.connections, "{waiting} long polls wait on {} sessions", m.connections);
        if self.shut_down {
            assert_eq!(m.connections, 0, "connections after shutdown");
            if let Some(c) = self.open.first() {
                panic!("{c:?} still open after shutdown: {:?}", self.conns[c]);
            }
        }
    }
}

/// Outputs by connection (storage requests under `None`), each list in order: what a
/// machine restored from a snapshot must answer exactly alike (across connections the
/// order is not part of the contract).
#[must_use]
pub fn per_conn(outs: &[Output]) -> BTreeMap<Option<ConnId>, Vec<String>> {
    let mut per: BTreeMap<_, Vec<String>> = BTreeMap::new();
    for o in outs {
        per.entry(o.conn()).or_default().push(format!("{o:?}"));
    }
    per
}

/// A check of a machine's own bounds, e.g. `Service::check_bounds`.
pub type Bounds<M> = fn(&M) -> Result<(), String>;

/// A machine, its clock, its store, and what it sent that the test has not taken yet.
pub struct Host<M: Machine> {
    pub machine: M,
    pub now: Instant,
    /// Outputs drained (and checked) but not yet taken by the test, in order.
    pub outputs: Vec<Output>,
    /// The in-memory store the host answers storage requests from.
    pub store: MemStore,
    /// Answer every storage request at once, in order, as the embedded store does; when
    /// false, requests are held (and left in `outputs` too) until the test answers them.
    pub answer_at_once: bool,
    /// Storage requests not answered yet, in the order made.
    held: Vec<(StoreId, StoreRequest)>,
    /// `None` for a machine restored from bytes the host did not make: it may know conns
    /// this host never saw, so only the clock rule holds it.
    contract: Option<Contract>,
    /// Checked after every step, e.g. `Service::check_bounds`.
    bounds: Option<Bounds<M>>,
    /// Prints every input and output (the fuzz targets' `PARLOR_FUZZ_TRACE`).
    pub trace: bool,
    next_conn: u64,
}

impl<M: Machine> Host<M> {
    /// A host that holds storage requests for the test to answer.
    pub fn new(machine: M) -> Self {
        Host {
            machine,
            now: Instant(0),
            outputs: Vec::new(),
            store: MemStore::default(),
            answer_at_once: false,
            held: Vec::new(),
            contract: Some(Contract::default()),
            bounds: None,
            trace: false,
            next_conn: 1,
        }
    }

    /// Like `new`, answering every storage request at once from the in-memory store.
    pub fn with_store(machine: M) -> Self {
        Host { answer_at_once: true, ..Host::new(machine) }
    }

    /// A host for a machine restored from bytes it did not make, at `now`: it drives it
    /// the same way but cannot hold it to the contract (the machine may know conns and
    /// store ids this host never saw).
    pub fn adopt(machine: M, now: Instant) -> Self {
        Host { now, contract: None, ..Host::new(machine) }
    }

    /// A host for `machine`, restored from a snapshot of this host's machine: it starts
    /// where this one is (clock, conns, held storage requests), so both can be given the
    /// same inputs from here on.
    pub fn twin(&self, machine: M) -> Self {
        Host {
            now: self.now,
            answer_at_once: self.answer_at_once,
            held: self.held.clone(),
            contract: self.contract.clone(),
            bounds: self.bounds,
            trace: self.trace,
            next_conn: self.next_conn,
            ..Host::new(machine)
        }
    }

    /// Also checks the connection limits of `config` after every step.
    #[must_use]
    pub fn limits(mut self, config: &Config) -> Self {
        if let Some(c) = &mut self.contract {
            c.limits = Some((config.max_connections, config.max_namespaces_per_connection));
        }
        self
    }

    /// Also checks `bounds` after every step.
    #[must_use]
    pub fn bounds(mut self, bounds: Bounds<M>) -> Self {
        self.bounds = Some(bounds);
        self
    }

    /// A fresh connection id.
    pub fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// Hands the machine one input and drains what it does about it.
    pub fn input(&mut self, input: Input<'_>) {
        if self.trace {
            eprintln!("-> {input:?}");
        }
        if let Some(c) = &mut self.contract {
            c.input(&input);
        }
        if let Input::Stored { id, .. } = &input {
            // An id that is not held is a test's deliberate stale answer.
            self.held.retain(|(h, _)| h != id);
        }
        let request = match &input {
            Input::Request(r) => Some((r.conn, r.query)),
            _ => None,
        };
        self.machine.handle(input, self.now);
        self.drain();
        self.after_step(request);
    }

    /// `input`, then takes every output.
    pub fn handle(&mut self, input: Input<'_>) -> Vec<Output> {
        self.input(input);
        std::mem::take(&mut self.outputs)
    }

    fn drain(&mut self) {
        loop {
            let mut answer = Vec::new();
            while let Some(o) = self.machine.poll_output() {
                if self.trace {
                    eprintln!("  <- {o:?}");
                }
                if let Some(c) = &mut self.contract {
                    c.output(&o);
                }
                match o {
                    Output::Store { id, request } if self.answer_at_once => answer.push((id, request)),
                    Output::Store { id, ref request } => {
                        self.held.push((id, request.clone()));
                        self.outputs.push(o);
                    }
                    o => self.outputs.push(o),
                }
            }
            if answer.is_empty() {
                return;
            }
            for (id, request) in answer {
                let answer = self.store.answer(&request);
                self.machine.handle(Input::Stored { id, answer }, self.now);
            }
        }
    }

    fn after_step(&self, request: Option<(ConnId, &str)>) {
        if let Some(c) = &self.contract {
            c.after_step(&self.machine, request);
        }
        if let Some(Err(e)) = self.bounds.map(|b| b(&self.machine)) {
            panic!("out of bounds: {e}");
        }
    }

    /// Storage requests not answered yet, in the order made.
    #[must_use]
    pub fn held(&self) -> &[(StoreId, StoreRequest)] {
        &self.held
    }

    /// Takes the `i`-th held storage request (counted round), to answer it by hand or
    /// never; `None` when none is held.
    pub fn take_held(&mut self, i: usize) -> Option<(StoreId, StoreRequest)> {
        (!self.held.is_empty()).then(|| self.held.remove(i % self.held.len()))
    }

    /// Takes the `i`-th held storage request (counted round) with the store's answer to
    /// it, a failure when `fail`, for the test to hand in; `None` when none is held.
    pub fn take_answered(&mut self, i: usize, fail: bool) -> Option<(StoreId, StoreAnswer)> {
        let (id, request) = self.take_held(i)?;
        let failing = self.store.failing;
        self.store.failing |= fail;
        let answer = self.store.answer(&request);
        self.store.failing = failing;
        Some((id, answer))
    }

    /// Answers the `i`-th held storage request (counted round) from the store, as a
    /// failure when `fail`; false when none is held.
    pub fn answer_held(&mut self, i: usize, fail: bool) -> bool {
        let Some((id, answer)) = self.take_answered(i, fail) else { return false };
        self.input(Input::Stored { id, answer });
        true
    }

    /// The next deadline, if it is due by `end`.
    #[must_use]
    pub fn next_timer(&self, end: Instant) -> Option<Instant> {
        self.machine.poll_timeout().filter(|t| *t <= end)
    }

    /// Moves the clock to `t` (never back) and fires what is due.
    pub fn timeout_at(&mut self, t: Instant) {
        self.now = self.now.max(t);
        self.machine.handle_timeout(self.now);
        self.drain();
        if let Some(t) = self.machine.poll_timeout() {
            assert!(t > self.now, "poll_timeout {t:?} not after handle_timeout({:?})", self.now);
        }
        self.after_step(None);
    }

    /// Moves the clock forward to `t` (no earlier than now), firing every deadline on the
    /// way in order.
    pub fn advance_to(&mut self, t: Instant) {
        self.advance(t.since(self.now));
    }

    /// Moves the clock forward by `ms`, firing every deadline on the way in order.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now.plus(ms);
        while let Some(t) = self.next_timer(end) {
            self.timeout_at(t);
        }
        self.timeout_at(end);
    }

    /// A request on a fresh conn.
    pub fn request(&mut self, method: Method, query: &str, body: &[u8], websocket: bool) -> ConnId {
        let conn = self.conn();
        self.request_on(conn, method, query, body, websocket);
        conn
    }

    /// A request on a conn of the test's choosing.
    pub fn request_on(&mut self, conn: ConnId, method: Method, query: &str, body: &[u8], websocket: bool) {
        let req = Request { conn, method, query, body, too_large: false, websocket, remote: None };
        self.input(Input::Request(req));
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

    /// Request conns still open on both sides (waiting long polls, WebSockets, probes), in
    /// the order made; none for an adopted machine.
    pub fn open_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.contract.iter().flat_map(|c| c.open.iter().copied())
    }

    /// Whether `conn` is an accepted WebSocket that is neither closed nor ended.
    #[must_use]
    pub fn websocket_open(&self, conn: ConnId) -> bool {
        let c = self.contract.as_ref().and_then(|c| c.conns.get(&conn));
        c.is_some_and(|c| c.accepted && !c.closed && !c.ended)
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
        super::sid_of(&body)
    }

    /// A WebSocket handshake: returns the connection and the sid.
    pub fn open_ws(&mut self) -> (ConnId, String) {
        let c = self.ws("EIO=4&transport=websocket");
        assert!(self.accepted(c));
        let frames = self.frames(c);
        (c, super::sid_of(&frames[0]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Metrics;
    use crate::snapshot::SnapshotError;
    use bytes::Bytes;
    use std::collections::VecDeque;

    /// A machine that answers each input with the next batch of outputs it was given.
    #[derive(Default)]
    struct Scripted {
        batches: VecDeque<Vec<Output>>,
        queue: VecDeque<Output>,
        connections: usize,
        timeout: Option<Instant>,
    }

    impl Machine for Scripted {
        fn handle(&mut self, _: Input<'_>, _: Instant) {
            self.queue.extend(self.batches.pop_front().unwrap_or_default());
        }
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_output(&mut self) -> Option<Output> {
            self.queue.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            self.timeout
        }
        fn metrics(&self) -> Metrics {
            Metrics { connections: self.connections, ..Metrics::default() }
        }
        fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
            Err(SnapshotError::Unsupported)
        }
    }

    fn host(batches: Vec<Vec<Output>>) -> Host<Scripted> {
        Host::new(Scripted { batches: batches.into(), connections: 1, ..Scripted::default() })
    }

    fn respond(conn: u64) -> Output {
        Output::Respond { conn: ConnId(conn), status: 200, content_type: "", body: Bytes::new() }
    }

    /// Any storage request: the host does not look inside.
    fn store(id: u64) -> Output {
        Output::Store { id: StoreId(id), request: StoreRequest(Bytes::from_static(b"any")) }
    }

    fn send(conn: u64) -> Output {
        Output::Send { conn: ConnId(conn), frame: OutFrame::Text(Bytes::from_static(b"2")) }
    }

    #[test]
    fn a_contract_kept_passes_and_leaves_the_outputs_to_the_test() {
        let accept = Output::Accept { conn: ConnId(2) };
        let close = Output::Close { conn: ConnId(2), code: 1000, reason: "" };
        let mut h = host(vec![vec![accept, send(2)], vec![close], vec![]]);
        let ws = h.ws("EIO=4&transport=websocket");
        assert_eq!(h.open_conns().collect::<Vec<_>>(), [ws]);
        assert!(h.websocket_open(ws));
        h.text(ws, "3");
        assert!(!h.websocket_open(ws) && h.open_conns().next().is_none(), "closed");
        let poll = h.get("EIO=4&transport=polling&sid=x");
        assert_eq!(h.open_conns().collect::<Vec<_>>(), [poll], "a long poll may wait");
        assert_eq!((h.accepted(ws), h.frames(ws), h.closed(ws)), (true, vec!["2".to_owned()], Some(1000)));
    }

    #[test]
    #[should_panic(expected = "never accepted")]
    fn a_send_on_a_request_never_accepted_breaks_it() {
        let mut h = host(vec![vec![send(2)]]);
        h.ws("EIO=4&transport=websocket");
    }

    #[test]
    #[should_panic(expected = "not answered in its step")]
    fn a_request_left_waiting_that_is_no_long_poll_breaks_it() {
        host(vec![vec![]]).get("EIO=4&transport=polling");
    }

    #[test]
    #[should_panic(expected = "answered twice")]
    fn a_second_answer_breaks_it() {
        host(vec![vec![respond(2), respond(2)]]).get("EIO=4&transport=polling");
    }

    #[test]
    #[should_panic(expected = "after the host said it ended")]
    fn an_answer_to_an_ended_request_breaks_it() {
        let mut h = host(vec![vec![], vec![], vec![respond(2)]]);
        let poll = h.get("EIO=4&transport=polling&sid=x");
        h.end(poll, TransportEnd::Closed);
        h.text(poll, "2");
    }

    #[test]
    #[should_panic(expected = "reused")]
    fn a_store_id_used_twice_breaks_it() {
        let mut h = host(vec![vec![store(1)], vec![store(1)]]);
        h.input(Input::WallClock { unix_ms: WALL_MS });
        h.input(Input::WallClock { unix_ms: WALL_MS });
    }

    #[test]
    #[should_panic(expected = "not after handle_timeout")]
    fn a_deadline_that_does_not_move_breaks_it() {
        let mut h = Host::new(Scripted { timeout: Some(Instant(5)), ..Scripted::default() });
        h.advance(10);
    }

    #[test]
    fn held_requests_are_answered_once_from_the_store() {
        let mut h = host(vec![vec![store(1), store(2)], vec![], vec![]]);
        h.input(Input::WallClock { unix_ms: WALL_MS });
        assert_eq!(h.held().iter().map(|(id, _)| id.0).collect::<Vec<_>>(), [1, 2]);
        assert!(h.answer_held(1, false));
        assert_eq!(
            h.take_answered(0, true).map(|(id, a)| (id.0, a)),
            Some((1, StoreAnswer::Failed("store is down".into())))
        );
        assert!(h.held().is_empty() && !h.answer_held(0, false));
        assert!(!h.store.failing, "a failure is for one answer only");
    }
}
