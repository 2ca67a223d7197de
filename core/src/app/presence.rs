//! Who is in which chat room: users, not sockets. A user with several sockets (tabs) is
//! listed once, in the order users arrived, and leaves only when their last socket goes.
//! In cluster mode a room open on this node (a local socket in it) also lists the users
//! other nodes announced for it, each once however many nodes hold their tabs; a room
//! closes here with its last local socket, and what the others said of it is dropped,
//! since this node no longer hears of it.

use crate::socketio::SocketId;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A user as clients see them: `{id, username}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
}

impl User {
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "username": self.username})
    }
}

/// At most this many users of one room per other node: what another node says is taken
/// in only up to this bound.
pub const MAX_PEER_USERS: usize = 10_000;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Member {
    user: User,
    /// The user's sockets on this node in the room.
    sockets: BTreeSet<SocketId>,
    /// The other nodes where the user has a socket in the room (cluster mode).
    #[serde(default)]
    nodes: BTreeSet<String>,
    /// When the user came to the room (wall clock, ms; the earliest any node says): lists
    /// are in this order, the same on every node.
    #[serde(default)]
    since: u64,
    seq: u64,
}

impl Member {
    fn is_here(&self) -> bool {
        !self.sockets.is_empty()
    }

    fn is_gone(&self) -> bool {
        self.sockets.is_empty() && self.nodes.is_empty()
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Room {
    members: HashMap<String, Member>,
    next_seq: u64,
    /// How many times this node's users of the room changed since it opened here: the
    /// number its announcements to the other nodes carry.
    #[serde(default)]
    version: u64,
    /// The last number heard from each other node with users in the room.
    #[serde(default)]
    peers: BTreeMap<String, u64>,
}

impl Room {
    /// Adds a user (or another node of theirs), there since `since`; true if the user is
    /// new to the room.
    fn add(&mut self, user: &User, since: u64) -> (&mut Member, bool) {
        let new = !self.members.contains_key(&user.id);
        if new {
            let seq = self.next_seq;
            self.next_seq += 1;
            let member = Member { user: user.clone(), sockets: BTreeSet::new(), nodes: BTreeSet::new(), since, seq };
            self.members.insert(user.id.clone(), member);
        }
        let m = self.members.get_mut(&user.id).expect("inserted above");
        m.since = m.since.min(since);
        (m, new)
    }

    /// The members in the order they came.
    fn in_order(&self) -> Vec<&Member> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| (m.since, m.seq));
        members
    }

    /// Takes a user out if nothing holds them in the room any more.
    fn drop_if_gone(&mut self, user_id: &str) -> Option<User> {
        if self.members.get(user_id).is_some_and(Member::is_gone) {
            return self.members.remove(user_id).map(|m| m.user);
        }
        None
    }

    fn peer_count(&self, node: &str) -> usize {
        self.members.values().filter(|m| m.nodes.contains(node)).count()
    }
}

/// What a local join changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Joined {
    /// The room opened on this node (its first local socket): the other nodes are asked
    /// for their users of it.
    pub opened: bool,
    /// The user's first socket in the room on this node: the other nodes are told.
    pub here: bool,
    /// The user is new to the room anywhere: the room hears `user-joined`.
    pub new: bool,
}

/// What a local leave changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Left {
    /// The user's last socket in the room on this node: the other nodes are told.
    pub here: bool,
    /// The user has no socket left in the room anywhere: the room hears `user-left`.
    pub gone: Option<User>,
    /// The room has no local socket left: it closed here (and what other nodes said of it
    /// is forgotten, as this node no longer hears of it).
    pub closed: bool,
}

/// What another node's news changed in a room: users new to it, users gone from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    pub joined: Vec<User>,
    pub left: Vec<User>,
    /// The news skipped a number: something from that node was missed.
    pub gap: bool,
}

impl Changed {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty()
    }
}

/// Presence of one namespace's rooms.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Presence {
    rooms: HashMap<String, Room>,
}

impl Presence {
    /// Adds a socket of `user` to `room`, at `at` (wall clock, ms).
    pub fn join(&mut self, room: &str, user: &User, socket: &SocketId, at: u64) -> Joined {
        let opened = !self.rooms.contains_key(room);
        let r = self.rooms.entry(room.to_owned()).or_default();
        let (m, new) = r.add(user, at);
        let here = !m.is_here();
        m.sockets.insert(socket.clone());
        // A rename (a dev-mode user who joins again with another name) shows at once.
        m.user.username.clone_from(&user.username);
        if here {
            r.version += 1;
        }
        Joined { opened, here, new }
    }

    /// Removes a socket of user `user_id` from `room`.
    pub fn leave(&mut self, room: &str, user_id: &str, socket: &SocketId) -> Left {
        let Some(r) = self.rooms.get_mut(room) else { return Left::default() };
        let Some(m) = r.members.get_mut(user_id) else { return Left::default() };
        if !m.sockets.remove(socket) || m.is_here() {
            return Left::default();
        }
        r.version += 1;
        let gone = r.drop_if_gone(user_id);
        let closed = !r.members.values().any(Member::is_here);
        if closed {
            self.rooms.remove(room);
        }
        Left { here: true, gone, closed }
    }

    /// This node's users of a room, in the order they came, with when, and the room's
    /// number.
    #[must_use]
    pub fn local(&self, room: &str) -> (Vec<(User, u64)>, u64) {
        let Some(r) = self.rooms.get(room) else { return (Vec::new(), 0) };
        let here = r.in_order().into_iter().filter(|m| m.is_here()).map(|m| (m.user.clone(), m.since)).collect();
        (here, r.version)
    }

    /// When a user came to a room.
    #[must_use]
    pub fn since(&self, room: &str, user_id: &str) -> u64 {
        self.rooms.get(room).and_then(|r| r.members.get(user_id)).map_or(0, |m| m.since)
    }

    /// Another node's whole list of its users of a room, with when each came (only for a
    /// room open here).
    pub fn peer_roster(&mut self, room: &str, node: &str, version: u64, users: &[(User, u64)]) -> Changed {
        let Some(r) = self.rooms.get_mut(room) else { return Changed::default() };
        let mut changed = Changed::default();
        let listed: BTreeSet<&str> = users.iter().take(MAX_PEER_USERS).map(|(u, _)| u.id.as_str()).collect();
        let dropped: Vec<String> = r
            .members
            .iter()
            .filter(|(id, m)| m.nodes.contains(node) && !listed.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in dropped {
            if let Some(m) = r.members.get_mut(&id) {
                m.nodes.remove(node);
            }
            changed.left.extend(r.drop_if_gone(&id));
        }
        for (user, since) in users.iter().take(MAX_PEER_USERS) {
            let (m, new) = r.add(user, *since);
            m.nodes.insert(node.to_owned());
            if new {
                changed.joined.push(user.clone());
            }
        }
        if listed.is_empty() {
            r.peers.remove(node);
        } else {
            r.peers.insert(node.to_owned(), version);
        }
        changed
    }

    /// Another node's news that one of its users came to a room open here.
    pub fn peer_joined(&mut self, room: &str, node: &str, version: u64, user: &User, since: u64) -> Changed {
        let Some(r) = self.rooms.get_mut(room) else { return Changed::default() };
        let gap = Self::heard(r, node, version);
        let mut changed = Changed { gap, ..Changed::default() };
        if !r.members.get(&user.id).is_some_and(|m| m.nodes.contains(node)) && r.peer_count(node) >= MAX_PEER_USERS {
            return changed;
        }
        let (m, new) = r.add(user, since);
        m.nodes.insert(node.to_owned());
        if new {
            changed.joined.push(user.clone());
        }
        changed
    }

    /// Another node's news that one of its users left a room open here.
    pub fn peer_left(&mut self, room: &str, node: &str, version: u64, user_id: &str) -> Changed {
        let Some(r) = self.rooms.get_mut(room) else { return Changed::default() };
        let gap = Self::heard(r, node, version);
        let mut changed = Changed { gap, ..Changed::default() };
        if let Some(m) = r.members.get_mut(user_id) {
            m.nodes.remove(node);
        }
        changed.left.extend(r.drop_if_gone(user_id));
        if r.peer_count(node) == 0 {
            r.peers.remove(node);
        }
        changed
    }

    /// Records a node's number for a room; true if it skipped one (or the node was not
    /// heard of before in the room, so its earlier users may be missing).
    fn heard(r: &mut Room, node: &str, version: u64) -> bool {
        let known = r.peers.insert(node.to_owned(), version);
        known.is_none_or(|k| version != k + 1)
    }

    /// A node is gone: its users leave every room where it was their only place.
    pub fn peer_gone(&mut self, node: &str) -> Vec<(String, Vec<User>)> {
        self.peer_gone_except(node, &BTreeSet::new())
    }

    /// A node holds only the rooms in `keep` now: it is gone from every other room.
    pub fn peer_gone_except(&mut self, node: &str, keep: &BTreeSet<&str>) -> Vec<(String, Vec<User>)> {
        let mut out = Vec::new();
        for (name, r) in &mut self.rooms {
            if keep.contains(name.as_str()) || (r.peers.remove(node).is_none() && r.peer_count(node) == 0) {
                continue;
            }
            let ids: Vec<String> =
                r.members.iter().filter(|(_, m)| m.nodes.contains(node)).map(|(id, _)| id.clone()).collect();
            let mut left = Vec::new();
            for id in ids {
                if let Some(m) = r.members.get_mut(&id) {
                    m.nodes.remove(node);
                }
                left.extend(r.drop_if_gone(&id));
            }
            out.push((name.clone(), left));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The users of a room on every node, each once, in the order they came.
    #[must_use]
    pub fn users(&self, room: &str) -> Vec<User> {
        let Some(r) = self.rooms.get(room) else { return Vec::new() };
        r.in_order().into_iter().map(|m| m.user.clone()).collect()
    }

    /// A user present in a room.
    #[must_use]
    pub fn user(&self, room: &str, user_id: &str) -> Option<&User> {
        self.rooms.get(room).and_then(|r| r.members.get(user_id)).map(|m| &m.user)
    }

    #[must_use]
    pub fn users_json(&self, room: &str) -> Value {
        Value::Array(self.users(room).iter().map(User::to_json).collect())
    }

    /// Whether this socket of the user is in the room.
    #[must_use]
    pub fn has_socket(&self, room: &str, user_id: &str, socket: &SocketId) -> bool {
        self.rooms.get(room).and_then(|r| r.members.get(user_id)).is_some_and(|m| m.sockets.contains(socket))
    }

    /// Whether the room has a socket on this node.
    #[must_use]
    pub fn is_open(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// The names of the rooms with someone in them on this node.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    #[must_use]
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Users present in any room.
    #[must_use]
    pub fn user_count(&self) -> usize {
        let mut ids: BTreeSet<&str> = BTreeSet::new();
        for r in self.rooms.values() {
            ids.extend(r.members.keys().map(String::as_str));
        }
        ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> User {
        User { id: id.into(), username: id.to_uppercase() }
    }

    #[test]
    fn a_user_with_two_tabs_is_listed_once_and_leaves_with_the_last() {
        let mut p = Presence::default();
        let (t1, t2) = (SocketId::from("t1"), SocketId::from("t2"));
        assert_eq!(p.join("r", &user("alice"), &t1, 0), Joined { opened: true, here: true, new: true });
        assert_eq!(p.join("r", &user("alice"), &t2, 0), Joined::default());
        assert!(p.join("r", &user("bob"), &SocketId::from("b"), 0).new);
        assert_eq!(p.users("r"), vec![user("alice"), user("bob")]);
        assert_eq!(p.leave("r", "alice", &t1), Left::default());
        assert_eq!(p.users("r").len(), 2);
        assert_eq!(p.leave("r", "alice", &t2), Left { here: true, gone: Some(user("alice")), closed: false });
        assert_eq!(p.users("r"), vec![user("bob")]);
        assert_eq!(p.leave("r", "alice", &t2), Left::default(), "leaving twice is harmless");
    }

    #[test]
    fn rejoining_is_idempotent_and_empty_rooms_vanish() {
        let mut p = Presence::default();
        let s = SocketId::from("s");
        assert!(p.join("r", &user("a"), &s, 0).new);
        assert!(!p.join("r", &user("a"), &s, 0).new);
        assert_eq!(p.users("r").len(), 1);
        assert!(p.leave("r", "a", &s).closed);
        assert_eq!(p.room_count(), 0);
    }

    #[test]
    fn users_of_other_nodes_are_listed_once_and_leave_with_their_last_place() {
        let mut p = Presence::default();
        let here = SocketId::from("h");
        assert!(p.peer_roster("r", "n2", 1, &[(user("bob"), 5)]).is_empty(), "a room closed here takes nothing");
        p.join("r", &user("alice"), &here, 10);
        let c = p.peer_roster("r", "n2", 3, &[(user("bob"), 5), (user("alice"), 20)]);
        assert_eq!(c.joined, vec![user("bob")], "alice was here already");
        assert_eq!(p.users("r"), vec![user("bob"), user("alice")], "bob came first");
        assert_eq!(p.local("r"), (vec![(user("alice"), 10)], 1));
        // bob's second tab on a third node, then his first node lets go.
        assert_eq!(p.peer_joined("r", "n3", 1, &user("bob"), 30), Changed { gap: true, ..Changed::default() });
        assert!(p.peer_left("r", "n2", 4, "bob").is_empty());
        assert_eq!(p.peer_left("r", "n3", 2, "bob").left, vec![user("bob")]);
        // alice leaves here while still on n2: no user-left, the room closes here.
        p.peer_joined("r", "n2", 5, &user("alice"), 40);
        let left = p.leave("r", "alice", &here);
        assert_eq!(left, Left { here: true, gone: None, closed: true });
        assert!(!p.is_open("r") && p.users("r").is_empty());
    }

    #[test]
    fn a_gap_in_a_nodes_numbers_is_reported_and_a_gone_node_takes_its_users_along() {
        let mut p = Presence::default();
        p.join("r", &user("alice"), &SocketId::from("h"), 0);
        p.join("q", &user("alice"), &SocketId::from("h"), 0);
        assert!(!p.peer_roster("r", "n2", 1, &[(user("bob"), 1)]).gap);
        assert!(!p.peer_joined("r", "n2", 2, &user("carol"), 2).gap);
        assert!(p.peer_joined("r", "n2", 4, &user("dave"), 3).gap, "3 was missed");
        p.peer_joined("q", "n2", 1, &user("bob"), 1);
        let gone = p.peer_gone("n2");
        assert_eq!(gone.len(), 2);
        assert_eq!(gone[0], ("q".to_owned(), vec![user("bob")]));
        let mut left = gone[1].1.clone();
        left.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(left, vec![user("bob"), user("carol"), user("dave")]);
        assert_eq!(p.users("r"), vec![user("alice")]);
        assert!(p.peer_gone("n2").is_empty(), "nothing left of it");
    }
}
