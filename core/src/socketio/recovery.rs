//! Connection state recovery on one node: recent packets with their offsets and targets,
//! and the sessions of sockets that dropped, so a client that comes back within the
//! window gets its old id, its rooms and what it missed.

use super::api::SocketId;
use crate::codec::payload::OutPacket;
use crate::time::Instant;
use std::collections::{HashMap, HashSet, VecDeque};

/// A packet as it was broadcast, kept for replay.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Stored {
    pub offset: u64,
    pub at: Instant,
    pub nsp: String,
    pub rooms: Vec<String>,
    pub except_rooms: Vec<String>,
    pub except_socket: Option<SocketId>,
    /// The event packet and its attachments, as sent.
    pub packets: Vec<OutPacket>,
}

impl Stored {
    fn size(&self) -> usize {
        self.packets.iter().map(OutPacket::len).sum::<usize>() + 64
    }

    /// Whether a socket of `nsp` in `rooms` was a target of this packet.
    fn reaches(&self, id: &SocketId, nsp: &str, rooms: &HashSet<String>) -> bool {
        self.nsp == nsp
            && (self.rooms.is_empty() || self.rooms.iter().any(|r| rooms.contains(r)))
            && !self.except_rooms.iter().any(|r| rooms.contains(r))
            && self.except_socket.as_ref() != Some(id)
    }
}

/// A socket that dropped and may come back.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    pub id: SocketId,
    pub nsp: String,
    pub rooms: HashSet<String>,
    pub at: Instant,
    /// The last offset that existed when the socket connected: a client that received no
    /// event yet (and so sends no offset) missed everything after it.
    pub base_offset: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Recovery {
    window_ms: u64,
    max_packets: usize,
    max_bytes: usize,
    max_sessions: usize,
    /// Bytes held in `packets`.
    bytes: usize,
    next_offset: u64,
    packets: VecDeque<Stored>,
    /// Every offset up to this one is gone from `packets`.
    evicted_upto: u64,
    sessions: HashMap<String, Saved>,
    /// pids in the order they were saved, for expiry and the count bound.
    order: VecDeque<(Instant, String)>,
}

