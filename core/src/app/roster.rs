//! Presence across nodes (cluster mode): each node tells the nodes that hold a chat room
//! which of its users are in it, and each node derives the room's events for its own
//! sockets from what it heard. So a user is listed once however many nodes hold their
//! tabs, `user-joined` and `user-left` are sent by every node to its own members (never
//! relayed, so never twice), and a dead node's users leave when its heartbeat expires.
//!
//! What nodes say: when a room opens on a node (its first local socket), the node's whole
//! list to every node ([`Shared::Roster`] on the nodes' channel), which each answers with
//! its own (empty if it has nobody there) to the asker's node channel; the joins waiting
//! there (the `join-room` ack, `room-info`) are answered when every live node has
//! answered, or at the query timeout with the nodes that did not named
//! (`missingNodes`), never with a silently partial list. Then each change, on the room's
//! channel, so only nodes with a member hear it ([`Shared::Joined`], [`Shared::Left`]),
//! numbered per room. A node that sees a number skipped asks the sender for its list again
//! ([`Shared::RosterWanted`]); after the link comes back a node says which rooms it holds
//! ([`Shared::Holding`]) and asks every node again for each of them, since either side
//! may have missed the other's changes meanwhile.

use super::peers::Shared;
use super::presence::{Changed, User};
use super::{chat_room, presence_to_room, user_room, RoomService, SCOPES};
use crate::cluster::{NodeId, QueryId};
use crate::socketio::{Io, Message, SocketId, Target};
use crate::time::Instant;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// A room opening on this node while the other nodes say who of theirs is in it (the
/// answers to the question its opening asked).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Opening {
    nsp: String,
    room: String,
    /// `join-room` acks owed: (socket, ack id).
    acks: Vec<(SocketId, Option<u64>)>,
    /// Sockets owed `room-info`.
    infos: Vec<SocketId>,
}

#[cfg(any(test, fuzzing))]
impl Opening {
    pub(super) fn waiters(&self) -> usize {
        self.acks.len() + self.infos.len()
    }
}

/// The rooms opening on this node, by the question each asked.
pub(super) type Openings = BTreeMap<QueryId, Opening>;

/// Who waits for a room's opening: a `join-room` ack, or `room-info`.
pub(super) enum Waiter {
    Ack(SocketId, Option<u64>),
    Info(SocketId),
}

impl RoomService {
    /// The room opened here: every node is told who of this node's is in it and asked
    /// for theirs; what waits for the list waits for their answers.
    fn open_room(&mut self, io: &mut Io<'_>, nsp: &str, room: &str, now: Instant) {
        let question = self.roster(nsp, room).encode();
        if let Some(query) = io.ask_cluster(question, now) {
            let opening = Opening { nsp: nsp.to_owned(), room: room.to_owned(), acks: Vec::new(), infos: Vec::new() };
            self.openings.insert(query, opening);
        }
    }

    fn opening_mut(&mut self, nsp: &str, room: &str) -> Option<&mut Opening> {
        self.openings.values_mut().find(|o| o.nsp == nsp && o.room == room)
    }

    /// Whether a room is still opening here (its list is not complete yet).
    pub(super) fn is_opening(&self, nsp: &str, room: &str) -> bool {
        self.openings.values().any(|o| o.nsp == nsp && o.room == room)
    }

    /// Puts an answer off until the room's list is complete; false if it is complete now.
    pub(super) fn wait_for_opening(&mut self, nsp: &str, room: &str, waiter: Waiter) -> bool {
        let Some(o) = self.opening_mut(nsp, room) else { return false };
        match waiter {
            Waiter::Ack(socket, ack) => o.acks.push((socket, ack)),
            Waiter::Info(socket) => {
                if !o.infos.contains(&socket) {
                    o.infos.push(socket);
                }
            }
        }
        true
    }

    /// A socket is gone: nothing waits for it.
    pub(super) fn forget_waiter(&mut self, socket: &SocketId) {
        for o in self.openings.values_mut() {
            o.acks.retain(|(s, _)| s != socket);
            o.infos.retain(|s| s != socket);
        }
    }

    /// Answers what waited for a room's list: with every node's, or (at the timeout) with
    /// what arrived and the nodes that did not answer.
    pub(super) fn opening_done(&mut self, io: &mut Io<'_>, query: QueryId, missing: &[NodeId], now: Instant) {
        let Some(o) = self.openings.remove(&query) else { return };
        let (nsp, room) = (o.nsp.as_str(), o.room.as_str());
        let users = self.scope(nsp).presence.users_json(room);
        for (socket, ack) in &o.acks {
            let body = if missing.is_empty() {
                json!({ "users": users })
            } else {
                json!({ "users": users, "missingNodes": missing.iter().map(NodeId::as_str).collect::<Vec<_>>() })
            };
            super::ack(io, socket, *ack, body);
        }
        for socket in &o.infos {
            self.room_info_due(io, socket, nsp, room, now);
        }
        presence_to_room(io, nsp, room, None, &Message::new("room-users-update", vec![users]), now);
    }

    /// Tells the nodes holding the room what changed here (cluster mode only).
    fn share(io: &mut Io<'_>, nsp: &str, room: &str, shared: &Shared) {
        if io.cluster().is_some() {
            io.cluster_to_room(nsp, &chat_room(room), shared.encode());
        }
    }

    /// This node's whole list of a room.
    fn roster(&mut self, nsp: &str, room: &str) -> Shared {
        let (users, version) = self.scope(nsp).presence.local(room);
        Shared::Roster { nsp: nsp.to_owned(), room: room.to_owned(), version, users }
    }

