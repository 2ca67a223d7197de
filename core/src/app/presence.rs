//! Who is in which chat room: users, not sockets. A user with several sockets (tabs) is
//! listed once, in the order users arrived, and leaves only when their last socket goes.

use crate::socketio::SocketId;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

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

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Member {
    user: User,
    sockets: BTreeSet<SocketId>,
    seq: u64,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Room {
    members: HashMap<String, Member>,
    next_seq: u64,
}

/// Presence of one namespace's rooms.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Presence {
    rooms: HashMap<String, Room>,
}

impl Presence {
    /// Adds a socket of `user` to `room`; true if the user was not there before.
    pub fn join(&mut self, room: &str, user: &User, socket: &SocketId) -> bool {
        let r = self.rooms.entry(room.to_owned()).or_default();
        if let Some(m) = r.members.get_mut(&user.id) {
            m.sockets.insert(socket.clone());
            // A rename (a dev-mode user who joins again with another name) shows at once.
            m.user.username.clone_from(&user.username);
            return false;
        }
        let seq = r.next_seq;
        r.next_seq += 1;
        r.members
            .insert(user.id.clone(), Member { user: user.clone(), sockets: BTreeSet::from([socket.clone()]), seq });
        true
    }

    /// Removes a socket of user `user_id` from `room`; the user if that was their last.
    pub fn leave(&mut self, room: &str, user_id: &str, socket: &SocketId) -> Option<User> {
        let r = self.rooms.get_mut(room)?;
        let m = r.members.get_mut(user_id)?;
        if !m.sockets.remove(socket) || !m.sockets.is_empty() {
            return None;
        }
        let gone = r.members.remove(user_id).map(|m| m.user);
        if r.members.is_empty() {
            self.rooms.remove(room);
        }
        gone
    }

    /// The users of a room, in the order they arrived.
    #[must_use]
    pub fn users(&self, room: &str) -> Vec<User> {
        let Some(r) = self.rooms.get(room) else { return Vec::new() };
        let mut members: Vec<&Member> = r.members.values().collect();
        members.sort_by_key(|m| m.seq);
        members.into_iter().map(|m| m.user.clone()).collect()
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

    /// The names of the rooms with someone in them.
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
        assert!(p.join("r", &user("alice"), &t1));
        assert!(!p.join("r", &user("alice"), &t2));
        assert!(p.join("r", &user("bob"), &SocketId::from("b")));
        assert_eq!(p.users("r"), vec![user("alice"), user("bob")]);
        assert_eq!(p.leave("r", "alice", &t1), None);
        assert_eq!(p.users("r").len(), 2);
        assert_eq!(p.leave("r", "alice", &t2), Some(user("alice")));
        assert_eq!(p.users("r"), vec![user("bob")]);
        assert_eq!(p.leave("r", "alice", &t2), None, "leaving twice is harmless");
    }

    #[test]
    fn rejoining_is_idempotent_and_empty_rooms_vanish() {
        let mut p = Presence::default();
        let s = SocketId::from("s");
        assert!(p.join("r", &user("a"), &s));
        assert!(!p.join("r", &user("a"), &s));
        assert_eq!(p.users("r").len(), 1);
        assert!(p.leave("r", "a", &s).is_some());
        assert_eq!(p.room_count(), 0);
    }
}
