//! The optional per-IP limits: the rate of new connections (a fixed one-minute window per
//! address) and the sessions open at once per address.

use crate::time::Instant;
use std::collections::HashMap;
use std::net::IpAddr;

const WINDOW_MS: u64 = 60_000;
/// Addresses tracked per window; past it, new addresses go uncounted rather than grow
/// the map without bound (a spread-out attacker is not what a per-IP limit stops).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PerIp {
    limit: u32,
    window_start: Instant,
    counts: HashMap<IpAddr, u32>,
}

impl PerIp {
    /// `limit` handshakes per address per minute; 0 turns the check off.
    #[must_use]
    pub fn new(limit: u32) -> Self {
        PerIp { limit, window_start: Instant(0), counts: HashMap::new() }
    }

    /// Counts a handshake from `ip`; false if it is over the limit.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.limit == 0 {
            return true;
        }
        if now.since(self.window_start) >= WINDOW_MS {
            self.window_start = now;
            self.counts.clear();
        }
        if self.counts.len() >= MAX_TRACKED && !self.counts.contains_key(&ip) {
            return true;
        }
        let n = self.counts.entry(ip).or_default();
        *n += 1;
        *n <= self.limit
    }
}

/// Sessions open at once per address; 0 turns the check off (and nothing is tracked).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct OpenPerIp {
    limit: u32,
    open: HashMap<IpAddr, u32>,
    /// The address of each session counted, to give its place back when it ends.
    of: HashMap<u64, IpAddr>,
}

impl OpenPerIp {
    #[must_use]
    pub fn new(limit: u32) -> Self {
        OpenPerIp { limit, open: HashMap::new(), of: HashMap::new() }
    }

    /// Counts session `s` from `ip` as open; false (and not counted) if the address has
    /// as many open as the limit.
    pub fn open(&mut self, s: u64, ip: IpAddr) -> bool {
        if self.limit == 0 {
            return true;
        }
        let n = self.open.entry(ip).or_default();
        if *n >= self.limit {
            return false;
        }
        *n += 1;
        self.of.insert(s, ip);
        true
    }

    /// Session `s` ended.
    pub fn close(&mut self, s: u64) {
        let Some(ip) = self.of.remove(&s) else { return };
        if let Some(n) = self.open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&ip);
            }
        }
    }

    /// Whether the address may open another session.
    #[must_use]
    pub fn has_room(&self, ip: IpAddr) -> bool {
        self.limit == 0 || self.open.get(&ip).copied().unwrap_or(0) < self.limit
    }
}

#[cfg(any(test, fuzzing))]
impl OpenPerIp {
    pub fn check_bounds(&self, sessions: usize) -> Result<(), String> {
        let counted: u32 = self.open.values().sum();
        if counted as usize != self.of.len() || self.of.len() > sessions {
            return Err(format!("{counted} sessions counted per address, {} tracked, {sessions} open", self.of.len()));
        }
        if self.open.values().any(|n| *n == 0 || *n > self.limit) {
            return Err(format!("an address over its {} open sessions", self.limit));
        }
        Ok(())
    }
}

#[cfg(any(test, fuzzing))]
impl PerIp {
    pub fn check_bounds(&self) -> Result<(), String> {
        if self.counts.len() > MAX_TRACKED {
            return Err(format!("{} addresses tracked for the handshake rate, over {MAX_TRACKED}", self.counts.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_until_the_window_turns() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let mut r = PerIp::new(2);
        assert!(r.allow(ip, Instant(0)));
        assert!(r.allow(ip, Instant(1)));
        assert!(!r.allow(ip, Instant(2)));
        assert!(r.allow(other, Instant(3)));
        assert!(r.allow(ip, Instant(60_000)));
    }

    #[test]
    fn open_sessions_per_address_are_capped_and_given_back() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut o = OpenPerIp::new(2);
        assert!(o.open(1, ip) && o.open(2, ip));
        assert!(!o.has_room(ip) && !o.open(3, ip));
        o.close(3); // never counted: changes nothing
        assert!(!o.has_room(ip));
        o.close(1);
        assert!(o.open(4, ip));
        assert_eq!(o.check_bounds(2), Ok(()));
        let mut off = OpenPerIp::new(0);
        assert!((0..100).all(|s| off.open(s, ip)));
        assert!(off.of.is_empty(), "nothing tracked when off");
    }

    #[test]
    fn zero_means_unlimited() {
        let mut r = PerIp::new(0);
        let ip: IpAddr = "::1".parse().unwrap();
        assert!((0..1000).all(|i| r.allow(ip, Instant(i))));
    }
}
