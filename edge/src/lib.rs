//! parlor-edge: parlor's core as a WebAssembly component (wasm32-wasip2).
//!
//! A thin adapter: it converts between the WIT types of `wit/parlor.wit` and the core's
//! `Input`/`Output` and does nothing else. Every decision is the core's.
//!
//! # Layout
//!
//! - `wit/parlor.wit`: the interface, a `service` resource with `step(input, now-ms)`.
//! - [`EdgeService`]: the resource, one boxed core `Machine` chosen by kind.
//! - `input` / `output` / `store_*` functions below: the conversions.
//!
//! Build: `cargo build -p parlor-edge --target wasm32-wasip2 --release` writes
//! `target/wasm32-wasip2/release/parlor_edge.wasm`, a component (the stable toolchain links
//! components itself). The native host runs it with `parlor serve --component FILE`.

// No `forbid(unsafe_code)`: the generated bindings are the only unsafe code here.

wit_bindgen::generate!({ path: "wit", world: "edge" });

use bytes::Bytes;
use exports::parlor::edge::machine as wit;
use parlor_core::app::AppConfig;
#[cfg(feature = "test-spin")]
use parlor_core::conformance::EngineEcho;
use parlor_core::host::{
    ApiRequest, ClusterInput, ClusterOutput, ConnId, Frame, Input, Method, OutFrame, Output, Request, StoreAnswer,
    StoreId, TransportEnd,
};
use parlor_core::kinds::Kind;
use parlor_core::service::Machine;
use parlor_core::{Config, Instant};
use serde_json::json;
use std::cell::RefCell;

struct Component;

export!(Component);

impl wit::Guest for Component {
    type Service = EdgeService;
}

/// The `service` resource: one core machine. WIT methods take `&self`, hence the cell; a
/// component instance is single-threaded and never re-entered.
pub struct EdgeService {
    machine: RefCell<Box<dyn Machine>>,
}

/// `config-json`: both parts optional.
#[derive(Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct EdgeConfig {
    core: Config,
    app: AppConfig,
}

fn parse_config(config_json: &str) -> Result<EdgeConfig, String> {
    if config_json.trim().is_empty() {
        return Ok(EdgeConfig::default());
    }
    serde_json::from_str(config_json).map_err(|e| format!("bad config-json: {e}"))
}

fn create(kind: &str, config_json: &str, seed: &[u8], now: Instant) -> Result<Box<dyn Machine>, String> {
    let EdgeConfig { core, app } = parse_config(config_json)?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| format!("seed must be 32 bytes, not {}", seed.len()))?;
    #[cfg(feature = "test-spin")]
    if kind == "test-spin" {
        return Ok(Box::new(spin::Spin(EngineEcho::new(core, seed, now))));
    }
    Ok(known(kind)?.create(core, app, seed, now))
}

fn restore(kind: &str, config_json: &str, bytes: &[u8], now: Instant) -> Result<Box<dyn Machine>, String> {
    // Snapshots carry their own config; the argument is only checked.
    parse_config(config_json)?;
    let e = |e: parlor_core::snapshot::SnapshotError| e.to_string();
    #[cfg(feature = "test-spin")]
    if kind == "test-spin" {
        return Ok(Box::new(spin::Spin(EngineEcho::restore(bytes, now).map_err(e)?)));
    }
    known(kind)?.restore(bytes, now).map_err(e)
}

/// The core's kind of this name.
fn known(kind: &str) -> Result<Kind, String> {
    Kind::from_name(kind).ok_or_else(|| format!("unknown kind {kind:?} (expected one of: {})", Kind::names()))
}

impl EdgeService {
    fn wrap(machine: Box<dyn Machine>) -> EdgeService {
        EdgeService { machine: RefCell::new(machine) }
    }
}

impl wit::GuestService for EdgeService {
    fn new(kind: String, config_json: String, seed: Vec<u8>, now_ms: u64) -> EdgeService {
        match create(&kind, &config_json, &seed, Instant(now_ms)) {
            Ok(machine) => EdgeService::wrap(machine),
            Err(e) => panic!("{e}"),
        }
    }

    fn create(kind: String, config_json: String, seed: Vec<u8>, now_ms: u64) -> Result<wit::Service, String> {
        create(&kind, &config_json, &seed, Instant(now_ms)).map(|m| wit::Service::new(EdgeService::wrap(m)))
    }

