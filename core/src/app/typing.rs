//! Typing indicators that the server ends by itself: after `typing_timeout`, and on send,
//! leave and disconnect, so no client ever shows "is typing" forever.

use super::validate::{self, AppError};
use super::{chat_room, invalid, user_room, EventCx, Limited, Outcome, RoomService};
use crate::socketio::{Io, Message, Target};
use crate::time::{Instant, Timers};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Typing states of one node, keyed by (namespace, room, user id).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Typing {
    ids: HashMap<(String, String, String), u64>,
    keys: HashMap<u64, (String, String, String)>,
    timers: Timers<u64>,
    next: u64,
}

#[cfg(any(test, fuzzing))]
impl Typing {
    /// Every state has exactly one key and one timer, and nothing else does.
    pub fn check_bounds(&self) -> Result<(), String> {
        if self.ids.len() != self.keys.len() || self.timers.len() != self.ids.len() {
            return Err(format!(
                "{} typing states, {} keys, {} timers",
                self.ids.len(),
                self.keys.len(),
                self.timers.len()
            ));
        }
        Ok(())
    }
}

impl Typing {
    /// Starts (or extends) a typing state; true if the user was not typing yet there.
    pub fn start(&mut self, nsp: &str, room: &str, user: &str, until: Instant) -> bool {
        let key = (nsp.to_owned(), room.to_owned(), user.to_owned());
        if let Some(&id) = self.ids.get(&key) {
            self.timers.set(id, until);
            return false;
        }
        let id = self.next;
        self.next += 1;
        self.ids.insert(key.clone(), id);
        self.keys.insert(id, key);
        self.timers.set(id, until);
        true
    }

    /// Ends a typing state; true if there was one.
    pub fn stop(&mut self, nsp: &str, room: &str, user: &str) -> bool {
        let key = (nsp.to_owned(), room.to_owned(), user.to_owned());
        match self.ids.remove(&key) {
            Some(id) => {
                self.keys.remove(&id);
                self.timers.cancel(id);
                true
            }
            None => false,
        }
    }

    /// The rooms of `nsp` where `user` is typing.
    #[must_use]
    pub fn rooms_of(&self, nsp: &str, user: &str) -> Vec<String> {
        let mut rooms: Vec<String> =
            self.ids.keys().filter(|(n, _, u)| n == nsp && u == user).map(|(_, r, _)| r.clone()).collect();
        rooms.sort();
        rooms
    }

    /// Ends the states whose time is up: (namespace, room, user) of each.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, String, String)> {
        let mut ended = Vec::new();
        while let Some(id) = self.timers.pop_expired(now) {
            if let Some(key) = self.keys.remove(&id) {
                self.ids.remove(&key);
                ended.push(key);
            }
        }
        ended
    }

    /// Every typing state: (namespace, room, user id).
    pub fn states(&self) -> impl Iterator<Item = &(String, String, String)> {
        self.ids.keys()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }
}

/// The typing events, beside the table they keep.
impl RoomService {
    /// `typing-start` / `typing-stop {room}`.
    pub(super) fn on_typing(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>, start: bool) -> Outcome {
        let (member, arg, now) = (cx.member, cx.arg(), cx.now);
        let obj = validate::object(arg)?;
        let room = validate::room(obj.get("room"))?;
        if !member.chat_rooms.contains(&room) {
            return Err(invalid(AppError::not_in_room()));
        }
        self.limit(member, Limited::Typing, now)?;
        if start {
            let until = now.plus(self.config.typing_timeout_ms);
            if self.typing.start(&member.nsp, &room, &member.user.id, until) {
                announce_typing(io, &member.nsp, &room, &member.user.to_json(), &member.user.id, true, now);
            }
        } else {
            self.stop_typing(io, &member.nsp, &room, &member.user.id, now);
        }
        Ok(())
    }

    /// Ends a typing state if there is one, telling the others.
    pub(super) fn stop_typing(&mut self, io: &mut Io<'_>, nsp: &str, room: &str, user_id: &str, now: Instant) {
        if self.typing.stop(nsp, room, user_id) {
            let user = self.scope(nsp).presence.user(room, user_id).map(super::presence::User::to_json);
            let user = user.unwrap_or_else(|| json!({"id": user_id}));
            announce_typing(io, nsp, room, &user, user_id, false, now);
        }
    }

    pub(super) fn expire_typing(&mut self, io: &mut Io<'_>, now: Instant) {
        for (nsp, room, user_id) in self.typing.expire(now) {
            let user = self.scope(&nsp).presence.user(&room, &user_id).map(super::presence::User::to_json);
            let user = user.unwrap_or_else(|| json!({"id": user_id}));
            announce_typing(io, &nsp, &room, &user, &user_id, false, now);
        }
    }
}

/// `user-typing` to the room, never to the typer's own sockets.
fn announce_typing(io: &mut Io<'_>, nsp: &str, room: &str, user: &Value, user_id: &str, is_typing: bool, now: Instant) {
    let target = Target::all(nsp).to(chat_room(room)).except(user_room(user_id));
    io.emit(&target, &Message::new("user-typing", vec![json!({"user": user, "isTyping": is_typing})]), now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_expires_after_timeout_and_restarting_extends_it() {
        let mut t = Typing::default();
        assert!(t.start("/", "r", "a", Instant(5000)));
        assert!(!t.start("/", "r", "a", Instant(7000)), "already typing: no second broadcast");
        assert!(t.expire(Instant(6999)).is_empty());
        assert_eq!(t.expire(Instant(7000)), vec![("/".into(), "r".into(), "a".into())]);
        assert!(!t.stop("/", "r", "a"), "already ended");
    }

    #[test]
    fn stop_ends_it_once() {
        let mut t = Typing::default();
        t.start("/", "r", "a", Instant(10));
        t.start("/", "q", "a", Instant(10));
        assert_eq!(t.rooms_of("/", "a"), vec!["q".to_string(), "r".to_string()]);
        assert!(t.stop("/", "r", "a"));
        assert!(!t.stop("/", "r", "a"));
        assert_eq!(t.expire(Instant(100)).len(), 1);
        assert_eq!(t.poll_timeout(), None);
    }
}