impl Recovery {
    #[must_use]
    pub fn new(window_ms: u64, max_packets: usize, max_bytes: usize, max_sessions: usize) -> Self {
        Recovery {
            window_ms,
            max_packets,
            max_bytes,
            max_sessions,
            bytes: 0,
            next_offset: 1,
            packets: VecDeque::new(),
            evicted_upto: 0,
            sessions: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    #[must_use]
    pub fn enabled(&self) -> bool {
        self.window_ms > 0
    }

    /// The offset the next stored packet will get.
    #[must_use]
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Sets the next offset as a damaged snapshot could (tests only).
    #[cfg(test)]
    pub(crate) fn damage_next_offset(&mut self, offset: u64) {
        self.next_offset = offset;
    }

    /// Takes an offset for a packet about to be encoded.
    pub fn take_offset(&mut self) -> u64 {
        let o = self.next_offset;
        self.next_offset += 1;
        o
    }

    pub fn store(&mut self, packet: Stored, now: Instant) {
        self.prune(now);
        let size = packet.size();
        if size > self.max_bytes {
            // Too large to keep at all: it counts as evicted, so a session that missed it
            // is not recovered (rather than recovered without it).
            while !self.packets.is_empty() {
                self.evict_oldest();
            }
            self.evicted_upto = packet.offset;
            return;
        }
        while !self.packets.is_empty()
            && (self.packets.len() >= self.max_packets.max(1) || self.bytes + size > self.max_bytes)
        {
            self.evict_oldest();
        }
        self.bytes += size;
        self.packets.push_back(packet);
    }

    fn evict_oldest(&mut self) {
        if let Some(old) = self.packets.pop_front() {
            self.evicted_upto = old.offset;
            self.bytes -= old.size();
        }
    }

    pub fn save(&mut self, pid: String, saved: Saved, now: Instant) {
        self.prune(now);
        while self.sessions.len() >= self.max_sessions.max(1) {
            match self.order.pop_front() {
                Some((_, old)) => {
                    self.sessions.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back((now, pid.clone()));
        self.sessions.insert(pid, saved);
        // Restored pids leave their entry behind until the window ends; many quick
        // drop-and-resume cycles must not grow the order past the session bound.
        if self.order.len() > 2 * self.max_sessions.max(1) {
            let mut seen = HashSet::new();
            let mut kept: Vec<(Instant, String)> = self
                .order
                .drain(..)
                .rev()
                .filter(|(_, p)| self.sessions.contains_key(p) && seen.insert(p.clone()))
                .collect();
            kept.reverse();
            self.order = kept.into();
        }
    }

    /// Takes the saved session of `pid` and the packets it missed after `offset`, if the
    /// session is known and young enough and nothing it missed was evicted.
    pub fn restore(&mut self, pid: &str, offset: Option<&str>, now: Instant) -> Option<(Saved, Vec<OutPacket>)> {
        self.prune(now);
        let saved = self.sessions.get(pid)?;
        let from = match offset {
            Some(o) => o.parse::<u64>().ok()?,
            None => saved.base_offset,
        };
        if from < self.evicted_upto || from >= self.next_offset {
            return None;
        }
        let saved = self.sessions.remove(pid)?;
        let missed = self
            .packets
            .iter()
            .filter(|p| p.offset > from && p.reaches(&saved.id, &saved.nsp, &saved.rooms))
            .flat_map(|p| p.packets.iter().cloned())
            .collect();
        Some((saved, missed))
    }

    /// Drops what is older than the window.
    fn prune(&mut self, now: Instant) {
        while let Some(p) = self.packets.front() {
            if now.since(p.at) <= self.window_ms {
                break;
            }
            self.evict_oldest();
        }
        while let Some((at, _)) = self.order.front() {
            if now.since(*at) <= self.window_ms {
                break;
            }
            if let Some((_, pid)) = self.order.pop_front() {
                // A pid restored meanwhile is already gone from `sessions`.
                if self.sessions.get(&pid).is_some_and(|s| now.since(s.at) > self.window_ms) {
                    self.sessions.remove(&pid);
                }
            }
        }
    }

    #[must_use]
    pub fn stored_packets(&self) -> usize {
        self.packets.len()
    }

    #[must_use]
    pub fn saved_sessions(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(any(test, fuzzing))]
impl Recovery {
    /// Checks the replay buffer and the saved sessions against their bounds.
    pub fn check_bounds(&self) -> Result<(), String> {
        let bytes: usize = self.packets.iter().map(Stored::size).sum();
        if bytes != self.bytes {
            return Err(format!("recovery counts {} bytes, holds {bytes}", self.bytes));
        }
        if self.packets.len() > self.max_packets.max(1) {
            return Err(format!("recovery keeps {} packets, over {}", self.packets.len(), self.max_packets));
        }
        if self.bytes > self.max_bytes {
            return Err(format!("recovery keeps {} bytes, over {}", self.bytes, self.max_bytes));
        }
        if self.sessions.len() > self.max_sessions.max(1) {
            return Err(format!("recovery keeps {} sessions, over {}", self.sessions.len(), self.max_sessions));
        }
        if self.order.len() > 2 * self.max_sessions.max(1) {
            return Err(format!(
                "recovery orders {} pids for at most {} sessions",
                self.order.len(),
                self.max_sessions
            ));
        }
        for pid in self.sessions.keys() {
            if !self.order.iter().any(|(_, p)| p == pid) {
                return Err(format!("saved session {pid} never expires: it is not in the expiry order"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn stored(r: &mut Recovery, room: &str, at: u64) -> u64 {
        let offset = r.take_offset();
        let text = Bytes::from(format!("42[\"e\",\"{offset}\"]"));
        r.store(
            Stored {
                offset,
                at: Instant(at),
                nsp: "/".into(),
                rooms: vec![room.into()],
                except_rooms: vec![],
                except_socket: None,
                packets: vec![OutPacket::Text(text)],
            },
            Instant(at),
        );
        offset
    }

    fn saved(base: u64, at: u64) -> Saved {
        Saved {
            id: SocketId::from("sock"),
            nsp: "/".into(),
            rooms: ["sock".to_string(), "a".to_string()].into_iter().collect(),
            at: Instant(at),
            base_offset: base,
        }
    }

    #[test]
    fn replays_only_missed_packets_for_the_sockets_rooms() {
        let mut r = Recovery::new(1000, 100, 1 << 20, 100);
        let first = stored(&mut r, "a", 0);
        r.save("pid".into(), saved(0, 10), Instant(10));
        stored(&mut r, "b", 20);
        let third = stored(&mut r, "a", 30);
        let (s, missed) = r.restore("pid", Some(&first.to_string()), Instant(40)).unwrap();
        assert_eq!(s.id.as_str(), "sock");
        assert_eq!(missed, vec![OutPacket::Text(Bytes::from(format!("42[\"e\",\"{third}\"]")))]);
        assert!(r.restore("pid", Some("1"), Instant(40)).is_none(), "a pid is restored once");
    }

    #[test]
    fn refuses_expired_sessions_and_evicted_offsets() {
        let mut r = Recovery::new(100, 2, 1 << 20, 100);
        let first = stored(&mut r, "a", 0);
        r.save("pid".into(), saved(0, 0), Instant(0));
        assert!(r.restore("pid", Some(&first.to_string()), Instant(500)).is_none());

        let mut r = Recovery::new(1000, 2, 1 << 20, 100);
        let first = stored(&mut r, "a", 0);
        r.save("pid".into(), saved(0, 0), Instant(0));
        stored(&mut r, "a", 1);
        stored(&mut r, "a", 2);
        stored(&mut r, "a", 3);
        assert!(r.restore("pid", Some(&first.to_string()), Instant(5)).is_none(), "offset 2 was evicted");
        assert!(r.restore("unknown", None, Instant(5)).is_none());
    }

    #[test]
    fn no_offset_means_everything_since_connect() {
        let mut r = Recovery::new(1000, 100, 1 << 20, 100);
        let base = r.next_offset() - 1;
        r.save("pid".into(), saved(base, 0), Instant(0));
        stored(&mut r, "a", 1);
        let (_, missed) = r.restore("pid", None, Instant(2)).unwrap();
        assert_eq!(missed.len(), 1);
    }

    #[test]
    fn stored_bytes_are_bounded() {
        let mut r = Recovery::new(1000, 1000, 500, 10);
        for i in 0..100 {
            stored(&mut r, "a", i);
        }
        assert!(r.bytes <= 500);
        assert!(r.stored_packets() < 10);
    }

    #[test]
    fn a_packet_larger_than_the_byte_bound_is_not_kept_and_blocks_recovery_past_it() {
        let mut r = Recovery::new(1000, 100, 80, 10);
        let base = r.next_offset() - 1;
        r.save("pid".into(), saved(base, 0), Instant(0));
        let offset = r.take_offset();
        let big = OutPacket::Text(Bytes::from(format!("42[\"e\",\"{}\"]", "x".repeat(100))));
        let packet = Stored {
            offset,
            at: Instant(1),
            nsp: "/".into(),
            rooms: vec![],
            except_rooms: vec![],
            except_socket: None,
            packets: vec![big],
        };
        r.store(packet, Instant(1));
        assert_eq!(r.check_bounds(), Ok(()));
        assert_eq!(r.stored_packets(), 0);
        assert!(r.restore("pid", None, Instant(2)).is_none(), "it missed a packet that is gone");
    }

    #[test]
    fn resuming_again_and_again_keeps_the_expiry_order_bounded() {
        let mut r = Recovery::new(100_000, 10, 1 << 20, 2);
        for i in 0..50 {
            let base = r.next_offset() - 1;
            r.save("pid".into(), saved(base, i), Instant(i));
            assert!(r.restore("pid", None, Instant(i)).is_some());
            assert_eq!(r.check_bounds(), Ok(()));
        }
        r.save("pid".into(), saved(r.next_offset() - 1, 60), Instant(60));
        assert_eq!(r.check_bounds(), Ok(()));
        assert!(r.restore("pid", None, Instant(61)).is_some());
    }

    #[test]
    fn session_count_is_bounded() {
        let mut r = Recovery::new(1000, 10, 1 << 20, 2);
        for i in 0..5 {
            r.save(format!("p{i}"), saved(0, i), Instant(i));
        }
        assert_eq!(r.saved_sessions(), 2);
    }
}
