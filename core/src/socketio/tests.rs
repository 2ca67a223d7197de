//! Socket.IO behaviour on a virtual clock: the conformance handlers, and a small test
//! application for rooms, server-side acks, middleware and recovery.

use super::*;
use crate::conformance::ConformanceApp;
use crate::host::{ConnId, TransportEnd};
use crate::testing::Host;
use crate::{Machine, Service};

fn conformance() -> Host<Service<ConformanceApp>> {
    let config = Config {
        ping_interval_ms: 300,
        ping_timeout_ms: 200,
        connect_timeout_ms: 1000,
        recovery_window_ms: 0,
        ..Config::default()
    };
    Host::new(Service::new(config, [2; 32], Instant(0), ConformanceApp::new()))
}

/// A WebSocket with a Socket.IO connection: returns it and its socket id.
fn connect<M: crate::Machine>(h: &mut Host<M>, packet: &str) -> (ConnId, String) {
    let (c, reply) = connect_reply(h, packet);
    (c, reply["sid"].as_str().unwrap().to_owned())
}

/// Like [`connect`], returning the CONNECT reply (`{sid, pid?}`).
fn connect_reply<M: crate::Machine>(h: &mut Host<M>, packet: &str) -> (ConnId, Value) {
    let (c, _) = h.open_ws();
    h.text(c, packet);
    let frames = h.frames(c);
    let json = &frames[0][frames[0].find('{').unwrap()..];
    (c, serde_json::from_str(json).unwrap())
}

