//! The room service, written against the Socket.IO API ([`Handler`] / [`Io`]): chat with
//! history, presence, typing, private messages, notifications, collaborative documents,
//! signed-token auth, rate limits, and the admin namespace and HTTP producer API
//! (DESIGN.md §4–§6).
//!
//! Layout: [`chat`] (rooms, messages), [`typing`] (the typing table and its events),
//! [`direct`] (private messages), [`notify`] (notifications), [`editing`] (the document
//! events: join, edit, cursors, saving), over [`document`] (one document: text, op log,
//! staged edits) and [`ot`] (deltas), [`admin`] (`/admin` and `/api/`), [`auth`] (tokens),
//! [`presence`], `limits` (every bucket) over [`ratelimit`], [`validate`] (checks and
//! [`validate::AppError`]), [`timestamp`] (ISO 8601), [`config`], [`records`] (what it
//! asks the store, and the answers), [`roster`] (presence across nodes, in cluster mode) and `remote` (questions to the
//! other nodes), over [`peers`] (what nodes' room services say to each other). State that must survive goes through the store as
//! effects; an ack that says "stored" is sent only when the
//! store confirmed it.
//!
//! Socket.IO rooms used inside: `chat:<room>`, `doc:<id>`, `user:<id>` (every socket of a
//! user; in dev mode the user is the socket), so client-chosen names never collide.

pub mod admin;
pub mod auth;
pub mod chat;
pub mod config;
pub mod direct;
pub mod document;
pub mod editing;
#[cfg(any(test, fuzzing))]
mod invariants;
mod limits;
mod members;
pub mod notify;
pub mod ot;
pub mod peers;
pub mod presence;
pub mod ratelimit;
pub mod records;
mod remote;
pub mod roster;
pub mod timestamp;
pub mod typing;
pub mod validate;
mod writes;

pub use config::AppConfig;
pub use writes::MAX_IN_FLIGHT;

use crate::cluster::{NodeId, QueryId};
use crate::host::ApiRequest;
use crate::socketio::{ConnectRefusal, DisconnectReason, Event, Handler, Io, Message, SocketId, Sockets, Target};
use crate::store::{StoreAnswer, StoreId};
use crate::time::Instant;
use auth::Claims;
use bytes::Bytes;
use limits::Limited;
use members::{Member, Members, Recovery};
use peers::Shared;
use presence::{Presence, User};
use ratelimit::Verdict;
use records::{RoomAnswer, RoomRequest};
use serde_json::{json, Value};
use std::collections::HashMap;
use validate::{AppError, ErrorCode};
use writes::{Pending, Writes};

/// The namespaces the room service serves; each has its own rooms, presence and history.
pub const SCOPES: [&str; 2] = ["/", "/chat"];
pub const ADMIN: &str = "/admin";
/// The kind name of room-service snapshots.
const KIND: &str = "rooms";

/// Rooms, presence, history and documents of one namespace.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Scope {
    presence: Presence,
    history: HashMap<String, chat::History>,
    docs: HashMap<String, editing::DocState>,
}

/// Where an answer goes: an ack on a socket, or an HTTP response.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum ReplyTo {
    Ack { socket: SocketId, ack: Option<u64> },
    Http { conn: crate::host::ConnId },
}

/// The room service.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RoomService {
    config: AppConfig,
    scopes: HashMap<String, Scope>,
    members: Members,
    limits: limits::Limits,
    typing: typing::Typing,
    writes: Writes,
    /// Bytes in the op logs of all open documents (bounded by `doc_log_total_bytes`).
    doc_log_bytes: usize,
    /// Messages from other nodes' room services that were not of this build's format.
    #[serde(default)]
    refused_shared: u64,
    /// Rooms opening here while the other nodes say who is in them (cluster mode).
    #[serde(default)]
    openings: roster::Openings,
    /// Questions to the other nodes waiting for their answers (cluster mode).
    #[serde(default)]
    asks: remote::Asks,
}

impl Default for RoomService {
    fn default() -> Self {
        RoomService::new(AppConfig::default())
    }
}

impl RoomService {
    #[must_use]
    pub fn new(config: AppConfig) -> Self {
        RoomService {
            config,
            scopes: SCOPES.iter().map(|s| ((*s).to_owned(), Scope::default())).collect(),
            members: Members::default(),
            limits: limits::Limits::default(),
            typing: typing::Typing::default(),
            writes: Writes::default(),
            doc_log_bytes: 0,
            refused_shared: 0,
            openings: roster::Openings::new(),
            asks: remote::Asks::new(),
        }
    }

