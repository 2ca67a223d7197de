//! Token buckets on the input clock: a limit of `capacity` events per `window_ms`,
//! refilled continuously, and the rule that a client refused as many times as its limit
//! within one window is disconnected.

use crate::time::Instant;

/// Tokens are counted in millionths so that a refill of a fraction per millisecond adds up
/// exactly, with integer arithmetic only.
const UNIT: u64 = 1_000_000;

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limit {
    pub capacity: u32,
    pub window_ms: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Refused,
    /// Refused, and the client has now been refused `capacity` times within one window.
    Disconnect,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    tokens: u64,
    last: Instant,
    refusals: u32,
    refusals_since: Instant,
}

impl Bucket {
    /// A full bucket.
    #[must_use]
    pub fn new(limit: Limit, now: Instant) -> Self {
        Bucket { tokens: u64::from(limit.capacity) * UNIT, last: now, refusals: 0, refusals_since: now }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, limit: Limit, now: Instant) -> Verdict {
        let full = u64::from(limit.capacity) * UNIT;
        let elapsed = now.since(self.last);
        let refill = elapsed.saturating_mul(full).checked_div(limit.window_ms).unwrap_or(full);
        self.tokens = self.tokens.saturating_add(refill).min(full);
        self.last = now;
        if self.tokens >= UNIT {
            self.tokens -= UNIT;
            return Verdict::Allowed;
        }
        if now.since(self.refusals_since) >= limit.window_ms {
            self.refusals = 0;
            self.refusals_since = now;
        }
        self.refusals += 1;
        if self.refusals >= limit.capacity.max(1) {
            Verdict::Disconnect
        } else {
            Verdict::Refused
        }
    }

    /// True once the bucket is full again: it can be forgotten.
    #[must_use]
    pub fn is_idle(&self, limit: Limit, now: Instant) -> bool {
        now.since(self.last) >= limit.window_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit { capacity: 100, window_ms: 60_000 };

    #[test]
    fn allows_the_capacity_then_refuses() {
        let mut b = Bucket::new(LIMIT, Instant(0));
        assert!((0..100).all(|_| b.take(LIMIT, Instant(0)) == Verdict::Allowed));
        assert_eq!(b.take(LIMIT, Instant(0)), Verdict::Refused);
    }

    #[test]
    fn refills_continuously() {
        let mut b = Bucket::new(LIMIT, Instant(0));
        for _ in 0..100 {
            b.take(LIMIT, Instant(0));
        }
        assert_eq!(b.take(LIMIT, Instant(599)), Verdict::Refused, "one token takes 600 ms");
        assert_eq!(b.take(LIMIT, Instant(1200)), Verdict::Allowed);
        assert_eq!(b.take(LIMIT, Instant(1200)), Verdict::Refused);
    }

    #[test]
    fn disconnects_after_as_many_refusals_as_the_limit_in_one_window() {
        let limit = Limit { capacity: 3, window_ms: 1000 };
        let mut b = Bucket::new(limit, Instant(0));
        let verdicts: Vec<Verdict> = (0..6).map(|_| b.take(limit, Instant(0))).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Allowed,
                Verdict::Allowed,
                Verdict::Allowed,
                Verdict::Refused,
                Verdict::Refused,
                Verdict::Disconnect
            ]
        );
    }
}
