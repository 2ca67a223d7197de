//! The engine's invariants, checked by simulations and fuzz targets after every step: not
//! part of a production build.

use super::*;

impl Engine {
    /// Checks that every map and queue of the engine is inside its configured bound and
    /// consistent with the others; the first violation, described (for simulations and
    /// fuzz targets, after every step).
    pub fn check_bounds(&self) -> Result<(), String> {
        if self.sessions.len() > self.max_sessions {
            return Err(format!("{} sessions, over max_connections {}", self.sessions.len(), self.max_sessions));
        }
        if self.by_sid.len() != self.sessions.len() {
            return Err(format!("{} sids for {} sessions", self.by_sid.len(), self.sessions.len()));
        }
        for (sid, s) in &self.by_sid {
            if self.sessions.get(s).is_none_or(|sess| &sess.sid != sid) {
                return Err(format!("sid {sid} names a session that does not carry it"));
            }
        }
        let mut gets: HashMap<SessionId, usize> = HashMap::new();
        for (conn, (s, role)) in &self.conns {
            let Some(sess) = self.sessions.get(s) else {
                return Err(format!("{conn:?} belongs to a session that is gone"));
            };
            let owned = match role {
                Role::PollGet => {
                    *gets.entry(*s).or_default() += 1;
                    sess.pending_get == Some(*conn)
                }
                Role::WebSocket => sess.transport == Transport::WebSocket(*conn),
                Role::Probe => sess.probe.as_ref().is_some_and(|p| p.conn == *conn),
            };
            if !owned {
                return Err(format!("{conn:?} is a {role:?} of {} but the session does not know it", sess.sid));
            }
        }
        for (s, sess) in &self.sessions {
            if gets.get(s).copied().unwrap_or(0) > 1 {
                return Err(format!("session {} has more than one GET waiting", sess.sid));
            }
            if sess.pending_get.is_some_and(|c| !self.conns.contains_key(&c)) {
                return Err(format!("session {} waits on a GET the engine forgot", sess.sid));
            }
            let bytes: usize = sess.buffer.iter().map(OutPacket::len).sum();
            if bytes != sess.buffered_bytes {
                return Err(format!(
                    "session {} counts {} buffered bytes, holds {bytes}",
                    sess.sid, sess.buffered_bytes
                ));
            }
            if bytes > self.max_buffered {
                return Err(format!("session {} buffers {bytes} bytes, over {}", sess.sid, self.max_buffered));
            }
        }
        self.open_per_ip.check_bounds(self.sessions.len())?;
        self.handshakes.check_bounds()
    }
}