    /// A local socket's join changed the room: the other nodes hear of it (a room that
    /// opens here asks them for their lists).
    pub(super) fn share_join(
        &mut self,
        io: &mut Io<'_>,
        nsp: &str,
        room: &str,
        user: &User,
        opened: bool,
        now: Instant,
    ) {
        if io.cluster().is_none() {
            return;
        }
        if opened {
            return self.open_room(io, nsp, room, now);
        }
        let presence = &self.scope(nsp).presence;
        let (since, (_, version)) = (presence.since(room, &user.id), presence.local(room));
        let shared = Shared::Joined { nsp: nsp.to_owned(), room: room.to_owned(), version, user: user.clone(), since };
        Self::share(io, nsp, room, &shared);
    }

    /// A user's last local socket left the room (`version`: the room's number after it).
    pub(super) fn share_leave(io: &mut Io<'_>, nsp: &str, room: &str, user_id: &str, version: u64) {
        let shared = Shared::Left { nsp: nsp.to_owned(), room: room.to_owned(), version, user: user_id.to_owned() };
        Self::share(io, nsp, room, &shared);
    }

    /// What another node's room service said: news, an answer, or (`asked`) a question.
    /// Returns this node's list when one is owed: to a question (every node answers, with
    /// nobody if it has nobody there, so that the asker knows when it has heard from all),
    /// or to a node that asks for it after a gap.
    pub(super) fn on_presence(
        &mut self,
        io: &mut Io<'_>,
        from: &NodeId,
        shared: Shared,
        asked: bool,
        now: Instant,
    ) -> Option<Shared> {
        let node = from.as_str();
        let (nsp, room) = match &shared {
            Shared::Holding { nsp, rooms } => {
                let keep: BTreeSet<&str> = rooms.iter().map(String::as_str).collect();
                let gone = self.scope(nsp).presence.peer_gone_except(node, &keep);
                let nsp = nsp.clone();
                for (room, left) in gone {
                    self.show_changes(io, &nsp, &room, &Changed { left, ..Changed::default() }, now);
                }
                return None;
            }
            other => {
                let (n, r) = other.place()?;
                (n.to_owned(), r.to_owned())
            }
        };
        let owed = matches!(shared, Shared::RosterWanted { .. }) || (asked && matches!(shared, Shared::Roster { .. }));
        let mine = owed.then(|| self.roster(&nsp, &room));
        let presence = &mut self.scope(&nsp).presence;
        if !presence.is_open(&room) {
            // Nothing of this node's is in the room: nothing to show.
            return mine;
        }
        let changed = match shared {
            Shared::Roster { version, users, .. } => presence.peer_roster(&room, node, version, &users),
            Shared::Joined { version, user, since, .. } => presence.peer_joined(&room, node, version, &user, since),
            Shared::Left { version, user, .. } => presence.peer_left(&room, node, version, &user),
            _ => return mine,
        };
        if changed.gap {
            let wanted = Shared::RosterWanted { nsp: nsp.clone(), room: room.clone() };
            io.cluster_to_node(from, wanted.encode());
        }
        self.show_changes(io, &nsp, &room, &changed, now);
        mine
    }

    /// Another node is gone: its users leave the rooms where nothing else holds them.
    pub(super) fn peer_gone(&mut self, io: &mut Io<'_>, node: &NodeId, now: Instant) {
        for nsp in SCOPES {
            for (room, left) in self.scope(nsp).presence.peer_gone(node.as_str()) {
                let changed = Changed { left, ..Changed::default() };
                self.show_changes(io, nsp, &room, &changed, now);
            }
        }
    }

    /// The link is back (or up for the first time): every node hears which rooms this
    /// one holds now, and every open room's list goes out again, asking for the others'.
    pub(super) fn link_up(&mut self, io: &mut Io<'_>, now: Instant) {
        for nsp in SCOPES {
            let mut rooms: Vec<String> = self.scope(nsp).presence.rooms().map(str::to_owned).collect();
            rooms.sort();
            io.cluster_to_all(Shared::Holding { nsp: nsp.to_owned(), rooms: rooms.clone() }.encode());
            for room in rooms {
                // Every node, not only the room's: a node that left the room while this
                // one could not hear it answers too (with nobody).
                let question = self.roster(nsp, &room).encode();
                io.ask_cluster(question, now);
            }
        }
    }

    /// Shows this node's members of a room what another node's news changed: who came,
    /// who left (with their typing ended), and the new list.
    fn show_changes(&mut self, io: &mut Io<'_>, nsp: &str, room: &str, changed: &Changed, now: Instant) {
        // A room still opening shows its whole list when it completes.
        if changed.is_empty() || self.is_opening(nsp, room) {
            return;
        }
        for user in &changed.joined {
            let joined = json!({"user": user.to_json(), "message": format!("{} joined the chat", user.username)});
            presence_to_room(io, nsp, room, None, &Message::new("user-joined", vec![joined]), now);
        }
        for user in &changed.left {
            let typing = json!({"user": user.to_json(), "isTyping": false});
            let target = Target::all(nsp).to(chat_room(room)).except(user_room(&user.id)).local();
            io.emit(&target, &Message::new("user-typing", vec![typing]), now);
            let left = json!({"user": user.to_json(), "message": format!("{} left the chat", user.username)});
            presence_to_room(io, nsp, room, None, &Message::new("user-left", vec![left]), now);
        }
        let users = self.scope(nsp).presence.users_json(room);
        presence_to_room(io, nsp, room, None, &Message::new("room-users-update", vec![users]), now);
    }
}
