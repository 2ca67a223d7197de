//! What one node's room service says to another's (cluster mode), in one format: a
//! version byte, then postcard. Presence news and lists ([`super::roster`]) and the
//! questions of [`super::remote`] (where a private message's recipient is, the nodes'
//! stats, kicks) with their answers. What arrives is checked like a client's input: names
//! and users inside the limits, or the message is refused and counted.

use super::presence::{User, MAX_PEER_USERS};
use super::{validate, SCOPES};
use bytes::Bytes;
use serde_json::json;

/// The format of the room service's messages between nodes (the first byte).
const FORMAT: u8 = 1;

/// At most this many bytes in a user id or name another node sends (a token's `sub` and
/// `name` are bounded only by the CONNECT packet here; this is well above what one holds).
const MAX_PEER_TEXT: usize = 1024;

/// At most this many bytes in one node's stats.
const MAX_STATS_TEXT: usize = 64 * 1024;

/// What one node's room service tells another's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Shared {
    /// The sender's users of a room, all of them, with when each came (wall clock, ms).
    /// Asked as a question, it is answered with the receiver's.
    Roster { nsp: String, room: String, version: u64, users: Vec<(User, u64)> },
    /// A user's first socket in the room on the sender.
    Joined { nsp: String, room: String, version: u64, user: User, since: u64 },
    /// A user's last socket in the room on the sender went.
    Left { nsp: String, room: String, version: u64, user: String },
    /// Asks the receiver for its whole list of a room.
    RosterWanted { nsp: String, room: String },
    /// The sender's link is back: these are all its rooms of the namespace now (it may
    /// have left others while its news could not get out).
    Holding { nsp: String, rooms: Vec<String> },
    /// A question: is `to` a socket id of `nsp` here, or a user with a socket in it?
    Find { nsp: String, to: String },
    /// Its answer.
    Found { socket: bool, user: bool },
    /// A question: this node's `/admin` `stats`.
    Stats,
    /// Its answer: the stats object, as JSON text.
    NodeStats { json: String },
    /// A question: disconnect a user's sockets (or one socket) here.
    Kick { user: Option<String>, socket: Option<String> },
    /// Its answer: how many.
    Kicked { count: u64 },
    /// A question: this node's sockets in a chat room, with their users.
    Sockets { nsp: String, room: String },
    /// Its answer: (socket id, user), at most [`MAX_LISTED`].
    SocketList { sockets: Vec<(String, User)> },
    /// A question: this node's chat rooms with how many of its sockets are in each.
    Rooms { nsp: String },
    /// Its answer: (room, sockets), at most [`MAX_LISTED`].
    RoomList { rooms: Vec<(String, u64)> },
}

/// At most this many entries in one node's list of sockets or rooms.
pub const MAX_LISTED: usize = 10_000;

impl Shared {
    /// The message's bytes: the format, then postcard.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        crate::cluster::envelope::versioned(FORMAT, self)
    }

    /// The message in `bytes`, if it is one of this format with names and users inside
    /// the limits a client's would have to meet.
    pub(super) fn decode(bytes: &[u8]) -> Option<Shared> {
        let Some((&FORMAT, rest)) = bytes.split_first() else { return None };
        let shared: Shared = postcard::from_bytes(rest).ok()?;
        let ok_user =
            |u: &User| (1..=MAX_PEER_TEXT).contains(&u.id.len()) && (1..=MAX_PEER_TEXT).contains(&u.username.len());
        let text = |t: &str| (1..=MAX_PEER_TEXT).contains(&t.len());
        let room = |r: &str| validate::room(Some(&json!(r))).is_ok();
        let ok = match &shared {
            Shared::Roster { nsp, room: r, users, .. } => {
                SCOPES.contains(&nsp.as_str())
                    && room(r)
                    && users.len() <= MAX_PEER_USERS
                    && users.iter().all(|(u, _)| ok_user(u))
            }
            Shared::Joined { nsp, room: r, user, .. } => SCOPES.contains(&nsp.as_str()) && room(r) && ok_user(user),
            Shared::Left { nsp, room: r, user, .. } => SCOPES.contains(&nsp.as_str()) && room(r) && text(user),
            Shared::RosterWanted { nsp, room: r } => SCOPES.contains(&nsp.as_str()) && room(r),
            Shared::Holding { nsp, rooms } => SCOPES.contains(&nsp.as_str()) && rooms.iter().all(|r| room(r)),
            Shared::Find { nsp, to } => SCOPES.contains(&nsp.as_str()) && text(to),
            Shared::Kick { user, socket } => user.as_deref().is_none_or(text) && socket.as_deref().is_none_or(text),
            Shared::NodeStats { json } => json.len() <= MAX_STATS_TEXT,
            Shared::Sockets { nsp, room: r } => SCOPES.contains(&nsp.as_str()) && room(r),
            Shared::Rooms { nsp } => SCOPES.contains(&nsp.as_str()),
            Shared::SocketList { sockets } => {
                sockets.len() <= MAX_LISTED && sockets.iter().all(|(id, u)| text(id) && ok_user(u))
            }
            Shared::RoomList { rooms } => rooms.len() <= MAX_LISTED && rooms.iter().all(|(r, _)| room(r)),
            Shared::Found { .. } | Shared::Stats | Shared::Kicked { .. } => true,
        };
        ok.then_some(shared)
    }

    /// The namespace and room of a presence message.
    pub(super) fn place(&self) -> Option<(&str, &str)> {
        match self {
            Shared::Roster { nsp, room, .. }
            | Shared::Joined { nsp, room, .. }
            | Shared::Left { nsp, room, .. }
            | Shared::RosterWanted { nsp, room } => Some((nsp, room)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::presence::User;

    fn user(id: &str) -> User {
        User { id: id.into(), username: id.into() }
    }

    #[test]
    fn messages_round_trip_and_out_of_bounds_ones_are_refused() {
        let users = vec![(user("a"), 7)];
        let roster = Shared::Roster { nsp: "/".into(), room: "r".into(), version: 3, users };
        assert_eq!(Shared::decode(&roster.encode()), Some(roster.clone()));
        let mut other = roster.encode().to_vec();
        other[0] = FORMAT + 1;
        assert_eq!(Shared::decode(&other), None, "another format");
        for bad in [
            Shared::RosterWanted { nsp: "/nope".into(), room: "r".into() },
            Shared::RosterWanted { nsp: "/".into(), room: String::new() },
            Shared::Joined { nsp: "/".into(), room: "r".into(), version: 1, user: user(""), since: 0 },
            Shared::Left { nsp: "/chat".into(), room: "r".into(), version: 1, user: "x".repeat(MAX_PEER_TEXT + 1) },
            Shared::Find { nsp: "/".into(), to: String::new() },
            Shared::NodeStats { json: "x".repeat(MAX_STATS_TEXT + 1) },
        ] {
            assert_eq!(Shared::decode(&bad.encode()), None, "{bad:?}");
        }
        assert_eq!(Shared::decode(&[FORMAT, 9, 9, 9]), None);
        assert_eq!(Shared::decode(&[]), None);
    }
}
