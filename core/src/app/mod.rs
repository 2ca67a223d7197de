//! The room service, written against the Socket.IO API ([`Handler`] / [`Io`]).
//!
//! So far it answers the two events every chat client starts with, on `/` and `/chat`
//! (DESIGN.md §4): `message` and `join-room`. Presence, typing, history, private messages,
//! notifications, documents, auth and limits come with the room service's own issue.

pub mod auth;
pub mod config;
pub mod docs;
pub mod ot;
pub mod presence;
pub mod ratelimit;
pub mod typing;

use crate::socketio::{Event, Handler, Io, Message, SocketId, Target};
use crate::time::Instant;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Rooms names are 1..=128 UTF-16 code units, as JavaScript validators count.
const MAX_ROOM_LEN: usize = 128;

pub use config::AppConfig;

#[derive(Debug, Default)]
pub struct RoomService {
    #[allow(dead_code)]
    config: AppConfig,
    /// Display names by socket (dev mode: the socket id until the client says otherwise).
    names: HashMap<SocketId, String>,
}

impl RoomService {
    #[must_use]
    pub fn new(config: AppConfig) -> Self {
        RoomService { config, names: HashMap::new() }
    }

    fn user(&self, id: &SocketId) -> Value {
        let name = self.names.get(id).map_or(id.as_str(), String::as_str);
        json!({"id": id.as_str(), "username": name})
    }

    fn users_in(&self, io: &Io, nsp: &str, room: &str) -> Value {
        Value::Array(io.sockets_in(nsp, &[room]).iter().map(|id| self.user(id)).collect())
    }

    fn on_message(io: &mut Io, socket: &SocketId, nsp: &str, event: &Event, now: Instant) {
        let data = event.args.first().cloned().unwrap_or(Value::Null);
        io.emit_to(socket, &Message::new("message-received", vec![json!({"status": "ok"})]), now);
        let others = Target::all(nsp).except_socket(socket);
        io.emit(&others, &Message::new("new-message", vec![data.clone()]).with_binary(event.binary.clone()), now);
        io.emit(&Target::all(nsp), &Message::new("message", vec![data]).with_binary(event.binary.clone()), now);
    }

    fn on_join_room(&mut self, io: &mut Io, socket: &SocketId, nsp: &str, event: &Event, now: Instant) {
        let room = match event.args.first() {
            Some(Value::String(r)) if valid_len(r, 1, MAX_ROOM_LEN) => r.clone(),
            _ => {
                return reply_error(
                    io,
                    socket,
                    event,
                    "room must be a string of 1 to 128 characters",
                    "VALIDATION",
                    now,
                )
            }
        };
        if !io.join(socket, &room) {
            return reply_error(io, socket, event, "too many rooms", "VALIDATION", now);
        }
        let users = self.users_in(io, nsp, &room);
        if let Some(ack) = event.ack {
            io.ack(socket, ack, &[json!({ "users": users })], &[]);
        }
        io.emit(&Target::all(nsp).to(room), &Message::new("room-users-update", vec![users]), now);
    }
}

/// Counts UTF-16 code units, as JavaScript's `length` does.
fn valid_len(s: &str, min: usize, max: usize) -> bool {
    let n = s.encode_utf16().count();
    (min..=max).contains(&n)
}

/// An error goes to the ack when the client asked for one, else as an `error` event.
fn reply_error(io: &mut Io, socket: &SocketId, event: &Event, message: &str, code: &str, now: Instant) {
    match event.ack {
        Some(ack) => io.ack(socket, ack, &[json!({"error": message, "code": code})], &[]),
        None => io.emit_to(socket, &Message::new("error", vec![json!({"message": message, "code": code})]), now),
    }
}

impl Handler for RoomService {
    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == "/" || nsp == "/chat"
    }

    fn on_event(&mut self, io: &mut Io, socket: &SocketId, event: Event, now: Instant) {
        let Some(nsp) = io.nsp_of(socket).map(str::to_owned) else { return };
        match event.name.as_str() {
            "message" => Self::on_message(io, socket, &nsp, &event, now),
            "join-room" => self.on_join_room(io, socket, &nsp, &event, now),
            _ => {}
        }
    }

    fn on_disconnect(
        &mut self,
        _io: &mut Io,
        socket: &SocketId,
        _nsp: &str,
        _reason: crate::socketio::DisconnectReason,
        _now: Instant,
    ) {
        self.names.remove(socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;
    use crate::{Config, Service};

    fn harness() -> Harness<Service<RoomService>> {
        let config = Config { recovery_window_ms: 0, ..Config::default() };
        Harness::new(Service::new(config, [4; 32], Instant(0), RoomService::new(AppConfig::default())))
    }

    fn connect(h: &mut Harness<Service<RoomService>>, nsp: &str) -> (crate::ConnId, String) {
        let (c, _) = h.open_ws();
        h.text(c, &if nsp.is_empty() { "40".to_owned() } else { format!("40{nsp},") });
        let f = h.frames(c);
        let v: Value = serde_json::from_str(&f[0][f[0].find('{').unwrap()..]).unwrap();
        (c, v["sid"].as_str().unwrap().to_owned())
    }

    #[test]
    fn message_goes_to_sender_others_and_all() {
        let mut h = harness();
        let (a, _) = connect(&mut h, "");
        let (b, _) = connect(&mut h, "");
        let (other_nsp, _) = connect(&mut h, "/chat");
        h.text(a, r#"42["message",{"text":"hi"}]"#);
        assert_eq!(h.frames(a), vec![r#"42["message-received",{"status":"ok"}]"#, r#"42["message",{"text":"hi"}]"#]);
        assert_eq!(h.frames(b), vec![r#"42["new-message",{"text":"hi"}]"#, r#"42["message",{"text":"hi"}]"#]);
        assert!(h.frames(other_nsp).is_empty(), "namespaces are separate");
    }

    #[test]
    fn join_room_acks_users_and_updates_the_room() {
        let mut h = harness();
        let (a, a_id) = connect(&mut h, "/chat");
        let (b, b_id) = connect(&mut h, "/chat");
        h.text(a, r#"42/chat,1["join-room","general"]"#);
        let f = h.frames(a);
        assert_eq!(f[0], format!(r#"43/chat,1[{{"users":[{{"id":"{a_id}","username":"{a_id}"}}]}}]"#));
        assert!(f[1].starts_with(r#"42/chat,["room-users-update",["#));
        h.text(b, r#"42/chat,2["join-room","general"]"#);
        let users: Value = serde_json::from_str(&h.frames(b)[0][9..]).unwrap();
        assert_eq!(users[0]["users"].as_array().unwrap().len(), 2);
        let update = h.frames(a);
        assert_eq!(update.len(), 1);
        assert!(update[0].contains(&b_id));
    }

    #[test]
    fn join_room_validates_the_room() {
        let mut h = harness();
        let (a, _) = connect(&mut h, "");
        h.text(a, r#"421["join-room",""]"#);
        assert_eq!(
            h.frames(a),
            vec![r#"431[{"error":"room must be a string of 1 to 128 characters","code":"VALIDATION"}]"#]
        );
        let long = "é".repeat(129);
        h.text(a, &format!(r#"42["join-room","{long}"]"#));
        assert!(h.frames(a)[0].starts_with(r#"42["error",{"message":"#));
        let fits = "😀".repeat(64); // 128 UTF-16 code units
        h.text(a, &format!(r#"422["join-room","{fits}"]"#));
        assert!(h.frames(a)[0].starts_with(r#"432[{"users":"#));
    }
}