    /// Dev mode: no key configured, anyone may connect.
    #[must_use]
    pub fn dev_mode(&self) -> bool {
        self.config.auth_keys.is_empty()
    }

    fn verify(&self, token: &str, io: &Sockets, now: Instant) -> Result<Claims, auth::TokenError> {
        auth::verify(token, &self.config.auth_keys, io.wall_ms(now) / 1000, self.config.auth_leeway_secs)
    }

    fn scope(&mut self, nsp: &str) -> &mut Scope {
        self.scopes.entry(nsp.to_owned()).or_default()
    }

    /// Takes a token from one of the socket's user's buckets; on a refusal the error to
    /// send, and whether the client is now far enough over to be cut off.
    fn limit(&mut self, member: &Member, kind: Limited, now: Instant) -> Outcome {
        match self.limits.take(&self.config, kind, &member.user.id, now) {
            Verdict::Allowed => Ok(()),
            Verdict::Refused => Err(invalid(AppError::rate_limited())),
            Verdict::Disconnect => Err(Refused { error: AppError::rate_limited(), cut_off: true }),
        }
    }

    /// Sends a failed reply: the ack when the client asked for one, else an `error` event;
    /// then cuts a client that is far over its limit.
    fn fail(io: &mut Io<'_>, socket: &SocketId, ack: Option<u64>, err: &Refused, now: Instant) {
        reply_error(io, socket, ack, &err.error, now);
        if err.cut_off {
            io.disconnect(socket, now);
        }
    }

    /// Counts a write the socket is about to make; refused past [`MAX_IN_FLIGHT`].
    fn begin_write(&mut self, socket: &SocketId) -> Outcome {
        self.writes.begin(socket).map_err(invalid)
    }

    /// Answers a request that waited for the store: `Ok((status, body))`, or an error
    /// with its HTTP status (an ack or an `error` event for a socket).
    fn reply(&mut self, io: &mut Io<'_>, reply: &ReplyTo, answer: Result<(u16, Value), (u16, AppError)>, now: Instant) {
        match (reply, answer) {
            (ReplyTo::Ack { socket, ack, .. }, Ok((_, body))) => {
                if let Some(ack) = ack {
                    io.ack(socket, *ack, &[body], &[]);
                }
            }
            (ReplyTo::Ack { socket, ack, .. }, Err((_, err))) => reply_error(io, socket, *ack, &err, now),
            (ReplyTo::Http { conn }, Ok((status, body))) => io.respond(*conn, status, &body),
            (ReplyTo::Http { conn }, Err((status, err))) => io.respond(*conn, status, &err.body()),
        }
    }

    /// Another node's room service message, or `None` (counted) if it is none of this
    /// build's.
    fn decode_shared(&mut self, bytes: &[u8]) -> Option<Shared> {
        let shared = Shared::decode(bytes);
        if shared.is_none() {
            self.refused_shared += 1;
        }
        shared
    }

    /// Numbers for `/admin` `stats`.
    fn stats(&self, io: &Sockets) -> Value {
        let metrics = io.metrics();
        let namespaces: serde_json::Map<String, Value> = metrics
            .namespaces
            .iter()
            .map(|(n, sockets, rooms)| (n.clone(), json!({"sockets": sockets, "rooms": rooms})))
            .collect();
        let chat_rooms: usize = self.scopes.values().map(|s| s.presence.room_count()).sum();
        let documents: usize = self.scopes.values().map(|s| s.docs.len()).sum();
        json!({
            "connections": metrics.connections,
            "namespaces": namespaces,
            "users": self.members.users(),
            "chatRooms": chat_rooms,
            "documents": documents,
        })
    }
}

/// One client event as the room service's handlers see it: who sent it, as which
/// member, and when.
#[derive(Clone, Copy, Debug)]
struct EventCx<'e> {
    socket: &'e SocketId,
    member: &'e Member,
    event: &'e Event,
    now: Instant,
}

impl EventCx<'_> {
    /// The event's first argument (the payload, for every event but the legacy `message`).
    fn arg(&self) -> Option<&Value> {
        self.event.args.first()
    }

    /// The ack id, when the client asked for one.
    fn ack(&self) -> Option<u64> {
        self.event.ack
    }
}

