//! The room service end to end on a virtual clock, with an in-memory store.

use super::auth::{sign, AuthKey};
use super::*;
use crate::codec::socketio::{decode, PacketType};
use crate::host::ApiRequest;
use crate::host::{ClusterInput, ConnId, Input, Method, TransportEnd};
use crate::testing::Host;
use crate::{Config, Machine, Service};
use ed25519_dalek::SigningKey;
use serde_json::json;

type H = Host<Service<RoomService>>;

/// 2026-11-25T16:40:00.000Z
const WALL: u64 = 1_795_624_800_000;

fn harness(app: AppConfig) -> H {
    let config = Config { recovery_window_ms: 0, ..Config::default() };
    let mut h = Host::with_store(Service::new(config, [5; 32], Instant(0), RoomService::new(app)));
    h.input(Input::WallClock { unix_ms: WALL });
    h
}

fn dev() -> H {
    harness(AppConfig::default())
}

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

fn authed(app: AppConfig) -> H {
    let key = AuthKey { kid: None, key: signing_key().verifying_key().to_bytes() };
    harness(AppConfig { auth_keys: vec![key], ..app })
}

fn token(sub: &str, admin: bool) -> String {
    sign(
        &signing_key(),
        None,
        &json!({"sub": sub, "name": sub.to_uppercase(), "exp": WALL / 1000 + 3600, "admin": admin}),
    )
}

struct TestClient {
    conn: ConnId,
    nsp: String,
    id: String,
}

fn prefix(nsp: &str) -> String {
    if nsp == "/" {
        String::new()
    } else {
        format!("{nsp},")
    }
}

/// Connects to `nsp` with `auth`; the CONNECT reply or the refusal message.
fn try_connect(h: &mut H, nsp: &str, auth: Value) -> Result<TestClient, String> {
    let (conn, _) = h.open_ws();
    h.text(conn, &format!("40{}{}", prefix(nsp), auth));
    let first = h.first_frame(conn).unwrap_or_default();
    let json: Value = serde_json::from_str(&first[first.find('{').unwrap()..]).unwrap();
    if first.starts_with("44") {
        return Err(json["message"].as_str().unwrap().to_owned());
    }
    Ok(TestClient { conn, nsp: nsp.to_owned(), id: json["sid"].as_str().unwrap().to_owned() })
}

fn connect(h: &mut H, nsp: &str, auth: Value) -> TestClient {
    try_connect(h, nsp, auth).unwrap()
}

fn emit(h: &mut H, c: &TestClient, ack: Option<u64>, event: &str, args: &[Value]) {
    let mut items = vec![json!(event)];
    items.extend(args.iter().cloned());
    let id = ack.map(|a| a.to_string()).unwrap_or_default();
    h.text(c.conn, &format!("42{}{id}{}", prefix(&c.nsp), Value::Array(items)));
}

/// Everything the client received since last asked: events as (name, first arg), acks
/// as ("ack:<id>", first arg).
fn received(h: &mut H, c: &TestClient) -> Vec<(String, Value)> {
    h.frames(c.conn)
        .iter()
        .filter(|f| f.starts_with('4'))
        .filter_map(|f| {
            let p = decode(&f[1..], 10).ok()?;
            let mut items = p.data?.as_array()?.clone();
            match p.kind {
                PacketType::Event => {
                    let name = items.remove(0).as_str()?.to_owned();
                    Some((name, items.first().cloned().unwrap_or(Value::Null)))
                }
                PacketType::Ack => Some((format!("ack:{}", p.id?), items.first().cloned().unwrap_or(Value::Null))),
                _ => None,
            }
        })
        .collect()
}

fn named(events: &[(String, Value)], name: &str) -> Vec<Value> {
    events.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
}

fn join(h: &mut H, c: &TestClient, name: &str, room: &str) -> Vec<(String, Value)> {
    emit(h, c, None, "join", &[json!({"username": name, "room": room})]);
    received(h, c)
}

#[test]
fn message_goes_to_sender_others_and_all() {
    let mut h = dev();
    let a = connect(&mut h, "/", json!({}));
    let b = connect(&mut h, "/", json!({}));
    let other = connect(&mut h, "/chat", json!({}));
    emit(&mut h, &a, None, "message", &[json!({"text": "hi"})]);
    let got = received(&mut h, &a);
    assert_eq!(
        got,
        vec![("message-received".into(), json!({"status": "ok"})), ("message".into(), json!({"text": "hi"}))]
    );
    let got = received(&mut h, &b);
    assert_eq!(got, vec![("new-message".into(), json!({"text": "hi"})), ("message".into(), json!({"text": "hi"}))]);
    assert!(received(&mut h, &other).is_empty(), "namespaces are separate");
}

#[test]
fn join_sends_room_info_and_announces_new_users_once() {
    let mut h = dev();
    let a = connect(&mut h, "/", json!({}));
    let got = join(&mut h, &a, "alice", "lobby");
    let info = &named(&got, "room-info")[0];
    assert_eq!(info["room"], "lobby");
    assert_eq!(info["users"], json!([{"id": a.id, "username": "alice"}]));
    assert_eq!(info["recentMessages"], json!([]));

    let b = connect(&mut h, "/", json!({}));
    join(&mut h, &b, "bob", "lobby");
    let got = received(&mut h, &a);
    assert_eq!(
        named(&got, "user-joined"),
        vec![json!({"user": {"id": b.id, "username": "bob"}, "message": "bob joined the chat"})]
    );
    assert_eq!(named(&got, "room-users-update")[0].as_array().unwrap().len(), 2);

    // Rejoining (as the tutorial client does on every connect) is idempotent.
    let again = join(&mut h, &b, "bob", "lobby");
    assert_eq!(named(&again, "room-info")[0]["users"].as_array().unwrap().len(), 2);
    assert!(received(&mut h, &a).is_empty(), "no second user-joined");
}

