//! Engine.IO behaviour on a virtual clock, through the raw echo machine.

use super::TransportInput;
use crate::conformance::EngineEcho;
use crate::host::{ConnId, Input, Method, Request, TransportEnd};
use crate::testing::Host;
use crate::Config;

const PING: u64 = 300;
const PONG: u64 = 200;

fn harness() -> Host<EngineEcho> {
    let config = Config { ping_interval_ms: PING, ping_timeout_ms: PONG, ..Config::default() };
    Host::new(EngineEcho::new(config, [1; 32], crate::Instant(0)))
}

fn q(sid: &str) -> String {
    format!("EIO=4&transport=polling&sid={sid}")
}

#[test]
fn polling_handshake_has_exactly_the_five_keys() {
    let mut h = harness();
    let c = h.get("EIO=4&transport=polling&t=abc");
    let (status, body) = h.response(c).unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with('0'));
    let v: serde_json::Value = serde_json::from_str(&body[1..]).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5);
    assert_eq!(v["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!((v["pingInterval"].as_u64(), v["pingTimeout"].as_u64()), (Some(PING), Some(PONG)));
    assert_eq!(v["maxPayload"].as_u64(), Some(1_000_000));
    assert_eq!(v["sid"].as_str().unwrap().len(), 20);
}

#[test]
fn websocket_handshake_offers_no_upgrades() {
    let mut h = harness();
    let c = h.ws("EIO=4&transport=websocket");
    assert!(h.accepted(c));
    let frames = h.frames(c);
    let v: serde_json::Value = serde_json::from_str(&frames[0][1..]).unwrap();
    assert_eq!(v["upgrades"], serde_json::json!([]));
}

#[test]
fn every_refusal_has_its_code() {
    let mut h = harness();
    let cases: [(Method, &str, bool, u16, &str); 9] = [
        (Method::Get, "transport=polling", false, 400, r#"{"code":5,"message":"Unsupported protocol version"}"#),
        (Method::Get, "EIO=abc&transport=polling", false, 400, r#"{"code":5,"#),
        (Method::Get, "EIO=3&transport=polling", false, 400, r#"{"code":5,"#),
        (Method::Get, "EIO=4", false, 400, r#"{"code":0,"message":"Transport unknown"}"#),
        (Method::Get, "EIO=4&transport=abc", true, 400, r#"{"code":0,"#),
        (Method::Post, "EIO=4&transport=polling", false, 400, r#"{"code":2,"message":"Bad handshake method"}"#),
        (Method::Other, "EIO=4&transport=polling", false, 400, r#"{"code":2,"#),
        (Method::Get, "EIO=4&transport=websocket", false, 400, r#"{"code":3,"message":"Bad request"}"#),
        (Method::Get, "EIO=4&transport=polling&sid=nope", false, 400, r#"{"code":1,"message":"Session ID unknown"}"#),
    ];
    for (method, query, ws, status, body) in cases {
        let c = h.request(method, query, b"", ws);
        let (s, b) = h.response(c).unwrap_or_else(|| panic!("{query} answered"));
        assert_eq!(s, status, "{query}");
        assert!(b.starts_with(body), "{query}: {b}");
    }
    let c = h.ws("EIO=4&transport=websocket&sid=nope");
    assert_eq!(h.response(c).unwrap().0, 400);
}

#[test]
fn polling_echoes_text_and_binary_in_order() {
    let mut h = harness();
    let sid = h.open_polling("EIO=4&transport=polling");
    let p = h.post(&q(&sid), b"4hello\x1ebAQIDBA==\x1e4test2");
    assert_eq!(h.response(p), Some((200, "ok".into())));
    let g = h.get(&q(&sid));
    assert_eq!(h.response(g).unwrap().1, "4hello\x1ebAQIDBA==\x1e4test2");
}

#[test]
fn a_pending_get_is_answered_when_a_packet_arrives() {
    let mut h = harness();
    let sid = h.open_polling("EIO=4&transport=polling");
    let g = h.get(&q(&sid));
    assert_eq!(h.response(g), None, "long poll waits");
    let p = h.post(&q(&sid), b"4x");
    assert_eq!(h.response(p).unwrap().1, "ok");
    assert_eq!(h.response(g).unwrap().1, "4x");
}

#[test]
fn invalid_packet_closes_the_session() {
    let mut h = harness();
    let sid = h.open_polling("EIO=4&transport=polling");
    let p = h.post(&q(&sid), b"abc");
    assert_eq!(h.response(p).unwrap().0, 400);
    let g = h.get(&q(&sid));
    assert_eq!(h.response(g).unwrap(), (400, r#"{"code":1,"message":"Session ID unknown"}"#.into()));

    let (c, _) = h.open_ws();
    h.text(c, "abc");
    assert_eq!(h.closed(c), Some(1002));
    let (c, _) = h.open_ws();
    h.text(c, "");
    assert!(h.closed(c).is_some());
}

#[test]
fn post_over_max_payload_is_413() {
    let mut h = harness();
    let sid = h.open_polling("EIO=4&transport=polling");
    let conn = h.conn();
    let big = vec![b'4'; 1_000_001];
    let query = q(&sid);
    let req = Request {
        conn,
        method: Method::Post,
        query: &query,
        body: &big,
        too_large: false,
        websocket: false,
        remote: None,
    };
    h.input(Input::Request(req));
    assert_eq!(h.response(conn).unwrap().0, 413);
    let conn2 = h.conn();
    let sid2 = h.open_polling("EIO=4&transport=polling");
    let query = q(&sid2);
    let req = Request {
        conn: conn2,
        method: Method::Post,
        query: &query,
        body: b"",
        too_large: true,
        websocket: false,
        remote: None,
    };
    h.input(Input::Request(req));
    assert_eq!(h.response(conn2).unwrap().0, 413);
}

#[test]
fn duplicate_get_closes_the_session() {
    let mut h = harness();
    let sid = h.open_polling("EIO=4&transport=polling");
    let g1 = h.get(&q(&sid));
    let g2 = h.get(&format!("{}&t=burst", q(&sid)));
    assert_eq!(h.response(g1).unwrap(), (200, "1".into()));
    assert_eq!(h.response(g2).unwrap().0, 400);
    let g3 = h.get(&q(&sid));
    assert_eq!(h.response(g3).unwrap().0, 400);
}

#[test]
fn aborted_get_closes_the_session() {
    let mut h = harness();
    let sid = h.open_polling("EIO=4&transport=polling");
    let g = h.get(&q(&sid));
    h.end(g, TransportEnd::Closed);
    let g2 = h.get(&q(&sid));
    assert_eq!(h.response(g2).unwrap().0, 400);
}

#[test]
fn polling_heartbeat_pings_and_accepts_pongs() {
    let mut h = harness();
    let sid = h.open_polling("EIO=4&transport=polling");
    for _ in 0..3 {
        let g = h.get(&q(&sid));
        assert_eq!(h.response(g), None);
        h.advance(PING);
        assert_eq!(h.response(g).unwrap(), (200, "2".into()), "a GET pending at the heartbeat gets exactly 2");
        let p = h.post(&q(&sid), b"3");
        assert_eq!(h.response(p).unwrap().0, 200);
    }
    h.advance(PING + PONG - 1);
    let g = h.get(&q(&sid));
    assert_eq!(h.response(g).unwrap().1, "2");
}

#[test]
fn ping_timeout_forgets_the_session() {
    let mut h = harness();
    let sid = h.open_polling("EIO=4&transport=polling");
    h.advance(PING + PONG);
    let g = h.get(&q(&sid));
    assert_eq!(h.response(g).unwrap().0, 400);

    let (c, _) = h.open_ws();
    h.advance(PING);
    assert_eq!(h.frames(c), vec!["2"]);
    h.text(c, "3");
    h.advance(PING);
    assert_eq!(h.frames(c), vec!["2"]);
    assert_eq!(h.closed(c), None);
    h.advance(PONG);
    assert_eq!(h.closed(c), Some(1000));
}

#[test]
fn client_close_packet_ends_the_session() {
    let mut h = harness();
    let sid = h.open_polling("EIO=4&transport=polling");
    let g = h.get(&q(&sid));
    let p = h.post(&q(&sid), b"1");
    assert_eq!(h.response(p).unwrap().0, 200);
    assert_eq!(h.response(g).unwrap(), (200, "6".into()));
    let g = h.get(&q(&sid));
    assert_eq!(h.response(g).unwrap().0, 400);

    let (c, _) = h.open_ws();
    h.text(c, "1");
    assert!(h.closed(c).is_some());
}

#[test]
fn upgrade_probe_noop_and_flush() {
    let mut h = harness();
    let sid = h.open_polling("EIO=4&transport=polling");
    let g = h.get(&q(&sid));
    let ws = h.ws(&format!("EIO=4&transport=websocket&sid={sid}"));
    assert!(h.accepted(ws));
    h.text(ws, "2probe");
    assert_eq!(h.frames(ws), vec!["3probe"]);
    assert_eq!(h.response(g).unwrap(), (200, "6".into()), "pending GET released with a noop");
    // Packets sent while upgrading wait for the WebSocket.
    let p = h.post(&q(&sid), b"4during");
    assert_eq!(h.response(p).unwrap().0, 200);
    let g2 = h.get(&q(&sid));
    assert_eq!(h.response(g2).unwrap(), (200, "6".into()));
    h.text(ws, "5");
    assert_eq!(h.frames(ws), vec!["4during"]);
    h.text(ws, "4hello");
    assert_eq!(h.frames(ws), vec!["4hello"]);
    // Afterwards: polling with that sid → 400, a second WebSocket is refused.
    let g3 = h.get(&q(&sid));
    assert_eq!(h.response(g3).unwrap().0, 400);
    let ws2 = h.ws(&format!("EIO=4&transport=websocket&sid={sid}"));
    assert!(h.accepted(ws2));
    assert_eq!(h.closed(ws2), Some(1008), "a second WebSocket is closed at once");
    assert!(h.frames(ws2).is_empty());
    h.text(ws, "4still");
    assert_eq!(h.frames(ws), vec!["4still"]);
}

#[test]
fn upgrade_timeout_closes_the_probe_and_keeps_polling() {
    let mut h = Host::new(EngineEcho::new(Config::default(), [1; 32], crate::Instant(0)));
    let sid = h.open_polling("EIO=4&transport=polling");
    let ws = h.ws(&format!("EIO=4&transport=websocket&sid={sid}"));
    assert!(h.accepted(ws));
    h.text(ws, "2probe");
    h.advance(10_000);
    assert_eq!(h.closed(ws), Some(1000));
    let p = h.post(&q(&sid), b"3\x1e4x");
    assert_eq!(h.response(p).unwrap().0, 200);
    let g = h.get(&q(&sid));
    assert!(h.response(g).unwrap().1.contains("4x"));
}

#[test]
fn a_client_that_never_polls_is_closed_at_the_buffer_limit() {
    let config = Config { max_buffered_bytes: 100, ..Config::default() };
    let mut h = Host::new(EngineEcho::new(config, [1; 32], crate::Instant(0)));
    let sid = h.open_polling("EIO=4&transport=polling");
    for _ in 0..3 {
        let p = h.post(&q(&sid), &[b'4'; 60]);
        h.response(p);
    }
    let g = h.get(&q(&sid));
    assert_eq!(h.response(g).unwrap().0, 400, "session closed instead of growing");
}

#[test]
fn shutdown_tells_clients_and_refuses_new_ones() {
    let mut h = harness();
    let sid = h.open_polling("EIO=4&transport=polling");
    let g = h.get(&q(&sid));
    let (ws, _) = h.open_ws();
    h.input(Input::Shutdown);
    assert_eq!(h.response(g).unwrap(), (200, "1".into()));
    assert_eq!(h.closed(ws), Some(1001));
    let c = h.get("EIO=4&transport=polling");
    assert_eq!(h.response(c).unwrap().0, 503);
}

#[test]
fn unknown_connections_are_ignored() {
    let mut h = harness();
    h.end(ConnId(999), TransportEnd::Error);
    h.text(ConnId(999), "4x");
    assert!(h.outputs.is_empty());
}

/// A polling handshake from `ip`: the response's status and body.
fn handshake_from(h: &mut Host<EngineEcho>, ip: &str) -> (u16, String) {
    let conn = h.conn();
    let req = Request {
        conn,
        method: Method::Get,
        query: "EIO=4&transport=polling",
        body: b"",
        too_large: false,
        websocket: false,
        remote: Some(ip.parse().unwrap()),
    };
    h.input(Input::Request(req));
    h.response(conn).unwrap()
}

#[test]
fn handshakes_over_the_per_ip_rate_are_forbidden() {
    let config = Config { max_new_connections_per_ip_per_min: 1, ..Config::default() };
    let mut h = Host::new(EngineEcho::new(config, [1; 32], crate::Instant(0)));
    assert_eq!(handshake_from(&mut h, "127.0.0.1").0, 200);
    assert_eq!(handshake_from(&mut h, "127.0.0.1"), (403, r#"{"code":4,"message":"Forbidden"}"#.into()));
}

#[test]
fn too_many_connections_is_503() {
    let config = Config { max_connections: 1, ..Config::default() };
    let mut h = Host::new(EngineEcho::new(config, [1; 32], crate::Instant(0)));
    h.open_polling("EIO=4&transport=polling");
    let c = h.get("EIO=4&transport=polling");
    assert_eq!(h.response(c).unwrap().0, 503);
}

#[test]
fn a_sid_whose_session_is_missing_is_refused_not_a_panic() {
    // Found by the snapshot_restore fuzz target: a damaged snapshot that still decodes
    // can name a sid without its session; a GET, POST or upgrade for it panicked.
    use super::{Engine, Output};
    use crate::rng::Rng;
    let mut e = Engine::new(&Config::default(), Rng::new([1; 32]));
    let now = crate::Instant(0);
    let mut out = crate::outbox::Outbox::default();
    fn req(conn: u64, method: Method, query: &str, websocket: bool) -> TransportInput<'_> {
        TransportInput::Request(Request {
            conn: ConnId(conn),
            method,
            query,
            body: b"40",
            too_large: false,
            websocket,
            remote: None,
        })
    }
    e.handle(&mut out, req(1, Method::Get, "EIO=4&transport=polling", false), now);
    let open = match out.pop() {
        Some(Output::Respond { body, .. }) => String::from_utf8_lossy(&body).into_owned(),
        other => panic!("{other:?}"),
    };
    let sid = crate::testing::sid_of(&open);
    e.sessions.clear();
    for (conn, method, ws) in [(2, Method::Get, false), (3, Method::Post, false), (4, Method::Get, true)] {
        let transport = if ws { "websocket" } else { "polling" };
        e.handle(&mut out, req(conn, method, &format!("EIO=4&transport={transport}&sid={sid}"), ws), now);
        match out.pop() {
            Some(Output::Respond { status: 400, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn sessions_open_at_once_per_ip_are_capped() {
    let handshake = handshake_from;
    let config = Config { max_sessions_per_ip: 2, ..Config::default() };
    let mut h = Host::new(EngineEcho::new(config, [1; 32], crate::Instant(0)));
    let first = handshake(&mut h, "10.0.0.1");
    assert_eq!(handshake(&mut h, "10.0.0.1").0, 200);
    assert_eq!(handshake(&mut h, "10.0.0.1"), (403, r#"{"code":4,"message":"Forbidden"}"#.into()));
    assert_eq!(handshake(&mut h, "10.0.0.2").0, 200, "another address has its own");
    // The first session ends (a close packet): its place is free again.
    let sid = crate::testing::sid_of(&first.1);
    h.post(&format!("EIO=4&transport=polling&sid={sid}"), b"1");
    assert_eq!(handshake(&mut h, "10.0.0.1").0, 200);
    assert_eq!(h.machine.engine().check_bounds(), Ok(()));
}
