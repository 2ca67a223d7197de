//! Typing indicators that the server ends by itself: after `typing_timeout`, and on send,
//! leave and disconnect, so no client ever shows "is typing" forever.

use crate::time::{Instant, Timers};
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