#[test]
fn join_room_acks_users_and_validates() {
    let mut h = dev();
    let a = connect(&mut h, "/chat", json!({"username": "ann"}));
    emit(&mut h, &a, Some(1), "join-room", &[json!("general")]);
    let got = received(&mut h, &a);
    assert_eq!(named(&got, "ack:1"), vec![json!({"users": [{"id": a.id, "username": "ann"}]})]);
    assert_eq!(named(&got, "room-users-update").len(), 1);
    emit(&mut h, &a, Some(2), "join-room", &[json!("")]);
    assert_eq!(named(&received(&mut h, &a), "ack:2")[0]["code"], "VALIDATION");
    emit(&mut h, &a, Some(3), "join-room", &[json!("😀".repeat(64))]);
    assert!(named(&received(&mut h, &a), "ack:3")[0].get("users").is_some(), "128 UTF-16 units fit");
    emit(&mut h, &a, None, "join-room", &[json!(5)]);
    assert_eq!(named(&received(&mut h, &a), "error")[0]["code"], "VALIDATION", "no ack: an error event");
}

#[test]
fn messages_are_stored_then_announced_and_kept_as_history() {
    let mut h = dev();
    let a = connect(&mut h, "/", json!({}));
    let b = connect(&mut h, "/", json!({}));
    join(&mut h, &a, "alice", "r");
    join(&mut h, &b, "bob", "r");
    received(&mut h, &a);
    emit(&mut h, &a, Some(7), "send-message", &[json!({"content": "  hello  ", "room": "r"})]);
    let got = received(&mut h, &a);
    let msg = &named(&got, "new-message")[0];
    assert_eq!(msg["content"], "hello", "trimmed");
    assert_eq!(msg["sender"], json!({"id": a.id, "username": "alice"}));
    assert_eq!(msg["timestamp"], "2026-11-25T16:40:00.000Z");
    assert_eq!(msg["room"], "r");
    assert_eq!(named(&got, "ack:7"), vec![json!({"success": true, "id": msg["id"]})]);
    assert_eq!(named(&received(&mut h, &b), "new-message")[0], *msg);

    let c = connect(&mut h, "/", json!({}));
    let info = &named(&join(&mut h, &c, "carol", "r"), "room-info")[0];
    assert_eq!(info["recentMessages"], json!([msg]));
}

