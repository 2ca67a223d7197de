//! The room service, written against the Socket.IO API ([`Handler`] / [`Io`]).
//!
//! So far it answers the two events every chat client starts with, on `/` and `/chat`
//! (DESIGN.md §4): `message` and `join-room`. Presence, typing, history, private messages,
//! notifications, documents, auth and limits come with the room service's own issue.

use crate::socketio::{Event, Handler, Io, Message, SocketId, Target};
use crate::time::Instant;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Rooms names are 1..=128 UTF-16 code units, as JavaScript validators count.
const MAX_ROOM_LEN: usize = 128;

#[derive(Debug, Default)]
pub struct RoomService {
    /// Display names by socket (dev mode: the socket id until the client says otherwise).
    names: HashMap<SocketId, String>,
}

impl RoomService {
    #[must_use]
    pub fn new() -> Self {
        RoomService::default()
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