    fn step(&self, input: wit::Input, now_ms: u64) -> wit::StepResult {
        let mut machine = self.machine.borrow_mut();
        let now = Instant(now_ms);
        match self::input(&input) {
            Some(input) => machine.handle(input, now),
            None => machine.handle_timeout(now),
        }
        let mut outputs = Vec::new();
        // Consecutive sends of one shared buffer (a broadcast) cross as one `send-many`.
        let mut batch: Option<(Vec<u64>, OutFrame)> = None;
        while let Some(out) = machine.poll_output() {
            match out {
                Output::Send { conn, frame } => match &mut batch {
                    Some((conns, shared)) if same_buffer(shared, &frame) => conns.push(conn.0),
                    _ => {
                        flush(&mut outputs, batch.take());
                        batch = Some((vec![conn.0], frame));
                    }
                },
                other => {
                    flush(&mut outputs, batch.take());
                    outputs.push(output(other));
                }
            }
        }
        flush(&mut outputs, batch);
        wit::StepResult { outputs, next_timeout_ms: machine.poll_timeout().map(|t| t.0) }
    }

    fn metrics(&self) -> String {
        let m = self.machine.borrow().metrics();
        json!({
            "connections": m.connections,
            "namespaces": m.namespaces,
            "traffic": {
                "packets_in": m.traffic.packets_in,
                "bytes_in": m.traffic.bytes_in,
                "packets_out": m.traffic.packets_out,
                "bytes_out": m.traffic.bytes_out,
            },
            "disconnects": m.disconnects,
            "cluster": m.cluster,
        })
        .to_string()
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        self.machine.borrow().snapshot().map_err(|e| e.to_string())
    }

    fn restore(kind: String, config_json: String, bytes: Vec<u8>, now_ms: u64) -> Result<wit::Service, String> {
        restore(&kind, &config_json, &bytes, Instant(now_ms)).map(|m| wit::Service::new(EdgeService::wrap(m)))
    }
}

fn method(m: wit::Method) -> Method {
    match m {
        wit::Method::Get => Method::Get,
        wit::Method::Post => Method::Post,
        wit::Method::Other => Method::Other,
    }
}

/// The core input borrowing from the WIT one; `None` for `timeout`.
fn input(i: &wit::Input) -> Option<Input<'_>> {
    Some(match i {
        wit::Input::Request(r) => Input::Request(Request {
            conn: ConnId(r.conn),
            method: method(r.method),
            query: &r.query,
            body: &r.body,
            too_large: r.too_large,
            websocket: r.websocket,
            remote: r.remote.as_deref().and_then(|a| a.parse().ok()),
        }),
        wit::Input::Frame(f) => Input::Frame {
            conn: ConnId(f.conn),
            frame: match &f.frame {
                wit::Frame::Text(t) => Frame::Text(t),
                wit::Frame::Binary(b) => Frame::Binary(b),
            },
        },
        wit::Input::Ended(e) => Input::Ended {
            conn: ConnId(e.conn),
            how: match e.how {
                wit::TransportEnd::Closed => TransportEnd::Closed,
                wit::TransportEnd::Error => TransportEnd::Error,
                wit::TransportEnd::Backpressure => TransportEnd::Backpressure,
            },
        },
        wit::Input::Shutdown => Input::Shutdown,
        wit::Input::Timeout => return None,
        wit::Input::WallClock(unix_ms) => Input::WallClock { unix_ms: *unix_ms },
        wit::Input::Stored(s) => Input::Stored { id: StoreId(s.id), answer: store_answer(&s.answer) },
        wit::Input::Cluster(c) => Input::Cluster(match c {
            wit::ClusterIn::Message(m) => ClusterInput::Message { channel: &m.channel, payload: &m.payload },
            wit::ClusterIn::Up => ClusterInput::Up,
            wit::ClusterIn::Down => ClusterInput::Down,
        }),
        wit::Input::Api(a) => Input::Api(ApiRequest {
            conn: ConnId(a.conn),
            method: method(a.method),
            path: &a.path,
            authorization: a.authorization.as_deref(),
            body: &a.body,
        }),
    })
}

fn store_answer(a: &wit::StoreAnswer) -> StoreAnswer {
    match a {
        wit::StoreAnswer::Done(bytes) => StoreAnswer::Done(Bytes::copy_from_slice(bytes)),
        wit::StoreAnswer::Failed(why) => StoreAnswer::Failed(why.clone()),
    }
}

