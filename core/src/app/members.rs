//! Who is connected to the room service: one member per live socket, the number of
//! sockets per user (over all namespaces: a user's buckets go when the last one does), and
//! the members that dropped in a way connection state recovery can undo.

use super::presence::User;
use crate::socketio::SocketId;
use crate::time::Instant;
use std::collections::{BTreeSet, HashMap};

/// What the service knows about one connected socket.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Member {
    pub(super) nsp: String,
    pub(super) user: User,
    pub(super) chat_rooms: BTreeSet<String>,
    pub(super) docs: BTreeSet<String>,
}

impl Member {
    pub(super) fn new(nsp: String, user: User) -> Member {
        Member { nsp, user, chat_rooms: BTreeSet::new(), docs: BTreeSet::new() }
    }
}

/// How long departed members are kept, and how many: the Socket.IO layer's recovery
/// window and bound.
#[derive(Copy, Clone, Debug)]
pub(super) struct Recovery {
    pub(super) window_ms: u64,
    pub(super) max_sessions: usize,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Members {
    live: HashMap<SocketId, Member>,
    /// Sockets per user id, over all namespaces.
    user_sockets: HashMap<String, usize>,
    /// Members that dropped in a way recovery can undo, by socket id, with when.
    departed: HashMap<SocketId, (Member, Instant)>,
}

impl Members {
    pub(super) fn get(&self, socket: &SocketId) -> Option<&Member> {
        self.live.get(socket)
    }

    pub(super) fn get_mut(&mut self, socket: &SocketId) -> Option<&mut Member> {
        self.live.get_mut(socket)
    }

    pub(super) fn contains(&self, socket: &SocketId) -> bool {
        self.live.contains_key(socket)
    }

    /// Every live member.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (&SocketId, &Member)> {
        self.live.iter()
    }

    /// Users with at least one live socket.
    pub(super) fn users(&self) -> usize {
        self.user_sockets.len()
    }

    /// A socket became a member (its user's sockets count one more).
    pub(super) fn arrive(&mut self, socket: &SocketId, member: Member) -> &mut Member {
        *self.user_sockets.entry(member.user.id.clone()).or_default() += 1;
        self.live.entry(socket.clone()).or_insert(member)
    }

    /// A socket is gone: its member, if it was one.
    pub(super) fn leave(&mut self, socket: &SocketId) -> Option<Member> {
        let member = self.live.remove(socket)?;
        if let Some(n) = self.user_sockets.get_mut(&member.user.id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.user_sockets.remove(&member.user.id);
            }
        }
        Some(member)
    }

    /// Keeps a member that dropped recoverably (without its documents: a recovered client
    /// joins those afresh).
    pub(super) fn depart(&mut self, socket: &SocketId, mut member: Member, now: Instant, keep: Recovery) {
        member.docs.clear();
        self.departed.insert(socket.clone(), (member, now));
        self.prune(now, keep);
    }

    /// The user whose departed socket this was.
    pub(super) fn departed_user(&self, socket: &SocketId) -> Option<&str> {
        self.departed.get(socket).map(|(m, _)| m.user.id.as_str())
    }

    /// The departed member of a socket that recovered, if still kept.
    pub(super) fn recover(&mut self, socket: &SocketId) -> Option<Member> {
        self.departed.remove(socket).map(|(m, _)| m)
    }

    /// Forgets departed members past the window, and the oldest past the bound (as the
    /// Socket.IO layer's recovery does).
    pub(super) fn prune(&mut self, now: Instant, keep: Recovery) {
        self.departed.retain(|_, (_, at)| now.since(*at) <= keep.window_ms);
        while self.departed.len() > keep.max_sessions {
            let oldest =
                self.departed.iter().min_by_key(|(id, (_, at))| (*at, (*id).clone())).map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.departed.remove(&id),
                None => break,
            };
        }
    }

    #[cfg(any(test, fuzzing))]
    pub(super) fn has_user(&self, user: &str) -> bool {
        self.user_sockets.contains_key(user)
    }

    /// Users are counted with at least one socket, each live socket once; departed members
    /// stay inside the recovery bound; no more members than `sockets`.
    #[cfg(any(test, fuzzing))]
    pub(super) fn check_bounds(&self, max_departed: usize, sockets: usize) -> Result<(), String> {
        if self.user_sockets.values().any(|n| *n == 0) {
            return Err("a user is counted with no socket".into());
        }
        let counted: usize = self.user_sockets.values().sum();
        if counted != self.live.len() {
            return Err(format!("{counted} sockets counted for {} members", self.live.len()));
        }
        if self.departed.len() > max_departed {
            return Err(format!("{} departed members kept, over {max_departed}", self.departed.len()));
        }
        if self.live.len() > sockets {
            return Err(format!("{} members for fewer sockets", self.live.len()));
        }
        Ok(())
    }
}