#[test]
fn history_is_loaded_from_the_store_and_capped() {
    let mut h = harness(AppConfig { recent_limit: 3, ..AppConfig::default() });
    let a = connect(&mut h, "/", json!({}));
    join(&mut h, &a, "a", "r");
    for i in 0..5 {
        emit(&mut h, &a, None, "send-message", &[json!({"content": format!("m{i}"), "room": "r"})]);
    }
    emit(&mut h, &a, None, "leave-room", &[]);
    received(&mut h, &a);
    let b = connect(&mut h, "/", json!({}));
    let info = &named(&join(&mut h, &b, "b", "r"), "room-info")[0];
    let contents: Vec<&str> =
        info["recentMessages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["m2", "m3", "m4"], "the newest, oldest first");
}

#[test]
fn a_failed_store_never_acks_success() {
    let mut h = dev();
    let a = connect(&mut h, "/", json!({}));
    join(&mut h, &a, "a", "r");
    h.store.failing = true;
    emit(&mut h, &a, Some(1), "send-message", &[json!({"content": "x", "room": "r"})]);
    let got = received(&mut h, &a);
    assert_eq!(named(&got, "ack:1")[0]["code"], "INTERNAL_ERROR");
    assert!(named(&got, "new-message").is_empty());
}

#[test]
fn sending_outside_a_room_or_invalid_content_is_refused() {
    let mut h = dev();
    let a = connect(&mut h, "/", json!({}));
    emit(&mut h, &a, Some(1), "send-message", &[json!({"content": "x", "room": "nope"})]);
    assert_eq!(named(&received(&mut h, &a), "ack:1")[0]["code"], "NOT_IN_ROOM");
    join(&mut h, &a, "a", "r");
    for bad in [
        json!({"content": "   ", "room": "r"}),
        json!({"content": "x".repeat(1001), "room": "r"}),
        json!({"room": "r"}),
        json!("x"),
    ] {
        emit(&mut h, &a, Some(2), "send-message", std::slice::from_ref(&bad));
        assert_eq!(named(&received(&mut h, &a), "ack:2")[0]["code"], "VALIDATION", "{bad}");
    }
    emit(&mut h, &a, Some(3), "send-message", &[json!({"content": "😀".repeat(500), "room": "r"})]);
    assert_eq!(named(&received(&mut h, &a), "ack:3")[0]["success"], true, "1000 UTF-16 units fit");
}

#[test]
fn typing_is_shown_to_others_and_ends_by_itself() {
    let mut h = harness(AppConfig { typing_timeout_ms: 300, ..AppConfig::default() });
    let a = connect(&mut h, "/", json!({}));
    let b = connect(&mut h, "/", json!({}));
    join(&mut h, &a, "alice", "r");
    join(&mut h, &b, "bob", "r");
    received(&mut h, &a);
    emit(&mut h, &a, None, "typing-start", &[json!({"room": "r"})]);
    emit(&mut h, &a, None, "typing-start", &[json!({"room": "r"})]);
    assert!(received(&mut h, &a).is_empty(), "never to the typer");
    let user = json!({"id": a.id, "username": "alice"});
    assert_eq!(named(&received(&mut h, &b), "user-typing"), vec![json!({"user": user, "isTyping": true})], "once");
    h.advance(299);
    assert!(received(&mut h, &b).is_empty());
    h.advance(1);
    assert_eq!(named(&received(&mut h, &b), "user-typing"), vec![json!({"user": user, "isTyping": false})]);
    assert!(received(&mut h, &a).is_empty(), "expiry never goes to the typer");

    // Sending ends it too, before the message.
    emit(&mut h, &a, None, "typing-start", &[json!({"room": "r"})]);
    emit(&mut h, &a, None, "send-message", &[json!({"content": "done", "room": "r"})]);
    let got: Vec<String> = received(&mut h, &b).into_iter().map(|(n, v)| format!("{n}:{}", v["isTyping"])).collect();
    assert_eq!(got, ["user-typing:true", "user-typing:false", "new-message:null"]);
    h.advance(1000);
    assert!(received(&mut h, &b).is_empty(), "nothing left to expire");

    // And disconnecting.
    emit(&mut h, &a, None, "typing-start", &[json!({"room": "r"})]);
    received(&mut h, &b);
    h.end(a.conn, TransportEnd::Closed);
    let got = received(&mut h, &b);
    assert_eq!(named(&got, "user-typing")[0]["isTyping"], false);
    assert_eq!(named(&got, "user-left")[0]["message"], "alice left the chat");
}

#[test]
fn a_user_with_two_tabs_is_listed_once_and_leaves_with_the_last() {
    let mut h = authed(AppConfig::default());
    let t1 = connect(&mut h, "/", json!({"token": token("alice", false)}));
    let t2 = connect(&mut h, "/", json!({"token": token("alice", false)}));
    let bob = connect(&mut h, "/", json!({"token": token("bob", false)}));
    join(&mut h, &bob, "ignored", "r");
    join(&mut h, &t1, "ignored", "r");
    received(&mut h, &bob);
    let info = &named(&join(&mut h, &t2, "ignored", "r"), "room-info")[0];
    assert_eq!(info["users"], json!([{"id": "bob", "username": "BOB"}, {"id": "alice", "username": "ALICE"}]));
    assert!(named(&received(&mut h, &bob), "user-joined").is_empty());
    h.end(t1.conn, TransportEnd::Closed);
    assert!(named(&received(&mut h, &bob), "user-left").is_empty(), "one tab is still there");
    emit(&mut h, &t2, Some(1), "leave-room", &[json!("r")]);
    assert_eq!(named(&received(&mut h, &t2), "ack:1"), vec![json!({"success": true})]);
    let got = received(&mut h, &bob);
    assert_eq!(named(&got, "user-left")[0]["user"], json!({"id": "alice", "username": "ALICE"}));
    assert_eq!(named(&got, "room-users-update").last().unwrap(), &json!([{"id": "bob", "username": "BOB"}]));
}

#[test]
fn leave_room_without_a_room_leaves_them_all() {
    let mut h = dev();
    let a = connect(&mut h, "/", json!({}));
    join(&mut h, &a, "a", "x");
    join(&mut h, &a, "a", "y");
    emit(&mut h, &a, Some(1), "leave-room", &[]);
    received(&mut h, &a);
    emit(&mut h, &a, Some(2), "send-message", &[json!({"content": "hi", "room": "x"})]);
    assert_eq!(named(&received(&mut h, &a), "ack:2")[0]["code"], "NOT_IN_ROOM");
    emit(&mut h, &a, Some(3), "leave-room", &[json!("x")]);
    assert_eq!(named(&received(&mut h, &a), "ack:3")[0]["code"], "NOT_IN_ROOM");
}

#[test]
fn private_messages_reach_a_user_or_a_socket() {
    let mut h = authed(AppConfig::default());
    let alice = connect(&mut h, "/", json!({"token": token("alice", false)}));
    let bob1 = connect(&mut h, "/", json!({"token": token("bob", false)}));
    let bob2 = connect(&mut h, "/", json!({"token": token("bob", false)}));
    emit(&mut h, &alice, Some(1), "private-message", &[json!({"to": "bob", "content": "hi bob"})]);
    assert_eq!(named(&received(&mut h, &alice), "ack:1"), vec![json!({"success": true})]);
    for b in [&bob1, &bob2] {
        let pm = &named(&received(&mut h, b), "private-message")[0];
        assert_eq!(pm["from"], alice.id);
        assert_eq!(pm["sender"], json!({"id": "alice", "username": "ALICE"}));
        assert_eq!(pm["content"], "hi bob");
    }
    emit(&mut h, &alice, Some(2), "private-message", &[json!({"to": bob2.id, "content": "just you"})]);
    assert!(received(&mut h, &bob1).is_empty());
    assert_eq!(named(&received(&mut h, &bob2), "private-message").len(), 1);
    emit(&mut h, &alice, Some(3), "private-message", &[json!({"to": "nobody", "content": "?"})]);
    assert_eq!(named(&received(&mut h, &alice), "ack:3")[0]["code"], "NOT_FOUND");
}

#[test]
fn tokens_gate_the_namespaces() {
    let mut h = authed(AppConfig::default());
    assert_eq!(try_connect(&mut h, "/", json!({})).err().as_deref(), Some("Authentication required"));
    assert_eq!(try_connect(&mut h, "/", json!({"token": "x.y.z"})).err().as_deref(), Some("Invalid token"));
    let expired = sign(&signing_key(), None, &json!({"sub": "a", "exp": WALL / 1000}));
    assert_eq!(try_connect(&mut h, "/", json!({"token": expired})).err().as_deref(), Some("Invalid token"));
    let other = sign(&SigningKey::from_bytes(&[1; 32]), None, &json!({"sub": "a", "exp": WALL / 1000 + 10}));
    assert_eq!(try_connect(&mut h, "/chat", json!({"token": other})).err().as_deref(), Some("Invalid token"));
    assert_eq!(
        try_connect(&mut h, "/admin", json!({"token": token("a", false)})).err().as_deref(),
        Some("Unauthorized")
    );
    assert!(try_connect(&mut h, "/admin", json!({"token": token("root", true)})).is_ok());
    assert!(try_connect(&mut h, "/", json!({"token": token("a", false)})).is_ok());

    let mut dev = dev();
    assert_eq!(try_connect(&mut dev, "/admin", json!({})).err().as_deref(), Some("Unauthorized"));
}

#[test]
fn notifications_are_stored_pushed_listed_and_marked_read() {
    let mut h = authed(AppConfig::default());
    let admin = connect(&mut h, "/admin", json!({"token": token("root", true)}));
    let alice = connect(&mut h, "/", json!({"token": token("alice", false)}));
    assert_eq!(named(&received(&mut h, &alice), "pending-notifications"), vec![json!([])]);
    emit(&mut h, &admin, Some(1), "notify", &[json!({"userId": "alice", "title": "Hi", "message": "Welcome"})]);
    let ack = &named(&received(&mut h, &admin), "ack:1")[0];
    assert_eq!(ack["success"], true);
    let n = &ack["notification"];
    assert_eq!(
        (n["title"].as_str(), n["read"].as_bool(), n["createdAt"].as_str()),
        (Some("Hi"), Some(false), Some("2026-11-25T16:40:00.000Z"))
    );
    assert_eq!(named(&received(&mut h, &alice), "notification"), vec![n.clone()]);

    // Offline users find it at their next connect; read marks are durable.
    emit(&mut h, &admin, Some(2), "notify", &[json!({"userId": "bob", "title": "Later", "message": "m"})]);
    let bob = connect(&mut h, "/chat", json!({"token": token("bob", false)}));
    let pending = &named(&received(&mut h, &bob), "pending-notifications")[0];
    assert_eq!(pending[0]["title"], "Later");
    emit(&mut h, &bob, Some(3), "notification-read", &[pending[0]["id"].clone()]);
    assert_eq!(named(&received(&mut h, &bob), "ack:3"), vec![json!({"success": true})]);
    emit(&mut h, &bob, Some(4), "notification-read", &[json!("no-such-id")]);
    assert_eq!(named(&received(&mut h, &bob), "ack:4")[0]["code"], "NOT_FOUND");
    emit(&mut h, &bob, Some(5), "notifications-read-all", &[]);
    assert_eq!(named(&received(&mut h, &bob), "ack:5"), vec![json!({"success": true})]);
    let again = connect(&mut h, "/", json!({"token": token("bob", false)}));
    assert_eq!(named(&received(&mut h, &again), "pending-notifications")[0][0]["read"], true);

    emit(&mut h, &admin, Some(6), "notify", &[json!({"userId": "bob", "title": ""})]);
    assert_eq!(named(&received(&mut h, &admin), "ack:6")[0]["code"], "VALIDATION");
}

fn api(h: &mut H, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let conn = h.conn();
    let auth = token.map(|t| format!("Bearer {t}"));
    let req = ApiRequest { conn, method: Method::Post, path, authorization: auth.as_deref(), body: body.as_bytes() };
    h.input(Input::Api(req));
    let (status, body) = h.response(conn).expect("answered");
    (status, serde_json::from_str(&body).unwrap())
}

#[test]
fn the_http_producer_api_needs_an_admin_token() {
    let mut h = authed(AppConfig::default());
    let alice = connect(&mut h, "/", json!({"token": token("alice", false)}));
    received(&mut h, &alice);
    let body = r#"{"userId":"alice","title":"T","message":"M"}"#;
    assert_eq!(api(&mut h, "notifications", None, body).0, 401);
    assert_eq!(api(&mut h, "notifications", Some("bad"), body).0, 401);
    assert_eq!(api(&mut h, "notifications", Some(&token("alice", false)), body).0, 403);
    let (status, err) = api(&mut h, "notifications", Some(&token("root", true)), "{}");
    assert_eq!((status, err["code"].as_str()), (400, Some("VALIDATION")));
    let (status, n) = api(&mut h, "notifications", Some(&token("root", true)), body);
    assert_eq!(status, 201);
    assert_eq!(named(&received(&mut h, &alice), "notification"), vec![n]);
    let (status, _) = api(&mut h, "broadcast", Some(&token("root", true)), r#"{"event":"announce","data":{"x":1}}"#);
    assert_eq!(status, 200);
    assert_eq!(named(&received(&mut h, &alice), "announce"), vec![json!({"x": 1})]);
    assert_eq!(api(&mut h, "nope", Some(&token("root", true)), "{}").0, 404);

    let mut dev = dev();
    assert_eq!(api(&mut dev, "notifications", None, body).0, 401, "without a key the API is off");
}

#[test]
fn admin_can_kick_and_read_stats() {
    let mut h = authed(AppConfig::default());
    let admin = connect(&mut h, "/admin", json!({"token": token("root", true)}));
    let a1 = connect(&mut h, "/", json!({"token": token("alice", false)}));
    let a2 = connect(&mut h, "/chat", json!({"token": token("alice", false)}));
    emit(&mut h, &admin, Some(1), "stats", &[]);
    let stats = &named(&received(&mut h, &admin), "ack:1")[0];
    assert_eq!(stats["users"], 2);
    emit(&mut h, &admin, Some(2), "kick", &[json!({"userId": "alice"})]);
    assert_eq!(named(&received(&mut h, &admin), "ack:2"), vec![json!({"success": true, "kicked": 2})]);
    for c in [&a1, &a2] {
        assert!(h.frames(c.conn).iter().any(|f| f.starts_with("41")), "a DISCONNECT packet");
    }
}

#[test]
fn rate_limits_refuse_then_disconnect() {
    let limit = ratelimit::Limit { capacity: 3, window_ms: 60_000 };
    let mut h = harness(AppConfig { chat_limit: limit, ..AppConfig::default() });
    let a = connect(&mut h, "/", json!({}));
    join(&mut h, &a, "a", "r");
    emit(&mut h, &a, Some(0), "send-message", &[json!({"content": "", "room": "r"})]);
    for i in 1..=3 {
        emit(&mut h, &a, Some(i), "send-message", &[json!({"content": "x", "room": "r"})]);
    }
    let got = received(&mut h, &a);
    assert_eq!(named(&got, "ack:0")[0]["code"], "VALIDATION", "does not count");
    assert_eq!(named(&got, "ack:3")[0]["success"], true);
    emit(&mut h, &a, Some(4), "send-message", &[json!({"content": "x", "room": "r"})]);
    assert_eq!(
        named(&received(&mut h, &a), "ack:4"),
        vec![json!({"error": "Rate limit exceeded", "code": "RATE_LIMITED"})]
    );
    emit(&mut h, &a, None, "message", &[json!(1)]);
    assert_eq!(named(&received(&mut h, &a), "error")[0]["code"], "RATE_LIMITED", "the same bucket");
    emit(&mut h, &a, Some(5), "send-message", &[json!({"content": "x", "room": "r"})]);
    assert!(h.frames(a.conn).iter().any(|f| f == "41"), "cut off after as many refusals as the limit");
}

#[test]
fn documents_transform_late_edits_and_shift_cursors() {
    let mut h = dev();
    let a = connect(&mut h, "/", json!({"username": "ann"}));
    let b = connect(&mut h, "/", json!({"username": "ben"}));
    emit(&mut h, &a, Some(1), "join-document", &[json!("d1")]);
    let state = &named(&received(&mut h, &a), "document-state")[0];
    assert_eq!((state["content"].as_str(), state["version"].as_u64()), (Some(""), Some(0)));
    emit(&mut h, &b, None, "join-document", &[json!("d1")]);
    received(&mut h, &b);
    assert_eq!(named(&received(&mut h, &a), "user-joined-document")[0]["socketId"], b.id);

    emit(&mut h, &a, Some(2), "text-change", &[json!({"docId": "d1", "delta": [{"insert": "hello"}], "version": 0})]);
    assert_eq!(named(&received(&mut h, &a), "ack:2"), vec![json!({"version": 1})]);
    let change = &named(&received(&mut h, &b), "text-change")[0];
    assert_eq!(change["author"], json!({"id": a.id, "username": "ann"}));
    emit(&mut h, &b, None, "cursor-move", &[json!({"docId": "d1", "position": 5})]);
    assert_eq!(named(&received(&mut h, &a), "cursor-update")[0]["position"], 5);

    // Both edit version 1 at once: b's edit is transformed over a's.
    emit(&mut h, &a, Some(3), "text-change", &[json!({"docId": "d1", "delta": [{"insert": ">> "}], "version": 1})]);
    emit(
        &mut h,
        &b,
        Some(4),
        "text-change",
        &[json!({"docId": "d1", "delta": [{"retain": 5}, {"insert": "!"}], "version": 1})],
    );
    assert_eq!(named(&received(&mut h, &b), "ack:4"), vec![json!({"version": 3})]);
    let late = &named(&received(&mut h, &a), "text-change")[0];
    assert_eq!(late["delta"], json!([{"retain": 8}, {"insert": "!"}]));

    let c = connect(&mut h, "/", json!({"username": "cy"}));
    emit(&mut h, &c, None, "join-document", &[json!("d1")]);
    let state = &named(&received(&mut h, &c), "document-state")[0];
    assert_eq!((state["content"].as_str(), state["version"].as_u64()), (Some(">> hello!"), Some(3)));
    let cursors = state["cursors"].as_array().unwrap();
    let of_b = cursors.iter().find(|p| p[0] == b.id.as_str()).unwrap();
    assert_eq!(of_b[1]["position"], 9, "b's cursor moved with both edits");

    emit(
        &mut h,
        &a,
        Some(5),
        "text-change",
        &[json!({"docId": "d1", "delta": [{"retain": 99}, {"insert": "x"}], "version": 3})],
    );
    assert_eq!(named(&received(&mut h, &a), "ack:5")[0]["code"], "VALIDATION");
    emit(&mut h, &a, Some(6), "text-change", &[json!({"docId": "zz", "delta": [], "version": 0})]);
    assert_eq!(named(&received(&mut h, &a), "ack:6")[0]["code"], "NOT_IN_ROOM");

    h.end(b.conn, TransportEnd::Closed);
    assert_eq!(named(&received(&mut h, &a), "user-left-document"), vec![json!({"socketId": b.id})]);
}

#[test]
fn an_edit_older_than_the_log_is_stale() {
    let mut h = harness(AppConfig { doc_log_limit: 2, ..AppConfig::default() });
    let a = connect(&mut h, "/", json!({}));
    emit(&mut h, &a, None, "join-document", &[json!("d")]);
    for v in 0..3 {
        emit(&mut h, &a, None, "text-change", &[json!({"docId": "d", "delta": [{"insert": "x"}], "version": v})]);
    }
    emit(&mut h, &a, Some(1), "text-change", &[json!({"docId": "d", "delta": [{"insert": "y"}], "version": 0})]);
    assert_eq!(named(&received(&mut h, &a), "ack:1")[0]["code"], "STALE_VERSION");
}

#[test]
fn documents_come_back_from_the_store() {
    let mut h = dev();
    let a = connect(&mut h, "/", json!({}));
    emit(&mut h, &a, None, "join-document", &[json!("d")]);
    emit(&mut h, &a, None, "text-change", &[json!({"docId": "d", "delta": [{"insert": "kept"}], "version": 0})]);
    emit(&mut h, &a, Some(1), "leave-document", &[json!("d")]);
    assert_eq!(named(&received(&mut h, &a), "ack:1"), vec![json!({"success": true})]);
    assert_eq!(h.machine.handler().scopes["/"].docs.len(), 0, "evicted once nobody has it open");
    let b = connect(&mut h, "/", json!({}));
    emit(&mut h, &b, None, "join-document", &[json!("d")]);
    let state = &named(&received(&mut h, &b), "document-state")[0];
    assert_eq!((state["content"].as_str(), state["version"].as_u64()), (Some("kept"), Some(1)));
}

#[test]
fn selections_and_cursors_go_to_the_others_only() {
    let mut h = dev();
    let a = connect(&mut h, "/", json!({"username": "ann"}));
    let b = connect(&mut h, "/", json!({"username": "ben"}));
    for c in [&a, &b] {
        emit(&mut h, c, None, "join-document", &[json!({"docId": "d"})]);
    }
    received(&mut h, &a);
    received(&mut h, &b);
    emit(&mut h, &a, None, "selection-change", &[json!({"docId": "d", "selection": {"index": 0, "length": 0}})]);
    assert!(received(&mut h, &a).is_empty());
    let sel = &named(&received(&mut h, &b), "selection-update")[0];
    assert_eq!(sel["user"], json!({"id": a.id, "username": "ann"}));
    assert_eq!(sel["selection"], json!({"index": 0, "length": 0}));
    emit(&mut h, &a, None, "cursor-move", &[json!({"docId": "d", "position": 99})]);
    assert_eq!(named(&received(&mut h, &b), "cursor-update")[0]["position"], 0, "clamped into the document");
    emit(&mut h, &a, None, "selection-change", &[json!({"docId": "d", "selection": 5})]);
    assert_eq!(named(&received(&mut h, &a), "error")[0]["code"], "VALIDATION");
    emit(&mut h, &a, None, "cursor-move", &[json!({"docId": "d", "position": -1})]);
    assert_eq!(named(&received(&mut h, &a), "error")[0]["code"], "VALIDATION");
}

#[test]
fn a_document_cannot_grow_past_its_limit() {
    let mut h = harness(AppConfig { max_doc_len: 10, ..AppConfig::default() });
    let a = connect(&mut h, "/", json!({}));
    emit(&mut h, &a, None, "join-document", &[json!("d")]);
    emit(
        &mut h,
        &a,
        Some(1),
        "text-change",
        &[json!({"docId": "d", "delta": [{"insert": "😀".repeat(6)}], "version": 0})],
    );
    assert_eq!(named(&received(&mut h, &a), "ack:1")[0]["code"], "PAYLOAD_TOO_LARGE");
}

#[test]
fn typing_and_cursors_have_their_own_bucket() {
    let limit = ratelimit::Limit { capacity: 2, window_ms: 60_000 };
    let mut h = harness(AppConfig { typing_limit: limit, ..AppConfig::default() });
    let a = connect(&mut h, "/", json!({}));
    join(&mut h, &a, "a", "r");
    for _ in 0..2 {
        emit(&mut h, &a, None, "typing-start", &[json!({"room": "r"})]);
    }
    assert!(received(&mut h, &a).is_empty());
    emit(&mut h, &a, None, "typing-stop", &[json!({"room": "r"})]);
    assert_eq!(named(&received(&mut h, &a), "error")[0]["code"], "RATE_LIMITED");
    emit(&mut h, &a, Some(1), "send-message", &[json!({"content": "still fine", "room": "r"})]);
    assert_eq!(named(&received(&mut h, &a), "ack:1")[0]["success"], true, "chat has its own bucket");
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let mut h = dev();
    let a = connect(&mut h, "/", json!({}));
    let deep = (0..100).fold(json!(1), |v, _| json!([v]));
    let cases = [
        ("join", json!({"username": "", "room": "r"})),
        ("join", json!({"username": "x".repeat(65), "room": "r"})),
        ("join", json!({"username": "u", "room": ["r"]})),
        ("join", json!(null)),
        ("typing-start", json!({"room": 1})),
        ("private-message", json!({"to": "", "content": "x"})),
        ("private-message", json!({"to": "a", "content": deep})),
        ("notification-read", json!({"id": 1})),
        ("join-document", json!("")),
        ("text-change", json!({"docId": "d", "delta": "x", "version": 0})),
        ("text-change", json!({"docId": "d", "delta": [{"insert": 1}], "version": 0})),
        ("text-change", json!({"docId": "d", "delta": [], "version": "1"})),
        ("leave-room", json!(7)),
    ];
    for (event, arg) in cases {
        emit(&mut h, &a, Some(1), event, std::slice::from_ref(&arg));
        let got = received(&mut h, &a);
        assert_eq!(named(&got, "ack:1")[0]["code"], "VALIDATION", "{event} {arg}");
    }
    emit(&mut h, &a, Some(2), "no-such-event", &[json!(1)]);
    assert!(received(&mut h, &a).is_empty(), "unknown events are ignored");
    assert!(h.machine.handler().scopes["/"].presence.users("r").is_empty());
}

#[test]
fn recovery_keeps_the_user_and_their_rooms() {
    let config = Config { recovery_window_ms: 60_000, ..Config::default() };
    let mut h = Host::with_store(Service::new(config, [5; 32], Instant(0), RoomService::default()));
    h.input(Input::WallClock { unix_ms: WALL });
    let (conn, _) = h.open_ws();
    h.text(conn, r#"40{"username":"ann"}"#);
    let reply = h.first_frame(conn).unwrap();
    let reply: Value = serde_json::from_str(&reply[2..]).unwrap();
    let a = TestClient { conn, nsp: "/".into(), id: reply["sid"].as_str().unwrap().to_owned() };
    join(&mut h, &a, "ann", "r");
    let b = connect(&mut h, "/", json!({}));
    join(&mut h, &b, "ben", "r");
    h.end(a.conn, TransportEnd::Closed);
    received(&mut h, &b);
    let (conn2, _) = h.open_ws();
    h.text(conn2, &format!(r#"40{{"pid":"{}"}}"#, reply["pid"].as_str().unwrap()));
    let again = h.first_frame(conn2).unwrap();
    assert!(again.contains(&a.id), "same socket id: {again}");
    let a2 = TestClient { conn: conn2, nsp: "/".into(), id: a.id.clone() };
    let back = &named(&received(&mut h, &b), "user-joined")[0];
    assert_eq!(back["user"], json!({"id": a.id, "username": "ann"}));
    emit(&mut h, &a2, Some(1), "send-message", &[json!({"content": "back", "room": "r"})]);
    assert_eq!(named(&received(&mut h, &a2), "ack:1")[0]["success"], true, "still in the room");
}

#[test]
fn reconnecting_does_not_refill_the_rate_limit() {
    let limit = ratelimit::Limit { capacity: 2, window_ms: 60_000 };
    let mut h = authed(AppConfig { chat_limit: limit, ..AppConfig::default() });
    let a = connect(&mut h, "/", json!({"token": token("alice", false)}));
    for _ in 0..2 {
        emit(&mut h, &a, None, "message", &[json!(1)]);
    }
    h.end(a.conn, TransportEnd::Closed);
    let a = connect(&mut h, "/", json!({"token": token("alice", false)}));
    received(&mut h, &a);
    emit(&mut h, &a, Some(1), "private-message", &[json!({"to": a.id, "content": "x"})]);
    assert_eq!(named(&received(&mut h, &a), "ack:1")[0]["code"], "RATE_LIMITED");
}

#[test]
fn writes_waiting_for_the_store_are_capped_per_socket() {
    let chat_limit = ratelimit::Limit { capacity: 10_000, window_ms: 60_000 };
    let config = Config { recovery_window_ms: 0, ..Config::default() };
    let app = RoomService::new(AppConfig { chat_limit, ..AppConfig::default() });
    // No store answers: every write stays in flight.
    let mut h = Host::new(Service::new(config, [5; 32], Instant(0), app));
    let a = connect(&mut h, "/", json!({}));
    emit(&mut h, &a, None, "join-room", &[json!("r")]);
    for i in 0..=MAX_IN_FLIGHT as u64 {
        emit(&mut h, &a, Some(i), "send-message", &[json!({"content": "x", "room": "r"})]);
    }
    let got = received(&mut h, &a);
    let refused = named(&got, &format!("ack:{MAX_IN_FLIGHT}"));
    assert_eq!(refused[0]["code"], "RATE_LIMITED");
    assert_eq!(got.iter().filter(|(n, _)| n.starts_with("ack:")).count(), 1, "the others wait for the store");
    let stores = h.outputs.iter().filter(|o| matches!(o, crate::Output::Store { .. })).count();
    assert_eq!(stores, MAX_IN_FLIGHT);
}

/// Feeds the same frames to a service and to its restored snapshot: they must answer alike.
#[test]
fn a_restored_snapshot_behaves_exactly_like_the_original() {
    let config = Config { recovery_window_ms: 30_000, ..Config::default() };
    let app = AppConfig { typing_timeout_ms: 300, ..AppConfig::default() };
    let mut h = Host::new(Service::new(config, [5; 32], Instant(0), RoomService::new(app)));
    h.input(Input::WallClock { unix_ms: WALL });
    let a = connect(&mut h, "/", json!({"username": "ann"}));
    let b = connect(&mut h, "/chat", json!({"username": "ben"}));
    emit(&mut h, &a, None, "join", &[json!({"username": "ann", "room": "r"})]);
    emit(&mut h, &a, None, "join-document", &[json!("d")]);
    emit(&mut h, &b, Some(1), "join-room", &[json!("r")]);
    emit(&mut h, &a, None, "typing-start", &[json!({"room": "r"})]);
    h.outputs.clear(); // storage requests stay unanswered across the swap on purpose

    let snap = h.machine.snapshot().unwrap();
    let restored = Service::<RoomService>::restore(&snap, h.now).unwrap();
    let mut g = h.twin(restored);

    let script: Vec<(ConnId, String)> = vec![
        (a.conn, r#"42["send-message",{"content":"hi","room":"r"}]"#.into()),
        (b.conn, r#"42/chat,2["send-message",{"content":"yo","room":"r"}]"#.into()),
        (a.conn, r#"42["typing-stop",{"room":"r"}]"#.into()),
        (b.conn, "41/chat,".into()),
    ];
    for (conn, text) in &script {
        h.text(*conn, text);
        g.text(*conn, text);
    }
    h.advance(25_000);
    g.advance(25_000);
    assert!(!h.outputs.is_empty());
    // Per connection (what a client can observe) and for the store, in order.
    let per_conn = crate::testing::per_conn;
    assert_eq!(per_conn(&h.outputs), per_conn(&g.outputs), "same outputs after the swap");
}

#[test]
fn snapshots_of_one_kind_do_not_restore_as_another() {
    let h = dev();
    let snap = h.machine.snapshot().unwrap();
    let err = Service::<crate::conformance::ConformanceApp>::restore(&snap, Instant(0)).err().unwrap();
    assert!(matches!(err, crate::snapshot::SnapshotError::Kind { .. }), "{err}");
    assert!(Service::<RoomService>::restore(&snap[..10], Instant(0)).is_err());
}

#[test]
fn a_text_change_with_huge_counts_is_a_validation_error() {
    // The fuzzers' regression: this used to panic the node.
    let mut h = dev();
    let a = connect(&mut h, "/", json!({}));
    emit(&mut h, &a, None, "join-document", &[json!({"docId": "d"})]);
    received(&mut h, &a);
    let delta = json!([{"retain": u64::MAX}, {"delete": 1}]);
    emit(&mut h, &a, Some(1), "text-change", &[json!({"docId": "d", "version": 0, "delta": delta})]);
    assert_eq!(named(&received(&mut h, &a), "ack:1")[0]["code"], "VALIDATION");
}

#[test]
fn repeated_joins_while_the_store_is_slow_wait_once() {
    // Found by the bounds check: each repeated `join` / `join-document` before the store
    // answered queued the socket again, without bound.
    let mut h = dev();
    let a = connect(&mut h, "/", json!({}));
    h.answer_at_once = false;
    for _ in 0..5 {
        emit(&mut h, &a, None, "join", &[json!({"username": "a", "room": "r"})]);
    }
    emit(&mut h, &a, Some(1), "join-document", &[json!({"docId": "d"})]);
    emit(&mut h, &a, Some(2), "join-document", &[json!({"docId": "d"})]);
    assert_eq!(h.machine.check_bounds(), Ok(()));
    let events = received(&mut h, &a);
    assert_eq!(named(&events, "ack:2")[0]["code"], "VALIDATION", "{events:?}");
    assert!(named(&events, "ack:1").is_empty(), "the first join still waits for the store");
    let mut store = crate::testing::MemStore::default();
    let requests: Vec<_> = std::mem::take(&mut h.outputs)
        .into_iter()
        .filter_map(|o| match o {
            crate::Output::Store { id, request } => Some((id, request)),
            _ => None,
        })
        .collect();
    for (id, request) in requests {
        let answer = store.answer(&request);
        h.input(Input::Stored { id, answer });
    }
    let events = received(&mut h, &a);
    assert_eq!(named(&events, "room-info").len(), 1, "one room-info for the joins: {events:?}");
    assert_eq!(named(&events, "ack:1").len(), 1, "{events:?}");
}

#[test]
fn departed_members_stay_within_the_recovery_session_bound() {
    let config = Config { recovery_window_ms: 60_000, recovery_max_sessions: 2, ..Config::default() };
    let mut h = Host::with_store(Service::new(config, [5; 32], Instant(0), RoomService::default()));
    h.input(Input::WallClock { unix_ms: WALL });
    let clients: Vec<TestClient> = (0..4).map(|_| connect(&mut h, "/", json!({}))).collect();
    for c in &clients {
        join(&mut h, c, "u", "r");
    }
    for c in &clients {
        h.end(c.conn, TransportEnd::Error);
        assert_eq!(h.machine.check_bounds(), Ok(()));
    }
}

#[test]
fn history_from_the_store_is_capped_at_the_recent_limit() {
    // Found by the service fuzz target's bounds check: a store answering with more
    // records than asked for grew the room's history past `recent_limit`.
    let mut h = harness(AppConfig { recent_limit: 2, ..AppConfig::default() });
    let a = connect(&mut h, "/", json!({}));
    h.answer_at_once = false;
    emit(&mut h, &a, None, "join", &[json!({"username": "a", "room": "r"})]);
    let id = h
        .outputs
        .iter()
        .find_map(|o| match o {
            crate::Output::Store { id, request } => {
                matches!(RoomRequest::from_store(request), Ok(RoomRequest::LoadHistory { .. })).then_some(*id)
            }
            _ => None,
        })
        .expect("the history is asked for");
    let records = (0..5).map(|i| json!({"id": format!("m{i}"), "content": format!("c{i}")}).to_string()).collect();
    h.input(Input::Stored { id, answer: RoomAnswer::Messages(records).into() });
    assert_eq!(h.machine.check_bounds(), Ok(()));
    let info = &named(&received(&mut h, &a), "room-info")[0];
    let ids: Vec<&str> = info["recentMessages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["m3", "m4"], "the newest two, oldest first");
}

mod cluster;
mod cluster_sim;
mod documents;

#[test]
fn every_event_takes_from_the_socket_s_budget_known_or_not() {
    let limit = ratelimit::Limit { capacity: 3, window_ms: 1_000 };
    let mut h = harness(AppConfig { event_limit: limit, ..AppConfig::default() });
    let a = connect(&mut h, "/", json!({}));
    let b = connect(&mut h, "/", json!({}));
    emit(&mut h, &a, Some(1), "join-room", &[json!("r")]);
    emit(&mut h, &a, Some(2), "leave-room", &[json!("r")]);
    emit(&mut h, &a, None, "no-such-event", &[]);
    assert!(named(&received(&mut h, &a), "error").is_empty(), "within the budget");
    emit(&mut h, &a, Some(3), "join-room", &[json!("r")]);
    assert_eq!(named(&received(&mut h, &a), "ack:3")[0]["code"], "RATE_LIMITED");
    emit(&mut h, &b, Some(1), "join-room", &[json!("r")]);
    assert!(named(&received(&mut h, &b), "ack:1")[0].get("code").is_none(), "one socket's budget is its own");
    h.advance(400);
    emit(&mut h, &a, Some(4), "join-room", &[json!("r")]);
    assert!(named(&received(&mut h, &a), "ack:4")[0].get("code").is_none(), "refilled after 400 ms");
    emit(&mut h, &a, None, "no-such-event", &[]);
    assert!(h.closed(a.conn).is_none());
    emit(&mut h, &a, None, "no-such-event", &[]);
    assert!(h.closed(a.conn).is_some(), "the connection is closed after as many refusals as the limit");
    assert_eq!(h.machine.check_bounds(), Ok(()));
}

#[test]
fn with_auth_on_only_the_same_user_resumes_a_socket() {
    let config = Config { recovery_window_ms: 60_000, ..Config::default() };
    let key = AuthKey { kid: None, key: signing_key().verifying_key().to_bytes() };
    let app = AppConfig { auth_keys: vec![key], ..AppConfig::default() };
    let mut h = Host::with_store(Service::new(config, [5; 32], Instant(0), RoomService::new(app)));
    h.input(Input::WallClock { unix_ms: WALL });
    let drop_one = |h: &mut H| {
        let (conn, _) = h.open_ws();
        h.text(conn, &format!(r#"40{{"token":"{}"}}"#, token("alice", false)));
        let reply: Value = serde_json::from_str(&h.first_frame(conn).unwrap()[2..]).unwrap();
        h.end(conn, TransportEnd::Closed);
        (reply["sid"].as_str().unwrap().to_owned(), reply["pid"].as_str().unwrap().to_owned())
    };
    let resume = |h: &mut H, pid: &str, token: Option<String>| {
        let (conn, _) = h.open_ws();
        let auth = match token {
            Some(t) => json!({"pid": pid, "token": t}),
            None => json!({"pid": pid}),
        };
        h.text(conn, &format!("40{auth}"));
        h.first_frame(conn).unwrap()
    };
    // A pid without a token is refused like any CONNECT without one.
    let (_, pid) = drop_one(&mut h);
    let reply = resume(&mut h, &pid, None);
    assert!(reply.starts_with("44") && reply.contains("Authentication required"), "{reply}");
    // Another user's valid token gets a socket of its own, not alice's.
    let (sid, pid) = drop_one(&mut h);
    let reply = resume(&mut h, &pid, Some(token("mallory", false)));
    assert!(reply.starts_with("40") && !reply.contains(&sid), "{reply}");
    // Alice herself resumes it.
    let (sid, pid) = drop_one(&mut h);
    let reply = resume(&mut h, &pid, Some(token("alice", false)));
    assert!(reply.contains(&sid), "{reply}");
    assert_eq!(h.machine.check_bounds(), Ok(()));
}