/// Two frames are one buffer shared (not merely equal bytes): what a broadcast emits.
fn same_buffer(a: &OutFrame, b: &OutFrame) -> bool {
    match (a, b) {
        (OutFrame::Text(a), OutFrame::Text(b)) | (OutFrame::Binary(a), OutFrame::Binary(b)) => {
            a.as_ptr() == b.as_ptr() && a.len() == b.len()
        }
        _ => false,
    }
}

fn out_frame(frame: OutFrame) -> wit::OutFrame {
    match frame {
        OutFrame::Text(b) => wit::OutFrame::Text(Vec::from(b)),
        OutFrame::Binary(b) => wit::OutFrame::Binary(Vec::from(b)),
    }
}

fn flush(outputs: &mut Vec<wit::Output>, batch: Option<(Vec<u64>, OutFrame)>) {
    match batch {
        None => {}
        Some((conns, frame)) if conns.len() == 1 => {
            outputs.push(wit::Output::Send(wit::SendFrame { conn: conns[0], frame: out_frame(frame) }));
        }
        Some((conns, frame)) => outputs.push(wit::Output::SendMany(wit::SendMany { conns, frame: out_frame(frame) })),
    }
}

fn output(o: Output) -> wit::Output {
    match o {
        Output::Respond { conn, status, content_type, body } => wit::Output::Respond(wit::Respond {
            conn: conn.0,
            status,
            content_type: content_type.to_owned(),
            body: Vec::from(body),
        }),
        Output::Accept { conn } => wit::Output::Accept(conn.0),
        Output::Send { conn, frame } => wit::Output::Send(wit::SendFrame { conn: conn.0, frame: out_frame(frame) }),
        Output::Close { conn, code, reason } => {
            wit::Output::Close(wit::CloseConn { conn: conn.0, code, reason: reason.to_owned() })
        }
        Output::Store { id, request } => wit::Output::Store(wit::StoreOp { id: id.0, request: Vec::from(request.0) }),
        Output::Cluster(op) => wit::Output::Cluster(match op {
            ClusterOutput::Publish { channel, payload } => {
                wit::ClusterOp::Publish(wit::ClusterMessage { channel, payload: Vec::from(payload) })
            }
            ClusterOutput::Subscribe { channel } => wit::ClusterOp::Subscribe(channel),
            ClusterOutput::Unsubscribe { channel } => wit::ClusterOp::Unsubscribe(channel),
            ClusterOutput::SetExpiring { key, value, ttl_ms } => {
                wit::ClusterOp::SetExpiring(wit::ExpiringKey { key, value: Vec::from(value), ttl_ms })
            }
            ClusterOutput::Delete { key } => wit::ClusterOp::Delete(key),
        }),
    }
}

/// The `test-spin` kind (feature `test-spin`, for the host's fault tests only): an Engine.IO
/// echo whose text messages `spin`, `panic` and `grow` misbehave on purpose.
#[cfg(feature = "test-spin")]
mod spin {
    use parlor_core::host::{Frame, Input, Output};
    use parlor_core::service::{Machine, Metrics};
    use parlor_core::snapshot::SnapshotError;
    use parlor_core::Instant;

    pub struct Spin(pub parlor_core::conformance::EngineEcho);

    /// The Engine.IO message inside a WebSocket text frame or a polling POST (`4` + text).
    fn message<'a>(input: &Input<'a>) -> Option<&'a str> {
        match input {
            Input::Frame { frame: Frame::Text(t), .. } => t.strip_prefix('4'),
            Input::Request(r) => std::str::from_utf8(r.body).ok()?.strip_prefix('4'),
            _ => None,
        }
    }

    impl Machine for Spin {
        fn handle(&mut self, input: Input<'_>, now: Instant) {
            match message(&input) {
                Some("spin") => {
                    let mut n = 0u64;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                Some("panic") => panic!("test-spin: asked to panic"),
                Some("grow") => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1; 16 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                _ => self.0.handle(input, now),
            }
        }

        fn handle_timeout(&mut self, now: Instant) {
            self.0.handle_timeout(now);
        }

        fn poll_output(&mut self) -> Option<Output> {
            self.0.poll_output()
        }

        fn poll_timeout(&self) -> Option<Instant> {
            self.0.poll_timeout()
        }

        fn metrics(&self) -> Metrics {
            self.0.metrics()
        }

        fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
            self.0.snapshot()
        }
    }
}
