//! The optional per-IP rate of new connections: a fixed one-minute window per address.

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
    fn zero_means_unlimited() {
        let mut r = PerIp::new(0);
        let ip: IpAddr = "::1".parse().unwrap();
        assert!((0..1000).all(|i| r.allow(ip, Instant(i))));
    }
}