/// Why an event was refused: the error its sender gets, and whether the sender is now far
/// enough over its limit to be cut off.
#[derive(Debug)]
struct Refused {
    error: AppError,
    cut_off: bool,
}

/// What an event handler answers.
type Outcome = Result<(), Refused>;

/// An error that does not count against the client.
fn invalid(error: AppError) -> Refused {
    Refused { error, cut_off: false }
}

impl From<AppError> for Refused {
    fn from(error: AppError) -> Self {
        invalid(error)
    }
}

/// An error goes to the ack when the client asked for one, else as an `error` event.
fn reply_error(io: &mut Io<'_>, socket: &SocketId, ack: Option<u64>, err: &AppError, now: Instant) {
    match ack {
        Some(ack) => io.ack(socket, ack, &[err.body()], &[]),
        None => io.emit_to(socket, &Message::new("error", vec![err.event()]), now),
    }
}

fn ack(io: &mut Io<'_>, socket: &SocketId, ack: Option<u64>, body: Value) {
    if let Some(id) = ack {
        io.ack(socket, id, &[body], &[]);
    }
}

/// How long the room service keeps departed members: as long as the Socket.IO layer keeps
/// their sessions.
fn recovery(io: &Sockets) -> Recovery {
    Recovery { window_ms: io.config().recovery_window_ms, max_sessions: io.config().recovery_max_sessions }
}

fn chat_room(room: &str) -> String {
    format!("chat:{room}")
}

fn doc_room(doc: &str) -> String {
    format!("doc:{doc}")
}

fn user_room(user: &str) -> String {
    format!("user:{user}")
}

impl Handler for RoomService {
    /// The claims of the client's token; `None` in dev mode.
    type Auth = Option<Claims>;

    fn has_namespace(&self, nsp: &str) -> bool {
        SCOPES.contains(&nsp) || nsp == ADMIN
    }

    fn authorize(
        &mut self,
        io: &mut Io<'_>,
        nsp: &str,
        auth: &Value,
        now: Instant,
    ) -> Result<Self::Auth, ConnectRefusal> {
        if self.dev_mode() {
            return if nsp == ADMIN { Err(ConnectRefusal::new("Unauthorized")) } else { Ok(None) };
        }
        let Some(token) = auth.get("token").and_then(Value::as_str) else {
            return Err(ConnectRefusal::new("Authentication required"));
        };
        let claims = self.verify(token, io, now).map_err(|_| ConnectRefusal::new("Invalid token"))?;
        if nsp == ADMIN && !claims.admin {
            return Err(ConnectRefusal::new("Unauthorized"));
        }
        Ok(Some(claims))
    }

    fn may_recover(&mut self, _io: &Sockets, socket: &SocketId, claims: &Option<Claims>) -> bool {
        if self.dev_mode() {
            return true;
        }
        // With auth on, only the user whose socket it was may resume it.
        let owner = self.members.departed_user(socket);
        owner.is_some() && owner == claims.as_ref().map(|c| c.sub.as_str())
    }

    fn on_connect(
        &mut self,
        io: &mut Io<'_>,
        socket: &SocketId,
        auth: &Value,
        claims: Option<Claims>,
        recovered: bool,
        now: Instant,
    ) {
        let Some(nsp) = io.nsp_of(socket).map(str::to_owned) else { return };
        self.members.prune(now, recovery(io));
        let restored = if recovered { self.members.recover(socket) } else { None };
        let member = match (restored, claims) {
            (Some(m), _) => m,
            (None, Some(c)) => Member::new(nsp.clone(), User { id: c.sub, username: c.name }),
            (None, None) if self.dev_mode() => {
                let username = match auth.get("username") {
                    Some(Value::String(u)) if (1..=validate::MAX_USERNAME).contains(&validate::js_len(u)) => u.clone(),
                    _ => socket.to_string(),
                };
                Member::new(nsp.clone(), User { id: socket.to_string(), username })
            }
            // A recovered socket whose identity is gone: it must connect afresh.
            (None, None) => return io.disconnect(socket, now),
        };
        io.join(socket, &user_room(&member.user.id));
        let authed = !self.dev_mode();
        let user_id = member.user.id.clone();
        let rooms = std::mem::take(&mut self.members.arrive(socket, member).chat_rooms);
        if recovered {
            // The socket layer gave back its rooms; presence follows them again. Documents
            // need a fresh `join-document` (the client gets the current state that way).
            for room in io.rooms_of(socket) {
                if let Some(doc) = room.strip_prefix("doc:") {
                    let doc = doc.to_owned();
                    io.leave(socket, &doc_room(&doc));
                }
            }
            for room in rooms {
                // It held these rooms a moment ago, so the room limit cannot refuse them.
                let _ = self.join_chat(io, socket, &room, now);
            }
        }
        if authed && nsp != ADMIN {
            let load = RoomRequest::LoadNotifications { user: user_id, limit: self.config.recent_limit as u64 };
            self.writes.ask(io, load, Pending::NotificationList { socket: socket.clone() });
        }
    }

