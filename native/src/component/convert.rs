//! Conversions between the core's `Input`/`Output`/`Metrics` and the WIT types of
//! `edge/wit/parlor.wit`: field by field, nothing decided here.
//!
//! The core's outputs name content types and close reasons as `&'static str`; what the guest
//! returns is interned (known values first, then a bounded table), so a guest that invents
//! strings cannot grow the host's memory.

use super::bindings::exports::parlor::edge::machine as wit;
use bytes::Bytes;
use parlor_core::cluster::ClusterStats;
use parlor_core::engineio::Traffic;
use parlor_core::host::{
    ClusterInput, ClusterOutput, ConnId, Frame, Input, Method, OutFrame, Output, StoreAnswer, StoreId, StoreRequest, TransportEnd, APPLICATION_JSON,
    TEXT_PLAIN,
};
use parlor_core::service::Metrics;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

fn method(m: Method) -> wit::Method {
    match m {
        Method::Get => wit::Method::Get,
        Method::Post => wit::Method::Post,
        Method::Other => wit::Method::Other,
    }
}

/// The WIT input for a core input (payloads are copied into the guest's types).
pub(super) fn input(i: &Input<'_>) -> wit::Input {
    match i {
        Input::Request(r) => wit::Input::Request(wit::HttpRequest {
            conn: r.conn.0,
            method: method(r.method),
            query: r.query.to_owned(),
            body: r.body.to_vec(),
            too_large: r.too_large,
            websocket: r.websocket,
            remote: r.remote.map(|ip| ip.to_string()),
        }),
        Input::Frame { conn, frame } => wit::Input::Frame(wit::FrameIn {
            conn: conn.0,
            frame: match frame {
                Frame::Text(t) => wit::Frame::Text((*t).to_owned()),
                Frame::Binary(b) => wit::Frame::Binary(b.to_vec()),
            },
        }),
        Input::Ended { conn, how } => wit::Input::Ended(wit::TransportEnded {
            conn: conn.0,
            how: match how {
                TransportEnd::Closed => wit::TransportEnd::Closed,
                TransportEnd::Error => wit::TransportEnd::Error,
                TransportEnd::Backpressure => wit::TransportEnd::Backpressure,
            },
        }),
        Input::Shutdown => wit::Input::Shutdown,
        Input::WallClock { unix_ms } => wit::Input::WallClock(*unix_ms),
        Input::Stored { id, answer } => wit::Input::Stored(wit::Stored { id: id.0, answer: store_answer(answer) }),
        Input::Cluster(c) => wit::Input::Cluster(match c {
            ClusterInput::Message { channel, payload } => {
                wit::ClusterIn::Message(wit::ClusterMessage { channel: (*channel).to_owned(), payload: payload.to_vec() })
            }
            ClusterInput::Up => wit::ClusterIn::Up,
            ClusterInput::Down => wit::ClusterIn::Down,
        }),
        Input::Api(a) => wit::Input::Api(wit::ApiRequest {
            conn: a.conn.0,
            method: method(a.method),
            path: a.path.to_owned(),
            authorization: a.authorization.map(str::to_owned),
            body: a.body.to_vec(),
        }),
    }
}

fn store_answer(a: &StoreAnswer) -> wit::StoreAnswer {
    match a {
        StoreAnswer::Done(bytes) => wit::StoreAnswer::Done(bytes.to_vec()),
        StoreAnswer::Failed(why) => wit::StoreAnswer::Failed(why.clone()),
    }
}

/// Appends the core outputs for a WIT one (a `send-many` is a `Send` per connection, all
/// sharing one buffer, as the core emitted them).
pub(super) fn output(o: wit::Output, into: &mut VecDeque<Output>) {
    let one = match o {
        wit::Output::Respond(r) => Output::Respond {
            conn: ConnId(r.conn),
            status: r.status,
            content_type: intern(r.content_type, Kind::ContentType),
            body: Bytes::from(r.body),
        },
        wit::Output::Accept(conn) => Output::Accept { conn: ConnId(conn) },
        wit::Output::Send(s) => Output::Send { conn: ConnId(s.conn), frame: out_frame(s.frame) },
        wit::Output::SendMany(many) => {
            let frame = out_frame(many.frame);
            into.extend(many.conns.into_iter().map(|conn| Output::Send { conn: ConnId(conn), frame: frame.clone() }));
            return;
        }
        wit::Output::Close(c) => {
            Output::Close { conn: ConnId(c.conn), code: c.code, reason: intern(c.reason, Kind::Reason) }
        }
        wit::Output::Store(s) => Output::Store { id: StoreId(s.id), request: StoreRequest(Bytes::from(s.request)) },
        wit::Output::Cluster(op) => Output::Cluster(match op {
            wit::ClusterOp::Publish(m) => ClusterOutput::Publish { channel: m.channel, payload: Bytes::from(m.payload) },
            wit::ClusterOp::Subscribe(channel) => ClusterOutput::Subscribe { channel },
            wit::ClusterOp::Unsubscribe(channel) => ClusterOutput::Unsubscribe { channel },
            wit::ClusterOp::SetExpiring(k) => {
                ClusterOutput::SetExpiring { key: k.key, value: Bytes::from(k.value), ttl_ms: k.ttl_ms }
            }
            wit::ClusterOp::Delete(key) => ClusterOutput::Delete { key },
        }),
    };
    into.push_back(one);
}

