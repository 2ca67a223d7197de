//! The Socket.IO layer's invariants, checked by simulations and fuzz targets after every
//! step: not part of a production build.

use super::*;

impl Sockets {
    /// Checks every bounded map of the Socket.IO layer (rooms per socket, pending acks,
    /// namespaces per connection, recovery) and the engine below; the first violation.
    pub fn check_bounds(&self) -> Result<(), String> {
        let c = &self.config;
        for (id, s) in &self.sockets {
            if s.rooms.len() > c.max_rooms_per_socket.max(1) {
                return Err(format!("{id} is in {} rooms, over {}", s.rooms.len(), c.max_rooms_per_socket));
            }
            if s.pending_acks.len() > c.max_pending_acks {
                return Err(format!("{id} has {} acks pending, over {}", s.pending_acks.len(), c.max_pending_acks));
            }
            match self.clients.get(&s.session) {
                None => return Err(format!("{id} rides on a session that is gone")),
                Some(c) if c.sockets.get(&s.nsp) != Some(id) => {
                    return Err(format!("{id} is not the socket of {} on its session", s.nsp))
                }
                Some(_) => {}
            }
        }
        for (s, client) in &self.clients {
            if client.sockets.len() > c.max_namespaces_per_connection {
                return Err(format!(
                    "{s:?} has {} namespaces, over {}",
                    client.sockets.len(),
                    c.max_namespaces_per_connection
                ));
            }
            if client.partial.as_deref().is_some_and(|(_, b)| b.len() > c.max_attachments) {
                return Err(format!("{s:?} buffers more than {} attachments", c.max_attachments));
            }
        }
        let held: usize =
            self.clients.values().filter_map(|c| c.partial.as_deref()).flat_map(|(_, b)| b).map(Bytes::len).sum();
        if held != self.partial_bytes || held > c.attachment_budget_bytes {
            return Err(format!(
                "{held} bytes of attachments held (counted {}, budget {})",
                self.partial_bytes, c.attachment_budget_bytes
            ));
        }
        if self.clients.len() > self.engine.session_count() {
            return Err(format!("{} clients over {} sessions", self.clients.len(), self.engine.session_count()));
        }
        if self.by_seq.len() != self.sockets.len() {
            return Err(format!("{} socket numbers for {} sockets", self.by_seq.len(), self.sockets.len()));
        }
        for (name, ns) in &self.namespaces {
            for (room, members) in &ns.rooms {
                if members.is_empty() {
                    return Err(format!("room {room} of {name} is empty but kept"));
                }
            }
        }
        self.recovery.check_bounds()?;
        self.engine.check_bounds()
    }
}