    fn on_event(&mut self, io: &mut Io<'_>, socket: &SocketId, event: Event, now: Instant) {
        if !self.members.contains(socket) {
            return;
        }
        // Before any work on the event: a flood of cheap events (joins, leaves, unknown
        // names) is cut off here like a flood of messages.
        let verdict = self.limits.event(&self.config, socket, now);
        if verdict != Verdict::Allowed {
            reply_error(io, socket, event.ack, &AppError::rate_limited(), now);
            // A client that floods on after as many refusals is cut off whole: a namespace
            // disconnect would leave its transport open to go on sending.
            if verdict == Verdict::Disconnect {
                io.close_connection(socket);
            }
            return;
        }
        let Some(member) = self.members.get(socket).cloned() else { return };
        if member.nsp == ADMIN {
            return self.on_admin_event(io, socket, &event, now);
        }
        let cx = EventCx { socket, member: &member, event: &event, now };
        let result = match event.name.as_str() {
            "message" => self.on_message(io, &cx),
            "join" => self.on_join(io, &cx),
            "join-room" => self.on_join_room(io, &cx),
            "send-message" => self.on_send_message(io, &cx),
            "typing-start" => self.on_typing(io, &cx, true),
            "typing-stop" => self.on_typing(io, &cx, false),
            "leave-room" => self.on_leave_room(io, &cx),
            "private-message" => self.on_private_message(io, &cx),
            "notification-read" => self.on_notification_read(io, &cx),
            "notifications-read-all" => self.on_notifications_read_all(io, &cx),
            "join-document" => self.on_join_document(io, &cx),
            "leave-document" => self.on_leave_document(io, &cx),
            "text-change" => self.on_text_change(io, &cx),
            "cursor-move" => self.on_cursor_move(io, &cx),
            "selection-change" => self.on_selection_change(io, &cx),
            _ => Ok(()),
        };
        if let Err(err) = result {
            Self::fail(io, socket, event.ack, &err, now);
        }
    }

    fn on_disconnect(
        &mut self,
        io: &mut Io<'_>,
        socket: &SocketId,
        _nsp: &str,
        reason: DisconnectReason,
        now: Instant,
    ) {
        let Some(member) = self.members.get(socket).cloned() else { return };
        for room in member.chat_rooms.iter().rev() {
            self.leave_chat(io, socket, room, now);
        }
        for doc in &member.docs {
            self.drop_from_document(io, socket, &member.nsp, doc, now);
        }
        self.members.leave(socket);
        self.forget_waiter(socket);
        self.limits.socket_gone(socket);
        self.limits.sweep(&self.config, now);
        if reason.is_recoverable() && io.config().recovery_window_ms > 0 {
            self.members.depart(socket, member, now, recovery(io));
        }
    }

    fn on_store(&mut self, io: &mut Io<'_>, id: StoreId, answer: StoreAnswer, now: Instant) {
        let Some(pending) = self.writes.answered(id) else { return };
        let answer = RoomAnswer::from_store(answer);
        match pending {
            Pending::Message(p) => self.message_stored(io, p, &answer, now),
            Pending::History { nsp, room } => self.history_loaded(io, &nsp, &room, answer, now),
            Pending::NotificationList { socket } => {
                if let Ok(RoomAnswer::Notifications(records)) = answer {
                    let list = notify::listed(records);
                    io.emit_to(&socket, &Message::new("pending-notifications", vec![Value::Array(list)]), now);
                }
            }
            Pending::PutNotification(p) => self.notification_stored(io, p, &answer, now),
            Pending::MarkRead { socket, ack, all } => {
                let reply = ReplyTo::Ack { socket, ack };
                let answer = match answer {
                    Ok(RoomAnswer::Updated(0)) if !all => {
                        Err((404, AppError::new(ErrorCode::NotFound, "Notification not found")))
                    }
                    Ok(RoomAnswer::Updated(_) | RoomAnswer::Done) => Ok((200, json!({"success": true}))),
                    _ => Err((500, AppError::internal("Could not store the read mark"))),
                };
                self.reply(io, &reply, answer, now);
            }
            Pending::LoadDocument { nsp, doc } => self.document_loaded(io, &nsp, &doc, answer, now),
            Pending::SaveDocument { nsp, doc } => self.document_saved(io, &nsp, &doc, &answer, now),
        }
    }

