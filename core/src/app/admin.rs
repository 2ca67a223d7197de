//! The producers: the `/admin` namespace (`stats`, `kick`, `notify`, `broadcast`) and the
//! HTTP API (`POST /api/notifications`, `POST /api/broadcast`) with an admin Bearer token.

use super::peers::Shared;
use super::presence::User;
use super::remote::{self, Asked};
use super::validate::{self, AppError, ErrorCode};
use super::{chat_room, ReplyTo, RoomService, SCOPES};
use crate::codec::socketio::RESERVED_EVENTS;
use crate::host::ApiRequest;
use crate::host::Method;
use crate::socketio::{Event, Io, Message, SocketId, Target};
use crate::time::Instant;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

impl RoomService {
    pub(super) fn on_admin_event(&mut self, io: &mut Io<'_>, socket: &SocketId, event: &Event, now: Instant) {
        let arg = event.args.first();
        let reply = ReplyTo::Ack { socket: socket.clone(), ack: event.ack };
        let result = match event.name.as_str() {
            "stats" => {
                // In cluster mode the ack waits for every node's numbers.
                let local = self.stats(io);
                let asked = Asked::Stats {
                    socket: socket.clone(),
                    ack: event.ack,
                    local: local.clone(),
                    nodes: BTreeMap::new(),
                };
                if !self.ask(io, &Shared::Stats, asked, now) {
                    super::ack(io, socket, event.ack, local);
                }
                Ok(())
            }
            "kick" => self.kick(io, socket, event, now),
            "sockets" => self.list_sockets(io, socket, event, now),
            "rooms" => self.list_rooms(io, socket, event, now),
            "notify" => self.notify(io, arg.and_then(Value::as_object), reply, now),
            "broadcast" => broadcast(io, arg.and_then(Value::as_object), now).map(|()| {
                super::ack(io, socket, event.ack, json!({"success": true}));
            }),
            _ => Ok(()),
        };
        if let Err(e) = result {
            super::reply_error(io, socket, event.ack, &e, now);
        }
    }

    /// Disconnects every socket of a user, or one socket, in the chat namespaces, here and
    /// (cluster mode) on every node; the ack counts them.
    fn kick(&mut self, io: &mut Io<'_>, admin: &SocketId, event: &Event, now: Instant) -> Result<(), AppError> {
        let (arg, ack) = (event.args.first().and_then(Value::as_object), event.ack);
        let Some(arg) = arg else { return Err(AppError::validation("payload must be an object")) };
        let (user, socket) = if let Some(user) = arg.get("userId") {
            (Some(validate::text(Some(user), "userId", 1, validate::MAX_ROOM)?), None)
        } else {
            (None, Some(validate::text(arg.get("socketId"), "socketId", 1, validate::MAX_ROOM)?))
        };
        let sockets = self.kickable(io, user.as_deref(), socket.as_deref());
        for s in &sockets {
            io.disconnect(s, now);
        }
        let asked = Asked::Kick { socket: admin.clone(), ack, kicked: sockets.len() as u64 };
        if !self.ask(io, &Shared::Kick { user, socket }, asked, now) {
            super::ack(io, admin, ack, json!({"success": true, "kicked": sockets.len()}));
        }
        Ok(())
    }

    /// `sockets {room, namespace?}`: a chat room's sockets on every node, with their users
    /// and nodes; in cluster mode the ack names the nodes that did not answer.
    fn list_sockets(&mut self, io: &mut Io<'_>, admin: &SocketId, event: &Event, now: Instant) -> Result<(), AppError> {
        let (arg, ack) = (event.args.first().and_then(Value::as_object), event.ack);
        let Some(arg) = arg else { return Err(AppError::validation("payload must be an object")) };
        let room = validate::room(arg.get("room"))?;
        let nsp = scope_of(arg)?;
        let node = io.cluster().map_or("", |c| c.id().as_str()).to_owned();
        let listed: Vec<(String, User, String)> =
            self.sockets_of(io, &nsp, &room).into_iter().map(|(id, user)| (id, user, node.clone())).collect();
        let question = Shared::Sockets { nsp, room };
        let asked = Asked::Sockets { socket: admin.clone(), ack, listed: listed.clone() };
        if !self.ask(io, &question, asked, now) {
            super::ack(io, admin, ack, json!({"sockets": remote::socket_list(&listed), "missingNodes": []}));
        }
        Ok(())
    }

