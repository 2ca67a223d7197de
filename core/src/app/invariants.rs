//! The room service's invariants, checked by simulations and fuzz targets after every
//! step: not part of a production build.

use super::*;

impl RoomService {
    /// Checks that every map and queue of the room service stays inside its configured
    /// bound: history, document op logs, join waiters, typing states, rate-limit buckets,
    /// writes waiting for the store, departed members. The first violation, described.
    pub(super) fn bounds(&self, io: &Sockets) -> Result<(), String> {
        let c = &self.config;
        for (nsp, scope) in &self.scopes {
            for (room, h) in &scope.history {
                match h {
                    chat::History::Ready(recent) if recent.len() > c.recent_limit => {
                        return Err(format!("{nsp} {room} keeps {} messages, over {}", recent.len(), c.recent_limit));
                    }
                    chat::History::Loading(waiting) if has_duplicates(waiting.iter()) => {
                        return Err(format!("a socket waits twice for the history of {nsp} {room}"));
                    }
                    _ => {}
                }
            }
            for (doc, state) in &scope.docs {
                state.check_bounds().map_err(|e| format!("document {nsp} {doc}: {e}"))?;
            }
        }
        // One pass over the open documents: their waiting edits and their logs' bytes.
        let (edits, log_bytes) = self
            .scopes
            .values()
            .flat_map(|s| s.docs.values())
            .filter_map(|d| if let editing::DocState::Ready(e) = d { Some(e) } else { None })
            .fold((0, 0), |(w, b), e| (w + e.writes_waiting(), b + e.log_bytes()));
        if log_bytes != self.doc_log_bytes || log_bytes > c.doc_log_total_bytes {
            return Err(format!(
                "document logs hold {log_bytes} bytes (counted {}, budget {})",
                self.doc_log_bytes, c.doc_log_total_bytes
            ));
        }
        self.writes.check_bounds(edits)?;
        self.limits.check_bounds(c, |s| self.members.contains(s), |u| self.members.has_user(u))?;
        let sockets = io.metrics().namespaces.iter().map(|n| n.1).sum::<usize>();
        self.members.check_bounds(io.config().recovery_max_sessions, sockets)?;
        // Every question waiting here is one the cluster layer waits for (it bounds them),
        // and what waits on a room's opening is a join each, inside the sockets' buckets.
        let questions = self.openings.len() + self.asks.len();
        let waiting = io.cluster().map_or(0, crate::cluster::ClusterNode::questions_waiting);
        if questions > waiting {
            return Err(format!("{questions} questions wait here, {waiting} in the cluster layer"));
        }
        let waiters: usize = self.openings.values().map(roster::Opening::waiters).sum();
        if waiters > sockets * c.event_limit.capacity as usize {
            return Err(format!("{waiters} joins wait on openings"));
        }
        self.typing.check_bounds()
    }
}

#[cfg(test)]
impl RoomService {
    /// The text of a document that is open, if it is.
    pub(crate) fn document_text(&self, nsp: &str, doc: &str) -> Option<String> {
        self.scopes.get(nsp)?.docs.get(doc).and_then(editing::DocState::text)
    }

    /// Checks the service's own invariants against the Socket.IO layer (for simulations).
    pub(crate) fn check_invariants(&self, io: &Sockets, now: Instant) -> Result<(), String> {
        for (socket, m) in self.members.iter() {
            if io.nsp_of(socket) != Some(m.nsp.as_str()) {
                return Err(format!("member {socket} is not a live socket of {}", m.nsp));
            }
            let rooms = io.rooms_of(socket);
            for r in &m.chat_rooms {
                if !rooms.contains(&chat_room(r)) {
                    return Err(format!("{socket} is in chat room {r} without its Socket.IO room"));
                }
            }
        }
        for (nsp, scope) in &self.scopes {
            for room in scope.presence.rooms() {
                let mut listed: Vec<String> = scope.presence.local(room).0.into_iter().map(|(u, _)| u.id).collect();
                let mut live: Vec<String> = self
                    .members
                    .iter()
                    .map(|(_, m)| m)
                    .filter(|m| &m.nsp == nsp && m.chat_rooms.contains(room))
                    .map(|m| m.user.id.clone())
                    .collect();
                listed.sort();
                live.sort();
                live.dedup();
                if listed != live {
                    return Err(format!("presence of {nsp} {room} is {listed:?} but live sockets are {live:?}"));
                }
            }
            for (_, m) in self.members.iter().filter(|(_, m)| &m.nsp == nsp) {
                for r in &m.chat_rooms {
                    if scope.presence.user(r, &m.user.id).is_none() {
                        return Err(format!("{} is in {r} but not in its presence", m.user.id));
                    }
                }
            }
        }
        if self.typing.poll_timeout().is_some_and(|t| t <= now) {
            return Err("a typing state outlived its timeout".into());
        }
        for (nsp, room, user) in self.typing.states() {
            if self.scopes.get(nsp).and_then(|s| s.presence.user(room, user)).is_none() {
                return Err(format!("{user} types in {nsp} {room} without being there"));
            }
        }
        Ok(())
    }
}

pub(super) fn has_duplicates<'a, T: Ord + 'a>(items: impl Iterator<Item = &'a T>) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    items.into_iter().any(|i| !seen.insert(i))
}