    fn on_api(&mut self, io: &mut Io<'_>, req: &ApiRequest<'_>, now: Instant) {
        self.api(io, req, now);
    }

    fn on_cluster_message(&mut self, io: &mut Io<'_>, from: &NodeId, payload: &[u8], now: Instant) {
        let Some(shared) = self.decode_shared(payload) else { return };
        // A list asked for after a gap goes back to the node that asked.
        if let Some(mine) = self.on_presence(io, from, shared, false, now) {
            io.cluster_to_node(from, mine.encode());
        }
    }

    fn on_cluster_question(&mut self, io: &mut Io<'_>, from: &NodeId, question: &[u8], now: Instant) -> Bytes {
        let Some(shared) = self.decode_shared(question) else { return Bytes::new() };
        let answer = match shared {
            Shared::Find { .. }
            | Shared::Stats
            | Shared::Kick { .. }
            | Shared::Sockets { .. }
            | Shared::Rooms { .. } => self.answer_question(io, &shared, now),
            presence => self.on_presence(io, from, presence, true, now),
        };
        answer.map(|a| a.encode()).unwrap_or_default()
    }

    fn on_cluster_answer(&mut self, io: &mut Io<'_>, query: QueryId, from: &NodeId, answer: &[u8], now: Instant) {
        // Every node answers every question, so an empty answer is no refusal.
        if answer.is_empty() {
            return;
        }
        let Some(shared) = self.decode_shared(answer) else { return };
        match shared {
            Shared::Found { .. }
            | Shared::NodeStats { .. }
            | Shared::Kicked { .. }
            | Shared::SocketList { .. }
            | Shared::RoomList { .. } => {
                self.on_answer(io, query, from, shared, now);
            }
            presence => {
                self.on_presence(io, from, presence, false, now);
            }
        }
    }

    fn on_cluster_query_done(&mut self, io: &mut Io<'_>, query: QueryId, missing: &[NodeId], now: Instant) {
        self.opening_done(io, query, missing, now);
        self.on_asked_done(io, query, missing, now);
    }

    fn on_node_gone(&mut self, io: &mut Io<'_>, node: &NodeId, now: Instant) {
        self.peer_gone(io, node, now);
    }

    fn on_cluster_up(&mut self, io: &mut Io<'_>, now: Instant) {
        self.link_up(io, now);
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.expire_typing(io, now);
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(crate::snapshot::encode(KIND, self))
    }

    fn restore(bytes: &[u8]) -> Result<Self, crate::snapshot::SnapshotError> {
        crate::snapshot::decode(KIND, bytes)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.typing.poll_timeout()
    }

    #[cfg(any(test, fuzzing))]
    fn check_bounds(&self, io: &Sockets) -> Result<(), String> {
        self.bounds(io)
    }
}

/// Emits `msg` to every socket of a chat room of `nsp`, optionally but one.
fn to_chat_room(io: &mut Io<'_>, nsp: &str, room: &str, except: Option<&SocketId>, msg: &Message, now: Instant) {
    let mut target = Target::all(nsp).to(chat_room(room));
    if let Some(s) = except {
        target = target.except_socket(s);
    }
    io.emit(&target, msg, now);
}

/// A presence event to this node's members of a chat room (optionally but one): in
/// cluster mode every node tells its own members what it heard, so these never cross.
fn presence_to_room(io: &mut Io<'_>, nsp: &str, room: &str, except: Option<&SocketId>, msg: &Message, now: Instant) {
    let mut target = Target::all(nsp).to(chat_room(room)).local();
    if let Some(s) = except {
        target = target.except_socket(s);
    }
    io.emit(&target, msg, now);
}

#[cfg(test)]
mod tests;