    /// `rooms {namespace?}`: the chat rooms of every node with their sockets.
    fn list_rooms(&mut self, io: &mut Io<'_>, admin: &SocketId, event: &Event, now: Instant) -> Result<(), AppError> {
        let (arg, ack) = (event.args.first().and_then(Value::as_object), event.ack);
        let nsp = match arg {
            Some(arg) => scope_of(arg)?,
            None => "/".to_owned(),
        };
        let rooms: BTreeMap<String, u64> = self.rooms_here(io, &nsp).into_iter().collect();
        let asked = Asked::Rooms { socket: admin.clone(), ack, rooms: rooms.clone() };
        if !self.ask(io, &Shared::Rooms { nsp }, asked, now) {
            let rooms: Vec<Value> = rooms.into_iter().map(|(room, n)| json!({"room": room, "sockets": n})).collect();
            super::ack(io, admin, ack, json!({"rooms": rooms, "missingNodes": []}));
        }
        Ok(())
    }

    /// The HTTP producer API.
    pub(super) fn api(&mut self, io: &mut Io<'_>, req: &ApiRequest<'_>, now: Instant) {
        let conn = req.conn;
        let fail = |io: &mut Io<'_>, status: u16, code: ErrorCode, message: &str| {
            io.respond(conn, status, &code.body(message));
        };
        let route = match req.path.trim_end_matches('/') {
            "notifications" => ApiRoute::Notifications,
            "broadcast" => ApiRoute::Broadcast,
            _ => return fail(io, 404, ErrorCode::NotFound, "No such endpoint"),
        };
        if req.method != Method::Post {
            return fail(io, 405, ErrorCode::Validation, "Use POST");
        }
        if self.dev_mode() {
            return fail(io, 401, ErrorCode::Unauthorized, "No key is configured: the producer API is off");
        }
        let token = req.authorization.and_then(crate::host::bearer_token);
        let Some(token) = token else { return fail(io, 401, ErrorCode::Unauthorized, "Bearer token required") };
        let claims = match self.verify(token, io, now) {
            Ok(c) => c,
            Err(_) => return fail(io, 401, ErrorCode::Unauthorized, "Invalid token"),
        };
        if !claims.admin {
            return fail(io, 403, ErrorCode::Unauthorized, "An admin token is required");
        }
        let body: Value = match serde_json::from_slice(req.body) {
            Ok(v) => v,
            Err(_) => return fail(io, 400, ErrorCode::Validation, "Body must be JSON"),
        };
        let result = match route {
            ApiRoute::Notifications => self.notify(io, body.as_object(), ReplyTo::Http { conn }, now),
            ApiRoute::Broadcast => {
                broadcast(io, body.as_object(), now).map(|()| io.respond(conn, 200, &json!({"success": true})))
            }
        };
        if let Err(e) = result {
            fail(io, 400, e.code, &e.message);
        }
    }
}

/// The chat namespace an admin request names (`namespace`, default `/`).
fn scope_of(arg: &Map<String, Value>) -> Result<String, AppError> {
    match arg.get("namespace") {
        None | Some(Value::Null) => Ok("/".to_owned()),
        Some(Value::String(n)) if SCOPES.contains(&n.as_str()) => Ok(n.clone()),
        Some(_) => Err(AppError::validation("namespace must be / or /chat")),
    }
}

enum ApiRoute {
    Notifications,
    Broadcast,
}

/// `{room?, event, data}`: to a chat room (or everyone) on every chat namespace.
fn broadcast(io: &mut Io<'_>, arg: Option<&Map<String, Value>>, now: Instant) -> Result<(), AppError> {
    let Some(arg) = arg else { return Err(AppError::validation("payload must be an object")) };
    let event = validate::text(arg.get("event"), "event", 1, validate::MAX_ROOM)?;
    if RESERVED_EVENTS.contains(&event.as_str()) {
        return Err(AppError::validation("that event name is reserved"));
    }
    let room = match arg.get("room") {
        None | Some(Value::Null) => None,
        some => Some(validate::room(some)?),
    };
    let data = arg.get("data").cloned().unwrap_or(Value::Null);
    let msg = Message::new(event, vec![data]);
    for nsp in SCOPES {
        let mut target = Target::all(nsp);
        if let Some(room) = &room {
            target = target.to(chat_room(room));
        }
        io.emit(&target, &msg, now);
    }
    Ok(())
}
