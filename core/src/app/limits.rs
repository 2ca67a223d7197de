//! The room service's rate limits as one part: each user's chat and typing buckets, each
//! socket's event bucket, and the sweep that forgets idle ones.
//!
//! A user's buckets outlive its sockets (reconnecting must not refill them) and go only
//! once idle for a whole window; a socket's event bucket goes with the socket.

use super::config::AppConfig;
use super::ratelimit::{Bucket, Limit, Verdict};
use crate::socketio::SocketId;
use crate::time::Instant;
use std::collections::HashMap;

/// Which of a user's buckets an event takes its token from.
#[derive(Copy, Clone, Debug)]
pub(super) enum Limited {
    /// Messages, private messages, edits.
    Chat,
    /// Typing, cursors, selections: frequent and small.
    Typing,
}

/// Every bucket of the room service.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Limits {
    chat: HashMap<String, Bucket>,
    /// Every event of a socket, whatever it is, takes from its own bucket first.
    events: HashMap<SocketId, Bucket>,
    typing: HashMap<String, Bucket>,
    swept_at: Instant,
}

impl Limits {
    /// Takes a token from one of `user`'s buckets.
    pub(super) fn take(&mut self, config: &AppConfig, kind: Limited, user: &str, now: Instant) -> Verdict {
        let (limit, buckets) = match kind {
            Limited::Typing => (config.typing_limit, &mut self.typing),
            Limited::Chat => (config.chat_limit, &mut self.chat),
        };
        take(buckets, user.to_owned(), limit, now)
    }

    /// Takes a token from the socket's event bucket.
    pub(super) fn event(&mut self, config: &AppConfig, socket: &SocketId, now: Instant) -> Verdict {
        take(&mut self.events, socket.clone(), config.event_limit, now)
    }

    /// The socket is gone, and its event bucket with it.
    pub(super) fn socket_gone(&mut self, socket: &SocketId) {
        self.events.remove(socket);
    }

    /// Forgets user buckets that have been idle for a whole window (they are full again,
    /// so nothing is lost), at most once per window.
    pub(super) fn sweep(&mut self, config: &AppConfig, now: Instant) {
        let (chat, typing) = (config.chat_limit, config.typing_limit);
        if now.since(self.swept_at) < chat.window_ms.max(typing.window_ms) {
            return;
        }
        self.swept_at = now;
        self.chat.retain(|_, b| !b.is_idle(chat, now));
        self.typing.retain(|_, b| !b.is_idle(typing, now));
    }

    /// No event bucket without its socket, no user bucket that the sweep should have
    /// taken; the first violation.
    #[cfg(any(test, fuzzing))]
    pub(super) fn check_bounds(
        &self,
        config: &AppConfig,
        has_socket: impl Fn(&SocketId) -> bool,
        has_user: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        if let Some(s) = self.events.keys().find(|s| !has_socket(s)) {
            return Err(format!("the event bucket of {s} outlived its socket"));
        }
        for (name, limit, buckets) in
            [("chat", config.chat_limit, &self.chat), ("typing", config.typing_limit, &self.typing)]
        {
            for (user, b) in buckets {
                // Idle buckets go at the next sweep after their window; one that was idle
                // at the last sweep and is still here is a bucket that nothing removes.
                if b.is_idle(limit, self.swept_at) && !has_user(user) {
                    return Err(format!("the {name} bucket of {user} outlived its window"));
                }
            }
        }
        Ok(())
    }
}

fn take<K: std::hash::Hash + Eq>(buckets: &mut HashMap<K, Bucket>, key: K, limit: Limit, now: Instant) -> Verdict {
    buckets.entry(key).or_insert_with(|| Bucket::new(limit, now)).take(limit, now)
}
