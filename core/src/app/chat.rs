//! Chat: the `message` trio, joining and leaving rooms with presence, messages stored
//! before they are announced, room history, and typing indicators.

use super::records::{Answer, RoomAnswer, RoomRequest};
use super::roster::Waiter;
use super::validate::{self, AppError};
use super::{
    chat_room, invalid, presence_to_room, reply_error, to_chat_room, user_room, EventCx, Limited, Outcome, Pending,
    RoomService,
};
use crate::socketio::{Io, Message, SocketId, Target};
use crate::time::Instant;
use serde_json::{json, Value};
use std::collections::VecDeque;

/// A room's recent messages, oldest first, once loaded from the store.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum History {
    /// Sockets waiting for `room-info` while the store loads the history.
    Loading(Vec<SocketId>),
    Ready(#[serde(with = "crate::snapshot::json_seq")] VecDeque<Value>),
}

/// A message waiting for the store before it is announced.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PendingMessage {
    nsp: String,
    room: String,
    #[serde(with = "crate::snapshot::json")]
    message: Value,
    socket: SocketId,
    ack: Option<u64>,
}

impl PendingMessage {
    pub(super) fn socket(&self) -> &SocketId {
        &self.socket
    }
}

impl RoomService {
    /// `message`: the sender hears `message-received`, the others `new-message`, all `message`.
    pub(super) fn on_message(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, member, event, now) = (cx.socket, cx.member, cx.event, cx.now);
        self.limit(member, Limited::Chat, now)?;
        let nsp = &member.nsp;
        let data = event.args.first().cloned().unwrap_or(Value::Null);
        io.emit_to(socket, &Message::new("message-received", vec![json!({"status": "ok"})]), now);
        let others = Target::all(nsp).except_socket(socket);
        io.emit(&others, &Message::new("new-message", vec![data.clone()]).with_binary(event.binary.clone()), now);
        io.emit(&Target::all(nsp), &Message::new("message", vec![data]).with_binary(event.binary.clone()), now);
        Ok(())
    }

    /// `join {username, room}`: joins, and answers `room-info` with the recent history.
    pub(super) fn on_join(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, member, arg, ack, now) = (cx.socket, cx.member, cx.arg(), cx.ack(), cx.now);
        let obj = validate::object(arg)?;
        let username = validate::text(obj.get("username"), "username", 1, validate::MAX_USERNAME)?;
        let room = validate::room(obj.get("room"))?;
        if self.dev_mode() {
            if let Some(m) = self.members.get_mut(socket) {
                m.user.username = username;
            }
        }
        self.join_chat(io, socket, &room, now)?;
        let nsp = member.nsp.clone();
        // A repeated join while the store is slow waits once, not once per join.
        self.room_info_due(io, socket, &nsp, &room, now);
        super::ack(io, socket, ack, json!({"success": true}));
        Ok(())
    }

    /// `join-room` (room, ack): joins, acks the users.
    pub(super) fn on_join_room(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, arg, ack, now) = (cx.socket, cx.arg(), cx.ack(), cx.now);
        let room = validate::room(arg)?;
        self.join_chat(io, socket, &room, now)?;
        let Some(nsp) = io.nsp_of(socket).map(str::to_owned) else { return Ok(()) };
        if !self.wait_for_opening(&nsp, &room, Waiter::Ack(socket.clone(), ack)) {
            let users = self.scope(&nsp).presence.users_json(&room);
            super::ack(io, socket, ack, json!({ "users": users }));
        }
        Ok(())
    }

    /// Puts a socket in a chat room. Idempotent; a user new to the room is announced.
    pub(super) fn join_chat(
        &mut self,
        io: &mut Io<'_>,
        socket: &SocketId,
        room: &str,
        now: Instant,
    ) -> Result<(), AppError> {
        let Some(member) = self.members.get_mut(socket) else { return Ok(()) };
        if !member.chat_rooms.contains(room) {
            if !io.join(socket, &chat_room(room)) {
                return Err(AppError::validation("Too many rooms"));
            }
            member.chat_rooms.insert(room.to_owned());
        }
        let (nsp, user) = (member.nsp.clone(), member.user.clone());
        let presence = &mut self.scope(&nsp).presence;
        let joined = presence.join(room, &user, socket, io.wall_ms(now));
        if joined.here {
            self.share_join(io, &nsp, room, &user, joined.opened, now);
        }
        // A room still opening shows its whole list when the other nodes have answered.
        if joined.new && !self.is_opening(&nsp, room) {
            let users = self.scope(&nsp).presence.users_json(room);
            let joined = json!({"user": user.to_json(), "message": format!("{} joined the chat", user.username)});
            presence_to_room(io, &nsp, room, Some(socket), &Message::new("user-joined", vec![joined]), now);
            presence_to_room(io, &nsp, room, None, &Message::new("room-users-update", vec![users]), now);
        }
        Ok(())
    }

    /// Takes a socket out of a chat room; the user's last socket there announces the leave.
    pub(super) fn leave_chat(&mut self, io: &mut Io<'_>, socket: &SocketId, room: &str, now: Instant) {
        let Some(member) = self.members.get_mut(socket) else { return };
        member.chat_rooms.remove(room);
        let (nsp, user) = (member.nsp.clone(), member.user.clone());
        io.leave(socket, &chat_room(room));
        let others_of_user = io
            .sockets_in(&nsp, &[&user_room(&user.id)])
            .into_iter()
            .any(|s| s != *socket && self.members.get(&s).is_some_and(|m| m.chat_rooms.contains(room)));
        if !others_of_user {
            self.stop_typing(io, &nsp, room, &user.id, now);
        }
        let scope = self.scope(&nsp);
        let (_, version) = scope.presence.local(room);
        let left = scope.presence.leave(room, &user.id, socket);
        if left.closed {
            // Nobody left here to show it to; the store keeps the history.
            scope.history.remove(room);
        }
        if let Some(gone) = &left.gone {
            let users = scope.presence.users_json(room);
            let msg = json!({"user": gone.to_json(), "message": format!("{} left the chat", gone.username)});
            presence_to_room(io, &nsp, room, Some(socket), &Message::new("user-left", vec![msg]), now);
            presence_to_room(io, &nsp, room, None, &Message::new("room-users-update", vec![users]), now);
        }
        if left.here {
            Self::share_leave(io, &nsp, room, &user.id, version + 1);
        }
    }

    /// `leave-room` (room?): one room, or every chat room of the socket.
    pub(super) fn on_leave_room(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, member, arg, ack, now) = (cx.socket, cx.member, cx.arg(), cx.ack(), cx.now);
        let rooms: Vec<String> = match arg {
            None | Some(Value::Null) => member.chat_rooms.iter().cloned().collect(),
            some => {
                let room = validate::room(some)?;
                if !member.chat_rooms.contains(&room) {
                    return Err(invalid(AppError::not_in_room()));
                }
                vec![room]
            }
        };
        for room in rooms {
            self.leave_chat(io, socket, &room, now);
        }
        super::ack(io, socket, ack, json!({"success": true}));
        Ok(())
    }

    /// `send-message {content, room}`: stored first, then announced to the room and acked.
    pub(super) fn on_send_message(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, member, arg, ack, now) = (cx.socket, cx.member, cx.arg(), cx.ack(), cx.now);
        let obj = validate::object(arg)?;
        let content = validate::trimmed(obj.get("content"), "content", 1, validate::MAX_CONTENT)?;
        let room = validate::room(obj.get("room"))?;
        if !member.chat_rooms.contains(&room) {
            return Err(invalid(AppError::not_in_room()));
        }
        self.limit(member, Limited::Chat, now)?;
        self.begin_write(socket)?;
        self.stop_typing(io, &member.nsp, &room, &member.user.id, now);
        let message = json!({
            "id": io.random_id(),
            "content": content,
            "sender": member.user.to_json(),
            "timestamp": super::timestamp::iso8601(io.wall_ms(now)),
            "room": room,
        });
        let append =
            RoomRequest::AppendMessage { scope: member.nsp.clone(), room: room.clone(), message: message.to_string() };
        let pending = PendingMessage { nsp: member.nsp.clone(), room, message, socket: socket.clone(), ack };
        self.writes.ask(io, append, Pending::Message(pending));
        Ok(())
    }

    pub(super) fn message_stored(&mut self, io: &mut Io<'_>, p: PendingMessage, answer: &Answer, now: Instant) {
        if answer.is_err() {
            let err = AppError::internal("Message could not be stored");
            if io.is_connected(&p.socket) {
                reply_error(io, &p.socket, p.ack, &err, now);
            }
            return;
        }
        let limit = self.config.recent_limit;
        if let Some(History::Ready(recent)) = self.scope(&p.nsp).history.get_mut(&p.room) {
            recent.push_back(p.message.clone());
            while recent.len() > limit {
                recent.pop_front();
            }
        }
        let id = p.message.get("id").cloned().unwrap_or(Value::Null);
        to_chat_room(io, &p.nsp, &p.room, None, &Message::new("new-message", vec![p.message]), now);
        super::ack(io, &p.socket, p.ack, json!({"success": true, "id": id}));
    }

    pub(super) fn history_loaded(&mut self, io: &mut Io<'_>, nsp: &str, room: &str, answer: Answer, now: Instant) {
        let mut records: Vec<Value> = match answer {
            // A record that is not JSON (the store's file was edited by hand) is left out.
            Ok(RoomAnswer::Messages(r)) => r.iter().filter_map(|m| serde_json::from_str(m).ok()).collect(),
            // Without history the room still works; the next join tries again.
            _ => Vec::new(),
        };
        // The store was asked for `recent_limit`; keep no more than that whatever it
        // answers (the newest, which come last), so the bound does not rest on the store.
        let extra = records.len().saturating_sub(self.config.recent_limit);
        records.drain(..extra);
        let scope = self.scope(nsp);
        let waiting = match scope.history.insert(room.to_owned(), History::Ready(records.into())) {
            Some(History::Loading(w)) => w,
            _ => Vec::new(),
        };
        for socket in waiting {
            self.room_info_due(io, &socket, nsp, room, now);
        }
        // In cluster mode the other nodes append too: the next join reads the store again
        // rather than a copy that misses their messages.
        if !self.scope(nsp).presence.is_open(room) || io.cluster().is_some() {
            self.scope(nsp).history.remove(room);
        }
    }

    /// `room-info` for a socket that joined: now if the history and the room's list are
    /// complete, else when the later of them is.
    pub(super) fn room_info_due(&mut self, io: &mut Io<'_>, socket: &SocketId, nsp: &str, room: &str, now: Instant) {
        if !self.members.get(socket).is_some_and(|m| m.chat_rooms.contains(room)) {
            return;
        }
        if self.wait_for_opening(nsp, room, Waiter::Info(socket.clone())) {
            return;
        }
        match self.scope(nsp).history.get_mut(room) {
            Some(History::Ready(_)) => self.send_room_info(io, socket, nsp, room, now),
            Some(History::Loading(waiting)) if !waiting.contains(socket) => waiting.push(socket.clone()),
            // Already waiting.
            Some(History::Loading(_)) => {}
            None => {
                self.scope(nsp).history.insert(room.to_owned(), History::Loading(vec![socket.clone()]));
                let limit = self.config.recent_limit as u64;
                let load = RoomRequest::LoadHistory { scope: nsp.to_owned(), room: room.to_owned(), limit };
                self.writes.ask(io, load, Pending::History { nsp: nsp.to_owned(), room: room.to_owned() });
            }
        }
    }

    fn send_room_info(&mut self, io: &mut Io<'_>, socket: &SocketId, nsp: &str, room: &str, now: Instant) {
        let scope = self.scope(nsp);
        let recent: Vec<Value> = match scope.history.get(room) {
            Some(History::Ready(r)) => r.iter().cloned().collect(),
            _ => Vec::new(),
        };
        let info = json!({"room": room, "users": scope.presence.users_json(room), "recentMessages": recent});
        io.emit_to(socket, &Message::new("room-info", vec![info]), now);
    }
}
