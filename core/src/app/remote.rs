//! Questions the room service asks the other nodes (cluster mode), and its answers to
//! theirs: where a private message's recipient is, the nodes' `/admin` `stats`, and kicks.
//! Each is answered by every live node (see `cluster::queries`); what waits for the answers
//! is kept here by the question's number, and a reply that names a node that did not
//! answer is never a silent partial one.

use super::peers::{Shared, MAX_LISTED};
use super::presence::User;
use super::validate::{AppError, ErrorCode};
use super::{chat_room, user_room, RoomService, SCOPES};
use crate::cluster::{NodeId, QueryId};
use crate::socketio::{Io, Message, SocketId, Target};
use crate::time::Instant;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// What waits for the answers to one of this node's questions.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) enum Asked {
    /// A private message whose recipient is not here: sent on the first answer that has
    /// them, refused if none has.
    Private {
        socket: SocketId,
        ack: Option<u64>,
        nsp: String,
        to: String,
        #[serde(with = "crate::snapshot::json")]
        message: Value,
        sent: bool,
    },
    /// `/admin` `stats`: this node's, and each node's as it answers.
    Stats {
        socket: SocketId,
        ack: Option<u64>,
        #[serde(with = "crate::snapshot::json")]
        local: Value,
        nodes: BTreeMap<String, String>,
    },
    /// `/admin` `kick`: how many went here, and on the nodes that answered.
    Kick { socket: SocketId, ack: Option<u64>, kicked: u64 },
    /// `/admin` `sockets`: a chat room's sockets on every node: (socket id, user, node).
    Sockets { socket: SocketId, ack: Option<u64>, listed: Vec<(String, User, String)> },
    /// `/admin` `rooms`: the chat rooms of every node, with their sockets summed.
    Rooms { socket: SocketId, ack: Option<u64>, rooms: BTreeMap<String, u64> },
}

/// The questions waiting, by number.
pub(super) type Asks = BTreeMap<QueryId, Asked>;

impl RoomService {
    /// Asks every node `question`, `asked` waiting for the answers: the ack of a private
    /// message whose recipient is not here ([`Shared::Find`]), of `/admin` `stats` or
    /// `kick`. `false` without a cluster (the caller answers from this node alone).
    pub(super) fn ask(&mut self, io: &mut Io<'_>, question: &Shared, asked: Asked, now: Instant) -> bool {
        let Some(query) = io.ask_cluster(question.encode(), now) else { return false };
        self.asks.insert(query, asked);
        true
    }

    /// Another node's question: this node's answer.
    pub(super) fn answer_question(&mut self, io: &mut Io<'_>, shared: &Shared, now: Instant) -> Option<Shared> {
        match shared {
            Shared::Find { nsp, to } => {
                let id = SocketId::from(to.as_str());
                let socket = io.nsp_of(&id) == Some(nsp.as_str());
                let user = !io.sockets_in(nsp, &[&user_room(to)]).is_empty();
                Some(Shared::Found { socket, user })
            }
            Shared::Stats => Some(Shared::NodeStats { json: self.stats(io).to_string() }),
            Shared::Kick { user, socket } => {
                let sockets = self.kickable(io, user.as_deref(), socket.as_deref());
                for s in &sockets {
                    io.disconnect(s, now);
                }
                Some(Shared::Kicked { count: sockets.len() as u64 })
            }
            Shared::Sockets { nsp, room } => Some(Shared::SocketList { sockets: self.sockets_of(io, nsp, room) }),
            Shared::Rooms { nsp } => Some(Shared::RoomList { rooms: self.rooms_here(io, nsp) }),
            _ => None,
        }
    }