#[test]
fn connect_answers_sid_then_the_handler_runs() {
    let mut h = conformance();
    let (c, _) = h.open_ws();
    h.text(c, "40");
    let f = h.frames(c);
    assert!(f[0].starts_with("40{\"sid\":\""), "{f:?}");
    assert_eq!(f[1], r#"42["auth",{}]"#);
    h.text(c, r#"40/custom,{"token":"abc"}"#);
    let f = h.frames(c);
    assert!(f[0].starts_with("40/custom,{\"sid\":"), "{f:?}");
    assert_eq!(f[1], r#"42/custom,["auth",{"token":"abc"}]"#);
}

#[test]
fn socket_ids_are_per_namespace_and_not_the_engine_sid() {
    let mut h = conformance();
    let (c, sid) = h.open_ws();
    h.text(c, "40");
    h.text(c, "40/custom");
    let f = h.frames(c);
    let a = crate::testing::sid_of(&format!("0{}", &f[0][2..]));
    let b = crate::testing::sid_of(&format!("0{}", &f[2][10..]));
    assert_ne!(a, b);
    assert_ne!(a, sid);
}

#[test]
fn unknown_namespace_is_refused() {
    let mut h = conformance();
    let (c, _) = h.open_ws();
    h.text(c, "40/random");
    assert_eq!(h.frames(c), vec![r#"44/random,{"message":"Invalid namespace"}"#]);
    assert_eq!(h.closed(c), None, "the connection stays");
}

#[test]
fn invalid_packets_close_the_connection() {
    for bad in ["4abc", "42{}", r#"42abc["message-with-ack",1]"#, "4", "44{}", r#"42["connect"]"#, "43[1]x"] {
        let mut h = conformance();
        let (c, _) = connect(&mut h, "40");
        h.text(c, bad);
        assert!(h.closed(c).is_some(), "{bad:?} must close");
    }
    let mut h = conformance();
    let (c, _) = h.open_ws();
    h.text(c, "4abc");
    assert!(h.closed(c).is_some(), "invalid handshake closes");
}

#[test]
fn connect_timeout_closes_a_silent_connection() {
    let config = Config { connect_timeout_ms: 1000, ..Config::default() };
    let mut h = Host::new(Service::new(config, [2; 32], Instant(0), ConformanceApp::new()));
    let (c, _) = h.open_ws();
    h.advance(999);
    assert_eq!(h.closed(c), None);
    h.advance(1);
    assert!(h.closed(c).is_some());
}

#[test]
fn namespace_disconnect_gets_no_reply_and_keeps_the_session() {
    let mut h = conformance();
    let (c, _) = connect(&mut h, "40");
    h.frames(c);
    h.text(c, "41");
    assert!(h.frames(c).is_empty());
    h.advance(300);
    assert_eq!(h.frames(c), vec!["2"]);
    h.text(c, "3");
    h.text(c, "40/custom");
    h.frames(c);
    h.text(c, "41/custom");
    h.text(c, r#"42["message","to main"]"#);
    assert!(h.frames(c).is_empty(), "main namespace was left");
    h.text(c, "40");
    h.frames(c);
    h.text(c, r#"42["message","to main"]"#);
    assert_eq!(h.frames(c), vec![r#"42["message-back","to main"]"#]);
}

#[test]
fn events_and_acks_with_and_without_binary() {
    let mut h = conformance();
    let (c, _) = connect(&mut h, "40");
    h.frames(c);
    h.text(c, r#"42["message",1,"2",{"3":[true]}]"#);
    assert_eq!(h.frames(c), vec![r#"42["message-back",1,"2",{"3":[true]}]"#]);
    h.text(c, r#"42456["message-with-ack",1,"2",{"3":[false]}]"#);
    assert_eq!(h.frames(c), vec![r#"43456[1,"2",{"3":[false]}]"#]);
    h.text(c, r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
    h.binary(c, &[1, 2, 3]);
    assert!(h.frames(c).is_empty(), "waits for every attachment");
    h.binary(c, &[4, 5, 6]);
    assert_eq!(
        h.frames(c),
        vec![
            r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#.to_string(),
            "<bin:[1, 2, 3]>".into(),
            "<bin:[4, 5, 6]>".into()
        ]
    );
    h.text(c, r#"452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
    h.binary(c, &[1]);
    h.binary(c, &[2]);
    assert_eq!(
        h.frames(c),
        vec![
            r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#.to_string(),
            "<bin:[1]>".into(),
            "<bin:[2]>".into()
        ]
    );
}

#[test]
fn broken_binary_sequences_close_the_connection() {
    let mut h = conformance();
    let (c, _) = connect(&mut h, "40");
    h.binary(c, &[1]);
    assert!(h.closed(c).is_some(), "an attachment nobody announced");
    let (c, _) = connect(&mut h, "40");
    h.text(c, r#"451-["message",{"_placeholder":true,"num":0}]"#);
    h.text(c, r#"42["message"]"#);
    assert!(h.closed(c).is_some(), "text while attachments are due");
    let (c, _) = connect(&mut h, "40");
    h.text(c, r#"4511-["message"]"#);
    assert!(h.closed(c).is_some(), "over the attachment cap");
}

#[test]
fn events_in_the_same_post_as_connect_are_not_lost() {
    let mut h = conformance();
    let sid = h.open_polling("EIO=4&transport=polling");
    let q = format!("EIO=4&transport=polling&sid={sid}");
    let body = (0..50).fold(String::from("40"), |mut b, i| {
        b.push_str(&format!("\u{1e}42[\"message\",{i}]"));
        b
    });
    let p = h.post(&q, body.as_bytes());
    assert_eq!(h.response(p).unwrap().1, "ok");
    let g = h.get(&q);
    let (_, body) = h.response(g).unwrap();
    let packets: Vec<&str> = body.split('\u{1e}').collect();
    assert!(packets[0].starts_with("40{"));
    assert_eq!(packets[1], r#"42["auth",{}]"#);
    for i in 0..50 {
        assert_eq!(packets[2 + i], format!("42[\"message-back\",{i}]"));
    }
}

/// Rooms, server-side acks and middleware, for the tests below.
#[derive(Default)]
struct TestApp {
    acks: Vec<(String, u64, AckReply)>,
    disconnects: Vec<(String, DisconnectReason)>,
    connects: Vec<(String, bool)>,
}

impl Handler for TestApp {
    type Auth = ();

    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == "/" || nsp == "/b"
    }

    fn authorize(&mut self, _io: &mut Io<'_>, _nsp: &str, auth: &Value, _now: Instant) -> Result<(), ConnectRefusal> {
        match auth.get("refuse") {
            Some(why) => Err(ConnectRefusal { message: "refused".into(), data: Some(json!({"reason": why})) }),
            None => Ok(()),
        }
    }

    fn on_connect(
        &mut self,
        _io: &mut Io<'_>,
        socket: &SocketId,
        _auth: &Value,
        (): (),
        recovered: bool,
        _now: Instant,
    ) {
        self.connects.push((socket.to_string(), recovered));
    }

    fn on_event(&mut self, io: &mut Io<'_>, socket: &SocketId, ev: Event, now: Instant) {
        let nsp = io.nsp_of(socket).unwrap().to_owned();
        let arg = ev.args.first().cloned().unwrap_or(Value::Null);
        let strs = |v: &Value, k: &str| -> Vec<String> {
            v[k].as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        match ev.name.as_str() {
            "join" => {
                for r in strs(&arg, "rooms") {
                    io.join(socket, &r);
                }
            }
            "leave" => io.leave(socket, arg.as_str().unwrap()),
            "send" => {
                let mut t = Target::all(&nsp);
                t.rooms = strs(&arg, "to");
                t.except_rooms = strs(&arg, "except");
                if arg["broadcast"] == json!(true) {
                    t = t.except_socket(socket);
                }
                io.emit(&t, &Message::new("hey", vec![arg["data"].clone()]), now);
            }
            "ask" => {
                io.emit_with_ack(socket, &Message::new("question", vec![]), arg["timeout"].as_u64().unwrap(), now);
            }
            "kick" => io.disconnect(socket, now),
            _ => {}
        }
    }

    fn on_ack(&mut self, _io: &mut Io<'_>, socket: &SocketId, tag: u64, reply: AckReply, _now: Instant) {
        self.acks.push((socket.to_string(), tag, reply));
    }

    fn on_disconnect(
        &mut self,
        _io: &mut Io<'_>,
        socket: &SocketId,
        _nsp: &str,
        reason: DisconnectReason,
        _now: Instant,
    ) {
        self.disconnects.push((socket.to_string(), reason));
    }
}

fn app(recovery_ms: u64) -> Host<Service<TestApp>> {
    let config = Config { recovery_window_ms: recovery_ms, ..Config::default() };
    Host::new(Service::new(config, [3; 32], Instant(0), TestApp::default()))
}

#[test]
fn room_targeting_with_overlaps_reaches_each_socket_once() {
    let mut h = app(0);
    let (a, _) = connect(&mut h, "40");
    let (b, _) = connect(&mut h, "40");
    let (c, _) = connect(&mut h, "40");
    let (d, _) = connect(&mut h, "40/b,");
    h.text(a, r#"42["join",{"rooms":["x","y"]}]"#);
    h.text(b, r#"42["join",{"rooms":["y"]}]"#);
    h.text(d, r#"42/b,["join",{"rooms":["x","y"]}]"#);
    for conn in [a, b, c, d] {
        h.frames(conn);
    }
    let got = |h: &mut Host<Service<TestApp>>| [a, b, c, d].map(|x| h.frames(x).len());

    h.text(c, r#"42["send",{"to":["x","y"],"data":1}]"#);
    assert_eq!(got(&mut h), [1, 1, 0, 0], "union of rooms, each once, namespace-scoped");
    h.text(a, r#"42["send",{"to":["y"],"broadcast":true,"data":1}]"#);
    assert_eq!(got(&mut h), [0, 1, 0, 0], "except the sender");
    h.text(c, r#"42["send",{"data":1}]"#);
    assert_eq!(got(&mut h), [1, 1, 1, 0], "to all of the namespace");
    h.text(c, r#"42["send",{"except":["x"],"data":1}]"#);
    assert_eq!(got(&mut h), [0, 1, 1, 0], "except a room");
    h.text(c, r#"42["send",{"to":["y"],"except":["x"],"data":1}]"#);
    assert_eq!(got(&mut h), [0, 1, 0, 0]);
    h.text(a, r#"42["leave","y"]"#);
    h.text(c, r#"42["send",{"to":["y"],"data":1}]"#);
    assert_eq!(got(&mut h), [0, 1, 0, 0], "after leave");

    let io = h.machine.sockets();
    let ids = io.sockets_in("/", &["x", "y"]);
    assert_eq!(ids.len(), 2);
    let a_id = ids.iter().find(|id| io.rooms_of(id).contains(&"x".to_string())).unwrap();
    assert_eq!(io.rooms_of(a_id), {
        let mut v = vec![a_id.to_string(), "x".to_string()];
        v.sort();
        v
    });
}

#[test]
fn a_broadcast_is_encoded_once() {
    let mut h = app(0);
    let (a, _) = connect(&mut h, "40");
    let (b, _) = connect(&mut h, "40");
    h.frames(a);
    h.frames(b);
    h.text(a, r#"42["send",{"data":"x"}]"#);
    let sent: Vec<&bytes::Bytes> = h
        .outputs
        .iter()
        .filter_map(|o| match o {
            crate::Output::Send { frame: crate::host::OutFrame::Text(t), .. } => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].as_ptr(), sent[1].as_ptr(), "both targets share one buffer");
}

#[test]
fn middleware_refusal_becomes_connect_error() {
    let mut h = app(0);
    let (c, _) = h.open_ws();
    h.text(c, r#"40{"refuse":"nope"}"#);
    assert_eq!(h.frames(c), vec![r#"44{"message":"refused","data":{"reason":"nope"}}"#]);
    assert!(h.machine.handler().connects.is_empty());
}

#[test]
fn server_acks_answer_time_out_or_end_with_the_socket() {
    let mut h = app(0);
    let (c, sid) = connect(&mut h, "40");
    h.frames(c);
    h.text(c, r#"42["ask",{"timeout":1000}]"#);
    assert_eq!(h.frames(c), vec![r#"420["question"]"#]);
    h.text(c, r#"430["yes"]"#);
    h.text(c, r#"42["ask",{"timeout":1000}]"#);
    h.advance(1000);
    h.text(c, r#"431["late"]"#);
    h.text(c, r#"42["ask",{"timeout":1000}]"#);
    h.end(c, TransportEnd::Closed);
    let acks = &h.machine.handler().acks;
    assert_eq!(
        acks,
        &vec![
            (sid.clone(), 0, AckReply::Answered { args: vec![json!("yes")], binary: vec![] }),
            (sid.clone(), 1, AckReply::TimedOut),
            (sid.clone(), 2, AckReply::Disconnected),
        ]
    );
    assert_eq!(h.machine.handler().disconnects, vec![(sid, DisconnectReason::TransportClose)]);
}

#[test]
fn server_disconnect_sends_41_and_reports_the_reason() {
    let mut h = app(0);
    let (c, sid) = connect(&mut h, "40");
    h.frames(c);
    h.text(c, r#"42["kick"]"#);
    assert_eq!(h.frames(c), vec!["41"]);
    assert_eq!(h.machine.handler().disconnects, vec![(sid, DisconnectReason::ServerNamespaceDisconnect)]);
    assert_eq!(h.machine.metrics().disconnects.iter().find(|d| d.0 == "server namespace disconnect").unwrap().1, 1);
}

#[test]
fn namespaces_per_connection_are_capped() {
    let config = Config { max_namespaces_per_connection: 1, ..Config::default() };
    let mut h = Host::new(Service::new(config, [3; 32], Instant(0), TestApp::default()));
    let (c, _) = connect(&mut h, "40");
    h.frames(c);
    h.text(c, "40/b,");
    assert_eq!(h.frames(c), vec![r#"44/b,{"message":"Too many namespaces"}"#]);
}

fn offset_of(frame: &str) -> String {
    let v: Value = serde_json::from_str(&frame[2..]).unwrap();
    v.as_array().unwrap().last().unwrap().as_str().unwrap().to_owned()
}

#[test]
fn by_default_recovery_is_off_no_pid_and_events_exactly_as_emitted() {
    // Stock clients other than socket.io-client (python-socketio, rust_socketio) would see
    // a recovery offset as one more argument; the default leaves it out, as Socket.IO does.
    assert_eq!(Config::default().recovery_window_ms, 0);
    let mut h = Host::new(Service::new(Config::default(), [3; 32], Instant(0), TestApp::default()));
    let (a, reply) = connect_reply(&mut h, "40");
    assert_eq!(reply.as_object().unwrap().keys().collect::<Vec<_>>(), ["sid"], "{reply}");
    let (b, _) = connect(&mut h, "40");
    h.text(a, r#"42["join",{"rooms":["r"]}]"#);
    h.text(b, r#"42["send",{"to":["r"],"data":{"n":1}}]"#);
    assert_eq!(h.frames(a), vec![r#"42["hey",{"n":1}]"#]);
}

#[test]
fn recovery_restores_id_rooms_and_missed_packets_once_in_order() {
    let mut h = app(120_000);
    let (a, reply) = connect_reply(&mut h, "40");
    let a_id = reply["sid"].as_str().unwrap().to_owned();
    let pid = reply["pid"].as_str().unwrap().to_owned();
    let (b, _) = connect(&mut h, "40");
    h.text(a, r#"42["join",{"rooms":["r"]}]"#);
    h.text(b, r#"42["send",{"to":["r"],"data":0}]"#);
    let got = h.frames(a);
    let offset = offset_of(&got[0]);
    h.end(a, TransportEnd::Closed);
    for i in 1..=3 {
        h.text(b, &format!(r#"42["send",{{"to":["r"],"data":{i}}}]"#));
    }
    h.text(b, r#"42["send",{"to":["other"],"data":99}]"#);
    let (a2, _) = h.open_ws();
    h.text(a2, &format!(r#"40{{"pid":"{pid}","offset":"{offset}"}}"#));
    let f = h.frames(a2);
    assert_eq!(f.len(), 4, "{f:?}");
    let reply: Value = serde_json::from_str(&f[0][2..]).unwrap();
    assert_eq!(reply["sid"], json!(a_id));
    assert_eq!(reply["pid"], json!(pid));
    for i in 1..=3 {
        assert!(f[i].starts_with(&format!(r#"42["hey",{i},""#)), "{f:?}");
    }
    assert_eq!(h.machine.handler().connects.last(), Some(&(a_id.clone(), true)));
    // Its rooms are back: live packets to the room reach it.
    h.text(b, r#"42["send",{"to":["r"],"data":4}]"#);
    assert_eq!(h.frames(a2).len(), 1);
    // The same pid cannot be used twice.
    let (a3, _) = h.open_ws();
    h.text(a3, &format!(r#"40{{"pid":"{pid}","offset":"{offset}"}}"#));
    let reply: Value = serde_json::from_str(&h.frames(a3)[0][2..]).unwrap();
    assert_ne!(reply["sid"], json!(a_id));
}

#[test]
fn no_recovery_after_a_deliberate_disconnect_or_past_the_window() {
    let mut h = app(1000);
    let (a, reply) = connect_reply(&mut h, "40");
    let pid = reply["pid"].as_str().unwrap().to_owned();
    h.text(a, "41");
    let (a2, _) = h.open_ws();
    h.text(a2, &format!(r#"40{{"pid":"{pid}"}}"#));
    assert!(!h.machine.handler().connects.last().unwrap().1);

    let (b, reply) = connect_reply(&mut h, "40");
    let pid = reply["pid"].as_str().unwrap().to_owned();
    h.end(b, TransportEnd::Error);
    h.advance(1001);
    let (b2, _) = h.open_ws();
    h.text(b2, &format!(r#"40{{"pid":"{pid}"}}"#));
    assert!(!h.machine.handler().connects.last().unwrap().1);
}

#[test]
fn a_recovery_log_that_never_began_does_not_underflow_on_connect() {
    // Found by the snapshot_restore fuzz target: a damaged snapshot whose recovery log
    // has next offset 0 made the next CONNECT subtract below zero and panic.
    let config = Config { recovery_window_ms: 60_000, ..Config::default() };
    let mut h = Host::new(Service::new(config, [2; 32], Instant(0), ConformanceApp::new()));
    h.machine.sockets.recovery.damage_next_offset(0);
    let (_, reply) = connect_reply(&mut h, "40");
    assert!(reply["sid"].is_string(), "{reply}");
}

#[test]
fn attachments_are_due_within_a_deadline_and_a_node_wide_budget() {
    let config = Config {
        ping_interval_ms: 60_000,
        ping_timeout_ms: 60_000,
        attachment_timeout_ms: 1_000,
        attachment_budget_bytes: 10,
        ..Config::default()
    };
    let mut h = Host::new(Service::new(config, [2; 32], Instant(0), ConformanceApp::new()));
    let three =
        r#"453-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]"#;
    // A packet whose last attachment never comes: closed at the deadline, its bytes freed.
    let (slow, _) = connect(&mut h, "40");
    h.text(slow, three);
    h.binary(slow, &[0; 4]);
    assert_eq!(h.machine.check_bounds(), Ok(()));
    h.advance(999);
    assert!(h.closed(slow).is_none(), "within the deadline");
    h.advance(1);
    assert!(h.closed(slow).is_some(), "past the deadline");
    assert_eq!(h.machine.check_bounds(), Ok(()));
    // Two sessions hold 4 + 4 of the 10 bytes; a third attachment of 4 would pass them.
    let (a, _) = connect(&mut h, "40");
    let (b, _) = connect(&mut h, "40");
    for c in [a, b] {
        h.text(c, three);
        h.binary(c, &[1; 4]);
    }
    h.binary(b, &[2; 4]);
    assert!(h.closed(b).is_some(), "over the node's budget");
    assert!(h.closed(a).is_none());
    // b's bytes went with it: a's packet, 8 bytes held, completes (the last one is not held).
    h.frames(a);
    h.binary(a, &[2; 4]);
    assert!(h.closed(a).is_none(), "8 of 10");
    h.binary(a, &[3; 4]);
    assert_eq!(h.frames(a).len(), 4, "a packet within the budget goes through: the event and 3 attachments");
    assert_eq!(h.machine.check_bounds(), Ok(()));
}