fn out_frame(frame: wit::OutFrame) -> OutFrame {
    match frame {
        wit::OutFrame::Text(b) => OutFrame::Text(Bytes::from(b)),
        wit::OutFrame::Binary(b) => OutFrame::Binary(Bytes::from(b)),
    }
}

/// The guest's `metrics()` JSON.
#[derive(serde::Deserialize)]
struct MetricsJson {
    connections: usize,
    namespaces: Vec<(String, usize, usize)>,
    traffic: Traffic,
    disconnects: Vec<(String, u64)>,
    #[serde(default)]
    cluster: Option<ClusterStats>,
}

/// The core's metrics from the guest's JSON; unreadable JSON gives empty metrics.
pub(super) fn metrics(text: &str) -> Metrics {
    match serde_json::from_str::<MetricsJson>(text) {
        Ok(m) => Metrics {
            connections: m.connections,
            namespaces: m.namespaces,
            traffic: m.traffic,
            disconnects: m.disconnects.into_iter().map(|(reason, n)| (intern(reason, Kind::Reason), n)).collect(),
            cluster: m.cluster,
        },
        Err(e) => {
            tracing::warn!(error = %e, "the component's metrics do not parse");
            Metrics::default()
        }
    }
}

#[derive(Copy, Clone)]
enum Kind {
    ContentType,
    Reason,
}

/// Distinct strings interned beyond the known ones; past it, a fixed fallback.
const MAX_INTERNED: usize = 256;

/// The `&'static str` for `s`: a known constant, an earlier interned copy, or a new one
/// (leaked, at most [`MAX_INTERNED`] of them per process). A content type that is not a
/// valid header value becomes `application/octet-stream`.
fn intern(s: String, kind: Kind) -> &'static str {
    const KNOWN: &[&str] = &[TEXT_PLAIN, APPLICATION_JSON, "text/plain", "text/html; charset=utf-8"];
    if let Some(k) = KNOWN.iter().find(|k| **k == s) {
        return k;
    }
    let fallback = match kind {
        Kind::ContentType => "application/octet-stream",
        Kind::Reason => "",
    };
    if matches!(kind, Kind::ContentType) && hyper::header::HeaderValue::from_str(&s).is_err() {
        return fallback;
    }
    static TABLE: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut table = TABLE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let table = table.get_or_insert_with(HashSet::new);
    if let Some(found) = table.get(s.as_str()) {
        return found;
    }
    if table.len() >= MAX_INTERNED {
        return fallback;
    }
    let leaked: &'static str = Box::leak(s.into_boxed_str());
    table.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_reuses_known_and_earlier_strings_and_refuses_bad_headers() {
        assert_eq!(intern(TEXT_PLAIN.to_owned(), Kind::ContentType), TEXT_PLAIN);
        let a = intern("forced close".to_owned(), Kind::Reason);
        let b = intern("forced close".to_owned(), Kind::Reason);
        assert!(std::ptr::eq(a, b));
        assert_eq!(intern("bad\nheader".to_owned(), Kind::ContentType), "application/octet-stream");
    }

    #[test]
    fn metrics_json_round_trips() {
        let m = metrics(
            r#"{"connections":2,"namespaces":[["/",2,1]],"traffic":{"packets_in":1,"bytes_in":2,"packets_out":3,"bytes_out":4},"disconnects":[["transport close",5]]}"#,
        );
        assert_eq!(m.connections, 2);
        assert_eq!(m.namespaces, vec![("/".to_owned(), 2, 1)]);
        assert_eq!(m.traffic.bytes_out, 4);
        assert_eq!(m.disconnects, vec![("transport close", 5)]);
        assert_eq!(metrics("nope"), Metrics::default());
    }
}