    /// This node's sockets in a chat room, with their users (at most [`MAX_LISTED`]).
    pub(super) fn sockets_of(&self, io: &Io<'_>, nsp: &str, room: &str) -> Vec<(String, User)> {
        let mut out: Vec<(String, User)> = io
            .sockets_in(nsp, &[&chat_room(room)])
            .into_iter()
            .filter_map(|s| self.members.get(&s).map(|m| (s.as_str().to_owned(), m.user.clone())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.truncate(MAX_LISTED);
        out
    }

    /// This node's chat rooms of `nsp`, with how many of its sockets are in each.
    pub(super) fn rooms_here(&self, io: &Io<'_>, nsp: &str) -> Vec<(String, u64)> {
        let Some(scope) = self.scopes.get(nsp) else { return Vec::new() };
        let mut out: Vec<(String, u64)> =
            scope.presence.rooms().map(|r| (r.to_owned(), io.sockets_in(nsp, &[&chat_room(r)]).len() as u64)).collect();
        out.sort();
        out.truncate(MAX_LISTED);
        out
    }

    /// The sockets a kick of `user` (or of one `socket`) takes, in the chat namespaces.
    pub(super) fn kickable(&self, io: &Io<'_>, user: Option<&str>, socket: Option<&str>) -> Vec<SocketId> {
        match (user, socket) {
            (Some(user), _) => SCOPES.iter().flat_map(|nsp| io.sockets_in(nsp, &[&user_room(user)])).collect(),
            (None, Some(id)) => {
                let id = SocketId::from(id);
                io.nsp_of(&id).filter(|n| SCOPES.contains(n)).map(|_| vec![id]).unwrap_or_default()
            }
            (None, None) => Vec::new(),
        }
    }

    /// A node's answer to one of this node's questions.
    pub(super) fn on_answer(&mut self, io: &mut Io<'_>, query: QueryId, from: &NodeId, answer: Shared, now: Instant) {
        let Some(asked) = self.asks.get_mut(&query) else { return };
        match (asked, answer) {
            (Asked::Private { socket: sender, ack, nsp, to, message, sent }, Shared::Found { socket, user })
                if !*sent =>
            {
                let msg = Message::new("private-message", vec![message.clone()]);
                if socket {
                    io.emit_on_node(from, &Target::all(nsp).to(to.as_str()), &msg);
                } else if user {
                    // To the user's room: every node with one of their sockets delivers it.
                    io.emit(&Target::all(nsp).to(user_room(to)), &msg, now);
                } else {
                    return;
                }
                *sent = true;
                super::ack(io, sender, *ack, json!({"success": true}));
            }
            (Asked::Stats { nodes, .. }, Shared::NodeStats { json }) => {
                nodes.insert(from.as_str().to_owned(), json);
            }
            (Asked::Kick { kicked, .. }, Shared::Kicked { count }) => *kicked += count,
            (Asked::Sockets { listed, .. }, Shared::SocketList { sockets }) => {
                listed.extend(sockets.into_iter().map(|(id, user)| (id, user, from.as_str().to_owned())));
            }
            (Asked::Rooms { rooms, .. }, Shared::RoomList { rooms: theirs }) => {
                for (room, n) in theirs {
                    *rooms.entry(room).or_default() += n;
                }
            }
            _ => {}
        }
    }

    /// A question is done: what waited for it is answered, naming the nodes that did not
    /// answer.
    pub(super) fn on_asked_done(&mut self, io: &mut Io<'_>, query: QueryId, missing: &[NodeId], now: Instant) {
        let Some(asked) = self.asks.remove(&query) else { return };
        let missing: Vec<&str> = missing.iter().map(NodeId::as_str).collect();
        match asked {
            Asked::Private { sent: true, .. } => {}
            Asked::Private { socket, ack, .. } => {
                let message = if missing.is_empty() {
                    "Recipient not found".to_owned()
                } else {
                    format!("Recipient not found; no answer from nodes {}", missing.join(", "))
                };
                if io.is_connected(&socket) {
                    super::reply_error(io, &socket, ack, &AppError::new(ErrorCode::NotFound, message), now);
                }
            }
            Asked::Stats { socket, ack, mut local, nodes } => {
                let nodes: Map<String, Value> = nodes
                    .into_iter()
                    .map(|(node, text)| (node, serde_json::from_str(&text).unwrap_or(Value::Null)))
                    .collect();
                let total = local["connections"].as_u64().unwrap_or(0)
                    + nodes.values().filter_map(|n| n["connections"].as_u64()).sum::<u64>();
                if let Some(obj) = local.as_object_mut() {
                    obj.insert("node".into(), json!(io.cluster().map(|c| c.id().as_str().to_owned())));
                    obj.insert("nodes".into(), Value::Object(nodes));
                    obj.insert("clusterConnections".into(), json!(total));
                    obj.insert("missingNodes".into(), json!(missing));
                }
                super::ack(io, &socket, ack, local);
            }
            Asked::Kick { socket, ack, kicked } => {
                super::ack(io, &socket, ack, json!({"success": true, "kicked": kicked, "missingNodes": missing}));
            }
            Asked::Sockets { socket, ack, listed } => {
                super::ack(io, &socket, ack, json!({"sockets": socket_list(&listed), "missingNodes": missing}));
            }
            Asked::Rooms { socket, ack, rooms } => {
                let rooms: Vec<Value> =
                    rooms.into_iter().map(|(room, n)| json!({"room": room, "sockets": n})).collect();
                super::ack(io, &socket, ack, json!({"rooms": rooms, "missingNodes": missing}));
            }
        }
    }
}

/// An `/admin` `sockets` answer's list: `{id, user, node}` each.
pub(super) fn socket_list(listed: &[(String, User, String)]) -> Vec<Value> {
    listed.iter().map(|(id, user, node)| json!({"id": id, "user": user.to_json(), "node": node})).collect()
}
